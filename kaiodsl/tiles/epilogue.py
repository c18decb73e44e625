"""Epilogues: a list of per-element functions applied to an accumulator tile, then a store policy.

``Epilogue(ops=(...), out=f16, store=RowMajor())`` is compile-time data; the run-time operands of
the ops (a scale, vectors) are passed beside it as a tuple ``args`` in the same order (None for ops
without one). Each element ``v = f32(acc)`` goes through the ops in order:

* ``Scale()`` (arg: an f32), ``TensorScale()`` (arg: Ptr[f32], its element 0: a per-tensor scale
  that stays in device memory, so nothing reads it back to the host), ``RowScale()`` (arg: Ptr[f32]
  [M]), ``ColScale()`` (Ptr[f32] [N]): multiplications. Consecutive scales fold into one factor, ``v * (col_factor * row_factor)``, whose
  column part is loaded once per column pair and row part once per row (the loads are hoisted).
* ``Bias()`` (Ptr[f32] [N]): ``v + bias[col]``.
* ``Map(fn)``: ``fn(v)`` (fn a @kaiodsl.func: an activation) or ``Map(fn, coords=True)``:
  ``fn(v, row, col)`` (a rotary embedding, a residual, a mask).
* then one rounding to ``out`` at the store.

Store policies (``store``): ``RowMajor()`` writes [M, N] with 2-element vector stores;
``HeadMajor(seq, heads, head_dim)`` writes rows (b, s) x columns (h, d) as [B, heads, seq, head_dim];
``Split(((width, policy), ...))`` sends column ranges to several outputs (``out`` a tuple of pointers,
e.g. Q, K, V). ``store_rows`` writes one value per row (a softmax LSE). Every offset is 64-bit.
``tile_values`` + ``store_values`` are ``store_tile`` in two steps, for a step on the values in
between that needs more than one element (tiles.rope).
"""

from __future__ import annotations

from dataclasses import dataclass

import kaiodsl
from kaiodsl import Const, f32, i64

from ..types import ScalarType
from .copies import store_pair, store_pair_aligned


@dataclass(frozen=True)
class Scale:
    kind = "scale"
    axis = "uniform"


@dataclass(frozen=True)
class TensorScale:
    kind = "scale"
    axis = "tensor"


@dataclass(frozen=True)
class RowScale:
    kind = "scale"
    axis = "row"


@dataclass(frozen=True)
class ColScale:
    kind = "scale"
    axis = "col"


@dataclass(frozen=True)
class Bias:
    kind = "bias"


@dataclass(frozen=True)
class Map:
    fn: object
    coords: bool = False
    kind = "map"


@dataclass(frozen=True)
class RowMajor:
    kind = "row_major"


@dataclass(frozen=True)
class HeadMajor:
    seq: int
    heads: int
    head_dim: int
    kind = "head_major"

    def __post_init__(self):
        if self.head_dim % 2 or min(self.seq, self.heads, self.head_dim) < 1:
            raise ValueError(f"HeadMajor: positive sizes and an even head_dim (pairs are stored together), "
                             f"got {self}")


@dataclass(frozen=True)
class Split:
    parts: tuple          # ((width, policy), ...), widths summing to N
    kind = "split"

    def __post_init__(self):
        if any(w % 2 or w < 1 for w, _ in self.parts):
            raise ValueError(f"Split: widths must be positive and even (pairs are stored together), got "
                             f"{[w for w, _ in self.parts]}")


@dataclass(frozen=True)
class Epilogue:
    ops: tuple = ()
    out: ScalarType = f32
    store: object = RowMajor()

    @property
    def col_factor(self) -> bool:
        """Whether a uniform or per-column scale is present (the factor loaded per column)."""
        return any(op.kind == "scale" and op.axis != "row" for op in self.ops)

    @property
    def tensor_scale(self) -> bool:
        """Whether a TensorScale is present (its pointer is read once per tile: ``load_scalars``)."""
        return any(op.kind == "scale" and op.axis == "tensor" for op in self.ops)

    @property
    def row_factor(self) -> bool:
        return any(op.kind == "scale" and op.axis == "row" for op in self.ops)


# -- per-column and per-row terms (hoisted) ---------------------------------------------------------
@kaiodsl.func
def load_scalars(E: Const, args):
    """``args`` with each TensorScale's pointer replaced by the f32 it points at: loaded once per tile,
    before the per-column terms (which take the loaded value like a Scale's)."""
    if not E.tensor_scale:
        return args
    out = []
    for n in kaiodsl.static_range(len(args)):
        op = E.ops[n]
        if op.kind == "scale" and op.axis == "tensor":
            out = out + [args[n][0]]
        else:
            out = out + [args[n]]
    return out


