"""Kernel-execution helpers: a backend fixture (sim, and cuda where a GPU exists), poisoned outputs."""

import numpy as np
import pytest

from kaiodsl.runtime import backend as rt_backend

BACKENDS = ["sim", pytest.param("cuda", marks=pytest.mark.gpu)]
_GPU = []


def _gpu() -> bool:
    if not _GPU:
        _GPU.append(rt_backend.gpu_available())
    return _GPU[0]


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    """Select the backend for one test; cuda skips without a driver and device."""
    if request.param == "cuda" and not _gpu():
        pytest.skip("needs a CUDA driver and device")
    monkeypatch.delenv("KAIODSL_ARCH", raising=False)
    rt_backend.reset()
    yield rt_backend.set_backend(request.param)
    rt_backend.reset()


@pytest.fixture
def rng(request):
    return np.random.default_rng(abs(hash(request.node.name)) % 2**32)
