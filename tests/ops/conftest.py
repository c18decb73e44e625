"""Op-library fixtures: a guard that fails a test if an op allocates or launches (the backend and
rng fixtures are tests/conftest.py's; helpers are in opkit.py)."""

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
