"""The Hopper flash-attention forward (sm_90a): warp-specialised, TMA into mbarrier rings, wgmma.

FlashAttention-3's structure (Shah et al. 2024, section 3.1) on the tile library, for f16/bf16 with
head dim 64 or 128. A work unit is 128 query rows of one (batch, head); a block is three warpgroups
and, persistent (the default), one block an SM walks units ``blockIdx.x, + gridDim.x, ...``:

* **Producer** (warpgroup 0) gives its registers back (``setmaxnreg.dec``); one thread loads each
  unit's Q tile into a one-slot ring (refilled once both consumers released it: under the previous
  unit's last P V and epilogue) and streams the unit's key tiles: per tile it acquires a slot
  of the K ring and of the V ring (``tiles.pipeline``, ``kind="mbarrier"``), announces the bytes and
  issues the TMA boxes. K and V have separate rings so that S = Q K^T can start before V has landed;
  the rings' states run on from unit to unit.
* **Consumers** (warpgroups 1 and 2, ``setmaxnreg.inc``) own 64 query rows each. Per key tile:
  S = Q K^T with wgmma SS (both K-major: rows of D), the K slot released once that wgmma completed;
  the mask (only on tiles that cross the causal diagonal or the end of the keys); the exp2 online
  softmax of ``tiles.softmax`` on the accumulator (a warp's 16 rows are the m16n8 C layout repeated
  along N, ``tiles.warpgroup.acc_tile``); O rescaled by alpha; then O += P V with wgmma RS: P
  converted in registers to the A fragment (``tiles.fragments.to_a``: the wgmma register A operand
  is the mma.m16n8k16 A layout per warp) and V, a row-major [keys, D] tile, read as the MN-major B
  operand (``trans_b``, ``wgmma_desc(major="mn")``); the V slot released after that wgmma.
* **Epilogue** straight from the accumulators: O / l (0 for a row that saw no key) in q's dtype,
  rows past Sq skipped, and the natural-log LSE.

Shared memory, all 128-byte swizzled by TMA (rows of D = 64 are one 128-byte atom; D = 128 is two
[rows, 64] column blocks side by side, each its own box, which the K-major k loop and the MN-major
descriptor's LBO both walk): Q [2 consumers][D / 64][64][64], then ``stages`` K slots and ``stages``
V slots of [D / 64][bn][64]. Tensor maps are 4-d over the [B, H, S, D] arrays with boxes
[1, 1, rows, 64], so rows past a head's S are zero-filled (never another head's data).

Unit order (``_tile``): heads in sections whose K/V fit in half the L2 (``heads_per_section``), and
inside a section the longest causal query tiles first, all the section's heads at one query tile
before the next shorter one: the units running at once share K/V in L2 and the short causal units
come last. Causal: a unit reads keys below its last row's diagonal only.
Intra-warpgroup overlap (``overlap``) and inter-warpgroup ping-pong (``pingpong``) are FA3's
sections 3.1-3.2. The same producer and consumers run the e4m3 kernel of ops/attention_sm90_fp8.py
(``Layout(elem="e4m3")``: one D-byte box a Q/K row, V^T tiles, e4m3 wgmmas, P packed by ``to_a8``).
"""


import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

import kaiodsl
from kaiodsl import Const, Ptr, TensorMap, bf16, bf16x2, e4m3, f16, f16x2, f32, i32, i64, tiles, u64
from kaiodsl.errors import ArgumentError
from kaiodsl.tiles import fragments, pipeline, softmax

from ._common import _c_strides, tickets
from .attention_fwd import visible

# Row indices are i32 products (q tile x 128) that check_qkv bounds: S < 2^23, so rows stay far
# inside i32 and every pointer offset built from them is widened to 64 bits before the multiply.
warnings.filterwarnings("ignore", category=kaiodsl.errors.IndexOverflowWarning, module=r"kaiodsl\.ops\.attention_sm90$")

NEG_INF = -float("inf")
COLS = 64                  # elements of D per 128-byte swizzled column block (one TMA box wide)
FP8_K = 32                 # e4m3 k a wgmma step: 32 bytes of a row; also the unit of V^T's key order
BLOCK_Q = 128              # query rows a block: two consumer warpgroups of 64
THREADS = 384              # producer + 2 consumers
PROD_REGS, CONS_REGS = 24, 240     # 24 x 128 + 240 x 256 <= 64K registers an SM
SMEM_LIMIT = 227 * 1024 - 1024     # an sm_90 block's dynamic shared memory, less the barriers' share


