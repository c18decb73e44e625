"""mov (incl. pack/unpack through braces) and cvt between every int/float type (PTX ISA 9.7.9.x)."""

from __future__ import annotations

import numpy as np

from .numeric import (BITS, NP, UINT, f32_to_fp8, f32_to_tf32, float_to_int, fp8_to_f32, ftz,
                      int_range, round_float, round_integral, sat)
from .ops_float import decode, encode
from .registry import INT_ROUNDING, rounding, rule

_INTS = {"u8", "s8", "u16", "s16", "u32", "s32", "u64", "s64", "b8", "b16", "b32", "b64"}


@rule("mov")
def _mov(m, ins, mods):
    typ = mods[-1]
    d, a = ins.operands[0], ins.operands[1]
    w = BITS[typ]
    if a[0] == "vec":  # pack: first element is the least significant part
        parts = a[1]
        pw = w // len(parts)
        getters = [m.getter(p, f"b{pw}") if p[0] != "sink" else (lambda: 0) for p in parts]
        dst = m.setter(d, typ)
        u = UINT[w]

        def pack(mask):
            r = u(0)
            for i, g in enumerate(getters):
                r = r | (np.asarray(g()).astype(UINT[pw]).astype(u) << u(i * pw))
            dst(np.asarray(r).astype(u), mask)
        return pack
    if d[0] == "vec":  # unpack
        parts = d[1]
        pw = w // len(parts)
        src = m.getter(a, f"b{w}")
        setters = [m.setter(p, f"b{pw}") for p in parts]
        u = UINT[w]

        def unpack(mask):
            x = np.asarray(src()).astype(u)
            for i, s in enumerate(setters):
                s(((x >> u(i * pw)) & u((1 << pw) - 1)).astype(UINT[pw]), mask)
        return unpack
    dst = m.setter(d, typ)
    src = m.getter(a, typ)
    return lambda mask: dst(src(), mask)


def _src_value(x, styp):
    """Source register value -> numpy ints (exact) or f64."""
    if styp in _INTS:
        return np.asarray(x)
    if styp in ("f16", "bf16"):
        return decode(np.asarray(x).view(np.uint16), styp)
    if styp in ("e4m3", "e5m2"):
        return fp8_to_f32(x, styp).astype(np.float64)
    return np.asarray(x)


def convert(x, dtyp, styp, mods):
    """One scalar cvt: value semantics of PTX ISA 9.7.9.21 (saturating float->int; NaN as the GPU gives it)."""
    mode = rounding(mods, default="")
    v = _src_value(x, styp)
    relu = "relu" in mods
    if dtyp in _INTS:
        if styp in _INTS:
            if "sat" in mods:
                lo, hi = int_range(dtyp)
                slo, shi = int_range(styp)
                lo, hi = max(lo, slo), min(hi, shi)
                v = np.clip(v, v.dtype.type(lo), v.dtype.type(hi))
            return np.asarray(v).astype(NP[dtyp])
        return float_to_int(v, dtyp, mode or "rzi", styp)
    # float destination
    if styp in _INTS:
        v64 = np.asarray(v).astype(np.float64)
        fmode = mode or "rn"
    else:
        v64 = np.asarray(v).astype(np.float64)
        if "ftz" in mods and styp == "f32":
            v64 = ftz(np.asarray(v, np.float32)).astype(np.float64)
        fmode = mode or "rn"
        if mode in INT_ROUNDING:  # cvt.rni.f32.f32: round to an integral value
            v64 = round_integral(v64, mode)
            fmode = "rn"
    if relu:
        v64 = np.where(np.isnan(v64), v64, np.maximum(v64, 0.0))
    if "sat" in mods:
        v64 = sat(v64)
    if dtyp == "f64":
        return v64
    if dtyp == "f32":
        r = round_float(v64, np.float32, fmode)
        return ftz(r) if "ftz" in mods else r
    if dtyp in ("f16", "bf16"):
        if "satfinite" in mods:
            big = 65504.0 if dtyp == "f16" else 3.3895313892515355e38
            v64 = np.where(np.isnan(v64), v64, np.clip(v64, -big, big))
        return encode(v64, dtyp, fmode)
    if dtyp == "tf32":
        return f32_to_tf32(v64.astype(np.float32), fmode)
    if dtyp in ("e4m3", "e5m2"):
        return f32_to_fp8(v64, dtyp, "satfinite" in mods)
    raise NotImplementedError(dtyp)


