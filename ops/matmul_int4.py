"""W4A16 GEMM (GPTQ-style): ``matmul_int4(a, w_packed, scales, *, zeros=None, group_size=128, parallelism=None)``.

``a`` [M, K] f16/bf16 activations; ``w_packed`` the int4 weights of an [N, K] matrix in the
layout of ops/int4_pack.py (``kaiodsl.ops.pack_int4``); ``scales`` [N, K // group_size] in the
activation dtype; ``zeros`` optional [N, K // group_size] uint8 zero points (default 8).
Output [M, N] in the activation dtype. ``parallelism=(n_tiles, k_split, unroll, nw)`` overrides
the decode kernel's shape (see ``_parallelism`` for the limits).

The kernel is built for decode shapes (small M): every weight word is read once, straight
into mma B fragments, and the K loop is split over the warps of a block so that enough
loads are in flight to stream the weights at memory bandwidth. Dequantization is 3
instructions per pair of weights (kaiodsl.tiles.dequant: one ``lop3``, one packed ``sub``, one
packed ``mul``); the accumulators are a tiles.AccTile and the store is the tile epilogue.
"""

from functools import lru_cache

import numpy as np

import kaiodsl
from kaiodsl import Const, Ptr, bf16, bf16x2, f16, f16x2, f32, i32, i64, tiles, u8, u32
from kaiodsl.tiles.dequant import MAGIC, group_consts, group_rows, int4_pair
from kaiodsl.errors import ArgumentError

from ._common import (data_alignment, inspect_array, is_int, new_like, require_contiguous, require_dtype,
                      require_i32_sizes, require_int, require_rank, same_kind)

# Parallelism of the decode kernel (measured on an H100 with a sweep script since folded into python -m kaiodsl tune):
N_TILES = 4        # warps per block along N
K_SPLIT = 4        # warps sharing one n range's K (partial sums reduced through shared memory)
UNROLL = 2         # 16-byte weight loads (each 128 k) issued before the first is used
NW = 1             # n8 tiles per warp: each A fragment load serves NW mma (M > 8 wants more)


@kaiodsl.func
def _split_sum(red, nt, v: Const[int], lane, e: Const[int], K_SPLIT: Const[int]):
    total = red[0, nt, v, lane, e]
    for q in kaiodsl.static_range(1, K_SPLIT):
        total = total + red[q, nt, v, lane, e]
    return total


