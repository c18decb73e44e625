"""Which backend runs launches: the CUDA driver or the CPU simulator.

``KAIODSL_BACKEND=auto|cuda|sim`` picks it on first use; ``set_backend(name)``
changes it. ``auto`` probes the driver (``cuInit`` + a device count) and falls
back to the simulator with a one-line notice on stderr, printed once per
process. Nothing here imports the CUDA bindings at ``import kaiodsl`` time.
"""

from __future__ import annotations

import os
import sys

from ..errors import KaioError

NAMES = ("auto", "cuda", "sim")


def _make_cuda():
    from .cuda_backend import CudaBackend

    return CudaBackend()


def _make_sim():
    try:
        from ..sim import SimBackend
    except ImportError as e:
        raise KaioError(f"the simulator backend is not available ({e})") from None
    return SimBackend()


# name -> factory; tests may swap entries (monkeypatch) to use fakes.
FACTORIES = {"cuda": _make_cuda, "sim": _make_sim}


class _State:
    """The process-wide choice; one object so that tests can reset it in one place."""

    backend = None        # the backend object in use, created lazily
    notice_shown = False  # the auto -> sim notice is printed once per process


STATE = _State()


def gpu_available() -> bool:
    """True when a CUDA driver loads, initializes and reports at least one device."""
    try:
        from cuda.bindings import driver
    except Exception:  # no cuda-python at all
        return False
    try:
        (err,) = driver.cuInit(0)
        if err != driver.CUresult.CUDA_SUCCESS:
            return False
        err, count = driver.cuDeviceGetCount()
        return err == driver.CUresult.CUDA_SUCCESS and count > 0
    except Exception:  # libcuda missing (DynamicLibNotFoundError) or unusable
        return False


def _create(name: str):
    name = (name or "auto").strip().lower()
    if name not in NAMES:
        raise KaioError(f"unknown backend {name!r}: KAIODSL_BACKEND / set_backend() take one of "
                        f"{', '.join(NAMES)}")
    if name == "auto":
        if gpu_available():
            return FACTORIES["cuda"]()
        if not STATE.notice_shown:
            STATE.notice_shown = True
            print("kaiodsl: no CUDA driver/device found; running kernels on the CPU simulator "
                  "(set KAIODSL_BACKEND to choose)", file=sys.stderr)
        return FACTORIES["sim"]()
    if name == "cuda" and not gpu_available():
        raise KaioError("KAIODSL_BACKEND=cuda but no CUDA driver or device was found; "
                        "use 'sim' or 'auto'")
    return FACTORIES[name]()


def current():
    """The backend launches go to (created on first use from ``KAIODSL_BACKEND``)."""
    b = STATE.backend
    if b is None:
        b = STATE.backend = _create(os.environ.get("KAIODSL_BACKEND", "auto"))
    return b


def set_backend(name_or_backend):
    """Use backend ``'auto'|'cuda'|'sim'`` (or a backend object) from now on; returns it."""
    if isinstance(name_or_backend, str):
        STATE.backend = _create(name_or_backend)
    else:
        for attr in ("name", "arch", "launch"):
            if not hasattr(name_or_backend, attr):
                raise KaioError(f"a backend needs '{attr}'; {name_or_backend!r} has none")
        STATE.backend = name_or_backend
    return STATE.backend


def get_backend_name() -> str:
    return current().name


def reset() -> None:
    """Forget the choice (the next ``current()`` reads the environment again). For tests."""
    STATE.backend = None
    STATE.notice_shown = False


def synchronize() -> None:
    """Wait for all launched work of the current backend (a no-op for the simulator)."""
    sync = getattr(current(), "synchronize", None)
    if sync is not None:
        sync()
