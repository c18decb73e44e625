"""One warp, one tensor-core instruction: D[16,8] (f32) = A[16,16] @ B[16,8] (f16, row-major).

Each lane loads the A and B elements its fragment holds (kaiodsl.frag_coord gives the row and
column of fragment element i in this lane, PTX ISA 9.7.14.5.8), packs pairs into f16x2
registers, runs one mma.sync.m16n8k16 and stores its four accumulator elements.
"""

import kaiodsl
from kaiodsl import Ptr, f16, f32


@kaiodsl.func
def fragment(p, ld, role, r):
    """Register r of this lane's A or B fragment: elements 2r (low half) and 2r + 1 of row-major p."""
    r0, c0 = kaiodsl.frag_coord(role, 2 * r)
    r1, c1 = kaiodsl.frag_coord(role, 2 * r + 1)
    return kaiodsl.pack_half2(p[r0 * ld + c0], p[r1 * ld + c1])


@kaiodsl.kernel(block_size=32)
def mma_m16n8k16(a: Ptr[f16], b: Ptr[f16], d: Ptr[f32]):
    fa = [fragment(a, 16, "a", r) for r in range(4)]
    fb = [fragment(b, 8, "b", r) for r in range(2)]
    acc = kaiodsl.mma(fa, fb, kaiodsl.mma_zeros(f32), shape="m16n8k16")
    for i in kaiodsl.static_range(4):
        row, col = kaiodsl.frag_coord("c", i)
        d[row * 8 + col] = acc[i]


def run(quick: bool = False) -> str:
    """Launch on the current backend and check against numpy; every input element is distinct."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = (rng.permutation(256).reshape(16, 16) - 128).astype(np.float16) / 64
    b = (rng.permutation(128).reshape(16, 8) - 64).astype(np.float16) / 64
    d = np.full((16, 8), np.nan, np.float32)
    mma_m16n8k16[1, 32](a, b, d)
    want = a.astype(np.float64) @ b.astype(np.float64)
    assert np.array_equal(d, want.astype(np.float32)), "mma_m16n8k16 does not match numpy"
    return "16x8x16: exact"


if __name__ == "__main__":
    print(run())
