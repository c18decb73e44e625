"""Backend choice: KAIODSL_BACKEND, set_backend, the auto fallback notice, import without a driver."""

import os
import subprocess
import sys

import pytest

from kaiodsl.errors import KaioError
from kaiodsl.runtime import backend as B
from kaiodsl.runtime import current, get_backend_name, set_backend, synchronize


def test_auto_without_gpu_uses_sim_with_one_notice(monkeypatch, capsys, fake_sim):
    B.reset()
    monkeypatch.setattr(B, "gpu_available", lambda: False)
    assert current().name == "sim"
    B.STATE.backend = None  # choose again in the same process: no second notice
    assert current().name == "sim"
    err = capsys.readouterr().err
    assert err.count("kaiodsl:") == 1 and err.count("\n") == 1 and "simulator" in err


def test_auto_with_gpu_uses_cuda(monkeypatch):
    class FakeCuda:
        name, arch = "cuda", "sm_90a"

        def launch(self, *a):
            pass

    monkeypatch.setattr(B, "gpu_available", lambda: True)
    monkeypatch.setitem(B.FACTORIES, "cuda", FakeCuda)
    assert get_backend_name() == "cuda"


def test_env_variable(monkeypatch, fake_sim):
    B.reset()
    monkeypatch.setenv("KAIODSL_BACKEND", "sim")
    assert current().name == "sim"
    B.reset()
    monkeypatch.setenv("KAIODSL_BACKEND", "gpu")
    with pytest.raises(KaioError, match="unknown backend 'gpu'"):
        current()


def test_cuda_without_gpu_is_an_error(monkeypatch):
    monkeypatch.setattr(B, "gpu_available", lambda: False)
    with pytest.raises(KaioError, match="no CUDA driver"):
        set_backend("cuda")


def test_set_backend_object_and_synchronize():
    class Mine:
        name, arch = "mine", "sm_80"
        synced = 0

        def launch(self, *a):
            pass

        def synchronize(self):
            Mine.synced += 1

    set_backend(Mine())
    assert get_backend_name() == "mine"
    synchronize()
    assert Mine.synced == 1
    with pytest.raises(KaioError, match="a backend needs 'name'"):
        set_backend(object())


def test_gpu_available_never_raises():
    assert B.gpu_available() in (True, False)


def test_import_needs_no_driver():
    code = ("import sys, kaiodsl, kaiodsl.runtime; "
            "assert 'cuda.bindings.driver' not in sys.modules, 'driver imported eagerly'; print('ok')")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
