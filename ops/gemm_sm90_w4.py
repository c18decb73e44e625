"""W4A16 and W8A16 on sm_90a: the Hopper GEMM's structure (ops/gemm_sm90.py), weights dequantized in shared memory.

``C = A @ W^T`` for A [M, K] f16/bf16 activations and W [N, K] int4 in the ``pack_int4`` layout
(ops/int4_pack.py) with group scales (and zero points); C [M, N] in the activation dtype. The
arguments are exactly ``ops.matmul_int4``'s, which calls this kernel on sm_90a for M > 64.

The block is a persistent ``1 + consumers`` warpgroups walking the output tiles in grouped order, as
in gemm_sm90; what differs is how a ring slot's B tile gets filled:

* **A** still comes by TMA (one thread of the producer warpgroup: ``mbarrier_expect_tx`` of the A
  box's bytes, then the copy; 128-byte swizzle, zero-filled past M).
* **B**: all 128 producer threads load the slot's packed weights with plain global loads straight
  into registers, dequantize them there (``tiles.dequant``: lop3 magic-number conversion, one sub,
  one mul a pair) and store 16-byte chunks into the slot's B tile in exactly the layout TMA would
  have written (``layouts.B128``: row n at byte 128 n, chunk c at chunk ``c ^ (n % 8)``), which the
  consumers' wgmma descriptors read. Each thread then ``fence_proxy_async``s (its generic-proxy
  stores before wgmma's async-proxy reads) and arrives on the slot's full barrier, whose count is
  the 128 producer threads; the A copy's transaction bytes complete it with them.
* **Registers**: no ``setmaxnreg``: the dequantizing producer needs as many as the consumers
  (``W4Config.registers``).
* **Consumers**: unchanged (``tiles.warpgroup`` m64nN wgmma, one stage of tensor-core work queued
  behind ``wgmma.wait_group 1``, the epilogue straight from the accumulators).

Packed layout vs 128-byte K rows: pack_int4 cuts W into 8-row x 128-k tiles of 512 bytes, lane
``l = 4g + t`` owning 16 bytes = 4 words, word w holding k ``32w + 8t .. 32w + 8t + 7`` of row g.
A stage is 64 k (one 128-byte f16 row), i.e. words ``2 (kt % 2)`` and ``2 (kt % 2) + 1`` of every
lane: one 8-byte load per (row tile, lane), and each word is exactly one 16-byte f16 chunk of the
row (chunk ``4 ww + t`` of the stage), so the dequantized chunk needs no shuffling. The half-used
sectors of those loads are the next stage's words (L1/L2 hits); that is the layout's cost here.
Group sizes 32, 64 and 128 all work: word ww of stage kt (k ``64 kt + 32 ww ..``) is in group
``2 kt + ww`` (32) or ``kt / (group_size / 64)`` (64, 128).

Ragged M comes from TMA's zero fill; N is a multiple of 8 (the packed layout) and row tiles past N
load zeros (their columns are never stored); K is a multiple of 128, so every K stage is full.

**Segments** (``w4_segments_kernel``, E a ``gemm_sm90_segments.Segments``; the fused int8/int4 QKV
projection of ops/qkv_sm90.py): up to three weights (with their scales and zero points) and outputs
in one launch, the output tiles walking segment 0's column tiles, then segment 1's, ...; only the
producer's choice of weights (``segment_of``: the tile's segment's pointers, local column and N for
the row bounds) and the epilogue call (``store_segments``) differ.

**W8A16** (``w8_sm90_kernel``, ``ops.matmul_w8a16``'s path for M > 64): the same kernel with plain int8
[N, K] rows: a stage's 64 bytes of a row are 4 pieces of 16 bytes (4 consecutive producer threads,
one 16-byte load each), piece q giving f16 chunks 2q and 2q + 1 (``tiles.dequant.int8_quad``: exact
integers, with the per-channel f32 scale applied in the epilogue, or times the group scale). K is a
multiple of 16: pieces past K load zeros and TMA zero-fills A there.
"""

from dataclasses import dataclass
from functools import lru_cache

import kaiodsl
from kaiodsl import Ptr, TensorMap, bf16, bf16x2, f16, f16x2, f32, i8, i32, i64, tiles, u8, u32, u64
from kaiodsl.errors import ArgumentError
from kaiodsl.tiles.dequant import MAGIC, int4_pair, int8_quad
from kaiodsl.tiles.layouts import B128, SmemTile, chunk_ptr

