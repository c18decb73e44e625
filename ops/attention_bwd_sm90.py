"""The Hopper flash-attention backward (sm_90a): warp-specialised, TMA into mbarrier rings, wgmma.

FlashAttention-2's backward split (attention_bwd: Dr = rowsum(dO O) by its ``rowdot`` kernel, then a
dK/dV kernel and a dQ kernel, deterministic, no atomics) on the structure of the Hopper forward
(attention_sm90, FA3 section 3.1): a block is three warpgroups, a producer (``setmaxnreg.dec``, one
TMA thread) and two consumers (``setmaxnreg.inc``) of 64 rows each, for f16/bf16 with D 64 or 128.
Both kernels have one shape: two resident [128, D] tensors loaded once (their own mbarrier) and two
streamed tiles [t, D] in two mbarrier rings (``tiles.pipeline``):

* **dK/dV**: a block owns 128 keys of one (batch, K/V head); K and V resident, (Q, dO) tiles of
  ``bq`` query rows of every query head of the GQA group stream through (the group's sum is the
  loop, no reduction pass). Per tile, on transposed scores (rows = this warpgroup's keys, so P^T and
  dS^T are accumulators that become A fragments in registers): S^T = K Q^T and dP^T = V dO^T (wgmma
  SS, both K-major), P^T = exp2(S^T c - lse2[q]) and dS^T = P^T (dP^T - Dr[q]) with lse2 / Dr indexed
  by the accumulator's column, then dV += P^T dO and dK += dS^T Q (wgmma RS, the streamed tile read
  as the MN-major B operand exactly like V in the forward's P V). Causal: a key block visits only
  the query tiles that see one of its keys, and masks only tiles that cross its diagonal; keys past
  Sk need no mask (their rows of dK/dV are never stored, and a row's sum touches only its row).
* **dQ**: a block owns 128 query rows of one (batch, head); Q and dO resident, K/V tiles of ``bn``
  keys stream: S = Q K^T, dP = dO V^T (SS), P = exp2(S c - lse2[row]), dS = P (dP - Dr[row]),
  dQ += dS K (RS, K as the MN-major B). The V slot is released after dP, the K slot after dQ's wgmma.

lse2 = lse * log2(e), +inf for rows that saw no key (P = 0 there, never NaN; ``attention_bwd._lse2``);
query rows past Sq read +inf too, and the TMA boxes zero-fill rows past a head's S. The dK/dV
consumer stages a tile's lse2 / Dr (indexed by column) in shared memory; the dQ consumer keeps its
rows' in registers. ``Sm90BwdConfig(split=True)`` makes dK and dV two passes of the dK/dV kernel (each
recomputes P^T); the default keeps one pass at D 128 too (ptxas 13.0, the driver's JIT, fits both
accumulators with S^T and dP^T in the consumers' 240 registers; the H200 sweep: 377 against 288 TFLOPS
at S 4096); ``Sm90BwdConfig(overlap=True)``
pipelines a tile's element-wise work under the previous tile's update wgmmas (FA3 section 3.2).
Shared memory, 128-byte swizzled by TMA as in the forward: a resident tensor is
[2 consumers][D / 64][64][64], a ring slot [D / 64][t][64]. Not done (FA3 does them): dQ accumulated
by the dK/dV kernel with atomics (a single pass, not deterministic), ping-pong scheduling.
"""

import warnings
from dataclasses import dataclass
from functools import lru_cache

import kaiodsl
from kaiodsl import Const, Ptr, TensorMap, bf16, f16, f32, i32, i64, tiles, u64
from kaiodsl.errors import ArgumentError
from kaiodsl.tiles import fragments, pipeline, softmax

from .attention_bwd import INF, _lse2, _store_rows, lse2_of, seen
from ._common import new_like, tickets, zeros_like
from .attention_sm90 import COLS, CONS_REGS, PROD_REGS, SMEM_LIMIT, THREADS, _canonical

# Row indices are i32 (check_qkv bounds S < 2^23); offsets built from them are widened before multiplying.
warnings.filterwarnings("ignore", category=kaiodsl.errors.IndexOverflowWarning,
                        module=r"kaiodsl\.ops\.attention_bwd_sm90$")

BLOCK = 128          # keys (dK/dV) or query rows (dQ) a block: two consumer warpgroups of 64
ATOM = tiles.warpgroup.ATOM     # bytes of a 128-byte-swizzled row
TILES = range(16, 129, 16)
STAGES = range(2, 5)      # pipeline.advance keeps the phase of a 1-slot ring: an mbarrier ring needs 2+
DQ_MODES = ("ordered", "atomic", "kernel")
FUSED_BQ = 64        # the dK/dV pass's dQ wgmma is m64: one query tile is its M
WRITER = 32          # the producer warpgroup's thread that adds the dQ partials to global memory
DS_BAR = 3           # named barrier of the two consumer warpgroups (1 and 2 are each one's own)
FUSED_DEFAULT = False    # dq=None -> "ordered" once the fused dQ has passed the GPU tier