@dataclass(frozen=True)
class Sm90AttnConfig:
    """``bn`` keys a tile (a multiple of 16 up to 256: one wgmma N for S, the k extent of P V),
    ``stages`` slots in each of the K and V rings, ``overlap`` the pipelined consumer schedule,
    ``pingpong`` the consumers' alternation (FA3 section 3.1: one warpgroup's softmax runs while the
    other's wgmmas do), ``persistent`` a grid of one block an SM that walks the work units (the next
    unit's Q and first K/V tiles load under the current one's epilogue), statically (units
    ``blockIdx.x + i gridDim.x``) or, ``dynamic``, each block claiming its next unit from a counter as
    it starts the current one (``_next_unit``)."""

    bn: int = 128
    stages: int = 2
    overlap: bool = True     # softmax of tile j while P V of tile j - 1 runs (see _consume)
    pingpong: bool = False   # the two consumers take turns issuing their wgmmas (named barriers);
                             # the default chooser sm90_attn_config turns it on
    persistent: bool = True  # one block an SM walking the work units (False: one block a unit)
    dynamic: bool = False    # persistent blocks claim their next unit from an atomic counter (_next_unit)
    lazy: bool = True        # O rescaled only when a row's max grows by more than 2^8 (softmax.lazy_update)

    def __post_init__(self):
        if not (type(self.bn) is int and 16 <= self.bn <= 256 and self.bn % 16 == 0):
            raise ArgumentError(f"Sm90AttnConfig: bn must be a multiple of 16 in 16..256, got {self.bn!r}")
        if not (type(self.stages) is int and self.stages >= 1):
            raise ArgumentError(f"Sm90AttnConfig: stages must be a positive int, got {self.stages!r}")
        for name in ("overlap", "pingpong", "persistent", "dynamic", "lazy"):
            if not isinstance(getattr(self, name), bool):
                raise ArgumentError(f"Sm90AttnConfig: {name} must be a bool, got {getattr(self, name)!r}")
        if self.pingpong and not self.overlap:
            raise ArgumentError("Sm90AttnConfig: pingpong=True needs overlap=True (the pipelined schedule)")
        if self.dynamic and not self.persistent:
            raise ArgumentError("Sm90AttnConfig: dynamic=True needs persistent=True (the blocks that claim units)")

    def smem_bytes(self, d: int) -> int:
        return 2 * (BLOCK_Q * d + 2 * self.stages * self.bn * d)

    def __str__(self) -> str:
        return (f"k{self.bn}s{self.stages}" + ("" if self.overlap else "_serial") + ("_pp" if self.pingpong else "")
                + ("" if self.persistent else "_np") + ("_dyn" if self.dynamic else "") + ("" if self.lazy else "_eager"))


def sm90_attn_config(d: int, sk: int = 4096, causal: bool = False) -> Sm90AttnConfig:
    """The consumers in ping-pong with 2-slot rings and the lazy rescale. Non-causal: static persistent
    blocks, 160-key tiles from 2048 keys (shorter rows waste more of the last tile). Causal units differ
    in length: the dynamic schedule (blocks claim the next longest unit as they free up) with 192-key
    tiles at D 64 from 2048 keys (128 below) and 128-key tiles at D 128 below 4096 keys; at D 128 from 4096 keys one block a unit
    (the hardware hands out the units) with 160-key tiles. H200, interleaved A/B against cuDNN
    (benchmarks/results/logs/attn_schedule_ab_2026-12-02e.log, ratios to cuDNN): D 128 causal S 2048
    k128 dynamic 0.97, k160 one block a unit 0.93, k160 static 0.92; S 4096 / 8192 one block a unit
    1.03 / 1.07, k160 dynamic 1.01 / 1.04, static 0.97 / 0.96; D 64 causal S 4096 k192 dynamic 0.96,
    one block a unit 0.93; non-causal static and dynamic within 0.02 of each other at every shape."""
    if causal and d == 64:
        return Sm90AttnConfig(bn=192 if sk >= 2048 else 128, stages=2, pingpong=True, dynamic=True)
    if causal and sk < 4096:
        return Sm90AttnConfig(bn=128, stages=2, pingpong=True, dynamic=True)
    bn = 160 if sk >= 2048 else 128
    return Sm90AttnConfig(bn=bn, stages=2, pingpong=True, persistent=not causal)


