"""int8 GEMMs on mma.m16n8k32.s8: W8A8 and SmoothQuant.

* ``matmul_int8(a, b, scale, *, b_layout="nk")``: ``(a_int8 @ b_int8^T) * scale`` as f32 -- int32
  accumulation, one f32 scale. ``b`` is [N, K] (K contiguous), the layout int8 tensor cores read.
* ``matmul_w8a8(a_q, w_q, act_scale, weight_scale, bias=None, out_dtype=f16, b_layout="nk")``:
  ``w_q`` [N, K]; ``act_scale`` per token [M] or one scalar (SmoothQuant's static per-tensor scale);
  ``weight_scale`` per output channel [N]. ``out[m, n] = acc[m, n] * act[m] * w[n] (+ bias[n])``,
  computed in f32 and rounded once to ``out_dtype``.

``b_layout="kn"`` takes ``b`` as [K, N] (KAIO's layout, ``a @ b``) and costs one transposed
copy of ``b`` (O(NK), in the input's framework) per call: ``ldmatrix .trans`` moves 16-bit
elements only (PTX ISA 9.7.9.26), so the kernel has no [K, N] path for int8. Keep weights in
[N, K] to avoid the copy.

On sm_90a, b as [N, K] past M = 64 with 16-byte aligned rows (K a multiple of 16) runs the Hopper
kernel (ops/gemm_sm90.py through ops/gemm_sm90_8bit.py: TMA + wgmma with s8 operands and s32
accumulators, the same epilogue as tiles.Epilogue ops); an ``Sm90Config`` as ``config=`` asks for it
(an ArgumentError where it cannot run). Everything else runs the mma.sync kernel below.

The mma.sync kernel is the f16 GEMM's (kaiodsl.tiles.gemm) with an s8 atom: tiles are counted in bytes, and a
32-byte k-slab is one m16n8k32 step. Any K >= 1: rows that do not start on 16-byte boundaries (K not a
multiple of 16, or a data pointer off 16 bytes) take the tile copies' element path (kaiodsl/tiles/copies.py).
"""

from functools import lru_cache

import numpy as np

import kaiodsl
from kaiodsl import Ptr, bf16, f16, f32, i8, i32, tiles
from kaiodsl.errors import ArgumentError

from . import gemm_sm90_8bit as sm90
from ._common import (copy_2d, data_alignment, inspect_array, is_real, new_like, require_choice, require_contiguous,
                      require_dtype, require_f32_scalar, require_i32_sizes, require_rank, same_kind)
from .matmul import (GemmConfig, _bias_f32, block_gemm, check_config, config_or_default, dummy_f32,
                     gemm_body, needs_wide, out_dtype_of, row_granule, tile_grid)


def int8_config(M: int, N: int, K: int, element_copies: bool = None) -> GemmConfig:
    """block_k counts int8 elements: 64 -> 64-byte rows, as the f16 kernel's 32 (tuned on an H100).
    ``element_copies`` (default: K % 16 != 0, rows off 16-byte boundaries): no 128x128 tile, which the
    element copies' extra registers would make spill (as in matmul.tiled_config)."""
    if element_copies is None:
        element_copies = K % 16 != 0
    if M <= 16:
        return GemmConfig(block_m=16, block_n=64, block_k=128, warps_m=1, warps_n=2, stages=4)
    if M <= 512 or element_copies:
        return GemmConfig(block_m=64, block_n=64, block_k=64, warps_m=2, warps_n=2, stages=4)
    return GemmConfig(block_m=128, block_n=128, block_k=64, warps_m=2, warps_n=2, stages=4)


