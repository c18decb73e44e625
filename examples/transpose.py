"""Matrix transpose through a shared-memory tile padded by one column (no bank conflicts)."""

import kaiodsl
from kaiodsl import Const, Ptr, f32, i32


@kaiodsl.kernel(block_size=("TILE", "ROWS"))
def transpose(src: Ptr[f32], dst: Ptr[f32], rows: i32, cols: i32, TILE: Const[int], ROWS: Const[int]):
    tile = kaiodsl.shared_array(f32, (TILE, TILE + 1))
    tx, ty = kaiodsl.thread_idx.x, kaiodsl.thread_idx.y
    bx, by = kaiodsl.i64(kaiodsl.block_idx.x) * TILE, kaiodsl.i64(kaiodsl.block_idx.y) * TILE  # 64-bit: offsets
    for k in kaiodsl.static_range(0, TILE, ROWS):
        r, c = by + ty + k, bx + tx  # r * cols passes 2**31 on big matrices: the offset is 64-bit
        if r < rows and c < cols:
            tile[ty + k, tx] = src[kaiodsl.i64(r) * cols + c]
    kaiodsl.syncthreads()
    for k in kaiodsl.static_range(0, TILE, ROWS):
        r, c = bx + ty + k, by + tx  # row/col of the transposed matrix
        if r < cols and c < rows:
            dst[kaiodsl.i64(r) * rows + c] = tile[tx, ty + k]


# The Const values `python -m kaiodsl demo` compiles (and shows registers for), by kernel name.
DEMO_CONSTS = {"transpose": {"TILE": 32, "ROWS": 8}}


def run(quick: bool = False) -> str:
    import numpy as np

    rows, cols = (70, 45) if quick else (4099, 2051)
    src = np.random.default_rng(3).standard_normal((rows, cols), np.float32)
    dst = np.full((cols, rows), np.nan, np.float32)
    transpose[((cols + 31) // 32, (rows + 31) // 32), (32, 8)](src, dst, rows, cols, TILE=32, ROWS=8)
    assert np.array_equal(dst, src.T), "transpose does not match numpy"
    return f"{rows}x{cols} (ragged edges): bit-exact"


if __name__ == "__main__":
    print(run())
