"""Timing of GPU work: the one helper the benchmarks and the tuner use.

``timed`` captures the calls in a CUDA graph and replays it between two CUDA events (graph replay
removes launch gaps, so host-side Python cost is not counted); ``timed_eager`` times single eager
calls between events (host overhead included where the host is slower than the GPU);
``timed_wall`` is the simulator's stand-in (wall-clock seconds of the CPU, meaningful only
relative to other simulator runs). All three warm up first and return the median milliseconds.

Inputs that fit in the L2 cache would be timed out of the cache when one buffer is replayed:
``cold_copies`` clones a set of tensors until the copies hold ``factor`` x the L2, ``rotating``
turns one callable per copy into one that runs them in turn (a graph of it captures the rotation),
and ``timed_rotating`` times that with every copy in the graph.

The CUDA timers go through PyTorch (streams, events, graphs), imported only when they run: the
work timed must launch on torch's current stream, as kaiodsl launches with torch tensors do.
"""

from __future__ import annotations

import statistics
import sys
import time


def timed(fn, warmup: int = 3, reps: int = 10, samples: int = 5) -> float:
    """Median milliseconds per call of ``fn()``, device time: ``reps`` calls in one CUDA graph,
    replayed ``samples`` times between CUDA events. Falls back to ``timed_eager`` (with a note on
    stderr) when the calls cannot be captured."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    try:
        g = torch.cuda.CUDAGraph()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            fn()
        torch.cuda.current_stream().wait_stream(s)
        with torch.cuda.graph(g):
            for _ in range(reps):
                fn()
        g.replay()
        torch.cuda.synchronize()
    except Exception as e:  # a call that cannot be captured: fall back to per-call events
        print(f"  (graph capture failed: {type(e).__name__}: {e}; timing eagerly)", file=sys.stderr, flush=True)
        return timed_eager(fn, 0, reps)
    times = []
    for _ in range(samples):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        g.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / reps)
    return statistics.median(times)


def timed_eager(fn, warmup: int = 3, reps: int = 10) -> float:
    """Median milliseconds of single eager calls of ``fn()`` between CUDA events."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def timed_wall(fn, warmup: int = 1, reps: int = 3) -> float:
    """Median wall-clock milliseconds of ``fn()`` on the host (the simulator runs synchronously)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(reps, 1)):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def cold_copies(tensors, factor: int = 3, l2_bytes: int | None = None) -> list:
    """[tensors] plus clones (new addresses, the same values) until all of them hold >= ``factor`` x the
    L2 cache (``l2_bytes``; default the current CUDA device's)."""
    tensors = list(tensors)
    if l2_bytes is None:
        import torch

        l2_bytes = torch.cuda.get_device_properties(torch.cuda.current_device()).L2_cache_size
    nbytes = sum(t.numel() * t.element_size() for t in tensors)
    n = max(1, -(-factor * l2_bytes // max(nbytes, 1)))
    return [tensors] + [[t.clone() for t in tensors] for _ in range(n - 1)]


def rotating(calls: list):
    """One callable that runs calls[0], calls[1], .. in turn and returns what the call returns."""
    if not calls:
        raise ValueError("rotating() needs at least one call")
    state = {"i": 0}

    def run():
        i = state["i"]
        state["i"] = (i + 1) % len(calls)
        return calls[i]()
    return run


def timed_rotating(calls: list, reps: int = 10, **kw) -> float:
    """``timed`` of ``rotating(calls)`` with every call in the graph at least once."""
    return timed(rotating(calls), reps=max(reps, len(calls)), **kw)
