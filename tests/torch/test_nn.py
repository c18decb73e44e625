"""kaiodsl.nn modules against float64 references built from the same (dequantized) weights."""

import numpy as np
import pytest
import torch
from torch import nn

import kaiodsl.nn as knn
import kaiodsl.torch as kt
from kaiodsl import ops
from kaiodsl.errors import ArgumentError

from tkit import randn, rel

F16 = [torch.float16, torch.bfloat16]


def _linear(gen, K, N, dtype, device, bias=True):
    lin = nn.Linear(K, N, bias=bias)
    with torch.no_grad():
        lin.weight.copy_(torch.randn((N, K), generator=gen) * K ** -0.5)
        if bias:
            lin.bias.copy_(torch.randn(N, generator=gen) * 0.1)
    return lin.to(device, dtype)


def _f64_linear(x, w, b=None):
    y = x.detach().double().cpu() @ w.detach().double().cpu().T
    return y if b is None else y + b.detach().double().cpu()


@pytest.mark.parametrize("dtype", F16, ids=["f16", "bf16"])
def test_linear(backend, device, gen, dtype):
    ref = _linear(gen, 64, 40, dtype, device)
    m = knn.Linear.from_linear(ref)
    x = randn(gen, (2, 3, 64), dtype, device, requires_grad=True)
    y = m(x)
    assert y.shape == (2, 3, 40) and y.dtype == dtype
    assert rel(y, _f64_linear(x.reshape(6, 64), ref.weight, ref.bias).reshape(2, 3, 40)) < 1e-2
    y.float().sum().backward()
    assert rel(m.weight.grad, torch.ones(6, 40, dtype=torch.float64).T @ x.detach().double().cpu().reshape(6, 64)) < 1e-2
    with pytest.raises(ArgumentError, match="dtype must be torch.float16 or torch.bfloat16"):
        knn.Linear(64, 40, dtype=torch.float32)
    with pytest.raises(ArgumentError, match="in_features=60 must be a multiple of 8"):
        knn.Linear(60, 40)


@pytest.mark.parametrize("dtype", F16, ids=["f16", "bf16"])
def test_int8_linear_dynamic(backend, device, gen, dtype):
    """Per-channel int8 weights, per-token activations: within int8 quantization error of the float layer,
    and exactly the matmul_w8a8 of the quantized operands."""
    ref = _linear(gen, 64, 32, dtype, device)
    m = knn.Int8Linear.from_linear(ref)
    x = randn(gen, (2, 5, 64), dtype, device)
    y = m(x)
    assert rel(y, _f64_linear(x.reshape(10, 64), ref.weight, ref.bias).reshape(2, 5, 32)) < 3e-2
    w_q, s = knn.quantize_per_channel_int8(ref.weight)
    assert torch.equal(m.w_q, w_q) and torch.equal(m.weight_scale, s)
    xq, xs = kt.quantize_per_token(x.reshape(10, 64))
    assert torch.equal(y.reshape(10, 32), kt.matmul_w8a8(xq, w_q, xs, s, bias=m.bias, out_dtype=dtype))


def test_smoothquant_calibration(backend, device, gen):
    """The factors are eq. 4 of SmoothQuant; the static module is within quantization error with outliers."""
    dtype = torch.float16
    ref = _linear(gen, 64, 32, dtype, device)
    samples = [randn(gen, (6, 64), dtype, device) for _ in range(3)]
    for x in samples:
        x[:, 5] *= 30                                     # an outlier channel, which smoothing tames
    smooth, act_scale = knn.calibrate_smoothquant(samples, ref.weight, alpha=0.5)
    xs = torch.cat([x.cpu().double() for x in samples])
    amax, wmax = xs.abs().amax(0), ref.weight.cpu().double().abs().amax(0)
    expect = amax.sqrt() / wmax.sqrt()
    assert rel(smooth, expect) < 1e-5
    assert abs(float(act_scale) - float((xs / smooth.cpu().double()).abs().max()) / 127) < 1e-6 * float(act_scale)
    m = knn.Int8Linear.smoothquant(ref, samples)
    x = samples[0]
    assert rel(m(x), _f64_linear(x, ref.weight, ref.bias)) < 5e-2
    with pytest.raises(ArgumentError, match="alpha must be in"):
        knn.smoothquant_factors(amax, ref.weight, alpha=1.5)