def _make(dtype_name: str, group_size: int, has_zeros: bool, two_row_groups: bool,
          N_TILES: int = N_TILES, K_SPLIT: int = K_SPLIT, UNROLL: int = UNROLL, NW: int = NW,
          wdtype: str = "i32"):
    T = {"f16": f16, "bf16": bf16}[dtype_name]
    H2 = {"f16": f16x2, "bf16": bf16x2}[dtype_name]
    W = {"i32": i32, "u32": u32}[wdtype]   # packed words arrive as int32 (pack_int4) or uint32
    MAGIC_BITS, MAGIC_F = MAGIC[dtype_name]
    GS = group_size
    THREADS = 32 * N_TILES * K_SPLIT
    name = (f"w4a16_{dtype_name}_g{group_size}" + ("_zp" if has_zeros else "") +
            ("" if two_row_groups else "_m8") + f"_n{N_TILES}k{K_SPLIT}u{UNROLL}w{NW}_{wdtype}")

    ACC = tiles.AccTile(1, NW)            # one m16 x (8 NW) accumulator tile per warp
    OUT = tiles.Epilogue((), T)

    @kaiodsl.kernel(block_size=THREADS, name=name)
    def w4a16(a: Ptr[T], w: Ptr[W], scales: Ptr[T], zeros: Ptr[u8], c: Ptr[T], M: i32, N: i32, K: i32):
        red = kaiodsl.shared_array(f32, (K_SPLIT, N_TILES, NW, 32, 4))
        tid = kaiodsl.thread_idx.x
        lane = tid % 32
        warp = tid // 32
        nt = warp % N_TILES
        kq = warp // N_TILES
        ntile = (kaiodsl.block_idx.x * N_TILES + nt) * NW     # this warp's first n8 tile
        m0 = kaiodsl.block_idx.y * 16
        g = lane // 4
        t = lane % 4

        KB = K // 128                      # 128-wide k blocks: one 16-byte weight load each
        per = (KB + K_SPLIT - 1) // K_SPLIT
        b0 = kq * per
        b1 = min(b0 + per, KB) if ntile * 8 < N else b0   # the grid's last block may pass N
        G = K // GS
        # 64-bit bases: ntile x KB x 128 words (N K / 8) and row x K pass 2^31 on big operands
        wp = kaiodsl.ptr_cast(w + (i64(ntile * KB) * 32 + lane) * 4, u32)   # tile ntile + v: KB * 128 words on
        ok0 = m0 + g < M
        ok1 = m0 + g + 8 < M
        a0p = kaiodsl.ptr_cast(a + (i64(m0 + g) * K + 8 * t), u32)
        a1p = kaiodsl.ptr_cast(a + (i64(m0 + g + 8) * K + 8 * t), u32)
        zero = kaiodsl.bitcast(u32(0), H2)
        acc = tiles.fragments.zeros(ACC)
        qrows = [group_rows(scales, zeros, min((ntile + v) * 8 + g, N - 1), G) for v in range(NW)]
        for kb in range(b0, b1, UNROLL):
            words = [[kaiodsl.load(wp, (v * KB + kb + u) * 128, vec=4, cache="nc",
                                   mask=(kb + u < b1) and ((ntile + v) * 8 < N), other=0)
                      for v in range(NW)] for u in range(UNROLL)]
            for u in kaiodsl.static_range(UNROLL):
                if kb + u < b1:
                    for ci in kaiodsl.static_range(4):
                        k0 = (kb + u) * 128 + 32 * ci
                        if ci * 32 % GS == 0:
                            consts = [group_consts(qrows[v], k0 // GS, MAGIC_F, has_zeros, H2) for v in range(NW)]
                        x0 = kaiodsl.load(a0p, k0 // 2, vec=4, cache="nc", mask=ok0, other=0)
                        x1 = (kaiodsl.load(a1p, k0 // 2, vec=4, cache="nc", mask=ok1, other=0)
                              if two_row_groups else (0, 0, 0, 0))
                        for step in kaiodsl.static_range(2):
                            af = [kaiodsl.bitcast(x0[2 * step], H2),
                                  kaiodsl.bitcast(x1[2 * step], H2) if two_row_groups else zero,
                                  kaiodsl.bitcast(x0[2 * step + 1], H2),
                                  kaiodsl.bitcast(x1[2 * step + 1], H2) if two_row_groups else zero]
                            for v in kaiodsl.static_range(NW):
                                zz, s2 = consts[v]
                                word = words[u][v][ci]
                                bf = (int4_pair(word, 2 * step, zz, s2, MAGIC_BITS, H2),
                                      int4_pair(word, 2 * step + 1, zz, s2, MAGIC_BITS, H2))
                                acc[0][v] = kaiodsl.mma(af, bf, acc[0][v])
        for v in kaiodsl.static_range(NW):
            for e in kaiodsl.static_range(4):
                red[kq, nt, v, lane, e] = acc[0][v][e]
        kaiodsl.syncthreads()
        if kq == 0:           # the K split's partial tiles summed in a fixed order (deterministic)
            total = [[[_split_sum(red, nt, v, lane, e, K_SPLIT) for e in range(4)] for v in range(NW)]]
            tiles.epilogue.store_tile(OUT, ACC, total, c, (), m0, ntile * 8, lane, M, N)

    return w4a16


@lru_cache(maxsize=None)
def int4_kernel(dtype_name: str, group_size: int, has_zeros: bool, two_row_groups: bool = True,
                n_tiles: int = N_TILES, k_split: int = K_SPLIT, unroll: int = UNROLL, nw: int = NW,
                wdtype: str = "i32"):
    return _make(dtype_name, group_size, has_zeros, two_row_groups, n_tiles, k_split, unroll, nw, wdtype)


GRID_Y_MAX = 65535      # grid.y limit (CUDA C Programming Guide, "Compute Capabilities"): M is on grid.y


def _parallelism(op: str, p, M: int) -> tuple:
    """(warps along N, K split, unroll, n8 tiles per warp): the default for M, or a checked override."""
    if p is None:   # measured on an H100 (see PARALLELISM above)
        return (1, 8, 2, 4) if M <= 8 else (2, 4, 2, 2)
    if not (isinstance(p, (tuple, list)) and len(p) == 4 and all(is_int(v) and v >= 1 for v in p)):
        raise ArgumentError(f"{op}(): parallelism must be a tuple of 4 positive ints (n_tiles, k_split, unroll, "
                            f"nw), got {p!r}")
    nt, ks, un, nw = (int(v) for v in p)
    if 32 * nt * ks > 1024:
        raise ArgumentError(f"{op}(): parallelism={p!r} needs 32 * n_tiles * k_split = {32 * nt * ks} threads; "
                            f"a block has at most 1024")
    if ks * nt * nw * 512 > 48 * 1024:      # the reduction buffer: f32 [k_split, n_tiles, nw, 32, 4], static
        raise ArgumentError(f"{op}(): parallelism={p!r} needs k_split * n_tiles * nw * 512 = {ks * nt * nw * 512} "
                            f"bytes of static shared memory; a block has at most 49152 (k_split * n_tiles * nw "
                            f"<= 96)")
    if un > 8:
        raise ArgumentError(f"{op}(): parallelism={p!r}: unroll must be at most 8 (each unrolled load holds "
                            f"4 * nw registers)")
    return nt, ks, un, nw


def matmul_int4(a, w_packed, scales, *, zeros=None, group_size: int = 128, parallelism=None, config=None):
    """``a @ W^T`` with W [N, K] int4 (packed by ``pack_int4``), per-group ``scales`` (and ``zeros``).

    On sm_90a, M > 64 runs the TMA + wgmma kernel of ops/gemm_sm90_w4.py (``use_sm90_w4``);
    ``config`` (a ``gemm_sm90_w4.W4Config``) picks its tiling and requires that kernel."""
    op = "matmul_int4"
    group_size = require_int(op, "group_size", group_size, allowed=(32, 64, 128))
    az = inspect_array("a", a, op)
    wz = inspect_array("w_packed", w_packed, op)
    sz = inspect_array("scales", scales, op)
    require_rank(az, 2, op, "a matrix [M, K]")
    require_dtype(az, (f16, bf16), op)
    require_dtype(wz, (i32, u32), op)
    if len(wz.shape) != 4 or wz.shape[2:] != (32, 4):
        raise ArgumentError(f"{op}(): 'w_packed' must have the pack_int4 layout [N // 8, K // 128, 32, 4], "
                            f"got shape {wz.shape}")
    M, K = az.shape
    N = wz.shape[0] * 8
    if wz.shape[1] * 128 != K:
        raise ArgumentError(f"{op}(): 'w_packed' {wz.shape} holds K={wz.shape[1] * 128}, but a has K={K} "
                            f"(K must be a multiple of 128)")
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
    nt, ks, un, nw = _parallelism(op, parallelism, M)
    require_i32_sizes(op, M=M, N=N, K=K)
    if K == 0 and M and N:
        raise ArgumentError(f"{op}(): K=0: the product would be all zeros; nothing to compute")
    from .gemm_sm90_w4 import sm90_w4_plan, use_sm90_w4

    w4cfg = sm90_w4_plan(op, M, N, K, use_sm90_w4(M, N, K, group_size), parallelism, data_alignment(az),
                         config)          # None: another kernel
    tiled = M > 16 and parallelism is None  # prefill: the block-tiled kernel (ops/matmul_int4_tiled.py)
    grid = ((N + 8 * nt * nw - 1) // (8 * nt * nw), (M + 15) // 16)
    if not tiled and grid[1] > GRID_Y_MAX:
        raise ArgumentError(f"{op}(): M={M} with parallelism={parallelism!r} needs {grid[1]} blocks of 16 rows "
                            f"in grid.y, which holds at most {GRID_Y_MAX} (M <= {GRID_Y_MAX * 16}); leave "
                            f"parallelism unset for large M (the tiled kernel)")
    out = new_like(az, (M, N), az.dtype)
    if M == 0 or N == 0:
        return out
    z = zeros if zeros is not None else new_like(az, (1,), u8)
    if w4cfg is not None:                 # TMA + wgmma, B dequantized into shared memory
        from .gemm_sm90_w4 import launch_w4_sm90

        return launch_w4_sm90(a, w_packed, scales, z, out, M, N, K, az.dtype.name, group_size,
                              zeros is not None, wz.dtype.name, w4cfg)
    if tiled:                             # it reads each weight tile once per block
        from .matmul_int4_tiled import launch_int4_tiled

        return launch_int4_tiled(a, w_packed, scales, z, out, M, N, K, az.dtype.name, group_size,
                                 zeros is not None, wz.dtype.name)
    k = int4_kernel(az.dtype.name, group_size, zeros is not None, M > 8, nt, ks, un, nw, wz.dtype.name)
    k[grid, 32 * nt * ks](a, w_packed, scales, z, out, M, N, K)
    return out


def reference_matmul_int4(a, q, scales, zeros=None, group_size: int = 128) -> np.ndarray:
    """float64 product of ``a`` with the reference-dequantized weights (ops.int4_pack.dequantize)."""
    from .int4_pack import dequantize

    w = dequantize(q, scales, zeros, group_size, np.float16 if np.asarray(scales).dtype == np.float16
                   else np.float32)
    return np.asarray(a, np.float64) @ np.asarray(w, np.float64).T
