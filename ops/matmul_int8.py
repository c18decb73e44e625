"""int8 GEMMs on mma.m16n8k32.s8: W8A8 and SmoothQuant.

* ``matmul_int8(a, b, scale)``: ``(a_int8 @ b_int8^T) * scale`` as f32 -- int32 accumulation,
  one f32 scale. ``b`` is [N, K] (K contiguous), the layout int8 tensor cores read.
* ``matmul_w8a8(a_q, w_q, act_scale, weight_scale, bias=None, out_dtype=f16)``: ``w_q`` [N, K];
  ``act_scale`` per token [M] or one scalar (SmoothQuant's static per-tensor scale);
  ``weight_scale`` per output channel [N]. ``out[m, n] = acc[m, n] * act[m] * w[n] (+ bias[n])``,
  computed in f32 and rounded once to ``out_dtype``.

The kernel is the f16 GEMM's (kaiodsl.tiles.gemm) with an s8 atom: tiles are counted in bytes, and a
32-byte k-slab is one m16n8k32 step.
"""

from functools import lru_cache

import numpy as np

import kaiodsl
from kaiodsl import Ptr, bf16, f16, f32, i8, i32, tiles
from kaiodsl.errors import ArgumentError

from ._common import inspect_array, new_like, require_contiguous, require_dtype, require_rank, same_kind
from .matmul import GemmConfig, _dtype_name, block_gemm, dummy_f32, gemm_body, needs_wide


def int8_config(M: int, N: int, K: int) -> GemmConfig:
    """block_k counts int8 elements: 64 -> 64-byte rows, as the f16 kernel's 32 (tuned on an H100)."""
    if M <= 16:
        return GemmConfig(block_m=16, block_n=64, block_k=128, warps_m=1, warps_n=2, stages=4)
    if M <= 512:
        return GemmConfig(block_m=64, block_n=64, block_k=64, warps_m=2, warps_n=2, stages=4)
    return GemmConfig(block_m=128, block_n=128, block_k=64, warps_m=2, warps_n=2, stages=4)


@lru_cache(maxsize=None)
def int8_kernel(out_name: str, cfg: GemmConfig, row_scale: bool, col_scale: bool, has_bias: bool,
                wide: bool = False):
    OUT = {"f16": f16, "bf16": bf16, "f32": f32}[out_name]
    G = block_gemm(cfg, i8, True, "s8", wide)
    ops_ = ((tiles.Scale(),) + ((tiles.RowScale(),) if row_scale else ())
            + ((tiles.ColScale(),) if col_scale else ()) + ((tiles.Bias(),) if has_bias else ()))
    E = tiles.Epilogue(ops_, OUT)
    name = (f"gemm_s8_{out_name}_{cfg.block_m}x{cfg.block_n}x{cfg.block_k}_w{cfg.warps_m}x{cfg.warps_n}"
            f"_s{cfg.stages}" + ("_rs" if row_scale else "") + ("_cs" if col_scale else "")
            + ("_bias" if has_bias else "") + ("_wide" if wide else ""))

    @kaiodsl.kernel(block_size=cfg.threads, name=name)
    def gemm_s8(a: Ptr[i8], b: Ptr[i8], c: Ptr[OUT], rscale: Ptr[f32], cscale: Ptr[f32], bias: Ptr[f32],
                alpha: f32, M: i32, N: i32, K: i32):
        args = ((alpha,) + ((rscale,) if row_scale else ()) + ((cscale,) if col_scale else ())
                + ((bias,) if has_bias else ()))
        gemm_body(G, E, a, b, c, args, M, N, K)

    return gemm_s8


def _check_int8_pair(op, a, b, a_name="a", b_name="b"):
    az, bz = inspect_array(a_name, a, op), inspect_array(b_name, b, op)
    require_rank(az, 2, op, "a matrix [M, K]")
    require_rank(bz, 2, op, "a matrix [N, K]")
    require_dtype(az, (i8,), op)
    require_dtype(bz, (i8,), op)
    same_kind(op, az, bz)
    M, K = az.shape
    N, Kb = bz.shape
    if Kb != K:
        raise ArgumentError(f"{op}(): {a_name} is [M, K] = {az.shape} and {b_name} is [N, K] = {bz.shape}: "
                            f"K={K} and {Kb} differ")
    require_contiguous(az, op)
    require_contiguous(bz, op)
    if K % 16:
        raise ArgumentError(f"{op}(): K={K} must be a multiple of 16 (16-byte rows for the cp.async copies)")
    return az, bz, M, N, K