@kaiodsl.func
def col_terms(E: Const, args, col, N):
    """For column ``col``: (the column scale factor, [bias value by op]); loads guarded by col < N.
    TensorScale arguments must have been loaded (``load_scalars``)."""
    factor = 1.0
    first = True
    vals = []
    for n in kaiodsl.static_range(len(E.ops)):
        op = E.ops[n]
        v = 0.0
        if op.kind == "scale" and op.axis != "row":
            c = args[n]
            if op.axis == "col":
                c = args[n][col] if col < N else 0.0
            factor = c if first else factor * c
            first = False
        elif op.kind == "bias":
            v = args[n][col] if col < N else 0.0
        vals = vals + [v]
    return factor, vals


@kaiodsl.func
def row_factor(E: Const, args, row, M):
    """The product of the per-row scales at ``row`` (1.0 when there is none); loads guarded by row < M."""
    factor = 1.0
    first = True
    for n in kaiodsl.static_range(len(E.ops)):
        op = E.ops[n]
        if op.kind == "scale" and op.axis == "row":
            r = args[n][row] if row < M else 0.0
            factor = r if first else factor * r
            first = False
    return factor


@kaiodsl.func
def apply(E: Const, v, cf, rf, colvals, row, col):
    """The ops on one f32 element (see the module doc)."""
    pending = False
    for n in kaiodsl.static_range(len(E.ops)):
        op = E.ops[n]
        if op.kind == "scale":
            pending = True
        else:
            if pending:
                v = _scale(E, v, cf, rf)
                pending = False
            if op.kind == "bias":
                v = v + colvals[n]
            elif op.coords:
                v = op.fn(v, row, col)
            else:
                v = op.fn(v)
    if pending:
        v = _scale(E, v, cf, rf)
    return v


@kaiodsl.func
def _scale(E: Const, v, cf, rf):
    if not E.col_factor:
        return v * rf
    if not E.row_factor:
        return v * cf
    return v * (cf * rf)


# -- stores ------------------------------------------------------------------------------------------
# A row's part of each 64-bit offset is computed once per row (``_row_base``); a column pair then adds
# its 32-bit column part, and ``c0 + 2t`` is folded into the base, so the pairs of one row differ by
# constants (8 columns apart: immediate offsets in the stores) and no 64-bit multiply is repeated.
@kaiodsl.func
def _base(P: Const, row, c, width):
    """The 64-bit offset of (row, column ``c``) in one output of ``width`` columns, and whether the
    pairs that follow are 2-element aligned (c, and every pair offset added to it, is even)."""
    if P.kind == "row_major":
        base = i64(row) * width + c
    else:
        b = row // P.seq
        base = (i64(b) * P.heads * P.seq + (row - b * P.seq)) * P.head_dim
    return base, base % 2 == 0


@kaiodsl.func
def _row_base(P: Const, row, c, N):
    """Per output (one, or one per Split part): (offset base, aligned) at row ``row``, column ``c``
    (row-major; head-major bases leave the column out, it is split into (h, d) per pair)."""
    if P.kind == "split":
        out = []
        lo = 0
        for p in kaiodsl.static_range(len(P.parts)):
            width, part = P.parts[p]
            out = out + [_base(part, row, c - lo, width)]
            lo = lo + width
        return out
    return [_base(P, row, c, N)]


@kaiodsl.func
def _put(P: Const, out, rb, dc, col, width, v0, v1, OUT: Const):
    """Columns col, col + 1 (local to this output) at base ``rb`` (from _base), ``dc`` = col - base column."""
    base, aligned = rb
    if P.kind == "row_major":
        store_pair_aligned(out, base + dc, v0, v1, col, width, OUT, aligned)
    else:
        h = col // P.head_dim
        d = col - h * P.head_dim
        store_pair(out, base + i64(h) * (P.seq * P.head_dim) + d, v0, v1, d, P.head_dim, OUT)


@kaiodsl.func
def _route(P: Const, out, rbs, dc, col, N, v0, v1, OUT: Const):
    if P.kind == "split":
        lo = 0
        for p in kaiodsl.static_range(len(P.parts)):
            width, part = P.parts[p]
            if col >= lo and col < lo + width:
                _put(part, out[p], rbs[p], dc, col - lo, width, v0, v1, OUT)
            lo = lo + width
    else:
        _put(P, out, rbs[0], dc, col, N, v0, v1, OUT)


@kaiodsl.func
def store_pair_values(E: Const, out, row, col, N, v0, v1):
    """Columns col, col + 1 (col even) of ``row``, already through E's ops, by E's store policy (an
    element-wise kernel's store: split-K's reduction)."""
    _route(E.store, out, _row_base(E.store, row, col, N), 0, col, N, v0, v1, E.out)


