"""kaiodsl's ops as PyTorch custom ops: ``torch.ops.kaiodsl.<name>``.

Each op is one ``OpSpec`` in ``SPECS``: the implementation (which calls ``kaiodsl.ops``), its
fake (shapes and dtypes for FakeTensor / torch.compile) and, where it has one, its gradient
(kaiodsl/torch/_grad.py). ``requires`` names the ``kaiodsl.ops`` attributes an entry needs: an
entry whose op is absent from this install is skipped, so adding an op is adding one entry.

Schemas come from the Python annotations (``torch.library.custom_op``); every op returns fresh
tensors (``mutates_args=()``: no output aliases an input). Tensors may be CUDA tensors (the
GPU) or CPU tensors (run by the simulator backend, which CI uses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from kaiodsl import ops
from kaiodsl.errors import ArgumentError

from . import _grad

NAMESPACE = "kaiodsl"


@dataclass(frozen=True)
class OpSpec:
    name: str
    impl: Callable                 # the annotated function: its signature is the schema
    fake: Callable
    requires: tuple = ()           # kaiodsl.ops attributes the entry needs (absent: not registered)
    backward: Optional[Callable] = None
    setup: Optional[Callable] = None


def _c(x: Optional[Tensor]) -> Optional[Tensor]:
    return None if x is None else x.contiguous()


def _act_scale_rows(act_scale: Tensor, M: int) -> Tensor:
    """A per-tensor act_scale ([] or [1]) as per-token [M] (no .item(): CUDA graphs stay capturable)."""
    s = act_scale.reshape(-1).float()
    return s.expand(M).contiguous() if s.numel() == 1 else s.contiguous()


# -- implementations (what runs on real tensors) ---------------------------------------------------
def matmul(a: Tensor, b: Tensor, bias: Optional[Tensor] = None, b_layout: str = "kn",
           out_dtype: Optional[torch.dtype] = None) -> Tensor:
    return ops.matmul(a.contiguous(), b.contiguous(), bias=bias, b_layout=b_layout, out_dtype=out_dtype)


def matmul_int8(a: Tensor, b: Tensor, scale: float = 1.0) -> Tensor:
    return ops.matmul_int8(a.contiguous(), b.contiguous(), float(scale))


def matmul_w8a8(a_q: Tensor, w_q: Tensor, act_scale: Tensor, weight_scale: Tensor, bias: Optional[Tensor] = None,
                out_dtype: torch.dtype = torch.float16) -> Tensor:
    return ops.matmul_w8a8(a_q.contiguous(), w_q.contiguous(), _act_scale_rows(act_scale, a_q.shape[0]),
                           weight_scale.float().contiguous(), bias=bias, out_dtype=out_dtype)


def matmul_fp8(a: Tensor, b: Tensor, scale_a: Tensor, scale_b: Tensor, bias: Optional[Tensor] = None,
               out_dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """``torch._scaled_mm`` on the kaiodsl Hopper kernel: fp8 a [M, K] @ b [N, K]^T, forward only."""
    return ops.matmul_fp8(a.contiguous(), b.contiguous(), scale_a.float().contiguous(),
                          scale_b.float().contiguous(), bias=bias, out_dtype=out_dtype)


def quantize_per_token(x: Tensor) -> tuple[Tensor, Tensor]:
    return ops.quantize_per_token(x.contiguous())


def linear_w8a8(x: Tensor, w_q: Tensor, weight_scale: Tensor, bias: Optional[Tensor] = None,
                smooth_inv: Optional[Tensor] = None, act_scale: Optional[Tensor] = None) -> Tensor:
    """W8A8 linear on float activations: ``x * smooth_inv`` (SmoothQuant, optional) quantized per token
    (``act_scale`` None: the quantize_per_token kernel) or per tensor with the static ``act_scale``."""
    xs = x if smooth_inv is None else x * smooth_inv.to(x.dtype)
    if act_scale is None:
        xq, rows = ops.quantize_per_token(xs.contiguous())
    else:
        s = act_scale.reshape(-1).float()
        xq = torch.clamp(torch.round(xs.float() / s), -127, 127).to(torch.int8)   # round half to even
        rows = _act_scale_rows(s, x.shape[0])
    return ops.matmul_w8a8(xq.contiguous(), w_q.contiguous(), rows, weight_scale.float().contiguous(), bias=bias,
                           out_dtype=x.dtype)


def matmul_int4(a: Tensor, w_packed: Tensor, scales: Tensor, zeros: Optional[Tensor] = None,
                group_size: int = 128) -> Tensor:
    return ops.matmul_int4(a.contiguous(), w_packed.contiguous(), scales.contiguous(), zeros=_c(zeros),
                           group_size=group_size)


def matmul_w8a16(a: Tensor, w_q: Tensor, scales: Tensor, bias: Optional[Tensor] = None,
                 group_size: Optional[int] = None, out_dtype: Optional[torch.dtype] = None) -> Tensor:
    return ops.matmul_w8a16(a.contiguous(), w_q.contiguous(), scales.contiguous(), bias=bias,
                            group_size=group_size, out_dtype=out_dtype)


def qkv_project(x: Tensor, wq: Tensor, wk: Tensor, wv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return tuple(ops.qkv_project(x.contiguous(), wq.contiguous(), wk.contiguous(), wv.contiguous()))


def qkv_project_int8(x: Tensor, wq: Tensor, wk: Tensor, wv: Tensor, sq: Tensor, sk: Tensor,
                     sv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return tuple(ops.qkv_project_int8(x.contiguous(), *(w.contiguous() for w in (wq, wk, wv, sq, sk, sv))))


def _causal_arg(causal: str):
    return {"none": False, "top_left": "top_left", "bottom_right": "bottom_right"}[causal]


def attention(q: Tensor, k: Tensor, v: Tensor, causal: str = "none",
              scale: Optional[float] = None) -> tuple[Tensor, Tensor]:
    """(o, lse): the LSE is what the backward kernels rebuild the softmax from."""
    o, lse = ops.attention(q, k, v, causal=_causal_arg(causal), scale=scale, return_lse=True)
    return o, lse


def attention_backward(do: Tensor, q: Tensor, k: Tensor, v: Tensor, o: Tensor, lse: Tensor,
                       causal: str = "none", scale: Optional[float] = None) -> tuple[Tensor, Tensor, Tensor]:
    return tuple(ops.attention_backward(do.contiguous(), q, k, v, o, lse, causal=_causal_arg(causal),
                                        scale=scale))


# -- fakes (shapes and dtypes only) -----------------------------------------------------------------
def _need_rank(op: str, name: str, x: Tensor, rank: int) -> None:
    if x.dim() != rank:
        raise ArgumentError(f"{op}(): '{name}' must be {rank}-D, got shape {tuple(x.shape)}")


def matmul_fake(a, b, bias=None, b_layout="kn", out_dtype=None):
    _need_rank("matmul", "a", a, 2)
    _need_rank("matmul", "b", b, 2)
    if b_layout not in ("nk", "kn"):
        raise ArgumentError(f"matmul(): b_layout must be 'nk' or 'kn', got {b_layout!r}")
    N = b.shape[0] if b_layout == "nk" else b.shape[1]
    return a.new_empty((a.shape[0], N), dtype=out_dtype or a.dtype)


def matmul_int8_fake(a, b, scale=1.0):
    return a.new_empty((a.shape[0], b.shape[0]), dtype=torch.float32)


def matmul_w8a8_fake(a_q, w_q, act_scale, weight_scale, bias=None, out_dtype=torch.float16):
    return a_q.new_empty((a_q.shape[0], w_q.shape[0]), dtype=out_dtype)


def matmul_fp8_fake(a, b, scale_a, scale_b, bias=None, out_dtype=torch.bfloat16):
    _need_rank("matmul_fp8", "a", a, 2)
    _need_rank("matmul_fp8", "b", b, 2)
    return a.new_empty((a.shape[0], b.shape[0]), dtype=out_dtype)


def quantize_per_token_fake(x):
    _need_rank("quantize_per_token", "x", x, 2)
    return x.new_empty(x.shape, dtype=torch.int8), x.new_empty((x.shape[0],), dtype=torch.float32)


def linear_w8a8_fake(x, w_q, weight_scale, bias=None, smooth_inv=None, act_scale=None):
    _need_rank("linear_w8a8", "x", x, 2)
    return x.new_empty((x.shape[0], w_q.shape[0]))


def matmul_int4_fake(a, w_packed, scales, zeros=None, group_size=128):
    return a.new_empty((a.shape[0], w_packed.shape[0] * 8))


def matmul_w8a16_fake(a, w_q, scales, bias=None, group_size=None, out_dtype=None):
    return a.new_empty((a.shape[0], w_q.shape[0]), dtype=out_dtype or a.dtype)


def qkv_project_fake(x, wq, wk, wv, *scales):
    return tuple(x.new_empty((x.shape[0], w.shape[0])) for w in (wq, wk, wv))


def attention_fake(q, k, v, causal="none", scale=None):
    B, H, S = q.shape[:3]
    o = q.new_empty((B, H, S, v.shape[-1]))
    return o, q.new_empty((B, H, S), dtype=torch.float32)


def attention_backward_fake(do, q, k, v, o, lse, causal="none", scale=None):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


SPECS = (
    OpSpec("matmul", matmul, matmul_fake, ("matmul",), _grad.matmul_backward, _grad.matmul_setup),
    OpSpec("matmul_int8", matmul_int8, matmul_int8_fake, ("matmul_int8",)),
    OpSpec("matmul_w8a8", matmul_w8a8, matmul_w8a8_fake, ("matmul_w8a8",), _grad.matmul_w8a8_backward,
           _grad.matmul_w8a8_setup),
    OpSpec("matmul_fp8", matmul_fp8, matmul_fp8_fake, ("matmul_fp8",)),
    OpSpec("quantize_per_token", quantize_per_token, quantize_per_token_fake, ("quantize_per_token",)),
    OpSpec("linear_w8a8", linear_w8a8, linear_w8a8_fake, ("quantize_per_token", "matmul_w8a8"),
           _grad.linear_w8a8_backward, _grad.linear_w8a8_setup),
    OpSpec("matmul_int4", matmul_int4, matmul_int4_fake, ("matmul_int4",), _grad.matmul_int4_backward,
           _grad.matmul_int4_setup),
    OpSpec("matmul_w8a16", matmul_w8a16, matmul_w8a16_fake, ("matmul_w8a16",), _grad.matmul_w8a16_backward,
           _grad.matmul_w8a16_setup),
    OpSpec("qkv_project", qkv_project, qkv_project_fake, ("qkv_project",), _grad.qkv_project_backward,
           _grad.qkv_project_setup),
    OpSpec("qkv_project_int8", qkv_project_int8, qkv_project_fake, ("qkv_project_int8",),
           _grad.qkv_project_int8_backward, _grad.qkv_project_int8_setup),
    OpSpec("attention", attention, attention_fake, ("attention", "attention_backward"),
           _grad.attention_backward, _grad.attention_setup),
    OpSpec("attention_backward", attention_backward, attention_backward_fake, ("attention_backward",)),
)


def _register(spec: OpSpec):
    op = torch.library.custom_op(f"{NAMESPACE}::{spec.name}", spec.impl, mutates_args=())
    op.register_fake(spec.fake)
    if spec.backward is not None:
        op.register_autograd(spec.backward, setup_context=spec.setup)
    return op


REGISTERED = {s.name: _register(s) for s in SPECS if all(hasattr(ops, r) for r in s.requires)}
