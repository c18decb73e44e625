"""Rotary position embedding on accumulator values, as an epilogue step (before the store).

``vals`` is an f32 warp tile in the AccTile layout (``vals[i][j][e]``: row 16 i + g + 8 (e >> 1),
column 8 j + 2 t + (e & 1); fragments.py). Columns are (head, d) with ``head_dim`` D; the tables
``cos``/``sin`` are f32 [positions, D / 2] (one angle per rotated pair), row ``pos(row)``.

* ``"interleaved"`` (GPT-J, the original RoFormer): pairs (2 i, 2 i + 1) use angle i. A lane holds
  both (elements e, e + 1 of a fragment), so the rotation is in registers.
* ``"rotate_half"`` (Llama / HF ``rotate_half``): pairs (i, i + D / 2) use angle i. The partner sits
  in another fragment, often another warp: the block's tile goes through shared memory once (f32,
  ``[block rows, block cols]``), so the block's columns must hold whole heads. In a wgmma
  accumulator (``AccTile(1, n / 8)``: every lane holds columns ``8 j + 2 t + e`` of all n / 8 column
  groups) the partner of group j is group ``j +- D / 16`` of the same lane: ``rotate_half_lane``
  rotates in registers when the tile holds whole heads and D is a multiple of 16.

``Rope(style, head_dim, positions)`` is the step as compile-time data for an epilogue:
``row_positions`` gives each row's position (``positions``: a Ptr[i32] of M rows, else ``row % S``
for a run-time S), ``rotate_group`` rotates one column group (with its rotate_half partner) in
registers, so an epilogue can go group by group and keep few values live.
"""

from __future__ import annotations

from dataclasses import dataclass

import kaiodsl
from kaiodsl import Const, i64

STYLES = ("rotate_half", "interleaved")


@dataclass(frozen=True)
class Rope:
    """Compile-time facts of a rotary step: the pairing, D, and whether rows take a positions array
    (its run-time args: ``(cos, sin, positions)``, else ``(cos, sin, S)``)."""

    style: str
    head_dim: int
    positions: bool = False

    def __post_init__(self):
        if self.style not in STYLES or self.head_dim < 2 or self.head_dim % 2:
            raise ValueError(f"Rope: style in {STYLES} and an even head_dim, got {self}")

    def fits_lane(self, cols: int) -> bool:
        """Whether ``rotate_group`` serves tiles of ``cols`` columns: whole heads (D a multiple of 8:
        a group lies in one head; rotate_half: of 16, so a partner is a whole group away)."""
        return cols % self.head_dim == 0 and self.head_dim % (8 if self.style == "interleaved" else 16) == 0


