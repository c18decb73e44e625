"""Tile library for tensor-core kernels, written in kaiodsl: swizzled shared tiles, cp.async loaders,
ldmatrix fragment loaders, a warp-level MMA and bounds-checked epilogues.

A *shared tile* is a 2-D ``kaiodsl.shared_array`` (or a row view of a 3-D one: ``smem[stage]``) whose
16-byte chunks are XOR-swizzled: chunk ``c`` of row ``r`` is stored at ``c ^ ((r >> shift) & mask)``,
so that the 8 row addresses of every ldmatrix 8x8 matrix fall in 8 different bank groups (the
CUTLASS ``Swizzle<B, 4, 3>`` family). Rows must be 16-byte multiples; tiles are used whole-warp.

Fragments follow kaiodsl.mma: A as a 4-register tuple per 16 x k tile, B as a 2-register tuple per
k x 8 tile, accumulators as nested lists ``acc[i][j]`` of 16 x 8 fragments.
"""

from __future__ import annotations

import kaiodsl
from kaiodsl import Const

from ..frontend.values import builtin


@builtin
def _count(b, items):
    """len() of a compile-time list whose items are run-time values (plain len() rejects those)."""
    if not isinstance(items, (list, tuple)):
        b.error(f"expected a list of fragments, got {items!r}"[:120])
    return len(items)