def _gptq_tensors(gen, N, K, gs, act_order):
    """A GPTQ checkpoint's tensors (qweight [K//8, N], scales [G, N], qzeros [G, N//8], g_idx) from known q."""
    q = torch.randint(0, 16, (N, K), generator=gen, dtype=torch.int64)
    G = K // gs
    z = torch.randint(1, 16, (G, N), generator=gen, dtype=torch.int64)        # GPTQ stores zero - 1
    scales = (torch.rand((G, N), generator=gen) * 0.02 + 0.005).half()
    g_idx = torch.arange(K) // gs
    if act_order:
        g_idx = g_idx[torch.randperm(K, generator=gen)]
    qweight = torch.zeros((K // 8, N), dtype=torch.int64)
    for j in range(8):
        qweight |= q.T[j::8] << (4 * j)
    qzeros = torch.zeros((G, N // 8), dtype=torch.int64)
    for j in range(8):
        qzeros |= (z[:, j::8] - 1) << (4 * j)
    as_i32 = lambda t: torch.from_numpy(t.numpy().astype(np.uint32).view(np.int32))  # noqa: E731
    w = (q - z.T[:, g_idx]).double() * scales.T.double()[:, g_idx]            # W[n, k], the float64 reference
    return as_i32(qweight), scales, as_i32(qzeros), g_idx, w.half().double()


@pytest.mark.parametrize("act_order", [False, True], ids=["in-order", "act-order"])
def test_int4_linear_from_gptq(backend, device, gen, act_order):
    qweight, scales, qzeros, g_idx, w = _gptq_tensors(gen, 16, 256, 64, act_order)
    m = knn.Int4Linear.from_gptq(qweight.to(device), scales.to(device), qzeros.to(device), g_idx.to(device),
                                 group_size=64)
    assert (m.perm is not None) == act_order
    x = randn(gen, (3, 256), torch.float16, device, requires_grad=True)
    y = m(x)
    assert rel(y, x.detach().double().cpu() @ w.T) < 1e-2
    y.float().sum().backward()                              # the Jacobian is the dequantized weight
    assert rel(x.grad, torch.ones(3, 16, dtype=torch.float64) @ w) < 1e-2


def test_int4_linear_errors(backend, device, gen):
    qweight, scales, qzeros, g_idx, _ = _gptq_tensors(gen, 16, 256, 64, True)
    bad = g_idx.clone()
    bad[bad == 1] = 0                                       # group 0 gets 128 channels, group 1 none
    with pytest.raises(ArgumentError, match="'g_idx' must give every group group_size=64 channels"):
        knn.Int4Linear.from_gptq(qweight, scales, qzeros, bad, group_size=64)
    with pytest.raises(ArgumentError, match="in_features=64 must be a multiple of 128"):
        knn.Int4Linear.from_linear(nn.Linear(64, 16).half())


@pytest.mark.parametrize("dtype", F16, ids=["f16", "bf16"])
def test_int4_linear_from_linear(backend, device, gen, dtype):
    ref = _linear(gen, 128, 24, dtype, device)
    m = knn.Int4Linear.from_linear(ref, group_size=32)
    x = randn(gen, (4, 128), dtype, device)
    q, _, z = ops.quantize_int4(ref.weight.detach().float().cpu().numpy(), 32)
    w = torch.from_numpy(ops.dequantize(q, m.scales.float().cpu().numpy(), z, 32, np.float32)).double()
    assert rel(m(x), x.double().cpu() @ w.T + ref.bias.double().cpu()) < 1e-2


@pytest.mark.parametrize("name,make", [
    ("matmul_w8a16", lambda: knn.W8A16Linear.from_linear(nn.Linear(64, 16).half())),
    ("qkv_project", lambda: knn.FusedQKV.from_linear(*(nn.Linear(64, 16, bias=False).half() for _ in range(3)))),
    ("attention", lambda: knn.functional.scaled_dot_product_attention(*(torch.zeros(1, 2, 4, 32).half(),) * 3)),
])
def test_absent_op_is_a_clear_error(name, make):
    if hasattr(ops, name):
        pytest.skip(f"kaiodsl.ops.{name} is present")
    with pytest.raises(Exception, match=f"kaiodsl.ops.{name} is not part of this kaiodsl install"):
        make()


@pytest.mark.parametrize("kwargs,arg", [({"attn_mask": torch.ones(4, 4, dtype=torch.bool)}, "attn_mask"),
                                        ({"dropout_p": 0.1}, "dropout_p")])
def test_sdpa_unsupported_arguments(kwargs, arg):
    q = torch.zeros(1, 2, 4, 32).half()
    with pytest.raises(ArgumentError, match=f"'{arg}'"):
        knn.functional.scaled_dot_product_attention(q, q, q, **kwargs)
    with pytest.raises(ArgumentError, match="enable_gqa=True"):
        knn.functional.scaled_dot_product_attention(q, q[:, :1], q[:, :1])


@pytest.mark.skipif(not hasattr(ops, "attention"), reason="kaiodsl.ops.attention is not in this install")
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("heads", [(4, 4), (4, 2)], ids=["mha", "gqa"])
def test_sdpa_against_torch(backend, device, gen, causal, heads):
    hq, hkv = heads
    q = randn(gen, (1, hq, 16, 32), torch.float16, device, requires_grad=True)
    k = randn(gen, (1, hkv, 16, 32), torch.float16, device, requires_grad=True)
    v = randn(gen, (1, hkv, 16, 32), torch.float16, device, requires_grad=True)
    o = knn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=hq != hkv)
    q64, k64, v64 = (t.detach().double().cpu().requires_grad_() for t in (q, k, v))
    o64 = torch.nn.functional.scaled_dot_product_attention(q64, k64, v64, is_causal=causal, enable_gqa=hq != hkv)
    assert rel(o, o64) < 5e-3
    g = randn(gen, o.shape, torch.float16, device)
    o.backward(g)
    o64.backward(g.double().cpu())
    for t, t64 in ((q, q64), (k, k64), (v, v64)):
        assert rel(t.grad, t64.grad) < 1e-2
