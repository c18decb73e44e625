"""Software-pipelined wgmma on both backends: two commit groups in flight and ``wgmma_wait(1, s, o,
complete=1)`` reading the older one; an accumulator rescaled element-wise and fed back to wgmma (a
register list, accumulated in place: no copies); A fragments packed as f16x2 (no bitcast moves).
Small integers, so every product is exact on both backends; the PTX is checked for the moves that
make ptxas serialise wgmmas (C7513)."""

import numpy as np
import pytest

import kaiodsl as K
from kaiodsl import Const, Ptr, f16x2, f32, u32
from kaiodsl.errors import CompileError

from hopper_layouts import k_step_offset, tile_image

KB = 64          # bytes of K: two k16 steps of f16


@K.func
def _issue(sa, sb, acc, N: Const[int]):
    K.wgmma_fence()
    for s in K.static_range(KB // 32):
        a = K.wgmma_desc(sa.ptr(k_step_offset(s, 64, 0) // 4), 0, rows=64)
        b = K.wgmma_desc(sb.ptr(k_step_offset(s, N, 0) // 4), 0, rows=N)
        acc = K.wgmma(a, b, acc, dtype="f16")
    K.wgmma_commit()
    return acc


@K.func
def _store(out, acc, t, N: Const[int]):
    w, lane = t // 32, t % 32
    for j in K.static_range(N // 2):
        out[(16 * w + lane // 4 + 8 * ((j >> 1) & 1)) * N + 8 * (j // 4) + 2 * (lane % 4) + (j & 1)] = acc[j]


@K.kernel(block_size=128)
def pipelined(a_img: Ptr[u32], b_img: Ptr[u32], p_img: Ptr[u32], o1: Ptr[f32], o2: Ptr[f32], N: Const):
    """o1 = A B^T (its group waited for with the other in flight), o2 = 2 (A B^T) + P B^T: the first
    product rescaled by 2 in registers, then P (registers, f16x2) accumulated onto it."""
    sa = K.shared_array(u32, (64 * KB // 4,), align=1024)
    sb = K.shared_array(u32, (N * KB // 4,), align=1024)
    t = K.thread_idx.x
    for i in range(t, 64 * KB // 4, 128):
        sa[i] = a_img[i]
    for i in range(t, N * KB // 4, 128):
        sb[i] = b_img[i]
    K.fence_proxy_async()
    K.syncthreads()
    s = _issue(sa, sb, K.wgmma_zeros(N), N)              # group 1
    o = _issue(sa, sb, K.wgmma_zeros(N), N)              # group 2
    s, o = K.wgmma_wait(1, s, o, complete=1)             # group 1 done, group 2 may run on
    _store(o1, s, t, N)
    o = K.wgmma_wait(0, o)
    o = [o[i] * 2.0 for i in range(N // 2)]              # rebuilt element-wise: a register list
    w, lane = t // 32, t % 32
    K.wgmma_fence()
    for k in K.static_range(KB // 32):                   # P from registers: the m16n8k16 A layout per warp
        r0 = 16 * w + lane // 4
        q = k * 8 + lane % 4
        pa = (K.bitcast(p_img[r0 * (KB // 4) + q], f16x2), K.bitcast(p_img[(r0 + 8) * (KB // 4) + q], f16x2),
              K.bitcast(p_img[r0 * (KB // 4) + 4 + q], f16x2), K.bitcast(p_img[(r0 + 8) * (KB // 4) + 4 + q], f16x2))
        b = K.wgmma_desc(sb.ptr(k_step_offset(k, N, 0) // 4), 0, rows=N)
        o = K.wgmma(pa, b, o, dtype="f16")
    K.wgmma_commit()
    o = K.wgmma_wait(0, o)
    _store(o2, o, t, N)


def _image(m: np.ndarray) -> np.ndarray:
    """[rows, 2 k16 steps of f16] -> the unswizzled K-major tile (8x16-byte core matrices)."""
    return tile_image(m.astype(np.float16).view(np.uint8).reshape(m.shape[0], -1), 0).view(np.uint32)


@pytest.mark.parametrize("N", [16, 64])
def test_wgmma_pipelined_groups_and_rebuilt_accumulator(hopper, rng, N):
    A, B, P = (rng.integers(-3, 4, (r, KB // 2)).astype(np.float64) for r in (64, N, 64))
    o1, o2 = (np.full(64 * N, np.nan, np.float32) for _ in range(2))
    pipelined[1, 128](_image(A), _image(B), P.astype(np.float16).view(np.uint32).reshape(-1), o1, o2, N=N)
    np.testing.assert_array_equal(o1.reshape(64, N), A @ B.T)
    np.testing.assert_array_equal(o2.reshape(64, N), 2 * (A @ B.T) + P @ B.T)


def test_wgmma_pipelined_ptx_has_no_copies(monkeypatch):
    """The rescaled accumulator is accumulated in place and the f16x2 A registers are passed as they
    are: after the first product's wait, no mov.f32 (accumulator copies) or mov.b32 %r, %hh (A bitcasts)
    before the last wgmma, and no fence but the kernel's own."""
    monkeypatch.setenv("KAIODSL_ARCH", "sm_90a")
    ptx = K.compiler.compile(pipelined, {"N": 16}, target="sm_90a").ptx.splitlines()
    last = max(i for i, line in enumerate(ptx) if "wgmma.mma_async" in line)
    done = next(i for i, line in enumerate(ptx) if "wgmma.wait_group.sync.aligned 0" in line)
    moves = [line.strip() for line in ptx[done:last]
             if line.strip().startswith(("mov.f32", "mov.b32 %r")) and ("%hh" in line or "mov.f32" in line)]
    assert not moves, moves
    assert sum("wgmma.fence" in line for line in ptx[done:last]) == 1     # the kernel's own, no copy fence


@K.kernel(block_size=128)
def _early_read(out: Ptr[f32], HOW: Const):
    sa = K.shared_array(u32, (64 * KB // 4,), align=1024)
    s = _issue(sa, sa, K.wgmma_zeros(16), 16)
    o = _issue(sa, sa, K.wgmma_zeros(16), 16)
    if HOW == "none":
        s, o = K.wgmma_wait(1, s, o)
    else:
        s, o = K.wgmma_wait(1, s, o, complete=3)
    out[0] = s[0]


@pytest.mark.parametrize("how,msg", [("none", "before the wgmma wait"), ("range", "complete must be")])
def test_wgmma_wait_complete_is_checked(monkeypatch, how, msg):
    monkeypatch.setenv("KAIODSL_ARCH", "sm_90a")
    with pytest.raises(CompileError, match=msg):
        K.compiler.compile(_early_read, {"HOW": how}, target="sm_90a")
