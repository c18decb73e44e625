"""GPU tier for the op library (marked gpu; skipped without a device): large and ragged shapes
against torch, LLM decode/prefill shapes, bitwise determinism over 3 runs, torch tensors in and
out. Run on an H100 with ``pytest -m gpu tests/ops``."""

import numpy as np
import pytest

import kaiodsl
import kaiodsl.runtime
from kaiodsl import ops

from opkit import TOL, rel_err

pytestmark = pytest.mark.gpu


def _err(torch, got, ref):
    return rel_err(got.double().cpu().numpy(), ref.double().cpu().numpy())


BIG = [(1000, 1016, 1032), (2048, 2048, 2048), (4096, 4096, 4096), (16, 4096, 4096), (1, 4096, 4096),
       (16, 11008, 4096), (16, 4096, 11008), (4000, 4104, 4096), (333, 1000, 1000)]


@pytest.mark.parametrize("pipeline", ["auto", "sync", "async"])
@pytest.mark.parametrize("layout", ["kn", "nk"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("M,N,K", BIG, ids=[f"{m}x{n}x{k}" for m, n, k in BIG])
def test_matmul_large_vs_torch(torch_cuda, M, N, K, dtype, layout, pipeline):
    torch = torch_cuda
    if layout == "kn" and N % 8:
        pytest.skip("b [K, N] needs N % 8 == 0")
    if K % 8:
        pytest.skip("K % 8")
    dt = getattr(torch, dtype)
    a = torch.randn(M, K, device="cuda", dtype=dt)
    b = torch.randn(K, N, device="cuda", dtype=dt) if layout == "kn" else torch.randn(N, K, device="cuda",
                                                                                     dtype=dt)
    bias = torch.randn(N, device="cuda", dtype=torch.float32)
    out = ops.matmul(a, b, b_layout=layout, pipeline=pipeline, out_dtype=kaiodsl.f32, bias=bias)
    assert out.dtype == torch.float32 and out.is_cuda
    ref = a.double() @ (b.double() if layout == "kn" else b.double().t()) + bias.double()
    assert _err(torch, out, ref) < TOL["f32"] * 10
    out16 = ops.matmul(a, b, b_layout=layout, pipeline=pipeline)
    assert out16.dtype == dt
    assert _err(torch, out16, ref - bias.double()) < TOL["f16" if dtype == "float16" else "bf16"]


def test_matmul_torch_transposed_weight(torch_cuda):
    """An nn.Linear weight w [N, K] passed as-is with b_layout='nk' equals torch's F.linear."""
    torch = torch_cuda
    x = torch.randn(64, 512, device="cuda", dtype=torch.float16)
    w = torch.randn(768, 512, device="cuda", dtype=torch.float16)
    y = ops.matmul(x, w, b_layout="nk", out_dtype=kaiodsl.f32)
    assert _err(torch, y, torch.nn.functional.linear(x.double(), w.double())) < 1e-4


def test_matmul_backward_vs_autograd(torch_cuda):
    torch = torch_cuda
    for layout, (M, N, K) in [("kn", (1000, 1016, 1032)), ("nk", (333, 1001, 512)), ("nk", (16, 4096, 4096))]:
        a = torch.randn(M, K, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        b = torch.randn(*((K, N) if layout == "kn" else (N, K)), device="cuda", dtype=torch.bfloat16,
                        requires_grad=True)
        y = a.double() @ (b.double() if layout == "kn" else b.double().t())
        g = torch.randn(M, N, device="cuda", dtype=torch.bfloat16)
        y.backward(g.double())
        da, db = ops.matmul_backward(g, a.detach(), b.detach(), b_layout=layout)
        assert da.dtype == db.dtype == torch.bfloat16
        assert _err(torch, da, a.grad) < TOL["bf16"] and _err(torch, db, b.grad) < TOL["bf16"]


def test_w8a8_and_int8_large(torch_cuda):
    torch = torch_cuda
    for M, N, K in [(16, 4096, 4096), (4096, 4096, 4096), (1000, 1016, 1040)]:
        a = torch.randint(-128, 128, (M, K), device="cuda", dtype=torch.int8)
        w = torch.randint(-128, 128, (N, K), device="cuda", dtype=torch.int8)
        acc = a.double() @ w.double().t()
        assert _err(torch, ops.matmul_int8(a, w), acc) < 1e-7
        act = torch.rand(M, device="cuda") * 1e-3 + 1e-3
        ws = torch.rand(N, device="cuda") * 1e-3 + 1e-3
        out = ops.matmul_w8a8(a, w, act, ws, out_dtype=kaiodsl.bf16)
        assert out.dtype == torch.bfloat16
        assert _err(torch, out, acc * act.double()[:, None] * ws.double()[None, :]) < TOL["bf16"]


def test_quantize_per_token_torch(torch_cuda):
    torch = torch_cuda
    x = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
    x[7] = 0
    q, s = ops.quantize_per_token(x)
    rq, rs = ops.reference_quantize_per_token(x.float().cpu().numpy())
    assert np.array_equal(q.cpu().numpy(), rq) and np.array_equal(s.cpu().numpy(), rs)


@pytest.mark.parametrize("gs", [32, 64, 128])
def test_matmul_int4_llm_shapes(torch_cuda, gs):
    torch = torch_cuda
    rng = np.random.default_rng(gs)
    for M, N, K in [(1, 4096, 4096), (16, 11008, 4096), (64, 4096, 11008 // 128 * 128)]:
        q = rng.integers(0, 16, (N, K), dtype=np.uint8)
        sc = (rng.uniform(0.5, 1.5, (N, K // gs)) * 1e-2).astype(np.float16)
        zp = rng.integers(0, 16, (N, K // gs), dtype=np.uint8)
        a = torch.randn(M, K, device="cuda", dtype=torch.float16)
        out = ops.matmul_int4(a, torch.from_numpy(ops.pack_int4(q)).cuda(), torch.from_numpy(sc).cuda(),
                              zeros=torch.from_numpy(zp).cuda(), group_size=gs)
        ref = ops.reference_matmul_int4(a.cpu().numpy(), q, sc, zp, gs)
        assert rel_err(out.float().cpu().numpy(), ref) < TOL["f16"]


def _runs(fn, n=3):
    import torch

    outs = []
    for _ in range(n):
        r = fn()
        r = r if isinstance(r, tuple) else (r,)
        torch.cuda.synchronize()
        outs.append([x.view(torch.int16 if x.element_size() == 2 else
                            (torch.int32 if x.element_size() == 4 else torch.int8)).cpu().numpy() for x in r])
    return outs


def test_determinism(torch_cuda):
    """Every op gives the same bits on 3 runs (no split-K atomics, no order-dependent reductions)."""
    torch = torch_cuda
    a = torch.randn(1000, 1024, device="cuda", dtype=torch.float16)
    b = torch.randn(1024, 1016, device="cuda", dtype=torch.float16)
    w = torch.randn(1016, 1024, device="cuda", dtype=torch.float16)
    g = torch.randn(1000, 1016, device="cuda", dtype=torch.float16)
    a8 = torch.randint(-128, 128, (1000, 1024), device="cuda", dtype=torch.int8)
    w8 = torch.randint(-128, 128, (1016, 1024), device="cuda", dtype=torch.int8)
    act, ws = torch.rand(1000, device="cuda"), torch.rand(1016, device="cuda") * 1e-4
    q = np.random.default_rng(0).integers(0, 16, (1016, 1024), dtype=np.uint8)
    wp = torch.from_numpy(ops.pack_int4(q)).cuda()
    sc = torch.full((1016, 8), 0.01, device="cuda", dtype=torch.float16)
    cases = {
        "matmul_sync": lambda: ops.matmul(a, b, pipeline="sync"),
        "matmul_async_nk": lambda: ops.matmul(a, w, b_layout="nk", pipeline="async", out_dtype=kaiodsl.f32),
        "matmul_backward": lambda: ops.matmul_backward(g, a, w, b_layout="nk"),
        "matmul_int8": lambda: ops.matmul_int8(a8, w8),
        "matmul_w8a8": lambda: ops.matmul_w8a8(a8, w8, act, ws),
        "quantize_per_token": lambda: ops.quantize_per_token(a),
        "matmul_int4": lambda: ops.matmul_int4(a[:16].contiguous(), wp, sc, group_size=128),
        "matmul_tc_bf16_async": lambda: ops.matmul_tc_bf16_async(a.bfloat16(), b.bfloat16()),
    }
    for name, fn in cases.items():
        r = _runs(fn)
        for other in r[1:]:
            assert all(np.array_equal(x, y) for x, y in zip(r[0], other)), name
