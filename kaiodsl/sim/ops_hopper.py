"""Hopper instructions: proxy fences, mbarrier, bulk async copies, elect.sync, setmaxnreg, the sm_90 no-ops.

mbarrier (PTX ISA 9.7.13.15): each barrier is a side record keyed by its flat shared address with
the expected arrival count, the pending arrivals, the transaction count and the phase; a phase
completes when both pending counts reach zero. ``wait.parity P`` is true once the phase with parity
P has completed, i.e. when the current phase's parity differs from P.

Bulk copies (9.7.9.25.4): a global -> shared copy reads its source when issued and lands when a
thread next waits on its mbarrier (or at kernel end), subtracting its bytes from the transaction
count; shared -> global copies and reductions happen when issued (their wait_group is then a no-op).

wgmma is in ops_wgmma.py.
"""

from __future__ import annotations

import numpy as np

from .ops_mem import address, read, write
from .ops_warp import check_membermask
from .registry import RULES, at, rule, threads

_BASE_CP = RULES["cp"]  # cp.async (ops_warp); the bulk forms are handled here
_BASE_FENCE = RULES["fence"]  # membar/fence (ops_mem, no-ops); fence.proxy.async is handled here


# -- proxies: generic-proxy shared writes must be fenced before the async proxy reads them ------------
def _proxy(m):
    """Per shared byte, the thread whose generic write no fence.proxy.async has covered yet (-1: none).

    Tracks the writes the race checker sees (it wraps the shadow's write hook once per machine);
    without the checker (checks off) there is nothing to track and nothing is checked."""
    if not hasattr(m, "proxy_dirty"):
        m.proxy_dirty = None
        if m.shadow is not None:
            dirty = m.proxy_dirty = np.full(m.shared.b8.size, -1, np.int64)
            inner = m.shadow.write

            def write(flat, size, ti, atomic=False, data=None):
                inner(flat, size, ti, atomic, data)
                dirty[(flat[:, None] + np.arange(size)).reshape(-1)] = np.repeat(ti, size)
            m.shadow.write = write
    return m.proxy_dirty


def _async_read(m, flat, what):
    """An async-proxy read of shared bytes ``flat``: a generic write not fenced since is an error."""
    dirty = m.proxy_dirty
    if dirty is None:
        return
    w = dirty[flat]
    if (w >= 0).any():
        i = int(np.argmax(w >= 0))
        m.fail(f"{what} reads shared byte {int(flat.reshape(-1)[i]) % m.shared.pad:#x} through the async "
               f"proxy, but thread {m.thread_xyz(int(w.reshape(-1)[i]))} wrote it through the generic proxy "
               f"with no fence.proxy.async after the write (PTX ISA 9.7.13.4: proxy fences)")


@rule("fence")
def _fence(m, ins, mods):
    if not (len(mods) >= 2 and mods[0] == "proxy" and mods[1] == "async"):
        return _BASE_FENCE(m, ins, mods)
    dirty = _proxy(m)
    if dirty is None or (len(mods) > 2 and mods[2] == "global"):
        return lambda mask: None
    T = m.T

    def f(mask):
        ti = threads(mask, T)
        dirty[np.isin(dirty, ti)] = -1  # this thread's generic writes are now ordered before async reads
    return f


# -- mbarrier -------------------------------------------------------------------------------------------
class Barrier:
    __slots__ = ("expected", "pending", "tx", "phase", "init_line")

    def __init__(self, count: int, line: int):
        self.expected, self.pending, self.tx, self.phase, self.init_line = count, count, 0, 0, line


def _bars(m) -> dict:
    if not hasattr(m, "mbarriers"):
        m.mbarriers = {}
        m.bulk_pending = []  # (barrier key, flat dst, bytes, issuing thread, instr)
        m.mb_event = 0  # mbarrier events so far: the executor wakes threads parked before the latest
        m.mbar_spins = 0  # forced wake-ups of parked waiters since the last event (see _count_spins)
    return m.mbarriers


