"""W8A16 GEMM: ``matmul_w8a16(a, w_q, scales, *, bias=None, group_size=None, out_dtype=None)``.

``a`` [M, K] f16/bf16 activations; ``w_q`` [N, K] int8 weights (the ``nn.Linear`` layout, no
repacking); ``scales`` either [N] f16/bf16/f32 per output channel (``W = q * scales[n]``, applied in
f32 in the epilogue) or, with ``group_size``, [N, K // group_size] in the activation dtype
(``W = q * scales[n, k // group_size]`` rounded once to the activation dtype, as
``reference_matmul_w8a16`` does). ``bias`` [N]; f32 accumulation; out f16/bf16/f32 (default: a's).
K must be a multiple of 16 (weight rows are copied in 16-byte pieces); M and N are free.

The kernels: for M <= 16 (and K a multiple of 64) ops/decode_gemm.py's K-split weight stream; on
sm_90a past M = 16 the swap-AB kernel of ops/gemm_sm90_w4_swap.py (int8 rows by TMA, dequantized into
wgmma's register A operand); else ops/w8_gemm.py's main loop (the tile library's cp.async ring with
int8 dequant on load); all end in the tile epilogue. ``w8_config(M, N, K)`` picks the tiling,
``config=`` (a W8Config, a DecodeConfig, or on sm_90a a gemm_sm90_w4_swap.W4SwapConfig or the
shared-B kernel's gemm_sm90_w4.W4Config) overrides it.
"""


from functools import lru_cache

import numpy as np

import kaiodsl
from kaiodsl import Const, Ptr, bf16, f16, f32, i8, i32, tiles
from kaiodsl.errors import ArgumentError

from ._common import (data_alignment, inspect_array, new_like, require_contiguous, require_dtype, require_rank,
                      same_kind)
from .matmul import _bias_f32, _dtype_name, dummy_f32, needs_wide
from . import w8_gemm
from .decode_gemm import DecodeConfig, DecodeGemm, decode_exact
from .matmul_decode import check_decode_config, split_buffers
from .w8_gemm import W8Config, W8Gemm
from . import decode_gemm

DECODE = DecodeConfig(n_tiles=1, k_split=8, nw=4, unroll=2)     # M <= 16: the K-split weight stream
SMALL_M = W8Config(block_m=64, block_n=64, block_k=64, warps_m=2, warps_n=2, stages=4)
LARGE_M = W8Config(block_m=128, block_n=128, block_k=64, warps_m=2, warps_n=4, stages=3)
GROUP_SIZES = (64, 128, 256)


def w8_config(M: int, N: int, K: int, group_size: int = 0) -> W8Config:
    """Decode sizes (M <= 16): the K-split weight stream (16 rows, 32 columns a block, 8 warps along K);
    larger M: 64/128-square tiles."""
    if M <= 16 and K % 64 == 0:
        cfg = DECODE
    elif M <= 16:
        cfg = W8Config(block_m=16, block_n=32, block_k=64, warps_m=1, warps_n=2, stages=4)
    elif M <= 512:
        cfg = SMALL_M
    else:
        cfg = LARGE_M
    if group_size and isinstance(cfg, W8Config) and group_size % cfg.block_k:
        from dataclasses import replace

        cfg = replace(cfg, block_k=64)
    return cfg


@kaiodsl.func
def w8a16_body(G: Const, E: Const, a, w, gscales, c, args, M, N, K):
    smem = kaiodsl.dynamic_shared(G.dtype)
    tid = kaiodsl.thread_idx.x
    row0, col0 = tiles.gemm.tile_coords(M, N, G.bm, G.bn, G.group_m)
    acc = w8_gemm.main_loop(G, smem, a, kaiodsl.ptr_cast(w, G.dtype), gscales, M, N, K, row0, col0)
    wm0, wn0 = w8_gemm.warp_origin(G, tid)
    tiles.epilogue.store_tile(E, G.warp.acc_tile, acc, c, args, row0 + wm0, col0 + wn0, tid % 32, M, N)


@lru_cache(maxsize=None)
def w8a16_kernel(dtype_name: str, out_name: str, cfg: W8Config, group_size: int, has_bias: bool,
                 wide: bool = False):
    T = {"f16": f16, "bf16": bf16}[dtype_name]
    OUT = {"f16": f16, "bf16": bf16, "f32": f32}[out_name]
    G = W8Gemm(cfg, T, group_size, wide)
    ops = (() if group_size else (tiles.ColScale(),)) + ((tiles.Bias(),) if has_bias else ())
    E = tiles.Epilogue(ops, OUT)
    name = (f"w8a16_{dtype_name}_{out_name}_{cfg.block_m}x{cfg.block_n}x{cfg.block_k}_w{cfg.warps_m}x"
            f"{cfg.warps_n}_s{cfg.stages}" + (f"_g{group_size}" if group_size else "_pc") +
            ("_bias" if has_bias else "") + ("_wide" if wide else ""))

    @kaiodsl.kernel(block_size=cfg.threads, name=name)
    def w8a16(a: Ptr[T], w: Ptr[i8], scales: Ptr[f32], gscales: Ptr[T], c: Ptr[OUT], bias: Ptr[f32],
              M: i32, N: i32, K: i32):
        args = ((scales,) if not group_size else ()) + ((bias,) if has_bias else ())
        w8a16_body(G, E, a, w, gscales, c, args, M, N, K)

    return w8a16


