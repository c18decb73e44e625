"""The flash-attention forward kernel (FlashAttention-2 on mma.sync, sm_80+), on the tile library.

One block owns ``bq`` query rows of one (batch, head); each warp 16 ``rows_per_warp`` of them. Q is
loaded once into shared memory and kept as A fragments in registers (``q_regs``); key/value blocks of
``bk`` rows stream through a cp.async ring of ``stages`` slots. Per key block: S = Q K^T on
fragments (K is the K-major B operand: plain ldmatrix), mask by coordinates (keys past the end of the
range, causal), the exp2 online softmax of tiles.softmax, and O += P V with P converted from the
accumulator to the A operand in registers (V is a [K, N] B operand: ldmatrix.trans). One barrier
per key block: the refill of the slot read in the previous block is issued after it.

The key range of a block is [split * keys_per_split, ...) (flash-decoding: several blocks share one
query block's keys and write f32 partial outputs and LSEs that ``attention_combine`` merges).
Every base offset (batch, head, split, row x stride) is 64-bit.
"""


from dataclasses import dataclass
from functools import lru_cache

import kaiodsl
from kaiodsl import Const, Ptr, bf16, f16, f16x2, bf16x2, f32, i32, i64, tiles
from kaiodsl.tiles import copies, fragments, mma, pipeline, softmax

NEG_INF = -float("inf")


@dataclass(frozen=True)
class FwdConfig:
    """``bq`` query rows a block (16 * mi per warp), ``bk`` keys a block, ``stages`` K/V slots."""

    bq: int = 128
    bk: int = 64
    warps: int = 8
    stages: int = 2
    q_regs: bool = True     # Q's A fragments stay in registers (else re-read from shared memory)

    @property
    def threads(self) -> int:
        return 32 * self.warps

    @property
    def rows_per_warp(self) -> int:
        return self.bq // self.warps

    def smem_bytes(self, d: int) -> int:
        return 2 * (self.bq * d + 2 * self.stages * self.bk * d)

    def __str__(self):
        return f"q{self.bq}k{self.bk}w{self.warps}s{self.stages}" + ("" if self.q_regs else "_qsmem")


def fwd_config(d: int, sq: int) -> FwdConfig:
    """The tile heuristic (``sq``: the query rows of a (batch, head), or of a packed GQA group):
    128 rows over 8 warps (16 rows each: O stays at d/2 registers a lane); one warp of 16 rows with
    16-key blocks in a 4-slot ring for sq <= 16 (decode: bandwidth-bound, many small blocks an SM);
    64 rows over 4 warps up to 64; at d = 256 always 64 rows over 4 warps, 16-key blocks and Q
    re-read from shared memory (registers: O alone is 128 a lane)."""
    if d > 128:
        return FwdConfig(bq=64, bk=16, warps=4, stages=2, q_regs=False)
    if sq <= 16:
        return FwdConfig(bq=16, bk=16, warps=1, stages=4)
    if sq <= 64:
        return FwdConfig(bq=64, bk=64 if d <= 64 else 32, warps=4, stages=3 if d <= 64 else 4)
    return FwdConfig(bq=128, bk=64, warps=8, stages=3 if d <= 64 else 2)


@dataclass(frozen=True)
class Layout:
    """The compile-time shape of one forward kernel."""

    d: int
    dtype: object
    cfg: FwdConfig
    causal: bool
    out: object          # the output's dtype (f32 for the split partials)
    wide: bool = False   # 64-bit offsets inside tiles (row strides x tile rows >= 2^31)

    @property
    def q_tile(self):
        return tiles.SmemTile(self.cfg.bq, self.d, self.dtype)

    @property
    def k_tile(self):
        return tiles.SmemTile(self.cfg.bk, self.d, self.dtype, self.cfg.stages).after(self.q_tile)

    @property
    def v_tile(self):
        return tiles.SmemTile(self.cfg.bk, self.d, self.dtype, self.cfg.stages).after(self.k_tile)

    @property
    def s_warp(self):
        return tiles.WarpMma(self.cfg.rows_per_warp, self.cfg.bk, tiles.MmaAtom(self.dtype.name))

    @property
    def o_warp(self):
        return tiles.WarpMma(self.cfg.rows_per_warp, self.d, tiles.MmaAtom(self.dtype.name))

    @property
    def h2(self):
        return f16x2 if self.dtype == f16 else bf16x2


