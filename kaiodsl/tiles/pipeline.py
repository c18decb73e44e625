"""A ring of shared-memory stages with an (index, phase) state.

``Ring(stages)`` over cp.async groups (PTX ISA 9.7.9.25.3.2-3: commit_group / wait_group): a
producer ``acquire``s the slot it fills (free once every reader passed the barrier of the last
``wait``), issues its copies and ``commit``s one group; a consumer ``wait``s until at most
``pending`` newer groups are in flight and the barrier makes the oldest stage visible to every warp,
reads it, and ``release``s it. ``advance`` moves a state ``(index, phase)`` one slot on; the phase
flips at each wrap.

For cp.async the phase is never needed (groups complete in order) and is kept as the constant 0, so
it costs nothing in the k loop. ``Ring(kind="mbarrier")`` is where Hopper's pipeline slots in: one
full and one empty mbarrier per stage, ``acquire`` = try_wait.parity(empty[index], phase),
``commit`` = arrive.expect_tx(full[index]) (TMA completes the transaction), ``wait`` =
try_wait.parity(full[index], phase), ``release`` = arrive(empty[index]).
"""

from __future__ import annotations

from dataclasses import dataclass

import kaiodsl
from kaiodsl import Const

KINDS = ("cp.async",)


@dataclass(frozen=True)
class Ring:
    stages: int
    kind: str = "cp.async"
    phases: bool = False     # keep the phase bit even where the kind does not need it


    def __post_init__(self):
        if self.stages < 1 or self.kind not in KINDS:
            raise ValueError(f"Ring: stages >= 1 and kind in {KINDS}, got {self.stages}, {self.kind!r}")

    @property
    def tracks_phase(self) -> bool:
        return self.phases or self.kind != "cp.async"

    def state_after(self, steps: int, index: int = 0) -> tuple:
        """Host side: the (index, phase) ``advance`` gives after ``steps`` steps from slot ``index``."""
        n = index + steps
        return n % self.stages, (n // self.stages) % 2 if self.tracks_phase else 0


@kaiodsl.func
def start(R: Const, index: Const[int] = 0):
    """The state of slot ``index`` in the first pass: (index, phase 0)."""
    return index % R.stages, 0


@kaiodsl.func
def advance(R: Const, state):
    """One slot on; the phase flips when the index wraps (kept 0 where the ring does not use it)."""
    index, phase = state
    if R.stages == 1:
        return index, phase
    nxt = index + 1 if index + 1 < R.stages else 0
    if R.tracks_phase:
        return nxt, kaiodsl.where(nxt == 0, phase ^ 1, phase)
    return nxt, phase


@kaiodsl.func
def acquire(R: Const, state):
    """Wait until the slot is free to overwrite. cp.async: it is (the last wait's barrier)."""
    return state


@kaiodsl.func
def commit(R: Const):
    """Close the copies issued since the last commit into one group (one stage)."""
    kaiodsl.cp_async_commit()


@kaiodsl.func
def wait(R: Const, pending: Const[int]):
    """Until at most ``pending`` committed groups are still in flight, then a block barrier so every
    warp sees every thread's copies (cp.async completion is per thread)."""
    kaiodsl.cp_async_wait(pending)
    kaiodsl.syncthreads()


@kaiodsl.func
def release(R: Const, state):
    """Done reading the slot. cp.async: the next wait's barrier orders it before the refill."""
    return state


@kaiodsl.func
def drain(R: Const):
    """Every group landed (before the kernel ends or the buffer is reused for something else)."""
    kaiodsl.cp_async_wait_all()
