"""Op-library fixtures: a guard that fails a test if an op allocates or launches, and a counter of
the launches that do happen (the backend and rng fixtures are tests/conftest.py's; helpers are in
opkit.py)."""

import pytest

from kaiodsl.runtime import backend as rt_backend


class _NoLaunchBackend:
    """A backend whose launches fail the test: validation must stop before any launch."""

    name = "sim"
    arch = "sm_90a"

    def launch(self, *args, **kwargs):
        raise AssertionError("an op launched a kernel although its arguments are invalid")


@pytest.fixture
def no_launch(monkeypatch):
    """Any kernel launch or output allocation by an op fails the test (AssertionError is not the
    ArgumentError pytest.raises expects)."""
    import importlib

    backward, matmul, matmul_fp8, matmul_int4, matmul_int8, quantize = (
        importlib.import_module(f"kaiodsl.ops.{m}")     # the modules; kaiodsl.ops.matmul is the function
        for m in ("backward", "matmul", "matmul_fp8", "matmul_int4", "matmul_int8", "quantize"))

    def no_alloc(*args, **kwargs):
        raise AssertionError("an op allocated an output although its arguments are invalid")

    rt_backend.set_backend(_NoLaunchBackend())
    for mod in (matmul, matmul_fp8, matmul_int4, matmul_int8, quantize):
        monkeypatch.setattr(mod, "new_like", no_alloc)
    monkeypatch.setattr(matmul, "_DUMMY", {})
    monkeypatch.setattr(backward, "_copy", no_alloc)
    monkeypatch.setattr(backward, "zeros_like", no_alloc)
    monkeypatch.setattr(matmul_int8, "copy_2d", no_alloc)
    monkeypatch.setattr(quantize, "zeros_like", no_alloc)
    yield
    rt_backend.reset()


class CountingBackend:
    """Runs launches on ``inner`` and counts them."""

    def __init__(self, inner):
        self.inner, self.name, self.arch, self.launches = inner, inner.name, inner.arch, 0

    def launch(self, *args, **kwargs):
        self.launches += 1
        return self.inner.launch(*args, **kwargs)


@pytest.fixture
def launches(backend):
    """The test's backend (sim, or cuda where present) behind a launch counter: ``launches.launches``."""
    counter = rt_backend.set_backend(CountingBackend(backend))
    yield counter
    rt_backend.set_backend(backend)


@pytest.fixture
def torch_cuda():
    """torch on a CUDA device with kaiodsl's cuda backend, for the GPU-only op tests (skips without one)."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    rt_backend.set_backend("cuda")
    torch.manual_seed(0)
    yield torch
    torch.cuda.synchronize()
    torch.cuda.empty_cache()  # the past-2**31 tests hold tens of GB each
    rt_backend.reset()


@pytest.fixture
def torch_sm90(torch_cuda):
    """torch_cuda on an sm_90a GPU (the Hopper kernels' GPU tests); skips on any other."""
    if torch_cuda.cuda.get_device_capability() != (9, 0):
        pytest.skip("needs an sm_90a GPU")
    return torch_cuda
