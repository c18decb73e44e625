"""Warp-level instructions (shfl.sync, vote.sync, activemask, redux.sync, bar.warp.sync)
and cp.async (PTX ISA 9.7.9.25: copies land at the wait_group that completes them)."""

from __future__ import annotations

import numpy as np

from .numeric import NP
from .registry import at, rule, threads

_LANE_BITS = (np.uint64(1) << np.arange(32, dtype=np.uint64))


def lane_bits(mask_arr):
    """bool [T] -> uint32 bitmask per warp [W]."""
    return (mask_arr.reshape(-1, 32).astype(np.uint64) * _LANE_BITS).sum(axis=1).astype(np.uint32)


def require_full_warps(m, mask, what):
    """`.aligned` warp-collective instructions need all 32 lanes of each warp that runs them."""
    if mask is None:
        return
    mw = mask.reshape(-1, 32)
    touched = mw.any(axis=1)
    bad = touched & ~mw.all(axis=1)
    if bad.any():
        w = int(np.argmax(bad))
        t = w * 32 + int(np.argmax(mw[w]))
        missing = w * 32 + int(np.argmin(mw[w]))
        m.fail(f"{what} is warp-collective (.aligned) but only part of the warp executes it "
               f"(thread {m.thread_xyz(missing)} of the warp is not here; "
               f"{int(mw[w].sum())} of 32 lanes)", t)


def check_membermask(m, mask, member, what):
    """Every executing thread is in membermask and every (existing) member lane executes."""
    mask_arr = np.ones(m.T, bool) if mask is None else mask
    exec_bits = lane_bits(mask_arr)
    exist_bits = lane_bits(m.exists)
    ti = np.flatnonzero(mask_arr)
    mem = at(member, ti).astype(np.uint32)
    w = m.warp_of[ti]
    lane_bit = (np.uint32(1) << m.lane[ti])
    bad = ((mem & lane_bit) == 0) | ((exec_bits[w] & mem & exist_bits[w]) != (mem & exist_bits[w]))
    if bad.any():
        i = int(np.argmax(bad))
        m.fail(f"{what}: membermask {int(mem[i]):#010x} does not match the lanes that execute it "
               f"together ({int(exec_bits[w[i]]):#010x}); on Volta+ the missing lanes would deadlock "
               f"or read garbage", int(ti[i]))


@rule("shfl")
def _shfl(m, ins, mods):
    mode = next(x for x in mods if x in ("idx", "up", "down", "bfly"))
    typ = mods[-1]
    d = ins.operands[0]
    dst = m.setter(("reg", d[1]) if d[0] == "pair" else d, typ)
    pdst = m.setter(("reg", d[2]), "pred") if d[0] == "pair" else None
    a = m.getter(ins.operands[1], typ)
    b = m.getter(ins.operands[2], "u32")
    c = m.getter(ins.operands[3], "u32")
    member = m.getter(ins.operands[4], "u32") if len(ins.operands) > 4 else (lambda: np.uint32(0xFFFFFFFF))
    T = m.T
    base = (m.warp_of * 32).astype(np.int64)
    lane = m.lane.astype(np.int64)

    def f(mask):
        check_membermask(m, mask, member(), "shfl.sync")
        bv = np.asarray(b()).astype(np.int64) & 31
        cv = np.asarray(c()).astype(np.int64)
        clamp, seg = cv & 31, (cv >> 8) & 31
        max_lane = (lane & seg) | (clamp & ~seg)
        min_lane = lane & seg
        if mode == "up":
            j = lane - bv
            ok = j >= max_lane
        elif mode == "down":
            j = lane + bv
            ok = j <= max_lane
        elif mode == "bfly":
            j = lane ^ bv
            ok = j <= max_lane
        else:
            j = min_lane | (bv & ~seg)
            ok = j <= max_lane
        j = np.where(ok, j, lane)
        src = np.broadcast_to(np.asarray(a()), (T,))
        dst(src[base + j], mask)
        if pdst is not None:
            pdst(np.broadcast_to(ok, (T,)), mask)
    return f


@rule("vote")
def _vote(m, ins, mods):
    mode = next(x for x in mods if x in ("all", "any", "uni", "ballot"))
    dst = m.setter(ins.operands[0], "b32" if mode == "ballot" else "pred")
    p = m.getter(ins.operands[1], "pred")
    member = m.getter(ins.operands[2], "u32") if len(ins.operands) > 2 else (lambda: np.uint32(0xFFFFFFFF))
    T = m.T

    def f(mask):
        mem = member()
        check_membermask(m, mask, mem, "vote.sync")
        mask_arr = np.ones(T, bool) if mask is None else mask
        pv = np.broadcast_to(np.asarray(p()), (T,))
        ex = mask_arr.reshape(-1, 32)
        pw = pv.reshape(-1, 32)
        if mode == "ballot":
            bits = lane_bits((pv & mask_arr))
            dst(bits[m.warp_of], mask)
            return
        if mode == "all":
            r = (pw | ~ex).all(axis=1)
        elif mode == "any":
            r = (pw & ex).any(axis=1)
        else:
            r = (pw | ~ex).all(axis=1) | ~(pw & ex).any(axis=1)
        dst(r[m.warp_of], mask)
    return f


@rule("activemask")
def _activemask(m, ins, mods):
    dst = m.setter(ins.operands[0], "b32")
    T = m.T
    return lambda mask: dst(lane_bits(np.ones(T, bool) if mask is None else mask)[m.warp_of], mask)