@kaiodsl.func
def visible(row, col, args):
    """Key ``col`` is seen by query ``row``: inside the key range and, causal, col <= row + shift."""
    kend, shift, causal = args
    if causal:
        return col < kend and col <= row + shift
    return col < kend


@kaiodsl.func
def _same(x):
    return x


@kaiodsl.func
def _fill(L: Const, ck, cv, kplan, vplan, kld, vld, state, k0, kend):
    index, phase = state
    copies.issue(ck, kplan, kld, index, k0, kend)
    copies.issue(cv, vplan, vld, index, k0, kend)


@kaiodsl.func
def _b_frags(T: Const, bases, R: Const[int], C: Const[int], count: Const[int], off, trans: Const[bool]):
    """``count`` n8 B fragments (count / 2 ldmatrix.x4) at logical (R + 16 p, C) of tile T (+ off elements)."""
    frags = []
    for p in kaiodsl.static_range(count // 2):
        if trans:
            f = kaiodsl.ldmatrix(copies.chunk_at(T, bases, R, C + 2 * p) + off, 4, trans=True)
        else:
            f = kaiodsl.ldmatrix(copies.chunk_at(T, bases, R + 16 * p, C) + off, 4)
        frags = frags + [(f[0], f[1]), (f[2], f[3])]
    return frags


@kaiodsl.func
def _q_slab(L: Const, qb, kk: Const[int]):
    return [kaiodsl.ldmatrix(copies.chunk_at(L.q_tile, qb, 16 * i, 2 * kk), 4) for i in range(L.s_warp.mi)]


@kaiodsl.func
def _q_frags(L: Const, qb):
    return [_q_slab(L, qb, kk) for kk in kaiodsl.static_range(L.d // 16)]


@kaiodsl.func
def _scores(L: Const, qf, qb, kb, stage):
    """S = Q K^T for this warp's rows and one key block (raw units); K is the K-major B operand."""
    SW = L.s_warp
    s = fragments.zeros(SW.acc_tile)
    for kk in kaiodsl.static_range(L.d // 16):
        if L.cfg.q_regs:
            a = qf[kk]
        else:
            a = _q_slab(L, qb, kk)
        s = mma.mma_tile(SW, s, a, _b_frags(L.k_tile, kb, 0, 2 * kk, SW.nj, stage * L.k_tile.elems, False))
    return s


@kaiodsl.func
def _pv(L: Const, acc, p, vb, stage):
    """O += P V with P (an accumulator) as the A operand, no shared memory; V is [K, N]: ldmatrix.trans."""
    pa = fragments.to_a(L.s_warp.acc_tile, p, L.h2)
    for kk in kaiodsl.static_range(L.cfg.bk // 16):
        a = [pa[i][kk] for i in range(L.s_warp.mi)]
        acc = mma.mma_tile(L.o_warp, acc, a, _b_frags(L.v_tile, vb, 16 * kk, 0, L.o_warp.nj,
                                                      stage * L.v_tile.elems, True))
    return acc


@kaiodsl.func
def _store_o(L: Const, acc, inv, o, obase, os, row0, Sq, lane):
    """O / l to rows row0.. (stride os) of the output at obase; 2-element stores, rows >= Sq skipped."""
    T = L.o_warp.acc_tile
    for i in kaiodsl.static_range(T.mi):
        for h in kaiodsl.static_range(2):
            row = row0 + i * 16 + lane // 4 + 8 * h
            if row < Sq:
                rbase = obase + i64(row) * os
                for j in kaiodsl.static_range(T.nj):
                    col = j * 8 + 2 * (lane % 4)
                    copies.store_pair(o, rbase + col, acc[i][j][2 * h] * inv[i][h],
                                      acc[i][j][2 * h + 1] * inv[i][h], col, L.d, L.out)


@kaiodsl.func
def forward_body(L: Const, q, k, v, o, lse, Sq, Sk, H, group, qs, ks, vs, os, c, shift, kps, seqlens,
                 SEQLENS: Const[int]):
    """One block: query rows q0.. of head (b, h), keys [split * kps, ...) (see the module doc).
    ``qs``/``ks``/``vs``/``os`` are (element offset, batch stride, head stride, row stride); o/lse of
    a split go to ``o + split * os[4]`` / ``lse + split * B H Sq``. SEQLENS: 0 none; 1 per-batch key
    lengths ``seqlens[b]``; 2 the same and the causal diagonal aligned to that length (bottom right)."""
    cfg = L.cfg
    smem = kaiodsl.dynamic_shared(L.dtype)
    tid = kaiodsl.thread_idx.x
    lane = tid % 32
    nqb = (Sq + cfg.bq - 1) // cfg.bq
    pid = kaiodsl.block_idx.x
    qb = nqb - 1 - pid % nqb                        # the longest causal blocks first (a shorter tail)
    bh = pid // nqb
    b = bh // H
    h = bh - b * H
    hk = h // group
    split = kaiodsl.block_idx.y
    q0 = qb * cfg.bq
    wm0 = (tid // 32) * cfg.rows_per_warp
    skv = Sk
    if SEQLENS > 0:
        skv = max(min(seqlens[b], Sk), 0)
        if SEQLENS == 2:
            shift = shift + (skv - Sk)
    kstart = split * kps
    kend = min(skv, kstart + kps)
    if L.causal:
        kend = min(kend, q0 + cfg.bq + shift)       # the block's last row sees keys <= q0 + bq - 1 + shift
    qbase = q + (qs[0] + i64(b) * qs[1] + i64(h) * qs[2])
    kbase = k + (ks[0] + i64(b) * ks[1] + i64(hk) * ks[2])
    vbase = v + (vs[0] + i64(b) * vs[1] + i64(hk) * vs[2])
    cq = tiles.TileCopy(L.q_tile, cfg.threads, "cols", "cp.async", L.wide)
    ck = tiles.TileCopy(L.k_tile, cfg.threads, "rows", "cp.async", L.wide)
    cv = tiles.TileCopy(L.v_tile, cfg.threads, "rows", "cp.async", L.wide)
    R = tiles.Ring(cfg.stages)
    kplan = copies.plan(ck, smem, kbase, ks[3], 0, L.d, tid)
    vplan = copies.plan(cv, smem, vbase, vs[3], 0, L.d, tid)
    copies.issue(cq, copies.plan(cq, smem, qbase, qs[3], q0, Sq, tid), qs[3], 0, 0, L.d)
    pipeline.commit(R)                              # Q is its own group: read before the first key block
    nb = max((kend - kstart + cfg.bk - 1) // cfg.bk, 0)
    for st in kaiodsl.static_range(cfg.stages - 1):           # the prologue: stages - 1 key blocks in flight
        if st < nb:
            _fill(L, ck, cv, kplan, vplan, ks[3], vs[3], pipeline.start(R, st), kstart + st * cfg.bk, kend)
        pipeline.commit(R)
    qa = copies.lane_chunks(smem, L.q_tile, wm0 + lane % 16, lane // 16)            # A: rows, k halves
    kb = copies.lane_chunks(smem, L.k_tile, (lane // 16) * 8 + lane % 8, (lane // 8) % 2)   # B K-major
    vb = copies.lane_chunks(smem, L.v_tile, ((lane // 8) % 2) * 8 + lane % 8, lane // 16)  # B [K, N]
    ST = L.s_warp.acc_tile
    m = [[f32(NEG_INF), f32(NEG_INF)] for i in range(ST.mi)]
    l = [[f32(0.0), f32(0.0)] for i in range(ST.mi)]
    acc = fragments.zeros(L.o_warp.acc_tile)
    pipeline.wait(R, cfg.stages - 1)                # Q landed (the key blocks may still be in flight)
    qf = 0
    if cfg.q_regs:
        qf = _q_frags(L, qa)
    read = pipeline.start(R)
    write = pipeline.start(R, cfg.stages - 1)
    row_lo = q0 + wm0
    for j in range(nb):
        pipeline.wait(R, cfg.stages - 2)            # block j landed; every warp is done with block j - 1
        write = pipeline.acquire(R, write)
        t = j + cfg.stages - 1
        if t < nb:                                  # refill the slot block j - 1 used
            _fill(L, ck, cv, kplan, vplan, ks[3], vs[3], write, kstart + t * cfg.bk, kend)
        pipeline.commit(R)
        write = pipeline.advance(R, write)
        index, phase = read
        k0 = kstart + j * cfg.bk
        s = fragments.map(ST, _scores(L, qf, qa, kb, index), _same)    # tuples, as mask returns them
        edge = k0 + cfg.bk > kend
        if L.causal:
            edge = edge or k0 + cfg.bk - 1 > row_lo + shift
        if edge:
            s = fragments.mask(ST, s, visible, (kend, shift, L.causal), row_lo, k0, lane, NEG_INF)
        p, m, l, alpha = softmax.online_update(ST, s, m, l, c)
        acc = fragments.scale_rows(L.o_warp.acc_tile, acc, alpha)
        acc = _pv(L, acc, p, vb, index)
        read = pipeline.advance(R, pipeline.release(R, read))
    pipeline.drain(R)
    lsum = softmax.finish(ST, l)
    inv = softmax.inverse(ST, lsum)
    _store_o(L, acc, inv, o, os[0] + i64(split) * os[4] + i64(b) * os[1] + i64(h) * os[2], os[3], row_lo, Sq, lane)
    rows = softmax.lse(ST, m, lsum, c)
    lbase = (i64(split) * (kaiodsl.grid_dim.x // nqb) + bh) * Sq     # splits of [B H, Sq] f32
    tiles.epilogue.store_rows(ST, lse + lbase, rows, row_lo, lane, Sq)


@lru_cache(maxsize=None)
def forward_kernel(d: int, dtype_name: str, cfg: FwdConfig, causal: bool, out_name: str, seqlens: int,
                   wide: bool = False):
    T = {"f16": f16, "bf16": bf16}[dtype_name]
    OUT = {"f16": f16, "bf16": bf16, "f32": f32}[out_name]
    L = Layout(d, T, cfg, causal, OUT, wide)
    name = f"attn_fwd_d{d}_{dtype_name}_{out_name}_{cfg}" + ("_causal" if causal else "") + \
           (f"_len{seqlens}" if seqlens else "") + ("_wide" if wide else "")

    @kaiodsl.kernel(block_size=cfg.threads, name=name)
    def attn_fwd(q: Ptr[T], k: Ptr[T], v: Ptr[T], o: Ptr[OUT], lse: Ptr[f32], lens: Ptr[i32],
                 Sq: i32, Sk: i32, H: i32, group: i32,
                 qo: i64, qsb: i64, qsh: i64, qss: i32, ko: i64, ksb: i64, ksh: i64, kss: i32,
                 vo: i64, vsb: i64, vsh: i64, vss: i32, oo: i64, osb: i64, osh: i64, oss: i32, osp: i64,
                 c: f32, shift: i32, kps: i32):
        forward_body(L, q, k, v, o, lse, Sq, Sk, H, group, (qo, qsb, qsh, qss), (ko, ksb, ksh, kss),
                     (vo, vsb, vsh, vss), (oo, osb, osh, oss, osp), c, shift, kps, lens, seqlens)

    return attn_fwd


COMBINE_UNROLL = 16   # partial outputs in flight a lane: the merge is latency-bound, one split after another


@kaiodsl.func
def _lse_merge(m, s, m2, s2):
    """(max, sum of exp) of two partial log-sum-exps; -inf maxima (nothing seen) contribute 0."""
    mm = max(m, m2)
    a = kaiodsl.where(m == NEG_INF, f32(0.0), kaiodsl.exp2((m - mm) * 1.4426950408889634))
    b = kaiodsl.where(m2 == NEG_INF, f32(0.0), kaiodsl.exp2((m2 - mm) * 1.4426950408889634))
    return mm, s * a + s2 * b


@kaiodsl.func
def combine_body(D: Const[int], OUT: Const, po, plse, o, lse, splits, rows, Sq, H, oo, osb, osh, oss):
    """One warp a (row (b, h, s), 32 columns): lse = log sum_i exp(lse_i), o = sum_i exp(lse_i - lse) o_i;
    a row whose every split saw no key keeps o = 0 and lse = -inf. The lanes share the splits' LSEs
    (one online pass, then a butterfly), and each lane then sums its column over the splits with
    COMBINE_UNROLL independent loads a step (clamped indices and zero weights, no branches)."""
    tid = kaiodsl.thread_idx.x
    lane = tid % 32
    chunks = (D + 31) // 32
    wid = kaiodsl.block_idx.x * (kaiodsl.block_dim.x // 32) + tid // 32
    row = wid // chunks
    col = (wid - row * chunks) * 32 + lane
    if row < rows:
        mx = f32(NEG_INF)
        tot = f32(0.0)
        for sp in range(lane, splits, 32):
            mx, tot = _lse_merge(mx, tot, plse[i64(sp) * rows + row], f32(1.0))
        for sh in kaiodsl.static_range(5):
            mx, tot = _lse_merge(mx, tot, kaiodsl.shfl_xor(mx, 1 << sh), kaiodsl.shfl_xor(tot, 1 << sh))
        base = kaiodsl.where(mx == NEG_INF, f32(0.0), mx)
        bh = row // Sq
        s = row - bh * Sq
        b = bh // H
        h = bh - b * H
        cc = min(col, D - 1)
        val = f32(0.0)
        for c0 in range(0, splits, COMBINE_UNROLL):
            for j in kaiodsl.static_range(COMBINE_UNROLL):
                sp = min(c0 + j, splits - 1)
                w = kaiodsl.exp2((plse[i64(sp) * rows + row] - base) * 1.4426950408889634)
                val = val + kaiodsl.where(c0 + j < splits, w, f32(0.0)) * po[(i64(sp) * rows + row) * D + cc]
        if col < D:
            out = kaiodsl.where(tot > 0.0, val / tot, f32(0.0))
            o[oo + i64(b) * osb + i64(h) * osh + i64(s) * oss + col] = OUT(out)
        if col == 0:
            lse[i64(row)] = kaiodsl.where(tot > 0.0, base + kaiodsl.log(tot), f32(NEG_INF))


def combine_grid(rows: int, d: int) -> tuple:
    """(blocks, threads) of combine_kernel: a warp per (row, 32 columns), 4 warps a block."""
    return (rows * ((d + 31) // 32) + 3) // 4, 128


@lru_cache(maxsize=None)
def combine_kernel(d: int, out_name: str):
    OUT = {"f16": f16, "bf16": bf16, "f32": f32}[out_name]

    @kaiodsl.kernel(block_size=128, name=f"attn_combine_d{d}_{out_name}")
    def attn_combine(po: Ptr[f32], plse: Ptr[f32], o: Ptr[OUT], lse: Ptr[f32], splits: i32, rows: i32, Sq: i32,
                     H: i32, oo: i64, osb: i64, osh: i64, oss: i32):
        combine_body(d, OUT, po, plse, o, lse, splits, rows, Sq, H, oo, osb, osh, oss)

    return attn_combine