def _event(m):
    """Something a failed wait could be waiting for happened (init, arrive, expect_tx, inval, a bulk
    copy issued or landed): threads parked on a failed wait may now succeed, so they poll again."""
    m.mb_event += 1
    m.mbar_spins = 0


def _bar_keys(m, addr_get, ti, what: str):
    from .ops_cluster import split
    blk, a = split(m, ti, at(addr_get(), ti))  # a shared::cluster address may name another CTA
    a = a.astype(np.uint64)
    if (a % np.uint64(8)).any():
        i = int(np.argmax(a % np.uint64(8) != 0))
        m.fail(f"{what}: an mbarrier must be 8-byte aligned", int(ti[i]), int(a[i]), "shared")
    bad = a + np.uint64(8) > np.uint64(m.shared_size)
    if bad.any():
        i = int(np.argmax(bad))
        m.fail(f"{what}: mbarrier address outside shared memory", int(ti[i]), int(a[i]), "shared")
    return m.shared.flat(blk, a), a


def _describe(m, key) -> str:
    blk, off = divmod(int(key), m.shared.pad)
    return f"mbarrier at shared offset {off:#x} of block {m.block_xyz(int(np.flatnonzero(m.blk == blk)[0]))}"


def _get(m, key, t, a, what):
    b = _bars(m).get(int(key))
    if b is None:
        m.fail(f"{what} on an mbarrier that was never initialised (mbarrier.init)", int(t), int(a), "shared")
    return b


def _arrive(m, key, n, t):
    b = m.mbarriers[int(key)]
    b.pending -= n
    if b.pending < 0:
        m.fail(f"{_describe(m, key)}: more arrivals than its count {b.expected} in phase {b.phase}", int(t))
    _maybe_complete(m, key, t)


def _maybe_complete(m, key, t):
    b = m.mbarriers[int(key)]
    if b.tx < 0 and b.pending == 0:  # negative only transiently, while an expect_tx arrival is still due
        m.fail(f"{_describe(m, key)}: {-b.tx} more bytes were delivered than expect_tx announced in phase "
               f"{b.phase} (expect_tx bytes != bytes delivered)", int(t))
    if b.pending == 0 and b.tx == 0:
        b.phase += 1
        b.pending = b.expected
        if m.shadow is not None:
            m.shadow.mb_complete(int(key))


@rule("mbarrier")
def _mbarrier(m, ins, mods):
    _bars(m)
    op = mods[0]
    ops = ins.operands
    T = m.T
    if op == "init":
        addr, cnt = address(m, ops[0]), m.getter(ops[1], "u32")

        def f(mask):
            ti = threads(mask, T)
            keys, _ = _bar_keys(m, addr, ti, "mbarrier.init")
            c = at(cnt(), ti)
            for k, n in zip(keys, c):
                m.mbarriers[int(k)] = Barrier(int(n), ins.line)
                if m.shadow is not None:
                    m.shadow.mb_init(int(k))
            _event(m)
        return f
    if op == "inval":
        addr = address(m, ops[0])

        def f(mask):
            ti = threads(mask, T)
            keys, _ = _bar_keys(m, addr, ti, "mbarrier.inval")
            for k in keys:
                m.mbarriers.pop(int(k), None)
            _event(m)
        return f
    if op in ("arrive", "expect_tx"):
        tx_op = "expect_tx" in mods
        has_state = op == "arrive"
        addr = address(m, ops[1] if has_state else ops[0])
        rest = ops[2:] if has_state else ops[1:]
        amount = m.getter(rest[0], "u32") if rest else None
        put = m.setter(ops[0], "b64") if has_state else None

        def f(mask):
            ti = threads(mask, T)
            keys, a = _bar_keys(m, addr, ti, ins.opcode)
            amt = at(amount(), ti) if amount is not None else np.ones(ti.size, np.int64)
            states = np.zeros(T, np.uint64)
            if m.shadow is not None and op == "arrive":  # releases the thread's shared accesses
                for k in np.unique(keys).tolist():
                    m.shadow.mb_release(k, ti[keys == k])
            for j, (k, t) in enumerate(zip(keys, ti)):
                b = _get(m, k, t, a[j], ins.opcode)
                states[t] = b.phase
                if tx_op:
                    b.tx += int(amt[j])
                if op == "arrive":
                    _arrive(m, k, 1 if tx_op else int(amt[j]), t)
            _event(m)
            if put is not None:
                put(states, mask)
        return f
    if op in ("try_wait", "test_wait"):
        if "parity" not in mods:
            raise NotImplementedError(f"{ins.opcode}: only the .parity forms")
        put = m.setter(ops[0], "pred")
        addr, par = address(m, ops[1]), m.getter(ops[2], "u32")

        def f(mask):
            ti = threads(mask, T)
            keys, a = _bar_keys(m, addr, ti, ins.opcode)
            p = at(par(), ti)
            ok = np.zeros(T, bool)
            for j, (k, t) in enumerate(zip(keys, ti)):
                _land_bulk(m, int(k))
                b = _get(m, k, t, a[j], ins.opcode)
                ok[t] = (b.phase & 1) != (int(p[j]) & 1)
            if m.shadow is not None:  # a wait that succeeds acquires the completed phase
                for k in np.unique(keys[ok[ti]]).tolist():
                    m.shadow.mb_acquire(k, ti[ok[ti] & (keys == k)])
            _count_spins(m, ins, keys, ti, ok)
            put(ok, mask)
            return ok  # the executor parks the threads whose wait failed (decode: kind WAIT)
        return f
    raise NotImplementedError(ins.opcode)