@lru_cache(maxsize=None)
def w8a16_decode_kernel(dtype_name: str, out_name: str, cfg: DecodeConfig, group_size: int, has_bias: bool,
                        two_rows: bool, exact: bool = False):
    T = {"f16": f16, "bf16": bf16}[dtype_name]
    OUT = {"f16": f16, "bf16": bf16, "f32": f32}[out_name]
    G = DecodeGemm(cfg, T, "int8", group_size, False, two_rows, exact)
    ops = (() if group_size else (tiles.ColScale(),)) + ((tiles.Bias(),) if has_bias else ())
    E = tiles.Epilogue(ops, OUT)
    name = (f"w8a16_decode_{dtype_name}_{out_name}_{cfg}" + (f"_g{group_size}" if group_size else "_pc") +
            ("_bias" if has_bias else "") + ("" if two_rows else "_m8") + ("_x" if exact else ""))

    @kaiodsl.kernel(block_size=cfg.threads, name=name)
    def w8a16_decode(a: Ptr[T], w: Ptr[i8], scales: Ptr[f32], gscales: Ptr[T], c: Ptr[OUT], bias: Ptr[f32],
                     ws: Ptr[f32], ticket: Ptr[i32], M: i32, N: i32, K: i32):
        sm = kaiodsl.dynamic_shared(f32)
        tid = kaiodsl.thread_idx.x
        col0 = kaiodsl.block_idx.x * cfg.block_n
        m0 = kaiodsl.block_idx.y * 16
        acc = decode_gemm.main_loop(G, sm.ptr(0), a, kaiodsl.ptr_cast(w, kaiodsl.u32), gscales, gscales, M, N, K,
                                    m0, col0)
        acc, active = decode_gemm.combine_splits(G, sm.ptr(0), acc, ws, ticket)
        nt, kq = decode_gemm.warp_place(G, tid)
        args = ((scales,) if not group_size else ()) + ((bias,) if has_bias else ())
        if active:
            tiles.epilogue.store_tile(E, G.acc_tile, acc, c, args, m0, col0 + nt * 8 * cfg.nw, tid % 32, M, N)

    return w8a16_decode


def _vec_f32(x, like, n: int, op: str, name: str):
    """A per-channel vector [n] as f32 (converted on the host side / by torch when it is f16/bf16)."""
    xz = inspect_array(name, x, op)
    require_rank(xz, 1, op, f"a vector [{n}]")
    require_dtype(xz, (f16, bf16, f32), op)
    if xz.shape[0] != n:
        raise ArgumentError(f"{op}(): '{name}' has {xz.shape[0]} elements; it must have N={n}")
    same_kind(op, like, xz)
    require_contiguous(xz, op)
    if xz.dtype == f32:
        return x
    if xz.kind == "torch":
        return x.float().contiguous()
    if xz.kind == "numpy":
        return x.astype(np.float32)
    raise ArgumentError(f"{op}(): give '{name}' as f32 for a {xz.kind} array (got {xz.dtype})")


def check_weights(op: str, az, wname: str, w, K: int):
    """An int8 [N, K] weight matrix matching a's K; returns (its Arr, N)."""
    wz = inspect_array(wname, w, op)
    require_rank(wz, 2, op, "an int8 matrix [N, K]")
    require_dtype(wz, (i8,), op)
    if wz.shape[1] != K:
        raise ArgumentError(f"{op}(): a is [M, K] = {az.shape} but '{wname}' [N, K] is {wz.shape}: K={K} and "
                            f"{wz.shape[1]} differ")
    require_contiguous(wz, op)
    return wz, wz.shape[0]


