"""Operands and outputs past 2^31 elements on the GPU (issue 10 item 1): each op at a shape where an
offset (row x K, block index x K, k0 x N, row x N, tile x words) passes 2^31, checked on sampled rows
and columns -- always including the last ones, whose offsets are the largest -- against float64.
Each test stays under ~20 GB of GPU memory. tests/ops/test_offsets64.py is the CPU-tier twin.

    pytest -m gpu tests/ops/test_large_gpu.py
"""

import numpy as np
import pytest

import kaiodsl
from kaiodsl import ops

from opkit import TOL, rel_err

pytestmark = pytest.mark.gpu
BIG = 2**31


def _sample(torch, n, k=24):
    """k indices of [0, n): the first, the last few (largest offsets) and random ones in between."""
    idx = {0, 1, n // 2, n - 2, n - 1} | set(torch.randint(0, n, (k,)).tolist())
    return torch.tensor(sorted(idx), device="cuda")


def _check(torch, out, want, out_dtype):
    tol = TOL[out_dtype] * (10 if out_dtype == "f32" else 1)     # f32: the accumulation order, as test_ops_gpu
    err = rel_err(out.double().cpu().numpy(), want.double().cpu().numpy())
    assert err <= tol, f"relative error {err:.3g} > {tol}"


def _nk(fn):
    """b_layout='nk' where the op takes a layout (issue 10 item 15 adds it), so b [N, K] means the same."""
    import inspect

    return {"b_layout": "nk"} if "b_layout" in inspect.signature(fn).parameters else {}


# (M, N, K, b_layout, dtype, out_dtype, bias, pipeline): the comment says which offset passes 2^31
MATMUL = [
    pytest.param(32768, 128256, 512, "nk", "float16", "f16", False, "auto", id="logits-out-4.2e9"),  # row x N
    pytest.param(32768, 128256, 512, "nk", "bfloat16", "f32", True, "auto", id="logits-bf16-f32-bias"),
    pytest.param(540000, 256, 4096, "nk", "float16", "f16", False, "auto", id="activation-MK-2.2e9"),  # row0 x K
    pytest.param(16, 140000, 16384, "nk", "float16", "f32", False, "auto", id="weight-NK-2.3e9"),  # col0 x K
    pytest.param(64, 140000, 16384, "kn", "float16", "f16", True, "auto", id="weight-KN-2.3e9"),   # k0 x N
    # r x N inside one [32, 128] B tile (the 'wide' kernel variant), sync and cp.async
    pytest.param(16, 70_000_000, 32, "kn", "float16", "f16", False, "sync", id="wide-N-sync"),
    pytest.param(16, 70_000_000, 32, "kn", "float16", "f16", False, "async", id="wide-N-async"),
]


@pytest.mark.parametrize("M,N,K,layout,dtype,out_dtype,bias,pipeline", MATMUL)
def test_matmul_past_2_31(torch_cuda, M, N, K, layout, dtype, out_dtype, bias, pipeline):
    torch = torch_cuda
    assert max(M * K, N * K, M * N) > BIG
    dt = getattr(torch, dtype)
    a = torch.randn(M, K, device="cuda", dtype=dt)
    b = torch.randn((N, K) if layout == "nk" else (K, N), device="cuda", dtype=dt)
    bv = torch.randn(N, device="cuda", dtype=torch.float32) if bias else None
    out = ops.matmul(a, b, b_layout=layout, out_dtype=out_dtype, bias=bv, pipeline=pipeline)
    torch.cuda.synchronize()
    rows, cols = _sample(torch, M), _sample(torch, N)
    bt = b[cols] if layout == "nk" else b[:, cols].t()
    want = a[rows].double() @ bt.double().t()
    if bias:
        want = want + bv[cols].double()
    _check(torch, out[rows][:, cols], want, out_dtype)


INT8 = [
    pytest.param(540000, 256, 4096, "f32", id="activation-MK-2.2e9"),
    pytest.param(32768, 128256, 512, "f16", id="logits-out-4.2e9"),
]


@pytest.mark.parametrize("M,N,K,out_dtype", INT8)
@pytest.mark.parametrize("op", ["matmul_int8", "matmul_w8a8"])
def test_int8_past_2_31(torch_cuda, M, N, K, out_dtype, op):
    torch = torch_cuda
    a = torch.randint(-127, 128, (M, K), device="cuda", dtype=torch.int8)
    b = torch.randint(-127, 128, (N, K), device="cuda", dtype=torch.int8)
    rows, cols = _sample(torch, M), _sample(torch, N)
    acc = a[rows].double() @ b[cols].double().t()      # exact: |acc| < 2^53
    if op == "matmul_int8":
        out = ops.matmul_int8(a, b, 0.5, **_nk(ops.matmul_int8))
        want, out_dtype = acc * 0.5, "f32"
    else:
        sa = torch.rand(M, device="cuda") / 64
        sw = torch.rand(N, device="cuda") / 64
        out = ops.matmul_w8a8(a, b, sa, sw, out_dtype=out_dtype, **_nk(ops.matmul_w8a8))
        want = acc * sa[rows].double()[:, None] * sw[cols].double()[None, :]
    torch.cuda.synchronize()
    _check(torch, out[rows][:, cols], want, out_dtype)


INT4 = [
    pytest.param(17, 2**27, 128, id="out-2.3e9-words-2^31"),   # row x N and tile x words
    pytest.param(540000, 64, 4096, id="activation-MK-2.2e9"),  # row x K
]


@pytest.mark.parametrize("M,N,K", INT4)
def test_int4_past_2_31(torch_cuda, M, N, K):
    from kaiodsl.ops.int4_pack import unpack_int4

    torch = torch_cuda
    gs = 128
    w = torch.randint(-2**31, 2**31 - 1, (N // 8, K // 128, 32, 4), device="cuda", dtype=torch.int32)
    scales = (torch.rand(N, K // gs, device="cuda") / 8 + 0.01).half()
    a = torch.randn(M, K, device="cuda", dtype=torch.float16)
    out = ops.matmul_int4(a, w, scales, group_size=gs)
    torch.cuda.synchronize()
    rows = _sample(torch, M)
    tiles_ = torch.unique(_sample(torch, N // 8))
    q = unpack_int4(w[tiles_].cpu().numpy()).astype(np.float64)                 # [8 t, K]
    cols = (tiles_[:, None] * 8 + torch.arange(8, device="cuda")[None, :]).reshape(-1)
    s = scales[cols].cpu().numpy().astype(np.float32)
    deq = ((q - 8) * np.repeat(s, gs, axis=1)).astype(np.float16).astype(np.float64)
    want = a[rows].double().cpu().numpy() @ deq.T
    err = rel_err(out[rows][:, cols].double().cpu().numpy(), want)
    assert err <= TOL["f16"], err


def test_quantize_per_token_past_2_31(torch_cuda):
    from kaiodsl.ops.quantize import reference_quantize_per_token

    torch = torch_cuda
    M, K = 540000, 4096
    x = torch.randn(M, K, device="cuda", dtype=torch.float16)
    xq, scales = ops.quantize_per_token(x)
    torch.cuda.synchronize()
    rows = _sample(torch, M)
    want_q, want_s = reference_quantize_per_token(x[rows].cpu().numpy())
    np.testing.assert_array_equal(xq[rows].cpu().numpy(), want_q)
    np.testing.assert_array_equal(scales[rows].cpu().numpy(), want_s)
