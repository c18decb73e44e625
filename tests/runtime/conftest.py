"""Runtime test helpers: GPU skipping, a clean backend choice per test, fake backends."""

import numpy as np
import pytest

from kaiodsl.runtime import args as rt_args
from kaiodsl.runtime import backend as rt_backend

_GPU = None


def gpu_available() -> bool:
    global _GPU
    if _GPU is None:
        _GPU = rt_backend.gpu_available()
    return _GPU


def pytest_collection_modifyitems(config, items):
    """Tests marked gpu skip cleanly where no CUDA driver/device is present."""
    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA driver and device")
    for item in items:
        if "gpu" in item.keywords and str(item.fspath).find("tests/runtime") >= 0:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fresh_backend(monkeypatch):
    """Each test starts with no backend chosen and leaves none behind."""
    monkeypatch.delenv("KAIODSL_BACKEND", raising=False)
    rt_backend.reset()
    yield
    rt_backend.reset()


class FakeSimBackend:
    """A stand-in for kaiodsl.sim.SimBackend: validates like the simulator and records launches."""

    name = "sim"
    arch = "sm_90a"

    def __init__(self):
        self.launches = []

    def launch(self, compiled, grid, block, args, smem, stream):
        vals = rt_args.validate_args(compiled.name, compiled.params, tuple(args))
        self.launches.append((compiled, grid, block, vals, smem, stream))


@pytest.fixture
def fake_sim(monkeypatch):
    monkeypatch.setitem(rt_backend.FACTORIES, "sim", FakeSimBackend)
    return rt_backend.set_backend("sim")


@pytest.fixture
def cuda():
    if not gpu_available():
        pytest.skip("needs a CUDA driver and device")
    return rt_backend.set_backend("cuda")


def rng(seed=0):
    return np.random.default_rng(seed)
