"""GEMM tutorial, level 4: a multi-stage cp.async pipeline in front of the same warp mma.

Level 3 serialised memory and math: load a k tile, barrier, compute, barrier. The tensor cores
wait for every load's full latency (hundreds of cycles), and with few blocks per SM nothing else
fills the gap. This level keeps STAGES - 1 k tiles in flight while the warps compute on the
oldest one, so the load latency hides behind STAGES - 1 tiles' worth of mma:

* ``cp.async`` (PTX ISA 9.7.9.25) copies 16 bytes global -> shared without passing through
  registers and without stalling the issuing thread. Copies are closed into *groups*
  (``commit``), one group per stage, and ``wait_group(n)`` blocks until at most n groups are
  still in flight -- groups complete in order, so that means "the oldest stage has landed".
* ``tiles.Ring(STAGES)`` names the slots: a ``(index, phase)`` state that ``advance`` moves on.
  Each iteration waits for tile kt (then a barrier so every warp sees every thread's copies),
  refills the slot that tile kt - 1 used -- the barrier also proves that every warp is done
  reading it -- and runs the mma on tile kt while the refill is in the air. Empty groups are
  still committed near the end, so the wait count stays the same every iteration.
* With 4 stages the shared buffers take 4 x (128 + 128) x 32 x 2 = 64 KB: dynamic shared memory
  (given at launch, ``smem=``), past the 48 KB a static array may have.
* Blocks are numbered along a 1-D grid and ``tiles.gemm.tile_coords`` walks them GROUP_M tile
  rows at a time: blocks resident together share A rows and B columns in the L2 cache.

This is the structure of ``kaiodsl.ops.matmul``'s sm_80 kernel (``tiles.gemm.main_loop``), which
additionally prefetches the next slab's fragments into registers while the current slab's mma
run. What remains for Hopper (level 5): TMA replaces the per-thread copies, wgmma replaces mma.sync
with a warpgroup reading operands straight from shared memory, and warp specialisation separates
the loading warps from the computing ones.
"""

import warnings

import kaiodsl
from kaiodsl import Ptr, f16, f32, i32
from kaiodsl import tiles
from kaiodsl.tiles import copies, epilogue, fragments, mma, pipeline

from gemm_common import TILE_K_LIMIT, check_args, check_level

BM, BN, BK = 128, 128, 32
WARPS_M, WARPS_N = 2, 2
THREADS = 32 * WARPS_M * WARPS_N
STAGES = 4
GROUP_M = 8
A_TILE = tiles.SmemTile(BM, BK, f16, stages=STAGES)                 # STAGES x [128, 32], swizzled
B_TILE = tiles.SmemTile(BN, BK, f16, stages=STAGES).after(A_TILE)
A_COPY = tiles.TileCopy(A_TILE, THREADS, "cols")                    # kind="cp.async" (the default)
B_COPY = tiles.TileCopy(B_TILE, THREADS, "cols")
RING = tiles.Ring(STAGES)
WARP = tiles.WarpMma(BM // WARPS_M, BN // WARPS_N)
SLABS = BK // WARP.atom.k
OUT = tiles.Epilogue((), f32)
SMEM_BYTES = B_TILE.end * 2

warnings.filterwarnings("ignore", category=kaiodsl.IndexOverflowWarning, module=__name__)  # see level 3


@kaiodsl.func
def fill(a_plan, b_plan, K, state, kt):
    """Issue the cp.async copies of k tile ``kt`` into the ring slot of ``state`` (zeros past the edges)."""
    index, phase = state
    copies.issue(A_COPY, a_plan, K, index, kt * BK, K)
    copies.issue(B_COPY, b_plan, K, index, kt * BK, K)


@kaiodsl.kernel(block_size=THREADS)
def gemm_pipelined(a: Ptr[f16], b: Ptr[f16], c: Ptr[f32], M: i32, N: i32, K: i32):
    smem = kaiodsl.dynamic_shared(f16)
    tid = kaiodsl.thread_idx.x
    lane, warp = tid % 32, tid // 32
    row0, col0 = tiles.gemm.tile_coords(M, N, BM, BN, GROUP_M)
    wm = (warp // WARPS_N) * WARP.wm
    wn = (warp % WARPS_N) * WARP.wn
    a_plan = copies.plan(A_COPY, smem, a, K, row0, M, tid)
    b_plan = copies.plan(B_COPY, smem, b, K, col0, N, tid)
    a_ptrs = copies.a_ptrs(smem, A_TILE, wm, lane, WARP.mi)
    b_ptrs = copies.b_ptrs(smem, B_TILE, wn, lane, WARP.nj, True)
    acc = fragments.zeros(WARP.acc_tile)
    KT = (K + BK - 1) // BK
    for s in kaiodsl.static_range(STAGES - 1):             # prologue: tiles 0 .. STAGES - 2 in flight
        if s < KT:
            fill(a_plan, b_plan, K, pipeline.start(RING, s), s)
        pipeline.commit(RING)
    read = pipeline.start(RING)                            # the slot of tile kt
    write = pipeline.start(RING, STAGES - 1)               # the slot of tile kt + STAGES - 1
    for kt in range(KT):
        pipeline.wait(RING, STAGES - 2)                    # tile kt landed; tile kt - 1's slot is free
        write = pipeline.acquire(RING, write)
        if kt + STAGES - 1 < KT:
            fill(a_plan, b_plan, K, write, kt + STAGES - 1)
        pipeline.commit(RING)                              # one group per iteration, empty or not
        write = pipeline.advance(RING, write)
        index, phase = read
        for kk in kaiodsl.static_range(SLABS):             # the math, while STAGES - 1 tiles load
            a_f = copies.load_a(a_ptrs[kk], index * A_TILE.elems)
            b_f = copies.load_b(b_ptrs[kk], index * B_TILE.elems, True)
            acc = mma.mma_tile(WARP, acc, a_f, b_f)
        read = pipeline.advance(RING, pipeline.release(RING, read))
    pipeline.drain(RING)
    epilogue.store_tile(OUT, WARP.acc_tile, acc, c, (), row0 + wm, col0 + wn, lane, M, N)


def gemm(a, b, out=None):
    """a [M, K] f16 @ b [N, K] f16 ^T -> [M, N] f32 (into ``out`` when given); K a multiple of 8."""
    M, N, K, out = check_args("gemm_pipelined", a, b, out, k_multiple=8, k_limit=TILE_K_LIMIT)
    blocks = ((M + BM - 1) // BM) * ((N + BN - 1) // BN)   # tile_coords turns the 1-D index into a tile
    gemm_pipelined[blocks, THREADS](a, b, out, M, N, K, smem=SMEM_BYTES)
    return out


def run(quick: bool = False) -> str:
    return check_level(gemm, quick)


if __name__ == "__main__":
    print(run(quick=True))
