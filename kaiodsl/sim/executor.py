"""The scheduler: lockstep SIMT over a batch of blocks with min-PC reconvergence.

Among threads that are alive and not waiting at a barrier, the instruction at the
lowest PC runs for every thread at that PC. kaiodsl code is structured (join points
follow branches, loop exits follow loop bodies), so threads reconverge where a
compiler's reconvergence stack would put them. While all runnable threads share
one PC ("converged"), no per-thread PC array is touched.

mbarrier waits and nanosleep (decoded as kind WAIT): a thread whose try_wait/test_wait fails is *parked* after
the wait (its predicate written), remembering the mbarrier event count at that moment; it is not
runnable until a later event (ops_hopper._event: init, arrive, local or remote, expect_tx, inval,
a bulk copy or TMA load issued or landed; a completed phase comes with one of these). A looping
wait then branches back and polls again, so a producer warp whose wait loop sits at lower PCs
than its consumers no longer starves them; a lone test_wait goes on with the false it saw. When
nothing else can run, every parked thread is woken to poll again; ops_hopper._count_spins reports
a deadlock (barrier, phase, missing arrivals and bytes, waiters) once waits keep failing through
_SPIN_LIMIT such wake-ups with no event between. nanosleep always parks: a loop polling global
memory (a semaphore another block releases) lets every other thread run before it polls again. A bar.sync whose other threads are parked is only
"stuck" after that. Without mbarriers nothing parks, and the only added cost per step is the test
of a local counter.
"""

from __future__ import annotations

import numpy as np

from ..errors import SimError
from .registry import RULES

NORMAL, BRA, EXIT, BAR, WAIT = 0, 1, 2, 3, 4
BIG = np.iinfo(np.int32).max

# make sure every rule module registered itself
from . import ops_atom, ops_float, ops_int, ops_mem, ops_move, ops_mma, ops_warp  # noqa: E402,F401
from . import ops_hopper  # noqa: E402  (after ops_warp: it wraps the cp rule)
from . import ops_cluster, ops_hopper_tma, ops_wgmma  # noqa: E402,F401  (after ops_mem: it wraps ld/st)


def decode(m):
    """Kernel instructions -> entries (kind, fn, guard, target, instr) bound to machine m."""
    k = m.kernel
    entries = []
    for ins in k.instrs:
        m.cur = ins
        base, *mods = ins.opcode.split(".")
        guard = None
        if ins.guard is not None:
            g = m.getter(("reg", ins.guard[0]), "pred")
            guard = (lambda g=g: ~g()) if ins.guard[1] else g
        if base == "bra" or base == "brx":
            tgt = ins.operands[-1]
            if tgt[0] != "name" or tgt[1] not in k.labels:
                m.fail(f"branch to unknown label {tgt}")
            entries.append((BRA, None, guard, k.labels[tgt[1]], ins))
        elif base in ("ret", "exit"):
            entries.append((EXIT, None, guard, 0, ins))
        elif base == "barrier" and mods[:1] == ["cluster"]:
            entries.append((BAR, ("cluster", "wait" in mods, "relaxed" in mods), guard, 0, ins))
        elif base in ("bar", "barrier") and (not mods or mods[0] != "warp"):
            entries.append((BAR, _barrier_args(m, ins, mods), guard, 0, ins))
        elif base == "trap":
            entries.append((NORMAL, _trap(m, ins), guard, 0, ins))
        else:
            rule = RULES.get(base)
            if rule is None:
                raise SimError(f"{k.name}: the simulator does not support PTX instruction '{ins.opcode}'\n"
                               f"  PTX line {ins.line}: {ins.text}", ptx_line=ins.line, source=ins.source)
            try:
                fn = rule(m, ins, mods)
            except SimError:
                raise
            except (KeyError, IndexError, ValueError, NotImplementedError, StopIteration) as e:
                raise SimError(f"{k.name}: unsupported form of '{ins.opcode}' ({type(e).__name__}: {e})\n"
                               f"  PTX line {ins.line}: {ins.text}", ptx_line=ins.line,
                               source=ins.source) from None
            wait = (base == "mbarrier" and mods[:1] in (["try_wait"], ["test_wait"])) or base == "nanosleep"
            entries.append((WAIT if wait else NORMAL, fn, guard, 0, ins))
    return entries


def _trap(m, ins):
    def f(mask):
        t = int(np.argmax(mask)) if mask is not None else 0
        m.fail("trap executed", t)
    return f


