"""Copy plans: global -> shared (cp.async now, TMA later), shared -> registers (ldmatrix), registers -> memory.

A ``TileCopy`` says how a block fills one ``SmemTile`` stage from a row-major global matrix: which
axis the k loop walks (``"cols"``: a K-contiguous operand such as A [M, K] or B [N, K]; ``"rows"``:
B [K, N]), how many threads share it, and with which instruction (``kind``). ``plan`` precomputes
each thread's entries once, before the k loop: a 64-bit global pointer at k = 0, the edge predicate
of the fixed axis, the swizzled shared pointer and the entry's k offset; ``issue`` then costs one
add, one compare and one copy per 16-byte chunk per k tile. Out-of-range chunks are zero-filled
(``cp.async`` with src-size 0, PTX ISA 9.7.9.25.3.1), so the mma reads zeros past every edge.

Rows that do not start on a 16-byte boundary (K or N not a multiple of 8 halves, or a data pointer
that is not 16-byte aligned) take the same plan with a smaller ``granule``: each 16-byte chunk of
the shared tile is still one entry of one thread (same swizzled layout, so ldmatrix and the mma do
not change), but it is filled with ``vec / granule`` copies of ``granule`` bytes, each predicated on
its own k (or n) position. Granules of 4 and 8 bytes stay cp.async (its 4- and 8-byte forms, .ca).
A 2-byte granule (1-byte for int8) cannot (cp.async copies at least 4 bytes from a 4-aligned
address): it is register-staged (``kind="sync"``): the 8 ld.global.u16 of a chunk are issued
first, then its 8 st.shared.u16, in the same ring slot the cp.async copy would fill, so the pipeline is unchanged.
What that costs: 8 load instructions a chunk instead of one (8x the LSU issue slots and L1
wavefronts for that operand), and the loads' latency is no longer overlapped with the mma of the
tiles in flight: each refill stalls its warps for one global round trip before the stores. Expect
the element path several times slower than the aligned one at large shapes; pad K (or N) to a
multiple of 8 where speed matters.

TMA slots in behind the same pair: a ``TileCopy(kind="tma")`` would make ``plan`` return the
tensor-map coordinates and ``issue`` one ``cp.async.bulk.tensor`` per stage completing on the
stage's mbarrier (pipeline.Ring(kind="mbarrier")).
"""

from __future__ import annotations

from dataclasses import dataclass

import kaiodsl
from kaiodsl import Const, i64, u8, u16, u32

from .layouts import SmemTile, chunk_ptr, swizzle_chunk

KINDS = ("cp.async", "sync")


@dataclass(frozen=True)
class TileCopy:
    """How ``threads`` threads copy one stage of ``tile``; ``k_axis``: the axis the k loop advances."""

    tile: SmemTile
    threads: int
    k_axis: str = "cols"
    kind: str = "cp.async"
    wide: bool = False      # 64-bit offsets inside the tile too (rows x ld >= 2^31)
    vec: int = 16           # bytes per copy: 4, 8 or 16 (global rows must be vec-aligned)
    edge: str = "piece"     # "piece": a copy is all or nothing; "element": partial copies zero-fill
                            # the rest (src-size), for extents that are not multiples of vec; "none"
    granule: int = 0        # 0: one copy a piece; 1, 2, 4 or 8: each piece in granule-byte copies, for
                            # rows aligned only to that (kind "sync" below 4; edge "piece"; K, and
                            # N for k_axis "rows", a multiple of the granule's elements)

    def __post_init__(self):
        if self.k_axis not in ("cols", "rows") or self.kind not in KINDS:
            raise ValueError(f"TileCopy: k_axis must be 'cols' or 'rows' and kind one of {KINDS}, "
                             f"got {self.k_axis!r}, {self.kind!r}")
        if self.vec not in (4, 8, 16) or self.edge not in ("piece", "element", "none"):
            raise ValueError(f"TileCopy: vec must be 4, 8 or 16 and edge 'piece', 'element' or 'none', "
                             f"got {self.vec}, {self.edge!r}")
        if self.edge == "element" and self.kind != "cp.async":
            raise ValueError("TileCopy: edge='element' needs cp.async (its src-size zero fill)")
        if self.granule and not (self.granule in (1, 2, 4, 8) and self.tile.elem_bytes <= self.granule < self.vec
                                 and self.edge == "piece" and (self.kind == "sync" or self.granule >= 4)):
            raise ValueError(f"TileCopy: granule must be 1, 2, 4 or 8 bytes (at least one element, less than vec), "
                             f"with edge 'piece', and 4 or 8 for cp.async; got {self.granule}, {self.kind!r}, "
                             f"{self.edge!r}")
        if (self.tile.rows * self.pieces_per_row) % self.threads:
            raise ValueError(f"TileCopy: {self.tile.rows * self.pieces_per_row} {self.vec}-byte copies do not "
                             f"split over {self.threads} threads")

    @property
    def pieces_per_row(self) -> int:
        return self.tile.row_bytes // self.vec

    @property
    def piece_elems(self) -> int:
        return self.vec // self.tile.elem_bytes

    @property
    def granule_elems(self) -> int:
        return self.granule // self.tile.elem_bytes

    @property
    def per_thread(self) -> int:
        return self.tile.rows * self.pieces_per_row // self.threads


