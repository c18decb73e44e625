"""Op-library fixtures: the backend (sim, and cuda where a GPU exists), a seeded rng, and a guard
that fails a test if an op allocates or launches (helpers are in opkit.py)."""

import zlib

import numpy as np
import pytest

from kaiodsl.runtime import backend as rt_backend

from opkit import BACKENDS

_GPU = []


def gpu_available() -> bool:
    if not _GPU:
        _GPU.append(rt_backend.gpu_available())
    return _GPU[0]


def pytest_collection_modifyitems(config, items):
    """Tests marked gpu under tests/ops skip cleanly where no CUDA driver/device is present."""
    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA driver and device")
    for item in items:
        if "gpu" in item.keywords and "tests/ops" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Runs the test on each backend; cuda only where a GPU exists."""
    if request.param == "cuda" and not gpu_available():
        pytest.skip("needs a CUDA driver and device")
    rt_backend.set_backend(request.param)
    yield request.param
    rt_backend.reset()


@pytest.fixture
def rng(request):
    """Seeded from the test's id (crc32: str hash() is salted per process), so failures reproduce."""
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))


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

    backward, matmul, matmul_int4, matmul_int8, quantize = (
        importlib.import_module(f"kaiodsl.ops.{m}")     # the modules; kaiodsl.ops.matmul is the function
        for m in ("backward", "matmul", "matmul_int4", "matmul_int8", "quantize"))

    def no_alloc(*args, **kwargs):
        raise AssertionError("an op allocated an output although its arguments are invalid")

    rt_backend.set_backend(_NoLaunchBackend())
    for mod in (matmul, matmul_int4, matmul_int8, quantize):
        monkeypatch.setattr(mod, "new_like", no_alloc)
    monkeypatch.setattr(matmul, "_DUMMY", {})
    monkeypatch.setattr(backward, "_copy", no_alloc)
    yield
    rt_backend.reset()