# -- swizzles (compile-time helpers and their in-kernel form) ----------------------------------------
def swizzle_params(row_bytes: int) -> tuple:
    """(shift, mask) of the XOR swizzle for rows of ``row_bytes``: a 128-byte bank line holds
    128 // row_bytes rows, so rows advance the XOR pattern every ``8 // chunks`` rows."""
    if row_bytes % 16:
        raise ValueError(f"swizzled tiles need rows of a multiple of 16 bytes, got {row_bytes}")
    chunks = row_bytes // 16
    if chunks == 1:
        return 0, 0
    span = min(chunks, 8)
    if span & (span - 1):
        raise ValueError(f"swizzled tiles need a power-of-two number of 16-byte chunks per row, got {chunks}")
    return (8 // span).bit_length() - 1, span - 1


def swizzle(row: int, chunk: int, row_bytes: int) -> int:
    """Host-side: the physical 16-byte chunk of logical chunk ``chunk`` in row ``row``."""
    shift, mask = swizzle_params(row_bytes)
    return chunk ^ ((row >> shift) & mask)


@kaiodsl.func
def swizzled_col(row, col, ROW_BYTES: Const[int], ELEM_BYTES: Const[int]):
    """The physical column (in elements) of logical ``col`` in ``row``; the offset inside a chunk is kept."""
    shift, mask = swizzle_params(ROW_BYTES)
    per_chunk = 16 // ELEM_BYTES
    if mask == 0:
        return col
    return col ^ (((row >> shift) & mask) * per_chunk)


@kaiodsl.func
def tile_ptr(s, row, col):
    """Shared pointer to logical element (row, col) of the swizzled tile ``s``."""
    nbytes = s.dtype.nbytes
    return s.ptr(row, swizzled_col(row, col, s.shape[1] * nbytes, nbytes))


# -- global -> shared with cp.async ---------------------------------------------------------------------
@kaiodsl.func
def copy_tile_async(s, src, ld, row0, col0, rows_left, cols_left, tid, NTHREADS: Const[int],
                    EDGE: Const[bool] = True, VEC: Const[int] = 16):
    """Start copying the tile at (row0, col0) of the row-major global matrix ``src`` (leading dimension
    ``ld`` elements) into the shared tile ``s`` with cp.async of VEC bytes per copy, by NTHREADS threads
    (``tid`` = 0..NTHREADS-1). With EDGE, elements at or beyond ``rows_left`` rows / ``cols_left``
    columns of the tile read nothing and become zero (src-size zero-fill). The global rows must be
    VEC-byte aligned (ld and col0 multiples of VEC // element size). Commit and wait are the caller's.
    """
    nbytes = s.dtype.nbytes
    rows = s.shape[0]
    per_copy = VEC // nbytes
    per_row = s.shape[1] // per_copy
    total = rows * per_row
    assert total % NTHREADS == 0, "the tile must split evenly over the threads: rows*cols/VEC % NTHREADS"
    for i in kaiodsl.static_range(total // NTHREADS):
        idx = tid + i * NTHREADS
        r = idx // per_row
        c = (idx % per_row) * per_copy
        dst = tile_ptr(s, r, c)
        if EDGE:
            n = kaiodsl.where(r < rows_left, min(max(cols_left - c, 0), per_copy), 0)
            off = kaiodsl.where(n > 0, (row0 + r) * ld + col0 + c, 0)  # keep a valid address when n == 0
            kaiodsl.cp_async(dst, src + off, VEC, src_size=n * nbytes)
        else:
            kaiodsl.cp_async(dst, src + ((row0 + r) * ld + col0 + c), VEC)


# -- shared -> fragments with ldmatrix -------------------------------------------------------------------
@kaiodsl.func
def load_a(s, row0, k0):
    """The A fragment of the 16 x KSTEP tile at (row0, k0) of a row-major [M, K] shared tile, where
    KSTEP is 32 bytes of elements (f16/bf16: k16, tf32: k8, 8-bit: k32). One ldmatrix.x4."""
    lane = kaiodsl.lane_id()
    chunk = 16 // s.dtype.nbytes
    return kaiodsl.ldmatrix(tile_ptr(s, row0 + (lane & 15), k0 + (lane >> 4) * chunk), 4)


@kaiodsl.func
def load_a_trans(s, k0, row0):
    """The A fragment (16 x k16) at (row0, k0) of a 16-bit tile stored transposed, as [K, M]."""
    lane = kaiodsl.lane_id()
    return kaiodsl.ldmatrix(tile_ptr(s, k0 + (lane & 7) + (lane >> 4) * 8, row0 + ((lane >> 3) & 1) * 8),
                            4, trans=True)


@kaiodsl.func
def load_b(s, k0, n0):
    """Two B fragments (k16 x n8 each: columns n0..n0+7 and n0+8..n0+15) of a 16-bit row-major
    [K, N] shared tile, through one ldmatrix.x4.trans."""
    lane = kaiodsl.lane_id()
    r = kaiodsl.ldmatrix(tile_ptr(s, k0 + (lane & 15), n0 + (lane >> 4) * 8), 4, trans=True)
    return [(r[0], r[1]), (r[2], r[3])]


@kaiodsl.func
def load_bt(s, n0, k0):
    """Two B fragments (KSTEP x n8 each, columns n0.. and n0+8..) of a shared tile stored as [N, K]
    (B transposed, any mma element type), through one ldmatrix.x4."""
    lane = kaiodsl.lane_id()
    chunk = 16 // s.dtype.nbytes
    r = kaiodsl.ldmatrix(tile_ptr(s, n0 + (lane & 7) + (lane >> 4) * 8, k0 + ((lane >> 3) & 1) * chunk), 4)
    return [(r[0], r[1]), (r[2], r[3])]


# -- the warp's MMA ------------------------------------------------------------------------------------
@kaiodsl.func
def zeros(MI: Const[int], NJ: Const[int], ACC=kaiodsl.f32):
    """An MI x NJ grid of zero 16 x 8 accumulators."""
    return [[kaiodsl.mma_zeros(ACC) for j in range(NJ)] for i in range(MI)]


@kaiodsl.func
def warp_mma(acc, a, b, DTYPE=None):
    """acc[i][j] += a[i] @ b[j] for every A fragment a[i] (16 rows) and B fragment b[j] (8 columns)."""
    return [[kaiodsl.mma(a[i], b[j], acc[i][j], dtype=DTYPE) for j in range(_count(b))] for i in range(_count(a))]


@kaiodsl.func
def mma_k_step(acc, sa, sb, m0, n0, k0, B_KN: Const[bool] = True):
    """One KSTEP of a warp tile: load A for len(acc) row tiles at m0 (16 rows each) and B for
    len(acc[0]) column tiles at n0 (8 columns each, an even count), then mma them all.
    sb is [K, N] when B_KN (16-bit types, ldmatrix.trans), else [N, K]."""
    MI = _count(acc)
    NJ = _count(acc[0])
    assert NJ % 2 == 0, "mma_k_step loads B fragments in pairs: use an even number of 8-column tiles"
    a = [load_a(sa, m0 + 16 * i, k0) for i in range(MI)]
    if B_KN:
        pairs = [load_b(sb, k0, n0 + 16 * j) for j in range(NJ // 2)]
    else:
        pairs = [load_bt(sb, n0 + 16 * j, k0) for j in range(NJ // 2)]
    return warp_mma(acc, a, [pairs[j // 2][j % 2] for j in range(NJ)])


# -- accumulators -> global --------------------------------------------------------------------------------
@kaiodsl.func
def store_acc(c, ldc, row0, col0, frag, rows_left, cols_left, PAIRS: Const[bool] = False):
    """Store one 16 x 8 accumulator fragment at (row0, col0) of the row-major matrix ``c`` (leading
    dimension ``ldc``), converted to c's element type, skipping elements at or beyond rows_left /
    cols_left (relative to row0 / col0). PAIRS: the caller promises ldc and col0 are even, so each
    lane's two neighbouring elements go out as one vector store."""
    lane = kaiodsl.lane_id()
    g = lane >> 2
    cc = (lane & 3) * 2
    T = c.dtype.elem
    vals = kaiodsl.frag_elements(frag)
    for h in kaiodsl.static_range(2):
        r = g + 8 * h
        ok = r < rows_left
        off = (row0 + r) * ldc + col0 + cc
        v0 = kaiodsl.cast(vals[2 * h], T)
        v1 = kaiodsl.cast(vals[2 * h + 1], T)
        if PAIRS:
            both = ok and cc + 1 < cols_left
            kaiodsl.store(c, off, (v0, v1), vec=2, mask=both)
            kaiodsl.store(c, off, v0, mask=ok and cc < cols_left and not both)
        else:
            kaiodsl.store(c, off, v0, mask=ok and cc < cols_left)
            kaiodsl.store(c, off + 1, v1, mask=ok and cc + 1 < cols_left)


@kaiodsl.func
def store_acc_tile(c, ldc, row0, col0, acc, rows_left, cols_left, PAIRS: Const[bool] = False):
    """store_acc for every fragment of acc[i][j], at row0 + 16 i, col0 + 8 j."""
    for i in kaiodsl.static_range(_count(acc)):
        for j in kaiodsl.static_range(_count(acc[0])):
            store_acc(c, ldc, row0 + 16 * i, col0 + 8 * j, acc[i][j], rows_left - 16 * i, cols_left - 8 * j,
                      PAIRS)
