"""tiles.copies.lane_chunks / chunk_at: ldmatrix addresses as a few per-lane bases plus immediates give
the same element as the swizzled layout (SmemTile.element_offset) for every row width and for the
lane patterns of an A operand, a K-major B and a [K, N] B (.trans)."""

import numpy as np
import pytest

import kaiodsl
from kaiodsl import Const, Ptr, i32, tiles
from kaiodsl.tiles import copies

PATTERNS = {   # lane -> (row inside the 16-row group, chunk 0/1), as the fragment loaders use them
    "a": lambda l: (l % 16, l // 16),
    "b_kmajor": lambda l: ((l // 16) * 8 + l % 8, (l // 8) % 2),
    "b_trans": lambda l: (((l // 8) % 2) * 8 + l % 8, l // 16),
}


@kaiodsl.kernel(block_size=32)
def probe(out: Ptr[i32], T: Const, PAT: Const[str], R0: Const[int]):
    smem = kaiodsl.shared_array(i32, (T.end,), align=128, name="smem")
    lane = kaiodsl.thread_idx.x
    for e in range(lane, T.end, 32):
        smem[e] = e
    kaiodsl.syncthreads()
    if PAT == "a":
        bases = copies.lane_chunks(smem, T, R0 + lane % 16, lane // 16)
    elif PAT == "b_kmajor":
        bases = copies.lane_chunks(smem, T, R0 + (lane // 16) * 8 + lane % 8, (lane // 8) % 2)
    else:
        bases = copies.lane_chunks(smem, T, R0 + ((lane // 8) % 2) * 8 + lane % 8, lane // 16)
    n = 0
    for r in kaiodsl.static_range(0, T.rows - 16 - R0 + 1, 8):
        for c in kaiodsl.static_range(0, T.chunks - 1, 2):
            out[n * 32 + lane] = kaiodsl.load(copies.chunk_at(T, bases, r, c), 0)
            n += 1


@pytest.mark.parametrize("cols", [8, 12, 16, 24, 32, 64, 128])      # 32 .. 512-byte rows (i32)
@pytest.mark.parametrize("pat", list(PATTERNS))
def test_chunk_at_matches_layout(backend, cols, pat):
    T = tiles.SmemTile(48, cols, kaiodsl.i32)
    R0 = 16
    cases = [(r, c) for r in range(0, T.rows - 16 - R0 + 1, 8) for c in range(0, T.chunks - 1, 2)]
    out = np.full(len(cases) * 32, -1, np.int32)
    probe[1, 32](out, T, pat, R0)
    lanes = np.arange(32)
    want = []
    for r, c in cases:
        lr, lc = PATTERNS[pat](lanes)
        want.append(T.element_offset(R0 + lr + r, (lc + c) * T.chunk_elems))
    np.testing.assert_array_equal(out, np.concatenate(want))
