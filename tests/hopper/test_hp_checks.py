"""Simulator checks for Hopper code: each planted bug is reported (barrier, phase, line, thread) and its
correct twin runs clean."""

import numpy as np
import pytest

import kaiodsl as K
from kaiodsl import Const, Ptr, f16, f32, u32

from hopkit import ready_barrier


@K.kernel(block_size=128)
def mbar(src: Ptr[u32], out: Ptr[u32], BUG: Const):
    s = K.shared_array(u32, (128,), align=128)
    bar = ready_barrier()
    t = K.thread_idx.x
    if t == 0:
        K.mbarrier_arrive_expect_tx(bar, 256 if BUG == "short" else (128 if BUG == "long" else 512))
        K.bulk_load(s, src, 512 if BUG != "short_half" else 256, bar)
    K.mbarrier_wait(bar, 0)
    if BUG == "parity":
        K.mbarrier_wait(bar, 1)  # waits for phase 1 to complete: nobody arrives on it
    out[t] = s[t]


@pytest.mark.parametrize("bug,msg", [
    ("none", None),
    ("long", "more bytes were delivered than expect_tx announced in phase 0"),
    ("short_half", "deadlock: mbarrier at shared offset 0x200 of block \\(0, 0, 0\\) never completes phase 0, "
                   "which the waits need: 0 of 1 arrivals and 256 transaction bytes still missing \\(every "
                   "arrival is in: expect_tx announced 256 bytes more than the copies delivered"),
    ("parity", "deadlock: .* never completes phase 1, which the waits need: 1 of 1 arrivals"),
])
def test_mbarrier_checks(sim90, rng, bug, msg):
    src = rng.integers(0, 2**32, 128, dtype=np.uint32)
    out = np.zeros(128, np.uint32)
    if msg is None:
        mbar[1, 128](src, out, BUG=bug)
        np.testing.assert_array_equal(out, src)
        return
    with pytest.raises(K.SimError, match=msg) as e:
        mbar[1, 128](src, out, BUG=bug)
    assert "test_hp_checks.py" in str(e.value)


@K.kernel
def wg_desc(out: Ptr[f32], BUG: Const):
    s = K.shared_array(f16, (64 * 64 + 64,), align=1024)
    t = K.thread_idx.x
    for i in range(t, 64 * 64 + 64, K.block_dim.x):
        s[i] = f16(1.0)
    if BUG != "nofence":
        K.fence_proxy_async()  # generic writes -> wgmma's async-proxy reads
    K.syncthreads()
    off = 64 if BUG == "misaligned" else (3584 if BUG == "outside" else 0)  # f16 elements
    d = K.wgmma_desc(s.ptr(off), 128)
    acc = K.wgmma_zeros(8)
    K.wgmma_fence()
    acc = K.wgmma(d, d, acc, dtype=f16, scale_d=False)
    K.wgmma_commit()
    acc = K.wgmma_wait(0, acc)
    out[t] = acc[0]


@pytest.mark.parametrize("bug,block,msg", [
    ("none", 128, None),
    ("misaligned", 128, "descriptor start 0x80 is not aligned to its 128-byte swizzle atom"),
    ("outside", 128, "outside the 8320-byte allocation"),
    ("none", 64, "whole warpgroups: the block has 64 threads"),
    ("nofence", 128, "wgmma reads shared byte 0x0 through the async proxy, but thread \\(0, 0, 0\\) wrote it "
                     "through the generic proxy with no fence.proxy.async"),
])
def test_wgmma_descriptor_checks(sim90, bug, block, msg):
    out = np.zeros(block, np.float32)
    if msg is None:
        wg_desc[1, block](out, BUG=bug)
        np.testing.assert_array_equal(out, np.full(block, 16.0))  # one k16 slice of ones
        return
    with pytest.raises(K.SimError, match=msg):
        wg_desc[1, block](out, BUG=bug)


@K.kernel(block_size=32)
def store_back(out: Ptr[u32], FENCE: Const):
    s = K.shared_array(u32, (32,), align=16)
    t = K.thread_idx.x
    s[t] = K.u32(t) * 3
    if FENCE:
        K.fence_proxy_async()
    K.syncthreads()
    if t == 0:
        K.bulk_store(out, s, 128)
        K.bulk_commit()
        K.bulk_wait(0)


@pytest.mark.parametrize("fence", [True, False])
def test_bulk_store_needs_a_proxy_fence(sim90, fence):
    out = np.zeros(32, np.uint32)
    if fence:
        store_back[1, 32](out, FENCE=True)
        np.testing.assert_array_equal(out, np.arange(32, dtype=np.uint32) * 3)
        return
    with pytest.raises(K.SimError, match="cp.async.bulk reads shared byte 0x0 through the async proxy"):
        store_back[1, 32](out, FENCE=False)


@K.kernel(block_size=384)
def warpspec(out: Ptr[u32], DEC: Const, INC: Const):
    t = K.thread_idx.x
    if t < 128:
        if DEC:
            K.setmaxnreg(DEC, False)  # the producer warpgroup gives registers back
    else:
        K.setmaxnreg(INC, True)
    out[t] = K.u32(t)


@pytest.mark.parametrize("dec,inc,msg", [
    (40, 232, None),                                  # 40 + 232 + 232 = 504 <= 512 per thread slot
    (0, 232, "setmaxnreg is unbalanced: the warpgroups end with budgets \\[168, 232, 232\\]"),
    (40, 240, "520 registers per thread|66560 registers in all"),
])
def test_setmaxnreg_balance(sim90, dec, inc, msg):
    out = np.zeros(384, np.uint32)
    if msg is None:
        warpspec[1, 384](out, DEC=dec, INC=inc)
        np.testing.assert_array_equal(out, np.arange(384, dtype=np.uint32))
        return
    with pytest.raises(K.SimError, match=msg):
        warpspec[1, 384](out, DEC=dec, INC=inc)


@pytest.mark.parametrize("target,msg", [("sm_90a", None), ("sm_90", "needs sm_90a"), ("sm_100a", "needs sm_90a")])
def test_simulator_refuses_forms_the_target_lacks(target, msg):
    from kaiodsl.sim import run_ptx

    ptx = wg_desc.compile(arch="sm_90a", BUG="none").ptx.replace(".target sm_90a", f".target {target}")
    out = np.zeros(128, np.float32)
    if msg is None:
        run_ptx(ptx, "wg_desc", 1, 128, [out])
        assert (out == 16).all()
        return
    # nvJitLink runs first where it is installed (ptxas names the instruction); the form table's own
    # gate says the same without it
    with pytest.raises((K.SimError, K.LinkError),
                       match=f"(wgmma.fence.sync.aligned {msg}.*this PTX is for {target})|"
                             f"(Instruction 'wgmma.fence' not supported on .target '{target}')"):
        run_ptx(ptx, "wg_desc", 1, 128, [out])
