"""Integer, bit and predicate instructions (PTX ISA 9.7.1 integer arithmetic, 9.7.8 logic)."""

from __future__ import annotations

import numpy as np

from ..errors import SimError
from .numeric import BITS, NP, SINT, UINT, int_range, is_signed
from .registry import rule

_BITREV8 = np.array([int(f"{i:08b}"[::-1], 2) for i in range(256)], dtype=np.uint8)


def _srcs(m, ins, typ, n, start=1):
    return [m.getter(op, typ) for op in ins.operands[start:start + n]]


def _simple(m, ins, typ, f, nsrc):
    dst = m.setter(ins.operands[0], typ)
    srcs = _srcs(m, ins, typ, nsrc)
    if nsrc == 1:
        a, = srcs
        return lambda mask: dst(f(a()), mask)
    if nsrc == 2:
        a, b = srcs
        return lambda mask: dst(f(a(), b()), mask)
    a, b, c = srcs
    return lambda mask: dst(f(a(), b(), c()), mask)


def _sat_int(x64, typ):
    lo, hi = int_range(typ)
    return np.clip(x64, lo, hi).astype(NP[typ])


def mul_hi(a, b, typ):
    """High half of the double-width product; 64-bit via 32-bit limbs."""
    w = BITS[typ]
    if w <= 32:
        wide = np.int64 if is_signed(typ) else np.uint64
        p = np.asarray(a).astype(wide) * np.asarray(b).astype(wide)
        return (p >> wide(w)).astype(NP[typ])
    ua, ub = np.asarray(a).view(np.uint64) if np.ndim(a) else np.uint64(np.asarray(a).view(np.uint64)), \
        np.asarray(b).view(np.uint64) if np.ndim(b) else np.uint64(np.asarray(b).view(np.uint64))
    m32, s32 = np.uint64(0xFFFFFFFF), np.uint64(32)
    al, ah, bl, bh = ua & m32, ua >> s32, ub & m32, ub >> s32
    ll, lh, hl, hh = al * bl, al * bh, ah * bl, ah * bh
    mid = (ll >> s32) + (lh & m32) + (hl & m32)
    hi = hh + (lh >> s32) + (hl >> s32) + (mid >> s32)
    if is_signed(typ):  # signed correction: subtract b if a<0, a if b<0
        hi = hi - np.where(np.asarray(a) < 0, ub, np.uint64(0)) - np.where(np.asarray(b) < 0, ua, np.uint64(0))
    return np.asarray(hi).view(NP[typ]) if np.ndim(hi) else np.asarray(hi).view(NP[typ])[()]


def _mul(x, y, typ, mode):
    if mode == "hi":
        return mul_hi(x, y, typ)
    if mode == "wide":
        wt = ("s" if is_signed(typ) else "u") + str(2 * BITS[typ])
        return np.asarray(x).astype(NP[wt]) * np.asarray(y).astype(NP[wt])
    return x * y


def _wide_type(typ):
    return ("s" if is_signed(typ) else "u") + str(2 * BITS[typ])


@rule("add", "sub")
def _addsub(m, ins, mods):
    typ = mods[-1]
    if typ in ("f16", "bf16", "f32", "f64", "f16x2", "bf16x2"):
        from .ops_float import float_binary
        return float_binary(m, ins, mods)
    sub = ins.opcode.startswith("sub")
    if "sat" in mods:
        f = (lambda a, b: _sat_int(a.astype(np.int64) - b, typ)) if sub else \
            (lambda a, b: _sat_int(a.astype(np.int64) + b, typ))
    else:
        f = (lambda a, b: a - b) if sub else (lambda a, b: a + b)
    return _simple(m, ins, typ, f, 2)


