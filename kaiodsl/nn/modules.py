"""Float modules on kaiodsl's kernels: ``Linear`` (f16/bf16) and ``FusedQKV``."""

from __future__ import annotations

import torch
from torch import nn

import kaiodsl.torch as kt
from kaiodsl.errors import ArgumentError

FLOAT_DTYPES = (torch.float16, torch.bfloat16)


def check_dtype(cls: str, dtype) -> torch.dtype:
    if dtype not in FLOAT_DTYPES:
        raise ArgumentError(f"{cls}: dtype must be torch.float16 or torch.bfloat16, got {dtype}; "
                            f"convert the model first (model.half() / model.bfloat16())")
    return dtype


def check_features(cls: str, in_features: int, out_features: int, k_multiple: int = 8, n_multiple: int = 1):
    if in_features % k_multiple or out_features % n_multiple:
        raise ArgumentError(f"{cls}: in_features={in_features} must be a multiple of {k_multiple}"
                            + (f" and out_features={out_features} of {n_multiple}" if n_multiple > 1 else "")
                            + " (the kernel's 16-byte rows)")


def flat(x):
    return x.reshape(-1, x.shape[-1])


class Linear(nn.Module):
    """``nn.Linear`` in f16/bf16 on the tensor-core GEMM; trainable (weight [N, K], the nn.Linear layout)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, device=None,
                 dtype=torch.float16):
        super().__init__()
        check_dtype("Linear", dtype)
        check_features("Linear", in_features, out_features)
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty((out_features, in_features), device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -in_features ** -0.5, in_features ** -0.5)

    @classmethod
    def from_linear(cls, linear: nn.Linear, dtype=None) -> "Linear":
        """A copy of ``linear`` (in its dtype, or ``dtype``); requires_grad is kept."""
        w = linear.weight
        m = cls(linear.in_features, linear.out_features, linear.bias is not None, device=w.device,
                dtype=dtype or w.dtype)
        with torch.no_grad():
            m.weight.copy_(w)
            if linear.bias is not None:
                m.bias.copy_(linear.bias)
        m.weight.requires_grad_(w.requires_grad)
        return m

    from_float = from_linear

    def forward(self, x):
        return kt.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, dtype={self.weight.dtype}")


class FusedQKV(nn.Module):
    """q, k and v projections in one launch (``kaiodsl.ops.qkv_project``; GQA: k/v may be narrower)."""

    def __init__(self, wq, wk, wv):
        super().__init__()
        kt._require("qkv_project")
        for name, w in (("wk", wk), ("wv", wv)):
            if w.dtype != wq.dtype or w.shape[1] != wq.shape[1]:
                raise ArgumentError(f"FusedQKV: '{name}' {tuple(w.shape)} {w.dtype} must be [N, K={wq.shape[1]}] "
                                    f"in {wq.dtype} as wq")
        check_dtype("FusedQKV", wq.dtype)
        self.wq, self.wk, self.wv = (nn.Parameter(w.detach().clone()) for w in (wq, wk, wv))

    @classmethod
    def from_linear(cls, q_proj: nn.Linear, k_proj: nn.Linear, v_proj: nn.Linear) -> "FusedQKV":
        for name, p in (("q_proj", q_proj), ("k_proj", k_proj), ("v_proj", v_proj)):
            if p.bias is not None:
                raise ArgumentError(f"FusedQKV.from_linear(): '{name}' has a bias; qkv_project takes none here")
        return cls(q_proj.weight, k_proj.weight, v_proj.weight)

    from_float = from_linear

    def forward(self, x):
        lead = x.shape[:-1]
        x2 = flat(x)
        if kt._direct(x2, self.wq, self.wk, self.wv):
            q, k, v = kt._ops.qkv_project(x2, self.wq, self.wk, self.wv)
        else:
            q, k, v = torch.ops.kaiodsl.qkv_project(x2, self.wq, self.wk, self.wv)
        return tuple(t.reshape(*lead, t.shape[-1]) for t in (q, k, v))