@kaiodsl.func
def store_tile(E: Const, T: Const, acc, out, args, r0, c0, lane, M, N):
    """The warp tile ``acc`` (an AccTile T) at (r0, c0) of the [M, N] result, through E; two
    columns per lane (C fragment: rows g, g + 8; columns 2t, 2t + 1), rows >= M and columns >= N skipped.
    Row offsets and row factors are computed once per row, column terms once per column pair."""
    store_blocks(E, T, [acc], out, args, r0, 0, c0, lane, M, N)


@kaiodsl.func
def store_blocks(E: Const, T: Const, accs, out, args, r0, step: Const[int], c0, lane, M, N):
    """store_tile for the warp tiles ``accs[b]`` at rows ``r0 + step * b`` (a warpgroup consumer's m64
    blocks), column by column across the blocks: each column pair's terms (a bias, a scale) are loaded
    once for every block and used at once, so none stays live across another block's stores."""
    g = lane // 4
    t = lane % 4
    args = load_scalars(E, args)
    cl = c0 + 2 * t
    rows = []
    for b in kaiodsl.static_range(len(accs)):
        for i in kaiodsl.static_range(T.mi):
            for h in kaiodsl.static_range(2):
                row = r0 + step * b + i * 16 + g + 8 * h
                rows = rows + [(row, row_factor(E, args, row, M), _row_base(E.store, row, cl, N))]
    for j in kaiodsl.static_range(T.nj):
        col = cl + j * 8
        cf0, cv0 = col_terms(E, args, col, N)
        cf1, cv1 = col_terms(E, args, col + 1, N)
        for b in kaiodsl.static_range(len(accs)):
            for i in kaiodsl.static_range(T.mi):
                for h in kaiodsl.static_range(2):
                    row, rf, rbs = rows[(b * T.mi + i) * 2 + h]
                    if row < M:
                        v0 = apply(E, f32(accs[b][i][j][2 * h]), cf0, rf, cv0, row, col)
                        v1 = apply(E, f32(accs[b][i][j][2 * h + 1]), cf1, rf, cv1, row, col + 1)
                        _route(E.store, out, rbs, j * 8, col, N, v0, v1, E.out)


# -- in two steps: values, then stores (a step on the whole tile in between, e.g. tiles.rope) ---------
@kaiodsl.func
def tile_values(E: Const, T: Const, acc, args, r0, c0, lane, M, N):
    """The warp tile ``acc`` at (r0, c0) through E's ops, as f32 values in the same layout
    (``vals[i][j]``: a 4-tuple); what ``store_values`` then rounds and stores."""
    g = lane // 4
    t = lane % 4
    args = load_scalars(E, args)
    terms = []
    for j in kaiodsl.static_range(T.nj):
        col = c0 + j * 8 + 2 * t
        terms = terms + [(col_terms(E, args, col, N), col_terms(E, args, col + 1, N))]
    vals = []
    for i in kaiodsl.static_range(T.mi):
        rows = [r0 + i * 16 + g + 8 * h for h in kaiodsl.static_range(2)]
        rfs = [row_factor(E, args, min(row, M - 1), M) for row in rows]      # once per row, not per column group
        line = []
        for j in kaiodsl.static_range(T.nj):
            col = c0 + j * 8 + 2 * t
            (cf0, cv0), (cf1, cv1) = terms[j]
            v = []
            for h in kaiodsl.static_range(2):
                row, rf = rows[h], rfs[h]
                v = v + [apply(E, f32(acc[i][j][2 * h]), cf0, rf, cv0, row, col),
                         apply(E, f32(acc[i][j][2 * h + 1]), cf1, rf, cv1, row, col + 1)]
            line = line + [(v[0], v[1], v[2], v[3])]
        vals = vals + [line]
    return vals


@kaiodsl.func
def store_values(E: Const, T: Const, vals, out, r0, c0, lane, M, N):
    """``tile_values``' f32 tile at (r0, c0) rounded to E.out and stored through E.store (rows >= M and
    columns >= N skipped; row offsets once per row, as in store_tile)."""
    g = lane // 4
    t = lane % 4
    cl = c0 + 2 * t
    for i in kaiodsl.static_range(T.mi):
        for h in kaiodsl.static_range(2):
            row = r0 + i * 16 + g + 8 * h
            if row < M:
                rbs = _row_base(E.store, row, cl, N)
                for j in kaiodsl.static_range(T.nj):
                    _route(E.store, out, rbs, j * 8, cl + j * 8, N, vals[i][j][2 * h], vals[i][j][2 * h + 1], E.out)


@kaiodsl.func
def store_rows(T: Const, out, vals, r0, lane, M):
    """One value per row (``vals[i][h]`` as fragments.row_reduce gives) to out[r0 + row]: lane t = 0 of each quad."""
    if lane % 4 == 0:
        for i in kaiodsl.static_range(T.mi):
            for h in kaiodsl.static_range(2):
                row = r0 + i * 16 + lane // 4 + 8 * h
                if row < M:
                    out[i64(row)] = vals[i][h]