@rule("mul")
def _mulrule(m, ins, mods):
    typ = mods[-1]
    if typ in ("f16", "bf16", "f32", "f64", "f16x2", "bf16x2"):
        from .ops_float import float_binary
        return float_binary(m, ins, mods)
    mode = next((x for x in mods if x in ("lo", "hi", "wide")), "lo")
    dst = m.setter(ins.operands[0], _wide_type(typ) if mode == "wide" else typ)
    a, b = _srcs(m, ins, typ, 2)
    return lambda mask: dst(_mul(a(), b(), typ, mode), mask)


@rule("mad")
def _mad(m, ins, mods):
    typ = mods[-1]
    if typ in ("f16", "bf16", "f32", "f64", "f16x2", "bf16x2"):
        from .ops_float import float_fma
        return float_fma(m, ins, mods)
    mode = next((x for x in mods if x in ("lo", "hi", "wide")), "lo")
    dtyp = _wide_type(typ) if mode == "wide" else typ
    dst = m.setter(ins.operands[0], dtyp)
    a, b = _srcs(m, ins, typ, 2)
    c = m.getter(ins.operands[3], dtyp)
    if "sat" in mods:  # mad.hi.sat.s32
        return lambda mask: dst(_sat_int(_mul(a(), b(), typ, mode).astype(np.int64) + c(), typ), mask)
    return lambda mask: dst(_mul(a(), b(), typ, mode) + c(), mask)


def _divrem(a, b, typ, rem):
    """Truncating division on the two's-complement bits (PTX ISA 9.7.1.8-9 div, rem), exact at
    every width: magnitudes are taken as unsigned, so INT_MIN has one (|INT_MIN| = 2^(w-1)) and
    INT_MIN / -1 wraps to INT_MIN, INT_MIN % -1 is 0. x/0 and x%0 give all ones (measured on an
    H100: tests/sim/test_edge_vs_gpu.py runs both backends against the same bits)."""
    w = BITS[typ]
    u = UINT[w]
    a = np.asarray(a).astype(NP[typ])
    b = np.asarray(b).astype(NP[typ])
    zero = b == 0
    ua, ub = a.view(u), np.where(zero, NP[typ](1), b).astype(NP[typ]).view(u)
    if is_signed(typ):
        na, nb = a < 0, b < 0
        ma = np.where(na, u(0) - ua, ua).astype(u)  # |a| as unsigned: 2^(w-1) for INT_MIN
        mb = np.where(nb, u(0) - ub, ub).astype(u)
        q, r = ma // mb, ma % mb
        q = np.where(na ^ nb, u(0) - q, q).astype(u)  # wraps: -(2^(w-1)) is INT_MIN again
        r = np.where(na, u(0) - r, r).astype(u)  # the remainder takes the dividend's sign
    else:
        q, r = ua // ub, ua % ub
    out = np.where(zero, u(int_range("u" + str(w))[1]), r if rem else q).astype(u)
    return out.view(NP[typ]) if out.ndim else out.view(NP[typ])[()]


@rule("div", "rem")
def _div(m, ins, mods):
    typ = mods[-1]
    if typ in ("f32", "f64", "f16", "bf16"):
        from .ops_float import float_binary
        return float_binary(m, ins, mods)
    rem = ins.opcode.startswith("rem")
    return _simple(m, ins, typ, lambda a, b: _divrem(a, b, typ, rem), 2)


@rule("abs", "neg")
def _absneg(m, ins, mods):
    typ = mods[-1]
    if typ not in ("s16", "s32", "s64"):
        from .ops_float import float_absneg
        return float_absneg(m, ins, mods)
    f = (lambda a: np.where(a < 0, -a, a).astype(a.dtype)) if ins.opcode.startswith("abs") else (lambda a: -a)
    return _simple(m, ins, typ, f, 1)


@rule("min", "max")
def _minmax(m, ins, mods):
    typ = mods[-1]
    if typ in ("f16", "bf16", "f32", "f64", "f16x2", "bf16x2"):
        from .ops_float import float_binary
        return float_binary(m, ins, mods)
    f = np.minimum if ins.opcode.startswith("min") else np.maximum
    return _simple(m, ins, typ, f, 2)


