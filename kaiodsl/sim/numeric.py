"""Numbers as PTX sees them: type tables, IEEE rounding modes, f16/bf16/tf32/fp8 bit tricks."""

from __future__ import annotations

import numpy as np

from ..types import bf16_bits, nan_to_int

# PTX type suffix -> numpy dtype holding it. bf16/fp8/packed types are raw bits.
NP = {
    "b8": np.uint8, "u8": np.uint8, "s8": np.int8,
    "b16": np.uint16, "u16": np.uint16, "s16": np.int16, "f16": np.float16, "bf16": np.uint16,
    "b32": np.uint32, "u32": np.uint32, "s32": np.int32, "f32": np.float32,
    "f16x2": np.uint32, "bf16x2": np.uint32, "tf32": np.uint32,
    "b64": np.uint64, "u64": np.uint64, "s64": np.int64, "f64": np.float64,
    "pred": np.bool_, "e4m3": np.uint8, "e5m2": np.uint8, "e4m3x2": np.uint16, "e5m2x2": np.uint16,
    "b128": np.uint64,
}
BITS = {k: (1 if k == "pred" else np.dtype(v).itemsize * 8) for k, v in NP.items()}
UINT = {8: np.uint8, 16: np.uint16, 32: np.uint32, 64: np.uint64}
SINT = {8: np.int8, 16: np.int16, 32: np.int32, 64: np.int64}
TYPES = set(NP)
INT_TYPES = {"u8", "s8", "u16", "s16", "u32", "s32", "u64", "s64", "b8", "b16", "b32", "b64"}
FLOAT_TYPES = {"f16", "bf16", "f32", "f64", "tf32", "e4m3", "e5m2"}


def is_signed(t: str) -> bool:
    return t[0] == "s"


def int_range(t: str) -> tuple[int, int]:
    b = BITS[t]
    return (-(1 << (b - 1)), (1 << (b - 1)) - 1) if is_signed(t) else (0, (1 << b) - 1)


def bits_of(x) -> np.ndarray:
    """Raw unsigned bits of a numpy value of any width."""
    x = np.asarray(x)
    return x.view(UINT[x.dtype.itemsize * 8])


# ---- bf16 (bit arithmetic: numpy has no bfloat16) --------------------------------------

def bf16_to_f32(b) -> np.ndarray:
    return (np.asarray(b).astype(np.uint32) << np.uint32(16)).view(np.float32)


def f32_to_bf16(x, mode: str = "rn") -> np.ndarray:
    """f32 -> bf16 bits with IEEE rounding `mode`; NaN -> canonical 0x7fff (as cvt does)."""
    if mode == "rn":
        return bf16_bits(x)
    b = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    trunc = b >> np.uint64(16)
    low = b & np.uint64(0xFFFF)
    sign = (b >> np.uint64(31)).astype(bool)
    if mode == "rz":
        r = trunc
    else:
        bump = (low != 0) & (sign if mode == "rm" else ~sign)
        r = trunc + bump.astype(np.uint64)
    r = np.where(np.isnan(np.asarray(x, dtype=np.float32)), np.uint64(0x7FFF), r)
    return r.astype(np.uint16)


def f64_to_bf16(x, mode: str = "rn") -> np.ndarray:
    # round-to-odd into f32 first keeps the second rounding correct (two spare bits)
    return f32_to_bf16(round_to_odd_f32(np.asarray(x, np.float64)), mode)


def round_to_odd_f32(x64: np.ndarray) -> np.ndarray:
    r = round_float(x64, np.float32, "rz")
    inexact = r.astype(np.float64) != x64
    bits = r.view(np.uint32) | inexact.astype(np.uint32)
    return np.where(np.isfinite(r), bits.view(np.float32), r)


# ---- IEEE rounding into f32/f16 from exact-enough f64 values ----------------------------

def round_float(x64, dt, mode: str = "rn") -> np.ndarray:
    """Round f64 values to float dtype `dt` with PTX rounding mode rn/rz/rm/rp (rna treated as rn)."""
    x64 = np.asarray(x64, dtype=np.float64)
    r = x64.astype(dt)
    if mode in ("rn", "rna", "", None):
        return r
    back = r.astype(np.float64)
    if mode == "rz":
        fix, to = np.abs(back) > np.abs(x64), dt(0)
    elif mode == "rm":
        fix, to = back > x64, dt(-np.inf)
    elif mode == "rp":
        fix, to = back < x64, dt(np.inf)
    else:
        raise ValueError(mode)
    return np.where(fix, np.nextafter(r, to), r).astype(dt)


def to_f16(x64, mode: str = "rn") -> np.ndarray:
    r = round_float(x64, np.float16, mode)
    return np.where(np.isnan(r), np.uint16(0x7FFF).view(np.float16), r)


FTZ_MIN = {np.dtype(np.float32): np.float32(2.0 ** -126), np.dtype(np.float64): 2.0 ** -1022}


def ftz(x):
    """Flush f32 subnormals to sign-preserving zero (.ftz)."""
    x = np.asarray(x)
    if x.dtype != np.float32:
        return x
    return np.where(np.abs(x) < np.float32(2.0 ** -126), np.copysign(np.float32(0), x), x)