@dataclass(frozen=True)
class Layout:
    """The compile-time shape of one kernel: ``dtype`` is the output's (and, for f16/bf16, the
    operands'); ``elem`` "e4m3" for the fp8 kernel (ops/attention_sm90_fp8.py), whose Q/K rows are one
    D-byte swizzled block and whose V comes transposed (V^T [D, keys], in column blocks of ``vw`` keys).
    Shared-memory offsets are in elements of the operands (2 bytes, or 1 for e4m3)."""

    d: int
    dtype: object
    cfg: Sm90AttnConfig
    causal: bool
    elem: str = ""

    @property
    def fp8(self) -> bool:
        return self.elem == "e4m3"

    @property
    def eb(self) -> int:
        """Bytes an operand element."""
        return 1 if self.fp8 else 2

    @property
    def blocks(self) -> int:
        """64-column blocks of D (f16/bf16)."""
        return self.d // COLS

    @property
    def q_elems(self) -> int:
        return BLOCK_Q * self.d

    @property
    def kv_elems(self) -> int:
        """One K (or V) slot."""
        return self.cfg.bn * self.d

    @property
    def vw(self) -> int:
        """e4m3: keys (bytes) of one V^T column block, its TMA box width and swizzle."""
        return next(w for w in (128, 64, 32) if self.cfg.bn % w == 0)

    @property
    def s_wg(self):
        if self.fp8:
            return tiles.WarpgroupMma("e4m3", self.cfg.bn, self.d, 1, swizzle=self.d)
        return tiles.WarpgroupMma(self.dtype.name, self.cfg.bn, 2 * COLS, 1)

    @property
    def o_wg(self):
        if self.fp8:
            return tiles.WarpgroupMma("e4m3", self.d, self.vw, 1, swizzle=self.vw)
        return tiles.WarpgroupMma(self.dtype.name, self.d, 2 * COLS, 1)

    @property
    def h2(self):
        return f16x2 if self.dtype == f16 else bf16x2


@kaiodsl.func
def _tile(t, nqb, BH, hps, H):
    """Work unit t -> (b, h, q tile): heads in sections of ``hps`` (their K/V together fit in L2), and
    inside a section the longest causal query tiles first, every head of the section at one q tile
    before the next shorter one."""
    sec = t // (hps * nqb)
    hs = min(hps, BH - sec * hps)
    r = t - sec * hps * nqb
    qb = nqb - 1 - r // hs
    bh = sec * hps + r % hs
    b = bh // H
    return bh, b, bh - b * H, qb


@kaiodsl.func
def _unit(L: Const, t, nqb, BH, hps, H, Sk, shift):
    """Work unit t -> (bh, b, h, its first query row, the keys it sees, its key tiles): causal rows end
    at their diagonal (the last row sees keys <= q0 + 127 + shift)."""
    bh, b, h, qb = _tile(t, nqb, BH, hps, H)
    q0 = qb * BLOCK_Q
    kend = Sk
    if L.causal:
        kend = max(min(Sk, q0 + BLOCK_Q + shift), 0)
    return bh, b, h, q0, kend, (kend + L.cfg.bn - 1) // L.cfg.bn


@kaiodsl.func
def _rows_load(L: Const, smem, at, rows: Const, tmap, b, h, row0, bar):
    """``rows`` rows of D from row ``row0`` of head (b, h) into shared memory at element ``at``: one D-byte
    box (e4m3), or D / 64 boxes of 64 columns side by side ([D / 64][rows][64], f16/bf16:
    ``tiles.warpgroup.load_blocks``)."""
    if L.fp8:
        kaiodsl.tma_load(smem.ptr(at), tmap, (b, h, row0, 0), bar)
    else:
        tiles.warpgroup.load_blocks(smem, at, rows, L.blocks, tmap, b, h, row0, bar)


@kaiodsl.func
def _next_unit(L: Const, sched, t):
    """The unit this block takes after unit t: t + gridDim.x (static), or, ``dynamic``, gridDim.x plus
    a ticket from the counter ``sched[0]`` (the units below gridDim.x are the blocks' first ones), so
    whichever block frees up first takes the next longest unit. Every block draws until its ticket is
    past the last unit: a launch draws exactly (units) tickets, and ``_retire`` resets the counter."""
    if L.cfg.dynamic:
        return kaiodsl.grid_dim.x + kaiodsl.atomic_add(sched, 0, 1)
    return t + kaiodsl.grid_dim.x


@kaiodsl.func
def _retire(L: Const, sched):
    """Dynamic schedule, the producer thread once its block drew its last ticket: count the block out
    (``sched[1]``); the last block out resets both counters for the next launch (every block's last
    draw happened before its count, gpu-scope fences between)."""
    if L.cfg.dynamic:
        kaiodsl.fence()
        if kaiodsl.atomic_add(sched, 1, 1) == kaiodsl.grid_dim.x - 1:
            kaiodsl.fence()
            sched[0] = 0
            sched[1] = 0


