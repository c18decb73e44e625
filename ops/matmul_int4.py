"""W4A16 GEMM (GPTQ-style): ``matmul_int4(a, w_packed, scales, *, zeros=None, group_size=128)``.

``a`` [M, K] f16/bf16 activations; ``w_packed`` the int4 weights of an [N, K] matrix in the
layout of ops/int4_pack.py (``kaiodsl.ops.pack_int4``); ``scales`` [N, K // group_size] in the
activation dtype; ``zeros`` optional [N, K // group_size] uint8 zero points (default 8).
Output [M, N] in the activation dtype.

The kernel is built for decode shapes (small M): every weight word is read once, straight
into mma B fragments, and the K loop is split over the warps of a block so that enough
loads are in flight to stream the weights at memory bandwidth. Dequantization is 3
instructions per pair of weights: one ``lop3`` drops two nibbles into the mantissa of 1024.0
(f16; 128.0 for bf16), one packed ``sub`` takes off 1024 + zero (exact), one packed ``mul``
applies the scale (one rounding, as the reference).
"""

from functools import lru_cache

import numpy as np

import kaiodsl
from kaiodsl import Const, Ptr, bf16, bf16x2, f16, f16x2, f32, i32, u8, u32
from kaiodsl.errors import ArgumentError

from ._common import inspect_array, new_like, require_contiguous, require_dtype, require_rank, same_kind

N_TILES = 2        # n8 tiles per block
K_SPLIT = 4        # warps sharing one n8 tile's K range
UNROLL = 4         # k32 chunks loaded before they are used
THREADS = 32 * N_TILES * K_SPLIT
MAGIC = {"f16": (0x64006400, 1024.0), "bf16": (0x43004300, 128.0)}