from . import gemm_sm90_segments as seg
from ._common import require_positive_fields
from .gemm_sm90 import WarpgroupTiling, sm_count

ROW_BYTES = 128            # bytes of K a stage row: one 128-byte swizzle atom (64 f16)
BK = 64                    # K elements a stage
PRODUCERS = 128            # producer threads (warpgroup 0), all of which dequantize B
REGS = 64 * 1024           # registers an SM


@dataclass(frozen=True)
class W4Config(WarpgroupTiling):
    """``block_m x block_n`` output tiles, ``stages`` ring slots of (A, dequantized B) 64 k deep,
    ``consumers`` consumer warpgroups (``block_m / consumers`` rows each, a multiple of 64),
    tiles walked ``group_m`` tile-rows at a time (gemm_sm90.WarpgroupTiling)."""

    def __post_init__(self):
        require_positive_fields(self)

    @property
    def units(self) -> int:
        """(8-row tile, lane) pieces of the B tile each producer thread loads and dequantizes a stage."""
        return self.block_n * 4 // PRODUCERS

    def smem_bytes(self) -> int:
        return self.ring_bytes()

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
        ]
        for ok, rule in rules:
            if not ok:
                raise ArgumentError(f"W4Config {self!r} is not a valid tiling: {rule}")


DEFAULT = W4Config()
NARROW = W4Config(block_m=128, block_n=128, stages=6)