# A failed wait parks its threads until the next mbarrier event (executor.py); when no thread can run,
# the executor wakes every parked thread to poll again and counts that here (m.mbar_spins, reset by
# each event). Waits that still fail after this many wake-ups with no event between can never
# succeed: a deadlock. (A lone test_wait falls through on each wake-up: a chain of them is allowed.)
_SPIN_LIMIT = 64


# A nanosleep that still parks after this many fruitless wake-ups (see above) polls for what never comes.
_SLEEP_LIMIT = 4096


@rule("nanosleep")
def _nanosleep(m, ins, mods):
    """Park the sleeping threads (the executor decodes nanosleep as a wait that fails): they run again
    after the next mbarrier event or once nothing else can run, so a polling loop lets the thread it
    waits for make progress. Polling with no event for _SLEEP_LIMIT wake-ups is a deadlock."""
    _bars(m)

    def f(mask):
        if m.mbar_spins >= _SLEEP_LIMIT:
            t = int(np.argmax(mask)) if mask is not None else 0
            m.fail(f"a polling loop (nanosleep) is still waiting after {_SLEEP_LIMIT} wake-ups with nothing "
                   f"else able to run: what it polls for never comes (a semaphore no block releases?)", t)
        return np.zeros(m.T, dtype=bool)
    return f


def _count_spins(m, ins, keys, ti, ok):
    """A wait that fails after _SPIN_LIMIT fruitless wake-ups is a deadlock: report barrier, phase, waiters."""
    if m.mbar_spins < _SPIN_LIMIT or ok[ti].all():
        return
    j = int(np.argmax(~ok[ti]))
    k = int(keys[j])
    b = m.mbarriers[k]
    waiting = [m.thread_xyz(int(t)) for t in ti[~ok[ti]]][:4]
    why = (f" (every arrival is in: expect_tx announced {b.tx} bytes more than the copies delivered, "
           f"expect_tx bytes != bytes delivered)") if b.pending == 0 and b.tx > 0 else ""
    m.fail(f"deadlock: {_describe(m, k)} never completes phase {b.phase}, which the waits need: "
           f"{b.pending} of {b.expected} arrivals and {b.tx} transaction bytes still missing{why}; waiting "
           f"threads include {waiting}", int(ti[j]))