def _launch(az, a, b, out, rs, cs, bias, alpha, M, N, K, cfg, out_name, flags):
    cfg.check(1)
    if M == 0 or N == 0:
        return out
    k = int8_kernel(out_name, cfg, *flags, needs_wide(M, N, K))
    grid = ((M + cfg.block_m - 1) // cfg.block_m) * ((N + cfg.block_n - 1) // cfg.block_n)
    k[grid, cfg.threads](a, b, out, rs, cs, bias, float(alpha), M, N, K, smem=cfg.smem_bytes(1))
    return out


def matmul_int8(a, b, scale=1.0, *, config=None):
    """W8A8 GEMM: int8 a [M, K] x int8 b [N, K] -> f32 [M, N] = (a @ b^T) * scale (int32 accumulation)."""
    op = "matmul_int8"
    az, bz, M, N, K = _check_int8_pair(op, a, b)
    if not isinstance(scale, (int, float, np.floating, np.integer)) or isinstance(scale, bool):
        raise ArgumentError(f"{op}(): scale must be a Python float, got {scale!r}")
    cfg = config or int8_config(M, N, K)
    cfg.check(1)
    out = new_like(az, (M, N), f32)
    d = dummy_f32(az)
    return _launch(az, a, b, out, d, d, d, scale, M, N, K, cfg, "f32", (False, False, False))


def matmul_w8a8(a_q, w_q, act_scale, weight_scale, *, bias=None, out_dtype="f16", config=None):
    """SmoothQuant W8A8: ``(a_q @ w_q^T) * act_scale[:, None] * weight_scale[None, :] (+ bias)``."""
    op = "matmul_w8a8"
    az, wz, M, N, K = _check_int8_pair(op, a_q, w_q, "a_q", "w_q")
    out_name = _dtype_name(out_dtype, "f16")
    if out_name not in ("f16", "bf16", "f32"):
        raise ArgumentError(f"{op}(): out_dtype must be f16, bf16 or f32, got {out_dtype!r}")
    alpha, rs, row_scale = 1.0, None, False
    if isinstance(act_scale, (int, float, np.floating, np.integer)) and not isinstance(act_scale, bool):
        alpha = float(act_scale)
    else:
        sz = inspect_array("act_scale", act_scale, op)
        require_dtype(sz, (f32,), op)
        if sz.shape != (M,):
            raise ArgumentError(f"{op}(): act_scale must be per token [M={M}] or a Python float (per tensor), "
                                f"got an array of shape {sz.shape}")
        same_kind(op, az, sz)
        require_contiguous(sz, op)
        rs, row_scale = act_scale, True
    wsz = inspect_array("weight_scale", weight_scale, op)
    require_dtype(wsz, (f32,), op)
    if wsz.shape != (N,):
        raise ArgumentError(f"{op}(): weight_scale must be per output channel [N={N}], got shape {wsz.shape}")
    same_kind(op, az, wsz)
    require_contiguous(wsz, op)
    from .matmul import _bias_f32

    cfg = config or int8_config(M, N, K)
    cfg.check(1)
    bias_arg = _bias_f32(bias, az, N, op)           # the last check; allocates only when all passed
    if rs is None:
        rs = dummy_f32(az)
    out = new_like(az, (M, N), {"f16": f16, "bf16": bf16, "f32": f32}[out_name])
    return _launch(az, a_q, w_q, out, rs, weight_scale, bias_arg, alpha, M, N, K, cfg, out_name,
                   (row_scale, True, bias is not None))


def reference_matmul_int8(a, b) -> np.ndarray:
    """Exact int64 product a [M, K] @ b [N, K]^T (the int32 accumulator's value when it does not overflow)."""
    return np.asarray(a, np.int64) @ np.asarray(b, np.int64).T


def reference_matmul_w8a8(a_q, w_q, act_scale, weight_scale, bias=None) -> np.ndarray:
    acc = reference_matmul_int8(a_q, w_q).astype(np.float64)
    act = np.asarray(act_scale, np.float64).reshape(-1, 1) if np.ndim(act_scale) else float(act_scale)
    out = acc * act * np.asarray(weight_scale, np.float64)[None, :]
    if bias is not None:
        out = out + np.asarray(bias, np.float64)[None, :]
    return out

