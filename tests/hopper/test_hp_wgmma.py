"""wgmma on both backends: shared operands through descriptors with each swizzle, A from registers,
several N and every type family; the accumulator layout is the PTX ISA's (9.7.15.5.1)."""

import numpy as np
import pytest

import kaiodsl as K
from kaiodsl import Const, Ptr, f32, i32, u32

from hopper_layouts import k_step_offset, tile_image

_NP = {"f16": np.float16, "tf32": np.float32, "s8": np.int8, "u8": np.uint8}


@K.kernel(block_size=128)
def wg(a_img: Ptr[u32], b_img: Ptr[u32], out: Ptr[f32], outi: Ptr[i32],
       N: Const, KB: Const, SWZ: Const, DT: Const, REGS_A: Const):
    sa = K.shared_array(u32, (64 * KB // 4,), align=1024)
    sb = K.shared_array(u32, (N * KB // 4,), align=1024)
    t = K.thread_idx.x
    for i in range(t, 64 * KB // 4, 128):
        sa[i] = a_img[i]
    for i in range(t, N * KB // 4, 128):
        sb[i] = b_img[i]
    K.fence_proxy_async()  # generic-proxy writes, then wgmma reads them through the async proxy
    K.syncthreads()
    ints = DT in ("s8", "u8")
    acc = K.wgmma_zeros(N, i32 if ints else f32)
    K.wgmma_fence()
    for s in K.static_range(KB // 32):
        b = K.wgmma_desc(sb.ptr(k_step_offset(s, N, SWZ) // 4), SWZ, rows=N)
        if REGS_A:  # A fragment: warp w holds rows 16w.., as mma.m16n8k* A (read from the row-major image)
            w, lane = t // 32, t % 32
            g, q = lane // 4, lane % 4
            r0 = 16 * w + g
            base = s * 8
            a = (a_img[r0 * (KB // 4) + base + q], a_img[(r0 + 8) * (KB // 4) + base + q],
                 a_img[r0 * (KB // 4) + base + 4 + q], a_img[(r0 + 8) * (KB // 4) + base + 4 + q])
            acc = K.wgmma(a, b, acc, dtype=DT, scale_d=s > 0)
        else:
            a = K.wgmma_desc(sa.ptr(k_step_offset(s, 64, SWZ) // 4), SWZ, rows=64)
            acc = K.wgmma(a, b, acc, dtype=DT, scale_d=s > 0)
    K.wgmma_commit()
    acc = K.wgmma_wait(0, acc)
    w, lane = t // 32, t % 32
    for j in K.static_range(N // 2):
        row = 16 * w + lane // 4 + 8 * ((j >> 1) & 1)
        col = 8 * (j // 4) + 2 * (lane % 4) + (j & 1)
        if ints:
            outi[row * N + col] = acc[j]
        else:
            out[row * N + col] = acc[j]


def _operands(rng, dt, rows, kbytes):
    n = kbytes // np.dtype(_NP[dt]).itemsize
    if dt == "f16":
        m = rng.integers(-4, 5, (rows, n)).astype(np.float16)
    elif dt == "tf32":
        m = rng.integers(-8, 9, (rows, n)).astype(np.float32) / 4
    else:
        lo, hi = (-128, 128) if dt == "s8" else (0, 256)
        m = rng.integers(lo, hi, (rows, n)).astype(_NP[dt])
    return m, m.view(np.uint8).reshape(rows, kbytes)


CASES = [  # (N, K bytes per row, swizzle, dtype, A from registers)
    (8, 32, 32, "f16", False), (64, 128, 128, "f16", False), (96, 64, 64, "f16", False),
    (256, 128, 128, "f16", False), (16, 32, 0, "f16", False), (24, 64, 0, "f16", False),
    (32, 128, 128, "tf32", False), (48, 64, 64, "s8", False), (16, 32, 32, "u8", False),
    (64, 128, 128, "f16", True), (32, 64, 64, "s8", True),
]


@pytest.mark.parametrize("n,kb,swz,dt,regs_a", CASES)
def test_wgmma(hopper, rng, n, kb, swz, dt, regs_a):
    A, a_bytes = _operands(rng, dt, 64, kb)
    B, b_bytes = _operands(rng, dt, n, kb)  # B as N rows of K (K-major)
    a_src = a_bytes.reshape(-1) if regs_a else tile_image(a_bytes, swz)
    a_img, b_img = a_src.view(np.uint32), tile_image(b_bytes, swz).view(np.uint32)
    out = np.full(64 * n, np.nan, np.float32)
    outi = np.full(64 * n, -7, np.int32)
    wg[1, 128](a_img, b_img, out, outi, N=n, KB=kb, SWZ=swz, DT=dt, REGS_A=regs_a)
    want = A.astype(np.float64) @ B.astype(np.float64).T
    got = outi if dt in ("s8", "u8") else out
    np.testing.assert_array_equal(got.reshape(64, n), want)  # small integers: exact on both backends