@dataclass(frozen=True)
class Sm90BwdConfig:
    """``bq`` query rows a streamed (Q, dO) tile of the dK/dV kernel, ``bn`` keys a streamed (K, V) tile
    of the dQ kernel (each a multiple of 16 in 16..128: one wgmma N of the scores, the k extent of the
    RS wgmma), ``stages`` slots in each ring (2..4), ``split`` dK and dV in two passes of the dK/dV
    kernel (each recomputes P^T; None: at D = 128, where dK, dV, S^T and dP^T do not fit in the 168
    registers nvJitLink allocates a thread of a 384-thread block), ``overlap`` the pipelined consumer
    schedule (a tile's element-wise work while the previous tile's update wgmmas run; more live
    registers: nvJitLink spills it at D = 128)."""

    bq: int = 64
    bn: int = 64
    stages: int = 2
    split: bool | None = None
    overlap: bool = False
    dq: str | None = None
    dq_slots: int = 2

    def __post_init__(self):
        for name, allowed, what in (("bq", TILES, "a multiple of 16 in 16..128"),
                                    ("bn", TILES, "a multiple of 16 in 16..128"),
                                    ("stages", STAGES, "an int in 2..4")):
            v = getattr(self, name)
            if type(v) is not int or v not in allowed:
                raise ArgumentError(f"Sm90BwdConfig: {name}={v!r}: must be {what}")
        if self.split not in (None, True, False) or type(self.split) not in (type(None), bool):
            raise ArgumentError(f"Sm90BwdConfig: split={self.split!r}: must be None (automatic), True or False")
        if type(self.overlap) is not bool:
            raise ArgumentError(f"Sm90BwdConfig: overlap={self.overlap!r}: must be True or False")
        if self.dq is not None and self.dq not in DQ_MODES:
            raise ArgumentError(f"Sm90BwdConfig: dq={self.dq!r}: must be None (automatic) or one of "
                                f"{', '.join(map(repr, DQ_MODES))}")
        if type(self.dq_slots) is not int or self.dq_slots not in (1, 2):
            raise ArgumentError(f"Sm90BwdConfig: dq_slots={self.dq_slots!r}: must be 1 or 2")
        if self.dq in ("ordered", "atomic") and not self._fusable:
            raise ArgumentError(f"Sm90BwdConfig: dq={self.dq!r} adds dQ in the dK/dV pass, which needs bq="
                                f"{FUSED_BQ}, overlap=False and split not True; got bq={self.bq}, overlap="
                                f"{self.overlap}, split={self.split} (or dq='kernel')")

    @property
    def _fusable(self) -> bool:
        return self.bq == FUSED_BQ and not self.overlap and self.split is not True

    @property
    def dq_mode(self) -> str:
        """How dQ is made: "ordered" (the dK/dV pass adds each key block's dS K into an f32 buffer, key
        block after key block: deterministic), "atomic" (the same adds in any order), "kernel" (a dQ
        kernel that recomputes S and dP). None is "kernel": the fused modes pass the simulator tier but
        have not run on a GPU yet (FUSED_DEFAULT turns them on where the config allows)."""
        if self.dq is not None:
            return self.dq
        return "ordered" if FUSED_DEFAULT and self._fusable else "kernel"

    def parts(self, d: int) -> tuple:
        """The dK/dV launches: ("both",) or ("dv", "dk")."""
        if self.dq_mode != "kernel":
            return ("both",)
        split = d > 64 if self.split is None else self.split
        return ("dv", "dk") if split else ("both",)

    def layout(self, d: int, dtype=f16, causal: bool = False, part: str = "both") -> "Layout":
        """The dK/dV kernel's compile-time shape."""
        dq = self.dq_mode if part == "both" else "kernel"
        return Layout(d, dtype, causal, self.bq, self.stages, part, self.overlap, dq, self.dq_slots)

    def smem_bytes(self, d: int) -> int:
        """The larger of the kernels' shared memory (two resident [128, d] tensors, two rings; the fused
        dQ's dS^T buffers and f32 partial slots)."""
        sizes = [self.layout(d).smem_bytes]
        if self.dq_mode == "kernel":
            sizes.append(Layout(d, f16, False, self.bn, self.stages).smem_bytes)
        return max(sizes)

    def __str__(self) -> str:
        return f"q{self.bq}k{self.bn}s{self.stages}" + {None: "", True: "_split", False: "_fused"}[self.split] + \
            ("_ov" if self.overlap else "") + \
            {None: "", "ordered": "_dqo", "atomic": "_dqa", "kernel": "_dqk"}[self.dq] + \
            ("" if self.dq_slots == 2 else f"_dqs{self.dq_slots}")


def sm90_bwd_config(d: int) -> Sm90BwdConfig:
    """2-slot rings, dK and dV in one pass, dQ by ``Sm90BwdConfig.dq_mode`` (the dQ kernel for now).
    H200 sweep at S 4096, f16 (bench_attention.py --sweep-bwd, TFLOPS non-causal / causal) with the dQ
    kernel: d 128 fused q64k64 377 / 332 against 288 / 264 in two passes (nvJitLink reports 1240 spill
    bytes fused; the driver's JIT, ptxas 13.0, none); d 64 q64k128 284 / 244 against q64k64 272 / 237."""
    return Sm90BwdConfig(bq=64, bn=128 if d == 64 else 64, stages=2, split=False)


@dataclass(frozen=True)
class Layout:
    """One kernel's compile-time shape: ``tile`` rows a streamed slot, ``stages`` slots a ring."""

    d: int
    dtype: object
    causal: bool
    tile: int
    stages: int
    part: str = "both"      # the dK/dV kernel: both, or one of "dk" / "dv" (two passes, each recomputing P^T)
    overlap: bool = False
    dq: str = "kernel"      # the dK/dV kernel: "ordered" / "atomic" add dS K into dQ's f32 buffer too
    dq_slots: int = 2       # f32 partial slots between the consumers and the dQ writer

    @property
    def fused(self) -> bool:
        return self.dq != "kernel"

    @property
    def blocks(self) -> int:
        return self.d // COLS

    @property
    def fixed_elems(self) -> int:
        """One resident [128, d] tensor."""
        return BLOCK * self.d

    @property
    def slot_elems(self) -> int:
        return self.tile * self.d

    @property
    def ring0(self) -> int:
        return 2 * self.fixed_elems

    @property
    def ring1(self) -> int:
        return self.ring0 + self.stages * self.slot_elems

    @property
    def dst_at(self) -> int:
        """The fused dQ's two dS^T buffers [128 keys][64 queries] (elements; 128-byte swizzled rows)."""
        return self.ring1 + self.stages * self.slot_elems

    @property
    def dst_elems(self) -> int:
        return self.ds_tile.elems

    @property
    def stage_at(self) -> int:
        """The f32 partial slots [d / 64][64 rows][64] (in elements of the 16-bit dtype: two a float)."""
        return self.dst_at + 2 * self.dst_elems

    @property
    def stage_f32(self) -> int:
        """f32 elements of one partial slot: a query tile's [64, d]."""
        return FUSED_BQ * self.d

    @property
    def smem_bytes(self) -> int:
        if self.fused:
            return 2 * self.stage_at + 4 * self.dq_slots * self.stage_f32
        return 2 * (self.ring1 + self.stages * self.slot_elems)

    @property
    def ds_tile(self):
        """The two dS^T buffers as one tile of two stages (128-byte rows: the wgmma swizzle)."""
        return tiles.SmemTile(BLOCK, FUSED_BQ, self.dtype, 2, self.dst_at)

    @property
    def q_wg(self):
        return tiles.WarpgroupMma(self.dtype.name, COLS, 2 * COLS, 1)

    @property
    def s_wg(self):
        return tiles.WarpgroupMma(self.dtype.name, self.tile, 2 * COLS, 1)

    @property
    def o_wg(self):
        return tiles.WarpgroupMma(self.dtype.name, self.d, 2 * COLS, 1)

    @property
    def h2(self):
        return kaiodsl.f16x2 if self.dtype == f16 else kaiodsl.bf16x2


# -- producer -------------------------------------------------------------------------------------------
@kaiodsl.func
def _load_fixed(L: Const, tm, smem, base, b, h, r0, bar):
    """A resident [128, d] tensor: 2 consumers x d / 64 boxes of [64, 64]."""
    for cw in kaiodsl.static_range(2):
        tiles.warpgroup.load_blocks(smem, base + cw * L.blocks * 64 * COLS, 64, L.blocks, tm, b, h, r0 + 64 * cw, bar)


@kaiodsl.func
def _load_slot(L: Const, R: Const, st, bars, tm, smem, base, b, h, row):
    """Acquire a ring slot, announce its bytes, issue its d / 64 boxes of [tile, 64]."""
    pipeline.acquire(R, st, bars)
    index, phase = st
    pipeline.commit(R, st, bars, L.slot_elems * 2)
    tiles.warpgroup.load_blocks(smem, base + index * L.slot_elems, L.tile, L.blocks, tm, b, h, row, bars.ptr(index))


