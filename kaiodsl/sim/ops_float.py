"""Floating-point instructions (PTX ISA 9.7.3 f32/f64, 9.7.4 half precision incl. packed x2).

f32 .rn arithmetic runs in numpy float32 (IEEE correctly rounded); other rounding modes
and half types compute in f64 and round once into the destination format.
"""

from __future__ import annotations

import numpy as np

from .numeric import f64_to_bf16, bf16_to_f32, ftz as _ftz, round_float, sat as _sat, to_f16
from .registry import rounding, rule

HALF = ("f16", "bf16")
PACKED = ("f16x2", "bf16x2")


def unpack(x, kind):
    """32-bit packed pair -> (lo, hi) as f64 (lo = bits 0..15)."""
    x = np.asarray(x).astype(np.uint32)
    lo, hi = (x & np.uint32(0xFFFF)).astype(np.uint16), (x >> np.uint32(16)).astype(np.uint16)
    return decode(lo, kind), decode(hi, kind)


def pack(lo, hi, kind, mode="rn"):
    lo_b = encode(lo, kind, mode).astype(np.uint32)
    hi_b = encode(hi, kind, mode).astype(np.uint32)
    return (hi_b << np.uint32(16)) | lo_b


def decode(x, kind):
    """Half bits (uint16) or f16 values -> f64."""
    x = np.asarray(x)
    if kind == "bf16":
        return bf16_to_f32(x.astype(np.uint16)).astype(np.float64)
    return x.view(np.float16).astype(np.float64) if x.dtype == np.uint16 else x.astype(np.float64)


def encode(v, kind, mode="rn"):
    """f64 -> half bits (uint16)."""
    if kind == "bf16":
        return f64_to_bf16(v, mode)
    return np.asarray(to_f16(v, mode)).view(np.uint16)


_BIN = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "min": np.fmin, "max": np.fmax,
}


def _finish(r, mods):
    if "sat" in mods:
        r = _sat(r)
    if "ftz" in mods:
        r = _ftz(r)
    return r


def _ins(x, mods):
    return _ftz(x) if "ftz" in mods else x


def float_nary(m, ins, mods, f, nsrc):
    """Build an n-ary float op for f32/f64/f16/bf16 and packed pairs."""
    typ = mods[-1]
    mode = rounding(mods)
    dst = m.setter(ins.operands[0], typ)
    srcs = [m.getter(op, typ if typ not in HALF else "b16") for op in ins.operands[1:1 + nsrc]]
    if typ in ("f32", "f64"):
        dt = np.float32 if typ == "f32" else np.float64
        if typ == "f32" and mode in ("rz", "rm", "rp"):
            return lambda mask: dst(_finish(round_float(
                f(*[np.asarray(_ins(s(), mods), np.float64) for s in srcs]), np.float32, mode), mods), mask)
        return lambda mask: dst(_finish(np.asarray(f(*[_ins(s(), mods) for s in srcs]), dtype=dt), mods), mask)
    if typ in HALF:
        def half(mask):
            r = f(*[decode(np.asarray(s()).view(np.uint16), typ) for s in srcs])
            if "sat" in mods:
                r = _sat(r)
            dst(encode(r, typ, mode), mask)
        return half
    kind = typ[:-2]

    def packed(mask):
        pairs = [unpack(s(), kind) for s in srcs]
        lo = f(*[p[0] for p in pairs])
        hi = f(*[p[1] for p in pairs])
        if "sat" in mods:
            lo, hi = _sat(lo), _sat(hi)
        dst(pack(lo, hi, kind, mode), mask)
    return packed


def float_binary(m, ins, mods):
    op = ins.opcode.split(".")[0]
    f = _BIN[op]
    if op in ("min", "max") and "NaN" in mods:
        f = np.minimum if op == "min" else np.maximum
    return float_nary(m, ins, mods, f, 2)


def float_fma(m, ins, mods):
    return float_nary(m, ins, mods, _fma, 3)


def _fma(a, b, c):
    # a*b is exact in f64 for f32/half inputs; one rounding happens on store
    a, b, c = (np.asarray(x) for x in (a, b, c))
    if a.dtype == np.float32:
        return (a.astype(np.float64) * b + c).astype(np.float64)
    return a * b + c


@rule("fma")
def _fma_rule(m, ins, mods):
    typ = mods[-1]
    if typ == "f32":
        mode = rounding(mods)
        dst = m.setter(ins.operands[0], typ)
        a, b, c = (m.getter(op, typ) for op in ins.operands[1:4])
        return lambda mask: dst(_finish(round_float(
            _fma(_ins(a(), mods), _ins(b(), mods), _ins(c(), mods)), np.float32, mode), mods), mask)
    return float_fma(m, ins, mods)


def float_absneg(m, ins, mods):
    """abs/neg only touch the sign bit (also for NaN), PTX ISA 9.7.3.x."""
    typ = mods[-1]
    neg = ins.opcode.startswith("neg")
    bits = {"f16": "b16", "bf16": "b16", "f32": "b32", "f64": "b64", "f16x2": "b32", "bf16x2": "b32"}[typ]
    sign = {"b16": np.uint16(0x8000), "b32": np.uint32(0x80000000), "b64": np.uint64(1 << 63)}[bits]
    if typ in PACKED:
        sign = np.uint32(0x80008000)
    dst = m.setter(ins.operands[0], bits)
    a = m.getter(ins.operands[1], bits)
    if "ftz" in mods and typ == "f32":
        af = m.getter(ins.operands[1], "f32")
        return lambda mask: dst((-_ftz(af()) if neg else np.abs(_ftz(af()))).astype(np.float32), mask)
    return lambda mask: dst(np.bitwise_xor(a(), sign) if neg else np.bitwise_and(a(), ~sign), mask)