@rule("cvt")
def _cvt(m, ins, mods):
    types = [x for x in mods if x in NP]
    dtyp, styp = types[-2], types[-1]
    dst_op = ins.operands[0]
    if dtyp in ("f16x2", "bf16x2", "e4m3x2", "e5m2x2") and styp == "f32":
        # cvt.rn.f16x2.f32 d, a, b: a goes to the UPPER half, b to the lower (PTX ISA cvt)
        half = dtyp[:-2]
        hw = 16 if half in ("f16", "bf16") else 8
        dst = m.setter(dst_op, f"b{2 * hw}")
        a, b = m.getter(ins.operands[1], "f32"), m.getter(ins.operands[2], "f32")
        u = UINT[2 * hw]

        def pack(mask):
            hi = np.asarray(convert(a(), half, "f32", mods)).astype(u)
            lo = np.asarray(convert(b(), half, "f32", mods)).astype(u)
            dst(((hi << u(hw)) | lo).astype(u), mask)
        return pack
    if styp in ("e4m3x2", "e5m2x2") and dtyp == "f16x2":
        dst = m.setter(dst_op, "b32")
        a = m.getter(ins.operands[1], "b16")
        kind = styp[:-2]

        def unpack8(mask):
            x = np.asarray(a()).astype(np.uint16)
            lo = fp8_to_f32(x & np.uint16(0xFF), kind).astype(np.float64)
            hi = fp8_to_f32(x >> np.uint16(8), kind).astype(np.float64)
            r = (encode(hi, "f16").astype(np.uint32) << np.uint32(16)) | encode(lo, "f16").astype(np.uint32)
            dst(r, mask)
        return unpack8
    gtyp = styp if styp not in ("bf16", "e4m3", "e5m2") else {"bf16": "b16", "e4m3": "b8", "e5m2": "b8"}[styp]
    dtyp_reg = dtyp if dtyp not in ("bf16", "tf32", "e4m3", "e5m2") else \
        {"bf16": "b16", "tf32": "b32", "e4m3": "b8", "e5m2": "b8"}[dtyp]
    dst = m.setter(dst_op, dtyp_reg)
    a = m.getter(ins.operands[1], gtyp)
    if dtyp in ("f16",):
        return lambda mask: dst(np.asarray(convert(a(), dtyp, styp, mods)).view(np.uint16), mask)
    return lambda mask: dst(convert(a(), dtyp, styp, mods), mask)


@rule("cvta")
def _cvta(m, ins, mods):
    """Generic <-> state-space addresses: shared and local live in fixed windows (memory.py)."""
    from .memory import LOCAL_WIN, PARAM_WIN, SHARED_WIN
    typ = mods[-1]
    to = "to" in mods
    space = next((x for x in mods if x in ("global", "shared", "local", "const", "param")), "global")
    base = {"shared": SHARED_WIN, "local": LOCAL_WIN, "param": PARAM_WIN}.get(space, 0)
    dst = m.setter(ins.operands[0], typ)
    a = m.getter(ins.operands[1], typ)
    off = NP[typ](base & ((1 << BITS[typ]) - 1))
    if base == 0:
        return lambda mask: dst(a(), mask)
    if to:
        return lambda mask: dst(np.asarray(a()) - off, mask)
    return lambda mask: dst(np.asarray(a()) + off, mask)
