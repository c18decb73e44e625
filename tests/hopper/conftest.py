"""Hopper tests compile for sm_90a on both backends (the simulator's default target is sm_80)."""

import pytest


@pytest.fixture
def hopper(sm90):
    """tests/conftest.py's sm90 (this folder's name for it)."""
    return sm90


@pytest.fixture
def sim90(monkeypatch):
    """The simulator, compiling for sm_90a (the checks are the simulator's own)."""
    from kaiodsl.runtime import backend as rt_backend

    monkeypatch.setenv("KAIODSL_ARCH", "sm_90a")
    rt_backend.reset()
    yield rt_backend.set_backend("sim")
    rt_backend.reset()