_UNARY = {
    "rcp": lambda x: 1.0 / x,
    "sqrt": np.sqrt,
    "rsqrt": lambda x: 1.0 / np.sqrt(x),
    "ex2": np.exp2,
    "lg2": np.log2,
    "sin": np.sin,
    "cos": np.cos,
    "tanh": np.tanh,
}


@rule(*_UNARY)
def _unary(m, ins, mods):
    f = _UNARY[ins.opcode.split(".")[0]]
    return float_nary(m, ins, mods, f, 1)


@rule("copysign")
def _copysign(m, ins, mods):
    # copysign d, a, b: d = |b| with the sign of a
    return float_nary(m, ins, mods, lambda a, b: np.copysign(b, a), 2)


# setp / set comparisons. Ordered float compares are false on NaN; the *u forms are true.
_CMP = {
    "eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
    "gt": np.greater, "ge": np.greater_equal,
    "lo": np.less, "ls": np.less_equal, "hi": np.greater, "hs": np.greater_equal,
}


def compare(a, b, op, is_float):
    if op in ("num", "nan"):
        n = np.isnan(a) | np.isnan(b)
        return ~n if op == "num" else n
    if op.endswith("u") and op[:-1] in _CMP and is_float:
        return _CMP[op[:-1]](a, b) | np.isnan(a) | np.isnan(b)
    r = _CMP[op](a, b)
    if is_float and op == "ne":
        r = r & ~(np.isnan(a) | np.isnan(b))
    return r


_BOOL = {"and": np.logical_and, "or": np.logical_or, "xor": np.logical_xor}


def _cmp_sources(m, ins, typ):
    if typ in HALF or typ in PACKED:
        gt = "b16" if typ in HALF else "b32"
        a, b = m.getter(ins.operands[1], gt), m.getter(ins.operands[2], gt)
        if typ in HALF:
            return (lambda: decode(a(), typ)), (lambda: decode(b(), typ)), True
        return (lambda: unpack(a(), typ[:-2])), (lambda: unpack(b(), typ[:-2])), True
    a, b = m.getter(ins.operands[1], typ), m.getter(ins.operands[2], typ)
    return a, b, typ[0] == "f"


@rule("setp")
def _setp(m, ins, mods):
    typ = mods[-1]
    cmp = mods[0]
    boolop = next((x for x in mods[1:] if x in _BOOL), None)
    a, b, isf = _cmp_sources(m, ins, typ)
    d = ins.operands[0]
    if typ in PACKED:  # setp.*.f16x2 p|q, a, b: p from the low halves, q from the high halves
        p, q = m.setter(("reg", d[1]), "pred"), m.setter(("reg", d[2]), "pred")

        def fpk(mask):
            (al, ah), (bl, bh) = a(), b()
            p(compare(al, bl, cmp, True), mask)
            q(compare(ah, bh, cmp, True), mask)
        return fpk
    p = m.setter(("reg", d[1]), "pred")
    q = m.setter(("reg", d[2]), "pred") if d[0] == "pair" else None
    c = m.getter(ins.operands[3], "pred") if boolop else None
    comb = _BOOL.get(boolop)

    def f(mask):
        r = compare(a(), b(), cmp, isf)
        if comb is not None:
            cv = c()
            p(comb(r, cv), mask)
            if q is not None:
                q(comb(~r, cv), mask)
            return
        p(r, mask)
        if q is not None:
            q(~r, mask)
    return f


@rule("set")
def _set(m, ins, mods):
    """set.cmp[.boolop].dtype.stype: all ones (or 1.0f) when true, 0 when false."""
    dtyp, styp = mods[-2], mods[-1]
    cmp = mods[0]
    boolop = next((x for x in mods[1:] if x in _BOOL), None)
    a, b, isf = _cmp_sources(m, ins, styp)
    dst = m.setter(ins.operands[0], dtyp)
    c = m.getter(ins.operands[3], "pred") if boolop else None
    true = np.float32(1.0) if dtyp == "f32" else np.uint32(0xFFFFFFFF).astype(np.uint32)
    if dtyp == "f32":
        zero = np.float32(0)
    else:
        zero = np.uint32(0)

    def f(mask):
        r = compare(a(), b(), cmp, isf)
        if boolop:
            r = _BOOL[boolop](r, c())
        dst(np.where(r, true, zero), mask)
    return f


_TESTP = {
    "finite": np.isfinite, "infinite": np.isinf, "number": lambda x: ~np.isnan(x),
    "notanumber": np.isnan,
    "normal": lambda x: np.isfinite(x) & (np.abs(x) >= np.finfo(x.dtype).tiny),
    "subnormal": lambda x: (x != 0) & (np.abs(x) < np.finfo(x.dtype).tiny),
}


@rule("testp")
def _testp(m, ins, mods):
    typ = mods[-1]
    f = _TESTP[mods[0]]
    dst = m.setter(ins.operands[0], "pred")
    a = m.getter(ins.operands[1], typ)
    return lambda mask: dst(f(np.asarray(a())), mask)