@kaiodsl.func
def _produce_unit(L: Const, tq, tk, tv, smem, qbars, kbars, vbars, RQ: Const, RK: Const, RV: Const, qs, ks, vs, t,
                  nqb, BH, hps, H, group, Sk, shift, sched, slot):
    """Unit t: Q into its slot (once the consumers released the previous unit's; ``dynamic``: t written
    beside it, published by the slot's arrive), the next unit's ticket, then the unit's key tiles into
    the K and V rings (each slot waits for its release). Returns the ring states and the next unit."""
    cfg = L.cfg
    bh, b, h, q0, kend, nb = _unit(L, t, nqb, BH, hps, H, Sk, shift)
    hk = h // group
    pipeline.acquire(RQ, qs, qbars)
    if cfg.dynamic:
        slot[0] = t
    pipeline.commit(RQ, qs, qbars, L.q_elems * L.eb)
    for cw in kaiodsl.static_range(2):
        _rows_load(L, smem, cw * 64 * L.d, 64, tq, b, h, q0 + 64 * cw, qbars.ptr(0))
    qs = pipeline.advance(RQ, qs)
    nxt = _next_unit(L, sched, t)        # drawn now: the atomic's latency hides under the key tiles
    for j in range(nb):
        pipeline.acquire(RK, ks, kbars)
        index, phase = ks
        pipeline.commit(RK, ks, kbars, L.kv_elems * L.eb)
        _rows_load(L, smem, L.q_elems + index * L.kv_elems, cfg.bn, tk, b, hk, j * cfg.bn, kbars.ptr(index))
        ks = pipeline.advance(RK, ks)
        pipeline.acquire(RV, vs, vbars)
        index, phase = vs
        pipeline.commit(RV, vs, vbars, L.kv_elems * L.eb)
        vslot = L.q_elems + (cfg.stages + index) * L.kv_elems
        if L.fp8:                   # V^T [D, keys]: column blocks of vw keys
            for c in kaiodsl.static_range(cfg.bn // L.vw):
                kaiodsl.tma_load(smem.ptr(vslot + c * L.d * L.vw), tv, (b, hk, 0, j * cfg.bn + c * L.vw),
                                 vbars.ptr(index))
        else:
            _rows_load(L, smem, vslot, cfg.bn, tv, b, hk, j * cfg.bn, vbars.ptr(index))
        vs = pipeline.advance(RV, vs)
    return qs, ks, vs, nxt


@kaiodsl.func
def _produce(L: Const, tq, tk, tv, smem, qbars, kbars, vbars, RQ: Const, RK: Const, RV: Const, nqb, BH, hps, H,
             group, Sk, shift, sched, slot):
    """One thread, over this block's work units (``_produce_unit``). Dynamic: a block walks its tickets
    until one is past the last unit, then hands the consumers that end (the unit count in the Q slot,
    with a plain arrive: no bytes) and retires."""
    qs = pipeline.start(RQ)
    ks = pipeline.start(RK)
    vs = pipeline.start(RV)
    total = nqb * BH
    if L.cfg.dynamic:
        t = kaiodsl.block_idx.x
        while t < total:
            qs, ks, vs, t = _produce_unit(L, tq, tk, tv, smem, qbars, kbars, vbars, RQ, RK, RV, qs, ks, vs, t, nqb,
                                          BH, hps, H, group, Sk, shift, sched, slot)
        pipeline.acquire(RQ, qs, qbars)
        slot[0] = total
        kaiodsl.mbarrier_arrive(qbars.ptr(0))
        _retire(L, sched)
    else:
        for t in range(kaiodsl.block_idx.x, total, kaiodsl.grid_dim.x):
            qs, ks, vs, _ = _produce_unit(L, tq, tk, tv, smem, qbars, kbars, vbars, RQ, RK, RV, qs, ks, vs, t,
                                          nqb, BH, hps, H, group, Sk, shift, sched, slot)   # the grid walk: no ticket


@kaiodsl.func
def _s_issue(L: Const, smem, cw, kslot, s):
    """Issue S = Q K^T for this consumer's 64 rows (raw units) as one commit group; returns it pending.
    Both operands K-major: f16/bf16 4 k16 steps of 32 bytes in each 128-byte swizzled column block of
    D (``tiles.warpgroup.mma_ss_blocks``); e4m3 D / 32 k32 steps along the D-byte swizzled rows. ``s``
    is a dead accumulator (the previous tile's S): the first wgmma does not read it (scale_d=False),
    so the new S lands in its registers with no zeroing moves."""
    if L.fp8:
        kaiodsl.wgmma_fence()
        da0 = kaiodsl.wgmma_desc(smem.ptr(cw * 64 * L.d), L.d, rows=64)
        db0 = kaiodsl.wgmma_desc(smem.ptr(kslot), L.d, rows=L.cfg.bn)
        for ks in kaiodsl.static_range(L.d // FP8_K):
            s = kaiodsl.wgmma(kaiodsl.wgmma_desc_add(da0, ks * FP8_K), kaiodsl.wgmma_desc_add(db0, ks * FP8_K), s,
                              dtype="e4m3", scale_d=ks > 0)
        kaiodsl.wgmma_commit()
        return s
    return tiles.warpgroup.mma_ss_blocks(L.dtype.name, L.cfg.bn, L.blocks, smem.ptr(cw * 64 * L.d), smem.ptr(kslot), s)


@kaiodsl.func
def _pv_issue(L: Const, o, pa, smem, vslot):
    """Issue O += P V as one commit group; returns O pending. P's A fragments come from registers.
    f16/bf16: V [bn, D] is the MN-major B operand (``tiles.warpgroup.mma_rs_rows``). e4m3: V^T [D, bn]
    is K-major (a k32 step is 32 bytes into one of the vw-byte column blocks)."""
    if L.fp8:
        kaiodsl.wgmma_fence()
        db0 = kaiodsl.wgmma_desc(smem.ptr(vslot), L.vw, rows=L.d)
        for kk in kaiodsl.static_range(L.cfg.bn // FP8_K):
            db = kaiodsl.wgmma_desc_add(db0, (kk * FP8_K // L.vw) * L.d * L.vw + kk * FP8_K % L.vw)
            o = kaiodsl.wgmma(pa[0][kk], db, o, dtype="e4m3")
        kaiodsl.wgmma_commit()
        return o
    return tiles.warpgroup.mma_rs_rows(L.dtype.name, L.cfg.bn, pa, smem.ptr(vslot), o)


@kaiodsl.func
def _to_a(L: Const, ST: Const, p):
    """P (an f32 accumulator tile) as the P V wgmma's register A operand: f16/bf16 pairs, or e4m3 in the
    key order V^T is stored in (``fragments.to_a8``)."""
    if L.fp8:
        return fragments.to_a8(ST, p, e4m3)
    return fragments.to_a(ST, p, L.h2)


@kaiodsl.func
def _softmax(L: Const, s_acc, m, l, c, k0, kend, shift, row_wg, row_w, lane):
    """One key tile's scores (a complete S accumulator) -> (P, m, l, alpha, moved) in f32: masked only
    where the tile crosses the end of the keys or this warpgroup's causal diagonal; ``moved`` False
    (``lazy``: no row of the warp passed its max by 2^8) means alpha is 1 and O needs no rescale."""
    ST = L.s_wg.acc_tile
    s = tiles.warpgroup.acc_tile(L.s_wg, s_acc)
    edge = k0 + L.cfg.bn > kend
    if L.causal:
        edge = edge or k0 + L.cfg.bn - 1 > row_wg + shift
    if edge:
        s = fragments.mask(ST, s, visible, (kend, shift, L.causal), row_w, k0, lane, NEG_INF)
    if L.cfg.lazy:
        return softmax.lazy_update(ST, s, m, l, c)
    p, m, l, alpha = softmax.online_update(ST, s, m, l, c)
    return p, m, l, alpha, True


@kaiodsl.func
def _rescale(L: Const, acc, alpha, moved):
    """O *= alpha per row (a complete O accumulator), as the register list the next wgmma takes; left as
    it is where ``moved`` is False (alpha is 1: a warp-uniform branch)."""
    out = [acc[i] for i in range(L.d // 2)]
    if moved:
        ot = fragments.scale_rows(L.o_wg.acc_tile, tiles.warpgroup.acc_tile(L.o_wg, acc), alpha)
        out = tiles.warpgroup.from_acc_tile(L.o_wg, ot)
    return out


@kaiodsl.func
def _store_o(L: Const, ot, inv, o, obase, row0, Sq, lane):
    """O / l of one warp's 16 rows to o[obase + row * D + col] (row-major [.., Sq, D]), rows >= Sq skipped."""
    for h in kaiodsl.static_range(2):
        row = row0 + lane // 4 + 8 * h
        if row < Sq:
            rbase = obase + i64(row) * L.d
            for j in kaiodsl.static_range(L.d // 8):
                col = j * 8 + 2 * (lane % 4)
                kaiodsl.store(o, rbase + col, (L.dtype(ot[0][j][2 * h] * inv[0][h]),
                                               L.dtype(ot[0][j][2 * h + 1] * inv[0][h])), vec=2)


@kaiodsl.func
def _my_turn(L: Const, cw):
    """Ping-pong: wait until the other consumer has issued its wgmmas (named barrier 1 + cw: this
    warpgroup's 128 threads and the other's 128 arrivals)."""
    if L.cfg.pingpong:                               # constant ids: ptxas reserves only these two
        if cw == 0:
            kaiodsl.barrier(1, 256)
        else:
            kaiodsl.barrier(2, 256)


@kaiodsl.func
def _your_turn(L: Const, cw):
    """Ping-pong: this consumer's wgmmas are issued; let the other one issue its own."""
    if L.cfg.pingpong:
        if cw == 0:
            kaiodsl.barrier_arrive(2, 256)
        else:
            kaiodsl.barrier_arrive(1, 256)


@kaiodsl.func
def _consume(L: Const, smem, qbars, kbars, vbars, RQ: Const, RK: Const, RV: Const, qs, ks, vs, o, lse, bh, Sq, q0,
             nb, kend, shift, c, dv, tid):
    """One consumer warpgroup, one work unit: its 64 query rows against nb key tiles, then the epilogue;
    returns the (Q, K, V) ring states for the next unit. The Q slot is released once the last S wgmma
    has completed, so the producer loads the next unit's Q under this one's last P V and epilogue.

    Serial schedule (``overlap=False``): per tile S, wait, softmax, P V, wait. Overlapped (FA3's
    intra-warpgroup pipelining, section 3.2): S_j = Q K_j^T and O += P_{j-1} V_{j-1} are issued back to
    back, the softmax of S_j runs while P_{j-1} V_{j-1} is still on the tensor cores, and O is
    rescaled by alpha_j once that wgmma is done; the last tile's P V is issued after the loop."""
    cfg = L.cfg
    ST = L.s_wg.acc_tile
    cw = tiles.warpgroup.index(tid) - 1
    lane = tid % 32
    row_wg = q0 + 64 * cw                            # this warpgroup's first row
    row_w = row_wg + 16 * ((tid // 32) % 4)          # this warp's first row
    m = [[f32(NEG_INF), f32(NEG_INF)]]
    l = [[f32(0.0), f32(0.0)]]
    acc = kaiodsl.wgmma_zeros(L.d)
    sj = kaiodsl.wgmma_zeros(cfg.bn)                 # S's registers, reused tile after tile
    pipeline.wait(RQ, 0, qs, qbars)
    if cfg.overlap:                                  # acc is carried as a register list here
        acc = [f32(0.0) for i in range(L.d // 2)]
        pa = _to_a(L, ST, fragments.fill(ST, 0.0))
        if cw == 1 and nb > 0:
            _your_turn(L, cw)                        # consumer 0 issues first
        if nb > 0:
            pipeline.wait(RK, 0, ks, kbars)
            index, phase = ks
            _my_turn(L, cw)
            sj = _s_issue(L, smem, cw, L.q_elems + index * L.kv_elems, sj)
            _your_turn(L, cw)
            sj = kaiodsl.wgmma_wait(0, sj)
            ks = pipeline.advance(RK, pipeline.release(RK, ks, kbars))
            p, m, l, alpha, moved = _softmax(L, sj, m, l, c, 0, kend, shift, row_wg, row_w, lane)
            pa = _to_a(L, ST, p)
        for j in range(1, nb):
            pipeline.wait(RK, 0, ks, kbars)
            pipeline.wait(RV, 0, vs, vbars)
            _my_turn(L, cw)
            index, phase = ks
            sj = _s_issue(L, smem, cw, L.q_elems + index * L.kv_elems, sj)
            index, phase = vs
            acc = _pv_issue(L, acc, pa, smem, L.q_elems + (cfg.stages + index) * L.kv_elems)
            _your_turn(L, cw)
            sj, acc = kaiodsl.wgmma_wait(1, sj, acc, complete=1)      # S_j done, P V may still run
            ks = pipeline.advance(RK, pipeline.release(RK, ks, kbars))
            p, m, l, alpha, moved = _softmax(L, sj, m, l, c, j * cfg.bn, kend, shift, row_wg, row_w, lane)
            acc = kaiodsl.wgmma_wait(0, acc)
            vs = pipeline.advance(RV, pipeline.release(RV, vs, vbars))
            pa = _to_a(L, ST, p)         # only now: P V's A registers are free again
            acc = _rescale(L, acc, alpha, moved)
        qs = pipeline.advance(RQ, pipeline.release(RQ, qs, qbars))      # every S wgmma has completed
        if nb > 0:
            pipeline.wait(RV, 0, vs, vbars)
            index, phase = vs
            _my_turn(L, cw)
            pv = _pv_issue(L, acc, pa, smem, L.q_elems + (cfg.stages + index) * L.kv_elems)
            if cw == 0:                              # consumer 1 issues last: every arrive has its sync
                _your_turn(L, cw)
            done = kaiodsl.wgmma_wait(0, pv)
            acc = [done[i] for i in range(L.d // 2)]
            vs = pipeline.advance(RV, pipeline.release(RV, vs, vbars))
    else:
        for j in range(nb):
            pipeline.wait(RK, 0, ks, kbars)
            index, phase = ks
            sj = kaiodsl.wgmma_wait(0, _s_issue(L, smem, cw, L.q_elems + index * L.kv_elems, sj))
            ks = pipeline.advance(RK, pipeline.release(RK, ks, kbars))
            p, m, l, alpha, moved = _softmax(L, sj, m, l, c, j * cfg.bn, kend, shift, row_wg, row_w, lane)
            pa = _to_a(L, ST, p)
            acc = _rescale(L, acc, alpha, moved)
            pipeline.wait(RV, 0, vs, vbars)
            index, phase = vs
            acc = kaiodsl.wgmma_wait(0, _pv_issue(L, acc, pa, smem, L.q_elems + (cfg.stages + index) * L.kv_elems))
            vs = pipeline.advance(RV, pipeline.release(RV, vs, vbars))
        qs = pipeline.advance(RQ, pipeline.release(RQ, qs, qbars))
    lsum = softmax.finish(ST, l)
    inv = softmax.inverse(ST, lsum)
    if L.fp8:                                        # V's descale, with 1 / l
        inv = [[inv[0][0] * dv, inv[0][1] * dv]]
    _store_o(L, tiles.warpgroup.acc_tile(L.o_wg, acc), inv, o, i64(bh) * Sq * L.d, row_w, Sq, lane)
    tiles.epilogue.store_rows(ST, lse + i64(bh) * Sq, softmax.lse(ST, m, lsum, c), row_w, lane, Sq)
    return qs, ks, vs


@kaiodsl.func
def _consume_unit(L: Const, smem, qbars, kbars, vbars, RQ: Const, RK: Const, RV: Const, qs, ks, vs, o, lse, t, Sq,
                  Sk, H, group, c, shift, nqb, BH, hps, per_head: Const, dv, sq, sk, sv, qstep, kstep, tid):
    """Unit t for one consumer warpgroup: its place, its descales (read per unit where they are per
    head), ``_consume``."""
    bh, b, h, q0, kend, nb = _unit(L, t, nqb, BH, hps, H, Sk, shift)
    cc = c
    dd = dv
    if per_head:
        hk = h // group
        cc = c * sq[h * qstep] * sk[hk * kstep]
        dd = dv * sv[hk * kstep]
    return _consume(L, smem, qbars, kbars, vbars, RQ, RK, RV, qs, ks, vs, o, lse, bh, Sq, q0, nb, kend, shift, cc, dd,
                    tid)


def rings(cfg: Sm90AttnConfig) -> tuple:
    """The Q ring (one slot) and the K and V rings, released by both consumers' 256 threads."""
    return tuple(tiles.Ring(n, kind="mbarrier", arrivals=256) for n in (1, cfg.stages, cfg.stages))


@kaiodsl.func
def _attend(L: Const, RQ: Const, RK: Const, RV: Const, smem, tq, tk, tv, o, lse, Sq, Sk, H, group, c, shift, BH,
            hps, sched, per_head: Const = False, dv=0.0, sq=None, sk=None, sv=None, qstep=0, kstep=0):
    """The kernel after its shared memory: barriers, the producer thread and the consumers over this
    block's work units. e4m3 (``L.fp8``) passes V's descale ``dv``; with ``per_head`` the descales are
    read per unit, ``sq[h * qstep]``, ``sk`` / ``sv[hk * kstep]``, into c and dv. ``sched``: the dynamic
    schedule's two i32 counters (zero between launches; unused by the static one)."""
    slot = kaiodsl.shared_array(i32, (1,), align=4, name="unit") if L.cfg.dynamic else None
    kbars = kaiodsl.shared_array(u64, (RK.barriers,), align=8, name="kring")
    vbars = kaiodsl.shared_array(u64, (RV.barriers,), align=8, name="vring")
    qbars = kaiodsl.shared_array(u64, (RQ.barriers,), align=8, name="qring")
    tid = kaiodsl.thread_idx.x
    nqb = (Sq + BLOCK_Q - 1) // BLOCK_Q
    if tid == 0:
        kaiodsl.tma_prefetch(tq)
        kaiodsl.tma_prefetch(tk)
        kaiodsl.tma_prefetch(tv)
        pipeline.init(RQ, qbars)
        pipeline.init(RK, kbars)
        pipeline.init(RV, vbars)
    kaiodsl.syncthreads()
    if tid < 128:
        kaiodsl.setmaxnreg(PROD_REGS, False)
        if tid == 0:
            _produce(L, tq, tk, tv, smem, qbars, kbars, vbars, RQ, RK, RV, nqb, BH, hps, H, group, Sk, shift, sched,
                     slot)
    else:
        kaiodsl.setmaxnreg(CONS_REGS, True)
        qs = pipeline.start(RQ)
        ks = pipeline.start(RK)
        vs = pipeline.start(RV)
        if L.cfg.dynamic:                    # the unit comes with its Q slot; nqb * BH ends the walk
            pipeline.wait(RQ, 0, qs, qbars)
            t = slot[0]
            while t < nqb * BH:
                qs, ks, vs = _consume_unit(L, smem, qbars, kbars, vbars, RQ, RK, RV, qs, ks, vs, o, lse, t, Sq, Sk,
                                           H, group, c, shift, nqb, BH, hps, per_head, dv, sq, sk, sv, qstep, kstep,
                                           tid)
                pipeline.wait(RQ, 0, qs, qbars)
                t = slot[0]
        else:
            for t in range(kaiodsl.block_idx.x, nqb * BH, kaiodsl.grid_dim.x):
                qs, ks, vs = _consume_unit(L, smem, qbars, kbars, vbars, RQ, RK, RV, qs, ks, vs, o, lse, t, Sq, Sk,
                                           H, group, c, shift, nqb, BH, hps, per_head, dv, sq, sk, sv, qstep, kstep,
                                           tid)


@lru_cache(maxsize=None)
def sm90_attention_kernel(d: int, dtype_name: str, cfg: Sm90AttnConfig, causal: bool):
    T = {"f16": f16, "bf16": bf16}[dtype_name]
    L = Layout(d, T, cfg, causal)
    RQ, RK, RV = rings(cfg)
    name = f"attn_fwd_sm90_d{d}_{dtype_name}_{cfg}" + ("_causal" if causal else "")

    @kaiodsl.kernel(block_size=THREADS, name=name)
    def attn_fwd_sm90(tq: TensorMap, tk: TensorMap, tv: TensorMap, o: Ptr[T], lse: Ptr[f32],
                      Sq: i32, Sk: i32, H: i32, group: i32, c: f32, shift: i32, BH: i32, hps: i32, sched: Ptr[i32]):
        smem = kaiodsl.dynamic_shared(T, align=1024)
        _attend(L, RQ, RK, RV, smem, tq, tk, tv, o, lse, Sq, Sk, H, group, c, shift, BH, hps, sched)

    return attn_fwd_sm90


def heads_per_section(Sk: int, D: int, elem_bytes: int = 2, l2_bytes: int = 24 << 20) -> int:
    """Heads whose K and V (2 Sk D elements each) fit in ``l2_bytes`` together (half the H200's L2),
    at least one: the units of one section run together, so their K/V tiles are read from DRAM about once."""
    return max(1, l2_bytes // max(1, 2 * Sk * D * elem_bytes))


def wants_sm90(D: int, Sq: int, dtype_name: str) -> bool:
    """Whether ops.attention takes this kernel: sm_90a, f16/bf16, D 64 or 128, and more than 64 query
    rows (shorter queries are the decode kernels' job: split-KV, smaller tiles)."""
    from kaiodsl.compiler import default_arch
    return default_arch() == "sm_90a" and dtype_name in ("f16", "bf16") and D in (64, 128) and Sq > 64


def _canonical(x):
    """A contiguous numpy or torch array with C-order strides on its size-1 dimensions too (the
    tensor map's rules read every stride; a view of [B, S, 1, D] storage has odd ones)."""
    if type(x).__module__.startswith("torch"):
        shape = tuple(x.shape)
        if tuple(x.stride()) == _c_strides(shape):
            return x                      # already canonical: no new view (two torch calls an operand)
        return x.reshape(-1).reshape(shape)
    if isinstance(x, np.ndarray):
        return x.reshape(-1).reshape(tuple(x.shape))
    return x


def launch(q, k, v, out, lse, dtype_name: str, B: int, H: int, Hkv: int, Sq: int, Sk: int, D: int,
           causal_mode, c: float, cfg: Sm90AttnConfig | None, qz):
    """Run the kernel on validated contiguous operands q [B, H, Sq, D] (``qz`` its Arr), k/v [B, Hkv, Sk,
    D], out like q, lse f32 [B, H, Sq]; ``c`` = scale * log2(e); ``causal_mode`` None, "top_left" or
    "bottom_right"."""
    cfg = cfg or sm90_attn_config(D, Sk, causal_mode is not None)
    if D not in (64, 128):
        raise ArgumentError(f"attention(): the sm_90a kernel takes head dim 64 or 128, got D={D}")
    if cfg.smem_bytes(D) > SMEM_LIMIT:
        raise ArgumentError(f"attention(): config={cfg!r} needs {cfg.smem_bytes(D)} bytes of shared memory at "
                            f"D={D}; at most {SMEM_LIMIT} fit (fewer stages or a smaller bn)")
    q, k, v = (_canonical(x) for x in (q, k, v))
    tq = TensorMap(q, (1, 1, 64, COLS), dtype=dtype_name, swizzle=128)
    tk = TensorMap(k, (1, 1, cfg.bn, COLS), dtype=dtype_name, swizzle=128, l2_promotion=256)
    tv = TensorMap(v, (1, 1, cfg.bn, COLS), dtype=dtype_name, swizzle=128, l2_promotion=256)
    shift = Sk - Sq if causal_mode == "bottom_right" else 0
    kern = sm90_attention_kernel(D, dtype_name, cfg, causal_mode is not None)
    units = B * H * ((Sq + BLOCK_Q - 1) // BLOCK_Q)
    from .gemm_sm90 import sm_count
    grid = min(units, sm_count()) if cfg.persistent else units
    kern[grid, THREADS](tq, tk, tv, out, lse, Sq, Sk, H, H // Hkv, c, shift, B * H, heads_per_section(Sk, D),
                        tickets(qz, 2), smem=cfg.smem_bytes(D))
    return out
