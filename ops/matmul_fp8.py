"""fp8 GEMM on Hopper: ``matmul_fp8(a, b, scale_a, scale_b, *, out_dtype="bf16", bias=None)``.

``out = (a @ b^T) * scale_a[row] * scale_b[col] (+ bias[col])`` as ``torch._scaled_mm`` computes it:
a [M, K] and b [N, K] (K-major, the nn.Linear weight layout) in e4m3 or e5m2, any of the four pairs
(``wgmma.mma_async ... .f32.e4m3.e5m2`` and the others, PTX ISA 9.7.15.5), accumulated in f32; the
scales and the bias are applied in f32 and the result rounded once to ``out_dtype`` (f16, bf16, f32).

* ``scale_a``: one f32 value (a 1-element array, kept on the device and read by the kernel, so nothing
  syncs; or a Python float) for the whole tensor, or one per row: [M] or [M, 1].
* ``scale_b``: one value, or one per column: [N] or [1, N].
* ``bias``: [N], f32 (f16 / bf16 torch tensors and numpy arrays are widened first).

Inputs are torch ``float8_e4m3fn`` / ``float8_e5m2`` tensors (CUDA tensors on the GPU, CPU tensors in
the simulator) or ``kaiodsl.DeviceArray`` of ``kaiodsl.e4m3`` / ``kaiodsl.e5m2`` (numpy has no fp8:
``kaiodsl.runtime.to_device(codes_uint8, kaiodsl.e4m3)`` makes one from the bytes).

The kernel is the Hopper GEMM (ops/gemm_sm90.py: TMA into an mbarrier ring, wgmma, persistent and
warp-specialised) with the scales and bias as tiles.Epilogue ops; there is no other, so sm_90a is
required. TMA loads 16-byte aligned rows: K a multiple of 16 and 16-byte aligned data.
``reference_matmul_fp8`` is the float64 reference, ``fp8_values`` the exact float64 decoder it uses.
"""

from __future__ import annotations

import numpy as np

from kaiodsl import Ptr, e4m3, e5m2, f32, tiles
from kaiodsl.errors import ArgumentError

from . import gemm_sm90_8bit as sm90
from ._common import (data_alignment, inspect_array, is_real, new_like, require_contiguous, require_dtype,
                      require_f32_scalar, require_i32_sizes, require_rank, same_kind)
from .gemm_sm90 import Sm90Config
from .matmul import _bias_f32, out_dtype_of

OP = "matmul_fp8"


def matmul_fp8(a, b, scale_a, scale_b, *, out_dtype="bf16", bias=None, b_layout: str = "nk", config="auto"):
    """``(a @ b^T) * scale_a * scale_b (+ bias)`` for fp8 a [M, K], b [N, K]; f32 accumulation, the result
    [M, N] in ``out_dtype``. ``config``: an Sm90Config, or 'auto' / None (the heuristic)."""
    arch = sm90.arch()
    if arch != "sm_90a":
        raise ArgumentError(f"{OP}(): fp8 GEMMs run on the sm_90a kernel (wgmma with e4m3/e5m2); the current "
                            f"target is {arch}: run on a Hopper GPU (or set KAIODSL_ARCH=sm_90a for the simulator)")
    az, bz = inspect_array("a", a, OP), inspect_array("b", b, OP)
    if not (isinstance(b_layout, str) and b_layout == "nk"):
        raise ArgumentError(f"{OP}(): b_layout must be 'nk' (b is [N, K], K contiguous: fp8 wgmma reads both "
                            f"operands K-major; for torch._scaled_mm's column-major [K, N] b pass b.t()), "
                            f"got {b_layout!r}")
    require_rank(az, 2, OP, "a matrix [M, K]")
    require_rank(bz, 2, OP, "a matrix [N, K]")
    require_dtype(az, (e4m3, e5m2), OP)
    require_dtype(bz, (e4m3, e5m2), OP)
    same_kind(OP, az, bz)
    M, K = az.shape
    N, Kb = bz.shape
    if Kb != K:
        raise ArgumentError(f"{OP}(): 'a' is [M, K] = {az.shape} and 'b' is [N, K] = {bz.shape}: K={K} and {Kb} "
                            f"differ")
    require_contiguous(az, OP)
    require_contiguous(bz, OP)
    require_i32_sizes(OP, M=M, N=N, K=K)
    if K % 16:
        raise ArgumentError(f"{OP}(): K={K} must be a multiple of 16 (TMA loads rows of 16-byte multiples: "
                            f"16 fp8 elements)")
    for x in (az, bz):
        if data_alignment(x) < 16:
            raise ArgumentError(f"{OP}(): '{x.name}' data is {data_alignment(x)}-byte aligned; TMA needs 16-byte "
                                f"aligned rows: pass a tensor that owns its storage (.clone())")
    if K == 0 and M and N:
        raise ArgumentError(f"{OP}(): K=0: the product would be all zeros; nothing to compute")
    out_t = out_dtype_of(OP, out_dtype, "bf16")
    terms = _scale_terms("scale_a", scale_a, az, M, "row", tiles.RowScale()) + \
        _scale_terms("scale_b", scale_b, az, N, "col", tiles.ColScale())
    if not (config is None or isinstance(config, Sm90Config) or (isinstance(config, str) and config == "auto")):
        raise ArgumentError(f"{OP}(): config must be a kaiodsl.ops.Sm90Config, or 'auto' / None to let the op "
                            f"choose, got {type(config).__name__} {config!r}")
    cfg = sm90.config(OP, config, M, N, K, "nk", True, acc="f32")
    if bias is not None:
        terms.append((tiles.Bias(), _bias_f32(bias, az, N, OP), Ptr[f32]))   # the last check (may convert)
    out = new_like(az, (M, N), out_t)
    if M == 0 or N == 0:
        return out
    pair = az.dtype.name if az.dtype == bz.dtype else f"{az.dtype.name}_{bz.dtype.name}"
    return sm90.run(pair, a, b, out, M, N, K, cfg, out_t, terms)