@kaiodsl.func
def _angle(cos, sin, pos, f, D: Const[int]):
    idx = i64(pos) * (D // 2) + f
    return cos[idx], sin[idx]


@kaiodsl.func
def interleaved(T: Const, vals, cos, sin, pos_rows, c0, lane, D: Const[int]):
    """Rotate (v[2i], v[2i+1]) by angle i of each row's position; ``pos_rows[i][h]`` the position of
    row 16 i + g + 8 h, ``c0`` the tile's first column (a multiple of 8)."""
    t = lane % 4
    out = []
    for i in kaiodsl.static_range(T.mi):
        line = []
        for j in kaiodsl.static_range(T.nj):
            if D % 8 == 0:                         # a pair never crosses a head: one mod per column group
                f = ((c0 + 8 * j) % D) // 2 + t
            else:
                f = ((c0 + 8 * j + 2 * t) % D) // 2
            v = []
            for h in kaiodsl.static_range(2):
                c, s = _angle(cos, sin, pos_rows[i][h], f, D)
                x0 = vals[i][j][2 * h]
                x1 = vals[i][j][2 * h + 1]
                v = v + [x0 * c - x1 * s, x1 * c + x0 * s]
            line = line + [(v[0], v[1], v[2], v[3])]
        out = out + [line]
    return out


@kaiodsl.func
def rotate_half(T: Const, vals, cos, sin, pos_rows, sm, ld: Const[int], r0, c0, lane, D: Const[int], write=True):
    """x[d] cos - x[d + D/2] sin for d < D/2, x[d] cos + x[d - D/2] sin above. ``sm``: an f32 shared
    buffer of [rows, ld] for the block's tile, (r0, c0) this warp tile's origin inside it (c0 % D of the
    global column must equal c0 % D: the block starts at a head boundary). Every thread of the block
    must call it (two barriers); ``write`` False: a warp that only reads (another holds the same tile)."""
    g = lane // 4
    t = lane % 4
    kaiodsl.syncthreads()                       # the buffer may still be in use by the main loop
    if write:
        for i in kaiodsl.static_range(T.mi):
            for j in kaiodsl.static_range(T.nj):
                for e in kaiodsl.static_range(4):
                    sm[(r0 + 16 * i + g + 8 * (e >> 1)) * ld + c0 + 8 * j + 2 * t + (e & 1)] = vals[i][j][e]
    kaiodsl.syncthreads()
    out = []
    for i in kaiodsl.static_range(T.mi):
        line = []
        for j in kaiodsl.static_range(T.nj):
            v = []
            for e in kaiodsl.static_range(4):
                r = r0 + 16 * i + g + 8 * (e >> 1)
                col = c0 + 8 * j + 2 * t + (e & 1)
                d = col % D
                low = d < D // 2
                partner = sm[r * ld + kaiodsl.where(low, col + D // 2, col - D // 2)]
                c, s = _angle(cos, sin, pos_rows[i][e >> 1], kaiodsl.where(low, d, d - D // 2), D)
                x = vals[i][j][e]
                v = v + [kaiodsl.where(low, x * c - partner * s, x * c + partner * s)]
            line = line + [(v[0], v[1], v[2], v[3])]
        out = out + [line]
    return out


@kaiodsl.func
def row_positions(R: Const, T: Const, args, r0, lane, M):
    """``[i][h]``: the position of row ``r0 + 16 i + g + 8 h`` (positions[row], clamped to M - 1 for
    rows past M, which are not stored; or row % S); ``args`` = (cos, sin, positions or S)."""
    g = lane // 4
    out = []
    for i in kaiodsl.static_range(T.mi):
        pair = []
        for h in kaiodsl.static_range(2):
            row = r0 + 16 * i + g + 8 * h
            if R.positions:
                pair = pair + [args[2][i64(min(row, M - 1))]]
            else:
                pair = pair + [row % args[2]]
        out = out + [pair]
    return out


@kaiodsl.func
def rotate_group(R: Const, groups, args, pos2, d0: Const[int], lane):
    """One column group of a lane's accumulator row pair rotated in registers: ``groups[0]`` the 4
    values at head columns ``d0 + 2 t + (e & 1)``, rows ``g + 8 (e >> 1)`` (positions ``pos2[e >> 1]``;
    ``d0`` a multiple of 8), and for rotate_half (d0 < D / 2) ``groups[1]``, the partner group D / 2
    columns on (in a wgmma accumulator: the same lane, D / 16 groups later). Returns the groups rotated."""
    t = lane % 4
    D = R.head_dim
    lo = []
    hi = []
    if R.style == "interleaved":                  # pairs (2 i, 2 i + 1): elements (2 h, 2 h + 1), angle d0 / 2 + t
        for h in kaiodsl.static_range(2):
            c, s = _angle(args[0], args[1], pos2[h], d0 // 2 + t, D)
            x = groups[0][2 * h]
            y = groups[0][2 * h + 1]
            lo = lo + [x * c - y * s, y * c + x * s]
        return [(lo[0], lo[1], lo[2], lo[3])]
    for e in kaiodsl.static_range(4):
        c, s = _angle(args[0], args[1], pos2[e >> 1], d0 + 2 * t + (e & 1), D)
        x = groups[0][e]
        y = groups[1][e]
        lo = lo + [x * c - y * s]
        hi = hi + [y * c + x * s]
    return [(lo[0], lo[1], lo[2], lo[3]), (hi[0], hi[1], hi[2], hi[3])]
