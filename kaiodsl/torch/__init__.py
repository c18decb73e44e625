"""kaiodsl as a PyTorch citizen: custom ops with autograd (``torch.ops.kaiodsl.*``), friendly wrappers,
and ``patch`` for Hugging Face decoders. Importing this module imports torch; ``import kaiodsl`` does not.

The wrappers below take torch tensors (CUDA tensors run on the GPU, CPU tensors in the simulator)
and call the registered op, so that autograd, FakeTensor, torch.compile and CUDA graphs see one
opaque op. Where the dispatcher would add nothing -- plain tensors, no gradient wanted, not
compiling, no dispatch or function mode active -- they call the implementation directly (the
"fast path"; benchmarks/launch_overhead.py measures both). See docs/torch.md.
"""

from __future__ import annotations

from typing import Optional

import torch

from . import _ops
from ._grad import dequantize_int4, dequantize_int8, unpack_int4
from ._ops import REGISTERED, SPECS, OpSpec

__all__ = ["REGISTERED", "SPECS", "OpSpec", "dequantize_int4", "dequantize_int8", "has_op", "linear",
           "linear_w8a8", "matmul", "matmul_fp8", "matmul_int4", "matmul_int8", "matmul_w8a8", "matmul_w8a16",
           "patch", "quantize_per_token", "unpack_int4", "attention"]


def has_op(name: str) -> bool:
    """Whether ``torch.ops.kaiodsl.<name>`` is registered (ops added later appear when present)."""
    return name in REGISTERED


def _direct(*tensors) -> bool:
    """True when the dispatcher adds nothing: eager, no grad needed, plain tensors, no mode active."""
    if torch.compiler.is_compiling():
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        if t is not None and (type(t) is not torch.Tensor or (grad and t.requires_grad)):
            return False
    return not (torch._C._len_torch_dispatch_stack() or torch._C._is_torch_function_mode_enabled())


def _layout(b_layout: str) -> str:
    return "kn" if b_layout == "auto" else b_layout


def matmul(a, b, *, bias=None, b_layout: str = "kn", out_dtype: Optional[torch.dtype] = None):
    """``a @ b`` (b [K, N], ``b_layout="kn"``) or ``a @ b.T`` (b [N, K], ``"nk"``), f16/bf16, differentiable."""
    if _direct(a, b, bias):
        return _ops.matmul(a, b, bias, _layout(b_layout), out_dtype)
    return torch.ops.kaiodsl.matmul(a, b, bias, _layout(b_layout), out_dtype)


def linear(x, weight, bias=None):
    """``torch.nn.functional.linear`` on the kaiodsl GEMM: x [..., K], weight [N, K]."""
    y = matmul(x.reshape(-1, x.shape[-1]), weight, bias=bias, b_layout="nk")
    return y.reshape(*x.shape[:-1], weight.shape[0])


def matmul_int8(a, b, scale: float = 1.0):
    if _direct(a, b):
        return _ops.matmul_int8(a, b, scale)
    return torch.ops.kaiodsl.matmul_int8(a, b, scale)


def _scale_tensor(s, like):
    return s if isinstance(s, torch.Tensor) else torch.tensor([float(s)], dtype=torch.float32, device=like.device)


def matmul_w8a8(a_q, w_q, act_scale, weight_scale, *, bias=None, out_dtype: torch.dtype = torch.float16):
    """``(a_q @ w_q^T) * act_scale * weight_scale (+ bias)``; act_scale per token [M] or one float."""
    act_scale = _scale_tensor(act_scale, a_q)
    if _direct(a_q, w_q, act_scale, weight_scale, bias):
        return _ops.matmul_w8a8(a_q, w_q, act_scale, weight_scale, bias, out_dtype)
    return torch.ops.kaiodsl.matmul_w8a8(a_q, w_q, act_scale, weight_scale, bias, out_dtype)


def matmul_fp8(a, b, scale_a, scale_b, *, bias=None, out_dtype: torch.dtype = torch.bfloat16):
    """``(a @ b^T) * scale_a * scale_b (+ bias)`` for float8 a [M, K], b [N, K] (sm_90a; no gradient):
    torch._scaled_mm's product with b as the [N, K] weight; scales one value or per row / per column."""
    _require("matmul_fp8")
    scale_a, scale_b = _scale_tensor(scale_a, a), _scale_tensor(scale_b, a)
    if _direct(a, b, scale_a, scale_b, bias):
        return _ops.matmul_fp8(a, b, scale_a, scale_b, bias, out_dtype)
    return torch.ops.kaiodsl.matmul_fp8(a, b, scale_a, scale_b, bias, out_dtype)


def quantize_per_token(x):
    if _direct(x):
        return _ops.quantize_per_token(x)
    return torch.ops.kaiodsl.quantize_per_token(x)


def linear_w8a8(x, w_q, weight_scale, bias=None, *, smooth_inv=None, act_scale=None):
    """W8A8 linear on float activations x [..., K]: per-token dynamic quantization (``act_scale=None``)
    or SmoothQuant's static per-tensor scale; differentiable in x (straight-through)."""
    x2 = x.reshape(-1, x.shape[-1])
    if act_scale is not None:
        act_scale = _scale_tensor(act_scale, x)
    if _direct(x2, w_q, weight_scale, bias, smooth_inv, act_scale):
        y = _ops.linear_w8a8(x2, w_q, weight_scale, bias, smooth_inv, act_scale)
    else:
        y = torch.ops.kaiodsl.linear_w8a8(x2, w_q, weight_scale, bias, smooth_inv, act_scale)
    return y.reshape(*x.shape[:-1], w_q.shape[0])


def matmul_int4(a, w_packed, scales, *, zeros=None, group_size: int = 128):
    if _direct(a, w_packed, scales, zeros):
        return _ops.matmul_int4(a, w_packed, scales, zeros, group_size)
    return torch.ops.kaiodsl.matmul_int4(a, w_packed, scales, zeros, group_size)


def matmul_w8a16(a, w_q, scales, *, bias=None, group_size: Optional[int] = None,
                 out_dtype: Optional[torch.dtype] = None):
    _require("matmul_w8a16")
    if _direct(a, w_q, scales, bias):
        return _ops.matmul_w8a16(a, w_q, scales, bias, group_size, out_dtype)
    return torch.ops.kaiodsl.matmul_w8a16(a, w_q, scales, bias, group_size, out_dtype)


def attention(q, k, v, *, causal=False, scale: Optional[float] = None):
    """Differentiable attention over [B, H, S, D] (GQA: k/v with fewer heads); causal False, True
    (= "top_left", torch's is_causal), "top_left" or "bottom_right"."""
    _require("attention")
    mode = {False: "none", True: "top_left"}.get(causal, causal)
    if _direct(q, k, v):
        return _ops.attention(q, k, v, mode, scale)[0]
    return torch.ops.kaiodsl.attention(q, k, v, mode, scale)[0]


def _require(name: str) -> None:
    if name not in REGISTERED:
        from kaiodsl.errors import KaioError

        raise KaioError(f"kaiodsl.ops.{name} is not part of this kaiodsl install, so torch.ops.kaiodsl.{name} "
                        f"is not registered; registered: {', '.join(sorted(REGISTERED))}")


from .patch import PatchReport, patch  # noqa: E402  (patch uses the wrappers above through kaiodsl.nn)
