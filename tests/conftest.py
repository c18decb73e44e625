"""Test-wide settings and fixtures.

* the IR verifier runs after every pass; the disk cache stays out of the user's home;
* ``backend``: each kernel test runs on the simulator and, where a driver and device exist,
  on the GPU (the cuda case is marked ``gpu`` and skipped elsewhere);
* ``rng``: fresh random inputs, seeded from the test's id (crc32, since str hash() is salted per
  process) so that a failure reproduces.
"""

import os
import tempfile
import zlib

import numpy as np
import pytest

os.environ["KAIODSL_VERIFY"] = "1"
os.environ.setdefault("KAIODSL_CACHE_DIR", tempfile.mkdtemp(prefix="kaiodsl-test-cache-"))

from kaiodsl.runtime import backend as rt_backend  # noqa: E402

BACKENDS = ["sim", pytest.param("cuda", marks=pytest.mark.gpu)]
_GPU = []


def gpu_available() -> bool:
    if not _GPU:
        _GPU.append(rt_backend.gpu_available())
    return _GPU[0]


def pytest_collection_modifyitems(config, items):
    """Tests marked gpu skip cleanly where no CUDA driver/device is present."""
    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA driver and device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    """Select the backend for one test; cuda skips without a driver and device."""
    if request.param == "cuda" and not gpu_available():
        pytest.skip("needs a CUDA driver and device")
    monkeypatch.delenv("KAIODSL_ARCH", raising=False)
    rt_backend.reset()
    yield rt_backend.set_backend(request.param)
    rt_backend.reset()


@pytest.fixture
def sm90(backend, monkeypatch):
    """The test's backend compiling for sm_90a (wgmma, TMA, setmaxnreg): the simulator's default target
    is sm_80; a GPU that is not sm_90a skips."""
    if backend.name == "cuda" and backend.arch != "sm_90a":
        pytest.skip(f"needs an sm_90a GPU, this one is {backend.arch}")
    monkeypatch.setenv("KAIODSL_ARCH", "sm_90a")
    return backend


@pytest.fixture
def rng(request):
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))