@kaiodsl.func
def _row_offset(C: Const, r, ld):
    """r * ld inside the tile: i32 (one register an entry, exact while rows * ld < 2^31) or, with
    C.wide, i64."""
    if C.wide:
        return i64(r) * ld
    return r * ld


@kaiodsl.func
def plan(C: Const, smem, src, ld, start, extent, tid):
    """This thread's entries for the tile whose fixed-axis origin is ``start`` (row0 for k_axis
    "cols", col0 for "rows") of a matrix with ``extent`` rows (cols) and leading dimension ``ld``:
    a list of (global pointer at k = 0, fixed-axis predicate (edge "element", k_axis "rows": the count
    of elements in range), shared pointer in stage 0, k offset of the piece). The tile's
    origin (``start * ld``: block index x ld) is 64-bit; offsets inside it are 64-bit with C.wide."""
    T = C.tile
    if C.k_axis == "cols":
        base = src + i64(start) * ld          # block index x ld passes 2^31 on big operands: 64-bit
    else:
        base = src + start
    entries = []
    PE = C.piece_elems
    for it in kaiodsl.static_range(C.per_thread):
        q = tid + it * C.threads
        r = q // C.pieces_per_row
        p = q % C.pieces_per_row
        if C.vec == 16:
            sp = chunk_ptr(smem, T, r, p)
        else:                                   # a piece of a 16-byte chunk: the swizzle moves whole chunks
            sp = chunk_ptr(smem, T, r, p // (16 // C.vec)) + (p % (16 // C.vec)) * PE
        g = base + (_row_offset(C, r, ld) + p * PE)
        if C.k_axis == "cols":
            fixed = start + r < extent
            kofs = p * PE
        else:
            fixed = start + p * PE < extent
            if C.edge == "element" or C.granule:
                fixed = min(max(extent - (start + p * PE), 0), PE)      # elements in range
            kofs = r
        entries = entries + [(g, fixed, sp, kofs)]
    return entries


@kaiodsl.func
def issue(C: Const, entries, ld, stage, k0, K):
    """Copy the tile at k = k0 into ``stage`` (zeros where k or the fixed axis is out of range).
    cp.async: the caller commits the group (pipeline.commit)."""
    if C.k_axis == "cols":
        step = k0
    else:
        step = i64(k0) * ld                                         # k0 * N passes 2^31 for big [K, N]
    base = stage * C.tile.elems
    PE = C.piece_elems
    if C.granule:
        _issue_granules(C, entries, step, base, k0, K)
        return
    for e in kaiodsl.static_range(len(entries)):
        g, fixed, sp, kofs = entries[e]
        gp = g + step
        s = sp + base
        if C.edge == "none":
            if C.kind == "cp.async":
                kaiodsl.cp_async(s, gp, C.vec)
            else:
                _copy_sync(C, s, gp, True)
        elif C.edge == "element":
            if C.k_axis == "cols":
                n = kaiodsl.where(fixed, min(max(K - (k0 + kofs), 0), PE), 0)
            else:
                n = kaiodsl.where(k0 + kofs < K, fixed, 0)
            kaiodsl.cp_async(s, gp, C.vec, src_size=n * C.tile.elem_bytes)
        else:
            valid = fixed and k0 + kofs < K
            if C.kind == "cp.async":
                kaiodsl.cp_async(s, gp, C.vec, mask=valid)
            else:
                _copy_sync(C, s, gp, valid)


@kaiodsl.func
def _issue_granules(C: Const, entries, step, base, k0, K):
    """``issue`` for a granule smaller than the piece: copy j of a piece covers elements
    j * GE .. of it, valid where its k (k_axis "cols") or its column ("rows": j * GE below the
    entry's count of columns in range) is inside the matrix. Below 4 bytes the copies are
    register-staged a chunk at a time: its loads first, so that they are in flight together, then
    its stores."""
    GE = C.granule_elems
    n = C.vec // C.granule
    for e in kaiodsl.static_range(len(entries)):
        g, fixed, sp, kofs = entries[e]
        gp = g + step
        s = sp + base
        staged = []
        for j in kaiodsl.static_range(n):
            if C.k_axis == "cols":
                valid = fixed and k0 + kofs + j * GE < K
            else:
                valid = j * GE < fixed and k0 + kofs < K
            if C.kind == "cp.async":
                kaiodsl.cp_async(s + j * GE, gp + j * GE, C.granule, mask=valid)
            else:
                staged = staged + [_load_granule(C, gp + j * GE, valid)]
        for j in kaiodsl.static_range(len(staged)):
            _store_granule(C, s + j * GE, staged[j])


@kaiodsl.func
def _load_granule(C: Const, gp, valid):
    """One granule global -> registers (zero when not valid): a u8, a u16, a u32 or two u32s."""
    if C.granule == 1:
        return kaiodsl.load(kaiodsl.ptr_cast(gp, u8), 0, mask=valid, other=0)
    if C.granule == 2:
        return kaiodsl.load(kaiodsl.ptr_cast(gp, u16), 0, mask=valid, other=0)
    return kaiodsl.load(kaiodsl.ptr_cast(gp, u32), 0, vec=C.granule // 4, mask=valid, other=0)


@kaiodsl.func
def _store_granule(C: Const, s, v):
    if C.granule == 1:
        kaiodsl.store(kaiodsl.ptr_cast(s, u8), 0, v)
    elif C.granule == 2:
        kaiodsl.store(kaiodsl.ptr_cast(s, u16), 0, v)
    else:
        kaiodsl.store(kaiodsl.ptr_cast(s, u32), 0, v, vec=C.granule // 4)


@kaiodsl.func
def _copy_sync(C: Const, s, gp, valid):
    """The synchronous copy of one piece: a vector load to registers (zeros when not valid), a store."""
    n = C.vec // 4
    v = kaiodsl.load(kaiodsl.ptr_cast(gp, u32), 0, vec=n, mask=valid, other=0)
    kaiodsl.store(kaiodsl.ptr_cast(s, u32), 0, v, vec=n)


# -- shared -> registers (ldmatrix, PTX ISA 9.7.9.26) --------------------------------------------------
@kaiodsl.func
def a_ptrs(smem, T: Const, m0, lane, MI: Const[int]):
    """For each 32-byte k slab of the K-contiguous tile T, the ldmatrix.x4 addresses of MI A fragments
    (rows m0 + 16 i ..): lanes 0-15 give rows, lanes 16-31 the second 16-byte chunk (A's k 8..15)."""
    out = []
    for kk in kaiodsl.static_range(T.chunks // 2):
        row = []
        for i in kaiodsl.static_range(MI):
            r = m0 + i * 16 + lane % 16
            row = row + [chunk_ptr(smem, T, r, kk * 2 + lane // 16)]
        out = out + [row]
    return out


@kaiodsl.func
def b_ptrs(smem, T: Const, n0, lane, NJ: Const[int], KMAJOR: Const[bool]):
    """For each 32-byte k slab, the ldmatrix.x4 addresses of NJ/2 pairs of n8 B fragments (columns
    n0 + 16 j ..). KMAJOR: T is [N, K] (plain ldmatrix); else T is [K, N] (ldmatrix.trans, 16-bit)."""
    out = []
    slabs = T.chunks // 2 if KMAJOR else T.rows * T.elem_bytes // 32
    for kk in kaiodsl.static_range(slabs):
        row = []
        for j in kaiodsl.static_range(NJ // 2):
            if KMAJOR:
                r = n0 + j * 16 + (lane // 16) * 8 + lane % 8
                row = row + [chunk_ptr(smem, T, r, kk * 2 + (lane // 8) % 2)]
            else:
                r = kk * 16 + ((lane // 8) % 2) * 8 + lane % 8
                row = row + [chunk_ptr(smem, T, r, (n0 + j * 16) // T.chunk_elems + lane // 16)]
        out = out + [row]
    return out


@kaiodsl.func
def load_a(ptrs, base):
    """One k slab's A fragments (ldmatrix.x4 each) from the addresses of ``a_ptrs`` + ``base`` elements."""
    return [kaiodsl.ldmatrix(p + base, 4) for p in ptrs]


@kaiodsl.func
def load_b(ptrs, base, KMAJOR: Const[bool]):
    """One k slab's B fragments: each ldmatrix.x4 gives two n8 fragments (registers 0-1 and 2-3)."""
    frags = []
    for j in kaiodsl.static_range(len(ptrs)):
        f = kaiodsl.ldmatrix(ptrs[j] + base, 4, trans=not KMAJOR)
        frags = frags + [(f[0], f[1]), (f[2], f[3])]
    return frags


# -- registers -> memory ----------------------------------------------------------------------------
@kaiodsl.func
def store_pair(c, idx, v0, v1, col, N, OUT: Const):
    """c[idx], c[idx + 1] = OUT(v0), OUT(v1) for columns col, col + 1 < N; one 2-vector store when
    both exist and idx is even (aligned). ``idx`` may be 64-bit."""
    store_pair_aligned(c, idx, v0, v1, col, N, OUT, idx % 2 == 0)


@kaiodsl.func
def store_pair_aligned(c, idx, v0, v1, col, N, OUT: Const, aligned):
    """store_pair with the alignment of ``idx`` given (a caller that knows it once per row)."""
    if col + 1 < N and aligned:
        kaiodsl.store(c, idx, (OUT(v0), OUT(v1)), vec=2)
    elif col < N:
        c[idx] = OUT(v0)
        if col + 1 < N:
            c[idx + 1] = OUT(v1)


@kaiodsl.func
def stmatrix_tile(smem, T: Const, m0, n0, lane, frags, stage=0):
    """Store four 8x8 16-bit matrices (a 16x16 block at (m0, n0) of stage ``stage`` of T, in A-fragment
    register order: rows 0-7/8-15 x cols 0-7, then cols 8-15) with one stmatrix.x4 (PTX ISA 9.7.9.27,
    sm_90)."""
    r = m0 + lane % 16
    p = chunk_ptr(smem, T, r, n0 // T.chunk_elems + lane // 16)
    kaiodsl.stmatrix(p + stage * T.elems, frags)


__all__ = ["TileCopy", "plan", "issue", "a_ptrs", "b_ptrs", "load_a", "load_b", "store_pair", "store_pair_aligned", "stmatrix_tile",
           "swizzle_chunk"]


# -- ldmatrix addresses as a few lane bases plus immediates ---------------------------------------------
@kaiodsl.func
def lane_chunks(smem, T: Const, lrow, lchunk):
    """Per-lane bases for ldmatrix addresses of tile T at rows ``lrow + R`` and logical chunks
    ``lchunk + C`` (R a multiple of 8, C even, lchunk 0 or 1; stage 0). Every swizzle of
    ``Swizzle.for_row`` XORs chunk bits with row bits that R does not touch (bits + shift = 3), so the
    XOR is a per-lane constant and only ``C & mask`` selects a base: (mask + 1) / 2 registers instead
    of one per fragment; ``chunk_at`` adds the rest as an immediate."""
    z = swizzle_chunk(T, lrow, 0)
    zl = (lchunk ^ z) & 1
    zh = z - (z & 1)
    out = []
    for t in kaiodsl.static_range((T.swizzle.mask + 1) // 2 if T.swizzle.bits else 1):
        out = out + [smem.ptr(T.offset + lrow * T.cols + (((2 * t) ^ zh) + zl) * T.chunk_elems)]
    return out


@kaiodsl.func
def chunk_at(T: Const, bases, R: Const[int], C: Const[int]):
    """The address of logical (lrow + R, lchunk + C) from ``lane_chunks`` bases."""
    m = T.swizzle.mask if T.swizzle.bits else 0
    return bases[(C & m) // 2] + (R * T.cols + (C - (C & m)) * T.chunk_elems)
