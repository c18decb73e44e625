"""W4A16 and W8A16 on sm_90a: the Hopper GEMM's structure (ops/gemm_sm90.py), weights dequantized in shared memory.

``C = A @ W^T`` for A [M, K] f16/bf16 activations and W [N, K] int4 in the ``pack_int4`` layout
(ops/int4_pack.py) with group scales (and zero points); C [M, N] in the activation dtype. The
arguments are exactly ``ops.matmul_int4``'s, which on sm_90a past M = 16 runs ops/gemm_sm90_w4_swap.py's
kernel by default and this one where ``config=`` is a W4Config (or a fused QKV projection has a rope).

The block is a persistent ``1 + consumers`` warpgroups walking the output tiles in grouped order, as
in gemm_sm90; what differs is how a ring slot's B tile gets filled:

* **A** still comes by TMA (one thread of the producer warpgroup: ``mbarrier_expect_tx`` of the A
  box's bytes, then the copy; 128-byte swizzle, zero-filled past M).
* **B**: producer thread 0 also streams the raw packed weights by TMA into a staging ring of their
  own (``W4Config.staging`` slots, own mbarriers, ``staging - 1`` chunks ahead; ops/gemm_sm90_w4_stage.py
  has the details). All 128 producer threads read their words of a stage from the staging slot (shared
  memory: no dependent global loads in the loop), dequantize them (``tiles.dequant``: lop3
  magic-number conversion, one sub, one mul a pair) and store 16-byte chunks into the ring slot's B
  tile in exactly the layout TMA would have written (``layouts.B128``: row n at byte 128 n, chunk c at
  chunk ``c ^ (n % 8)``), which the consumers' wgmma descriptors read. Each thread then
  ``fence_proxy_async``s (its generic-proxy stores before wgmma's async-proxy reads) and arrives on the
  slot's full barrier, whose count is the 128 producer threads; the A copy's transaction bytes
  complete it with them. Scales and zero points are plain loads issued a stage ahead.
* **Registers**: no ``setmaxnreg``: the dequantizing producer keeps words, scales and dequantized
  halves in flight, and ptxas allocates the whole kernel against the launch count
  (``W4Config.registers``).
* **Consumers**: unchanged (``tiles.warpgroup`` m64nN wgmma, one stage of tensor-core work queued
  behind ``wgmma.wait_group 1``, the epilogue straight from the accumulators).

Packed layout vs 128-byte K rows: pack_int4 cuts W into 8-row x 128-k tiles of 512 bytes, lane
``l = 4g + t`` owning 16 bytes = 4 words, word w holding k ``32w + 8t .. 32w + 8t + 7`` of row g.
A staged chunk is one such k tile of the block's row tiles (one TMA box); a 64-k B stage (one 128-byte
f16 row) is words ``2 (kt % 2)`` and ``2 (kt % 2) + 1`` of every lane: one 8-byte shared load per (row
tile, lane), and each word is exactly one 16-byte f16 chunk of the row (chunk ``4 ww + t`` of the
stage), so the dequantized chunk needs no shuffling.
Group sizes 32, 64 and 128 all work: word ww of stage kt (k ``64 kt + 32 ww ..``) is in group
``2 kt + ww`` (32: both groups' scales side by side, one load) or ``kt / (group_size / 64)`` (64, 128).

Ragged M comes from TMA's zero fill; N is a multiple of 8 (the packed layout) and row tiles past N
are zero-filled by the weights' TMA (their columns are never stored); K is a multiple of 128, so every
K stage is full.

**Segments** (``w4_segments_kernel``, E a ``gemm_sm90_segments.Segments``; the fused int8/int4 QKV
projection of ops/qkv_sm90.py): up to three weights (with their scales and zero points) and outputs
in one launch, the output tiles walking segment 0's column tiles, then segment 1's, ...; only the
producer's choice of weights (the tile's segment's tensor map for the staging copy; ``segment_of``: its
scale and zero-point pointers, local column and N for the row bounds) and the epilogue call
(``store_segments``) differ.

**W8A16** (``w8_sm90_kernel``, ``ops.matmul_w8a16``'s path with a W4Config): the same kernel with plain int8
[N, K] rows, staged by a 2-D TMA box of 64 k: a stage's 64 bytes of a row are 4 pieces of 16 bytes
(4 consecutive producer threads, one 16-byte shared load each), piece q giving f16 chunks 2q and
2q + 1 (``tiles.dequant.int8_quad``: exact integers, with the per-channel f32 scale applied in the
epilogue, or times the group scale). K is a multiple of 16: TMA zero-fills both operands past K.

The weights' TMA needs their data on 16-byte boundaries (a TensorMap ArgumentError at launch
otherwise); groups of 32 read a stage's two scales (zero points) in one 4-byte (2-byte) load.
"""

