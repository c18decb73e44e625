"""Host-side helpers for the tensor-core tests: mma cases, raw element bits, numpy references."""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Case:
    """One mma form: A/B element types, K, accumulator, and the lowest sm that has it."""

    a: str
    b: str
    k: int
    acc: str
    min_sm: int = 80

    @property
    def bits(self) -> int:
        return {"f16": 16, "bf16": 16, "tf32": 32, "s8": 8, "u8": 8, "e4m3": 8, "e5m2": 8, "s4": 4, "u4": 4}[self.a]

    @property
    def id(self) -> str:
        return f"m16n8k{self.k}-{self.a}x{self.b}-{self.acc}"


CASES = [
    Case("f16", "f16", 16, "f32"), Case("f16", "f16", 16, "f16"), Case("bf16", "bf16", 16, "f32"),
    Case("f16", "f16", 8, "f32", 75), Case("f16", "f16", 8, "f16", 75), Case("bf16", "bf16", 8, "f32"),
    Case("tf32", "tf32", 8, "f32"), Case("tf32", "tf32", 4, "f32"),
    Case("s8", "s8", 32, "s32"), Case("u8", "s8", 32, "s32"), Case("s8", "u8", 16, "s32"),
    Case("u8", "u8", 16, "s32"),
    Case("e4m3", "e4m3", 32, "f32", 89), Case("e5m2", "e4m3", 32, "f32", 89),
    Case("s4", "s4", 64, "s32"), Case("u4", "s4", 32, "s32"),
]


def _fp8_table(kind: str) -> np.ndarray:
    """Value of each of the 256 codes (NaN where the code is NaN/inf)."""
    e, m, bias = (4, 3, 7) if kind == "e4m3" else (5, 2, 15)
    out = np.empty(256)
    for code in range(256):
        s, ex, man = code >> 7, (code >> m) & ((1 << e) - 1), code & ((1 << m) - 1)
        if kind == "e4m3" and ex == 15 and man == 7 or kind == "e5m2" and ex == 31:
            v = np.nan
        elif ex == 0:
            v = man * 2.0 ** (1 - bias - m)
        else:
            v = (1 + man / 2**m) * 2.0 ** (ex - bias)
        out[code] = -v if s else v
    return out


def random_elements(rng, kind: str, shape):
    """(raw bits as uint, values as float64/int64) of a matrix of mma element type ``kind``:
    distinct where the type allows, never symmetric, so a transposed or swapped fragment fails."""
    n = int(np.prod(shape))
    if kind in ("f16", "bf16", "tf32"):
        half = 0.0 if kind == "bf16" else 0.5  # bf16 keeps 8 significant bits: integers / scale only
        v = (rng.permutation(n) - n // 2 + half * (np.arange(n) % 2)) / (n / 8)  # |v| <= 4
        if kind == "bf16":
            bits = (v.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        elif kind == "f16":
            bits = v.astype(np.float16).view(np.uint16)
        else:
            bits = v.astype(np.float32).view(np.uint32)
        return bits.reshape(shape), v.reshape(shape)
    if kind in ("e4m3", "e5m2"):
        table = _fp8_table(kind)
        ok = np.flatnonzero(np.isfinite(table) & (np.abs(table) <= 16))
        codes = rng.choice(ok, n).astype(np.uint8)
        return codes.reshape(shape), table[codes].reshape(shape)
    lo, hi = {"s8": (-128, 127), "u8": (0, 255), "s4": (-8, 7), "u4": (0, 15)}[kind]
    v = rng.integers(lo, hi, n, endpoint=True)
    w = 8 if kind in ("s8", "u8") else 4
    return (v & ((1 << w) - 1)).astype(np.uint8).reshape(shape), v.reshape(shape).astype(np.int64)


def pack_rows(bits: np.ndarray, width: int) -> np.ndarray:
    """Row-major element bits -> row-major bytes (4-bit elements two per byte, low nibble first)."""
    if width == 4:
        return (bits[:, 0::2] | (bits[:, 1::2] << 4)).astype(np.uint8)
    return np.ascontiguousarray(bits).view(np.uint8).reshape(bits.shape[0], -1)
