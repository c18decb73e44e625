"""Barriers and memory fences."""

from __future__ import annotations

from ..frontend.builder import Builder
from ..frontend.describe import describe
from ..frontend.values import builtin
from ..types import u32


@builtin
def syncthreads(b: Builder):
    """Block-wide barrier (bar.sync 0): every thread of the block must reach it."""
    b.emit("barrier")


@builtin
def barrier(b: Builder, id: int = 0, count=None):
    """Named barrier ``id`` (0..15) for ``count`` threads (a multiple of 32; default: the whole block)."""
    if isinstance(id, int) and not 0 <= id < 16:
        b.error(f"barrier(): id must be 0..15, got {id}")
    if isinstance(count, int) and count % 32:
        b.error(f"barrier(): count must be a multiple of 32, got {count}")
    ops = [b.coerce(id, u32, "barrier id")] + ([b.coerce(count, u32, "barrier count")] if count is not None else [])
    b.emit("barrier", operands=ops)


@builtin
def barrier_arrive(b: Builder, id: int, count):
    """Arrive at named barrier ``id`` without waiting (producer side of a producer/consumer pair)."""
    b.emit("barrier_arrive", operands=[b.coerce(id, u32, "barrier id"), b.coerce(count, u32, "barrier count")])


@builtin
def nanosleep(b: Builder, ns=64):
    """Suspend this thread for about ``ns`` nanoseconds (0..1000000; nanosleep.u32, sm_70+): the back-off
    of a loop polling global memory for another block (a semaphore, say), so it does not steal issue
    slots from the warps doing the work. The simulator parks the thread until another thread ran."""
    if isinstance(ns, int) and not isinstance(ns, bool) and not 0 <= ns <= 1000000:
        b.error(f"nanosleep(): ns must be 0..1000000, got {ns}")
    b.emit("inst", operands=(b.coerce(ns, u32, "nanosleep ns"),), attrs={"form": "nanosleep.u32"})


@builtin
def syncwarp(b: Builder, mask: int = 0xFFFFFFFF):
    """Warp barrier over the lanes in ``mask`` (bar.warp.sync)."""
    b.emit("syncwarp", operands=[b.coerce(mask, u32, "mask")])


@builtin
def fence(b: Builder, scope: str = "gpu"):
    """Memory fence: scope 'cta' (membar.cta), 'gpu' (membar.gl) or 'sys' (membar.sys)."""
    if scope not in ("cta", "gpu", "sys"):
        b.error(f"fence(): scope must be 'cta', 'gpu' or 'sys', got {describe(scope)}")
    b.emit("fence", attrs={"scope": scope})
