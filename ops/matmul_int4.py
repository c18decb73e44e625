"""W4A16 GEMM (GPTQ-style): ``matmul_int4(a, w_packed, scales, *, zeros=None, group_size=128, parallelism=None,
config=None)``.

``a`` [M, K] f16/bf16 activations; ``w_packed`` the int4 weights of an [N, K] matrix in the
layout of ops/int4_pack.py (``kaiodsl.ops.pack_int4``); ``scales`` [N, K // group_size] in the
activation dtype; ``zeros`` optional [N, K // group_size] uint8 zero points (default 8).
Output [M, N] in the activation dtype.

Decode sizes (M <= 16) run ops/decode_gemm.py's weight stream: every weight word is read once,
straight into mma B fragments, dequantized in 3 instructions a pair (kaiodsl.tiles.dequant), with K
split over the warps of a block and, with ``DecodeConfig(splits=)``, over blocks too (the last block of
a column tile sums the f32 partials in split order: deterministic), optionally the block's A rows
staged once in shared memory (``stage_a``). ``int4_decode_config`` is the default; ``config=DecodeConfig(...)`` or the older
``parallelism=(n_tiles, k_split, unroll, nw)`` (unsplit, unstaged) override it. Larger M takes the
tiled kernel (ops/matmul_int4_tiled.py) or, on sm_90a, the swap-AB kernel (ops/gemm_sm90_w4_swap.py;
ops/gemm_sm90_w4.py's shared-B kernel by ``config=``).
"""

from dataclasses import replace
from functools import lru_cache

import numpy as np

import kaiodsl
from kaiodsl import Ptr, bf16, f16, f32, i32, tiles, u8, u32
from kaiodsl.errors import ArgumentError

from . import decode_gemm
from .decode_gemm import DecodeConfig, DecodeGemm, decode_exact
from .matmul_decode import check_decode_config, split_buffers
from ._common import (data_alignment, inspect_array, is_int, new_like, require_contiguous, require_dtype,
                      require_i32_sizes, require_int, require_rank, same_kind)

# The old default shapes of the decode kernel, (n_tiles, k_split, unroll, nw), measured on an H100:
# M <= 8 (1, 8, 2, 4), else (2, 4, 2, 2); decode_config keeps them where nothing better was found.
N_TILES = 4        # warps per block along N
K_SPLIT = 4        # warps sharing one n range's K (partial sums reduced through shared memory)
UNROLL = 2         # 16-byte weight loads (each 128 k) issued before the first is used
NW = 1             # n8 tiles per warp: each A fragment load serves NW mma (M > 8 wants more)


@lru_cache(maxsize=None)
def decode_kernel(dtype_name: str, group_size: int, has_zeros: bool, two_rows: bool, cfg: DecodeConfig,
                  wdtype: str = "i32", exact: bool = False):
    """The W4A16 decode kernel (ops/decode_gemm.py's main loop on int4 weights) for ``cfg``; ``exact``:
    decode_exact(cfg, K, 128) holds for the K it runs (no K mask)."""
    T = {"f16": f16, "bf16": bf16}[dtype_name]
    W = {"i32": i32, "u32": u32}[wdtype]   # packed words arrive as int32 (pack_int4) or uint32
    G = DecodeGemm(cfg, T, "int4", group_size, has_zeros, two_rows, exact)
    OUT = tiles.Epilogue((), T)
    name = (f"w4a16_{dtype_name}_g{group_size}" + ("_zp" if has_zeros else "") + ("" if two_rows else "_m8") +
            f"_{cfg}_{wdtype}" + ("_x" if exact else ""))

    @kaiodsl.kernel(block_size=cfg.threads, name=name)
    def w4a16(a: Ptr[T], w: Ptr[W], scales: Ptr[T], zeros: Ptr[u8], c: Ptr[T], ws: Ptr[f32], ticket: Ptr[i32],
              M: i32, N: i32, K: i32):
        sm = kaiodsl.dynamic_shared(f32)
        tid = kaiodsl.thread_idx.x
        col0 = kaiodsl.block_idx.x * cfg.block_n
        m0 = kaiodsl.block_idx.y * 16
        acc = decode_gemm.main_loop(G, sm.ptr(0), a, kaiodsl.ptr_cast(w, u32), scales, zeros, M, N, K, m0, col0)
        acc, active = decode_gemm.combine_splits(G, sm.ptr(0), acc, ws, ticket)
        nt, kq = decode_gemm.warp_place(G, tid)
        if active:
            tiles.epilogue.store_tile(OUT, G.acc_tile, acc, c, (), m0, col0 + nt * 8 * cfg.nw, tid % 32, M, N)

    return w4a16


