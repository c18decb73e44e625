"""Rotary position embedding on accumulator values, as an epilogue step (before the store).

``vals`` is an f32 warp tile in the AccTile layout (``vals[i][j][e]``: row 16 i + g + 8 (e >> 1),
column 8 j + 2 t + (e & 1); fragments.py). Columns are (head, d) with ``head_dim`` D; the tables
``cos``/``sin`` are f32 [positions, D / 2] (one angle per rotated pair), row ``pos(row)``.

* ``"interleaved"`` (GPT-J, the original RoFormer): pairs (2 i, 2 i + 1) use angle i. A lane holds
  both (elements e, e + 1 of a fragment), so the rotation is in registers.
* ``"rotate_half"`` (Llama / HF ``rotate_half``): pairs (i, i + D / 2) use angle i. The partner sits
  in another fragment, often another warp: the block's tile goes through shared memory once (f32,
  ``[block rows, block cols]``), so the block's columns must hold whole heads.
"""

from __future__ import annotations

import kaiodsl
from kaiodsl import Const, i64

STYLES = ("rotate_half", "interleaved")


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
