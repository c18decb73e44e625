"""The W8A16 block GEMM main loop: f16/bf16 A [M, K] x int8 B [N, K], B dequantized on load.

Both operands go through the tile library's cp.async ring (copies.plan/issue, pipeline.Ring): A as
an f16/bf16 tile read with ldmatrix, B as raw bytes (an [bn, bk] int8 tile held as bk/2 16-bit
elements a row, so the same 16-byte copy plans and swizzles apply). Each lane then reads, per n8
column and k16 step, the two 32-bit words holding its k (2t, 2t+1) and (2t+8, 2t+9) bytes (the mma B
fragment, PTX ISA 9.7.14.5.8), picks them with one prmt and converts four weights with one XOR, two
prmt and two packed subs (tiles.dequant.int8_quad). Every B fragment serves all of the warp's mi A
fragments; per-channel scales are an epilogue ColScale, per-group ones multiply the fragment.
"""

from __future__ import annotations

from dataclasses import dataclass

import kaiodsl
from kaiodsl import Const, i64, tiles, u32
from kaiodsl.tiles import copies, pipeline
from kaiodsl.tiles.dequant import int8_quad, int8_select, int8_selector
from kaiodsl.tiles.layouts import SmemTile, chunk_ptr
from kaiodsl.types import ScalarType


@dataclass(frozen=True)
class W8Config:
    """A [block_m, block_n] block tile, block_k deep (k of int8 weights), warps_m x warps_n warps,
    ``stages`` shared buffers (>= 2: the cp.async ring)."""

    block_m: int = 64
    block_n: int = 64
    block_k: int = 64
    warps_m: int = 2
    warps_n: int = 2
    stages: int = 4

    @property
    def threads(self) -> int:
        return 32 * self.warps_m * self.warps_n

    @property
    def warp_m(self) -> int:
        return self.block_m // self.warps_m

    @property
    def warp_n(self) -> int:
        return self.block_n // self.warps_n

    def smem_bytes(self) -> int:
        return self.stages * (2 * self.block_m + self.block_n) * self.block_k

    def __str__(self) -> str:
        return (f"{self.block_m}x{self.block_n}x{self.block_k}/w{self.warps_m}x{self.warps_n}"
                f"/s{self.stages}")


