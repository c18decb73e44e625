"""Epilogues through shared memory: a warpgroup's accumulator tile staged in small swizzled buffers
and written by TMA (``cp.async.bulk.tensor`` shared -> global, PTX ISA 9.7.9.25.5.2; sm_90).

The direct epilogue (``epilogue.store_tile``) stores 2 elements a lane straight from the registers:
a warp's store covers 8 rows x 32 bytes, and the stores hold the warp until they are issued. Here a
``TmaStore(rows, cols, out, buffers)`` describes how one warpgroup (4 warps stacked along the rows,
each warp an ``AccTile`` of ``rows / 4`` rows) stores a ``rows x cols`` tile instead: in chunks of
``rows x chunk_cols``, ``chunk_cols`` elements being the widest of 128, 64, 32 or 16 bytes that
divides ``cols``. For chunk k:

1. the epilogue ops on every element in registers: ``epilogue.col_terms`` / ``row_factor`` /
   ``apply``, the direct path's own functions, then one rounding to ``out``;
2. the values written to staging buffer ``k % buffers`` laid out as the TMA box: rows of
   ``chunk_cols`` elements with the map's swizzle, which is ``layouts.SmemTile``'s own pattern for
   rows of 128, 64 and 32 bytes. 16-bit outputs take one ``stmatrix.x4`` per 16 x 16 block (the C
   fragment is stmatrix's register layout; a matrix's 8 rows hit 8 different bank groups), 32-bit
   outputs ``st.shared.v2`` (each 16-byte chunk column is hit by 2 rows: two wavefronts, the least
   256 bytes take);
3. ``fence.proxy.async`` by every thread (the async proxy reads what the generic proxy wrote), the
   leader waits until at most ``buffers - 2`` of its stores are still reading shared memory
   (``bulk_wait(read=True)``), then a named barrier over the warpgroup's 128 threads: the chunk is
   complete and the buffer of chunk k + 1 is free;
4. the leader (the warpgroup's first thread: bulk groups are per thread) issues the TMA store and
   commits its bulk group.

``begin`` (once a tile, before the first chunk: the last tile's stores must be done reading) and
``finish`` (before the block exits: every store complete) bracket the chunks. The tensor map clips
each box at the tensor's edges, so ragged M and N need no predicates: rows past M take row M - 1's
row terms (``min(row, M - 1)``, never stored) so that nothing reads past a per-row vector.

The global side is a ``TensorMap(out, box=S.box, swizzle=S.swizzle_bytes)`` over a row-major
output: its rows must start on 16-byte boundaries (``cols``-independent: ``N * out bytes`` a
multiple of 16 and a 16-byte aligned pointer), which the caller checks (``fits``).
"""

from __future__ import annotations

from dataclasses import dataclass

import kaiodsl
from kaiodsl import Const, bf16x2, f16x2, f32

from ..types import ScalarType
from . import epilogue
from .copies import stmatrix_tile
from .fragments import pack
from .layouts import SmemTile, chunk_ptr

OUT_TYPES = ("f16", "bf16", "f32")


@dataclass(frozen=True)
class TmaStore:
    """A warpgroup's ``rows x cols`` tile of ``out`` in chunks through ``buffers`` staging buffers;
    warpgroup i synchronises on named barrier ``barrier + i``."""

    rows: int
    cols: int
    out: ScalarType
    buffers: int = 2
    barrier: int = 1

    def __post_init__(self):
        if self.out.name not in OUT_TYPES:
            raise ValueError(f"TmaStore: out must be one of {', '.join(OUT_TYPES)}, got {self.out}")
        if not (self.rows % 64 == 0 and 64 <= self.rows <= 256):
            raise ValueError(f"TmaStore: rows={self.rows} must be 64, 128, 192 or 256 (4 warps of m16 fragments, "
                             f"one TMA box)")
        if self.cols % 8 or self.cols * self.out.nbytes % 16:
            raise ValueError(f"TmaStore: cols={self.cols} must be a multiple of 8 (n8 fragments) and of 16 bytes")
        if self.buffers < 2 or not 1 <= self.barrier < 16:
            raise ValueError(f"TmaStore: buffers >= 2 and a named barrier id 1..15, got {self.buffers}, "
                             f"{self.barrier}")

    @property
    def chunk_cols(self) -> int:
        """Columns of one store box: the widest of 128, 64, 32, 16 bytes that divides the tile's row."""
        row = self.cols * self.out.nbytes
        return next(w for w in (128, 64, 32, 16) if row % w == 0) // self.out.nbytes

    @property
    def chunks(self) -> int:
        return self.cols // self.chunk_cols

    @property
    def swizzle_bytes(self) -> int:
        """The TensorMap swizzle that matches ``tile``'s layout (0: 16-byte rows, not swizzled)."""
        b = self.chunk_cols * self.out.nbytes
        return b if b >= 32 else 0

    @property
    def box(self) -> tuple:
        return (self.rows, self.chunk_cols)

    @property
    def tile(self) -> SmemTile:
        """One staging buffer as a shared tile (its swizzle is the TMA pattern of ``swizzle_bytes``)."""
        return SmemTile(self.rows, self.chunk_cols, self.out, stages=self.buffers)

    def nbytes(self) -> int:
        """Shared memory of one warpgroup's buffers (each a multiple of 1024 bytes: swizzle-atom aligned)."""
        return self.tile.nbytes()