def _barrier_args(m, ins, mods):
    """(sync?, id getter, expected-count getter or None, aligned?).

    bar.sync is barrier.sync.aligned: every thread of the block executes the same barrier
    instruction (PTX ISA 9.7.13.1); plain barrier.sync may be reached from different places."""
    if "arrive" in mods:
        sync = False
    elif "sync" in mods or not mods or mods[0] in ("aligned",):
        sync = True
    else:
        raise SimError(f"unsupported barrier form {ins.opcode} at PTX line {ins.line}", ptx_line=ins.line)
    ops = ins.operands
    bid = m.getter(ops[0], "u32") if ops else (lambda: 0)
    cnt = m.getter(ops[1], "u32") if len(ops) > 1 else None
    return sync, bid, cnt, ins.opcode.startswith("bar.") or "aligned" in mods


def run(m, entries):
    T = m.T
    n = len(entries)
    alive = m.exists.copy()
    waiting = np.zeros(T, dtype=bool)
    wait_id = np.zeros(T, dtype=np.int32)
    arrived = np.zeros((m.nb, 16), dtype=np.int64)
    pc = np.zeros(T, dtype=np.int32)
    # per block: the PC of the whole-block .aligned barrier some of its threads wait at (BIG: none)
    open_pc = np.full(m.nb, BIG, dtype=np.int64)
    open_min = BIG
    # threads whose mbarrier wait failed, and the event count when they parked (module docstring)
    parked = np.zeros(T, dtype=bool)
    parked_at = np.zeros(T, dtype=np.int64)
    nparked, seen_ev = 0, 0
    m.alive = alive
    conv, cur = True, 0
    act = None if alive.all() else alive.copy()
    steps = 0
    while True:
        steps += 1
        m.clock = steps
        if nparked and m.mb_event != seen_ev:  # an mbarrier event: wake who parked before it
            seen_ev = m.mb_event
            wake = parked & (parked_at < seen_ev)
            if wake.any():
                if conv:  # the woken threads join the runnable set: no longer converged
                    pc[slice(None) if act is None else act] = cur
                    conv = False
                parked &= ~wake
                nparked = int(np.count_nonzero(parked))
        if conv:
            p, mask = cur, act
        else:
            runnable = alive & ~waiting
            if nparked:
                runnable &= ~parked
            nrun = int(np.count_nonzero(runnable))
            if nrun == 0:
                if nparked:  # only parked waiters left: all poll again (ops_hopper._count_spins)
                    parked[:] = False
                    nparked = 0
                    m.mbar_spins += 1
                    continue
                if waiting.any():
                    _stuck(m, entries, pc, alive, waiting, wait_id, arrived)
                break
            pcs = np.where(runnable, pc, BIG)
            p = int(pcs.min())
            mask = pcs == p
            if int(np.count_nonzero(mask)) == nrun:
                conv, cur = True, p
                act = mask = None if nrun == T else mask
        if open_min < p:  # threads past a barrier the rest of their block waits at
            _passed(m, entries, p, np.ones(T, bool) if mask is None else mask, open_pc, waiting)
        if p >= n:  # falling off the end of the kernel body ends the threads
            kind, fn, guard, target, ins = EXIT, None, None, 0, entries[-1][4] if entries else None
        else:
            kind, fn, guard, target, ins = entries[p]
        m.cur = ins
        if guard is not None:
            m.cur_mask = mask
            g = guard()
            eff = g if mask is None else (mask & g)
        else:
            eff = mask
        if kind == NORMAL:
            if eff is None or eff.any():
                m.cur_mask = eff
                fn(eff)
            if conv:
                cur = p + 1
            else:
                pc[mask] = p + 1
            continue
        if kind == WAIT:
            failed = None
            if eff is None or eff.any():
                m.cur_mask = eff
                ok = fn(eff)
                failed = ~ok if eff is None else eff & ~ok
            if failed is None or not failed.any():
                if conv:
                    cur = p + 1
                else:
                    pc[mask] = p + 1
                continue
            # park the threads whose wait failed, after the wait (its predicate is written): a
            # looping wait branches back and polls again once woken, a lone test_wait goes on
            pc[slice(None) if mask is None else mask] = p + 1
            conv = False
            parked |= failed
            parked_at[failed] = m.mb_event
            nparked = int(np.count_nonzero(parked))
            continue
        mask_arr = np.ones(T, dtype=bool) if mask is None else mask
        eff_arr = mask_arr if eff is None else eff
        if kind == BRA:
            ntaken = int(np.count_nonzero(eff_arr))
            nmask = int(np.count_nonzero(mask_arr))
            if conv and ntaken == nmask:
                cur = target
            elif conv and ntaken == 0:
                cur = p + 1
            else:
                if conv:
                    pc[mask_arr] = p
                    conv = False
                pc[mask_arr & ~eff_arr] = p + 1
                pc[eff_arr] = target
            continue
        if conv:
            pc[mask_arr] = p
            conv = False
        pc[mask_arr] = p + 1
        if kind == EXIT:
            alive &= ~eff_arr
            continue
        m.cur_mask = eff_arr
        _barrier(m, fn, eff_arr, waiting, wait_id, arrived, open_pc, p)
        open_min = int(open_pc.min())
    ops_warp.drain(m)
    ops_hopper.drain(m)


