"""atom / red (PTX ISA 9.7.13.5-6), same-address updates of one instruction in one vectorized step.

The threads of one instruction are sorted by address; the updates to one address are applied
in ONE serial order, ascending batch thread index (block-major, then thread within the block,
so lane order inside a warp), and each thread gets the value its update saw. Hardware picks
some serial order too (not lane order on an H100), so float `add` results agree with the GPU
only up to the order of the additions. Each op is computed for all addresses at once:
  - associative ops (int add/min/max/and/or/xor, float add/min/max): a sequential
    `ufunc.accumulate` along rows of [segment x rank] tables (segments bucketed by length);
  - exch: each update sees its predecessor's operand;
  - cas: one pass per successful swap along each address (a chain of successes);
  - inc/dec with one bound per address: closed form modulo (bound + 1);
  - anything else (bf16, packed halves, mixed inc/dec bounds, f32 subnormal partial sums
    under the global flush-to-zero rule): one numpy step per rank, over all addresses.
"""

from __future__ import annotations

import numpy as np

from .numeric import BITS, NP, UINT
from .ops_mem import address, misaligned, read, space_of, split_generic, write
from .registry import at, rule, threads

OPS = ("add", "min", "max", "exch", "cas", "and", "or", "xor", "inc", "dec")
_INT_SCAN = {"add": np.add, "min": np.minimum, "max": np.maximum,
             "and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor}
_FLOAT_SCAN = {"add": np.add, "min": np.fmin, "max": np.fmax}
_F32_MIN_NORMAL = np.float32(2.0 ** -126)


def _flush(x):
    """Sign-preserving flush of f32 subnormals (x: f32 values)."""
    return np.where(np.abs(x) < _F32_MIN_NORMAL, np.copysign(np.float32(0), x), x).astype(np.float32)


def _half(op, old, b, kind):
    """add/min/max on f16/bf16 (uint16 bits) or packed f16x2/bf16x2 (uint32 bits)."""
    from .ops_float import decode, encode, pack, unpack
    f = {"add": np.add, "min": np.fmin, "max": np.fmax}[op]
    if kind.endswith("x2"):
        (ol, oh), (bl, bh) = unpack(old, kind[:-2]), unpack(b, kind[:-2])
        return pack(f(ol, bl), f(oh, bh), kind[:-2])
    return encode(f(decode(np.asarray(old).astype(np.uint16), kind),
                    decode(np.asarray(b).astype(np.uint16), kind)), kind)


def step(op, typ, old, b, c, ftz=False):
    """One update per element: the value written for memory value `old` (all uint bits)."""
    if typ in ("f16", "bf16", "f16x2", "bf16x2"):
        return _half(op, old, b, typ)
    dt, u = NP[typ], UINT[BITS[typ]]
    o, bv = old.view(dt), np.asarray(b).astype(u).view(dt)
    if ftz:
        o, bv = _flush(o), _flush(bv)
    if op in _INT_SCAN and typ[0] != "f":
        r = _INT_SCAN[op](o, bv)
    elif op in _FLOAT_SCAN and typ[0] == "f":
        r = _FLOAT_SCAN[op](o, bv)
    elif op == "exch":
        r = bv
    elif op == "cas":
        r = np.where(o == bv, np.asarray(c).astype(u).view(dt), o)
    elif op == "inc":  # (old >= b) ? 0 : old + 1
        r = np.where(o >= bv, dt(0), o + dt(1))
    elif op == "dec":  # (old == 0 || old > b) ? b : old - 1
        r = np.where((o == 0) | (o > bv), bv, o - dt(1))
    else:
        raise NotImplementedError(f"atom .{op} on .{typ}")
    r = np.asarray(r, dtype=dt)
    return (_flush(r) if ftz else r).view(u)


class Segments:
    """Elements sorted by address: segment id, rank inside the segment, starts and lengths."""

    def __init__(self, keys):
        n = keys.size
        self.order = np.argsort(keys, kind="stable")  # stable: equal addresses keep thread order
        sk = keys[self.order]
        first = np.ones(n, bool)
        first[1:] = sk[1:] != sk[:-1]
        self.starts = np.flatnonzero(first)
        self.n, self.nseg = n, self.starts.size
        self.lens = np.diff(np.append(self.starts, n))
        self.seg = np.cumsum(first) - 1
        self.rank = np.arange(n) - self.starts[self.seg]
        self.last = self.starts + self.lens - 1


def serial(op, typ, mem, b, c, s: Segments, ftz=False):
    """Apply the sorted elements' updates in order; mem: [nseg] bits. Returns (old [n], final [nseg])."""
    if s.nseg == s.n:  # no two threads share an address
        return mem.copy(), step(op, typ, mem, b, c, ftz)
    u = UINT[BITS[typ]]
    if op == "exch":
        old = np.empty(s.n, u)
        old[1:] = b[:-1]
        old[s.starts] = mem
        return old, b[s.last].astype(u)
    if op == "cas":
        return _cas(typ, mem, b, c, s)
    if op in ("inc", "dec") and (b == b[s.starts][s.seg]).all():
        return _incdec(op, mem, b[s.starts], s)
    scan = _INT_SCAN.get(op) if typ[0] != "f" else _FLOAT_SCAN.get(op)
    if scan is not None and typ in ("u32", "s32", "u64", "s64", "b32", "b64", "f32", "f64", "f16"):
        got = _scan(scan, NP[typ], mem, b, s, ftz)
        if got is not None:
            return got
    return _rounds(op, typ, mem, b, c, s, ftz)


def _rounds(op, typ, mem, b, c, s, ftz):
    """Rank k of every address in one numpy step: max-segment-length steps in all."""
    cur = mem.copy()
    old = np.empty(s.n, cur.dtype)
    by_len = np.argsort(-s.lens, kind="stable")
    starts, lens = s.starts[by_len], s.lens[by_len]
    for k in range(int(lens[0])):
        live = int(np.searchsorted(-lens, -k, side="left"))  # segments longer than k
        e = starts[:live] + k
        sg = by_len[:live]
        old[e] = cur[sg]
        cur[sg] = step(op, typ, cur[sg], b[e], c[e], ftz)
    return old, cur


def _tables(s):
    """Segments bucketed by length class (powers of two): (segments, rows of their elements)."""
    cls = np.ceil(np.log2(s.lens)).astype(np.int64)
    ecls = cls[s.seg]
    for k in np.unique(cls):
        segs = np.flatnonzero(cls == k)
        elems = np.flatnonzero(ecls == k)
        yield segs, elems, np.searchsorted(segs, s.seg[elems])


def _scan(ufunc, dt, mem, b, s, ftz):
    """Sequential prefix over each address with ufunc.accumulate (rounds at every step)."""
    u = mem.dtype
    mv, bv = mem.view(dt), b.view(dt)
    if ftz:
        mv, bv = _flush(mv), _flush(bv)
    old = np.empty(s.n, dt)
    final = np.empty(s.nseg, dt)
    for segs, elems, rows in _tables(s):
        width = int(s.lens[segs].max())
        tab = np.zeros((segs.size, width + 1), dt)
        tab[:, 0] = mv[segs]
        tab[rows, s.rank[elems] + 1] = bv[elems]
        acc = ufunc.accumulate(tab, axis=1)
        old[elems] = acc[rows, s.rank[elems]]
        final[segs] = acc[np.arange(segs.size), s.lens[segs]]
    if ftz and any(((x != 0) & (np.abs(x) < _F32_MIN_NORMAL)).any() for x in (old, final)):
        return None  # a subnormal partial sum is flushed on the GPU: take the exact stepwise path
    if dt == np.float16:  # canonical NaN, as the scalar half path writes it
        old = np.where(np.isnan(old), np.uint16(0x7FFF).view(np.float16), old)
        final = np.where(np.isnan(final), np.uint16(0x7FFF).view(np.float16), final)
    old = old.view(u)
    old[s.starts] = mem  # the first update returns memory as it was
    return old, final.view(u)


def _cas(typ, mem, b, c, s):
    """cas(r, s, t) = r == s ? t : r along each address, one pass per successful swap."""
    u = UINT[BITS[typ]]
    cur = mem.copy()
    pos = np.zeros(s.nseg, np.int64)  # next rank to consider
    old = np.empty(s.n, u)
    done = np.zeros(s.nseg, bool)
    big = np.int64(s.n + 1)
    while not done.all():
        hit = (b == cur[s.seg]) & (s.rank >= pos[s.seg]) & ~done[s.seg]
        first = np.full(s.nseg, big)
        np.minimum.at(first, s.seg[hit], s.rank[hit])
        # every update from pos up to and including the swap sees the current value
        upto = np.minimum(first, s.lens - 1)
        span = (s.rank >= pos[s.seg]) & (s.rank <= upto[s.seg]) & ~done[s.seg]
        old[span] = cur[s.seg[span]]
        swap = first < big
        cur[swap] = c[s.starts[swap] + first[swap]]
        pos = np.where(swap, first + 1, s.lens)
        done |= pos >= s.lens
    return old, cur


def _incdec(op, mem, bound, s):
    """u32 inc/dec with one bound per address: after the first step the value cycles in [0, b]."""
    x0 = mem.astype(np.int64)
    m = bound.astype(np.int64) + 1
    k = s.rank.astype(np.int64)
    x, mm = x0[s.seg], m[s.seg]
    if op == "inc":  # x <= b: (x + k) mod m; x > b: 0 at the first step, then counts up
        olds = np.where(x < mm, (x + k) % mm, np.where(k == 0, x, (k - 1) % mm))
        final = np.where(x0 < m, (x0 + s.lens) % m, (s.lens - 1) % m)
    else:  # x <= b: (x - k) mod m (0 steps to b); x > b: b at the first step, then counts down
        olds = np.where(x < mm, (x - k) % mm, np.where(k == 0, x, (mm - k) % mm))
        final = np.where(x0 < m, (x0 - s.lens) % m, (m - s.lens) % m)
    return olds.astype(np.uint32), final.astype(np.uint32)


def _parse(mods):
    space = space_of(mods)
    op = next(x for x in mods if x in OPS)
    typ = [x for x in mods if x in NP][-1]
    vec = next((int(x[1:]) for x in mods if x in ("v2", "v4", "v8")), 1)
    return space, op, typ, vec, "noftz" in mods


@rule("atom", "red")
def _atom(m, ins, mods):
    is_red = ins.opcode.startswith("red")
    space, op, typ, vec, noftz = _parse(mods)
    size = BITS[typ] // 8
    if size * 8 not in UINT:
        raise NotImplementedError(f".{typ} atomics")
    ops = ins.operands if is_red else ins.operands[1:]
    d = None if is_red else ins.operands[0]
    bits = f"b{size * 8}"
    elems = lambda x: x[1] if x[0] == "vec" else [x]  # noqa: E731
    dsts = [m.setter(x, bits) for x in elems(d)] if d is not None else [None] * vec
    addr = address(m, ops[0])
    bs = [m.getter(x, bits) for x in elems(ops[1])]
    c = m.getter(ops[2], bits) if op == "cas" else (lambda: 0)
    ftz_f32 = typ == "f32" and op == "add" and not noftz
    T = m.T

    def f(mask):
        ti = threads(mask, T)
        base = at(addr(), ti).astype(np.uint64)
        if vec > 1:  # a vector atom is aligned to its whole width (PTX ISA 6.4.1)
            misaligned(m, ti, base, vec * size, space, f"size of the .v{vec} vector")
        for i, (dst, b) in enumerate(zip(dsts, bs)):  # per-element atomicity (PTX ISA atom)
            old = _one(m, space, base + np.uint64(i * size), size, ti, op, typ,
                       at(b(), ti), at(c(), ti), ftz_f32)
            if dst is not None:
                full = np.zeros(T, UINT[size * 8])
                full[ti] = old
                dst(full, mask)
    return f


def _location_keys(m, space, a, ti):
    """One key per memory location: a shared address is per block and a local one per thread, so two
    blocks batched together never share a segment (a global address is one location for all)."""
    key = a.astype(np.uint64)
    if space == "shared":
        return key + (m.blk[ti].astype(np.uint64) << np.uint64(40))
    if space == "local":
        return key + (ti.astype(np.uint64) << np.uint64(40))
    if space == "generic":
        sh, lo = split_generic(key)
        key = key.copy()
        key[sh] += m.blk[ti[sh]].astype(np.uint64) << np.uint64(40)
        key[lo] += ti[lo].astype(np.uint64) << np.uint64(40)
    return key


def _one(m, space, a, size, ti, op, typ, bv, cv, ftz_f32):
    """One scalar atomic per thread at addresses a; returns each thread's old value (thread order)."""
    u = UINT[size * 8]
    key = _location_keys(m, space, a, ti)
    s = Segments(key)
    o = s.order
    a_s, ti_s = a[o], ti[o]
    b_s, c_s = np.asarray(bv).astype(u)[o], np.asarray(cv).astype(u)[o]
    mem = read(m, space, a_s, size, ti_s, check=False)[s.starts]
    if not ftz_f32 or space == "shared":
        old, final = serial(op, typ, mem, b_s, c_s, s)
    else:  # f32 add flushes subnormals on global memory, not on shared (PTX ISA atom)
        glob = np.ones(s.nseg, bool) if space == "global" else ~np.any(split_generic(a_s[s.starts]), 0)
        old, final = np.empty(s.n, u), np.empty(s.nseg, u)
        for flag in (True, False):
            sel = glob == flag
            if sel.any():
                e = sel[s.seg]
                sub = Segments(key[o][e])
                oo, ff = serial(op, typ, mem[sel], b_s[e], c_s[e], sub, ftz=flag)
                old[e], final[sel] = oo, ff
    write(m, space, a_s, size, final[s.seg], ti_s, atomic=True)
    out = np.empty(s.n, u)
    out[o] = old
    return out