@kaiodsl.func
def load_a_pair(a, row, k, M, K):
    """Two consecutive activations a[row, k:k+2] as one 32-bit register (0 outside the matrix)."""
    ok = row < M and k < K
    return kaiodsl.load(kaiodsl.ptr_cast(a, u32), (row * K + k) // 2, cache="nc", mask=ok, other=0)


@kaiodsl.func
def dequant_pair(w, j: Const[int], zz, s2, MAGIC_BITS: Const[int], H2: Const):
    """Weights v(2j), v(2j+1) of a packed word as a half2: (1024 + q - (1024 + zero)) * scale."""
    x = kaiodsl.lop3(w >> (4 * j), 0x000F000F, MAGIC_BITS, "(a & b) | c")
    return (kaiodsl.bitcast(x, H2) - zz) * s2


def _make(dtype_name: str, group_size: int, has_zeros: bool):
    T = {"f16": f16, "bf16": bf16}[dtype_name]
    H2 = {"f16": f16x2, "bf16": bf16x2}[dtype_name]
    MAGIC_BITS, MAGIC_F = MAGIC[dtype_name]
    name = f"w4a16_{dtype_name}_g{group_size}" + ("_zp" if has_zeros else "")

    @kaiodsl.kernel(block_size=THREADS, name=name)
    def w4a16(a: Ptr[T], w: Ptr[u32], scales: Ptr[T], zeros: Ptr[u8], c: Ptr[T], M: i32, N: i32, K: i32):
        red = kaiodsl.shared_array(f32, (K_SPLIT, N_TILES, 32, 4))
        tid = kaiodsl.thread_idx.x
        lane = tid % 32
        warp = tid // 32
        nt = warp % N_TILES
        kq = warp // N_TILES
        ntile = kaiodsl.block_idx.x * N_TILES + nt
        m0 = kaiodsl.block_idx.y * 16
        g = lane // 4
        t = lane % 4
        n = ntile * 8 + g
        KC = K // 32                       # k32 chunks in a row
        per = (KC + K_SPLIT - 1) // K_SPLIT
        c0 = kq * per
        c1 = min(c0 + per, KC) if ntile * 8 < N else c0   # the grid's last block may pass N
        G = K // group_size
        acc = kaiodsl.mma_zeros(f32)
        wrow = w + ntile * KC * 32 + lane
        for cb in range(c0, c1, UNROLL):
            words = [kaiodsl.load(wrow, (cb + u) * 32, cache="nc", mask=cb + u < c1, other=0)
                     for u in range(UNROLL)]
            for u in kaiodsl.static_range(UNROLL):
                ch = cb + u
                if ch < c1:
                    grp = (ch * 32) // group_size
                    s = scales[n * G + grp]
                    s2 = kaiodsl.bitcast(kaiodsl.pack_b32(kaiodsl.bitcast(s, kaiodsl.u16),
                                                          kaiodsl.bitcast(s, kaiodsl.u16)), H2)
                    zf = MAGIC_F + 8.0
                    if has_zeros:
                        zf = MAGIC_F + f32(zeros[n * G + grp])
                    zz = kaiodsl.pack_half2(zf, zf, H2)
                    for step in kaiodsl.static_range(2):
                        k = ch * 32 + step * 16 + 2 * t
                        af = (load_a_pair(a, m0 + g, k, M, K), load_a_pair(a, m0 + g + 8, k, M, K),
                              load_a_pair(a, m0 + g, k + 8, M, K), load_a_pair(a, m0 + g + 8, k + 8, M, K))
                        bf = (dequant_pair(words[u], 2 * step, zz, s2, MAGIC_BITS, H2),
                              dequant_pair(words[u], 2 * step + 1, zz, s2, MAGIC_BITS, H2))
                        acc = kaiodsl.mma([kaiodsl.bitcast(x, H2) for x in af], bf, acc)
        for e in kaiodsl.static_range(4):
            red[kq, nt, lane, e] = acc[e]
        kaiodsl.syncthreads()
        if kq == 0:
            for e in kaiodsl.static_range(4):
                v = red[0, nt, lane, e] + red[1, nt, lane, e] + red[2, nt, lane, e] + red[3, nt, lane, e]
                row = m0 + g + 8 * (e // 2)
                col = ntile * 8 + 2 * t + e % 2
                if row < M and col < N:
                    c[row * N + col] = T(v)

    return w4a16


@lru_cache(maxsize=None)
def int4_kernel(dtype_name: str, group_size: int, has_zeros: bool):
    return _make(dtype_name, group_size, has_zeros)


def matmul_int4(a, w_packed, scales, *, zeros=None, group_size: int = 128):
    """``a @ W^T`` with W [N, K] int4 (packed by ``pack_int4``), per-group ``scales`` (and ``zeros``)."""
    op = "matmul_int4"
    if group_size not in (32, 64, 128):
        raise ArgumentError(f"{op}(): group_size must be 32, 64 or 128, got {group_size!r}")
    az = inspect_array("a", a, op)
    wz = inspect_array("w_packed", w_packed, op)
    sz = inspect_array("scales", scales, op)
    require_rank(az, 2, op, "a matrix [M, K]")
    require_dtype(az, (f16, bf16), op)
    require_dtype(wz, (i32, u32), op)
    if len(wz.shape) != 3 or wz.shape[2] != 32:
        raise ArgumentError(f"{op}(): 'w_packed' must have the pack_int4 layout [N // 8, K // 32, 32], "
                            f"got shape {wz.shape}")
    M, K = az.shape
    N = wz.shape[0] * 8
    if wz.shape[1] * 32 != K:
        raise ArgumentError(f"{op}(): 'w_packed' {wz.shape} holds K={wz.shape[1] * 32}, but a has K={K}")
    if K % group_size:
        raise ArgumentError(f"{op}(): K={K} must be a multiple of group_size={group_size}")
    require_dtype(sz, (az.dtype,), op)
    if sz.shape != (N, K // group_size):
        raise ArgumentError(f"{op}(): 'scales' must be [N, K // group_size] = {(N, K // group_size)}, "
                            f"got {sz.shape}")
    arrs = [az, wz, sz]
    if zeros is not None:
        zz = inspect_array("zeros", zeros, op)
        require_dtype(zz, (u8,), op)
        if zz.shape != (N, K // group_size):
            raise ArgumentError(f"{op}(): 'zeros' must be [N, K // group_size] = {(N, K // group_size)} "
                                f"uint8, got {zz.shape}")
        arrs.append(zz)
    for x in arrs:
        require_contiguous(x, op)
    same_kind(op, *arrs)
    out = new_like(az, (M, N), az.dtype)
    if M == 0:
        return out
    z = zeros if zeros is not None else new_like(az, (1,), u8)
    k = int4_kernel(az.dtype.name, group_size, zeros is not None)
    grid = (N // (8 * N_TILES) + (1 if N % (8 * N_TILES) else 0), (M + 15) // 16)
    wv = w_packed
    if wz.kind == "numpy" and wz.dtype == i32:
        wv = w_packed.view(np.uint32)
    elif wz.kind == "torch" and wz.dtype == i32:
        import torch

        wv = w_packed.view(torch.uint32) if hasattr(torch, "uint32") else w_packed
    k[grid, THREADS](a, wv, scales, z, out, M, N, K)
    return out


def reference_matmul_int4(a, q, scales, zeros=None, group_size: int = 128) -> np.ndarray:
    """float64 product of ``a`` with the reference-dequantized weights (ops.int4_pack.dequantize)."""
    from .int4_pack import dequantize

    w = dequantize(q, scales, zeros, group_size, np.float16 if np.asarray(scales).dtype == np.float16
                   else np.float32)
    return np.asarray(a, np.float64) @ np.asarray(w, np.float64).T
