"""Gradients of the custom ops (``register_autograd`` formulas), through the forward kernels.

Every product here is ``torch.ops.kaiodsl.matmul``, so a backward traced by torch.compile
stays made of kaiodsl ops. The quantized ops differentiate with respect to their activations
only: the Jacobian of ``x @ W^T`` is the dequantized weight. For ``linear_w8a8`` (activations
quantized on the fly) the rounding has zero derivative almost everywhere, so the gradient is
the straight-through estimator: quantize-dequantize of ``x`` is taken as the identity, and
``dx = (dy @ W_deq) * smooth_inv``. Asking for the gradient of a quantized weight (or of its
scales, a calibrated quantization parameter) is an ``ArgumentError``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kaiodsl.errors import ArgumentError

_ORDER_INV = (0, 4, 1, 5, 2, 6, 3, 7)    # weight j of a packed int4 word sits in nibble _ORDER_INV[j]


def _mm(a, b, b_layout):
    return torch.ops.kaiodsl.matmul(a, b, None, b_layout, None)


def _pad_rows(x, p):
    return F.pad(x, (0, 0, 0, p))


def grad_input(g, w):
    """``g [M, N] @ w [N, K]``: the input gradient of ``x @ w^T``. The kernel's reduction (N) must be a
    multiple of 8: N is a weight dimension (static), so the padding is decided at trace time."""
    p = (-g.shape[1]) % 8
    if p:
        g, w = F.pad(g, (0, p)), _pad_rows(w, p)
    return _mm(g.contiguous(), w.contiguous(), "kn")


def _grad_weight(g, a):
    """``g^T [N, M] @ a [M, K]``. M (tokens) is dynamic: it is always padded to a multiple of 8,
    with a pad that is an expression of M, so that no guard on M % 8 (and no recompile) appears."""
    if a.shape[0] == 0:
        return a.new_zeros((g.shape[1], a.shape[1]))
    p = (-a.shape[0]) % 8
    return _mm(_pad_rows(g, p).t().contiguous(), _pad_rows(a, p).contiguous(), "kn")


def _bias_grad(g, bias):
    return g.float().sum(0).to(bias.dtype)


def _needs(ctx, i) -> bool:
    """Whether input i wants a gradient (trailing defaulted inputs may be absent from the tuple)."""
    n = ctx.needs_input_grad
    return i < len(n) and n[i]


def _no_grad_for(ctx, op: str, names: dict) -> None:
    for i, what in names.items():
        if _needs(ctx, i):
            raise ArgumentError(f"{op}: no gradient for {what}; only the activations are differentiable. "
                                f"Train the float model (or an f16/bf16 kaiodsl.nn.Linear) instead")


# -- matmul (f16 / bf16) ------------------------------------------------------------------------------
def matmul_setup(ctx, inputs, output):
    a, b, bias, b_layout, _ = inputs
    ctx.save_for_backward(a, b)
    ctx.b_layout = b_layout
    ctx.bias = None if bias is None else torch.empty((), dtype=bias.dtype)


def matmul_backward(ctx, g):
    a, b = ctx.saved_tensors
    g = g.to(a.dtype).contiguous()
    da = db = dbias = None
    if ctx.b_layout == "nk":                   # y = a @ b^T, b [N, K]
        if _needs(ctx, 0):
            da = grad_input(g, b)
        if _needs(ctx, 1):
            db = _grad_weight(g, a)
    else:                                      # y = a @ b, b [K, N]
        if _needs(ctx, 0):
            da = _mm(g, b.contiguous(), "nk")
        if _needs(ctx, 1):
            db = _grad_weight(g, a).t().contiguous()
    if _needs(ctx, 2):
        dbias = _bias_grad(g, ctx.bias)
    return da, db, dbias, None, None


# -- W8A8 ---------------------------------------------------------------------------------------------
def matmul_w8a8_setup(ctx, inputs, output):
    a_q, w_q, act_scale, weight_scale, bias, _ = inputs
    ctx.save_for_backward(a_q, w_q, act_scale, weight_scale)
    ctx.bias = None if bias is None else torch.empty((), dtype=bias.dtype)


def matmul_w8a8_backward(ctx, g):
    """The int8 operands have no gradient; ``act_scale`` (activation side) has d/ds[m] = sum_n g * acc * w_s."""
    _no_grad_for(ctx, "matmul_w8a8", {3: "'weight_scale' (the scales of a quantized weight)"})
    a_q, w_q, act_scale, weight_scale = ctx.saved_tensors
    d_act = dbias = None
    if _needs(ctx, 2):
        one = act_scale.new_ones((1,), dtype=torch.float32)
        unscaled = torch.ops.kaiodsl.matmul_w8a8(a_q, w_q, one, weight_scale, None, torch.float32)
        per_row = (g.float() * unscaled).sum(1)
        d_act = (per_row if act_scale.numel() == a_q.shape[0] and act_scale.dim() else per_row.sum()) \
            .reshape(act_scale.shape).to(act_scale.dtype)
    if _needs(ctx, 4):
        dbias = _bias_grad(g, ctx.bias)
    return None, None, d_act, None, dbias, None


def dequantize_int8(w_q, scales, dtype, group_size=None):
    """``w_q [N, K] * scales`` (per row [N], or per group [N, K // group_size]) in ``dtype``."""
    s = scales.float()
    if s.dim() == 1:
        s = s[:, None]
    elif group_size:
        s = s.repeat_interleave(group_size, dim=1)
    return (w_q.float() * s).to(dtype)


def linear_w8a8_setup(ctx, inputs, output):
    x, w_q, weight_scale, bias, smooth_inv, _ = inputs
    ctx.save_for_backward(w_q, weight_scale, smooth_inv)
    ctx.dtype = x.dtype
    ctx.bias = None if bias is None else torch.empty((), dtype=bias.dtype)


def linear_w8a8_backward(ctx, g):
    """Straight-through: ``dx = (g @ (w_q * weight_scale)) * smooth_inv`` (see the module docstring)."""
    _no_grad_for(ctx, "linear_w8a8", {2: "'weight_scale' (the scales of a quantized weight)",
                                      4: "'smooth_inv' (calibrated SmoothQuant factors)",
                                      5: "'act_scale' (a calibrated static scale)"})
    w_q, weight_scale, smooth_inv = ctx.saved_tensors
    dx = dbias = None
    if _needs(ctx, 0):
        g = g.to(ctx.dtype).contiguous()
        dx = grad_input(g, dequantize_int8(w_q, weight_scale, ctx.dtype))
        if smooth_inv is not None:
            dx = dx * smooth_inv.to(dx.dtype)
    if _needs(ctx, 3):
        dbias = _bias_grad(g, ctx.bias)
    return dx, None, None, dbias, None, None


# -- W4A16 --------------------------------------------------------------------------------------------
def unpack_int4(w_packed):
    """torch twin of kaiodsl.ops.unpack_int4: packed int32 [N // 8, K // 128, 32, 4] -> int [N, K] in 0..15."""
    ni, nb = w_packed.shape[:2]
    shifts = torch.arange(0, 32, 4, dtype=torch.int32, device=w_packed.device)
    nib = (w_packed.view(torch.int32).reshape(ni, nb, 8, 4, 4, 1) >> shifts) & 0xF   # [i, jj, g, t, w, p]
    v = nib[..., list(_ORDER_INV)]                                                     # [i, jj, g, t, w, j]
    return v.permute(0, 2, 1, 4, 3, 5).reshape(ni * 8, nb * 128)


def dequantize_int4(w_packed, scales, zeros, group_size):
    """W [N, K] = (q - zero) * scale, rounded once to the scales' dtype as the kernel does."""
    q = unpack_int4(w_packed).float()
    z = 8.0 if zeros is None else zeros.float().repeat_interleave(group_size, dim=1)
    return ((q - z) * scales.float().repeat_interleave(group_size, dim=1)).to(scales.dtype)


def matmul_int4_setup(ctx, inputs, output):
    a, w_packed, scales, zeros, group_size = inputs
    ctx.save_for_backward(w_packed, scales, zeros)
    ctx.group_size = group_size


def matmul_int4_backward(ctx, g):
    _no_grad_for(ctx, "matmul_int4", {2: "'scales' (the scales of a quantized weight)"})
    w_packed, scales, zeros = ctx.saved_tensors
    da = None
    if _needs(ctx, 0):
        da = grad_input(g.to(scales.dtype).contiguous(), dequantize_int4(w_packed, scales, zeros, ctx.group_size))
    return da, None, None, None, None


# -- W8A16 (registered when kaiodsl.ops has matmul_w8a16) -----------------------------------------------
def matmul_w8a16_setup(ctx, inputs, output):
    a, w_q, scales, bias, group_size, _ = inputs
    ctx.save_for_backward(w_q, scales)
    ctx.dtype, ctx.group_size = a.dtype, group_size
    ctx.bias = None if bias is None else torch.empty((), dtype=bias.dtype)


def matmul_w8a16_backward(ctx, g):
    _no_grad_for(ctx, "matmul_w8a16", {2: "'scales' (the scales of a quantized weight)"})
    w_q, scales = ctx.saved_tensors
    g = g.to(ctx.dtype).contiguous()
    da = grad_input(g, dequantize_int8(w_q, scales, ctx.dtype, ctx.group_size)) if _needs(ctx, 0) else None
    dbias = _bias_grad(g, ctx.bias) if _needs(ctx, 3) else None
    return da, None, None, dbias, None, None


# -- fused QKV (registered when kaiodsl.ops has qkv_project*) ------------------------------------------
def qkv_project_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def qkv_project_backward(ctx, gq, gk, gv):
    x, *ws = ctx.saved_tensors
    gs = [g.to(x.dtype).contiguous() for g in (gq, gk, gv)]
    dx = None
    if _needs(ctx, 0):
        dx = sum(grad_input(g, w) for g, w in zip(gs, ws))
    dws = [_grad_weight(g, x) if _needs(ctx, i + 1) else None for i, g in enumerate(gs)]
    return (dx, *dws)


def qkv_project_int8_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def qkv_project_int8_backward(ctx, gq, gk, gv):
    _no_grad_for(ctx, "qkv_project_int8", {i: "the scales of a quantized weight" for i in (4, 5, 6)})
    x, wq, wk, wv, sq, sk, sv = ctx.saved_tensors
    dx = None
    if _needs(ctx, 0):
        dx = sum(grad_input(g.to(x.dtype).contiguous(), dequantize_int8(w, s, x.dtype))
                 for g, w, s in zip((gq, gk, gv), (wq, wk, wv), (sq, sk, sv)))
    return dx, None, None, None, None, None, None


# -- attention (registered when kaiodsl.ops has attention and attention_backward) -----------------------
def attention_setup(ctx, inputs, output):
    q, k, v, causal, scale = inputs
    o, lse = output
    ctx.save_for_backward(q, k, v, o, lse)     # the LSE, not a recomputation of the softmax
    ctx.causal, ctx.scale = causal, scale


def attention_backward(ctx, do, dlse):
    q, k, v, o, lse = ctx.saved_tensors
    dq, dk, dv = torch.ops.kaiodsl.attention_backward(do.contiguous(), q, k, v, o, lse, ctx.causal, ctx.scale)
    return dq, dk, dv, None, None
