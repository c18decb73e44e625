"""A ring of shared-memory stages with an (index, phase) state.

``Ring(stages)`` over cp.async groups (PTX ISA 9.7.9.25.3.2-3: commit_group / wait_group): a
producer ``acquire``s the slot it fills (free once every reader passed the barrier of the last
``wait``), issues its copies and ``commit``s one group; a consumer ``wait``s until at most
``pending`` newer groups are in flight and the barrier makes the oldest stage visible to every warp,
reads it, and ``release``s it. ``advance`` moves a state ``(index, phase)`` one slot on; the phase
flips at each wrap.

For cp.async the phase is never needed (groups complete in order) and is kept as the constant 0, so
it costs nothing in the k loop.

``Ring(stages, kind="mbarrier", arrivals=n)`` is Hopper's ring (PTX ISA 9.7.13.15): a shared u64
array ``bars`` of 2 x stages mbarriers, ``full[i] = bars[i]`` (count 1: the producer's
arrive.expect_tx; the TMA copies complete its transaction bytes) and ``empty[i] = bars[stages + i]``
(count ``arrivals``: every consumer thread that read the slot). ``init`` (one thread) sets them up;
the producer ``acquire``s a slot (waits for ``empty[index]`` to complete the phase before this pass:
parity ``phase ^ 1``, which a fresh barrier already satisfies), ``commit``s it with the bytes its
copies will deliver, and the consumers ``wait`` (``full[index]``, parity ``phase``) and ``release``
(arrive on ``empty[index]``). Producer and consumers each keep their own state and advance it the
same way, so they agree on every slot's phase without sharing anything but the barriers.
"""

from __future__ import annotations

from dataclasses import dataclass

import kaiodsl
from kaiodsl import Const

KINDS = ("cp.async", "mbarrier")


@dataclass(frozen=True)
class Ring:
    stages: int
    kind: str = "cp.async"
    phases: bool = False     # keep the phase bit even where the kind does not need it
    arrivals: int = 1        # mbarrier: arrivals that release a slot (the consumer threads)
    cluster: int = 1         # mbarrier: CTAs whose readers release each slot (2: a multicast pair)

    def __post_init__(self):
        if self.stages < 1 or self.kind not in KINDS or self.arrivals < 1:
            raise ValueError(f"Ring: stages >= 1, arrivals >= 1 and kind in {KINDS}, got {self.stages}, "
                             f"{self.arrivals}, {self.kind!r}")

    @property
    def barriers(self) -> int:
        """mbarriers the ring needs (full and empty per stage; 0 for cp.async)."""
        return 2 * self.stages if self.kind == "mbarrier" else 0

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
    if R.stages == 1:                  # an mbarrier's one slot: every step is a new pass, a new phase
        if R.kind == "mbarrier":
            return index, phase ^ 1
        return index, phase
    nxt = index + 1 if index + 1 < R.stages else 0
    if R.tracks_phase:
        return nxt, kaiodsl.where(nxt == 0, phase ^ 1, phase)
    return nxt, phase


@kaiodsl.func
def init(R: Const, bars):
    """mbarrier rings: initialise every slot's full and empty barrier (one thread; a block barrier after)."""
    for i in kaiodsl.static_range(R.stages):
        kaiodsl.mbarrier_init(bars.ptr(i), 1)
        kaiodsl.mbarrier_init(bars.ptr(R.stages + i), R.arrivals)
    kaiodsl.fence_mbarrier_init()


@kaiodsl.func
def acquire(R: Const, state, bars=None):
    """Wait until the slot is free to overwrite. cp.async: it is (the last wait's barrier); mbarrier:
    every consumer released it in the previous pass."""
    if R.kind == "mbarrier":
        index, phase = state
        kaiodsl.mbarrier_wait(bars.ptr(R.stages + index), phase ^ 1)
    return state


@kaiodsl.func
def commit(R: Const, state=None, bars=None, nbytes: Const[int] = 0):
    """Close the copies issued since the last commit into one group (one stage). mbarrier: announce
    the ``nbytes`` the slot's copies deliver (call it before issuing them)."""
    if R.kind == "mbarrier":
        index, phase = state
        kaiodsl.mbarrier_arrive_expect_tx(bars.ptr(index), nbytes)
    else:
        kaiodsl.cp_async_commit()


@kaiodsl.func
def wait(R: Const, pending: Const[int], state=None, bars=None):
    """cp.async: until at most ``pending`` committed groups are still in flight, then a block barrier
    so every warp sees every thread's copies (cp.async completion is per thread). mbarrier: until the
    slot of ``state`` is full (``pending`` is not used: each slot has its own barrier)."""
    if R.kind == "mbarrier":
        index, phase = state
        kaiodsl.mbarrier_wait(bars.ptr(index), phase)
    else:
        kaiodsl.cp_async_wait(pending)
        kaiodsl.syncthreads()


@kaiodsl.func
def release(R: Const, state, bars=None, peer=0):
    """Done reading the slot. cp.async: the next wait's barrier orders it before the refill; mbarrier:
    arrive on its empty barrier, and in a ring shared by a cluster pair (``R.cluster == 2``) on the
    ``peer`` CTA's too: the peer's producer multicasts into this CTA's slot, so it waits for both CTAs'
    readers (``arrivals`` counts them all)."""
    if R.kind == "mbarrier":
        index, phase = state
        kaiodsl.mbarrier_arrive(bars.ptr(R.stages + index))
        if R.cluster > 1:
            kaiodsl.mbarrier_arrive_cluster(kaiodsl.mapa(bars.ptr(R.stages + index), peer))
    return state


@kaiodsl.func
def drain(R: Const):
    """Every group landed (before the kernel ends or the buffer is reused for something else)."""
    if R.kind != "mbarrier":
        kaiodsl.cp_async_wait_all()
