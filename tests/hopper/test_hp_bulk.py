"""Bulk copies, reductions, mbarrier phases and elect.sync on both backends (edge-vs-GPU style:
the same cases and the same expected bits in the simulator and on the GPU)."""

import numpy as np
import pytest

import kaiodsl as K
from kaiodsl import Const, Ptr, f32, i32, u32, u64

from hopkit import ready_barrier


@K.kernel(block_size=128)
def bulk_roundtrip(src: Ptr[u32], out: Ptr[u32], NBYTES: Const, OFF: Const):
    s = K.shared_array(u32, (1024,), align=128)
    bar = ready_barrier()
    t = K.thread_idx.x
    if t == 0:
        K.mbarrier_arrive_expect_tx(bar, NBYTES)
        K.bulk_load(s, src + OFF, NBYTES, bar)  # ends at the last byte of src when OFF is the tail
    K.mbarrier_wait(bar, 0)
    for i in range(t, NBYTES // 4, 128):
        s[i] = s[i] + 1
    K.fence_proxy_async()
    K.syncthreads()
    if t == 0:
        K.bulk_store(out, s, NBYTES)
        K.bulk_commit()
        K.bulk_wait(0)


@pytest.mark.parametrize("nbytes", [16, 48, 4096])
def test_bulk_load_store_to_the_last_byte(hopper, rng, nbytes):
    n = 1024
    src = rng.integers(0, 2**32 - 1, n, dtype=np.uint32)
    out = np.zeros(nbytes // 4, np.uint32)
    off = n - nbytes // 4
    bulk_roundtrip[1, 128](src, out, NBYTES=nbytes, OFF=off)
    np.testing.assert_array_equal(out, src[off:] + 1)


@K.kernel(block_size=64)
def bulk_red(dst: Ptr[u32], dsti: Ptr[i32], dstf: Ptr[f32], src: Ptr[u32], OP: Const):
    s = K.shared_array(u32, (64,), align=16)
    t = K.thread_idx.x
    s[t] = src[t]
    K.fence_proxy_async()
    K.syncthreads()
    if t == 0:
        if OP == "fadd":
            K.bulk_reduce(dstf, s, 256, "add")
        elif OP in ("imin", "imax"):
            K.bulk_reduce(dsti, s, 256, "min" if OP == "imin" else "max")
        else:
            K.bulk_reduce(dst, s, 256, OP)
        K.bulk_commit()
        K.bulk_wait(0)


@pytest.mark.parametrize("op", ["add", "min", "max", "and", "or", "xor", "imin", "imax", "fadd"])
def test_bulk_reduce(hopper, rng, op):
    old = rng.integers(0, 2**32 - 1, 64, dtype=np.uint32)
    new = rng.integers(0, 2**32 - 1, 64, dtype=np.uint32)
    if op == "fadd":  # small integers: the f32 sums are exact
        old = rng.integers(-1000, 1000, 64).astype(np.float32).view(np.uint32)
        new = rng.integers(-1000, 1000, 64).astype(np.float32).view(np.uint32)
    d, di, df = old.copy(), old.view(np.int32).copy(), old.view(np.float32).copy()
    bulk_red[1, 64](d, di, df, new, OP=op)
    ref = {"add": old + new, "min": np.minimum(old, new), "max": np.maximum(old, new), "and": old & new,
           "or": old | new, "xor": old ^ new,
           "imin": np.minimum(old.view(np.int32), new.view(np.int32)).view(np.uint32),
           "imax": np.maximum(old.view(np.int32), new.view(np.int32)).view(np.uint32),
           "fadd": None}[op]
    if op == "fadd":
        ref = (old.view(np.float32) + new.view(np.float32)).view(np.uint32)
    got = {"imin": di.view(np.uint32), "imax": di.view(np.uint32), "fadd": df.view(np.uint32)}.get(op, d)
    np.testing.assert_array_equal(got, ref)


@K.kernel(block_size=128)
def phases(out: Ptr[u32]):
    bar = K.shared_array(u64, (1,), align=8)
    t = K.thread_idx.x
    if t == 0:
        K.mbarrier_init(bar, 128)
    K.syncthreads()
    before = K.u32(K.mbarrier_test_wait(bar, 0)) | (K.u32(K.mbarrier_test_wait(bar, 1)) << 1)
    K.syncthreads()
    K.mbarrier_arrive(bar)
    K.mbarrier_wait(bar, 0)  # all 128 arrived: phase 0 completed, phase 1 runs
    after = K.u32(K.mbarrier_test_wait(bar, 0)) | (K.u32(K.mbarrier_test_wait(bar, 1)) << 1)
    K.syncthreads()
    if t < 64:
        K.mbarrier_arrive(bar, 2)
        K.mbarrier_wait(bar, 1)  # 64 threads x 2 arrivals complete phase 1
    out[t] = before | (after << 2)


def test_mbarrier_phases(hopper):
    out = np.zeros(128, np.uint32)
    phases[1, 128](out)
    # before: parity 0 pending (0), parity 1 "completed" (1); after: 0 completed (1), 1 pending (0)
    np.testing.assert_array_equal(out, np.full(128, 0b0110, np.uint32))


@K.kernel(block_size=64)
def elect(out: Ptr[u32], MASK: Const, ACTIVE: Const):
    t = K.thread_idx.x
    out[t] = K.u32(7)
    if t % 32 < ACTIVE and ((K.u32(MASK) >> K.u32(t % 32)) & 1) != 0:  # only membermask lanes may run it
        out[t] = K.u32(K.elect_sync(MASK))


@pytest.mark.parametrize("mask,active", [(0xFFFFFFFF, 32), (0xFFFFFFF0, 32), (0x0000FF00, 16)])
def test_elect_sync(hopper, mask, active):
    out = np.zeros(64, np.uint32)
    elect[1, 64](out, MASK=mask, ACTIVE=active)
    lane = np.arange(64) % 32
    runs = (lane < active) & ((mask >> lane) & 1 == 1)
    first = min(l for l in range(active) if mask >> l & 1)  # the lowest lane of the mask is elected
    want = np.where(runs, (lane == first).astype(np.uint32), 7)
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("mask,active", [(0xFFFFFFF0, 32), (0x0000FF00, 16)])
def test_elect_sync_outside_membermask_is_an_error(sim90, mask, active):
    """The old test's bug: lanes outside membermask ran elect.sync (undefined; the H200 elected lane 0)."""
    @K.kernel(block_size=32)
    def bad(out: Ptr[u32], MASK: Const, ACTIVE: Const):
        t = K.thread_idx.x
        if t < ACTIVE:
            out[t] = K.u32(K.elect_sync(MASK))

    with pytest.raises(K.SimError, match="elect.sync: membermask .* does not match the lanes"):
        bad[1, 32](np.zeros(32, np.uint32), MASK=mask, ACTIVE=active)


@K.kernel(block_size=128)
def ordered_sum(out: Ptr[f32], sem: Ptr[i32], parts: Ptr[f32], N: i32, STUCK: Const):
    """Block j adds its 64 floats into out after block j - 1 did (a semaphore in global memory): block 0
    stores, the others poll until sem == j, reduce, wait for the bulk write, release j + 1; the last
    resets sem to 0. The order of the float additions is fixed, so the bits are too."""
    s = K.shared_array(f32, (64,), align=16)
    t = K.thread_idx.x
    j = K.block_idx.x
    if t < 64:
        s[t] = parts[K.i64(j) * 64 + t]
    K.fence_proxy_async()
    K.syncthreads()
    if t == 0:
        want = j + 1 if STUCK else j
        if j > 0:
            seen = K.atomic_or(sem, 0, 0)
            while seen != want:
                K.nanosleep(32)
                seen = K.atomic_or(sem, 0, 0)
            K.fence()
            K.fence_proxy_async("global")
            K.bulk_reduce(out, s, 256, "add")
        else:
            K.bulk_store(out, s, 256)
        K.bulk_commit()
        K.bulk_wait(0)
        K.fence_proxy_async("global")
        K.fence()
        K.atomic_exch(sem, 0, K.where(j + 1 == N, 0, j + 1))


@pytest.mark.parametrize("n", [1, 5, 40])
def test_ordered_reductions_through_a_semaphore(hopper, rng, n):
    """Blocks chained by a polling loop (nanosleep) add in block order on both backends: the same bits as
    a float32 sum in that order, and the semaphore is left at 0."""
    parts = (rng.standard_normal((n, 64)) * np.exp2(rng.integers(-20, 20, (n, 1)))).astype(np.float32)
    out = np.full(64, np.nan, np.float32)
    sem = np.zeros(1, np.int32)
    ordered_sum[n, 128](out, sem, parts.reshape(-1), n, STUCK=False)
    want = parts[0].copy()
    for p in parts[1:]:
        want = want + p
    np.testing.assert_array_equal(out.view(np.uint32), want.view(np.uint32))
    assert sem[0] == 0


def test_a_poll_nothing_releases_is_reported(sim90, rng):
    """Block 1 waits for a value no block writes: the simulator says so instead of spinning forever."""
    from kaiodsl.errors import SimError

    out = np.zeros(64, np.float32)
    with pytest.raises(SimError, match="polling loop"):
        ordered_sum[2, 128](out, np.zeros(1, np.int32), np.ones(128, np.float32), 2, STUCK=True)
