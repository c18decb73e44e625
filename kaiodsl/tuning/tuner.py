"""The tuner: time every candidate config of a shape, keep the fastest correct one.

For each shape: fresh random inputs; the op's default config (its heuristic) runs first, and its
output is the reference every candidate is checked against once (relative norm, ``TOLERANCE`` by
dtype: two f32-accumulated results differ by the rounding of the output); a candidate that fails
to compile or launch, or computes something else, is recorded as skipped with the reason. The
others are timed with ``kaiodsl.runtime.timing`` (CUDA-graph replay between CUDA events, warm-up
first, the median; the simulator's wall clock with ``backend="sim"``).

On the GPU a candidate first gets a cheap screen (the median of three eager calls); one more than
``SCREEN`` times slower than the best screened so far is not timed further (recorded as screened).
Eager calls include host overhead, so for tiny, launch-bound shapes every candidate passes.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import ArgumentError
from ..runtime import timing
from . import table

TOLERANCE = {"f16": 2e-3, "bf16": 1.5e-2, "f32": 1e-5}
SCREEN = 1.5


@dataclass
class Tried:
    config: object
    ms: float | None = None         # the timed median (None: skipped or screened out)
    reason: str = ""                # why it was skipped or screened out


@dataclass
class ShapeResult:
    op: str
    dtype: str
    layout: str
    shape: tuple
    default: object
    default_ms: float | None = None
    tried: list = field(default_factory=list)
    seconds: float = 0.0
    complete: bool = True           # False: the time budget ran out inside this shape

    @property
    def timed(self) -> list:
        return [t for t in self.tried if t.ms is not None]

    @property
    def best(self):
        return min(self.timed, key=lambda t: t.ms) if self.timed else None

    @property
    def skipped(self) -> list:
        return [t for t in self.tried if t.ms is None]

    def entry(self) -> dict | None:
        """The table entry of this shape (None when nothing was timed, not even the default)."""
        best = self.best
        if best is None or self.default_ms is None:
            return None
        return {"op": self.op, "dtype": self.dtype, "layout": self.layout,
                "shape_class": table.shape_class(self.shape), "shape": list(self.shape),
                "config": table.config_to_dict(best.config), "ms": round(best.ms, 5),
                "default_ms": round(self.default_ms, 5), "speedup": round(self.default_ms / best.ms, 3),
                "timed": len(self.timed), "seconds": round(self.seconds, 1),
                "skipped": [{"config": str(t.config), "reason": t.reason} for t in self.skipped]}


class Progress:
    """``[#####.....] 12/40 matmul f16 4096x4096x4096 best 0.213 ms`` on ``stream``: redrawn in place
    on a terminal, one line per step otherwise (a log file, a test's captured stderr)."""

    def __init__(self, total: int, stream=None, width: int = 20):
        self.total, self.done, self.width = max(total, 1), 0, width
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def step(self, label: str, n: int = 1) -> None:
        self.done = min(self.done + n, self.total)
        filled = self.width * self.done // self.total
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} {label}"
        self.stream.write(f"\r{line}\x1b[K" if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def rel_norm(out, ref) -> float:
    """||out - ref|| / ||ref|| of two outputs of one op (torch tensors on the device, numpy arrays or
    DeviceArrays); inf when ``out`` holds a NaN or an infinity."""
    if hasattr(out, "float") and hasattr(out, "is_cuda"):                      # torch: stay on the device
        import torch

        o, r = out.float(), ref.float()
        if not bool(torch.isfinite(o).all()):
            return float("inf")
        den = float(torch.linalg.norm(r))
        return float(torch.linalg.norm(o - r)) / (den or 1.0)
    o, r = _host(out), _host(ref)
    if not np.all(np.isfinite(o)):
        return float("inf")
    den = float(np.linalg.norm(r))
    return float(np.linalg.norm(o - r)) / (den or 1.0)


def _host(x) -> np.ndarray:
    from ..runtime import DeviceArray

    if isinstance(x, DeviceArray):
        h = x.numpy()
        if x.scalar_type.name == "bf16":
            h = (h.astype(np.uint32) << 16).view(np.float32)
        return h.astype(np.float64)
    return np.asarray(x, np.float64)


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:240]}"


@dataclass
class Settings:
    """How to measure: ``backend`` "cuda" or "sim"; ``reps`` calls a sample; ``warmup`` calls first;
    ``budget_seconds`` (0: none) stops trying candidates once passed; ``max_candidates`` (0: all)
    keeps only the first ones of each shape's list."""

    backend: str = "cuda"
    reps: int = 10
    warmup: int = 3
    budget_seconds: float = 0.0
    max_candidates: int = 0