# -- bulk copies ------------------------------------------------------------------------------------------
def _land_bulk(m, key=None):
    """Land the pending copies onto barrier ``key`` (None: all of them), subtracting their bytes."""
    if not m.bulk_pending:
        return
    keep = []
    for rec in m.bulk_pending:
        k, flat, data, t, ins = rec
        if key is not None and k != key:
            keep.append(rec)
            continue
        where = flat if isinstance(flat, np.ndarray) else slice(flat, flat + data.size)  # TMA: scattered
        m.shared.b8[where] = data
        if getattr(m, "proxy_dirty", None) is not None:
            m.proxy_dirty[where] = -1  # written by the async proxy
        b = m.mbarriers.get(k)
        if b is not None:
            cur, m.cur = m.cur, ins
            b.tx -= data.size
            _maybe_complete(m, k, t)
            m.cur = cur
    if len(keep) < len(m.bulk_pending):
        _event(m)
    m.bulk_pending = keep


def _check_bulk(m, t, dst, src, size, what):
    if size <= 0 or size % 16:
        m.fail(f"{what}: size {size} must be a positive multiple of 16", int(t))
    for a, sp in ((dst, "destination"), (src, "source")):
        if int(a) % 16:
            m.fail(f"{what}: the {sp} address must be 16-byte aligned", int(t), int(a))