@rule("and", "or", "xor")
def _logic(m, ins, mods):
    typ = mods[-1]
    op = ins.opcode.split(".")[0]
    f = {"and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor}[op]
    if typ == "pred":
        f = {"and": np.logical_and, "or": np.logical_or, "xor": np.logical_xor}[op]
    return _simple(m, ins, typ, f, 2)


@rule("not")
def _not(m, ins, mods):
    typ = mods[-1]
    return _simple(m, ins, typ, np.logical_not if typ == "pred" else np.invert, 1)


@rule("cnot")
def _cnot(m, ins, mods):
    typ = mods[-1]
    return _simple(m, ins, typ, lambda a: (a == 0).astype(NP[typ]), 1)


def _shift_amount(m, op):
    g = m.getter(op, "u32")
    return lambda: np.asarray(g()).astype(np.uint64)


@rule("shl", "shr")
def _shift(m, ins, mods):
    """Shift amounts >= width give 0, or the sign fill for shr.s (PTX ISA 9.7.8.7-8)."""
    typ = mods[-1]
    w = BITS[typ]
    dst = m.setter(ins.operands[0], typ)
    a = m.getter(ins.operands[1], typ)
    amt = _shift_amount(m, ins.operands[2])
    left = ins.opcode.startswith("shl")
    signed = is_signed(typ)
    sdt = SINT[w]
    udt = UINT[w]

    def f(mask):
        x, s = np.asarray(a()), amt()
        big = s >= w
        sc = np.minimum(s, w - 1).astype(udt)
        if left:
            r = np.where(big, udt(0), x.view(udt) << sc)
        elif signed:
            r = (x.view(sdt) >> sc.astype(sdt)).view(udt)
            r = np.where(big, (x.view(sdt) >> sdt(w - 1)).view(udt), r)
        else:
            r = np.where(big, udt(0), x.view(udt) >> sc)
        dst(np.asarray(r).astype(udt), mask)
    return f


@rule("popc")
def _popc(m, ins, mods):
    dst = m.setter(ins.operands[0], "u32")
    a = m.getter(ins.operands[1], mods[-1])
    return lambda mask: dst(np.bitwise_count(np.asarray(a())).astype(np.uint32), mask)


def _clz_bits(x, w):
    x = np.asarray(x).astype(np.uint64)
    if w == 64:
        hi, lo = x >> np.uint64(32), x & np.uint64(0xFFFFFFFF)
        return np.where(hi != 0, _clz_bits(hi, 32), 32 + _clz_bits(lo, 32))
    _, e = np.frexp(x.astype(np.float64))
    return np.where(x == 0, w, w - e).astype(np.uint32)


@rule("clz")
def _clz(m, ins, mods):
    w = BITS[mods[-1]]
    dst = m.setter(ins.operands[0], "u32")
    a = m.getter(ins.operands[1], mods[-1])
    return lambda mask: dst(_clz_bits(a(), w), mask)


@rule("brev")
def _brev(m, ins, mods):
    typ = mods[-1]
    dt = UINT[BITS[typ]]

    def f(x):
        x = np.atleast_1d(np.asarray(x).astype(dt))
        b = _BITREV8[x.view(np.uint8)].view(dt)
        return b.byteswap()
    return _simple(m, ins, typ, f, 1)


def bfe(a, pos, ln, typ):
    """Bit field extract (PTX ISA 9.7.1.x bfe): sign-extends from the field's msb for .s types."""
    w = BITS[typ]
    x = np.asarray(a).astype(UINT[w]).astype(np.uint64)
    pos = np.asarray(pos).astype(np.uint64) & np.uint64(0xFF)
    ln = np.asarray(ln).astype(np.uint64) & np.uint64(0xFF)
    end = np.minimum(pos + ln, w)
    shifted = np.where(pos >= w, np.uint64(0), x >> np.minimum(pos, np.uint64(w - 1)))
    nbits = np.where(pos >= w, np.uint64(0), end - np.minimum(pos, np.uint64(w)))
    mask = np.where(nbits >= 64, np.uint64(~0 & 0xFFFFFFFFFFFFFFFF),
                    (np.uint64(1) << np.minimum(nbits, np.uint64(63))) - np.uint64(1))
    r = shifted & mask
    if is_signed(typ):
        sbit_pos = np.where(ln == 0, np.uint64(0), np.minimum(pos + ln - np.uint64(1), np.uint64(w - 1)))
        sbit = ((x >> sbit_pos) & np.uint64(1)).astype(bool) & (ln != 0)
        r = np.where(sbit, r | ~mask, r)
    return r.astype(UINT[w]).view(NP[typ]) if np.ndim(r) else np.asarray(r).astype(UINT[w]).view(NP[typ])


@rule("bfe")
def _bfe(m, ins, mods):
    typ = mods[-1]
    dst = m.setter(ins.operands[0], typ)
    a = m.getter(ins.operands[1], typ)
    b, c = m.getter(ins.operands[2], "u32"), m.getter(ins.operands[3], "u32")
    return lambda mask: dst(bfe(a(), b(), c(), typ), mask)


@rule("bfi")
def _bfi(m, ins, mods):
    typ = mods[-1]
    w = BITS[typ]
    dst = m.setter(ins.operands[0], typ)
    a, b = m.getter(ins.operands[1], typ), m.getter(ins.operands[2], typ)
    c, d = m.getter(ins.operands[3], "u32"), m.getter(ins.operands[4], "u32")

    def f(mask):
        pos = np.asarray(c()).astype(np.uint64) & np.uint64(0xFF)
        ln = np.asarray(d()).astype(np.uint64) & np.uint64(0xFF)
        nb = np.where(pos >= w, np.uint64(0), np.minimum(pos + ln, w) - np.minimum(pos, w))
        fm = ((np.uint64(1) << np.minimum(nb, np.uint64(63))) - np.uint64(1))
        fm = np.where(nb >= 64, np.uint64(0xFFFFFFFFFFFFFFFF), fm) << np.minimum(pos, np.uint64(w - 1))
        x = np.asarray(a()).astype(UINT[w]).astype(np.uint64)
        y = np.asarray(b()).astype(UINT[w]).astype(np.uint64)
        dst(((y & ~fm) | ((x << np.minimum(pos, np.uint64(w - 1))) & fm)).astype(UINT[w]), mask)
    return f


# prmt modes: selector c[1:0] -> source byte for d.b0..d.b3 (PTX ISA 9.7.8.x prmt)
_PRMT_MODES = {
    "f4e": [(0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 6)],
    "b4e": [(4, 7, 6, 5), (5, 4, 7, 6), (6, 5, 4, 7), (7, 6, 5, 4)],
    "rc8": [(0, 0, 0, 0), (1, 1, 1, 1), (2, 2, 2, 2), (3, 3, 3, 3)],
    "ecl": [(0, 1, 2, 3), (1, 1, 2, 3), (2, 2, 2, 3), (3, 3, 3, 3)],
    "ecr": [(0, 0, 0, 0), (0, 1, 1, 1), (0, 1, 2, 2), (0, 1, 2, 3)],
    "rc16": [(0, 1, 0, 1), (2, 3, 2, 3), (0, 1, 0, 1), (2, 3, 2, 3)],
}


def prmt(a, b, c, mode=None):
    a = np.atleast_1d(np.asarray(a, dtype=np.uint32))
    b = np.atleast_1d(np.asarray(b, dtype=np.uint32))
    c = np.atleast_1d(np.asarray(c, dtype=np.uint32))
    n = max(a.size, b.size, c.size)
    src = np.zeros((n, 8), dtype=np.uint8)
    src[:, :4] = np.broadcast_to(a, (n,)).astype("<u4").view(np.uint8).reshape(n, 4)
    src[:, 4:] = np.broadcast_to(b, (n,)).astype("<u4").view(np.uint8).reshape(n, 4)
    c = np.broadcast_to(c, (n,))
    rows = np.arange(n)
    out = np.zeros((n, 4), dtype=np.uint8)
    if mode is None:
        for i in range(4):
            sel = (c >> np.uint32(4 * i)) & np.uint32(0xF)
            byte = src[rows, (sel & 7).astype(np.intp)]
            sign = np.where((byte & 0x80) != 0, np.uint8(0xFF), np.uint8(0))
            out[:, i] = np.where((sel & 8) != 0, sign, byte)
    else:
        table = np.array(_PRMT_MODES[mode], dtype=np.intp)[(c & 3).astype(np.intp)]
        for i in range(4):
            out[:, i] = src[rows, table[:, i]]
    return out.view("<u4").reshape(-1).astype(np.uint32)


@rule("prmt")
def _prmt(m, ins, mods):
    mode = next((x for x in mods if x in _PRMT_MODES), None)
    dst = m.setter(ins.operands[0], "b32")
    a, b, c = _srcs(m, ins, "b32", 3)
    return lambda mask: dst(prmt(a(), b(), c(), mode), mask)


def lop3(a, b, c, lut):
    """Arbitrary 3-input logic: bit i of immLut is the output for (a,b,c) = bits of i (a is msb)."""
    r = np.uint32(0)
    for i in range(8):
        if (lut >> i) & 1:
            r = r | ((a if i & 4 else ~a) & (b if i & 2 else ~b) & (c if i & 1 else ~c))
    return np.asarray(r).astype(np.uint32)


@rule("lop3")
def _lop3(m, ins, mods):
    if ins.operands[0][0] == "pair":
        raise SimError(f"PTX line {ins.line}: lop3 with a predicate output is not supported: {ins.text}",
                       ptx_line=ins.line)
    dst = m.setter(ins.operands[0], "b32")
    a, b, c = _srcs(m, ins, "b32", 3)
    lut = ins.operands[4][1]
    return lambda mask: dst(lop3(np.asarray(a(), np.uint32), np.asarray(b(), np.uint32),
                                 np.asarray(c(), np.uint32), lut), mask)


@rule("selp")
def _selp(m, ins, mods):
    typ = mods[-1]
    dst = m.setter(ins.operands[0], typ)
    a, b = _srcs(m, ins, typ, 2)
    p = m.getter(ins.operands[3], "pred")
    return lambda mask: dst(np.where(p(), a(), b()), mask)


@rule("slct")
def _slct(m, ins, mods):
    dtyp, ctyp = mods[-2], mods[-1]
    dst = m.setter(ins.operands[0], dtyp)
    a, b = _srcs(m, ins, dtyp, 2)
    c = m.getter(ins.operands[3], ctyp)
    return lambda mask: dst(np.where(np.asarray(c()) >= 0, a(), b()), mask)


@rule("mul24", "mad24")
def _mul24(m, ins, mods):
    typ = mods[-1]
    hi = "hi" in mods
    dst = m.setter(ins.operands[0], typ)
    a, b = _srcs(m, ins, typ, 2)
    c = m.getter(ins.operands[3], typ) if ins.opcode.startswith("mad") else (lambda: 0)
    ext = (lambda x: (np.asarray(x).astype(np.int64) << 40) >> 40) if is_signed(typ) else \
        (lambda x: np.asarray(x).astype(np.int64) & 0xFFFFFF)

    def f(mask):
        p = ext(a()) * ext(b())
        p = (p >> 16) if hi else p
        dst((p.astype(np.int64) + np.asarray(c()).astype(np.int64)).astype(np.uint32 if typ[0] == "u" else np.int32)
            .astype(NP[typ]), mask)
    return f


@rule("sad")
def _sad(m, ins, mods):
    typ = mods[-1]
    return _simple(m, ins, typ, lambda a, b, c: (np.where(a > b, a - b, b - a) + c).astype(NP[typ]), 3)