@kaiodsl.func
def _produce(L: Const, tf0, tf1, ts0, ts1, smem, fbar, bars0, bars1, R: Const, b, hf, r0, head0, per_head, first,
             n, down: Const[bool]):
    """One thread: the two resident tensors of head ``hf`` at row r0, then n streamed tile pairs: heads
    from ``head0``, ``per_head`` tiles each from tile ``first`` up, or (``down``: the dK/dV kernel, in
    the fused dQ's order, see _write_dq) from ``first + per_head - 1`` down. The two rings advance
    together, so one state serves both; counters instead of divisions keep this thread inside its 24
    registers."""
    kaiodsl.mbarrier_arrive_expect_tx(fbar, 2 * L.fixed_elems * 2)
    _load_fixed(L, tf0, smem, 0, b, hf, r0, fbar)
    _load_fixed(L, tf1, smem, L.fixed_elems, b, hf, r0, fbar)
    st = pipeline.start(R)
    head = head0
    last = first + per_head - 1 if down else 0
    t = last if down else first
    for it in range(n):
        _load_slot(L, R, st, bars0, ts0, smem, L.ring0, b, head, t * L.tile)
        _load_slot(L, R, st, bars1, ts1, smem, L.ring1, b, head, t * L.tile)
        st = pipeline.advance(R, st)
        t, head = _step(down, t, head, first, last, per_head)


@kaiodsl.func
def _step(down: Const[bool], t, head, first, last, per_head):
    """The next (tile, head) of a walk over each head's ``per_head`` tiles: ``down`` from ``last`` (the
    fused dQ's order: its writer's), else up from ``first`` (the walk the dQ kernel was timed with)."""
    if down:
        return _step_down(t, head, first, last)
    t = t + 1
    if t == first + per_head:
        t = first
        head = head + 1
    return t, head


@kaiodsl.func
def _step_down(t, head, first, last):
    """The next (tile, head) of a walk over each head's tiles from ``last`` down to ``first``."""
    t = t - 1
    if t < first:
        t = last
        head = head + 1
    return t, head


# -- consumer building blocks ------------------------------------------------------------------------------
@kaiodsl.func
def _ss(L: Const, smem, a, bslot, acc):
    """Issue acc = A B^T (one commit group, returned pending): A this warpgroup's resident [64, d] rows at
    ``a``, B a streamed [tile, d] slot at ``bslot``, both K-major column blocks. ``acc`` is dead."""
    return tiles.warpgroup.mma_ss_blocks(L.dtype.name, L.tile, L.blocks, smem.ptr(a), smem.ptr(bslot), acc)


@kaiodsl.func
def _rs(L: Const, acc, pa, smem, bslot):
    """Issue acc += A B (one commit group): A as register fragments pa[0][kk] (k = the tile's rows), B the
    streamed [tile, d] slot read MN-major."""
    return tiles.warpgroup.mma_rs_rows(L.dtype.name, L.tile, pa, smem.ptr(bslot), acc)


@kaiodsl.func
def _sees_t(key, q, args):
    """Transposed visibility: key ``key`` is seen by query ``q`` (``args`` = (Sk, shift, causal, bound)).
    Keys past Sk (``bound``) matter only to the fused dQ: the dK/dV rows of those keys are never stored."""
    sk, shift, causal, bound = args
    if causal and bound:
        return key < sk and key <= q + shift
    if causal:
        return key <= q + shift
    return key < sk


@kaiodsl.func
def _wg_sync(cw):
    """Named barrier 1 + cw: this consumer warpgroup's 128 threads (constant ids: ptxas reserves only these)."""
    if cw == 0:
        kaiodsl.barrier(1, 128)
    else:
        kaiodsl.barrier(2, 128)


@kaiodsl.func
def _load_stats(L: Const, lse, dr, rbase, q0, Sq, tl, valid):
    """This thread's share of a tile's query statistics, into registers: (lse2, Dr) of the columns
    r + tl (r = 0, 128, ..; +inf / 0 past Sq, and everywhere unless ``valid``: the tile after a
    warpgroup's last). Loaded a tile ahead of ``_put_stats``, so the global latency hides under a whole
    tile's wgmmas and softmax."""
    out = []
    for r in kaiodsl.static_range(0, L.tile, 128):
        q = q0 + r + tl
        ok = valid and q < Sq and r + tl < L.tile
        out = out + [(kaiodsl.load(lse, rbase + q, mask=ok, other=-INF), kaiodsl.load(dr, rbase + q, mask=ok,
                                                                                     other=0.0))]
    return out