_REDUX = {"add": np.add, "min": np.minimum, "max": np.maximum,
          "and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor}


@rule("redux")
def _redux(m, ins, mods):
    op = next(x for x in mods if x in _REDUX)
    typ = mods[-1]
    dst = m.setter(ins.operands[0], typ)
    a = m.getter(ins.operands[1], typ)
    member = m.getter(ins.operands[2], "u32")
    T = m.T
    ident = {"add": 0, "min": np.iinfo(NP[typ]).max, "max": np.iinfo(NP[typ]).min,
             "and": np.iinfo(NP[typ]).max, "or": 0, "xor": 0}[op]

    def f(mask):
        check_membermask(m, mask, member(), "redux.sync")
        mask_arr = np.ones(T, bool) if mask is None else mask
        v = np.where(mask_arr, np.broadcast_to(np.asarray(a()), (T,)), NP[typ](ident)).reshape(-1, 32)
        dst(_REDUX[op].reduce(v, axis=1).astype(NP[typ])[m.warp_of], mask)
    return f


@rule("bar")  # only bar.warp.sync reaches here; bar.sync is scheduled by the executor
def _bar_warp(m, ins, mods):
    member = m.getter(ins.operands[0], "u32")
    T = m.T

    def f(mask):
        check_membermask(m, mask, member(), "bar.warp.sync")
        if m.shadow is not None:
            mask_arr = np.ones(T, bool) if mask is None else mask
            m.shadow.warp_sync(np.unique(m.warp_of[mask_arr]), mask_arr)
    return f


# ---- cp.async --------------------------------------------------------------------------------

def _cp_state(m):
    if not hasattr(m, "cp_pending"):
        m.cp_pending = []
        m.cp_commit = np.zeros(m.T, dtype=np.int64)
    return m


@rule("cp")
def _cp(m, ins, mods):
    if mods[0] != "async" or (len(mods) > 1 and mods[1] == "bulk"):
        raise NotImplementedError(ins.opcode)
    _cp_state(m)
    if "commit_group" in mods:
        return lambda mask: _commit(m, mask)
    if "wait_group" in mods:
        n = m.getter(ins.operands[0], "u32")
        return lambda mask: _wait(m, mask, int(np.asarray(n()).reshape(-1)[0]))
    if "wait_all" in mods:
        def wall(mask):
            _commit(m, mask)
            _wait(m, mask, 0)
        return wall
    from .ops_mem import address, misaligned, read
    dst_a, src_a = address(m, ins.operands[0]), address(m, ins.operands[1])
    cp_size = ins.operands[2][1]
    src_size = None
    ignore = None
    if len(ins.operands) > 3:
        op3 = ins.operands[3]
        if op3[0] in ("reg", "not") and m.regs.get(op3[1], np.zeros(0)).dtype == np.bool_:
            ignore = m.getter(op3, "pred")
        else:
            src_size = m.getter(op3, "u32")
        if len(ins.operands) > 4:
            ignore = m.getter(ins.operands[4], "pred")
    T = m.T

    def issue(mask):
        ti = threads(mask, T)
        dst = at(dst_a(), ti)
        src = at(src_a(), ti)
        ss = np.full(ti.shape, cp_size, np.int64) if src_size is None else at(src_size(), ti).astype(np.int64)
        if ignore is not None:
            ss = np.where(at(ignore(), ti), 0, ss)
        rd = ss > 0  # src-size 0 / ignore-src reads nothing
        misaligned(m, ti[rd], src[rd], cp_size, "global", "cp-size")  # both addresses: PTX ISA cp.async
        data = np.zeros((ti.size, cp_size), np.uint8)
        for k in range(cp_size):
            sel = ss > k
            if sel.any():
                data[sel, k] = read(m, "global", src[sel] + np.uint64(k), 1, ti[sel])
        bad = dst + np.uint64(cp_size) > np.uint64(m.shared_size)
        if bad.any():
            i = int(np.argmax(bad))
            m.fail("out-of-bounds cp.async destination in shared memory", int(ti[i]), int(dst[i]), "shared")
        misaligned(m, ti, dst, cp_size, "shared", "cp-size")
        flat = m.shared.flat(m.blk[ti], dst)
        if m.shadow is not None:
            m.shadow.mark_pending(flat, cp_size, ti, 1)
        m.cp_pending.append((ti, flat, data, m.cp_commit[ti].copy(), m.cur))
    return issue


def _commit(m, mask):
    sel = np.ones(m.T, bool) if mask is None else mask
    m.cp_commit[sel] += 1


def _wait(m, mask, n):
    """Land every copy of the executing threads whose group is older than the newest n groups."""
    sel = np.ones(m.T, bool) if mask is None else mask
    keep = []
    for ti, flat, data, grp, ins in m.cp_pending:
        done = sel[ti] & (grp < m.cp_commit[ti] - n)
        if done.any():
            _land(m, ti[done], flat[done], data[done], ins)
        if not done.all():
            keep.append((ti[~done], flat[~done], data[~done], grp[~done], ins))
    m.cp_pending = keep


def _land(m, ti, flat, data, ins):
    size = data.shape[1]
    if m.shadow is not None:
        m.shadow.mark_pending(flat, size, ti, -1)
        cur, m.cur = m.cur, ins
        m.shadow.write(flat, size, ti, data=data)
        m.cur = cur
    idx = flat[:, None] + np.arange(size)
    m.shared.b8[idx] = data


def drain(m):
    """At kernel end outstanding copies still complete (hardware finishes them)."""
    if getattr(m, "cp_pending", None):
        for ti, flat, data, grp, ins in m.cp_pending:
            idx = flat[:, None] + np.arange(data.shape[1])
            m.shared.b8[idx] = data
        m.cp_pending = []

