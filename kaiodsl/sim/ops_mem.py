"""ld / st and the per-space access paths that they, atom/red (ops_atom.py) and cp.async share (PTX ISA 9.7.9)."""

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


def misaligned(m, ti, addr, size, space, what="access size"):
    """The GPU faults (misaligned address) unless addr is a multiple of the size (PTX ISA 6.4.1)."""
    bad = (addr % np.uint64(size)) != 0
    if bad.any():
        i = int(np.argmax(bad))
        m.fail(f"misaligned {space} access: address is not a multiple of the {what} {size} "
               f"(on the GPU: misaligned address)", int(ti[i]), int(addr[i]), space=space)


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
    misaligned(m, ti, addr, size, space)
    return fs, fs.flat(seg, addr)


def _global_parts(m, addr, size, ti):
    g = m.gmem
    k = g.locate(addr, size)
    if (k < 0).any():
        _oob(m, ti, addr, size, "global", k < 0)
    misaligned(m, ti, addr, size, "global")
    base = np.asarray(g.bases, dtype=np.uint64)[k]
    off = (addr - base).astype(np.int64)
    return k, off


def split_generic(addr):
    sh = (addr >= np.uint64(SHARED_WIN)) & (addr < np.uint64(SHARED_WIN + WIN_SIZE))
    lo = (addr >= np.uint64(LOCAL_WIN)) & (addr < np.uint64(LOCAL_WIN + WIN_SIZE))
    return sh, lo


def read(m, space, addr, size, ti, check=True):
    """Read `size` bytes per thread; returns unsigned ints of that width."""
    addr = np.asarray(addr, dtype=np.uint64)
    if space == "generic":
        sh, lo = split_generic(addr)
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
        sh, lo = split_generic(addr)
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
        m.shadow.write(flat, size, ti, atomic=atomic,
                       data=None if atomic else np.ascontiguousarray(vals).view(np.uint8))
    fs.write(flat, size, vals)


def space_of(mods):
    """The state space of an instruction's modifiers (`.shared::cta` is `.shared`); generic if none."""
    for x in mods:
        base, _, sub = x.partition("::")
        if base in SPACES:
            if sub not in ("", "cta"):
                raise NotImplementedError(f"state space .{x}")
            return base
    return "generic"


def _parse_ldst(mods):
    space = space_of(mods)
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
        if len(dsts) > 1:
            misaligned(m, ti, base, len(dsts) * size, space, f"size of the .v{len(dsts)} vector")
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
        if len(srcs) > 1:
            misaligned(m, ti, base, len(srcs) * size, space, f"size of the .v{len(srcs)} vector")
        for i, s in enumerate(srcs):
            write(m, space, base + np.uint64(i * size), size, at(s(), ti), ti)
    return f


@rule("prefetch", "prefetchu", "membar", "fence", "discard", "applypriority", "createpolicy")
def _nop(m, ins, mods):
    return lambda mask: None
