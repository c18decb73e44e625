"""torch.ops.kaiodsl.matmul_fp8 (forward only): PyTorch's op checks and values against float64, on
CPU tensors in the simulator (compiled for sm_90a) and CUDA tensors on a Hopper GPU."""

import pytest
import torch

import kaiodsl.torch as kt
from kaiodsl import ops

# opcheck's test_schema multiplies the inputs, which torch does not implement for float8 CPU tensors; the
# schema is checked in test_custom_ops.py::test_every_table_entry_has_a_valid_schema
OPCHECK_TESTS = ("test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")


@pytest.fixture
def sm90(backend, monkeypatch):
    if backend.name == "cuda" and backend.arch != "sm_90a":
        pytest.skip(f"needs an sm_90a GPU, this one is {backend.arch}")
    monkeypatch.setenv("KAIODSL_ARCH", "sm_90a")
    return backend


def _fp8(gen, shape, dtype, device):
    return (torch.randn(shape, generator=gen) * 3).to(dtype).to(device)


def _rel(got, want) -> float:
    return float((got.double().cpu() - want).norm() / want.norm())


def test_fp8_registered():
    assert kt.has_op("matmul_fp8") and hasattr(torch.ops.kaiodsl, "matmul_fp8")


def test_fp8_opcheck(sm90, device, gen):
    a = _fp8(gen, (80, 64), torch.float8_e4m3fn, device)
    b = _fp8(gen, (24, 64), torch.float8_e5m2, device)
    cases = [(a, b, torch.tensor(0.5, device=device), torch.tensor([0.25], device=device), None, torch.bfloat16),
             (a, b, torch.rand(80, 1, generator=gen).to(device), torch.rand(24, generator=gen).to(device),
              torch.randn(24, generator=gen).to(device), torch.float32)]
    for args in cases:
        torch.library.opcheck(torch.ops.kaiodsl.matmul_fp8.default, args, test_utils=OPCHECK_TESTS)


@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_fp8_wrapper_values(sm90, device, gen, out_dtype):
    a = _fp8(gen, (130, 64), torch.float8_e4m3fn, device)
    b = _fp8(gen, (40, 64), torch.float8_e4m3fn, device)
    sb, bias = torch.rand(1, 40, generator=gen).to(device) + 0.5, torch.randn(40, generator=gen).to(device)
    y = kt.matmul_fp8(a, b, 0.5, sb, bias=bias, out_dtype=out_dtype)         # a float scale becomes a tensor
    assert y.dtype == out_dtype and y.shape == (130, 40)
    want = torch.from_numpy(ops.reference_matmul_fp8(a, b, 0.5, sb, bias))
    f32_tol = 4e-3 if device == "cuda" else 1e-5     # Hopper's fp8 accumulator (tests/ops/opkit.FP8_GPU_F32_TOL)
    assert _rel(y, want) < {torch.bfloat16: 1.5e-2, torch.float16: 2e-3, torch.float32: f32_tol}[out_dtype]
    z = torch.compile(lambda a, b: torch.ops.kaiodsl.matmul_fp8(a, b, torch.ones((), device=a.device) * 0.5,
                                                                  sb, bias, out_dtype), fullgraph=True)(a, b)
    assert torch.equal(z, y)