def fits(out_name: str, N: int, align: int) -> bool:
    """Whether a row-major [M, N] output of ``out_name`` from an ``align``-byte aligned pointer can be
    a TMA store target: a type TmaStore writes, every row on a 16-byte boundary."""
    nbytes = {"f16": 2, "bf16": 2, "f32": 4}.get(out_name)
    return nbytes is not None and N * nbytes % 16 == 0 and align >= 16


@kaiodsl.func
def context(S: Const, smem, index, tid):
    """Warpgroup ``index``'s staging state: (the staging view ``smem`` (dynamic shared memory of type
    S.out, the buffers of warpgroup 0 first), the first row of this warpgroup's buffers, its named
    barrier, whether this thread is the leader, its warp in the warpgroup, its lane)."""
    return (smem, index * (S.buffers * S.rows), kaiodsl.u32(S.barrier + index), tid % 128 == 0, (tid // 32) % 4,
            tid % 32)


@kaiodsl.func
def begin(S: Const, ctx):
    """Before a tile's first chunk: the leader waits until its earlier stores have read their buffers."""
    smem, base, bar, leader, warp, lane = ctx
    if leader:
        kaiodsl.bulk_wait(0, read=True)
    kaiodsl.barrier(bar, 128)


@kaiodsl.func
def finish(S: Const, ctx):
    """Before the block exits: the leader's stores complete (their shared sources stay valid)."""
    smem, base, bar, leader, warp, lane = ctx
    if leader:
        kaiodsl.bulk_wait(0)


@kaiodsl.func
def store_tile(S: Const, E: Const, T: Const, acc, tmap, ctx, args, r0, c0, M, N, first: Const[int]):
    """The warpgroup's tile (this warp's AccTile T ``acc``; warp w holds rows ``w * T.rows ..``) through E
    to the box of ``tmap`` at (r0, c0); ``first``: the number of chunks stored since ``begin`` (each
    of several calls per tile continues the buffer sequence)."""
    smem, base, bar, leader, warp, lane = ctx
    g = lane // 4
    t = lane % 4
    wr = warp * T.rows
    J = S.chunk_cols // 8
    args = epilogue.load_scalars(E, args)
    for k in kaiodsl.static_range(S.chunks):
        brow = base + ((first + k) % S.buffers) * S.rows
        cts = []
        for jj in kaiodsl.static_range(J):
            col = c0 + (k * J + jj) * 8 + 2 * t
            cts = cts + [(col, epilogue.col_terms(E, args, col, N), epilogue.col_terms(E, args, col + 1, N))]
        for i in kaiodsl.static_range(T.mi):
            rterms = []
            for h in kaiodsl.static_range(2):
                rr = min(r0 + wr + i * 16 + g + 8 * h, M - 1)
                rterms = rterms + [(rr, epilogue.row_factor(E, args, rr, M))]
            frag = []
            for jj in kaiodsl.static_range(J):
                col, c0terms, c1terms = cts[jj]
                cf0, cv0 = c0terms
                cf1, cv1 = c1terms
                a = acc[i][k * J + jj]
                vals = []
                for h in kaiodsl.static_range(2):
                    rr, rf = rterms[h]
                    vals = vals + [epilogue.apply(E, f32(a[2 * h]), cf0, rf, cv0, rr, col),
                                   epilogue.apply(E, f32(a[2 * h + 1]), cf1, rf, cv1, rr, col + 1)]
                frag = frag + [vals]
            _stage(S, smem, brow + wr + 16 * i, frag, g, t, lane)
        kaiodsl.fence_proxy_async()
        if leader:
            kaiodsl.bulk_wait(S.buffers - 2, read=True)
        kaiodsl.barrier(bar, 128)
        if leader:
            kaiodsl.tma_store(tmap, (r0, c0 + k * S.chunk_cols), smem.ptr(brow * S.chunk_cols))
            kaiodsl.bulk_commit()


@kaiodsl.func
def _stage(S: Const, smem, row0, frag, g, t, lane):
    """One warp's 16 rows (from ``row0`` of the staging tile) of a chunk: ``frag[jj]`` the four f32
    values (row g: cols 2t, 2t + 1; row g + 8: the same) of n8 block jj."""
    T = S.tile
    if S.out.nbytes == 2:
        H2 = f16x2 if S.out.name == "f16" else bf16x2
        for p in kaiodsl.static_range(len(frag) // 2):
            x, y = frag[2 * p], frag[2 * p + 1]
            stmatrix_tile(smem, T, row0, 16 * p, lane, (pack(x[0], x[1], H2), pack(x[2], x[3], H2),
                                                        pack(y[0], y[1], H2), pack(y[2], y[3], H2)))
        if len(frag) % 2:                       # an 8-column chunk: rows 0-7 and 8-15 of one n8 block
            x = frag[len(frag) - 1]
            kaiodsl.stmatrix(chunk_ptr(smem, T, row0 + lane % 16, len(frag) - 1),
                             (pack(x[0], x[1], H2), pack(x[2], x[3], H2)))
    else:
        for jj in kaiodsl.static_range(len(frag)):
            c = jj * 8 + 2 * t
            for h in kaiodsl.static_range(2):
                p = chunk_ptr(smem, T, row0 + g + 8 * h, c // T.chunk_elems) + c % T.chunk_elems
                kaiodsl.store(p, 0, (frag[jj][2 * h], frag[jj][2 * h + 1]), vec=2)
