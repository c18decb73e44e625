"""GEMM tutorial, level 2: block tiles staged through shared memory, a register tile per thread.

Level 1 read every A and B element from global memory once per output element that needs it:
K x (M N) loads of each operand. Here a block of 16 x 16 threads owns a 64 x 64 tile of C and
walks K in steps of BK = 16. Each step, the block copies the [64, 16] slab of A and the [64, 16]
slab of B it needs into shared memory -- every element once, converted to f32 on the way -- waits
at a barrier, and then every thread computes a 4 x 4 register tile from shared memory:

    C[row0 + ty + 16 i, col0 + tx + 16 j] += A[.., k] * B[.., k]     (i, j in 0..3)

Two kinds of reuse make it faster:

* Global traffic drops by the tile size: an element of A brought into shared memory serves all 64
  columns of the block tile (of B: all 64 rows), so the block reads (64 + 64) x K elements for
  64 x 64 outputs, 1/64 of what the naive kernel asked for.
* Shared-memory traffic drops by the register tile: per k, a thread reads 4 A values and 4 B
  values and does 16 FMAs with them (level 1 did one FMA per two loads).

Threads own strided rows and columns (``tx + 16 j``) so that the 16 threads of a half-warp read 16
consecutive shared words (no bank conflicts) and store 16 consecutive columns of C (coalesced).
The slabs are stored k-major ([BK, 64 + 1]: the extra column keeps the transposing stores
conflict-free), and loads past M, N or K read zeros, so ragged shapes need no other care.
The loads are still plain and synchronous: the warps wait for memory, then compute, then wait
again, and the math is still scalar FMA. Level 3 moves the math to the tensor cores.
"""

import warnings

import kaiodsl
from kaiodsl import Ptr, f16, f32, i32, i64

from gemm_common import check_args, check_level

BM = BN = 64          # the block's tile of C
BK = 16               # K per shared-memory slab
TX = TY = 16          # threads: TX x TY
TM = BM // TY         # the register tile per thread: TM x TN = 4 x 4
TN = BN // TX
THREADS = TX * TY

# Tile-local indices stay far below 2**31; the products that can pass it (row * K, row * N) are
# formed in 64 bits, so the i32 overflow check has nothing to find here.
warnings.filterwarnings("ignore", category=kaiodsl.IndexOverflowWarning, module=__name__)


@kaiodsl.func
def fetch(p, row, k, rows, K):
    """p[row, k] of a row-major [rows, K] f16 matrix as f32; 0 outside it (the predicated edge)."""
    return f32(kaiodsl.load(p, i64(row) * K + k, mask=row < rows and k < K, other=0))


@kaiodsl.kernel(block_size=(TX, TY))
def gemm_smem(a: Ptr[f16], b: Ptr[f16], c: Ptr[f32], M: i32, N: i32, K: i32):
    a_s = kaiodsl.shared_array(f32, (BK, BM + 1), name="a_s")    # a_s[k, m]: the A slab, k-major
    b_s = kaiodsl.shared_array(f32, (BK, BN + 1), name="b_s")    # b_s[k, n]: the B slab
    tx, ty = kaiodsl.thread_idx.x, kaiodsl.thread_idx.y
    tid = ty * TX + tx
    row0 = kaiodsl.block_idx.y * BM
    col0 = kaiodsl.block_idx.x * BN
    acc = [[f32(0.0) for j in range(TN)] for i in range(TM)]
    for kt in range((K + BK - 1) // BK):
        k0 = kt * BK
        for it in kaiodsl.static_range(BM * BK // THREADS):      # 4 elements of each slab per thread
            e = tid + it * THREADS
            r, kk = e // BK, e % BK                              # 16 neighbouring threads: one 32-byte row piece
            a_s[kk, r] = fetch(a, row0 + r, k0 + kk, M, K)
            b_s[kk, r] = fetch(b, col0 + r, k0 + kk, N, K)
        kaiodsl.syncthreads()                                    # the slabs are complete
        for kk in kaiodsl.static_range(BK):
            av = [a_s[kk, ty + TY * i] for i in range(TM)]
            bv = [b_s[kk, tx + TX * j] for j in range(TN)]
            acc = [[kaiodsl.fma(av[i], bv[j], acc[i][j]) for j in range(TN)] for i in range(TM)]
        kaiodsl.syncthreads()                                    # everyone is done before the next overwrite
    for i in kaiodsl.static_range(TM):
        for j in kaiodsl.static_range(TN):
            row, col = row0 + ty + TY * i, col0 + tx + TX * j
            if row < M and col < N:
                c[i64(row) * N + col] = acc[i][j]


def gemm(a, b, out=None):
    """a [M, K] f16 @ b [N, K] f16 ^T -> [M, N] f32 (into ``out`` when given)."""
    M, N, K, out = check_args("gemm_smem", a, b, out)
    grid = ((N + BN - 1) // BN, (M + BM - 1) // BM)
    gemm_smem[grid, (TX, TY)](a, b, out, M, N, K)
    return out


def run(quick: bool = False) -> str:
    return check_level(gemm, quick)


if __name__ == "__main__":
    print(run(quick=True))