def w4_config(M: int, N: int, K: int, sms: int) -> W4Config:
    """128 x 256 tiles when they still give every SM a tile, else 128 x 128."""
    return DEFAULT if -(-M // 128) * -(-N // 256) >= sms else NARROW


def use_sm90_w4(M: int, N: int, K: int, group_size: int) -> bool:
    """Whether matmul_int4 takes this kernel: on sm_90a past the decode sizes (one 128-row tile would
    be mostly padding at M <= 64; the decode kernels stream the weights there)."""
    from kaiodsl.compiler import default_arch
    return default_arch() == "sm_90a" and M > 64 and K % 128 == 0 and group_size in (32, 64, 128)


@dataclass(frozen=True)
class W4Dequant:
    """What the producer's dequantization is compiled for: the tiling, the activation dtype, the
    weights' ``kind`` ("int4": pack_int4 words, group scales and zero points or 8; "int8": plain
    [N, K] int8 rows, group scales multiplied in, or ``group_size`` 0: exact integers, the
    per-channel scale in the epilogue) and the group size."""

    cfg: W4Config
    dtype_name: str
    group_size: int
    has_zeros: bool = False
    kind: str = "int4"

    @property
    def b_tile(self) -> SmemTile:
        """A slot's B tile (after the A tile), as TMA would write it: 128-byte rows, B128 swizzle."""
        return SmemTile(self.cfg.block_n, BK, f16, 1, self.cfg.block_m * BK, B128)

    @property
    def h2(self):
        return {"f16": f16x2, "bf16": bf16x2}[self.dtype_name]

    @property
    def magic(self) -> tuple:
        """(bits in both halves, value) of the magic number (tiles.dequant.MAGIC)."""
        return MAGIC[self.dtype_name]

    @property
    def prefetch(self) -> bool:
        """Load stage k + 1's weights while stage k is dequantized: the int4 words (2 registers a piece)
        always, int8's 4 a piece up to 4 pieces a thread (at block_n = 256 ptxas would spill)."""
        return self.kind == "int4" or self.cfg.units <= 4

    @property
    def prefetch_groups(self) -> bool:
        """Load stage k + 1's scales (and zero points) with its words, so that their latency too hides
        behind stage k's dequantization: int4 with one group a stage (group size 64 or 128: one register
        a piece, two with zero points, which at 8 pieces a thread (block_n 256) make ptxas spill, as
        do group size 32's two groups a stage); otherwise the scales load after the acquire."""
        return self.kind == "int4" and self.groups == 1 and (not self.has_zeros or self.cfg.units <= 4)

    @property
    def ring(self):
        """The mbarrier ring: the empty barriers count every consumer thread."""
        return tiles.Ring(self.cfg.stages, kind="mbarrier", arrivals=128 * self.cfg.consumers)

    @property
    def groups(self) -> int:
        """Groups a 64-k stage's word pair spans: 2 when groups are 32 wide (one a word), else 1."""
        return 2 if self.group_size == 32 else 1


@kaiodsl.func
def _piece(tid, r: kaiodsl.Const[int]):
    """(row tile, lane, row) of producer thread tid's piece r (piece u = tid + 128 r) of a stage's B tile: lane l of 8-row tile i owns row 8 i + l // 4.
    Thread p of a warp takes packed lane ``4 g + p % 4`` with ``g = p // 8 + 4 ((p // 4) % 2)``: a 16-byte
    store phase (8 threads) then covers rows g and g + 4, whose swizzled chunks ``(4 ww + t) ^ g`` are 8
    different bank groups (with g, g + 1 they would be 4: a 2-way conflict). The warp still loads one
    512-byte tile."""
    p = tid % 32                             # the same for every r: 128 pieces a round
    g = p // 8 + 4 * ((p // 4) % 2)
    i = tid // 32 + (PRODUCERS // 32) * r
    return i, 4 * g + p % 4, 8 * i + g


@kaiodsl.func
def _fetch_b(D: kaiodsl.Const, wp, kt, K, n0, N, tid):
    """The producer thread's share of stage kt's weights in registers (_fetch_b4 or _fetch_b8)."""
    if D.kind == "int8":
        return _fetch_b8(D, wp, kt, K, n0, N, tid)
    return _fetch_b4(D, wp, kt, K // 128, n0, N, tid)


@kaiodsl.func
def _fetch_b4(D: kaiodsl.Const, wp, kt, KB, n0, N, tid):
    """This producer thread's share of stage kt's packed B tile, loaded into registers: for each of its
    ``units`` pieces the 2 words (zeros past N). Issued a stage ahead of its use, so the loads'
    latency hides behind the previous stage's dequantization."""
    half = 2 * (kt % 2)                      # words 0, 1 (even k stage) or 2, 3 (odd) of the lane's 4
    out = []
    for r in kaiodsl.static_range(D.cfg.units):
        i, lane, row = _piece(tid, r)
        out = out + [kaiodsl.load(wp, ((i64(n0 // 8 + i) * KB + kt // 2) * 32 + lane) * 4 + half, vec=2,
                                  cache="nc", mask=n0 + row < N, other=0)]
    return out


@kaiodsl.func
def _fill_b(D: kaiodsl.Const, smem, stage_off, words, scales, zeros, kt, G, n0, N, tid):
    """Dequantize the fetched words of stage kt into the slot's B tile at element offset stage_off."""
    if D.kind == "int8":
        _store_b8(D, smem, stage_off, words, _group_raw8(D, scales, kt, G, n0, N, tid), tid)
    else:
        _store_b(D, smem, stage_off, words, _group_raw(D, scales, zeros, kt, G, n0, N, tid), tid)


@kaiodsl.func
def _group_raw(D: kaiodsl.Const, scales, zeros, kt, G, n0, N, tid):
    """The raw scales and zero points of the thread's pieces' groups in stage kt (``D.groups`` each),
    every load issued before any is used."""
    g0 = kt + kt if D.group_size == 32 else kt // (D.group_size // 64)    # the group of word 0
    out = []
    for r in kaiodsl.static_range(D.cfg.units):
        i, lane, row = _piece(tid, r)
        ok = n0 + row < N
        at = i64(n0 + row) * G + g0
        sc = [kaiodsl.load(scales, at + e, cache="nc", mask=ok, other=0) for e in range(D.groups)]
        zp = [kaiodsl.load(zeros, at + e, cache="nc", mask=ok, other=0) for e in range(D.groups)] \
            if D.has_zeros else []
        out = out + [(sc, zp)]
    return out


@kaiodsl.func
def _store_b(D: kaiodsl.Const, smem, stage_off, words, groups, tid):
    """Dequantize _fetch_b's words with _group_raw's constants (``(q - zero) * scale``, zero 8 without
    zero points; tiles.dequant.int4_pair) into the slot's B tile at element offset ``stage_off`` of the
    ring: word ww of a piece is f16 chunk 4 ww + lane % 4 of its row, stored swizzled as TMA would."""
    H2 = D.h2
    MAGIC_BITS, MAGIC_F = D.magic
    for r in kaiodsl.static_range(D.cfg.units):
        i, lane, row = _piece(tid, r)
        sc, zp = groups[r]
        for ww in kaiodsl.static_range(2):
            e = ww if D.groups == 2 else 0
            if ww == 0 or D.groups == 2:
                sb = kaiodsl.bitcast(sc[e], kaiodsl.u16)
                s2 = kaiodsl.bitcast(kaiodsl.pack_b32(sb, sb), H2)
                zf = MAGIC_F + 8.0
                if D.has_zeros:
                    zf = MAGIC_F + kaiodsl.f32(zp[e])
                zz = kaiodsl.pack_half2(zf, zf, H2)
            h = [kaiodsl.bitcast(int4_pair(words[r][ww], j, zz, s2, MAGIC_BITS, H2), u32) for j in range(4)]
            dst = kaiodsl.ptr_cast(chunk_ptr(smem, D.b_tile, row, 4 * ww + lane % 4) + stage_off, u32)
            kaiodsl.store(dst, 0, (h[0], h[1], h[2], h[3]), vec=4)


# -- int8 (W8A16): rows of plain int8, 64 bytes a stage --------------------------------------------------
@kaiodsl.func
def _piece8(u):
    """(row, quarter) of piece u of a stage's int8 B tile: 4 consecutive threads read a row's 64 bytes."""
    return u // 4, u % 4


@kaiodsl.func
def _fetch_b8(D: kaiodsl.Const, wp, kt, K, n0, N, tid):
    """This producer thread's share of stage kt's int8 rows: per piece the 16 bytes of k
    ``64 kt + 16 q ..`` of row n0 + row (zeros past N and K; K is a multiple of 16)."""
    out = []
    for r in kaiodsl.static_range(D.cfg.units):
        row, q = _piece8(tid + PRODUCERS * r)
        k = kt * BK + 16 * q
        out = out + [kaiodsl.load(wp, i64(n0 + row) * (K // 4) + k // 4, vec=4, cache="nc",
                                  mask=n0 + row < N and k < K, other=0)]
    return out


@kaiodsl.func
def _group_raw8(D: kaiodsl.Const, gscales, kt, G, n0, N, tid):
    """Grouped int8: the raw scale of each piece's group in stage kt (groups of 64, 128 or 256 k: one
    group a stage); per-channel: nothing (the epilogue scales)."""
    out = []
    for r in kaiodsl.static_range(D.cfg.units):
        row, q = _piece8(tid + PRODUCERS * r)
        if D.group_size:
            out = out + [kaiodsl.load(gscales, i64(n0 + row) * G + kt // (D.group_size // BK), cache="nc",
                                      mask=n0 + row < N, other=0)]
        else:
            out = out + [0]
    return out


@kaiodsl.func
def _store_b8(D: kaiodsl.Const, smem, stage_off, words, groups, tid):
    """int8 words to f16/bf16 (tiles.dequant.int8_quad: exact integers, or times the group scale
    rounded once) into chunks 2 q and 2 q + 1 of the piece's row, stored swizzled as TMA would."""
    H2 = D.h2
    IS_F16 = D.dtype_name == "f16"
    for r in kaiodsl.static_range(D.cfg.units):
        row, q = _piece8(tid + PRODUCERS * r)
        s = 0
        if D.group_size:
            if IS_F16:
                sb = kaiodsl.bitcast(groups[r], kaiodsl.u16)
                s = kaiodsl.bitcast(kaiodsl.pack_b32(sb, sb), H2)
            else:
                s = kaiodsl.f32(groups[r])
        for half in kaiodsl.static_range(2):
            lo0, hi0 = int8_quad(words[r][2 * half], s, D.group_size > 0, IS_F16, H2)
            lo1, hi1 = int8_quad(words[r][2 * half + 1], s, D.group_size > 0, IS_F16, H2)
            dst = kaiodsl.ptr_cast(chunk_ptr(smem, D.b_tile, row, 2 * q + half) + stage_off, u32)
            kaiodsl.store(dst, 0, (kaiodsl.bitcast(lo0, u32), kaiodsl.bitcast(hi0, u32), kaiodsl.bitcast(lo1, u32),
                                   kaiodsl.bitcast(hi1, u32)), vec=4)


@kaiodsl.func
def _body(D: kaiodsl.Const, E: kaiodsl.Const, ta, w, scales, zeros, c, args, M, N, K):
    """The persistent warp-specialised kernel (module doc) for weights ``D`` and epilogue ``E`` (run-time
    operands ``args``): ``scales``, ``zeros`` the group scales and zero points (unused where D has none).
    With E a ``Segments``, ``w``, ``scales``, ``zeros`` and ``c`` are one per segment."""
    cfg = D.cfg
    SEGS = E.parts if isinstance(E, seg.Segments) else ()
    BM, BN, S, GM, GS = cfg.block_m, cfg.block_n, cfg.stages, cfg.group_m, D.group_size
    W = tiles.WarpgroupMma(D.dtype_name, BN, ROW_BYTES, cfg.wg_rows // 64)
    R = D.ring
    A_ELEMS = BM * BK
    STAGE_ELEMS = A_ELEMS + BN * BK
    A_BYTES = A_ELEMS * 2
    WG_ELEMS = cfg.wg_rows * BK
    smem = kaiodsl.dynamic_shared(f16, align=1024)
    bars = kaiodsl.shared_array(u64, (R.barriers,), align=8, name="ring")
    tid = kaiodsl.thread_idx.x
    wg = tid // 128
    if tid == 0:
        kaiodsl.tma_prefetch(ta)
        for i in kaiodsl.static_range(S):        # full: the 128 producer threads (+ A's bytes)
            kaiodsl.mbarrier_init(bars.ptr(i), PRODUCERS)
            kaiodsl.mbarrier_init(bars.ptr(S + i), R.arrivals)
        kaiodsl.fence_mbarrier_init()
    kaiodsl.syncthreads()
    total = ((M + BM - 1) // BM) * ((N + BN - 1) // BN)
    ktiles = (K + BK - 1) // BK
    G = K // max(GS, 1)                     # groups a row (unused per-channel)
    first, step = kaiodsl.block_idx.x, kaiodsl.grid_dim.x
    if wg == 0:
        state = tiles.pipeline.start(R)
        for t in range(first, total, step):
            m0, n0 = tiles.gemm.tile_coords_of(t, M, N, BM, BN, GM)
            wt, sc, zp, bn0, bN = w, scales, zeros, n0, N
            if SEGS:              # the weights, scales, zeros and rows of the segment holding the tile
                (wt, sc, zp), bn0, bN = seg.segment_of(SEGS, (w, scales, zeros), n0)
            wp = kaiodsl.ptr_cast(wt, u32)
            cur = _fetch_b(D, wp, 0, K, bn0, bN, tid)          # (not used without prefetch)
            cg = _group_raw(D, sc, zp, 0, G, bn0, bN, tid) if D.prefetch_groups else 0
            for kt in range(ktiles):
                if D.prefetch:    # the next stage's words (the last stage's again at the end: in range)
                    nxt = _fetch_b(D, wp, min(kt + 1, ktiles - 1), K, bn0, bN, tid)
                else:             # this stage's, in flight during the acquire
                    cur = _fetch_b(D, wp, kt, K, bn0, bN, tid)
                    nxt = cur
                ng = _group_raw(D, sc, zp, min(kt + 1, ktiles - 1), G, bn0, bN, tid) if D.prefetch_groups else 0
                tiles.pipeline.acquire(R, state, bars)
                index, phase = state
                if tid == 0:
                    kaiodsl.mbarrier_expect_tx(bars.ptr(index), A_BYTES)
                    kaiodsl.tma_load(smem.ptr(index * STAGE_ELEMS), ta, (m0, kt * BK), bars.ptr(index))
                if D.prefetch_groups:
                    _store_b(D, smem, index * STAGE_ELEMS, cur, cg, tid)
                else:             # the scales load in here (before the acquire: ptxas spilled at g32 + zeros)
                    _fill_b(D, smem, index * STAGE_ELEMS, cur, sc, zp, kt, G, bn0, bN, tid)
                kaiodsl.fence_proxy_async()          # the B stores before wgmma (async proxy) reads them
                kaiodsl.mbarrier_arrive(bars.ptr(index))
                state = tiles.pipeline.advance(R, state)
                cur = nxt
                cg = ng
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



@lru_cache(maxsize=None)
def w4_sm90_kernel(dtype_name: str, group_size: int, has_zeros: bool, cfg: W4Config, wdtype: str = "i32"):
    """The kernel for ``dtype_name`` activations, int4 groups of ``group_size`` (with zero points or the
    default 8) and tiling ``cfg``; packed words arrive as ``wdtype`` (i32 from pack_int4, or u32)."""
    cfg.check()
    T = {"f16": f16, "bf16": bf16}[dtype_name]
    D = W4Dequant(cfg, dtype_name, group_size, has_zeros)
    WT = {"i32": i32, "u32": u32}[wdtype]
    E = tiles.Epilogue((), T)
    name = f"w4a16_sm90_{dtype_name}_g{group_size}" + ("_zp" if has_zeros else "") + f"_{cfg}_{wdtype}" \
        .replace("/", "_")

    @kaiodsl.kernel(block_size=cfg.threads, name=name)
    def kern(ta: TensorMap, w: Ptr[WT], scales: Ptr[T], zeros: Ptr[u8], c: Ptr[T], M: i32, N: i32, K: i32):
        _body(D, E, ta, w, scales, zeros, c, (), M, N, K)

    return kern


def sm90_w4_plan(op: str, M: int, N: int, K: int, wanted: bool, parallelism, a_align: int,
                 config: W4Config | None):
    """The checked tiling when ``op`` (matmul_int4 or matmul_w8a16, arguments validated) runs this
    kernel, else None: ``config`` forces it (ArgumentError where it cannot run), otherwise ``wanted``
    (use_sm90_w4 / use_sm90_w8) decides. ``a_align``: the power of two dividing the data addresses of
    a (TMA needs 16) and of int8 weights (16-byte loads)."""
    from kaiodsl.compiler import default_arch

    from ._common import require_smem

    if config is None:
        if parallelism is not None or a_align < 16 or not wanted:
            return None
        config = w4_config(M, N, K, sm_count())
    elif not isinstance(config, W4Config):
        raise ArgumentError(f"{op}(): config must be a gemm_sm90_w4.W4Config or None, got {config!r}")
    elif default_arch() != "sm_90a":
        raise ArgumentError(f"{op}(): config {config} is the sm_90a kernel (TMA, wgmma); the current target is "
                            f"{default_arch()}: leave config unset")
    elif parallelism is not None:
        raise ArgumentError(f"{op}(): config {config} (the sm_90a kernel) and parallelism={parallelism!r} (the "
                            f"decode kernel) exclude each other: pass one")
    elif a_align < 16:
        raise ArgumentError(f"{op}(): config {config} is the sm_90a kernel, which needs its operands on 16-byte "
                            f"boundaries (TMA, 16-byte loads); they are {a_align}-byte aligned")
    try:
        config.check()
    except ArgumentError as e:
        raise ArgumentError(f"{op}(): config: {e}") from None
    require_smem(op, f"config {config}", config.smem_bytes() + 1024)
    return config


def launch_w4_sm90(a, w_packed, scales, z, out, M: int, N: int, K: int, dtype_name: str, group_size: int,
                   has_zeros: bool, wdtype: str, cfg: W4Config):
    """matmul_int4's sm_90a path (arguments validated by matmul_int4, ``cfg`` from sm90_w4_plan; ``z``
    the zero points or a 1-element placeholder)."""
    ta = TensorMap(a, (cfg.block_m, BK), swizzle=128, l2_promotion=256)
    total = -(-M // cfg.block_m) * -(-N // cfg.block_n)
    k = w4_sm90_kernel(dtype_name, group_size, has_zeros, cfg, wdtype)
    k[min(total, sm_count()), cfg.threads](ta, w_packed, scales, z, out, M, N, K, smem=cfg.smem_bytes())
    return out


# -- W8A16 (ops.matmul_w8a16's sm_90a path) --------------------------------------------------------------
def use_sm90_w8(M: int, N: int, K: int) -> bool:
    """Whether matmul_w8a16 takes this kernel: on sm_90a past the decode sizes, as use_sm90_w4."""
    from kaiodsl.compiler import default_arch
    return default_arch() == "sm_90a" and M > 64 and K % 16 == 0


@lru_cache(maxsize=None)
def w8_sm90_kernel(dtype_name: str, out_name: str, group_size: int, has_bias: bool, cfg: W4Config):
    """W8A16 with int8 ``w [N, K]`` rows: ``group_size`` 0 (per-channel f32 scales [N], applied in the
    epilogue, as ops/matmul_w8a16.py does) or 64/128/256 (scales [N, K // group_size] in the activation
    dtype, multiplied in while dequantizing); optional f32 bias; out f16/bf16/f32."""
    cfg.check()
    T = {"f16": f16, "bf16": bf16}[dtype_name]
    OUT = {"f16": f16, "bf16": bf16, "f32": f32}[out_name]
    D = W4Dequant(cfg, dtype_name, group_size, False, "int8")
    E = tiles.Epilogue((() if group_size else (tiles.ColScale(),)) + ((tiles.Bias(),) if has_bias else ()), OUT)
    name = f"w8a16_sm90_{dtype_name}_{out_name}" + (f"_g{group_size}" if group_size else "_pc") + \
        ("_bias" if has_bias else "") + f"_{cfg}".replace("/", "_")

    @kaiodsl.kernel(block_size=cfg.threads, name=name)
    def kern(ta: TensorMap, w: Ptr[i8], scales: Ptr[f32], gscales: Ptr[T], c: Ptr[OUT], bias: Ptr[f32],
             M: i32, N: i32, K: i32):
        args = ((scales,) if not group_size else ()) + ((bias,) if has_bias else ())
        _body(D, E, ta, w, gscales, gscales, c, args, M, N, K)

    return kern


def launch_w8_sm90(a, w_q, pc, gsc, out, bias, M: int, N: int, K: int, dtype_name: str, out_name: str,
                   group_size: int, has_bias: bool, cfg: W4Config):
    """matmul_w8a16's sm_90a path (arguments validated there; ``pc`` the per-channel f32 scales or a
    placeholder, ``gsc`` the group scales or a placeholder; ``cfg`` from sm90_w4_plan)."""
    ta = TensorMap(a, (cfg.block_m, BK), swizzle=128, l2_promotion=256)
    total = -(-M // cfg.block_m) * -(-N // cfg.block_n)
    k = w8_sm90_kernel(dtype_name, out_name, group_size, has_bias, cfg)
    k[min(total, sm_count()), cfg.threads](ta, w_q, pc, gsc, out, bias, M, N, K, smem=cfg.smem_bytes())
    return out


# -- segments (ops/gemm_sm90_segments.py): several weights and outputs in one launch (the fused QKV) ---------
SEGMENT_ARGS = 9           # epilogue operand slots: per-channel scales, biases and rope's 3 of q, k, v


@lru_cache(maxsize=None)
def w4_segments_kernel(D: W4Dequant, E: seg.Segments, wdtype: str, arg_types: tuple):
    """The kernel for weights ``D`` (int4 words as ``wdtype`` i32/u32, or int8 "i8") with segments ``E``:
    per segment its weights, scales, zero points and output; ``arg_types`` the kaiodsl types of the
    epilogues' run-time operands (at most SEGMENT_ARGS, shared through the segments' indices)."""
    cfg = D.cfg
    cfg.check()
    E.checked(cfg, len(arg_types), SEGMENT_ARGS)
    T = {"f16": f16, "bf16": bf16}[D.dtype_name]
    WT = {"i32": i32, "u32": u32, "i8": i8}[wdtype]
    O0, O1, O2 = (E.outs + (E.out,) * seg.MAX_SEGMENTS)[:seg.MAX_SEGMENTS]
    T0, T1, T2, T3, T4, T5, T6, T7, T8 = (tuple(arg_types) + (Ptr[f32],) * SEGMENT_ARGS)[:SEGMENT_ARGS]
    kind = f"w8a16_{D.dtype_name}" if D.kind == "int8" else f"w4a16_{D.dtype_name}_g{D.group_size}"
    name = (f"{kind}_sm90" + ("_zp" if D.has_zeros else "") + f"_{cfg}_{wdtype}").replace("/", "_") + E.tag

    @kaiodsl.kernel(block_size=cfg.threads, name=name)
    def kern(ta: TensorMap, w0: Ptr[WT], w1: Ptr[WT], w2: Ptr[WT], s0: Ptr[T], s1: Ptr[T], s2: Ptr[T],
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
    fill = [dummy] * (SEGMENT_ARGS - len(args))
    total = -(-M // cfg.block_m) * (E.width // cfg.block_n)
    k = w4_segments_kernel(D, E, wdtype, arg_types)
    k[min(total, sm_count()), cfg.threads](ta, *ws, *scales, *zeros, *outs, *args, *fill, M, E.width, K,
                                           smem=cfg.smem_bytes())
    return tuple(outs[:len(outs) - pad])