@rule("cp")
def _cp(m, ins, mods):
    if not (mods[:2] == ["async", "bulk"] or mods[:3] == ["reduce", "async", "bulk"]):
        return _BASE_CP(m, ins, mods)
    _bars(m)
    if "tensor" in mods:
        from .ops_hopper_tma import tensor_copy
        return tensor_copy(m, ins, mods)
    _proxy(m)
    if "commit_group" in mods or "wait_group" in mods:
        return lambda mask: None  # stores/reductions completed when issued
    ops = ins.operands
    T = m.T
    dst_a, src_a, n_get = address(m, ops[0]), address(m, ops[1]), m.getter(ops[2], "u32")
    if mods[0] == "async" and mods[2].startswith("shared"):  # global -> shared, on an mbarrier
        bar_a = address(m, ops[3])

        def load(mask):
            ti = threads(mask, T)
            dst, src, n = at(dst_a(), ti), at(src_a(), ti), at(n_get(), ti)
            keys, ba = _bar_keys(m, bar_a, ti, "cp.async.bulk")
            for j, t in enumerate(ti):
                size = int(n[j])
                _check_bulk(m, t, dst[j], src[j], size, "cp.async.bulk")
                _get(m, keys[j], t, ba[j], "cp.async.bulk")
                if int(dst[j]) + size > m.shared_size:
                    m.fail("cp.async.bulk: destination outside shared memory", int(t), int(dst[j]), "shared")
                words = read(m, "global", src[j] + np.arange(0, size, 4, dtype=np.uint64), 4,
                             np.full(size // 4, t))
                flat = int(m.shared.flat(m.blk[[t]], np.array([dst[j]]))[0])
                m.bulk_pending.append((int(keys[j]), flat, words.astype(np.uint32).view(np.uint8).copy(), t, ins))
            _event(m)  # a waiter parked on this barrier must poll again to land the copy
        return load
    red = mods[0] == "reduce"
    op, typ = (mods[-2], mods[-1]) if red else (None, None)

    def store(mask):
        ti = threads(mask, T)
        dst, src, n = at(dst_a(), ti), at(src_a(), ti), at(n_get(), ti)
        for j, t in enumerate(ti):
            size = int(n[j])
            _check_bulk(m, t, dst[j], src[j], size, ins.opcode)
            w = 8 if typ in ("u64", "b64") else 4
            offs = np.arange(0, size, w, dtype=np.uint64)
            tt = np.full(offs.size, t)
            sflat = m.shared.flat(m.blk[[t]], np.array([src[j]]))[0] + np.arange(size)
            _async_read(m, sflat, ins.opcode.split(".global")[0])
            vals = read(m, "shared", src[j] + offs, w, tt)
            if red:
                vals = _reduce(read(m, "global", dst[j] + offs, w, tt), vals, op, typ)
            write(m, "global", dst[j] + offs, w, vals, tt)
    return store


def _reduce(old, new, op, typ):
    if typ == "f32":
        r = (old.view(np.float32) + new.view(np.float32)).astype(np.float32)
        return r.view(np.uint32)
    if typ == "s32":
        o, n = old.view(np.int32), new.view(np.int32)
        return {"add": o + n, "min": np.minimum(o, n), "max": np.maximum(o, n)}[op].view(np.uint32)
    return {"add": old + new, "min": np.minimum(old, new), "max": np.maximum(old, new),
            "and": old & new, "or": old | new, "xor": old ^ new}[op]


# -- warp specialisation, PDL ---------------------------------------------------------------------------
@rule("elect")
def _elect(m, ins, mods):
    pair = ins.operands[0]
    lane_set, pred_set = m.setter(("reg", pair[1]), "u32"), m.setter(("reg", pair[2]), "pred")
    member = m.getter(ins.operands[1], "u32")
    T = m.T

    def f(mask):
        # every executing thread must be in membermask and wait for all of it (PTX ISA, elect.sync)
        check_membermask(m, mask, member(), "elect.sync")
        act = np.ones(T, bool) if mask is None else mask
        mm = np.broadcast_to(np.asarray(member()), (T,)).astype(np.uint64)
        part = act & (((mm >> m.lane.astype(np.uint64)) & np.uint64(1)) == 1)
        warp = part.reshape(-1, 32)
        first = np.where(warp.any(1), np.argmax(warp, 1), 0)
        chosen = np.zeros_like(warp)
        chosen[np.arange(warp.shape[0]), first] = warp.any(1)
        lane_set(np.repeat(first, 32).astype(np.uint32), mask)
        pred_set(chosen.reshape(-1), mask)
    return f


@rule("griddepcontrol")
def _hint(m, ins, mods):
    return lambda mask: None  # PDL orders grids; within one grid it changes nothing


_REG_FILE = 65536  # 32-bit registers per SM: what the warpgroups' setmaxnreg budgets share


@rule("setmaxnreg")
def _setmaxnreg(m, ins, mods):
    """Budgets do not change results; the checks: whole warpgroups only, and at kernel end the
    budgets must fit the register file (an .inc beyond it blocks forever on the GPU)."""
    n = ins.operands[0][1]
    inc = mods[0] == "inc"
    T = m.T

    def f(mask):
        if m.tpb % 128:
            m.fail(f"setmaxnreg needs whole warpgroups: the block has {m.tpb} threads")
        act = np.ones(T, bool) if mask is None else mask
        budgets = _budgets(m)
        for gi in np.unique(np.flatnonzero(act) // 128):
            th = gi * 128 + np.arange(128)
            if not act[th].all():
                m.fail(f"{ins.opcode} must be executed by all 128 threads of the warpgroup",
                       int(th[np.argmin(act[th])]))
            key = (int(m.blk[th[0]]), int(m.ltid[th[0]]) // 128)
            cur = budgets.get(key, m.nreg_start)
            if (inc and n < cur) or (not inc and n > cur):
                m.fail(f"{ins.opcode} {n}: this warpgroup's budget is {cur} registers; .inc must not lower "
                       f"it and .dec must not raise it", int(th[0]))
            budgets[key] = n
            m.nreg_last = (ins, int(th[0]))
    return f


def _budgets(m) -> dict:
    if not hasattr(m, "nreg_budgets"):
        m.nreg_budgets = {}
        m.nreg_start = _REG_FILE // m.tpb // 8 * 8  # at most what the launch could give each thread
    return m.nreg_budgets


def _check_budgets(m):
    groups = m.tpb // 128
    for blk in range(m.nb):
        per = [m.nreg_budgets.get((blk, g), m.nreg_start) for g in range(groups)]
        if 128 * sum(per) > _REG_FILE:
            m.cur, t = m.nreg_last
            m.fail(f"setmaxnreg is unbalanced: the warpgroups end with budgets {per} registers per thread, "
                   f"{128 * sum(per)} registers in all, more than the {_REG_FILE} of an SM (an .inc waits "
                   f"for registers another warpgroup's .dec must release)", t)


def drain(m):
    """At kernel end, bulk copies still land (their barrier may be gone: hardware finishes them)."""
    if getattr(m, "bulk_pending", None):
        _land_bulk(m)
    if getattr(m, "nreg_budgets", None):
        _check_budgets(m)
