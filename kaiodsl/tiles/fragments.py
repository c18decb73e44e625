"""Register fragments: a warp's accumulator tile that knows each element's (row, col).

An ``AccTile(mi, nj)`` is a ``mi x nj`` grid of m16n8 accumulator fragments, ``acc[i][j]``, covering a
16 mi x 8 nj warp tile. Element ``e`` of ``acc[i][j]`` in lane ``l`` (g = l >> 2, t = l & 3) is at
row ``16 i + g + 8 (e >> 1)``, column ``8 j + 2 t + (e & 1)`` (PTX ISA 9.7.14.5.8, "Matrix fragments
for mma.m16n8k16": the C/D layout; the same for every m16n8k* shape). So a lane holds two rows of
the tile per i (h = 0: row g, h = 1: row g + 8), and the four lanes of a quad (same g) hold a whole
row: row reductions are an in-register reduction and two ``shfl.bfly`` steps (xor 1, xor 2).

Accumulator -> A operand without shared memory (FlashAttention-2's P @ V): the m16n8k16 A fragment
(9.7.14.5.8: a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)) is exactly the C
fragments of two neighbouring n8 tiles, 2kk and 2kk + 1, packed in pairs.

For an 8-bit A operand (wgmma k32: a lane holds k 4t..4t+3 and 16+4t..16+4t+3 of rows g and g+8) the
C columns a lane holds (8j + 2t + {0, 1}) do not line up; ``to_a8`` packs each lane's own values anyway,
so A's k index p of each 32-column step holds column ``a8_order()[p]`` of the accumulator: a product
over k (P V) is right when B's k rows are put in the same order (ops/attention_sm90_fp8.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import kaiodsl
from kaiodsl import Const, f32


@dataclass(frozen=True)
class AccTile:
    """A ``mi x nj`` grid of m16n8 accumulators (``acc`` = "f32", "s32" or "f16")."""

    mi: int
    nj: int
    acc: str = "f32"

    @property
    def rows(self) -> int:
        return 16 * self.mi

    @property
    def cols(self) -> int:
        return 8 * self.nj

    @property
    def elements(self) -> int:
        """Elements per fragment (4 for f32/s32 accumulators)."""
        return 4

    def coord(self, i: int, j: int, e: int, lane):
        """Host side (lane an int or a numpy array): (row, col) of element e of acc[i][j]."""
        lane = np.asarray(lane)
        g, t = lane >> 2, lane & 3
        return 16 * i + g + 8 * (e >> 1), 8 * j + 2 * t + (e & 1)


@kaiodsl.func
def zeros(T: Const):
    """A zero accumulator tile."""
    return [[kaiodsl.mma_zeros(T.acc) for j in range(T.nj)] for i in range(T.mi)]


@kaiodsl.func
def fill(T: Const, value):
    """Every element = ``value`` (an f32)."""
    v = f32(value)
    return [[(v, v, v, v) for j in range(T.nj)] for i in range(T.mi)]


@kaiodsl.func
def coord(T: Const, i: Const[int], j: Const[int], e: Const[int], lane):
    """In a kernel: (row, col) inside the warp tile of element e of acc[i][j] in ``lane``."""
    return 16 * i + (lane >> 2) + 8 * (e >> 1), 8 * j + 2 * (lane & 3) + (e & 1)


@kaiodsl.func
def map(T: Const, acc, fn):
    """``fn(v)`` for every element (fn a @kaiodsl.func)."""
    return [[(fn(acc[i][j][0]), fn(acc[i][j][1]), fn(acc[i][j][2]), fn(acc[i][j][3]))
             for j in range(T.nj)] for i in range(T.mi)]


@kaiodsl.func
def map_coords(T: Const, acc, fn, row0, col0, lane):
    """``fn(v, row, col)`` for every element, with row/col offset by (row0, col0) (global coordinates)."""
    out = []
    for i in kaiodsl.static_range(T.mi):
        line = []
        for j in kaiodsl.static_range(T.nj):
            vals = []
            for e in kaiodsl.static_range(4):
                r, c = coord(T, i, j, e, lane)
                vals = vals + [fn(acc[i][j][e], row0 + r, col0 + c)]
            line = line + [(vals[0], vals[1], vals[2], vals[3])]
        out = out + [line]
    return out


@kaiodsl.func
def mask(T: Const, acc, keep, args, row0, col0, lane, fill_value):
    """Elements where ``keep(row, col, args)`` is false become ``fill_value`` (e.g. -inf for a causal
    mask); row/col are offset by (row0, col0), ``args`` is passed through (sequence lengths, a shift)."""
    out = []
    for i in kaiodsl.static_range(T.mi):
        line = []
        for j in kaiodsl.static_range(T.nj):
            vals = []
            for e in kaiodsl.static_range(4):
                r, c = coord(T, i, j, e, lane)
                vals = vals + [kaiodsl.where(keep(row0 + r, col0 + c, args), acc[i][j][e], fill_value)]
            line = line + [(vals[0], vals[1], vals[2], vals[3])]
        out = out + [line]
    return out


@kaiodsl.func
def _max(x, y):
    return max(x, y)


@kaiodsl.func
def _add(x, y):
    return x + y


@kaiodsl.func
def row_reduce(T: Const, acc, op, init):
    """Per row of the tile, ``op`` over its 8 nj columns, then with ``init`` (a value, or a per-row
    list such as a running max or sum): a list ``[i][h]`` (row 16 i + g + 8 h), the same in the four
    lanes of each quad. ``init`` joins after the quad reduction, so a sum counts it once."""
    out = []
    for i in kaiodsl.static_range(T.mi):
        pair = []
        for h in kaiodsl.static_range(2):
            v = op(acc[i][0][2 * h], acc[i][0][2 * h + 1])
            for j in kaiodsl.static_range(1, T.nj):
                v = op(v, op(acc[i][j][2 * h], acc[i][j][2 * h + 1]))
            v = op(v, kaiodsl.shfl_xor(v, 1))       # the quad holds the row: lanes 4g .. 4g + 3
            v = op(v, kaiodsl.shfl_xor(v, 2))
            pair = pair + [op(v, init[i][h] if isinstance(init, list) else init)]
        out = out + [pair]
    return out


@kaiodsl.func
def row_max(T: Const, acc, init):
    """Per-row max (see row_reduce); ``init`` a value or a per-row list (a running max)."""
    return row_reduce(T, acc, _max, init)


@kaiodsl.func
def row_sum(T: Const, acc, init):
    """Per-row sum (see row_reduce)."""
    return row_reduce(T, acc, _add, init)


@kaiodsl.func
def scale_rows(T: Const, acc, rows):
    """acc[row, :] *= rows[i][h] (a per-row list as row_reduce returns)."""
    return [[(acc[i][j][0] * rows[i][0], acc[i][j][1] * rows[i][0], acc[i][j][2] * rows[i][1],
              acc[i][j][3] * rows[i][1]) for j in range(T.nj)] for i in range(T.mi)]


@kaiodsl.func
def map_rows(T: Const, acc, fn, rows):
    """``fn(v, rows[i][h])`` for every element (e.g. exp2(v - row_max))."""
    return [[(fn(acc[i][j][0], rows[i][0]), fn(acc[i][j][1], rows[i][0]), fn(acc[i][j][2], rows[i][1]),
              fn(acc[i][j][3], rows[i][1])) for j in range(T.nj)] for i in range(T.mi)]


@kaiodsl.func
def pack(x0, x1, H2: Const):
    """Two f32 values as one packed f16x2 / bf16x2 register (x0 in the low half; cvt.rn)."""
    return kaiodsl.pack_half2(x0, x1, H2)


@kaiodsl.func
def to_a(T: Const, acc, H2: Const):
    """The accumulator as m16n8k16 A fragments of H2 (f16x2 / bf16x2): ``[i][kk]`` for k columns
    16 kk .. 16 kk + 15, no shared memory (see the module doc). T.nj must be even."""
    out = []
    for i in kaiodsl.static_range(T.mi):
        line = []
        for kk in kaiodsl.static_range(T.nj // 2):
            c0 = acc[i][2 * kk]
            c1 = acc[i][2 * kk + 1]
            line = line + [(pack(c0[0], c0[1], H2), pack(c0[2], c0[3], H2),
                            pack(c1[0], c1[1], H2), pack(c1[2], c1[3], H2))]
        out = out + [line]
    return out


def a8_order() -> np.ndarray:
    """Host side: the accumulator column (0..31) that ``to_a8`` puts at k index p of a k32 step."""
    p = np.arange(32)
    half, t, i = p // 16, (p % 16) // 4, p % 4
    return 16 * half + 2 * t + np.where(i < 2, i, 8 + i - 2)


@kaiodsl.func
def pack8x4(x0, x1, x2, x3, dtype: Const):
    """Four f32 values as one register of four e4m3 / e5m2 bytes, x0 in the low byte (cvt.rn.satfinite)."""
    return kaiodsl.pack_b32(kaiodsl.pack_fp8x2(x0, x1, dtype), kaiodsl.pack_fp8x2(x2, x3, dtype))


@kaiodsl.func
def to_a8(T: Const, acc, dtype: Const):
    """The accumulator as 8-bit wgmma k32 A fragments (4 registers of 4 bytes) ``[i][kk]`` for columns
    32 kk .. 32 kk + 31 permuted by ``a8_order`` (see the module doc): no shuffles. T.nj % 4 == 0."""
    out = []
    for i in kaiodsl.static_range(T.mi):
        line = []
        for kk in kaiodsl.static_range(T.nj // 4):
            c0 = acc[i][4 * kk]
            c1 = acc[i][4 * kk + 1]
            c2 = acc[i][4 * kk + 2]
            c3 = acc[i][4 * kk + 3]
            line = line + [(pack8x4(c0[0], c0[1], c1[0], c1[1], dtype), pack8x4(c0[2], c0[3], c1[2], c1[3], dtype),
                            pack8x4(c2[0], c2[1], c3[0], c3[1], dtype), pack8x4(c2[2], c2[3], c3[2], c3[3], dtype))]
        out = out + [line]
    return out


@kaiodsl.func
def load_c(T: Const, src, ld, row0, col0, lane):
    """An f32 accumulator tile read from a row-major global f32 matrix at (row0, col0) (tests and
    residual inputs); 64-bit offsets."""
    out = []
    for i in kaiodsl.static_range(T.mi):
        line = []
        for j in kaiodsl.static_range(T.nj):
            vals = []
            for e in kaiodsl.static_range(4):
                r, c = coord(T, i, j, e, lane)
                vals = vals + [src[kaiodsl.i64(row0 + r) * ld + (col0 + c)]]
            line = line + [(vals[0], vals[1], vals[2], vals[3])]
        out = out + [line]
    return out
