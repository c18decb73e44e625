"""Quantized linear modules: ``Int8Linear`` (W8A8, dynamic or SmoothQuant static), ``W8A16Linear``,
``Int4Linear`` (W4A16, GPTQ import). Weights are buffers (not trainable: asking for their gradient is
an error); the activations are differentiable (see kaiodsl/torch/_grad.py)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import kaiodsl.torch as kt
from kaiodsl import ops
from kaiodsl.errors import ArgumentError

from .modules import check_dtype, check_features, flat


def quantize_per_channel_int8(weight):
    """Symmetric per-output-channel int8: ``(w_q int8 [N, K], scale f32 [N])`` with ``w ~ w_q * scale``."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.clamp(torch.round(w / scale[:, None]), -127, 127).to(torch.int8), scale


def smoothquant_factors(act_absmax, weight, alpha: float = 0.5):
    """SmoothQuant's per-input-channel factors ``s_k = max|X_k|^alpha / max|W_k|^(1 - alpha)``
    (Xiao et al. 2023, eq. 4): ``x / s`` and ``W * s`` give the same product, with the activation
    outliers moved into the weights."""
    if not 0.0 <= alpha <= 1.0:
        raise ArgumentError(f"smoothquant_factors(): alpha must be in [0, 1], got {alpha}")
    a = act_absmax.detach().float().clamp(min=1e-5)
    w = weight.detach().float().abs().amax(dim=0).clamp(min=1e-5)
    return (a ** alpha / w ** (1.0 - alpha)).clamp(min=1e-5)


def calibrate_smoothquant(samples, weight, alpha: float = 0.5):
    """From sample activations (a tensor [..., K] or an iterable of them): ``(smooth [K], act_scale [])``,
    the per-channel smoothing factors and the static per-tensor scale of the smoothed activations."""
    xs = [samples] if isinstance(samples, torch.Tensor) else list(samples)
    K = weight.shape[1]
    if not xs or any(x.shape[-1] != K for x in xs):
        raise ArgumentError(f"calibrate_smoothquant(): 'samples' must be one or more tensors [..., K={K}], "
                            f"got {[tuple(x.shape) for x in xs]}")
    absmax = torch.stack([flat(x).detach().float().abs().amax(dim=0) for x in xs]).amax(dim=0)
    smooth = smoothquant_factors(absmax, weight, alpha)
    peak = max(float((flat(x).detach().float() / smooth).abs().max()) for x in xs)
    return smooth, torch.tensor(max(peak, 1e-8) / 127.0, dtype=torch.float32)


class Int8Linear(nn.Module):
    """W8A8: int8 weights per output channel; activations quantized per token on the fly (default) or,
    SmoothQuant static, smoothed by ``1 / smooth`` and quantized with one calibrated ``act_scale``."""

    def __init__(self, w_q, weight_scale, bias=None, *, dtype=torch.float16, smooth=None, act_scale=None):
        super().__init__()
        self.dtype = check_dtype("Int8Linear", dtype)
        N, K = w_q.shape
        check_features("Int8Linear", K, N, k_multiple=16)
        self.in_features, self.out_features = K, N
        self.register_buffer("w_q", w_q.to(torch.int8).contiguous())
        self.register_buffer("weight_scale", weight_scale.float().contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().to(dtype).contiguous())
        self.register_buffer("smooth_inv", None if smooth is None else (1.0 / smooth.float()).to(w_q.device))
        self.register_buffer("act_scale", None if act_scale is None else act_scale.float().reshape(1).to(w_q.device))

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, smooth=None, act_scale=None, dtype=None) -> "Int8Linear":
        """Quantize ``linear``: dynamic per-token activations, or static with ``smooth`` and ``act_scale``
        (from ``calibrate_smoothquant``; ``smooth`` alone keeps the dynamic activation scale)."""
        w = linear.weight.detach().float()
        if smooth is not None:
            w = w * smooth.to(w.device).float()[None, :]
        w_q, scale = quantize_per_channel_int8(w)
        return cls(w_q, scale, linear.bias, dtype=dtype or linear.weight.dtype, smooth=smooth, act_scale=act_scale)

    from_float = from_linear

    @classmethod
    def smoothquant(cls, linear: nn.Linear, samples, alpha: float = 0.5, dtype=None) -> "Int8Linear":
        """The static SmoothQuant variant, calibrated on ``samples`` (activations entering ``linear``)."""
        smooth, act_scale = calibrate_smoothquant(samples, linear.weight, alpha)
        return cls.from_linear(linear, smooth=smooth, act_scale=act_scale, dtype=dtype)

    def forward(self, x):
        return kt.linear_w8a8(x, self.w_q, self.weight_scale, self.bias, smooth_inv=self.smooth_inv,
                              act_scale=self.act_scale)

    def extra_repr(self) -> str:
        mode = "static SmoothQuant" if self.act_scale is not None else "dynamic per-token"
        return f"in_features={self.in_features}, out_features={self.out_features}, {mode}, dtype={self.dtype}"


