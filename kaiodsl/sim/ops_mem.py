"""ld / st / atom / red / cp.async and the per-space access paths they share (PTX ISA 9.7.9)."""

from __future__ import annotations

import numpy as np

from .memory import LOCAL_WIN, SHARED_WIN, WIN_SIZE, gather, scatter
from .numeric import BITS, NP, UINT
from .registry import at, rule, threads

SPACES = ("global", "shared", "local", "param", "const")


def address(m, op):
    """Getter of the byte address of an `[...]` operand (u64 numpy values)."""
    _, base, off = op
    off = np.uint64(off & 0xFFFFFFFFFFFFFFFF)
    if base[0] == "reg":
        reg = m.getter(base, "u64" if m.regs.get(base[1], np.zeros(0, np.uint64)).dtype.itemsize == 8
                       else "u32")
        return lambda: np.asarray(reg()).astype(np.uint64) + off
    if base[0] == "int":
        v = np.uint64(base[1]) + off
        return lambda: v
    v = np.uint64(m.symbol_address(base[1])) + off
    return lambda: v


def _oob(m, ti, addr, size, space, bad):
    i = int(np.argmax(bad))
    m.fail(f"out-of-bounds {space} access of {size} bytes", int(ti[i]), int(addr[i]), space=space)


def _misaligned(m, ti, addr, size, space):
    bad = (addr % np.uint64(size)) != 0
    if bad.any():
        i = int(np.argmax(bad))
        m.fail(f"misaligned {space} access: address is not a multiple of the access size {size}",
               int(ti[i]), int(addr[i]), space=space)


def _flat(m, space, addr, size, ti):
    """Bounds-check a shared/local access; returns flat byte offsets into the FlatSpace."""
    if space == "shared":
        limit, fs, seg = m.shared_size, m.shared, m.blk[ti]
    else:
        if m.local is None:
            _oob(m, ti, addr, size, "local", np.ones(ti.shape, bool))
        limit, fs, seg = m.local_size, m.local, ti
    bad = addr + np.uint64(size) > np.uint64(limit)
    if bad.any():
        _oob(m, ti, addr, size, space, bad)
    _misaligned(m, ti, addr, size, space)
    return fs, fs.flat(seg, addr)


def _global_parts(m, addr, size, ti):
    g = m.gmem
    k = g.locate(addr, size)
    if (k < 0).any():
        _oob(m, ti, addr, size, "global", k < 0)
    _misaligned(m, ti, addr, size, "global")
    base = np.asarray(g.bases, dtype=np.uint64)[k]
    off = (addr - base).astype(np.int64)
    return k, off


def _split_generic(addr):
    sh = (addr >= np.uint64(SHARED_WIN)) & (addr < np.uint64(SHARED_WIN + WIN_SIZE))
    lo = (addr >= np.uint64(LOCAL_WIN)) & (addr < np.uint64(LOCAL_WIN + WIN_SIZE))
    return sh, lo


def read(m, space, addr, size, ti, check=True):
    """Read `size` bytes per thread; returns unsigned ints of that width."""
    addr = np.asarray(addr, dtype=np.uint64)
    if space == "generic":
        sh, lo = _split_generic(addr)
        if not (sh.any() or lo.any()):
            space = "global"
        else:
            out = np.zeros(addr.shape, UINT[size * 8])
            gl = ~(sh | lo)
            for sel, sp, win in ((sh, "shared", SHARED_WIN), (lo, "local", LOCAL_WIN), (gl, "global", 0)):
                if sel.any():
                    out[sel] = read(m, sp, addr[sel] - np.uint64(win), size, ti[sel], check)
            return out
    if space == "global":
        k, off = _global_parts(m, addr, size, ti)
        g = m.gmem
        k0 = int(k[0]) if k.size else 0
        if k.size == 0 or (k == k0).all():
            return gather(g.bytes[k0], g.view(k0, size), off, size)
        out = np.zeros(addr.shape, UINT[size * 8])
        for kk in np.unique(k):
            sel = k == kk
            out[sel] = gather(g.bytes[kk], g.view(int(kk), size), off[sel], size)
        return out
    if space in ("param", "const"):
        pb = m.param_bytes if space == "param" else m.const_bytes
        a = addr.astype(np.int64)
        if (a + size > pb.size).any() or (a < 0).any():
            _oob(m, ti, addr, size, space, (a + size > pb.size) | (a < 0))
        return gather(pb, None, a, size)
    fs, flat = _flat(m, space, addr, size, ti)
    if space == "shared" and check and m.shadow is not None:
        m.shadow.read(flat, size, ti)
    return fs.read(flat, size)


def write(m, space, addr, size, vals, ti, atomic=False):
    addr = np.asarray(addr, dtype=np.uint64)
    vals = np.broadcast_to(np.asarray(vals).astype(UINT[size * 8]), addr.shape)
    if space == "generic":
        sh, lo = _split_generic(addr)
        gl = ~(sh | lo)
        for sel, sp, win in ((sh, "shared", SHARED_WIN), (lo, "local", LOCAL_WIN), (gl, "global", 0)):
            if sel.any():
                write(m, sp, addr[sel] - np.uint64(win), size, vals[sel], ti[sel], atomic)
        return
    if space == "global":
        k, off = _global_parts(m, addr, size, ti)
        g = m.gmem
        for kk in np.unique(k):
            sel = k == kk
            scatter(g.bytes[kk], g.view(int(kk), size), off[sel], size, vals[sel])
        return
    if space in ("param", "const"):
        m.fail(f"store to .{space} space", int(ti[0]))
    fs, flat = _flat(m, space, addr, size, ti)
    if space == "shared" and m.shadow is not None:
        m.shadow.write(flat, size, ti, atomic=atomic)
    fs.write(flat, size, vals)


