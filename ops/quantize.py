"""Dynamic per-token int8 quantization (SmoothQuant's activation side).

``quantize_per_token(x)`` -> ``(x_q, scales)``: for each row, ``scale = max|x| / 127``
and ``x_q = round_half_even(x / scale)`` clamped to [-127, 127]; an all-zero row
gets scale 0 and zeros. One block per row; the max is reduced with warp
shuffles and shared memory.

Non-finite inputs poison their row, so that they reach the output of the GEMM that follows:
a row holding a NaN gets scale NaN (the max propagates NaN, as ``np.max`` does; PTX
``max.f32`` would drop it) and ``x_q`` all 0; a row holding ±inf (and no NaN) gets scale
+inf and ``x_q`` all 0 (finite / inf = 0, inf / inf = NaN, and cvt.sat turns NaN into 0).
An empty row (K = 0) gets scale 0, as an all-zero row.
"""

import numpy as np

import kaiodsl
from kaiodsl import Ptr, f16, bf16, f32, i8, i32, i64
from kaiodsl.errors import ArgumentError

from ._common import (I32_MAX, inspect_array, new_like, require_contiguous, require_dtype, require_i32_sizes,
                      require_rank, zeros_like)

BLOCK = 256


@kaiodsl.func
def _max_nan(a: f32, b: f32) -> f32:
    """max(a, b) that keeps a NaN from either side (max.f32 returns the other operand)."""
    return b if b > a or b != b else a


@kaiodsl.func
def _block_max(v: f32, scratch) -> f32:
    for k in kaiodsl.static_range(5):
        v = _max_nan(v, kaiodsl.shfl_xor(v, 16 >> k))
    lane = kaiodsl.thread_idx.x % 32
    if lane == 0:
        scratch[kaiodsl.thread_idx.x // 32] = v
    kaiodsl.syncthreads()
    v = scratch[lane] if lane < BLOCK // 32 else 0.0
    for k in kaiodsl.static_range(5):
        v = _max_nan(v, kaiodsl.shfl_xor(v, 16 >> k))
    return v


def _make(dtype):
    @kaiodsl.kernel(block_size=BLOCK, name=f"quantize_per_token_{dtype}")
    def quantize_rows(x: Ptr[dtype], xq: Ptr[i8], scales: Ptr[f32], K: i32):
        scratch = kaiodsl.shared_array(f32, 32)
        row = i64(kaiodsl.block_idx.x) * K          # row x K passes 2^31 for big activations
        xr = x + row
        xqr = xq + row
        amax = 0.0
        for c in range(kaiodsl.thread_idx.x, K, BLOCK):
            amax = _max_nan(amax, abs(f32(xr[c])))
        amax = _block_max(amax, scratch)
        scale = amax / 127.0
        for c in range(kaiodsl.thread_idx.x, K, BLOCK):
            q = kaiodsl.round_even(f32(xr[c]) / scale) if scale > 0.0 else 0.0
            xqr[c] = kaiodsl.saturate_cast(q, i8)
        if kaiodsl.thread_idx.x == 0:
            scales[kaiodsl.block_idx.x] = scale

    return quantize_rows


KERNELS = {"f16": _make(f16), "bf16": _make(bf16)}


def quantize_per_token(x):
    """Symmetric per-row int8 quantization of an f16/bf16 matrix ``x`` [M, K] -> (x_q int8 [M, K], scales f32 [M])."""
    op = "quantize_per_token"
    a = inspect_array("x", x, op)
    require_rank(a, 2, op, "a matrix [M, K]")
    require_dtype(a, (f16, bf16), op)
    require_contiguous(a, op)
    M, K = a.shape
    require_i32_sizes(op, K=K)
    if M > I32_MAX:     # one block per row, in grid.x
        raise ArgumentError(f"{op}(): M={M} rows need {M} blocks; a grid holds at most 2**31 - 1")
    xq = new_like(a, (M, K), i8)
    if K == 0:          # no kernel: an empty row's scale is 0, as an all-zero row's
        return xq, zeros_like(a, (M,), f32)
    scales = new_like(a, (M,), f32)
    if M:
        KERNELS[a.dtype.name][M, BLOCK](x, xq, scales, K)
    return xq, scales


def reference_quantize_per_token(x: np.ndarray):
    """numpy reference, bit-exact with the kernel (same f32 divisions and rounding, the same NaN/inf rules)."""
    xf = np.asarray(x, np.float32)
    amax = np.abs(xf).max(axis=1, initial=0.0)          # NaN propagates; K = 0 gives 0
    scale = (amax / np.float32(127.0)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(scale[:, None] > 0, np.rint(xf / scale[:, None]), 0.0)
    q = np.where(np.isnan(q), 0.0, q)                   # cvt.sat: NaN -> 0
    return np.clip(q, -128, 127).astype(np.int8), scale
