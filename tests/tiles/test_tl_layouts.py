"""kaiodsl.tiles.layouts: the swizzles are bijective, conflict-free for ldmatrix phases at every row
width, equal the TMA/wgmma 32/64/128-byte patterns, and the in-kernel address matches the host one."""

import numpy as np
import pytest

import kaiodsl
from kaiodsl import Const, Ptr, f16, i8, i32, tiles
from kaiodsl.tiles import layouts

ROW_BYTES = list(range(16, 1024 + 1, 16))


@pytest.mark.parametrize("row_bytes", ROW_BYTES)
def test_swizzle_is_a_permutation_of_each_row(row_bytes):
    sw = tiles.Swizzle.for_row(row_bytes)
    chunks = row_bytes // 16
    for r in range(64):
        assert sorted(int(sw.chunk(r, c)) for c in range(chunks)) == list(range(chunks)), (row_bytes, r)


@pytest.mark.parametrize("row_bytes", ROW_BYTES)
def test_ldmatrix_phases_are_bank_conflict_free(row_bytes):
    """An ldmatrix phase reads one chunk column of 8 consecutive rows (PTX ISA 9.7.9.26); the 8
    16-byte addresses must fall in 8 distinct bank groups (byte address / 16 mod 8), for every
    8-aligned first row, and also for the .trans reads of a [K, N] tile (the same phase shape)."""
    sw = tiles.Swizzle.for_row(row_bytes)
    for r0 in range(0, 64, 8):
        rows = np.arange(r0, r0 + 8)
        for c in range(row_bytes // 16):
            groups = (rows * row_bytes + 16 * sw.chunk(rows, c)) // 16 % 8
            assert len(set(groups.tolist())) == 8, (row_bytes, sw, r0, c)


def test_unswizzled_rows_would_conflict():
    """The property the test above checks is not vacuous: without a swizzle 32..128-byte rows conflict."""
    for row_bytes in (32, 64, 128, 256):
        groups = {(r * row_bytes) // 16 % 8 for r in range(8)}
        assert len(groups) < 8


@pytest.mark.parametrize("pattern,width", [(tiles.B32, 32), (tiles.B64, 64), (tiles.B128, 128)])
def test_named_patterns_are_the_tma_swizzles(pattern, width):
    """On rows of exactly ``width`` bytes the pattern is address bits [4, 4+b) ^= bits [7, 7+b)
    (CU_TENSOR_MAP_SWIZZLE_32B/64B/128B; PTX ISA 9.7.15.5.1 for the wgmma descriptors)."""
    assert tiles.Swizzle.for_row(width) == pattern and pattern.width_bytes == width
    b = pattern.bits
    for r in range(32):
        for c in range(width // 16):
            addr = r * width + 16 * c
            want = addr ^ (((addr >> 7) & ((1 << b) - 1)) << 4)
            assert r * width + 16 * pattern.chunk(r, c) == want


def test_bad_rows_are_refused():
    with pytest.raises(ValueError, match="multiple of 16"):
        tiles.Swizzle.for_row(40)
    with pytest.raises(ValueError, match="permutes 8 chunks"):
        tiles.SmemTile(8, 32, f16, swizzle=tiles.B128)       # 64-byte rows: 4 chunks


def _tile_kernel():
    @kaiodsl.kernel(block_size=32)
    def scatter(out: Ptr[i32], T: Const):
        """Writes logical element (r, c) = r * cols + c through chunk_ptr, then dumps shared memory."""
        smem = kaiodsl.shared_array(i32, (T.end,), name="s")
        tid = kaiodsl.thread_idx.x
        for q in range(tid, T.rows * T.chunks, 32):
            r = q // T.chunks
            c = q % T.chunks
            p = layouts.chunk_ptr(smem, T, r, c)
            for e in kaiodsl.static_range(T.chunk_elems):
                kaiodsl.store(p, e, r * T.cols + c * T.chunk_elems + e)
        kaiodsl.syncthreads()
        for q in range(tid, T.end, 32):
            out[q] = smem[q]

    return scatter


SCATTER = _tile_kernel()


@pytest.mark.parametrize("rows,cols", [(8, 8), (16, 16), (8, 24), (12, 32), (4, 64), (16, 12)])
def test_kernel_addresses_match_the_host_layout(backend, rows, cols):
    """i32 elements (4 per chunk): rows of 32 .. 256 bytes, incl. 48-byte (3-chunk) rows."""
    T = tiles.SmemTile(rows, cols, kaiodsl.i32, offset=8)
    out = np.full(T.end, -1, np.int32)
    SCATTER[1, 32](out, T=T)
    want = np.full(T.end, -1, np.int32)
    for r in range(rows):
        for c in range(cols):
            want[T.element_offset(r, c)] = r * cols + c
    np.testing.assert_array_equal(out[8:], want[8:])


def test_tile_geometry():
    a = tiles.SmemTile(128, 32, f16, stages=4)
    b = tiles.SmemTile(32, 128, f16, stages=4).after(a)
    assert (a.row_bytes, a.chunks, a.swizzle, a.end) == (64, 4, tiles.B64, 4 * 128 * 32)
    assert (b.offset, b.swizzle, b.nbytes()) == (a.end, tiles.B128, 4 * 32 * 128 * 2)
    assert tiles.SmemTile(16, 32, i8).swizzle == tiles.B32