@dataclass(frozen=True)
class W8Gemm:
    """A W8Config for activations of ``dtype`` and weights scaled per channel (group 0) or per group."""

    cfg: W8Config
    dtype: ScalarType
    group: int = 0
    wide: bool = False
    group_m: int = 8

    def __post_init__(self):
        c = self.cfg
        sw = self.b_tile.swizzle
        if sw.bits and (8 >> sw.shift) % (sw.mask + 1):
            raise ValueError(f"W8Gemm: B rows 8 apart must share a swizzle, {sw} on {c.block_k}-byte rows")
        if (c.warp_m % 16 or c.warp_n % 8 or c.block_k % 32 or c.stages < 2
                or (self.group and self.group % c.block_k)):
            raise ValueError(f"W8Gemm: {c} is not a valid tiling (warp tiles of 16 x 8, block_k a multiple of "
                             f"32 dividing group {self.group}, stages >= 2)")

    @property
    def bm(self) -> int:
        return self.cfg.block_m

    @property
    def bn(self) -> int:
        return self.cfg.block_n

    @property
    def bk(self) -> int:
        return self.cfg.block_k

    @property
    def threads(self) -> int:
        return self.cfg.threads

    @property
    def is_f16(self) -> bool:
        return self.dtype.name == "f16"

    @property
    def warp(self) -> tiles.WarpMma:
        return tiles.WarpMma(self.cfg.warp_m, self.cfg.warp_n, tiles.MmaAtom(self.dtype.name))

    @property
    def warps_n(self) -> int:
        return self.cfg.warps_n

    @property
    def ring(self) -> pipeline.Ring:
        return pipeline.Ring(self.cfg.stages)

    @property
    def a_tile(self) -> SmemTile:
        return SmemTile(self.bm, self.bk, self.dtype, self.cfg.stages)

    @property
    def b_tile(self) -> SmemTile:
        """bk int8 a row, as bk / 2 16-bit elements."""
        return SmemTile(self.bn, self.bk // 2, self.dtype, self.cfg.stages).after(self.a_tile)

    @property
    def a_copy(self) -> tiles.TileCopy:
        return tiles.TileCopy(self.a_tile, self.threads, "cols", "cp.async", self.wide)

    @property
    def b_copy(self) -> tiles.TileCopy:
        return tiles.TileCopy(self.b_tile, self.threads, "cols", "cp.async", self.wide)

    @property
    def steps(self) -> int:
        return self.bk // 16


@kaiodsl.func
def warp_origin(G: Const, tid):
    warp = tid // 32
    return (warp // G.warps_n) * G.warp.wm, (warp % G.warps_n) * G.warp.wn


@kaiodsl.func
def _fill(G: Const, a_plan, b_plan, K, state, kt):
    index, phase = state
    copies.issue(G.a_copy, a_plan, K, index, kt * G.bk, K)
    copies.issue(G.b_copy, b_plan, K // 2, index, kt * (G.bk // 2), K // 2)


@kaiodsl.func
def _group_scales(G: Const, srows, kt, N, ncols):
    """The scales of this k tile's group for the warp's nj columns (f16: a half2 pair; bf16: f32)."""
    out = []
    for j in kaiodsl.static_range(G.warp.nj):
        s = srows[j][(kt * G.bk) // G.group]
        if G.is_f16:
            h = kaiodsl.bitcast(s, kaiodsl.u16)
            out = out + [kaiodsl.bitcast(kaiodsl.pack_b32(h, h), kaiodsl.f16x2)]
        else:
            out = out + [kaiodsl.f32(s)]
    return out


@kaiodsl.func
def main_loop(G: Const, smem, a, w, gscales, M, N, K, row0, col0):
    """The warp's accumulator tile of the block tile at (row0, col0): a [M, K] @ dequant(w [N, K]).T.
    ``w`` is the int8 weight pointer viewed as G.dtype (two bytes an element); ``gscales`` [N, K /
    group] in G.dtype when G.group, else unused."""
    tid = kaiodsl.thread_idx.x
    lane = tid % 32
    g = lane // 4
    t = lane % 4
    W = G.warp
    R = G.ring
    S = G.cfg.stages
    H2 = kaiodsl.f16x2 if G.is_f16 else kaiodsl.bf16x2
    wm0, wn0 = warp_origin(G, tid)
    a_plan = copies.plan(G.a_copy, smem, a, K, row0, M, tid)
    b_plan = copies.plan(G.b_copy, smem, w, K // 2, col0, N, tid)
    a_ptrs = copies.a_ptrs(smem, G.a_tile, wm0, lane, W.mi)
    # word (t // 2) of 16-byte chunk `step` of weight row n: bytes 2t.. are in it (half t % 2); rows
    # n + 8 j share row n's swizzle (the 64/128-byte patterns XOR (row >> 1) & 3 or row & 7)
    b_ptrs = [chunk_ptr(smem, G.b_tile, wn0 + g, s) + 2 * (t // 2) for s in range(G.steps)]
    sel = int8_selector(t)
    srows = []
    if G.group:
        GN = K // G.group
        srows = [gscales + i64(min(col0 + wn0 + 8 * j + g, N - 1)) * GN for j in range(W.nj)]
    acc = tiles.fragments.zeros(W.acc_tile)
    KT = (K + G.bk - 1) // G.bk
    for s in kaiodsl.static_range(S - 1):                  # the prologue: S - 1 tiles in flight
        if s < KT:
            _fill(G, a_plan, b_plan, K, pipeline.start(R, s), s)
        pipeline.commit(R)
    read = pipeline.start(R)
    write = pipeline.start(R, S - 1)
    for kt in range(KT):
        pipeline.wait(R, S - 2)             # tile kt landed; every warp is done with tile kt - 1's slot
        write = pipeline.acquire(R, write)
        if kt + S - 1 < KT:
            _fill(G, a_plan, b_plan, K, write, kt + S - 1)
        pipeline.commit(R)
        write = pipeline.advance(R, write)
        gs = _group_scales(G, srows, kt, N, W.nj) if G.group else [0.0 for j in range(W.nj)]
        index, phase = read
        for s in kaiodsl.static_range(G.steps):
            a_f = copies.load_a(a_ptrs[s], index * G.a_tile.elems)
            b_f = []
            for j in kaiodsl.static_range(W.nj):
                wp = kaiodsl.ptr_cast(b_ptrs[s] + (index * G.b_tile.elems + 8 * j * G.b_tile.cols), u32)
                r = int8_select(wp[0], wp[2], sel)
                b_f = b_f + [int8_quad(r, gs[j], G.group > 0, G.is_f16, H2)]
            acc = tiles.mma.mma_tile(W, acc, a_f, b_f)
        read = pipeline.advance(R, read)
    pipeline.drain(R)
    return acc
