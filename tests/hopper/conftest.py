"""Hopper tests compile for sm_90a on both backends (the simulator's default target is sm_80)."""

import pytest


@pytest.fixture
def hopper(backend, monkeypatch):
    if backend.name == "cuda" and backend.arch != "sm_90a":
        pytest.skip(f"needs an sm_90a GPU, this one is {backend.arch}")
    monkeypatch.setenv("KAIODSL_ARCH", "sm_90a")
    return backend