@lru_cache(maxsize=None)
def int8_kernel(out_name: str, cfg: GemmConfig, row_scale: bool, col_scale: bool, has_bias: bool,
                wide: bool = False, a_granule: int = 0, b_granule: int = 0):
    OUT = {"f16": f16, "bf16": bf16, "f32": f32}[out_name]
    G = block_gemm(cfg, i8, True, "s8", wide, a_granule, b_granule)
    ops_ = ((tiles.Scale(),) + ((tiles.RowScale(),) if row_scale else ())
            + ((tiles.ColScale(),) if col_scale else ()) + ((tiles.Bias(),) if has_bias else ()))
    E = tiles.Epilogue(ops_, OUT)
    name = (f"gemm_s8_{out_name}_{cfg.block_m}x{cfg.block_n}x{cfg.block_k}_w{cfg.warps_m}x{cfg.warps_n}"
            f"_s{cfg.stages}" + ("_rs" if row_scale else "") + ("_cs" if col_scale else "")
            + ("_bias" if has_bias else "") + ("_wide" if wide else "")
            + (f"_ga{a_granule}" if a_granule else "") + (f"_gb{b_granule}" if b_granule else ""))

    @kaiodsl.kernel(block_size=cfg.threads, name=name)
    def gemm_s8(a: Ptr[i8], b: Ptr[i8], c: Ptr[OUT], rscale: Ptr[f32], cscale: Ptr[f32], bias: Ptr[f32],
                alpha: f32, M: i32, N: i32, K: i32):
        args = ((alpha,) + ((rscale,) if row_scale else ()) + ((cscale,) if col_scale else ())
                + ((bias,) if has_bias else ()))
        gemm_body(G, E, a, b, c, args, M, N, K)

    return gemm_s8


_LAYOUT_WHY = (" ('nk': b is [N, K], K contiguous, the layout the int8 tensor cores read; 'kn': b is [K, N], "
               "copied transposed first)")


def _check_int8_pair(op, a, b, b_layout, a_name="a", b_name="b"):
    az, bz = inspect_array(a_name, a, op), inspect_array(b_name, b, op)
    layout = require_choice(op, "b_layout", b_layout, ("nk", "kn"), _LAYOUT_WHY)
    dims = "[N, K]" if layout == "nk" else "[K, N]"
    require_rank(az, 2, op, "a matrix [M, K]")
    require_rank(bz, 2, op, f"a matrix {dims}")
    require_dtype(az, (i8,), op)
    require_dtype(bz, (i8,), op)
    same_kind(op, az, bz)
    M, K = az.shape
    N, Kb = bz.shape if layout == "nk" else bz.shape[::-1]
    if Kb != K:
        raise ArgumentError(f"{op}(): '{a_name}' is [M, K] = {az.shape} and '{b_name}' is {dims} = {bz.shape} "
                            f"(b_layout={layout!r}): K={K} and {Kb} differ")
    require_contiguous(az, op)
    require_contiguous(bz, op)
    if layout == "kn" and bz.kind == "cuda":
        raise ArgumentError(f"{op}(): b_layout='kn' copies '{b_name}' transposed, which needs a torch tensor, "
                            f"kaiodsl.DeviceArray or numpy array; got a __cuda_array_interface__ object")
    require_i32_sizes(op, M=M, N=N, K=K)
    if K == 0 and M and N:
        raise ArgumentError(f"{op}(): K=0: the product would be all zeros; nothing to compute")
    return az, bz, M, N, K


def _sm90(op, config, az, bz, M, N, K, layout):
    """The Sm90Config to run the Hopper kernel with (checked), or None for the mma.sync kernel."""
    rows_aligned = sm90.aligned(K, az, bz)
    if not sm90.wants(config, M, N, K, layout, rows_aligned):
        return None
    return sm90.config(op, config, M, N, K, layout, rows_aligned)


def _config(op, config, M, N, K):
    cfg = config_or_default(op, config, lambda: int8_config(M, N, K))
    check_config(op, cfg, 1)
    return cfg, tile_grid(op, M, N, cfg)


def _b_nk(b, bz, layout, N, K):
    """b as the [N, K] operand the kernel reads: itself, or (b_layout='kn') a transposed copy."""
    return b if layout == "nk" else copy_2d(b, bz.kind, True, N, K)


def _launch(a, b, out, rs, cs, bias, alpha, M, N, K, cfg, grid, out_name, flags):
    ga = row_granule(K, 1, data_alignment(inspect_array("a", a, "matmul_int8")))
    gb = row_granule(K, 1, data_alignment(inspect_array("b", b, "matmul_int8")))
    k = int8_kernel(out_name, cfg, *flags, needs_wide(M, N, K), ga, gb)
    k[grid, cfg.threads](a, b, out, rs, cs, bias, alpha, M, N, K, smem=cfg.smem_bytes(1))
    return out