from dataclasses import dataclass
from functools import lru_cache

import kaiodsl
from kaiodsl import Ptr, TensorMap, bf16, f16, f32, i32, tiles, u8, u32, u64
from kaiodsl.errors import ArgumentError

from . import gemm_sm90_segments as seg
from . import gemm_sm90_w4_stage as stage
from ._common import data_alignment, inspect_array, require_positive_fields
from .gemm_sm90 import SMEM_MAX, WarpgroupTiling, sm_count
from .gemm_sm90_w4_stage import BK, CHUNK_BYTES_A_ROW, PRODUCERS, ROW_BYTES, W4Dequant  # noqa: F401
from .gemm_sm90_w4_swap import W4SwapConfig
from .gemm_sm90_w4_swap import _body as swap_body

REGS = 64 * 1024           # registers an SM


@dataclass(frozen=True)
class W4Config(WarpgroupTiling):
    """``block_m x block_n`` output tiles, ``stages`` ring slots of (A, dequantized B) 64 k deep,
    ``consumers`` consumer warpgroups (``block_m / consumers`` rows each, a multiple of 64),
    tiles walked ``group_m`` tile-rows at a time (gemm_sm90.WarpgroupTiling); ``staging`` slots of
    raw weights (``64 x block_n`` bytes each: int4 128 k, int8 64 k; at least 2), ``staging - 1`` of them
    in flight ahead of the one being dequantized; the group scales (zero points) of B stage
    ``kt + ahead`` loaded into registers while stage kt is dequantized. ``warp_stages``: each producer
    warp dequantizes whole B stages, warp w every fourth one (w, w + 4, ... of the block's walk), so a
    warp has four stage-times for each (its loads, scales and stores in flight across them) instead of
    the warpgroup sharing each stage; its scales come a warp-stage (four stages) ahead."""

    staging: int = 2
    ahead: int = 1
    warp_stages: bool = False

    def __post_init__(self):
        require_positive_fields(self, skip=("warp_stages",))
        if type(self.warp_stages) is not bool:
            raise ArgumentError(f"W4Config: warp_stages must be True or False, got {self.warp_stages!r}")

    @property
    def stage_threads(self) -> int:
        """Producer threads that dequantize one B stage: the warpgroup, or with ``warp_stages`` one warp."""
        return 32 if self.warp_stages else PRODUCERS

    @property
    def units(self) -> int:
        """(8-row tile, lane) pieces (int8: row quarters) of the B tile each of a stage's producer threads
        loads and dequantizes."""
        return self.block_n * 4 // self.stage_threads

    def smem_bytes(self) -> int:
        """The (A, B) ring and the raw weights' staging ring after it."""
        return self.ring_bytes() + self.staging * CHUNK_BYTES_A_ROW * self.block_n

    def registers(self) -> int:
        """Registers a thread gets at launch (64K over the block, at most 255, in multiples of 8), for
        producers and consumers alike: no ``setmaxnreg`` rebalancing. The producer here is no TMA-only
        warpgroup: with its weight words, scales and dequantized halves in flight it uses as many
        registers as ptxas lets it (measured: the launch's 168 at 128 x 256, 127 at 128 x 128), and
        ptxas allocates the whole kernel against the launch count (a ``setmaxnreg.dec`` does not make
        it fit the code after it into fewer), so giving registers away would be unsafe, and the
        consumers' accumulators (block_n / 2 a row block) fit the launch count anyway."""
        return min(255, REGS // self.threads) // 8 * 8

    def check(self) -> None:
        """Raise ArgumentError unless the kernel computes this tiling correctly."""
        rules = self.tiling_rules() + [
            (32 <= self.block_n <= 256 and self.block_n % 32 == 0,
             "block_n must be a multiple of 32 in 32..256 (a wgmma N; 4 x block_n pieces over 128 producers)"),
            (self.consumers <= 2, "at most 2 consumer warpgroups (3 would leave 128 registers a thread)"),
            (self.registers() >= self.wg_rows // 64 * self.block_n // 2 + 32,
             "the accumulators do not fit in the consumers' registers"),
            (self.staging >= 2, "staging must be at least 2 (a chunk of weights in flight while one is dequantized)"),
            (self.ahead <= 4, "ahead must be in 1..4 (stages of scales in registers)"),
            (not self.warp_stages or self.ahead == 1,
             "ahead applies to the warpgroup producer (with warp_stages the scales come a warp-stage ahead)"),
            (not self.warp_stages or self.stages % 4 == 0 and self.staging % 4 == 0,
             "with warp_stages, stages and staging must be multiples of 4 (the producer warps' own slots)"),
            (self.smem_bytes() + 1024 <= SMEM_MAX,
             f"the ring and the staging need {self.smem_bytes() + 1024} bytes of shared memory (with the "
             f"1024-byte alignment), more than {SMEM_MAX}: fewer stages or staging slots"),
        ]
        for ok, rule in rules:
            if not ok:
                raise ArgumentError(f"W4Config {self!r} is not a valid tiling: {rule}")

    def __str__(self) -> str:
        return WarpgroupTiling.__str__(self) + f"/w{self.staging}" + (f"/a{self.ahead}" if self.ahead != 1 else "") \
            + ("/ws" if self.warp_stages else "")


DEFAULT = W4Config()                                                  # 192 KB ring + 2 x 16 KB staging
NARROW = W4Config(block_m=128, block_n=128, stages=6, staging=4)      # 192 KB ring + 4 x 8 KB staging
TALL = W4Config(block_m=256, block_n=128, stages=4, staging=2)        # 192 KB ring + 2 x 8 KB staging
TALL_WS = W4Config(block_m=256, block_n=128, stages=4, staging=4, warp_stages=True)   # int8: a warp a stage


def w4_config(M: int, N: int, K: int, sms: int, tall: bool = True, kind: str = "int4") -> W4Config:
    """256 x 128 tiles when they give every SM a tile, else 128 x 256 when those do, else 128 x 128.

    The producer's dequantization (block_n x 64 elements a stage) is what bounds this kernel, and a
    256 x 128 tile does the tensor work of a 128 x 256 one with half of it: on the H200 at M = 2048
    (scripts/w4_sweep.py, log committed) 0.71x / 0.75x f16 cuBLAS at N = K = 4096 / 8192 against
    0.62x / 0.60x for 128 x 256. ``tall=False`` leaves them out. For int8 weights (``kind``) the 256 x 128 tiles take the
    ``warp_stages`` producer (TALL_WS): the fused int8 QKV at Llama-3-8B M = 2048 went from 0.66x to
    0.79x cuBLAS with it, while int4 stayed at 0.70-0.71x (log w4_sweep_producer_2026-12-03)."""
    if tall and -(-M // 256) * -(-N // 128) >= sms:
        return TALL_WS if kind == "int8" else TALL
    return DEFAULT if -(-M // 128) * -(-N // 256) >= sms else NARROW


SM90_MIN_M = 16          # past the decode kernels' sizes (M <= 16: ops/decode_gemm.py streams the weights)


def use_sm90_w4(M: int, N: int, K: int, group_size: int) -> bool:
    """Whether matmul_int4 takes an sm_90a kernel (by default the swap-AB one, gemm_sm90_w4_swap, whose
    tiles shrink to M): on sm_90a past the decode sizes. H200, M = 32-128 (scripts/swap_midm_sweep.py):
    1.5-2.5x the tiled mma.sync kernel it replaces there."""
    from kaiodsl.compiler import default_arch
    return default_arch() == "sm_90a" and M > SM90_MIN_M and K % 128 == 0 and group_size in (32, 64, 128)


@kaiodsl.func
def _body(D: kaiodsl.Const, E: kaiodsl.Const, ta, tw, scales, zeros, c, args, M, N, K):
    """The persistent warp-specialised kernel (module doc) for weights ``D`` and epilogue ``E`` (run-time
    operands ``args``): ``tw`` the weights' tensor map, ``scales``, ``zeros`` the group scales and zero
    points (unused where D has none). With E a ``Segments``, ``tw``, ``scales``, ``zeros`` and ``c`` are
    one per segment."""
    cfg = D.cfg
    SEGS = E.parts if isinstance(E, seg.Segments) else ()
    BM, BN, S, GM, GS, AH = cfg.block_m, cfg.block_n, cfg.stages, cfg.group_m, D.group_size, cfg.ahead
    W = tiles.WarpgroupMma(D.dtype_name, BN, ROW_BYTES, cfg.wg_rows // 64)
    R, SR, SK = D.ring, D.staging, D.chunk_stages
    A_ELEMS = BM * BK
    STAGE_ELEMS = A_ELEMS + BN * BK
    WG_ELEMS = cfg.wg_rows * BK
    CHUNK_WORDS = D.chunk_bytes // 4
    smem = kaiodsl.dynamic_shared(f16, align=1024)
    stg = kaiodsl.dynamic_shared(u32, offset=cfg.ring_bytes(), align=1024)     # the staging ring
    bars = kaiodsl.shared_array(u64, (R.barriers,), align=8, name="ring")
    sbars = kaiodsl.shared_array(u64, (SR.barriers,), align=8, name="staging")
    tid = kaiodsl.thread_idx.x
    wg = tiles.warpgroup.index(tid)
    if tid == 0:
        kaiodsl.tma_prefetch(ta)
        for i in kaiodsl.static_range(S):        # full: the stage's producer threads (+ A's bytes)
            kaiodsl.mbarrier_init(bars.ptr(i), D.stage_threads)
            kaiodsl.mbarrier_init(bars.ptr(S + i), R.arrivals)
        tiles.pipeline.init(SR, sbars)
    kaiodsl.syncthreads()
    total = ((M + BM - 1) // BM) * ((N + BN - 1) // BN)
    ktiles = (K + BK - 1) // BK
    chunks = (ktiles + SK - 1) // SK        # staged chunks a tile (int4: K / 128, int8: ktiles)
    G = K // max(GS, 1)                     # groups a row (unused per-channel)
    first, step = kaiodsl.block_idx.x, kaiodsl.grid_dim.x
    if wg == 0 and cfg.warp_stages:
        _produce_warp_stages(D, SEGS, ta, tw, scales, zeros, smem, stg, bars, sbars, tid, M, N, ktiles, chunks, G,
                             total, first, step)
    elif wg == 0:
        state = tiles.pipeline.start(R)
        rd = tiles.pipeline.start(SR)       # the staging slot read next (every producer thread)
        ist = tiles.pipeline.start(SR)      # the staging slot thread 0 fills next
        at, ac = first, 0                   # the (tile, chunk) it fills next
        if tid == 0:
            for d in kaiodsl.static_range(cfg.staging - 1):
                if at < total:
                    stage.issue_chunk(D, SEGS, SR, ist, sbars, stg, tw, at, ac, M, N)
                    ist = tiles.pipeline.advance(SR, ist)
                at, ac = stage.next_chunk(at, ac, chunks, step)
        for t in range(first, total, step):
            m0, n0 = tiles.gemm.tile_coords_of(t, M, N, BM, BN, GM)
            sc, zp, bn0, bN = _tile_weights(SEGS, scales, zeros, n0, N)
            cgs = []              # the scales of stages kt .. kt + ahead - 1
            for j in kaiodsl.static_range(AH):
                cgs = cgs + [stage.group_raw(D, sc, zp, min(j, ktiles - 1), G, bn0, bN, tid)]
            for kt0 in range(0, ktiles, SK):
                if tid == 0:      # staging - 1 chunks ahead of this one
                    if at < total:
                        stage.issue_chunk(D, SEGS, SR, ist, sbars, stg, tw, at, ac, M, N)
                        ist = tiles.pipeline.advance(SR, ist)
                    at, ac = stage.next_chunk(at, ac, chunks, step)
                tiles.pipeline.wait(SR, 0, rd, sbars)
                ridx, rphase = rd
                slot_w = stg.ptr(ridx * CHUNK_WORDS)
                for h in kaiodsl.static_range(SK):
                    kt = kt0 + h
                    words = stage.read_words(D, slot_w, h, tid)
                    if h == SK - 1:           # the chunk's last read: its slot may be refilled
                        tiles.pipeline.release(SR, rd, sbars)
                        rd = tiles.pipeline.advance(SR, rd)
                    ng = stage.group_raw(D, sc, zp, min(kt + AH, ktiles - 1), G, bn0, bN, tid)
                    tiles.pipeline.acquire(R, state, bars)
                    _fill_stage(D, ta, smem, bars, state[0], m0, kt, words, cgs[0], tid, tid == 0)
                    state = tiles.pipeline.advance(R, state)
                    nxt = []
                    for j in kaiodsl.static_range(1, AH):
                        nxt = nxt + [cgs[j]]
                    cgs = nxt + [ng]
    else:
        cw = wg - 1
        lane = tid % 32
        state = tiles.pipeline.start(R)
        for t in range(first, total, step):
            m0, n0 = tiles.gemm.tile_coords_of(t, M, N, BM, BN, GM)
            accs = tiles.warpgroup.zeros(W)
            prev = state
            for kt in range(ktiles):
                tiles.pipeline.wait(R, 0, state, bars)
                index, phase = state
                slot = smem.ptr(index * STAGE_ELEMS)
                accs = tiles.warpgroup.mma_stage(W, slot + cw * WG_ELEMS, slot + A_ELEMS, accs)
                accs = tiles.warpgroup.wait(W, 1, accs)
                if kt > 0:
                    tiles.pipeline.release(R, prev, bars)
                prev = state
                state = tiles.pipeline.advance(R, state)
            accs = tiles.warpgroup.wait(W, 0, accs)
            if ktiles > 0:
                tiles.pipeline.release(R, prev, bars)
            r0 = m0 + cw * cfg.wg_rows + 16 * ((tid // 32) % 4)
            if SEGS:              # through the output, epilogue and rope of n0's segment
                seg.store_segments(SEGS, W, accs, c, args, r0, n0, lane, M)
            else:
                for i in kaiodsl.static_range(W.m_tiles):
                    tiles.epilogue.store_tile(E, W.acc_tile, tiles.warpgroup.acc_tile(W, accs[i]), c, args,
                                              r0 + 64 * i, n0, lane, M, N)



@kaiodsl.func
def _tile_weights(SEGS: kaiodsl.Const, scales, zeros, n0, N):
    """(scales, zero points, first column, width) of the weights holding output column n0: the only ones,
    or with SEGS the segment's."""
    if SEGS:
        (sc, zp), bn0, bN = seg.segment_of(SEGS, (scales, zeros), n0)
        return sc, zp, bn0, bN
    return scales, zeros, n0, N


@kaiodsl.func
def _fill_stage(D: kaiodsl.Const, ta, smem, bars, index, m0, kt, words, groups, tid, issuer):
    """Ring slot ``index`` for K stage kt of the tile at row m0: the ``issuer`` thread announces and copies
    A; every producer thread of the stage dequantizes its words into B, fences them for wgmma and arrives."""
    cfg = D.cfg
    STAGE_ELEMS = (cfg.block_m + cfg.block_n) * BK
    if issuer:
        kaiodsl.mbarrier_expect_tx(bars.ptr(index), cfg.block_m * BK * 2)
        kaiodsl.tma_load(smem.ptr(index * STAGE_ELEMS), ta, (m0, kt * BK), bars.ptr(index))
    stage.store_b(D, smem, index * STAGE_ELEMS, words, groups, tid)
    kaiodsl.fence_proxy_async()          # the B stores before wgmma (async proxy) reads them
    kaiodsl.mbarrier_arrive(bars.ptr(index))


@kaiodsl.func
def _stage_of(D: kaiodsl.Const, SEGS: kaiodsl.Const, scales, zeros, g, ktiles, first, step, M, N):
    """Stage g of a block's walk (its tiles' K stages one after another): (kt, m0, the scales and zero
    points, first column and width of the weights holding the tile)."""
    cfg = D.cfg
    ti = g // ktiles
    kt = g - ti * ktiles
    m0, n0 = tiles.gemm.tile_coords_of(first + ti * step, M, N, cfg.block_m, cfg.block_n, cfg.group_m)
    sc, zp, bn0, bN = _tile_weights(SEGS, scales, zeros, n0, N)
    return kt, m0, sc, zp, bn0, bN


@kaiodsl.func
def _produce_warp_stages(D: kaiodsl.Const, SEGS: kaiodsl.Const, ta, tw, scales, zeros, smem, stg, bars, sbars, tid,
                         M, N, ktiles, chunks, G, total, first, step):
    """The producer with ``warp_stages``: warp w fills every fourth ring stage g = w, w + 4, ... of the
    block's walk, all of its B tile (one row tile a round) and its A copy (lane 0). The ring slot of
    stage g is g % stages (a multiple of 4: each slot has one warp filling it, in order, which the
    barriers' one phase bit needs), phase (g / stages) % 2. Each warp stages its own weights: its
    ``staging / 4`` slots take the chunks of its next stages (lane 0's copies; an int4 chunk's two
    stages belong to two warps, which each copy it), refilled once the warp read the slot, so it needs
    no empty barrier and no other warp."""
    cfg = D.cfg
    R, SR, SK = D.ring, D.staging, D.chunk_stages
    NW = PRODUCERS // 32
    KW = cfg.staging // NW                 # staging slots a warp
    CHUNK_WORDS = D.chunk_bytes // 4
    warp, lane = tid // 32, tid % 32
    mine = (total - first + step - 1) // step if first < total else 0
    nstages = mine * ktiles
    if lane == 0:
        for d in kaiodsl.static_range(KW):
            gd = warp + NW * d
            if gd < nstages:
                q = gd // SK
                stage.copy_chunk(D, SEGS, SR, warp * KW + d, sbars, stg, tw, first + (q // chunks) * step, q % chunks,
                                 M, N)
    kt, m0, sc, zp, bn0, bN = _stage_of(D, SEGS, scales, zeros, min(warp, max(nstages - 1, 0)), ktiles, first,
                                            step, M, N)
    cg = stage.group_raw(D, sc, zp, kt, G, bn0, bN, tid)
    j = 0                                   # this warp's stages so far
    for g in range(warp, nstages, NW):
        slot = warp * KW + j % KW
        kaiodsl.mbarrier_wait(sbars.ptr(slot), (j // KW) % 2)
        words = stage.read_words(D, stg.ptr(slot * CHUNK_WORDS), g % SK, tid)
        kaiodsl.fence_proxy_async()          # the warp's reads of the slot before the copy that refills it
        kaiodsl.syncwarp()
        gn = g + NW * KW
        if lane == 0 and gn < nstages:
            qn = gn // SK
            stage.copy_chunk(D, SEGS, SR, slot, sbars, stg, tw, first + (qn // chunks) * step, qn % chunks, M, N)
        nkt, nm0, nsc, nzp, nbn0, nbN = _stage_of(D, SEGS, scales, zeros, min(g + NW, nstages - 1), ktiles,
                                                  first, step, M, N)
        ng = stage.group_raw(D, nsc, nzp, nkt, G, nbn0, nbN, tid)
        state = (g % cfg.stages, (g // cfg.stages) % 2)
        tiles.pipeline.acquire(R, state, bars)
        _fill_stage(D, ta, smem, bars, state[0], m0, kt, words, cg, tid, lane == 0)
        kt, m0, cg = nkt, nm0, ng
        j = j + 1


@lru_cache(maxsize=None)
def w4_sm90_kernel(dtype_name: str, group_size: int, has_zeros: bool, cfg: W4Config, wdtype: str = "i32"):
    """The kernel for ``dtype_name`` activations, int4 groups of ``group_size`` (with zero points or the
    default 8) and tiling ``cfg``; packed words arrive as ``wdtype`` (i32 from pack_int4, or u32: the
    weights' tensor map's element type, part of the name only)."""
    cfg.check()
    T = {"f16": f16, "bf16": bf16}[dtype_name]
    D = W4Dequant(cfg, dtype_name, group_size, has_zeros)
    E = tiles.Epilogue((), T)
    name = f"w4a16_sm90_{dtype_name}_g{group_size}" + ("_zp" if has_zeros else "") + f"_{cfg}_{wdtype}" \
        .replace("/", "_")

    @kaiodsl.kernel(block_size=cfg.threads, name=name)
    def kern(ta: TensorMap, tw: TensorMap, scales: Ptr[T], zeros: Ptr[u8], c: Ptr[T], M: i32, N: i32, K: i32):
        _body(D, E, ta, tw, scales, zeros, c, (), M, N, K)

    return kern


SWAP_OPS = ("matmul_int4", "qkv_project_int4", "matmul_w8a16", "qkv_project_int8")   # they also run gemm_sm90_w4_swap


def sm90_w4_plan(op: str, M: int, N: int, K: int, wanted: bool, parallelism, a_align: int,
                 config: W4Config | None, group_size: int = 128):
    """The checked tiling when ``op`` (matmul_int4 or matmul_w8a16, arguments validated) runs this
    kernel, else None: ``config`` forces it (ArgumentError where it cannot run), otherwise ``wanted``
    (use_sm90_w4 / use_sm90_w8) decides. ``a_align``: the power of two dividing the data addresses of
    a (TMA needs 16) and of int8 weights (16-byte loads)."""
    from kaiodsl.compiler import default_arch

    from ._common import require_smem

    if config is None:
        if parallelism is not None or a_align < 16 or not wanted:
            return None
        from .gemm_sm90_w4_swap import swap_config
        config = swap_config(M, N, K, sm_count(), "int8" if op == "matmul_w8a16" else "int4", group_size)
    elif not isinstance(config, W4Config) and not (op in SWAP_OPS and isinstance(config, W4SwapConfig)):
        kinds = "a gemm_sm90_w4.W4Config, a gemm_sm90_w4_swap.W4SwapConfig" if op in SWAP_OPS else \
            "a gemm_sm90_w4.W4Config"
        raise ArgumentError(f"{op}(): config must be {kinds} or None, got {config!r}")
    elif default_arch() != "sm_90a":
        raise ArgumentError(f"{op}(): config {config} is the sm_90a kernel (TMA, wgmma); the current target is "
                            f"{default_arch()}: leave config unset")
    elif parallelism is not None:
        raise ArgumentError(f"{op}(): config {config} (the sm_90a kernel) and parallelism={parallelism!r} (the "
                            f"decode kernel) exclude each other: pass one")
    elif a_align < 16:
        raise ArgumentError(f"{op}(): config {config} is the sm_90a kernel, which needs its operands on 16-byte "
                            f"boundaries (TMA, 16-byte loads); they are {a_align}-byte aligned")
    kind = "int8" if op in ("matmul_w8a16", "qkv_project_int8") else "int4"
    swap = isinstance(config, W4SwapConfig)          # its slots' size depends on the weights' kind
    try:
        config.check(kind) if swap else config.check()
    except ArgumentError as e:
        raise ArgumentError(f"{op}(): config: {e}") from None
    require_smem(op, f"config {config}", (config.smem_bytes(kind) if swap else config.smem_bytes()) + 1024)
    return config


def weights_map(D: W4Dequant, w):
    """The staging copies' tensor map of the weights ``w`` (int4: the [N / 8, K / 128, 32, 4] words seen
    as [N / 8, K], int8: the [N, K] rows), one chunk a box (gemm_sm90_w4_stage)."""
    if D.kind == "int4":
        w = stage.rows_view(w, (w.shape[0], w.shape[1] * 128))
    return TensorMap(w, D.chunk_box, l2_promotion=256)


def require_group_alignment(op: str, D: W4Dequant, scales, zeros) -> None:
    """Groups of 32 read a stage's two scales (zero points) in one 4-byte (2-byte) load: their data must
    start on such a boundary (a torch view may not)."""
    if D.kind != "int4" or D.group_size != 32:
        return
    for name, x, need in (("scales", scales, 4),) + ((("zeros", zeros, 2),) if D.has_zeros else ()):
        got = data_alignment(inspect_array(name, x, op))
        if got < need:
            raise ArgumentError(f"{op}(): group_size=32 reads '{name}' {need} bytes at a time on sm_90a: its data "
                                f"must start on a {need}-byte boundary, it is {got}-byte aligned (pass a copy)")


def launch_w4_sm90(a, w_packed, scales, z, out, M: int, N: int, K: int, dtype_name: str, group_size: int,
                   has_zeros: bool, wdtype: str, cfg: W4Config):
    """matmul_int4's sm_90a path (arguments validated by matmul_int4, ``cfg`` from sm90_w4_plan; ``z``
    the zero points or a 1-element placeholder)."""
    ta = TensorMap(a, (cfg.block_m, BK), swizzle=128, l2_promotion=256)
    D = W4Dequant(cfg, dtype_name, group_size, has_zeros)
    require_group_alignment("matmul_int4", D, scales, z)
    tw = weights_map(D, w_packed)
    total = -(-M // cfg.block_m) * -(-N // cfg.block_n)
    k = w4_sm90_kernel(dtype_name, group_size, has_zeros, cfg, wdtype)
    k[min(total, sm_count()), cfg.threads](ta, tw, scales, z, out, M, N, K, smem=cfg.smem_bytes())
    return out


# -- W8A16 (ops.matmul_w8a16's sm_90a path) --------------------------------------------------------------
def use_sm90_w8(M: int, N: int, K: int) -> bool:
    """Whether matmul_w8a16 takes an sm_90a kernel: on sm_90a past the decode sizes, as use_sm90_w4."""
    from kaiodsl.compiler import default_arch
    return default_arch() == "sm_90a" and M > SM90_MIN_M and K % 16 == 0


@lru_cache(maxsize=None)
def w8_sm90_kernel(dtype_name: str, out_name: str, group_size: int, has_bias: bool, cfg):
    """W8A16 with int8 ``w [N, K]`` rows: ``group_size`` 0 (per-channel f32 scales [N], applied in the
    epilogue, as ops/matmul_w8a16.py does) or 64/128/256 (scales [N, K // group_size] in the activation
    dtype, multiplied in while dequantizing); optional f32 bias; out f16/bf16/f32. ``cfg`` a W4Config
    (this module's kernel) or a W4SwapConfig (gemm_sm90_w4_swap's, the same operands)."""
    swapped = isinstance(cfg, W4SwapConfig)
    if swapped:
        cfg.check("int8")
    else:
        cfg.check()
    body = swap_body if swapped else _body
    T = {"f16": f16, "bf16": bf16}[dtype_name]
    OUT = {"f16": f16, "bf16": bf16, "f32": f32}[out_name]
    D = W4Dequant(cfg, dtype_name, group_size, False, "int8")
    E = tiles.Epilogue((() if group_size else (tiles.ColScale(),)) + ((tiles.Bias(),) if has_bias else ()), OUT)
    name = f"w8a16_sm90_{dtype_name}_{out_name}" + (f"_g{group_size}" if group_size else "_pc") + \
        ("_bias" if has_bias else "") + f"_{cfg}".replace("/", "_")

    @kaiodsl.kernel(block_size=cfg.threads, name=name)
    def kern(ta: TensorMap, tw: TensorMap, scales: Ptr[f32], gscales: Ptr[T], c: Ptr[OUT], bias: Ptr[f32],
             M: i32, N: i32, K: i32):
        args = ((scales,) if not group_size else ()) + ((bias,) if has_bias else ())
        body(D, E, ta, tw, gscales, gscales, c, args, M, N, K)

    return kern


def launch_w8_sm90(a, w_q, pc, gsc, out, bias, M: int, N: int, K: int, dtype_name: str, out_name: str,
                   group_size: int, has_bias: bool, cfg: W4Config):
    """matmul_w8a16's sm_90a path (arguments validated there; ``pc`` the per-channel f32 scales or a
    placeholder, ``gsc`` the group scales or a placeholder; ``cfg`` from sm90_w4_plan)."""
    ta = TensorMap(a, (cfg.block_m, BK), swizzle=128, l2_promotion=256)
    tw = weights_map(W4Dequant(cfg, dtype_name, group_size, False, "int8"), w_q)
    total = -(-M // cfg.block_m) * -(-N // cfg.block_n)
    k = w8_sm90_kernel(dtype_name, out_name, group_size, has_bias, cfg)
    k[min(total, sm_count()), cfg.threads](ta, tw, pc, gsc, out, bias, M, N, K, smem=cfg.smem_bytes())
    return out


# -- segments (ops/gemm_sm90_segments.py): several weights and outputs in one launch (the fused QKV) ---------
SEGMENT_ARGS = 9           # epilogue operand slots: per-channel scales, biases and rope's 3 of q, k, v


@lru_cache(maxsize=None)
def w4_segments_kernel(D: W4Dequant, E: seg.Segments, wdtype: str, arg_types: tuple):
    """The kernel for weights ``D`` (int4 words as ``wdtype`` i32/u32, or int8 "i8": the maps' element
    type, part of the name only) with segments ``E``: per segment its weights' tensor map, scales, zero
    points and output; ``arg_types`` the kaiodsl types of the
    epilogues' run-time operands (at most SEGMENT_ARGS, shared through the segments' indices)."""
    cfg = D.cfg
    cfg.check()
    E.checked(cfg, len(arg_types), SEGMENT_ARGS)
    T = {"f16": f16, "bf16": bf16}[D.dtype_name]
    O0, O1, O2 = (E.outs + (E.out,) * seg.MAX_SEGMENTS)[:seg.MAX_SEGMENTS]
    T0, T1, T2, T3, T4, T5, T6, T7, T8 = (tuple(arg_types) + (Ptr[f32],) * SEGMENT_ARGS)[:SEGMENT_ARGS]
    kind = f"w8a16_{D.dtype_name}" if D.kind == "int8" else f"w4a16_{D.dtype_name}_g{D.group_size}"
    name = (f"{kind}_sm90" + ("_zp" if D.has_zeros else "") + f"_{cfg}_{wdtype}").replace("/", "_") + E.tag

    @kaiodsl.kernel(block_size=cfg.threads, name=name)
    def kern(ta: TensorMap, w0: TensorMap, w1: TensorMap, w2: TensorMap, s0: Ptr[T], s1: Ptr[T], s2: Ptr[T],
             z0: Ptr[u8], z1: Ptr[u8], z2: Ptr[u8], c0: Ptr[O0], c1: Ptr[O1], c2: Ptr[O2], x0: T0, x1: T1, x2: T2,
             x3: T3, x4: T4, x5: T5, x6: T6, x7: T7, x8: T8, M: i32, N: i32, K: i32):
        _body(D, E, ta, (w0, w1, w2), (s0, s1, s2), (z0, z1, z2), (c0, c1, c2), (x0, x1, x2, x3, x4, x5, x6, x7, x8),
              M, N, K)

    return kern


def launch_w4_segments(D: W4Dequant, wdtype: str, a, ws: tuple, scales: tuple, zeros: tuple, outs: tuple, M: int,
                       K: int, E: seg.Segments, args: tuple, arg_types: tuple, dummy):
    """Run the segmented kernel on validated operands: a [M, K] (16-byte aligned rows); per segment its
    weights, scales (or placeholders of a's dtype), zero points (or a uint8 placeholder) and output;
    ``args`` the epilogues' run-time operands, ``dummy`` an f32 array for the slots they leave unused."""
    cfg = D.cfg
    ta = TensorMap(a, (cfg.block_m, BK), swizzle=128, l2_promotion=256)
    pad = seg.MAX_SEGMENTS - len(ws)
    ws, scales, zeros, outs = (list(v) + [v[0]] * pad for v in (ws, scales, zeros, outs))
    for s, z in zip(scales, zeros):
        require_group_alignment("qkv_project_int4", D, s, z)
    ws = [weights_map(D, w) for w in ws]
    fill = [dummy] * (SEGMENT_ARGS - len(args))
    total = -(-M // cfg.block_m) * (E.width // cfg.block_n)
    k = w4_segments_kernel(D, E, wdtype, arg_types)
    k[min(total, sm_count()), cfg.threads](ta, *ws, *scales, *zeros, *outs, *args, *fill, M, E.width, K,
                                           smem=cfg.smem_bytes())
    return tuple(outs[:len(outs) - pad])