def int4_kernel(dtype_name: str, group_size: int, has_zeros: bool, two_row_groups: bool = True,
                n_tiles: int = N_TILES, k_split: int = K_SPLIT, unroll: int = UNROLL, nw: int = NW,
                wdtype: str = "i32"):
    """decode_kernel for an unsplit, unstaged ``parallelism=(n_tiles, k_split, unroll, nw)``."""
    return decode_kernel(dtype_name, group_size, has_zeros, two_row_groups,
                         DecodeConfig(n_tiles, k_split, nw, unroll), wdtype)


GRID_Y_MAX = 65535      # grid.y limit (CUDA C Programming Guide, "Compute Capabilities"): M is on grid.y


def int4_decode_config(M: int, N: int, K: int, sms: int = 132) -> DecodeConfig:
    """The decode kernel's default for M <= 16 rows: unstaged, unsplit weight streams of 8 warps along K.

    Up to M = 8, 32-column blocks (2.45x cuBLAS at M = 1, N = K = 8192 on the H200). Past it, 32-column
    blocks where N / 32 of them are ~2 an SM (N = K = 8192: 15.8 us, 2.14x cuBLAS; N 14336, K 4096:
    17.5 us, 1.75x), else 16-column ones, twice the blocks (N = K = 4096: 7.0 us, 1.38x, against 8.8 us
    for 128 blocks of 32 columns). logs/decode_int4_late_2026-12-03b.log (scripts/decode_int4_sweep.py
    --late, then timed over one weight buffer): no late_scale, prefetch_a, staged-A or K-split tiling (``DecodeConfig(...)``) was faster
    at these shapes. ``K`` is kept for shape-dependent choices."""
    if M <= 8 or -(-N // 32) >= 1.9 * sms:
        return DecodeConfig(1, 8, 4, 2)
    return DecodeConfig(1, 8, 2, 2)


def staged_decode_config(M: int, N: int, K: int, sms: int = 132) -> DecodeConfig:
    """The staged-A, K-split candidate the sweep times: 128-column blocks (4 warps of 4 n8 tiles, 2 warps
    along K) that stage their A rows once in shared memory and prefetch weights a step ahead, K split
    across ~2 blocks an SM, the partials summed by the last block of each column tile."""
    cfg = DecodeConfig(n_tiles=4, k_split=2, nw=4, unroll=1, stage_a=True, prefetch=True)
    tiles_n = max(-(-N // cfg.block_n), 1)
    units = K // 128
    splits = max(1, min(round(2 * sms / tiles_n), units // (cfg.k_split * cfg.unroll), 16))
    while replace(cfg, splits=splits).a_bytes(K, 128, M > 8) > A_BUDGET and splits < units:
        splits += 1                   # long K: more splits until the staged A fits 2 blocks an SM
    cfg = replace(cfg, splits=splits)
    if cfg.a_bytes(K, 128, M > 8) > A_BUDGET:
        cfg = replace(cfg, stage_a=False)
    return cfg


A_BUDGET = 96 * 1024    # staged A bytes a block at most (two blocks an SM in 227 KB with the rest)


def _decode_cfg(op: str, p, config, M: int, N: int, K: int) -> DecodeConfig:
    """The decode kernel's config: ``config`` (a DecodeConfig), ``parallelism`` (n_tiles, k_split, unroll,
    nw), or the heuristic; checked (ArgumentError naming the field, its value and what is allowed)."""
    if isinstance(config, DecodeConfig):
        if p is not None:
            raise ArgumentError(f"{op}(): config={config!r} and parallelism={p!r} both shape the decode kernel: "
                                f"pass one")
        cfg = config
    elif p is None:
        from .gemm_sm90 import sm_count

        cfg = int4_decode_config(M, N, K, sm_count())
    else:
        if not (isinstance(p, (tuple, list)) and len(p) == 4 and all(is_int(v) and v >= 1 for v in p)):
            raise ArgumentError(f"{op}(): parallelism must be a tuple of 4 positive ints (n_tiles, k_split, "
                                f"unroll, nw), got {p!r}")
        nt, ks, un, nw = (int(v) for v in p)
        if 32 * nt * ks > 1024:
            raise ArgumentError(f"{op}(): parallelism={p!r} needs 32 * n_tiles * k_split = {32 * nt * ks} "
                                f"threads; a block has at most 1024")
        if ks * nt * nw * 512 > 48 * 1024:  # the legacy tuple's contract: a reduction buffer in static smem
            raise ArgumentError(f"{op}(): parallelism={p!r} needs k_split * n_tiles * nw * 512 = "
                                f"{ks * nt * nw * 512} bytes of shared memory; at most 49152 (k_split * n_tiles * "
                                f"nw <= 96); config=DecodeConfig(...) takes larger blocks")
        cfg = DecodeConfig(nt, ks, nw, un)
    check_decode_config(op, cfg, True, K, 128, M > 8)
    if cfg.unroll > 8:
        raise ArgumentError(f"{op}(): config {cfg!r}: unroll={cfg.unroll} must be at most 8 (each unrolled load "
                            f"holds 4 * nw registers)")
    return cfg


def matmul_int4(a, w_packed, scales, *, zeros=None, group_size: int = 128, parallelism=None, config=None):
    """``a @ W^T`` with W [N, K] int4 (packed by ``pack_int4``), per-group ``scales`` (and ``zeros``).

    On sm_90a, M > 16 runs the TMA + wgmma swap-AB kernel of ops/gemm_sm90_w4_swap.py (``use_sm90_w4``,
    ``swap_config``); ``config`` a ``gemm_sm90_w4_swap.W4SwapConfig`` picks its tiling, a
    ``gemm_sm90_w4.W4Config`` the shared-B kernel's (both need sm_90a)."""
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
    require_i32_sizes(op, M=M, N=N, K=K)
    if K == 0 and M and N:
        raise ArgumentError(f"{op}(): K=0: the product would be all zeros; nothing to compute")
    from .gemm_sm90_w4 import sm90_w4_plan, use_sm90_w4
    from .gemm_sm90_w4_swap import W4SwapConfig

    decode = isinstance(config, DecodeConfig)
    w4cfg = None if decode else sm90_w4_plan(op, M, N, K, use_sm90_w4(M, N, K, group_size), parallelism,
                                             min(data_alignment(az), data_alignment(wz)), config,
                                             group_size)  # None: another kernel
    tiled = M > 16 and parallelism is None and not decode  # prefill: the block-tiled kernel (matmul_int4_tiled)
    if not tiled and w4cfg is None:
        cfg = _decode_cfg(op, parallelism, config, M, N, K)
        grid = (-(-N // cfg.block_n), (M + 15) // 16, cfg.splits)
    if not tiled and w4cfg is None and grid[1] > GRID_Y_MAX:
        raise ArgumentError(f"{op}(): M={M} with parallelism={parallelism!r} needs {grid[1]} blocks of 16 rows "
                            f"in grid.y, which holds at most {GRID_Y_MAX} (M <= {GRID_Y_MAX * 16}); leave "
                            f"parallelism unset for large M (the tiled kernel)")
    out = new_like(az, (M, N), az.dtype)
    if M == 0 or N == 0:
        return out
    z = zeros if zeros is not None else new_like(az, (1,), u8)
    if isinstance(w4cfg, W4SwapConfig):   # TMA + wgmma, the weights dequantized into wgmma's A registers
        from .gemm_sm90_w4_swap import launch_w4_swap

        return launch_w4_swap(a, w_packed, scales, z, out, M, N, K, az.dtype.name, group_size,
                              zeros is not None, wz.dtype.name, w4cfg)
    if w4cfg is not None:                 # TMA + wgmma, B dequantized into shared memory
        from .gemm_sm90_w4 import launch_w4_sm90

        return launch_w4_sm90(a, w_packed, scales, z, out, M, N, K, az.dtype.name, group_size,
                              zeros is not None, wz.dtype.name, w4cfg)
    if tiled:                             # it reads each weight tile once per block
        from .matmul_int4_tiled import launch_int4_tiled

        return launch_int4_tiled(a, w_packed, scales, z, out, M, N, K, az.dtype.name, group_size,
                                 zeros is not None, wz.dtype.name)
    k = decode_kernel(az.dtype.name, group_size, zeros is not None, M > 8, cfg, wz.dtype.name,
                      decode_exact(cfg, K, 128))
    ws, ticket = split_buffers(az, cfg, grid[0] * grid[1])
    k[grid, cfg.threads](a, w_packed, scales, z, out, ws, ticket, M, N, K,
                         smem=cfg.smem_bytes(a_bytes=cfg.a_bytes(K, 128, M > 8)))
    return out


def reference_matmul_int4(a, q, scales, zeros=None, group_size: int = 128) -> np.ndarray:
    """float64 product of ``a`` with the reference-dequantized weights (ops.int4_pack.dequantize)."""
    from .int4_pack import dequantize

    w = dequantize(q, scales, zeros, group_size, np.float16 if np.asarray(scales).dtype == np.float16
                   else np.float32)
    return np.asarray(a, np.float64) @ np.asarray(w, np.float64).T