def matmul_int8(a, b, scale=1.0, *, b_layout: str = "nk", config=None):
    """W8A8 GEMM: int8 a [M, K] x int8 b -> f32 [M, N] = (a @ b^T) * scale for b [N, K] (``b_layout="nk"``,
    the default) or (a @ b) * scale for b [K, N] (``"kn"``: transposed copy first); int32 accumulation.
    ``config``: a GemmConfig (the mma.sync kernel), an Sm90Config (the Hopper kernel: sm_90a, b [N, K],
    K a multiple of 16), or None / 'auto' to let the op choose."""
    op = "matmul_int8"
    az, bz, M, N, K = _check_int8_pair(op, a, b, b_layout)
    alpha = require_f32_scalar(op, "scale", scale)
    cfg90 = _sm90(op, config, az, bz, M, N, K, b_layout)
    if cfg90 is None:
        cfg, grid = _config(op, config, M, N, K)
    out = new_like(az, (M, N), f32)
    if M == 0 or N == 0:
        return out
    if cfg90 is not None:
        return sm90.run("s8", a, b, out, M, N, K, cfg90, f32, [(tiles.Scale(), alpha, f32)])
    d = dummy_f32(az)
    return _launch(a, _b_nk(b, bz, b_layout, N, K), out, d, d, d, alpha, M, N, K, cfg, grid, "f32",
                   (False, False, False))


def matmul_w8a8(a_q, w_q, act_scale, weight_scale, *, bias=None, out_dtype="f16", b_layout: str = "nk",
                config=None):
    """SmoothQuant W8A8: ``(a_q @ w_q^T) * act_scale[:, None] * weight_scale[None, :] (+ bias)`` for w_q [N, K]
    (``b_layout="nk"``, the default), or with ``a_q @ w_q`` for w_q [K, N] (``"kn"``: transposed copy first)."""
    op = "matmul_w8a8"
    az, wz, M, N, K = _check_int8_pair(op, a_q, w_q, b_layout, "a_q", "w_q")
    out_t = out_dtype_of(op, out_dtype, "f16")
    alpha, rs, row_scale = 1.0, None, False
    if is_real(act_scale):
        alpha = require_f32_scalar(op, "act_scale", act_scale, "per token [M] or a Python float (per tensor)")
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
    cfg90 = _sm90(op, config, az, wz, M, N, K, b_layout)
    if cfg90 is None:
        cfg, grid = _config(op, config, M, N, K)
    bias_arg = _bias_f32(bias, az, N, op)           # the last check; allocates only when all passed
    out = new_like(az, (M, N), out_t)
    if M == 0 or N == 0:
        return out
    if cfg90 is not None:
        terms = ([(tiles.RowScale(), rs, Ptr[f32])] if row_scale else [(tiles.Scale(), alpha, f32)]) + \
            [(tiles.ColScale(), weight_scale, Ptr[f32])] + ([(tiles.Bias(), bias_arg, Ptr[f32])] if bias is not None
                                                           else [])
        return sm90.run("s8", a_q, w_q, out, M, N, K, cfg90, out_t, terms)
    if rs is None:
        rs = dummy_f32(az)
    return _launch(a_q, _b_nk(w_q, wz, b_layout, N, K), out, rs, weight_scale, bias_arg, alpha, M, N, K, cfg,
                   grid, out_t.name, (row_scale, True, bias is not None))


def reference_matmul_int8(a, b, b_layout: str = "nk") -> np.ndarray:
    """Exact int64 product a [M, K] @ b [N, K]^T (or a @ b for b [K, N], ``"kn"``): the int32
    accumulator's value when it does not overflow."""
    b64 = np.asarray(b, np.int64)
    return np.asarray(a, np.int64) @ (b64.T if b_layout == "nk" else b64)


def reference_matmul_w8a8(a_q, w_q, act_scale, weight_scale, bias=None, b_layout: str = "nk") -> np.ndarray:
    acc = reference_matmul_int8(a_q, w_q, b_layout).astype(np.float64)
    act = np.asarray(act_scale, np.float64).reshape(-1, 1) if np.ndim(act_scale) else float(act_scale)
    out = acc * act * np.asarray(weight_scale, np.float64)[None, :]
    if bias is not None:
        out = out + np.asarray(bias, np.float64)[None, :]
    return out

