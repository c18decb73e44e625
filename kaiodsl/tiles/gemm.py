"""A block's GEMM main loop, composed of the levels: copy plans -> stage ring -> ldmatrix -> warp mma.

``BlockGemm`` is the whole configuration (block tile, warps, stages, the mma atom, B's layout),
passed as one compile-time value. ``main_loop(G, smem, a, b, M, N, K, row0, col0)`` returns the
warp's accumulator tile (``G.warp.acc_tile`` describes it) for the block tile at (row0, col0) of
A [M, K] @ B, B [N, K] (``b_kmajor``) or [K, N]. Tiles are counted in bytes: a k slab is 32 bytes
of K (``MmaAtom.k_bytes``), one mma step and one ldmatrix.x4 per 16-row operand tile.

``stages == 1`` is the plain kernel (16-byte loads to registers, stores to shared, two barriers a
k tile); ``stages >= 2`` is the cp.async multistage loop (CUTLASS's, in outline): ``stages - 1``
tiles in flight; the next k slab's fragments are read while the current slab's mma run, and the
wait + barrier for the next tile sit at the last slab of the current one. ``a_granule`` /
``b_granule`` select copies.py's element path for operands whose rows are not 16-byte aligned (same
shared layout, same ring; only the global -> shared copies change).
"""

from __future__ import annotations

from dataclasses import dataclass

import kaiodsl
from kaiodsl import Const

from . import copies, pipeline
from .copies import TileCopy
from .fragments import zeros
from .layouts import SmemTile
from .mma import MmaAtom, WarpMma, mma_tile
from ..types import ScalarType