@kaiodsl.func
def _put_stats(L: Const, stats, sb, vals, tl):
    """``_load_stats``' registers into this warpgroup's shared buffer at ``sb`` ([2][tile]: lse2 = lse
    log2(e), +inf for a row that saw no key or past Sq (its P is then 0); then Dr)."""
    for r in kaiodsl.static_range(0, L.tile, 128):
        col = r + tl
        if col < L.tile:
            stats[sb + col] = lse2_of(vals[r // 128][0])
            stats[sb + L.tile + col] = vals[r // 128][1]


@kaiodsl.func
def _probs_t(L: Const, st, dpt, stats, sb, c, edge, key_w, q0, args, lane):
    """(P^T, dS^T) in f32 from the complete S^T and dP^T accumulators (columns = queries, their lse2 and
    Dr read from the staged buffer in pairs); dS^T is 0 in the dV pass, which has no dP^T. ``edge``:
    mask by ``_sees_t`` with ``args`` = (Sk, shift, causal, bound)."""
    ST = L.s_wg.acc_tile
    s = tiles.warpgroup.acc_tile(L.s_wg, st)
    p = []
    for j in kaiodsl.static_range(L.tile // 8):
        l2 = kaiodsl.load(stats.ptr(sb + 8 * j + 2 * (lane % 4)), 0, vec=2)
        p = p + [(softmax.recompute(s[0][j][0], c, l2[0]), softmax.recompute(s[0][j][1], c, l2[1]),
                  softmax.recompute(s[0][j][2], c, l2[0]), softmax.recompute(s[0][j][3], c, l2[1]))]
    p = [p]
    if edge:
        p = fragments.mask(ST, p, _sees_t, args, key_w, q0, lane, f32(0.0))
    if L.part == "dv":
        return p, 0
    dp = tiles.warpgroup.acc_tile(L.s_wg, dpt)
    ds = []
    for j in kaiodsl.static_range(L.tile // 8):
        drv = kaiodsl.load(stats.ptr(sb + L.tile + 8 * j + 2 * (lane % 4)), 0, vec=2)
        ds = ds + [(p[0][j][0] * (dp[0][j][0] - drv[0]), p[0][j][1] * (dp[0][j][1] - drv[1]),
                    p[0][j][2] * (dp[0][j][2] - drv[0]), p[0][j][3] * (dp[0][j][3] - drv[1]))]
    return p, [ds]


@kaiodsl.func
def _probs(L: Const, s_acc, dp_acc, l2, drv, c, edge, row_w, k0, args, lane):
    """dS in f32 from the complete S and dP accumulators (rows = queries, columns = keys)."""
    s = tiles.warpgroup.acc_tile(L.s_wg, s_acc)
    dp = tiles.warpgroup.acc_tile(L.s_wg, dp_acc)
    p = [[(softmax.recompute(s[0][j][0], c, l2[0]), softmax.recompute(s[0][j][1], c, l2[0]),
           softmax.recompute(s[0][j][2], c, l2[1]), softmax.recompute(s[0][j][3], c, l2[1]))
          for j in range(L.tile // 8)]]
    if edge:
        p = fragments.mask(L.s_wg.acc_tile, p, seen, args, row_w, k0, lane, f32(0.0))
    return [[(p[0][j][0] * (dp[0][j][0] - drv[0]), p[0][j][1] * (dp[0][j][1] - drv[0]),
              p[0][j][2] * (dp[0][j][2] - drv[1]), p[0][j][3] * (dp[0][j][3] - drv[1])) for j in range(L.tile // 8)]]


# -- dK / dV -------------------------------------------------------------------------------------------------
@kaiodsl.func
def _kv_scores(L: Const, smem, R: Const, rs, qbars, dbars, kres, vres, st, dpt):
    """Wait for the tile's Q and dO slots; issue S^T = K Q^T and (not in the dV pass) dP^T = V dO^T."""
    index, phase = rs
    pipeline.wait(R, 0, rs, qbars)
    st = _ss(L, smem, kres, L.ring0 + index * L.slot_elems, st)
    pipeline.wait(R, 0, rs, dbars)
    if L.part != "dv":
        dpt = _ss(L, smem, vres, L.ring1 + index * L.slot_elems, dpt)
    return st, dpt


@kaiodsl.func
def _kv_update(L: Const, smem, rs, pa, dsa, dvacc, dkacc):
    """Issue dV += P^T dO and dK += dS^T Q (the part's) on the tile of ring state ``rs``."""
    index, phase = rs
    if L.part != "dk":
        dvacc = _rs(L, dvacc, pa, smem, L.ring1 + index * L.slot_elems)
    if L.part != "dv":
        dkacc = _rs(L, dkacc, dsa, smem, L.ring0 + index * L.slot_elems)
    return dvacc, dkacc


@kaiodsl.func
def _kv_wait(L: Const, updates: Const[bool], st, dpt, dvacc, dkacc):
    """Until the score wgmmas are done; ``updates``: dV / dK groups were issued after them and may still
    run (FA3's overlap), else nothing is pending afterwards."""
    if L.part == "both":
        if updates:
            st, dpt, dvacc, dkacc = kaiodsl.wgmma_wait(2, st, dpt, dvacc, dkacc, complete=2)
        else:
            st, dpt = kaiodsl.wgmma_wait(0, st, dpt)
    elif L.part == "dk":
        if updates:
            st, dpt, dkacc = kaiodsl.wgmma_wait(1, st, dpt, dkacc, complete=2)
        else:
            st, dpt = kaiodsl.wgmma_wait(0, st, dpt)
    else:
        if updates:
            st, dvacc = kaiodsl.wgmma_wait(1, st, dvacc, complete=1)
        else:
            st = kaiodsl.wgmma_wait(0, st)
    return st, dpt, dvacc, dkacc


@kaiodsl.func
def _kv_done(L: Const, dvacc, dkacc):
    """Until the dV/dK wgmmas are done (their A registers and ring slots are free again)."""
    if L.part == "both":
        dvacc, dkacc = kaiodsl.wgmma_wait(0, dvacc, dkacc)
    elif L.part == "dk":
        dkacc = kaiodsl.wgmma_wait(0, dkacc)
    else:
        dvacc = kaiodsl.wgmma_wait(0, dvacc)
    return dvacc, dkacc


@kaiodsl.func
def _consume_kv(L: Const, smem, stats, fbar, qbars, dbars, R: Const, SR: Const, sbars, lse, dr, dk, dv, Sq, Sk, H, b,
                bhk, hk, group, k0, qb0, per_head, n, c, scale, shift, tid):
    """One consumer warpgroup: dK and dV of its 64 keys over the n streamed (Q, dO) tiles, then stores.

    Pipelined as the forward (FA3 section 3.2): tile j's S^T / dP^T wgmmas are issued before tile j - 1's
    dV / dK updates, and P^T, dS^T of tile j are computed while those updates run; the A fragments
    are rebuilt only once the updates are done. The tile's lse2 / Dr are loaded into registers one tile
    ahead and go through a 2-slot shared buffer of this warpgroup (the slot written in tile j was last
    read in tile j - 2, before the barrier of tile j - 1).

    Fused dQ (``L.fused``): dS^T goes to shared memory too (this warpgroup's 64 key rows of a
    [128 keys][64 queries] buffer, two buffers taking turns); once both halves are there (named barrier
    DS_BAR), dQ_tile = dS K over the block's 128 keys is one more wgmma (SS, both operands MN-major:
    _dq_mma), whose f32 result goes to a partial slot that the writer thread adds to global memory
    (_write_dq). At D 128 each warpgroup makes one 64-column block; at D 64 they take turns."""
    cw = tiles.warpgroup.index(tid) - 1
    tl = tid % 128
    lane = tid % 32
    key_wg = k0 + 64 * cw
    key_w = key_wg + 16 * ((tid // 32) % 4)
    kres = cw * L.blocks * 64 * COLS
    vres = L.fixed_elems + kres
    ST = L.s_wg.acc_tile
    dvacc = kaiodsl.wgmma_zeros(L.d) if L.part != "dk" else 0
    dkacc = kaiodsl.wgmma_zeros(L.d) if L.part != "dv" else 0
    st = kaiodsl.wgmma_zeros(L.tile)
    dpt = kaiodsl.wgmma_zeros(L.tile) if L.part != "dv" else 0
    zero = fragments.to_a(ST, fragments.fill(ST, 0.0), L.h2)
    pa = zero if L.part != "dk" else 0
    dsa = zero if L.part != "dv" else 0
    kaiodsl.mbarrier_wait(fbar, 0)
    rs = pipeline.start(R)
    prev = rs
    h = hk * group
    t = qb0
    last = qb0 + per_head - 1
    t = last if L.fused else qb0
    sst = pipeline.start(SR) if L.fused else 0
    cur = _load_stats(L, lse, dr, (i64(b) * H + h) * Sq, t * L.tile, Sq, tl, n > 0)
    for it in range(n):
        q0 = t * L.tile
        sb = (cw * 2 + it % 2) * 2 * L.tile
        st, dpt = _kv_scores(L, smem, R, rs, qbars, dbars, kres, vres, st, dpt)
        if L.overlap:                                   # tile j - 1's updates (tile 0: zero fragments)
            dvacc, dkacc = _kv_update(L, smem, prev, pa, dsa, dvacc, dkacc)
        _put_stats(L, stats, sb, cur, tl)               # while the wgmmas run
        tn, hn = _step(L.fused, t, h, qb0, last, per_head)   # the next tile's (tile, head): its statistics
        cur = _load_stats(L, lse, dr, (i64(b) * H + hn) * Sq, tn * L.tile, Sq, tl, it + 1 < n)
        _wg_sync(cw)
        st, dpt, dvacc, dkacc = _kv_wait(L, L.overlap, st, dpt, dvacc, dkacc)
        edge = False
        if L.causal:
            edge = key_wg + 63 > q0 + shift
        if L.fused:                                     # keys past Sk: their dS must not reach dQ
            edge = edge or key_wg + 64 > Sk
        p, ds = _probs_t(L, st, dpt, stats, sb, c, edge, key_w, q0, (Sk, shift, L.causal, L.fused), lane)
        if L.overlap:
            dvacc, dkacc = _kv_done(L, dvacc, dkacc)
            if it > 0:
                pipeline.release(R, prev, qbars)
                pipeline.release(R, prev, dbars)
        pa = fragments.to_a(ST, p, L.h2) if L.part != "dk" else 0
        dsa = fragments.to_a(ST, ds, L.h2) if L.part != "dv" else 0
        if not L.overlap and not L.fused:
            dvacc, dkacc = _kv_done(L, *_kv_update(L, smem, rs, pa, dsa, dvacc, dkacc))
            pipeline.release(R, rs, qbars)
            pipeline.release(R, rs, dbars)
        if L.fused:
            _put_dst(L, smem, dsa, it % 2, cw, tid)     # this warpgroup's 64 keys of dS^T
            kaiodsl.fence_proxy_async()
            dvacc, dkacc = _kv_update(L, smem, rs, pa, dsa, dvacc, dkacc)
            kaiodsl.barrier(DS_BAR, 256)                # both halves of dS^T are in shared memory
            if L.blocks == 2 or cw == it % 2:           # D 128: column block cw; D 64: the tiles take turns
                cb = cw if L.blocks == 2 else 0
                dq = kaiodsl.wgmma_wait(0, _dq_mma(L, smem, it % 2, cb, kaiodsl.wgmma_zeros(COLS)))
                pipeline.acquire(SR, sst, sbars)        # the writer has read this slot's last partial
                _put_dq(L, smem, sst, cb, dq, tid)
                kaiodsl.fence_proxy_async()
            dvacc, dkacc = _kv_done(L, dvacc, dkacc)
            pipeline.release(R, rs, qbars)
            pipeline.release(R, rs, dbars)
            si, sph = sst
            kaiodsl.mbarrier_arrive(sbars.ptr(si))      # every consumer thread: the slot is full
            sst = pipeline.advance(SR, sst)
        prev = rs
        rs = pipeline.advance(R, rs)
        t, h = _step(L.fused, t, h, qb0, last, per_head)
    if L.overlap and n > 0:
        dvacc, dkacc = _kv_done(L, *_kv_update(L, smem, prev, pa, dsa, dvacc, dkacc))
        pipeline.release(R, prev, qbars)
        pipeline.release(R, prev, dbars)
    obase = i64(bhk) * Sk * L.d
    T = L.o_wg.acc_tile
    if L.part != "dv":
        _store_rows(T, tiles.warpgroup.acc_tile(L.o_wg, dkacc), scale, dk, obase, L.d, key_w, Sk, lane, L.d,
                    L.dtype)
    if L.part != "dk":
        _store_rows(T, tiles.warpgroup.acc_tile(L.o_wg, dvacc), f32(1.0), dv, obase, L.d, key_w, Sk, lane, L.d,
                    L.dtype)


# -- the fused dQ ------------------------------------------------------------------------------------------
@kaiodsl.func
def _put_dst(L: Const, smem, dsa, buf, cw, tid):
    """This warpgroup's dS^T A fragments (64 keys x 64 queries) into rows 64 cw .. of dS^T buffer
    ``buf``: one stmatrix.x4 a k16 step (the A fragment's four 8x8 matrices are stmatrix's order)."""
    for kk in kaiodsl.static_range(FUSED_BQ // 16):
        tiles.copies.stmatrix_tile(smem, L.ds_tile, 64 * cw + 16 * ((tid // 32) % 4), 16 * kk, tid % 32, dsa[0][kk],
                                   buf)


@kaiodsl.func
def _dq_mma(L: Const, smem, buf, cb, acc):
    """Issue ``acc = dS K`` for one query tile and column block ``cb`` (one commit group; ``acc`` is
    dead): A = dS [64 queries, 128 keys], read MN-major from the dS^T buffer (a row a key); B = the
    resident K's 128 keys x 64 columns, MN-major, the two consumers' halves one after the other."""
    kaiodsl.wgmma_fence()
    da0 = kaiodsl.wgmma_desc(smem.ptr(L.dst_at + buf * L.dst_elems), ATOM, major="mn", rows=BLOCK)
    for half in kaiodsl.static_range(2):
        db0 = kaiodsl.wgmma_desc(smem.ptr((half * L.blocks + cb) * 64 * COLS), ATOM, major="mn", rows=64)
        for kk in kaiodsl.static_range(4):
            acc = kaiodsl.wgmma(kaiodsl.wgmma_desc_add(da0, (64 * half + 16 * kk) * ATOM),
                                kaiodsl.wgmma_desc_add(db0, 16 * kk * ATOM), acc, dtype=L.dtype.name,
                                trans_a=True, trans_b=True, scale_d=half + kk > 0)
    kaiodsl.wgmma_commit()
    return acc


@kaiodsl.func
def _put_dq(L: Const, smem, sst, cb, acc, tid):
    """The complete dQ accumulator (64 query rows x 64 columns of block ``cb``) into partial slot
    ``sst``: f32 [d / 64][64][64], a row's sixteen 16-byte chunks XOR-ed with row % 8 (no bank
    conflicts for the float2 stores; ``convert_kernel`` undoes it)."""
    si, sph = sst
    out = kaiodsl.ptr_cast(smem.ptr(L.stage_at + si * 2 * L.stage_f32), f32)
    lane = tid % 32
    g = lane // 4
    t4 = lane % 4
    a = tiles.warpgroup.acc_tile(L.q_wg, acc)
    for h in kaiodsl.static_range(2):
        r = 16 * ((tid // 32) % 4) + g + 8 * h
        for j in kaiodsl.static_range(COLS // 8):
            idx = cb * 64 * COLS + r * COLS + ((2 * j + t4 // 2) ^ g) * 4 + 2 * (t4 % 2)
            kaiodsl.store(out, idx, (a[0][j][2 * h], a[0][j][2 * h + 1]), vec=2)


@kaiodsl.func
def _write_dq(L: Const, SR: Const, smem, sbars, dqacc, sem, b, H, hk, group, kb, nkb, qb0, per_head, n, ntiles,
              shift):
    """The writer thread: each partial slot the consumers fill goes to query tile (head, t)'s [64, d]
    f32 block of ``dqacc`` in one bulk copy, in the consumers' order (each head's tiles from the last
    down). "ordered": the block of key block kb is the (kb + 1)-th to add to a tile: key block 0 stores
    (no memset), key block kb > 0 polls the tile's counter in ``sem`` until it reads kb, adds
    (cp.reduce.async.bulk), waits for the write and counts kb + 1, or 0 when it is the tile's last key
    block (the counters are left zeroed). Every block walks the tiles in the same order from the last
    one, so a key block only ever waits for the key block launched just before it, which is running
    or done. "atomic": every key block adds (the buffer is zeroed first). With two slots a tile's copy
    is retired (its slot freed, its counter moved on) only after the next tile's copy is issued, so the
    wait for one write overlaps the next."""
    nbytes = 4 * L.stage_f32
    st = pipeline.start(SR)
    last = qb0 + per_head - 1
    qnext = ntiles                  # a tile t < qnext is the last one key block kb + 1 does not reach
    if kb + 1 < nkb:
        qnext = max((kb + 1) * BLOCK - shift, 0) // FUSED_BQ if L.causal else 0
    t = last
    tile = (i64(b) * H + hk * group) * ntiles + last     # (b, head, t) as one index: no head counter
    jump = ntiles + per_head        # from one past a head's first tile to the next head's last
    for it in range(n):
        si, sph = st
        pipeline.wait(SR, 0, st, sbars)
        src = smem.ptr(L.stage_at + si * 2 * L.stage_f32)
        final = t < qnext
        if L.dq == "ordered" and kb > 0:
            seen = kaiodsl.atomic_or(sem, tile, 0)
            while seen != kb:
                kaiodsl.nanosleep(64)
                seen = kaiodsl.atomic_or(sem, tile, 0)
            kaiodsl.fence()
            kaiodsl.fence_proxy_async("global")
        if L.dq == "ordered" and kb == 0:
            kaiodsl.bulk_store(dqacc + tile * L.stage_f32, src, nbytes)
        else:
            kaiodsl.bulk_reduce(dqacc + tile * L.stage_f32, src, nbytes, "add")
        kaiodsl.bulk_commit()
        if SR.stages == 1:
            _retire(L, SR, sbars, sem, si, tile, final, kb, 0)
        elif it > 0:                # the previous tile (t + 1, or the previous head's first): no registers kept
            wrap = t == last
            _retire(L, SR, sbars, sem, si ^ 1, tile + 1 - kaiodsl.where(wrap, jump, 0),
                    kaiodsl.where(wrap, qb0, t + 1) < qnext, kb, 1)
        st = pipeline.advance(SR, st)
        t = t - 1
        tile = tile - 1
        if t < qb0:                 # the next head's last tile
            t = last
            tile = tile + jump
    if SR.stages > 1 and n > 0:     # the last tile: t wrapped to ``last``, tile one past the last head's
        si, sph = st
        _retire(L, SR, sbars, sem, si ^ 1, tile + 1 - jump, qb0 < qnext, kb, 0)


@kaiodsl.func
def _retire(L: Const, SR: Const, sbars, sem, si, tile, final, kb, pending: Const[int]):
    """Once at most ``pending`` newer bulk copies are unfinished: slot ``si`` is free again (its copy has
    read it) and, "ordered", the tile's counter moves on (its copy has written)."""
    kaiodsl.bulk_wait(pending, read=True)
    kaiodsl.mbarrier_arrive(sbars.ptr(SR.stages + si))
    if L.dq == "ordered" and not (kb == 0 and final):
        kaiodsl.bulk_wait(pending)
        kaiodsl.fence_proxy_async("global")
        kaiodsl.fence()
        kaiodsl.atomic_exch(sem, tile, kaiodsl.where(final, 0, kb + 1))


@kaiodsl.func
def _setup(R: Const, tid, maps, fbar, bars0, bars1, SR: Const = None, sbars=None):
    """Thread 0 prefetches the tensor maps' descriptors and sets up the resident tensors' barrier, the
    two streams' rings and (fused dQ) the partial slots' barriers (full: every consumer thread arrives;
    empty: the writer); then the block barrier."""
    if tid == 0:
        for m in maps:
            kaiodsl.tma_prefetch(m)
        kaiodsl.mbarrier_init(fbar, 1)
        pipeline.init(R, bars0)
        pipeline.init(R, bars1)
        if SR is not None:
            for i in kaiodsl.static_range(SR.stages):
                kaiodsl.mbarrier_init(sbars.ptr(i), 256)
                kaiodsl.mbarrier_init(sbars.ptr(SR.stages + i), 1)
            kaiodsl.fence_mbarrier_init()
    kaiodsl.syncthreads()


@lru_cache(maxsize=None)
def dkdv_kernel(d: int, dtype_name: str, cfg: Sm90BwdConfig, causal: bool, part: str = "both"):
    T = {"f16": f16, "bf16": bf16}[dtype_name]
    L = cfg.layout(d, T, causal, part)
    R = tiles.Ring(cfg.stages, kind="mbarrier", arrivals=256)     # the Q and dO rings: one shape, one state
    SR = tiles.Ring(cfg.dq_slots, kind="mbarrier") if L.fused else None     # the dQ partial slots
    name = f"attn_dkdv_sm90_d{d}_{dtype_name}_{cfg}" + ("_causal" if causal else "") + \
        ("" if part == "both" else "_" + part)

    @kaiodsl.kernel(block_size=THREADS, name=name)
    def attn_dkdv_sm90(tq: TensorMap, tk: TensorMap, tv: TensorMap, tdo: TensorMap, lse: Ptr[f32], dr: Ptr[f32],
                       dk: Ptr[T], dv: Ptr[T], Sq: i32, Sk: i32, H: i32, group: i32, c: f32, scale: f32,
                       shift: i32, dqacc: Ptr[f32], sem: Ptr[i32]):
        smem = kaiodsl.dynamic_shared(T, align=1024)
        qbars = kaiodsl.shared_array(u64, (R.barriers,), align=8, name="qring")
        dbars = kaiodsl.shared_array(u64, (R.barriers,), align=8, name="doring")
        fbar = kaiodsl.shared_array(u64, (1,), align=8, name="kvbar")
        sbars = kaiodsl.shared_array(u64, (SR.barriers,), align=8, name="dqslots") if L.fused else None
        stats = kaiodsl.shared_array(f32, (8 * cfg.bq,), align=8, name="stats")    # [consumer][2 slots][lse2, Dr][bq]
        tid = kaiodsl.thread_idx.x
        nkb = (Sk + BLOCK - 1) // BLOCK
        pid = kaiodsl.block_idx.x
        kb = pid % nkb                              # causal top-left: the first key blocks see the most
        bhk = pid // nkb
        Hkv = H // group
        b = bhk // Hkv
        hk = bhk - b * Hkv
        k0 = kb * BLOCK
        qb0 = 0
        if causal:
            qb0 = max(k0 - shift, 0) // cfg.bq      # query tiles with a row r >= k0 - shift
        ntiles = (Sq + cfg.bq - 1) // cfg.bq
        per_head = max(ntiles - qb0, 0)
        n = per_head * group
        _setup(R, tid, (tq, tk, tv, tdo), fbar, qbars, dbars, SR, sbars)
        if tid < 128:
            kaiodsl.setmaxnreg(PROD_REGS, False, pin_entry=L.fused)   # the fused D 64 kernel's own
            if tid == 0:
                _produce(L, tk, tv, tq, tdo, smem, fbar, qbars, dbars, R, b, hk, k0, hk * group,
                         max(per_head, 1), qb0, n, L.fused)
            if L.fused and tid == WRITER:
                _write_dq(L, SR, smem, sbars, dqacc, sem, b, H, hk, group, kb, nkb, qb0, max(per_head, 1), n,
                          ntiles, shift)
        else:
            kaiodsl.setmaxnreg(CONS_REGS, True, pin_entry=L.fused)     # count is below 168 (C7508)
            _consume_kv(L, smem, stats, fbar, qbars, dbars, R, SR, sbars, lse, dr, dk, dv, Sq, Sk, H, b, bhk, hk,
                        group, k0, qb0, max(per_head, 1), n, c, scale, shift, tid)

    return attn_dkdv_sm90


# -- dQ --------------------------------------------------------------------------------------------------------
@kaiodsl.func
def _consume_q(L: Const, smem, fbar, kbars, vbars, R: Const, lse, dr, dq, Sq, Sk, bh, q0, n, c, scale,
               shift, tid):
    """One consumer warpgroup: dQ of its 64 query rows over the n streamed (K, V) tiles, then the store.
    Pipelined like the dK/dV consumer: tile j's S / dP wgmmas go before tile j - 1's dQ update, dS of
    tile j is computed while that update runs; the V slot is released once dP is done, the K slot
    after the update that reads it."""
    cw = tiles.warpgroup.index(tid) - 1
    lane = tid % 32
    row_wg = q0 + 64 * cw
    row_w = row_wg + 16 * ((tid // 32) % 4)
    qres = cw * L.blocks * 64 * COLS
    dores = L.fixed_elems + qres
    rbase = i64(bh) * Sq
    row = row_w + lane // 4
    l2 = [_lse2(lse, rbase + row + 8 * h, row + 8 * h < Sq) for h in range(2)]
    drv = [kaiodsl.load(dr, rbase + row + 8 * h, mask=row + 8 * h < Sq, other=0.0) for h in range(2)]
    ST = L.s_wg.acc_tile
    dqacc = kaiodsl.wgmma_zeros(L.d)
    s = kaiodsl.wgmma_zeros(L.tile)
    dp = kaiodsl.wgmma_zeros(L.tile)
    dsa = fragments.to_a(ST, fragments.fill(ST, 0.0), L.h2)
    kaiodsl.mbarrier_wait(fbar, 0)
    rs = pipeline.start(R)
    prev = rs
    for j in range(n):
        k0 = j * L.tile
        index, phase = rs
        pipeline.wait(R, 0, rs, kbars)
        s = _ss(L, smem, qres, L.ring0 + index * L.slot_elems, s)               # S = Q K^T
        pipeline.wait(R, 0, rs, vbars)
        dp = _ss(L, smem, dores, L.ring1 + index * L.slot_elems, dp)            # dP = dO V^T
        if L.overlap:                                   # dQ += dS K of tile j - 1 (tile 0: zero fragments)
            pi, pph = prev
            dqacc = _rs(L, dqacc, dsa, smem, L.ring0 + pi * L.slot_elems)
            s, dp, dqacc = kaiodsl.wgmma_wait(1, s, dp, dqacc, complete=2)
        else:
            s, dp = kaiodsl.wgmma_wait(0, s, dp)
        pipeline.release(R, rs, vbars)
        edge = k0 + L.tile > Sk
        if L.causal:
            edge = edge or k0 + L.tile - 1 > row_wg + shift
        ds = _probs(L, s, dp, l2, drv, c, edge, row_w, k0, (Sk, shift, L.causal), lane)   # while dQ's wgmma runs
        if L.overlap:
            dqacc = kaiodsl.wgmma_wait(0, dqacc)
            if j > 0:
                pipeline.release(R, prev, kbars)
        dsa = fragments.to_a(ST, ds, L.h2)
        if not L.overlap:
            dqacc = kaiodsl.wgmma_wait(0, _rs(L, dqacc, dsa, smem, L.ring0 + index * L.slot_elems))
            pipeline.release(R, rs, kbars)
        prev = rs
        rs = pipeline.advance(R, rs)
    if L.overlap and n > 0:
        pi, pph = prev
        dqacc = kaiodsl.wgmma_wait(0, _rs(L, dqacc, dsa, smem, L.ring0 + pi * L.slot_elems))
        pipeline.release(R, prev, kbars)
    _store_rows(L.o_wg.acc_tile, tiles.warpgroup.acc_tile(L.o_wg, dqacc), scale, dq, rbase * L.d, L.d, row_w, Sq,
                lane, L.d, L.dtype)


@lru_cache(maxsize=None)
def dq_kernel(d: int, dtype_name: str, cfg: Sm90BwdConfig, causal: bool):
    T = {"f16": f16, "bf16": bf16}[dtype_name]
    L = Layout(d, T, causal, cfg.bn, cfg.stages, overlap=cfg.overlap)
    R = tiles.Ring(cfg.stages, kind="mbarrier", arrivals=256)     # the K and V rings: one shape, one state
    name = f"attn_dq_sm90_d{d}_{dtype_name}_{cfg}" + ("_causal" if causal else "")

    @kaiodsl.kernel(block_size=THREADS, name=name)
    def attn_dq_sm90(tq: TensorMap, tk: TensorMap, tv: TensorMap, tdo: TensorMap, lse: Ptr[f32], dr: Ptr[f32],
                     dq: Ptr[T], Sq: i32, Sk: i32, H: i32, group: i32, c: f32, scale: f32, shift: i32):
        smem = kaiodsl.dynamic_shared(T, align=1024)
        kbars = kaiodsl.shared_array(u64, (R.barriers,), align=8, name="kring")
        vbars = kaiodsl.shared_array(u64, (R.barriers,), align=8, name="vring")
        fbar = kaiodsl.shared_array(u64, (1,), align=8, name="qbar")
        tid = kaiodsl.thread_idx.x
        nqb = (Sq + BLOCK - 1) // BLOCK
        pid = kaiodsl.block_idx.x
        qb = nqb - 1 - pid % nqb                    # the longest causal tiles first
        bh = pid // nqb
        b = bh // H
        h = bh - b * H
        q0 = qb * BLOCK
        kend = Sk
        if causal:
            kend = max(min(Sk, q0 + BLOCK + shift), 0)
        n = (kend + cfg.bn - 1) // cfg.bn
        _setup(R, tid, (tq, tk, tv, tdo), fbar, kbars, vbars)
        if tid < 128:
            kaiodsl.setmaxnreg(PROD_REGS, False)
            if tid == 0:
                _produce(L, tq, tdo, tk, tv, smem, fbar, kbars, vbars, R, b, h, q0, h // group, max(n, 1), 0,
                         n, False)
        else:
            kaiodsl.setmaxnreg(CONS_REGS, True)
            _consume_q(L, smem, fbar, kbars, vbars, R, lse, dr, dq, Sq, Sk, bh, q0, n, c, scale, shift, tid)

    return attn_dq_sm90


# -- the fused dQ's f32 buffer to dq ------------------------------------------------------------------------
CONVERT_THREADS = 256


@lru_cache(maxsize=None)
def convert_kernel(d: int, dtype_name: str):
    """dq = scale * the f32 buffer the fused dQ adds into: one block a query tile (b, h, t), whose
    [d / 64][64][64] f32 partial block (16-byte chunks swizzled by row, see _put_dq) becomes rows
    64 t .. of dq [B, H, Sq, d], four columns a thread and step. Tiles before ``first`` have no key
    (causal, Sq > Sk bottom-right): no key block wrote them, so their rows are zeros."""
    T = {"f16": f16, "bf16": bf16}[dtype_name]
    steps = FUSED_BQ * d // 4 // CONVERT_THREADS

    @kaiodsl.kernel(block_size=CONVERT_THREADS, name=f"attn_dq_convert_sm90_d{d}_{dtype_name}")
    def attn_dq_convert(dqacc: Ptr[f32], dq: Ptr[T], Sq: i32, ntiles: i32, first: i32, scale: f32):
        tile = kaiodsl.block_idx.x
        bh = tile // ntiles
        t = tile - bh * ntiles
        src = i64(tile) * (FUSED_BQ * d)
        for i in kaiodsl.static_range(steps):
            ch = kaiodsl.thread_idx.x + CONVERT_THREADS * i         # 16-byte chunk of the tile's block
            cb = ch // (16 * FUSED_BQ)
            r = (ch // 16) % FUSED_BQ
            col = cb * COLS + 4 * ((ch % 16) ^ (r % 8))
            row = t * FUSED_BQ + r
            if row < Sq:
                v = kaiodsl.load(dqacc, src + 4 * ch, vec=4, cache="cs", mask=t >= first, other=0.0)
                kaiodsl.store(dq, (i64(bh) * Sq + row) * d + col,
                              (T(v[0] * scale), T(v[1] * scale), T(v[2] * scale), T(v[3] * scale)), vec=4)

    return attn_dq_convert


# -- selection and launch --------------------------------------------------------------------------------------
def takes_sm90(config, arrays, D: int, op: str) -> bool:
    """Whether ops.attention_backward runs these kernels: on sm_90a with D 64 or 128 and contiguous
    q, k, v, do, unless ``config`` is a BwdConfig (the mma.sync kernels). An explicit Sm90BwdConfig
    asks for them and is an ArgumentError where they cannot run."""
    from kaiodsl.compiler import default_arch

    forced = isinstance(config, Sm90BwdConfig)
    if config is not None and not forced:
        return False
    arch = default_arch()
    why = [(arch == "sm_90a", f"the target is {arch}, not sm_90a"),
           (D in (64, 128), f"head dim D={D} is not 64 or 128"),
           (all(z.contiguous for z in arrays), "q, k, v and do must be contiguous [B, H, S, D]")]
    if forced and D in (64, 128) and config.smem_bytes(D) > SMEM_LIMIT:
        why.append((False, f"it needs {config.smem_bytes(D)} bytes of shared memory at D={D}, at most "
                           f"{SMEM_LIMIT} fit (fewer stages or smaller tiles)"))
    bad = [w for ok, w in why if not ok]
    if forced and bad:
        raise ArgumentError(f"{op}(): config={config!r} asks for the sm_90a kernels, which cannot run here: "
                            + "; ".join(bad))
    return not bad


def launch(q, k, v, do, lse, dr, dq, dk, dv, dtype_name: str, B: int, H: int, Hkv: int, Sq: int, Sk: int, D: int,
           causal_mode, scale: float, c: float, like, cfg: Sm90BwdConfig | None = None):
    """The dK/dV and dQ kernels on contiguous q/do [B, H, Sq, D], k/v [B, Hkv, Sk, D], lse and dr (Dr,
    the rowdot kernel's) f32 [B, H, Sq]; ``c`` = scale * log2(e); ``like`` q's Arr (where the fused
    dQ's f32 buffer and counters are allocated)."""
    cfg = cfg or sm90_bwd_config(D)
    q, k, v, do = (_canonical(x) for x in (q, k, v, do))
    shift = Sk - Sq if causal_mode == "bottom_right" else 0
    causal = causal_mode is not None

    def tmap(x, rows):
        return TensorMap(x, (1, 1, rows, COLS), dtype=dtype_name, swizzle=128, l2_promotion=256)

    nkb = (Sk + BLOCK - 1) // BLOCK
    maps = (tmap(q, cfg.bq), tmap(k, 64), tmap(v, 64), tmap(do, cfg.bq))
    mode = cfg.dq_mode
    ntiles = (Sq + FUSED_BQ - 1) // FUSED_BQ
    if mode == "kernel":
        dqacc, sem = lse, tickets(like, 1)          # not read: the dQ kernel makes dq
    else:
        alloc = zeros_like if mode == "atomic" else new_like
        dqacc = alloc(like, (B * H * ntiles * FUSED_BQ * D,), f32)
        sem = tickets(like, B * H * ntiles)
    for part in cfg.parts(D):
        kv = dkdv_kernel(D, dtype_name, cfg, causal, part)
        kv[B * Hkv * nkb, THREADS](*maps, lse, dr, dk, dv, Sq, Sk, H, H // Hkv, c, scale, shift, dqacc, sem,
                                   smem=cfg.layout(D, f16, causal, part).smem_bytes)
    if mode != "kernel":
        first = max(-shift, 0) // FUSED_BQ if causal else 0
        convert_kernel(D, dtype_name)[B * H * ntiles, CONVERT_THREADS](dqacc, dq, Sq, ntiles, first, scale)
        return dq, dk, dv
    kq = dq_kernel(D, dtype_name, cfg, causal)
    nqb = (Sq + BLOCK - 1) // BLOCK
    kq[B * H * nqb, THREADS](tmap(q, 64), tmap(k, cfg.bn), tmap(v, cfg.bn), tmap(do, 64), lse, dr, dq, Sq, Sk, H,
                             H // Hkv, c, scale, shift, smem=Layout(D, f16, causal, cfg.bn, cfg.stages).smem_bytes)
    return dq, dk, dv