class W8A16Linear(nn.Module):
    """f16/bf16 activations x int8 weights (per output channel scales): ``kaiodsl.ops.matmul_w8a16``."""

    def __init__(self, w_q, scales, bias=None, *, dtype=torch.float16):
        super().__init__()
        kt._require("matmul_w8a16")
        self.dtype = check_dtype("W8A16Linear", dtype)
        self.out_features, self.in_features = w_q.shape
        self.register_buffer("w_q", w_q.to(torch.int8).contiguous())
        self.register_buffer("scales", scales.float().contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().to(dtype).contiguous())

    @classmethod
    def from_linear(cls, linear: nn.Linear, dtype=None) -> "W8A16Linear":
        w_q, scale = quantize_per_channel_int8(linear.weight)
        return cls(w_q, scale, linear.bias, dtype=dtype or linear.weight.dtype)

    from_float = from_linear

    def forward(self, x):
        y = kt.matmul_w8a16(flat(x), self.w_q, self.scales, bias=self.bias)
        return y.reshape(*x.shape[:-1], self.out_features)


class Int4Linear(nn.Module):
    """W4A16 (GPTQ-style groups along K): ``kaiodsl.ops.matmul_int4``; ``perm`` reorders the input
    channels of an act-order (``desc_act``) checkpoint so that its groups are contiguous."""

    def __init__(self, w_packed, scales, zeros=None, bias=None, *, group_size: int = 128, perm=None):
        super().__init__()
        self.dtype = check_dtype("Int4Linear", scales.dtype)
        self.out_features, self.in_features = w_packed.shape[0] * 8, w_packed.shape[1] * 128
        self.group_size = group_size
        self.register_buffer("w_packed", w_packed.contiguous())
        self.register_buffer("scales", scales.contiguous())
        self.register_buffer("zeros", None if zeros is None else zeros.contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().to(scales.dtype).contiguous())
        self.register_buffer("perm", None if perm is None else perm.to(torch.long))

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = 128, symmetric: bool = True, dtype=None):
        """Round-to-nearest int4 per group (``kaiodsl.ops.quantize_int4``)."""
        dtype = check_dtype("Int4Linear", dtype or linear.weight.dtype)
        N, K = linear.weight.shape
        check_features("Int4Linear", K, N, k_multiple=128, n_multiple=8)
        dev = linear.weight.device
        q, s, z = ops.quantize_int4(linear.weight.detach().float().cpu().numpy(), group_size, symmetric)
        return cls(torch.from_numpy(ops.pack_int4(q)).to(dev), torch.from_numpy(s).to(dev, dtype),
                   None if z is None else torch.from_numpy(z).to(dev), linear.bias, group_size=group_size)

    from_float = from_linear

    @classmethod
    def from_gptq(cls, qweight, scales, qzeros=None, g_idx=None, bias=None, *, group_size: int = 128):
        """From a GPTQ checkpoint: ``qweight`` int32 [K // 8, N], ``scales`` [K // g, N], ``qzeros`` int32
        [K // g, N // 8] and optional ``g_idx`` [K] (act-order: channels are permuted so groups are contiguous)."""
        dev = scales.device
        K, N = qweight.shape[0] * 8, qweight.shape[1]
        check_features("Int4Linear", K, N, k_multiple=128, n_multiple=8)
        w, s, z = ops.from_gptq(qweight.cpu().numpy(), scales.cpu().numpy(),
                                None if qzeros is None else qzeros.cpu().numpy(), group_size)
        perm = None
        if g_idx is not None:
            g = g_idx.cpu().numpy().astype(np.int64)
            G = K // group_size
            if g.shape != (K,) or g.min() < 0 or g.max() >= G:
                raise ArgumentError(f"Int4Linear.from_gptq(): 'g_idx' must be [K={K}] with groups 0..{G - 1}, got "
                                    f"shape {tuple(g_idx.shape)}, values {g.min()}..{g.max()}")
            if not (g == np.arange(K) // group_size).all():
                counts = np.bincount(g, minlength=G)
                if (counts != group_size).any():
                    raise ArgumentError(f"Int4Linear.from_gptq(): act-order 'g_idx' must give every group "
                                        f"group_size={group_size} channels; group sizes are {sorted(set(counts))}")
                order = np.argsort(g, kind="stable")
                w = ops.pack_int4(ops.unpack_int4(w)[:, order])
                perm = torch.from_numpy(order).to(dev)
        sc = torch.from_numpy(s).to(dev)
        return cls(torch.from_numpy(w).to(dev), sc, None if z is None else torch.from_numpy(z).to(dev), bias,
                   group_size=group_size, perm=perm)

    def forward(self, x):
        x2 = flat(x)
        if self.perm is not None:
            x2 = x2.index_select(1, self.perm)
        y = kt.matmul_int4(x2, self.w_packed, self.scales, zeros=self.zeros, group_size=self.group_size)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, group_size={self.group_size}, "
                f"act_order={self.perm is not None}, dtype={self.dtype}")