def _barrier(m, args, arrivers, waiting, wait_id, arrived, open_pc, p):
    if args[0] == "cluster":
        return ops_cluster.barrier(m, args[1], arrivers, waiting, wait_id, args[2])
    sync, bid_get, cnt_get, aligned = args
    ti = np.flatnonzero(arrivers)
    if ti.size == 0:
        return
    v = bid_get()
    bid = (int(v) if np.ndim(v) == 0 else int(v[ti[0]])) & 15
    expected = m.tpb
    if cnt_get is not None:
        c = cnt_get()
        expected = int(c if np.ndim(c) == 0 else c[ti[0]])
    arrived[:, bid] += np.bincount(m.blk[ti], minlength=m.nb)
    if m.shadow is not None:
        m.shadow.bar_arrive(ti, bid)
    if sync:
        waiting[ti] = True
        wait_id[ti] = bid
    done = arrived[:, bid] >= expected
    if sync and aligned and cnt_get is None:
        here = np.zeros(m.nb, bool)
        here[m.blk[ti]] = True
        open_pc[here & ~done] = p
    if done.any():
        rel = waiting & (wait_id == bid) & done[m.blk]
        waiting[rel] = False
        arrived[done, bid] = 0
        open_pc[done] = BIG
        if m.shadow is not None:
            m.shadow.bar_release(np.flatnonzero(done), bid, np.flatnonzero(rel))


def _passed(m, entries, p, mask, open_pc, waiting):
    """A thread runs at PC p past the .aligned whole-block barrier its block waits at: it skipped
    the barrier (a branch around it, or a loop left early), which the GPU does not allow."""
    late = mask & (open_pc[m.blk] < p)
    if not late.any():
        return
    t = int(np.argmax(late))
    b = m.blk[t]
    bp = int(open_pc[b])
    w = np.flatnonzero(waiting & (m.blk == b))
    here = entries[p][4] if p < len(entries) else None
    m.cur = entries[bp][4]
    if here is not None and entries[p][0] == BAR:
        how = f"arrives at another barrier instruction instead (PTX line {here.line})"
    else:
        how = "went past it without arriving" + (f" (it is at PTX line {here.line})" if here else "")
    m.fail(f"barrier is reached by only part of the block ({w.size} of {m.tpb} threads wait here, "
           f"e.g. thread {m.thread_xyz(int(w[0]))}; thread {m.thread_xyz(t)} {how}): bar.sync is "
           f".aligned, so every thread of the block must execute this same instruction; a divergent "
           f"or partial barrier deadlocks or pairs with the wrong barrier on the GPU", t)


def _stuck(m, entries, pc, alive, waiting, wait_id, arrived):
    """Some threads wait at a barrier that the rest of their block can no longer reach."""
    t = int(np.argmax(waiting))
    b = m.blk[t]
    blk = m.blk == b
    bid = int(wait_id[t])
    m.cur = entries[int(pc[t]) - 1][4]
    if bid == ops_cluster.CLUSTER_WAIT:
        m.fail("barrier.cluster.wait never completes: not every thread of the cluster arrives "
               "(barrier.cluster.arrive) as often as this one did", t)
    n_wait = int(np.count_nonzero(waiting & blk & (wait_id == bid)))
    exited = np.flatnonzero(blk & m.exists & ~alive)
    other = np.flatnonzero(blk & waiting & (wait_id != bid))
    if exited.size:
        why = f"thread {m.thread_xyz(int(exited[0]))} exited before reaching it"
    elif other.size:
        why = f"thread {m.thread_xyz(int(other[0]))} waits at barrier {int(wait_id[other[0]])} instead"
    else:
        why = "the rest of the block never arrives"
    m.fail(f"barrier {bid} is reached by only part of the block ({n_wait} of {m.tpb} threads "
           f"wait; {why}): a divergent or partial barrier deadlocks on the GPU", t)