@dataclass(frozen=True)
class BlockGemm:
    """A [bm, bn] block tile bk deep, warps_m x warps_n warps, ``stages`` shared buffers."""

    bm: int
    bn: int
    bk: int
    warps_m: int
    warps_n: int
    stages: int
    dtype: ScalarType
    atom: MmaAtom
    b_kmajor: bool = True
    group_m: int = 8
    wide: bool = False      # 64-bit offsets inside tiles too: for leading dimensions >= 2^31 / tile rows
    a_granule: int = 0      # 0: A's rows are 16-byte aligned; else the bytes they are aligned to (copies.py)
    b_granule: int = 0      # the same for B

    @property
    def threads(self) -> int:
        return 32 * self.warps_m * self.warps_n

    @property
    def warp(self) -> WarpMma:
        return WarpMma(self.bm // self.warps_m, self.bn // self.warps_n, self.atom)

    @property
    def ring(self) -> pipeline.Ring:
        return pipeline.Ring(self.stages)

    @property
    def a_tile(self) -> SmemTile:
        return SmemTile(self.bm, self.bk, self.dtype, self.stages)

    @property
    def b_tile(self) -> SmemTile:
        shape = (self.bn, self.bk) if self.b_kmajor else (self.bk, self.bn)
        return SmemTile(*shape, self.dtype, self.stages).after(self.a_tile)

    @property
    def kind(self) -> str:
        return "sync" if self.stages == 1 else "cp.async"

    def copy_kind(self, granule: int) -> str:
        """cp.async in the ring, except for 1- and 2-byte granules (register-staged: copies.py says why)."""
        return "sync" if self.stages == 1 or granule < 4 else "cp.async"

    @property
    def a_copy(self) -> TileCopy:
        if self.a_granule:
            return TileCopy(self.a_tile, self.threads, "cols", self.copy_kind(self.a_granule), self.wide,
                            granule=self.a_granule)
        return TileCopy(self.a_tile, self.threads, "cols", self.kind, self.wide)

    @property
    def b_copy(self) -> TileCopy:
        axis = "cols" if self.b_kmajor else "rows"
        if self.b_granule:
            return TileCopy(self.b_tile, self.threads, axis, self.copy_kind(self.b_granule), self.wide,
                            granule=self.b_granule)
        return TileCopy(self.b_tile, self.threads, axis, self.kind, self.wide)

    @property
    def slabs(self) -> int:
        return self.bk * self.dtype.nbytes // self.atom.k_bytes

    def smem_bytes(self) -> int:
        return self.b_tile.end * self.dtype.nbytes


@kaiodsl.func
def tile_coords(M, N, BM: Const[int], BN: Const[int], GROUP_M: Const[int]):
    """(row0, col0) of this block's output tile; blocks walk GROUP_M tile-rows at a time for L2 reuse."""
    return tile_coords_of(kaiodsl.block_idx.x, M, N, BM, BN, GROUP_M)


@kaiodsl.func
def tile_coords_of(pid, M, N, BM: Const[int], BN: Const[int], GROUP_M: Const[int]):
    """(row0, col0) of output tile ``pid`` in the grouped order (a persistent kernel's tile loop):
    consecutive pids sweep GROUP_M tile-rows column by column, so the blocks running at one time
    share their A rows and B columns in L2."""
    num_m = (M + BM - 1) // BM
    num_n = (N + BN - 1) // BN
    width = GROUP_M * num_n
    first_m = (pid // width) * GROUP_M
    size_m = min(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % width) % size_m
    pid_n = (pid % width) // size_m
    return pid_m * BM, pid_n * BN


@kaiodsl.func
def split_unit(u, tiles, ktiles, SPLIT: Const[int]):
    """Work unit ``u`` of a split-K walk over ``tiles`` output tiles: (tile, split, first k tile, end
    k tile). Units are split-major (``u = split * tiles + tile``: the units in flight together read
    one k range of A); split s covers k tiles ``[s * per, min((s + 1) * per, ktiles))``, ``per =
    ceil(ktiles / SPLIT)``. SPLIT = 1: (u, 0, 0, ktiles)."""
    if SPLIT == 1:
        return u, 0, 0, ktiles
    s = u // tiles
    per = (ktiles + SPLIT - 1) // SPLIT
    lo = s * per
    return u - s * tiles, s, lo, min(lo + per, ktiles)


@kaiodsl.func
def warp_origin(G: Const, tid):
    """(row, col) of this thread's warp tile inside the block tile."""
    warp = tid // 32
    return (warp // G.warps_n) * G.warp.wm, (warp % G.warps_n) * G.warp.wn


@kaiodsl.func
def _load(G: Const, aps, bps, state):
    index, phase = state
    return (copies.load_a(aps, index * G.a_tile.elems),
            copies.load_b(bps, index * G.b_tile.elems, G.b_kmajor))


@kaiodsl.func
def _fill(G: Const, a_plan, b_plan, a_ld, b_ld, state, k0, K):
    index, phase = state
    copies.issue(G.a_copy, a_plan, a_ld, index, k0, K)
    copies.issue(G.b_copy, b_plan, b_ld, index, k0, K)


@kaiodsl.func
def main_loop(G: Const, smem, a, b, M, N, K, row0, col0):
    """The k loop of the block tile at (row0, col0): the warp's accumulator tile."""
    tid = kaiodsl.thread_idx.x
    lane = tid % 32
    W = G.warp
    R = G.ring
    wm0, wn0 = warp_origin(G, tid)
    a_plan = copies.plan(G.a_copy, smem, a, K, row0, M, tid)
    b_ld = K if G.b_kmajor else N
    b_plan = copies.plan(G.b_copy, smem, b, b_ld, col0, N, tid)
    a_ptrs = copies.a_ptrs(smem, G.a_tile, wm0, lane, W.mi)
    b_ptrs = copies.b_ptrs(smem, G.b_tile, wn0, lane, W.nj, G.b_kmajor)
    acc = zeros(W.acc_tile)
    KT = (K + G.bk - 1) // G.bk
    if G.stages == 1:
        for kt in range(KT):
            kaiodsl.syncthreads()
            _fill(G, a_plan, b_plan, K, b_ld, (0, 0), kt * G.bk, K)
            kaiodsl.syncthreads()
            for kk in kaiodsl.static_range(G.slabs):
                a_f, b_f = _load(G, a_ptrs[kk], b_ptrs[kk], (0, 0))
                acc = mma_tile(W, acc, a_f, b_f)
        return acc
    for s in kaiodsl.static_range(G.stages - 1):          # the prologue: stages - 1 tiles in flight
        if s < KT:
            _fill(G, a_plan, b_plan, K, b_ld, pipeline.start(R, s), s * G.bk, K)
        pipeline.commit(R)
    pipeline.wait(R, G.stages - 2)
    read = pipeline.start(R)
    write = pipeline.start(R, G.stages - 1)
    frags = _load(G, a_ptrs[0], b_ptrs[0], read)
    for kt in range(KT):
        for kk in kaiodsl.static_range(G.slabs):
            if kk == G.slabs - 1:                          # the next tile must have landed
                pipeline.wait(R, G.stages - 2)
                read = pipeline.advance(R, read)
                nxt = _load(G, a_ptrs[0], b_ptrs[0], read)
            else:
                nxt = _load(G, a_ptrs[kk + 1], b_ptrs[kk + 1], read)
            if kk == 0:                                    # refill the slot freed last iteration
                t = kt + G.stages - 1
                write = pipeline.acquire(R, write)
                if t < KT:
                    _fill(G, a_plan, b_plan, K, b_ld, write, t * G.bk, K)
                pipeline.commit(R)
                write = pipeline.advance(R, write)
            a_f, b_f = frags
            acc = mma_tile(W, acc, a_f, b_f)
            frags = nxt
    pipeline.drain(R)
    return acc