def _scale_terms(name: str, s, like, n: int, axis: str, per_op) -> list:
    """The epilogue term of one scale argument: a Python float (Scale), a 1-element f32 array (TensorScale,
    read on the device) or ``n`` values along ``axis`` ([n], or [n, 1] rows / [1, n] columns)."""
    if is_real(s):
        return [(tiles.Scale(), require_f32_scalar(OP, name, s), f32)]
    if s is None:
        raise ArgumentError(f"{OP}(): '{name}' is required: one f32 value or one per {axis}")
    sz = inspect_array(name, s, OP)
    require_dtype(sz, (f32,), OP)
    same_kind(OP, like, sz)
    shape = tuple(sz.shape)
    vector = (n,)
    matrix = (n, 1) if axis == "row" else (1, n)
    if shape in ((), (1,), (1, 1)):
        term = (tiles.TensorScale(), s, Ptr[f32])
    elif shape in (vector, matrix):
        term = (per_op, s, Ptr[f32])
    else:
        dim = "M" if axis == "row" else "N"
        raise ArgumentError(f"{OP}(): '{name}' has shape {shape}; allowed: one value ((), [1]) for the whole tensor "
                            f"or one per {axis}: [{dim}={n}] or {list(matrix)}")
    require_contiguous(sz, OP)
    return [term]


# -- the reference ---------------------------------------------------------------------------------------
def fp8_values(x, kind: str = None) -> np.ndarray:
    """The exact float64 values of fp8 data: a torch float8 tensor, a kaiodsl.DeviceArray of e4m3/e5m2, or
    raw uint8 codes with ``kind`` 'e4m3' (OCP E4M3FN: no infinities, S.1111.111 is NaN, max 448) or
    'e5m2' (IEEE-style: exponent 31 is inf/NaN, max 57344). A float numpy array is taken as values."""
    st = getattr(x, "scalar_type", None)
    if st is not None:                                   # a DeviceArray: its bytes
        return fp8_values(x.numpy(), st.name)
    if type(x).__module__.startswith("torch"):
        if "float8" in str(x.dtype):
            return x.detach().cpu().double().numpy()
        return x.detach().cpu().numpy().astype(np.float64)
    x = np.asarray(x)
    if x.dtype != np.uint8:
        return x.astype(np.float64)
    if kind not in ("e4m3", "e5m2"):
        raise ArgumentError(f"fp8_values(): raw uint8 codes need kind='e4m3' or 'e5m2', got {kind!r}")
    exp_bits, man_bits = (4, 3) if kind == "e4m3" else (5, 2)
    bias = (1 << (exp_bits - 1)) - 1
    c = x.astype(np.int64)
    sign = np.where(c & 0x80, -1.0, 1.0)
    e = (c >> man_bits) & ((1 << exp_bits) - 1)
    m = (c & ((1 << man_bits) - 1)).astype(np.float64)
    normal = (1.0 + m / (1 << man_bits)) * np.exp2(e - bias)
    sub = m / (1 << man_bits) * 2.0 ** (1 - bias)
    v = sign * np.where(e == 0, sub, normal)
    top = e == (1 << exp_bits) - 1
    if kind == "e4m3":
        v = np.where(top & (m == 7), np.nan, v)
    else:
        v = np.where(top, np.where(m == 0, sign * np.inf, np.nan), v)
    return v


def _host(x) -> np.ndarray:
    if type(x).__module__.startswith("torch"):
        return x.detach().cpu().double().numpy()
    if hasattr(x, "scalar_type"):
        return np.asarray(x.numpy(), np.float64)
    return np.asarray(x, np.float64)


def reference_matmul_fp8(a, b, scale_a, scale_b, bias=None) -> np.ndarray:
    """float64 ``(a @ b^T) * scale_a * scale_b (+ bias)``; a, b as ``fp8_values`` reads them, scales as
    in ``matmul_fp8`` (a number, one value, or per row / per column)."""
    acc = fp8_values(a) @ fp8_values(b).T
    sa = float(scale_a) if is_real(scale_a) else _host(scale_a)
    sb = float(scale_b) if is_real(scale_b) else _host(scale_b)
    sa = np.reshape(sa, (-1, 1)) if np.size(sa) > 1 else float(np.reshape(sa, -1)[0])
    sb = np.reshape(sb, (1, -1)) if np.size(sb) > 1 else float(np.reshape(sb, -1)[0])
    out = acc * sa * sb
    if bias is not None:
        out = out + _host(bias)[None, :]
    return out