def check_scales(op: str, az, sname: str, s, N: int, K: int, group_size):
    """Per-channel [N] (-> f32) or per-group [N, K // group_size] (activation dtype) scales."""
    if group_size is None:
        return _vec_f32(s, az, N, op, sname)
    sz = inspect_array(sname, s, op)
    shape = (N, K // group_size)
    if sz.shape != shape:
        raise ArgumentError(f"{op}(): with group_size={group_size}, '{sname}' must be [N, K // group_size] = "
                            f"{shape}, got {sz.shape}")
    require_dtype(sz, (az.dtype,), op)
    require_contiguous(sz, op)
    same_kind(op, az, sz)
    return s


def check_group_size(op: str, group_size, K: int):
    if group_size is None:
        return
    if group_size not in GROUP_SIZES:
        raise ArgumentError(f"{op}(): group_size must be None (per-channel scales) or one of {GROUP_SIZES}, "
                            f"got {group_size!r}")
    if K % group_size:
        raise ArgumentError(f"{op}(): K={K} must be a multiple of group_size={group_size}")


def matmul_w8a16(a, w_q, scales, *, bias=None, group_size=None, out_dtype=None, config=None):
    """``a @ (w_q * scales).T`` with int8 ``w_q`` [N, K] (see the module doc)."""
    op = "matmul_w8a16"
    az = inspect_array("a", a, op)
    require_rank(az, 2, op, "a matrix [M, K]")
    require_dtype(az, (f16, bf16), op)
    M, K = az.shape
    require_contiguous(az, op)
    wz, N = check_weights(op, az, "w_q", w_q, K)
    same_kind(op, az, wz)
    if K % 16 or K == 0:
        raise ArgumentError(f"{op}(): K={K} must be a positive multiple of 16 (int8 weight rows are copied in "
                            f"16-byte pieces)")
    check_group_size(op, group_size, K)
    s = check_scales(op, az, "scales", scales, N, K, group_size)
    out_name = _dtype_name(out_dtype, az.dtype.name)
    if out_name not in ("f16", "bf16", "f32"):
        raise ArgumentError(f"{op}(): out_dtype must be f32, f16 or bf16, got {out_dtype!r}")
    bias_arg = _bias_f32(bias, az, N, op)
    from .gemm_sm90_w4 import W4Config, launch_w8_sm90, sm90_w4_plan, use_sm90_w8
    from .gemm_sm90_w4_swap import W4SwapConfig, launch_w8_swap

    sm90 = sm90_w4_plan(op, M, N, K, use_sm90_w8(M, N, K), None, min(data_alignment(az), data_alignment(wz)),
                        config) if config is None or isinstance(config, (W4Config, W4SwapConfig)) else None
    cfg = sm90 or config or w8_config(M, N, K, group_size or 0)
    if isinstance(cfg, DecodeConfig):
        if K % 64:
            raise ArgumentError(f"{op}(): a DecodeConfig needs K={K} to be a multiple of 64")
        check_decode_config(op, cfg, True, K, 64, M > 8)
    if group_size and isinstance(cfg, W8Config) and group_size % cfg.block_k:
        raise ArgumentError(f"{op}(): config {cfg}: block_k={cfg.block_k} must divide group_size={group_size}")
    out = new_like(az, (M, N), {"f16": f16, "bf16": bf16, "f32": f32}[out_name])
    if M == 0 or N == 0:
        return out
    gs = group_size or 0
    pc = dummy_f32(az) if gs else s
    gsc = s if gs else a
    if isinstance(sm90, W4SwapConfig):    # sm_90a: TMA + wgmma, int8 rows dequantized into wgmma's A registers
        return launch_w8_swap(a, w_q, pc, gsc, out, bias_arg, M, N, K, az.dtype.name, out_name, gs,
                              bias is not None, sm90)
    if sm90 is not None:                  # sm_90a: TMA + wgmma, int8 rows dequantized into shared memory
        return launch_w8_sm90(a, w_q, pc, gsc, out, bias_arg, M, N, K, az.dtype.name, out_name, gs,
                              bias is not None, sm90)
    if isinstance(cfg, DecodeConfig):
        k = w8a16_decode_kernel(az.dtype.name, out_name, cfg, gs, bias is not None, M > 8,
                                decode_exact(cfg, K, 64))
        grid = ((N + cfg.block_n - 1) // cfg.block_n, (M + 15) // 16, cfg.splits)
        ws, ticket = split_buffers(az, cfg, grid[0] * grid[1])
        k[grid, cfg.threads](a, w_q, pc, gsc, out, bias_arg, ws, ticket, M, N, K,
                             smem=cfg.smem_bytes(a_bytes=cfg.a_bytes(K, 64, M > 8)))
        return out
    else:
        k = w8a16_kernel(az.dtype.name, out_name, cfg, gs, bias is not None, needs_wide(M, N, K))
        grid = ((M + cfg.block_m - 1) // cfg.block_m) * ((N + cfg.block_n - 1) // cfg.block_n)
    k[grid, cfg.threads](a, w_q, pc, gsc, out, bias_arg, M, N, K, smem=cfg.smem_bytes())
    return out


def dequantize_w8(w_q, scales, group_size=None, dtype=np.float16) -> np.ndarray:
    """Reference weights: per-channel q * s in float64 (the kernel scales in f32 after the product), or
    per-group q * s rounded once to the activation dtype (float16, or float32 values for bf16)."""
    q = np.asarray(w_q, np.float64)
    s = np.asarray(scales, np.float64)
    if group_size is None:
        return q * s[:, None]
    w = q * np.repeat(s, group_size, axis=1)
    if dtype == np.float16:
        return w.astype(np.float16).astype(np.float64)
    from kaiodsl.runtime.args import floats_to_bf16_bits

    bits = floats_to_bf16_bits(w.astype(np.float32)).astype(np.uint32) << 16    # exact in f32, one rounding
    return bits.view(np.float32).astype(np.float64)


def reference_matmul_w8a16(a, w_q, scales, bias=None, group_size=None, bf16: bool = False) -> np.ndarray:
    """float64 product of ``a`` with the reference-dequantized weights (plus bias)."""
    w = dequantize_w8(w_q, scales, group_size, np.float32 if bf16 else np.float16)
    out = np.asarray(a, np.float64) @ w.T
    if bias is not None:
        out = out + np.asarray(bias, np.float64)
    return out
