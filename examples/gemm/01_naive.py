"""GEMM tutorial, level 1: one thread per output element.

C[M, N] = A[M, K] @ B[N, K]^T, f16 in, f32 accumulate and out (every level has this contract; B is
K-major like an nn.Linear weight, see gemm_common.py).

The most direct kernel there is: a 16 x 16 block of threads covers a 16 x 16 patch of C, and
thread (x, y) walks the whole K axis for its one element, reading row ``row`` of A and row ``col``
of B straight from global memory. It is correct for any shape -- threads outside C just return --
and it is the baseline every later level is measured against.

Why it is slow: each multiply-add needs two fresh 2-byte loads, so the kernel asks memory for
2 bytes per flop, and a GPU delivers roughly one byte for every hundred-odd flops it can do.
The caches catch some of the repetition (the 16 threads of a row of the block read the same A
element; the rows of B are reused by every block row), but nothing in the kernel *arranges* for
reuse, and the B reads of neighbouring threads are K elements apart, so a warp's load touches 16
different cache lines. The tensor cores sit idle: this is scalar FMA only. Level 2 makes reuse
explicit by staging tiles in shared memory.
"""

import warnings

import kaiodsl
from kaiodsl import Ptr, f16, f32, i32, i64

from gemm_common import check_args, check_level

TILE = 16  # the block is TILE x TILE threads, one output element each

# row and col stay below M and N (i32 arguments); every product that can pass 2**31 (row * K,
# row * N) is formed in 64 bits below, so the i32 overflow check has nothing to find here.
warnings.filterwarnings("ignore", category=kaiodsl.IndexOverflowWarning, module=__name__)


@kaiodsl.kernel(block_size=(TILE, TILE))
def gemm_naive(a: Ptr[f16], b: Ptr[f16], c: Ptr[f32], M: i32, N: i32, K: i32):
    col = kaiodsl.block_idx.x * TILE + kaiodsl.thread_idx.x   # x: neighbouring threads, neighbouring columns
    row = kaiodsl.block_idx.y * TILE + kaiodsl.thread_idx.y
    if row < M and col < N:                                   # the predicated edge: ragged M and N
        a_row = a + i64(row) * K                              # row * K can pass 2**31: 64-bit offsets
        b_row = b + i64(col) * K
        acc = f32(0.0)
        for k in range(K):
            acc = kaiodsl.fma(f32(a_row[k]), f32(b_row[k]), acc)
        c[i64(row) * N + col] = acc


def gemm(a, b, out=None):
    """a [M, K] f16 @ b [N, K] f16 ^T -> [M, N] f32 (into ``out`` when given)."""
    M, N, K, out = check_args("gemm_naive", a, b, out)
    grid = ((N + TILE - 1) // TILE, (M + TILE - 1) // TILE)
    gemm_naive[grid, (TILE, TILE)](a, b, out, M, N, K)
    return out


def run(quick: bool = False) -> str:
    return check_level(gemm, quick)


if __name__ == "__main__":
    print(run(quick=True))