def sat(x):
    """.sat for floats: clamp to [0, 1], NaN -> 0."""
    x = np.asarray(x)
    return np.where(np.isnan(x), x.dtype.type(0), np.clip(x, 0, 1)).astype(x.dtype)


# ---- float -> integer with rounding and saturation (cvt.rni/rzi/rmi/rpi) ----------------

_INT_ROUND = {"rni": np.rint, "rzi": np.trunc, "rmi": np.floor, "rpi": np.ceil,
              "rn": np.rint, "rz": np.trunc, "rm": np.floor, "rp": np.ceil, "": np.trunc}


def float_to_int(x, dst: str, mode: str, src: str = "f32") -> np.ndarray:
    """PTX float->int: round, saturate to the destination range (PTX ISA 9.7.9.21); NaN as the GPU gives it."""
    x = np.asarray(x, dtype=np.float64)
    r = _INT_ROUND[mode](x)
    lo, hi = int_range(dst)
    dt = NP[dst]
    big = r >= float(hi)
    small = r <= float(lo)
    safe = np.where(big | small | np.isnan(r), 0.0, r)
    out = safe.astype(np.int64) if is_signed(dst) else safe.astype(np.uint64)
    out = np.where(big, dt(hi), np.where(small, dt(lo), out.astype(dt)))
    return np.where(np.isnan(r), dt(nan_to_int(src, BITS[dst], is_signed(dst))), out).astype(dt)


def round_integral(x, mode: str) -> np.ndarray:
    """cvt.rni.f32.f32 and friends: round to an integral value, staying float."""
    x = np.asarray(x)
    return _INT_ROUND[mode](x).astype(x.dtype)


# ---- tf32 and fp8 --------------------------------------------------------------------------

def tf32_value(bits) -> np.ndarray:
    """The value an mma .tf32 operand has: the f32 with the low 13 mantissa bits ignored."""
    return (np.asarray(bits, dtype=np.uint32) & np.uint32(0xFFFFE000)).view(np.float32)


def f32_to_tf32(x, mode: str = "rna") -> np.ndarray:
    b = np.asarray(x, dtype=np.float32).view(np.uint32)
    if mode == "rz":
        r = b & np.uint32(0xFFFFE000)
    elif mode == "rn":
        r = (b + np.uint32(0xFFF) + ((b >> np.uint32(13)) & np.uint32(1))) & np.uint32(0xFFFFE000)
    else:  # rna: ties away from zero
        r = (b + np.uint32(0x1000)) & np.uint32(0xFFFFE000)
    return np.where(np.isfinite(np.asarray(x, np.float32)), r, b)


def _fp8_table(exp_bits: int, man_bits: int, ieee: bool) -> np.ndarray:
    bias = (1 << (exp_bits - 1)) - 1
    out = np.zeros(256, dtype=np.float32)
    for code in range(256):
        s = -1.0 if code & 0x80 else 1.0
        e = (code >> man_bits) & ((1 << exp_bits) - 1)
        m = code & ((1 << man_bits) - 1)
        if ieee and e == (1 << exp_bits) - 1:
            out[code] = s * np.inf if m == 0 else np.nan
        elif not ieee and e == (1 << exp_bits) - 1 and m == (1 << man_bits) - 1:
            out[code] = np.nan
        elif e == 0:
            out[code] = s * m * 2.0 ** (1 - bias - man_bits)
        else:
            out[code] = s * (1 + m / (1 << man_bits)) * 2.0 ** (e - bias)
    return out


# e4m3 (OCP "fn": no infinities, max 448) and e5m2 (IEEE-like), PTX ISA "Alternate floating point types"
FP8_VALUES = {"e4m3": _fp8_table(4, 3, False), "e5m2": _fp8_table(5, 2, True)}
_FP8_POS = {k: np.where(np.isfinite(v[:128]), v[:128], np.inf).astype(np.float64)
            for k, v in FP8_VALUES.items()}


def fp8_to_f32(codes, kind: str) -> np.ndarray:
    return FP8_VALUES[kind][np.asarray(codes).astype(np.intp)]


def f32_to_fp8(x, kind: str, satfinite: bool = True) -> np.ndarray:
    """Round to nearest even fp8 code; .satfinite clamps to the largest finite value."""
    x = np.asarray(x, dtype=np.float64)
    pos = _FP8_POS[kind]
    nfin = int(np.sum(np.isfinite(pos))) if kind == "e5m2" else 127  # e4m3 0x7f is NaN
    table = pos[:nfin]
    a = np.abs(x)
    hi = np.clip(np.searchsorted(table, a), 0, nfin - 1)
    lo = np.clip(hi - 1, 0, nfin - 1)
    dlo, dhi = a - table[lo], table[hi] - a
    pick_hi = (dhi < dlo) | ((dhi == dlo) & (hi % 2 == 0))
    code = np.where(pick_hi, hi, lo)
    code = np.where(a > table[-1], nfin - 1 if satfinite or kind == "e4m3" else 0x7C, code)
    code = code | np.where(np.signbit(x), 0x80, 0)
    nan = 0x7F if kind == "e4m3" else 0x7E
    return np.where(np.isnan(x), nan, code).astype(np.uint8)
