"""torch.ops.kaiodsl.*: PyTorch's own op checks (opcheck), values against float64 references,
gradients, and the direct fast path."""

import numpy as np
import pytest
import torch

import kaiodsl.torch as kt
from kaiodsl import ops
from kaiodsl.errors import ArgumentError

from tkit import randint8, randn, rel

OPCHECK_TESTS = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")
F16 = [torch.float16, torch.bfloat16]


def _int4_weights(gen, N, K, group_size, dtype, device, zeros=True):
    q = torch.randint(0, 16, (N, K), generator=gen).numpy()
    s = (torch.rand((N, K // group_size), generator=gen) * 0.05 + 0.01).to(dtype)
    z = torch.randint(0, 16, (N, K // group_size), generator=gen, dtype=torch.uint8) if zeros else None
    return q, torch.from_numpy(ops.pack_int4(q)).to(device), s.to(device), None if z is None else z.to(device)


def samples(name, gen, device, dtype):
    """(args, id) cases for one op, small enough for the simulator; float activations require grad."""
    r = lambda *s, g=False: randn(gen, s, dtype, device, requires_grad=g)  # noqa: E731
    f32 = lambda *s, g=False: (torch.rand(s, generator=gen) * 0.02 + 0.005).to(device).requires_grad_(g)  # noqa: E731
    if name == "matmul":
        return [((r(5, 64, g=True), r(24, 64, g=True), r(24, g=True), "nk", None), "nk-bias"),
                ((r(13, 32, g=True), r(32, 16, g=True), None, "kn", None), "kn"),
                ((r(5, 64, g=True), r(24, 64, g=True), None, "nk", torch.float32), "nk-f32out")]
    if name == "matmul_int8":
        return [((randint8(gen, (5, 64), device), randint8(gen, (24, 64), device), 0.25), "scale")]
    if name == "matmul_w8a8":
        a, w = randint8(gen, (5, 64), device), randint8(gen, (24, 64), device)
        return [((a, w, f32(5, g=True), f32(24), r(24, g=True), dtype), "per-token"),
                ((a, w, f32(1, g=True), f32(24), None, dtype), "per-tensor")]
    if name == "quantize_per_token":
        return [((r(5, 64),), "rows")]
    if name == "linear_w8a8":
        w = randint8(gen, (24, 64), device)
        return [((r(5, 64, g=True), w, f32(24), r(24, g=True), None, None), "dynamic"),
                ((r(5, 64, g=True), w, f32(24), None, f32(64) * 50, torch.tensor([0.03], device=device)),
                 "static-smooth")]
    if name == "matmul_int4":
        _, wp, s, z = _int4_weights(gen, 16, 128, 64, dtype, device)
        return [((r(5, 128, g=True), wp, s, z, 64), "zeros-g64"),
                ((r(3, 128, g=True), wp, s, None, 64), "no-zeros")]
    return []


OPS = ["matmul", "matmul_int8", "matmul_w8a8", "quantize_per_token", "linear_w8a8", "matmul_int4"]


def test_registered_ops():
    """Every op of this install is registered, callable as torch.ops.kaiodsl.<name>."""
    assert set(OPS) <= set(kt.REGISTERED)
    for name in kt.REGISTERED:
        assert hasattr(torch.ops.kaiodsl, name)
    # ops that arrive later register when kaiodsl.ops has them
    for name in ("attention", "matmul_w8a16", "qkv_project", "qkv_project_int8"):
        assert (name in kt.REGISTERED) == hasattr(ops, name)


@pytest.mark.parametrize("dtype", F16, ids=["f16", "bf16"])
@pytest.mark.parametrize("name", OPS)
def test_opcheck(backend, device, gen, name, dtype):
    if name in ("matmul_int8",) and dtype is torch.bfloat16:
        pytest.skip("no float input")
    for args, case in samples(name, gen, device, dtype):
        torch.library.opcheck(getattr(torch.ops.kaiodsl, name).default, args, test_utils=OPCHECK_TESTS)


@pytest.mark.parametrize("dtype", F16, ids=["f16", "bf16"])
@pytest.mark.parametrize("layout,M,N,K", [("nk", 5, 24, 64), ("kn", 13, 16, 32), ("nk", 16, 20, 48)])
def test_matmul_autograd(backend, device, gen, dtype, layout, M, N, K):
    """Values and all three gradients against float64 autograd (ragged M and N pad the backward)."""
    a = randn(gen, (M, K), dtype, device, requires_grad=True)
    b = randn(gen, (N, K) if layout == "nk" else (K, N), dtype, device, requires_grad=True)
    bias = randn(gen, (N,), dtype, device, requires_grad=True)
    y = kt.matmul(a, b, bias=bias, b_layout=layout)
    g = randn(gen, (M, N), dtype, device)
    y.backward(g)
    a64, b64, bias64 = (t.detach().double().cpu().requires_grad_() for t in (a, b, bias))
    y64 = a64 @ (b64.T if layout == "nk" else b64) + bias64
    y64.backward(g.double().cpu())
    tol = 1e-2 if dtype is torch.bfloat16 else 2e-3
    for got, ref in ((y, y64), (a.grad, a64.grad), (b.grad, b64.grad), (bias.grad, bias64.grad)):
        assert got.dtype == dtype and got.shape == ref.shape
        assert rel(got, ref) < tol


@pytest.mark.parametrize("dtype", F16, ids=["f16", "bf16"])
def test_int4_input_gradient(backend, device, gen, dtype):
    """d(a @ W^T)/da = the dequantized weight; the forward matches the ops reference."""
    q, wp, s, z = _int4_weights(gen, 16, 128, 64, dtype, device)
    a = randn(gen, (5, 128), dtype, device, requires_grad=True)
    y = kt.matmul_int4(a, wp, s, zeros=z, group_size=64)
    g = randn(gen, (5, 16), dtype, device)
    y.backward(g)
    w = torch.from_numpy(ops.dequantize(q, s.float().cpu().numpy(), z.cpu().numpy(), 64, np.float32)).double()
    if dtype is torch.float16:
        assert torch.equal(kt.dequantize_int4(wp, s, z, 64).cpu(), torch.from_numpy(
            ops.dequantize(q, s.float().cpu().numpy(), z.cpu().numpy(), 64, np.float16)))
    assert rel(y, a.detach().double().cpu() @ w.T) < 1e-2
    assert rel(a.grad, g.double().cpu() @ w) < 1e-2


def _quantize_ref(x):
    xq, s = ops.reference_quantize_per_token(x.detach().float().cpu().numpy())
    return torch.from_numpy(xq), torch.from_numpy(s)


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static-smooth"])
def test_linear_w8a8_straight_through(backend, device, gen, static):
    """Forward = matmul_w8a8 of the quantized (smoothed) activations; dx = (g @ W_deq) * smooth_inv."""
    dtype = torch.float16
    x = randn(gen, (7, 64), dtype, device, requires_grad=True)
    w_q = randint8(gen, (24, 64), device)
    ws = (torch.rand(24, generator=gen) * 0.01 + 0.001).to(device)
    smooth_inv = (torch.rand(64, generator=gen) + 0.5).to(device) if static else None
    act = torch.tensor([0.02], device=device) if static else None
    y = kt.linear_w8a8(x, w_q, ws, smooth_inv=smooth_inv, act_scale=act)
    xs = x.detach().cpu().double() * (smooth_inv.cpu().half().double() if static else 1)
    if static:
        xq, rows = torch.clamp(torch.round(xs.half().float() / 0.02), -127, 127), torch.full((7,), 0.02)
    else:
        xq, rows = _quantize_ref(xs.half())
    ref = ops.reference_matmul_w8a8(xq.numpy(), w_q.cpu().numpy(), rows.numpy(), ws.cpu().numpy())
    assert rel(y, torch.from_numpy(ref)) < 2e-3
    g = randn(gen, (7, 24), dtype, device)
    y.backward(g)
    wd = w_q.cpu().double() * ws.cpu().double()[:, None]
    dx = g.cpu().double() @ wd * (smooth_inv.cpu().double() if static else 1)
    assert rel(x.grad, dx) < 2e-3


def test_w8a8_act_scale_gradient(backend, device, gen):
    """out = acc * s[m] * w[n]: d/ds[m] = sum_n g[m, n] acc[m, n] w[n]; bias gets sum_m g."""
    a, w = randint8(gen, (5, 64), device), randint8(gen, (24, 64), device)
    s = (torch.rand(5, generator=gen) * 0.01 + 0.001).to(device).requires_grad_()
    ws = (torch.rand(24, generator=gen) * 0.01 + 0.001).to(device)
    bias = randn(gen, (24,), torch.float16, device, requires_grad=True)
    y = kt.matmul_w8a8(a, w, s, ws, bias=bias, out_dtype=torch.float32)
    g = randn(gen, (5, 24), torch.float32, device)
    y.backward(g)
    acc = torch.from_numpy(ops.reference_matmul_int8(a.cpu().numpy(), w.cpu().numpy())).double()
    assert rel(s.grad, (g.cpu().double() * acc * ws.cpu().double()).sum(1)) < 1e-5
    assert rel(bias.grad, g.cpu().double().sum(0)) < 1e-3


@pytest.mark.parametrize("case", ["w8a8-weight_scale", "linear_w8a8-weight_scale", "int4-scales"])
def test_quantized_weight_gradient_is_an_error(backend, device, gen, case):
    dtype = torch.float16
    w_q = randint8(gen, (24, 64), device)
    ws = (torch.rand(24, generator=gen) * 0.01 + 0.001).to(device).requires_grad_()
    if case == "w8a8-weight_scale":
        y = kt.matmul_w8a8(randint8(gen, (5, 64), device), w_q, 0.5, ws)
    elif case == "linear_w8a8-weight_scale":
        y = kt.linear_w8a8(randn(gen, (5, 64), dtype, device, requires_grad=True), w_q, ws)
    else:
        _, wp, s, z = _int4_weights(gen, 16, 128, 64, dtype, device)
        y = kt.matmul_int4(randn(gen, (5, 128), dtype, device, requires_grad=True), wp, s.requires_grad_(),
                           zeros=z, group_size=64)
    with pytest.raises(ArgumentError, match="no gradient for '(weight_scale|scales)'"):
        y.float().sum().backward()


def test_int8_and_quantize_values(backend, device, gen):
    a, b = randint8(gen, (5, 64), device), randint8(gen, (24, 64), device)
    y = kt.matmul_int8(a, b, 0.5)
    assert torch.equal(y.cpu().double(), torch.from_numpy(ops.reference_matmul_int8(a.cpu().numpy(),
                                                                                    b.cpu().numpy())) * 0.5)
    x = randn(gen, (5, 64), torch.float16, device)
    xq, s = kt.quantize_per_token(x)
    rq, rs = _quantize_ref(x)
    assert torch.equal(xq.cpu(), rq) and torch.equal(s.cpu(), rs)


def test_direct_path_skips_the_dispatcher(backend, device, gen, monkeypatch):
    """No grad wanted: the wrapper calls the implementation directly (same bits); a grad wanted: the op."""
    a = randn(gen, (5, 64), torch.float16, device)
    w = randn(gen, (24, 64), torch.float16, device)
    via_op = torch.ops.kaiodsl.matmul(a, w, None, "nk", None)

    def refuse(*args):
        raise AssertionError("went through the dispatcher")

    monkeypatch.setattr(torch.ops.kaiodsl, "matmul", refuse)
    assert torch.equal(kt.matmul(a, w, b_layout="nk"), via_op)
    with pytest.raises(AssertionError, match="dispatcher"):
        kt.matmul(a, w.requires_grad_(), b_layout="nk")


def test_missing_op_is_a_clear_error():
    for name, call in (("matmul_w8a16", lambda: kt.matmul_w8a16(None, None, None)),
                       ("attention", lambda: kt.attention(None, None, None))):
        if hasattr(ops, name):
            continue
        with pytest.raises(Exception, match=f"kaiodsl.ops.{name} is not part of this kaiodsl install"):
            call()


def test_import_kaiodsl_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, kaiodsl, kaiodsl.ops; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("spec", kt.SPECS, ids=lambda s: s.name)
def test_every_table_entry_has_a_valid_schema(spec):
    """Entries whose op arrives later (attention, qkv, w8a16) still get their schema checked now."""
    schema = torch.library.infer_schema(spec.impl, mutates_args=())
    assert "(a!)" not in schema and "->" in schema
    if spec.name in kt.REGISTERED:
        assert str(getattr(torch.ops.kaiodsl, spec.name).default._schema).endswith(schema.split("->")[1].strip())
