"""GPU tier of the fused QKV projections: Llama-3-8B and 70B-like shapes at decode and prefill sizes,
both layouts with RoPE, against float64 references computed by torch on the device, and determinism.

    pytest -m gpu tests/ops/test_qkv_gpu.py
"""

import numpy as np
import pytest

from kaiodsl import ops

from opkit import TOL

pytestmark = pytest.mark.gpu

LLAMA8B = (4096, 32, 8, 128)       # hidden, H, H_kv, D
LLAMA70B = (8192, 64, 8, 128)


def _case(torch, kind, hidden, H, Hkv, D, gs=128):
    """(op weight args, float64 weights on the device, kwargs)."""
    Ns = (H * D, Hkv * D, Hkv * D)
    dev = "cuda"
    if kind == "f16":
        ws = [(torch.randn(n, hidden, device=dev) * 0.02).half() for n in Ns]
        return ws, [w.double() for w in ws], {}
    if kind == "int8":
        qs = [torch.randint(-128, 128, (n, hidden), device=dev, dtype=torch.int8) for n in Ns]
        ss = [torch.rand(n, device=dev) * 1e-3 + 1e-4 for n in Ns]
        return qs + ss, [q.double() * s.double()[:, None] for q, s in zip(qs, ss)], {}
    rng = np.random.default_rng(hidden + H)
    qs = [rng.integers(0, 16, (n, hidden), dtype=np.uint8) for n in Ns]
    ss = [(rng.uniform(0.5, 1.5, (n, hidden // gs)) * 1e-3).astype(np.float16) for n in Ns]
    zs = [rng.integers(0, 16, (n, hidden // gs), dtype=np.uint8) for n in Ns]
    ref = [torch.tensor(ops.dequantize(q, s, z, gs, np.float16), device=dev).double() for q, s, z in zip(qs, ss, zs)]
    args = [torch.tensor(ops.pack_int4(q), device=dev) for q in qs] + [torch.tensor(s, device=dev) for s in ss]
    return args, ref, dict(group_size=gs, zeros=[torch.tensor(z, device=dev) for z in zs])


OP = {"f16": ops.qkv_project, "int8": ops.qkv_project_int8, "int4": ops.qkv_project_int4}


def _rope_ref(torch, y, cos, sin, pos, D, style):
    M = y.shape[0]
    c, s = cos[pos].double()[:, None], sin[pos].double()[:, None]
    y = y.reshape(M, -1, D)
    if style == "rotate_half":
        a, b = y[..., :D // 2], y[..., D // 2:]
        y = torch.cat([a * c - b * s, b * c + a * s], -1)
    else:
        a, b = y[..., 0::2], y[..., 1::2]
        y = torch.stack([a * c - b * s, b * c + a * s], -1)
    return y.reshape(M, -1)


def _check(torch, out, want):
    err = float((out.double() - want).norm() / want.norm())
    assert err <= TOL["f16"], f"relative error {err:.3g} > {TOL['f16']}"


@pytest.mark.parametrize("kind", ["f16", "int8", "int4"])
@pytest.mark.parametrize("M", [1, 4, 16, 64, 256, 2048, 8192])
def test_qkv_llama8b(torch_cuda, kind, M):  # noqa: F811
    torch = torch_cuda
    args, ref, kw = _case(torch, kind, *LLAMA8B)
    x = torch.randn(M, LLAMA8B[0], device="cuda", dtype=torch.float16)
    outs = OP[kind](x, *args, **kw)
    for o, w in zip(outs, ref):
        _check(torch, o, x.double() @ w.T)
    again = OP[kind](x, *args, **kw)
    assert all(torch.equal(a, b) for a, b in zip(outs, again))          # deterministic


@pytest.mark.parametrize("kind", ["f16", "int8", "int4"])
@pytest.mark.parametrize("style", ["rotate_half", "interleaved"])
@pytest.mark.parametrize("shape,B,S", [(LLAMA8B, 2, 1024), (LLAMA70B, 4, 1), (LLAMA70B, 1, 2048)],
                         ids=["8b-prefill", "70b-decode", "70b-prefill"])
def test_qkv_bhsd_rope(torch_cuda, kind, style, shape, B, S):  # noqa: F811
    torch = torch_cuda
    hidden, H, Hkv, D = shape
    args, ref, kw = _case(torch, kind, *shape)
    x = torch.randn(B, S, hidden, device="cuda", dtype=torch.float16)
    P = S + 64
    ang = torch.rand(P, D // 2, device="cuda") * 6.28
    cos, sin = ang.cos(), ang.sin()
    pos = torch.randint(0, P, (B * S,), device="cuda", dtype=torch.int32)
    outs = OP[kind](x, *args, layout="bhsd", head_dim=D, rope=(cos, sin), rope_style=style, positions=pos, **kw)
    x2 = x.reshape(B * S, hidden).double()
    for n, (o, w) in enumerate(zip(outs, ref)):
        y = x2 @ w.T
        if n < 2:
            y = _rope_ref(torch, y, cos, sin, pos.long(), D, style)
        want = y.reshape(B, S, -1, D).transpose(1, 2)
        assert o.shape == want.shape
        _check(torch, o, want)