def _parse_ldst(mods):
    space = next((x for x in mods if x in SPACES), "generic")
    vec = next((int(x[1:]) for x in mods if x in ("v2", "v4", "v8")), 1)
    typ = mods[-1]
    return space, vec, typ


@rule("ld", "ldu")
def _ld(m, ins, mods):
    space, vec, typ = _parse_ldst(mods)
    size = BITS[typ] // 8 if typ != "pred" else 1
    d = ins.operands[0]
    dsts = [m.setter(x, typ) for x in (d[1] if d[0] == "vec" else [d])]
    addr = address(m, ins.operands[1])
    dt = NP[typ]
    T = m.T

    def f(mask):
        ti = threads(mask, T)
        base = at(addr(), ti)
        for i, s in enumerate(dsts):
            raw = read(m, space, base + np.uint64(i * size), size, ti)
            full = np.zeros(T, dtype=raw.dtype)
            full[ti] = raw
            s(full.view(dt), mask)
    return f


@rule("st")
def _st(m, ins, mods):
    space, vec, typ = _parse_ldst(mods)
    size = BITS[typ] // 8
    v = ins.operands[1]
    srcs = [m.getter(x, f"b{size * 8}") for x in (v[1] if v[0] == "vec" else [v])]
    addr = address(m, ins.operands[0])
    T = m.T

    def f(mask):
        ti = threads(mask, T)
        base = at(addr(), ti)
        for i, s in enumerate(srcs):
            write(m, space, base + np.uint64(i * size), size, at(s(), ti), ti)
    return f


@rule("prefetch", "prefetchu", "membar", "fence", "discard", "applypriority", "createpolicy", "nanosleep")
def _nop(m, ins, mods):
    return lambda mask: None


# ---- atomics: serialized in rounds, one thread per address per round -------------------

def _half_add(old, b, kind):
    from .ops_float import pack, unpack
    if kind.endswith("x2"):
        (ol, oh), (bl, bh) = unpack(old, kind[:-2]), unpack(b, kind[:-2])
        return pack(ol + bl, oh + bh, kind[:-2])
    from .ops_float import decode, encode
    return encode(decode(old.astype(np.uint16), kind) + decode(np.asarray(b).astype(np.uint16), kind), kind)


def _atom_op(op, typ, old, b, c):
    dt = NP[typ]
    if typ in ("f16", "bf16", "f16x2", "bf16x2"):
        return _half_add(old, b, typ)
    o, bv = old.view(dt), np.asarray(b).astype(UINT[BITS[typ]]).view(dt)
    if op == "add":
        r = o + bv
    elif op == "min":
        r = np.fmin(o, bv) if typ[0] == "f" else np.minimum(o, bv)
    elif op == "max":
        r = np.fmax(o, bv) if typ[0] == "f" else np.maximum(o, bv)
    elif op == "exch":
        r = bv
    elif op == "cas":
        r = np.where(o == bv, np.asarray(c).astype(UINT[BITS[typ]]).view(dt), o)
    elif op in ("and", "or", "xor"):
        r = {"and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor}[op](o, bv)
    elif op == "inc":  # (old >= b) ? 0 : old + 1
        r = np.where(o >= bv, dt(0), o + dt(1))
    elif op == "dec":  # (old == 0 || old > b) ? b : old - 1
        r = np.where((o == 0) | (o > bv), bv, o - dt(1))
    else:
        raise NotImplementedError(op)
    return np.asarray(r, dtype=dt).view(UINT[BITS[typ]])


_ATOM_OPS = ("add", "min", "max", "exch", "cas", "and", "or", "xor", "inc", "dec")


@rule("atom", "red")
def _atom(m, ins, mods):
    is_red = ins.opcode.startswith("red")
    space = next((x for x in mods if x in SPACES), "generic")
    op = next(x for x in mods if x in _ATOM_OPS)
    typ = mods[-1]
    size = BITS[typ] // 8
    ops = ins.operands if is_red else ins.operands[1:]
    dst = None if is_red else m.setter(ins.operands[0], f"b{size * 8}")
    addr = address(m, ops[0])
    b = m.getter(ops[1], f"b{size * 8}")
    c = m.getter(ops[2], f"b{size * 8}") if op == "cas" else (lambda: 0)
    T = m.T

    def f(mask):
        ti = threads(mask, T)
        a = at(addr(), ti)
        bv, cv = at(b(), ti), at(c(), ti)
        result = np.zeros(ti.shape, UINT[size * 8])
        rem = np.arange(ti.size)
        while rem.size:
            _, first = np.unique(a[rem], return_index=True)
            sel = rem[first]
            old = read(m, space, a[sel], size, ti[sel], check=False)
            new = _atom_op(op, typ, old, bv[sel], cv[sel])
            write(m, space, a[sel], size, new, ti[sel], atomic=True)
            result[sel] = old
            rem = np.delete(rem, first)
        if dst is not None:
            full = np.zeros(T, UINT[size * 8])
            full[ti] = result
            dst(full, mask)
    return f
