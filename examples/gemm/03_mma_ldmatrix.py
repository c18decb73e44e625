"""GEMM tutorial, level 3: tensor cores -- warp-level mma.sync m16n8k16 fed by ldmatrix.

Level 2 did its math one FMA per thread per instruction. An ``mma.sync.m16n8k16`` is one warp-wide
instruction that multiplies a 16 x 16 f16 tile of A by a 16 x 8 tile of B into a 16 x 8 f32
accumulator -- 4096 flops -- on the tensor cores, which have many times the throughput of the FMA
units. Each lane holds a fixed piece of every operand (PTX ISA 9.7.14.5.8, "Matrix fragments"),
so the kernel is now organised around warps and fragments rather than threads and elements:

* The block (4 warps, 2 x 2) owns a 128 x 128 tile of C; each warp a 64 x 64 warp tile, a 4 x 8
  grid of m16n8 accumulators (``tiles.WarpMma``, ``fragments.AccTile``). Per 16-wide k step a warp
  loads 4 A and 8 B fragments and runs 32 mma: each A fragment is reused 8 times and each B
  fragment 4 times from registers. Bigger tiles than level 2 mean more reuse per byte brought in.
* Fragments come out of shared memory with ``ldmatrix.x4`` (9.7.9.26): each lane gives the address
  of one 16-byte row piece and the instruction deals four 8 x 8 matrices out to the warp in
  exactly the fragment layout mma wants. A and B are both K-contiguous, so no transpose is needed.
* ldmatrix reads eight 16-byte rows at once; stored plainly, rows 64 bytes apart would share banks
  and serialise. ``tiles.SmemTile`` swizzles the 16-byte chunks of each row (chunk XOR row bits,
  see kaiodsl/tiles/layouts.py) so the eight always land in different banks.
* The copy global -> shared is a ``tiles.TileCopy`` plan: 16-byte vector loads (``kind="sync"``)
  into the swizzled slots; pieces past M, N or K are zero-filled, so the mma reads zeros at the
  ragged edges and the f32 store (``tiles.epilogue.store_tile``) skips rows >= M and columns >= N.

What is left on the table: with one shared buffer the block loads a k tile, waits at a barrier,
computes, waits again: memory latency and the tensor cores never overlap. Level 4 pipelines it.
"""

import warnings

import kaiodsl
from kaiodsl import Ptr, f16, f32, i32
from kaiodsl import tiles
from kaiodsl.tiles import copies, epilogue, fragments, mma

from gemm_common import TILE_K_LIMIT, check_args, check_level

BM, BN, BK = 128, 128, 32                                  # the block tile; BK f16 = 64-byte shared rows
WARPS_M, WARPS_N = 2, 2
THREADS = 32 * WARPS_M * WARPS_N
A_TILE = tiles.SmemTile(BM, BK, f16)                       # [128, 32], swizzled for ldmatrix
B_TILE = tiles.SmemTile(BN, BK, f16).after(A_TILE)         # [128, 32] of B [N, K], right after A
A_COPY = tiles.TileCopy(A_TILE, THREADS, "cols", kind="sync")   # the k loop walks A's columns
B_COPY = tiles.TileCopy(B_TILE, THREADS, "cols", kind="sync")   # ... and B's (K-major)
WARP = tiles.WarpMma(BM // WARPS_M, BN // WARPS_N)         # 64 x 64 per warp of m16n8k16 atoms
SLABS = BK // WARP.atom.k                                  # k16 steps per k tile
OUT = tiles.Epilogue((), f32)                              # store f32, nothing else

# The tile library forms the offsets that can pass 2**31 (a tile origin times K) in 64 bits;
# k offsets stay below K + BK.
warnings.filterwarnings("ignore", category=kaiodsl.IndexOverflowWarning, module=__name__)


@kaiodsl.kernel(block_size=THREADS)
def gemm_mma(a: Ptr[f16], b: Ptr[f16], c: Ptr[f32], M: i32, N: i32, K: i32):
    smem = kaiodsl.shared_array(f16, (B_TILE.end,), align=128, name="smem")
    tid = kaiodsl.thread_idx.x
    lane, warp = tid % 32, tid // 32
    row0 = kaiodsl.block_idx.y * BM
    col0 = kaiodsl.block_idx.x * BN
    wm = (warp // WARPS_N) * WARP.wm                       # this warp's tile inside the block tile
    wn = (warp % WARPS_N) * WARP.wn
    # Once, before the loop: each thread's global pointers, edge predicates and swizzled shared
    # slots for its copies, and each lane's ldmatrix addresses for every k16 slab.
    a_plan = copies.plan(A_COPY, smem, a, K, row0, M, tid)
    b_plan = copies.plan(B_COPY, smem, b, K, col0, N, tid)
    a_ptrs = copies.a_ptrs(smem, A_TILE, wm, lane, WARP.mi)
    b_ptrs = copies.b_ptrs(smem, B_TILE, wn, lane, WARP.nj, True)
    acc = fragments.zeros(WARP.acc_tile)
    for kt in range((K + BK - 1) // BK):
        copies.issue(A_COPY, a_plan, K, 0, kt * BK, K)     # global -> registers -> shared, stage 0
        copies.issue(B_COPY, b_plan, K, 0, kt * BK, K)
        kaiodsl.syncthreads()                              # the tile is in shared memory
        for kk in kaiodsl.static_range(SLABS):
            a_f = copies.load_a(a_ptrs[kk], 0)             # WARP.mi ldmatrix.x4
            b_f = copies.load_b(b_ptrs[kk], 0, True)       # WARP.nj / 2 ldmatrix.x4
            acc = mma.mma_tile(WARP, acc, a_f, b_f)        # WARP.mi x WARP.nj mma.sync
        kaiodsl.syncthreads()                              # every warp read it before the overwrite
    epilogue.store_tile(OUT, WARP.acc_tile, acc, c, (), row0 + wm, col0 + wn, lane, M, N)


def gemm(a, b, out=None):
    """a [M, K] f16 @ b [N, K] f16 ^T -> [M, N] f32 (into ``out`` when given); K a multiple of 8."""
    M, N, K, out = check_args("gemm_mma", a, b, out, k_multiple=8, k_limit=TILE_K_LIMIT)
    grid = ((N + BN - 1) // BN, (M + BM - 1) // BM)
    gemm_mma[grid, THREADS](a, b, out, M, N, K)
    return out


def run(quick: bool = False) -> str:
    return check_level(gemm, quick)


if __name__ == "__main__":
    print(run(quick=True))