class Tuner:
    """Runs one op's candidates over shapes; ``run`` returns a ShapeResult per shape it reached."""

    def __init__(self, tunable, settings: Settings, progress_stream=None):
        if settings.backend not in ("cuda", "sim"):
            raise ArgumentError(f"tune: backend must be 'cuda' or 'sim', got {settings.backend!r}")
        if settings.reps < 1:
            raise ArgumentError(f"tune: reps={settings.reps} must be at least 1")
        self.t, self.s, self.stream = tunable, settings, progress_stream
        self.rng = np.random.default_rng()

    def _time(self, fn) -> float:
        if self.s.backend == "cuda":
            return timing.timed(fn, warmup=self.s.warmup, reps=self.s.reps, samples=3)
        return timing.timed_wall(fn, warmup=0, reps=self.s.reps)   # the correctness run warmed it up

    def _screen(self, fn) -> float | None:
        return timing.timed_eager(fn, warmup=0, reps=3) if self.s.backend == "cuda" else None

    def _once(self, inputs, cfg):
        """One call with ``cfg``, finished (errors of the launch surface here)."""
        from ..runtime import synchronize

        out = self.t.run(inputs, cfg)
        synchronize()
        return out

    def run(self, shapes, dtype: str, layout: str) -> list:
        from ..runtime import current

        if dtype not in self.t.dtypes:
            raise ArgumentError(f"tune: {self.t.name} takes dtype {' or '.join(self.t.dtypes)}, got {dtype!r}")
        if layout not in self.t.layouts:
            raise ArgumentError(f"tune: {self.t.name} takes layout {' or '.join(self.t.layouts)}, got {layout!r}")
        arch = current().arch
        plans = []
        for shape in shapes:
            default = self.t.default(tuple(shape), dtype, layout)
            order = [default] + [c for c in self.t.candidates(tuple(shape), dtype, layout, arch) if c != default]
            plans.append((tuple(shape), order[:self.s.max_candidates] if self.s.max_candidates else order))
        progress = Progress(sum(len(c) for _, c in plans), self.stream)
        start, results = time.perf_counter(), []
        for shape, cands in plans:
            if self.s.budget_seconds and time.perf_counter() - start > self.s.budget_seconds:
                break
            results.append(self._shape(shape, cands, dtype, layout, progress, start))
        progress.close()
        return results

    def _shape(self, shape, order, dtype, layout, progress, start) -> ShapeResult:
        """Every config of ``order`` (the default first) at ``shape``."""
        t0 = time.perf_counter()
        default = order[0]
        r = ShapeResult(self.t.name, dtype, layout, shape, default)
        inputs = self.t.make_inputs(shape, dtype, layout, self.s.backend, self.rng)
        name = f"{self.t.name} {dtype} {'x'.join(map(str, shape))}"
        ref = self._once(inputs, default)            # a default that cannot run is an error of the op
        best_screen = None
        for i, cfg in enumerate(order):
            if self.s.budget_seconds and time.perf_counter() - start > self.s.budget_seconds:
                r.complete = False
                break
            tried = Tried(cfg)
            r.tried.append(tried)
            try:
                out = ref if i == 0 else self._once(inputs, cfg)
                err = rel_norm(out, ref)
                del out
                if err > TOLERANCE.get(dtype, 1e-2):
                    tried.reason = f"wrong result: relative error {err:.2e} against the default config {default}"
                else:
                    fn = lambda cfg=cfg: self.t.run(inputs, cfg)   # noqa: E731
                    screen = self._screen(fn)
                    if screen is not None and best_screen is not None and screen > SCREEN * best_screen:
                        tried.reason = f"screened out: {screen:.4f} ms eager, best {best_screen:.4f} ms"
                    else:
                        tried.ms = self._time(fn)
                        if screen is not None:
                            best_screen = screen if best_screen is None else min(best_screen, screen)
            except KeyboardInterrupt:
                raise
            except Exception as e:     # compile, launch or driver errors: skip this config, say why
                tried.reason = _short(e)
            if i == 0:
                r.default_ms = tried.ms
            best = r.best
            progress.step(f"{name} best {best.ms:.3f} ms" if best else f"{name} (nothing timed yet)")
        r.seconds = time.perf_counter() - t0
        return r
