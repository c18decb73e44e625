"""The decode main loop (M <= 16) for f16/bf16, int8 and int4 weights: weights streamed once, K split
over warps.

At decode sizes the GEMM is a weight stream: a block is ``n_tiles x k_split`` warps; warp (nt, kq)
owns ``nw`` n8 column tiles and a 1/k_split share of K, loads 16 bytes of weights a lane per n8 tile
and k unit (``unroll`` units in flight), and the A fragments straight from global memory (A is a few
rows: L1/L2 resident). The partial tiles of the K split are summed through shared memory in a fixed
order (deterministic) and every warp gets the total; warps with kq == 0 store it.

Three options move fewer bytes per useful byte (DecodeConfig): ``stage_a`` copies the block's A rows
over its K range into shared memory once (cp.async; L2 -> SM traffic for A per block, not per warp
tile, which matters at M = 16 where A is as many bytes a k as 64 int4 columns); ``splits`` cuts K
across blocks too (grid.z), so blocks can be wide (fewer A copies) and still fill the SMs: each block
writes an f32 partial, the last to take the column tile's ticket sums them in split order
(``combine_splits``: the same bits every run); ``prefetch`` issues step kb + unroll's weight loads
(int4: and group scales) before step kb's mma, so a warp never waits with nothing in flight.

The k order inside a unit is a permutation the dot product does not see, chosen so that both operands
are contiguous 16-byte loads (ops/int4_pack.py for int4). int8 (raw [N, K] rows, unit 64 k): lane t
holds k 16 t .. 16 t + 15 of weight row n; mma step s takes its bytes 4 s .. 4 s + 3 as the B fragment
(k 2t, 2t+1 | 2t+8, 2t+9 of the step, PTX ISA 9.7.14.5.8) and halves 4 s .. 4 s + 3 of A's row chunk
as the matching A registers, so one word of weights feeds one mma without a byte shuffle. f16/bf16
(raw [N, K] rows, unit 32 k) takes int4's order: lane t holds k 8 t .. 8 t + 7, two words a k16 step.
"""

from dataclasses import dataclass

import kaiodsl
from kaiodsl import Const, f32, i64, tiles, u32
from kaiodsl.tiles.dequant import (MAGIC, group_consts, group_rows, int4_pair, int4_q_halves, int4_zero_halves,
                                   int8_quad)
from kaiodsl.types import ScalarType


@dataclass(frozen=True)
class DecodeConfig:
    """``n_tiles`` warps along N with ``nw`` n8 tiles each, ``k_split`` warps along K, ``unroll``
    16-byte weight loads per n8 tile in flight; ``splits`` K ranges across blocks (grid.z; the last
    block of a column tile to finish sums the f32 partials in split order); ``stage_a``: the block's A
    rows over its K range copied once into shared memory (cp.async) instead of read by every warp;
    ``prefetch``: step kb + unroll's weights (int4: and group scales) are loaded before step kb's mma
    (two register sets: a warp always has loads in flight); ``ring`` > 1: the weights come by cp.async
    into a ring of ``ring`` steps in shared memory, each thread's own 16-byte pieces (so no barrier:
    a thread waits only for its own copies), ``ring - 1`` steps in flight that hold no registers;
    ``late_scale`` (int4 weights only): the B fragments hold q - zero (exact small integers: two
    instructions a pair, not three) and each group's scale multiplies the f32 sum of that group's
    products, once per accumulator element (its group scales are then loaded where they are used, not
    prefetched); ``prefetch_a`` (with prefetch, A from global): step kb + unroll's A fragments are loaded
    with its weights, so no step waits on an A load it issued itself."""

    n_tiles: int = 4
    k_split: int = 4
    nw: int = 4
    unroll: int = 2
    splits: int = 1
    stage_a: bool = False
    prefetch: bool = False
    ring: int = 0
    late_scale: bool = False
    prefetch_a: bool = False

    @property
    def block_n(self) -> int:
        return 8 * self.nw * self.n_tiles

    @property
    def block_m(self) -> int:
        return 16

    @property
    def threads(self) -> int:
        return 32 * self.n_tiles * self.k_split

    def block_units(self, K: int, unit: int) -> int:
        """16-byte weight loads (``unit`` k each) of one block's K range."""
        return -(-(K // unit) // self.splits)

    def a_bytes(self, K: int, unit: int, two_rows: bool = True) -> int:
        """Shared memory of the staged A: 16 (M <= 8: 8) rows of the block's K range."""
        return (16 if two_rows else 8) * self.block_units(K, unit) * unit * 2 if self.stage_a else 0

    def ring_bytes(self) -> int:
        """The cp.async weight ring: ``ring`` steps of unroll x nw 16-byte pieces a thread."""
        return self.ring * self.unroll * self.nw * self.threads * 16

    def smem_bytes(self, rope_cols: int = 0, a_bytes: int = 0) -> int:
        return max(self.k_split * self.n_tiles * self.nw * 32 * 4 * 4, 16 * rope_cols * 4, a_bytes,
                   self.ring_bytes(), 16)

    def workspace_elems(self, tiles_mn: int) -> int:
        """f32 partials of ``tiles_mn`` (grid.x * grid.y) column tiles, every split (0 unsplit)."""
        return tiles_mn * self.splits * self.n_tiles * self.nw * 128 if self.splits > 1 else 0

    def __str__(self) -> str:
        return (f"n{self.n_tiles}k{self.k_split}w{self.nw}u{self.unroll}" +
                (f"s{self.splits}" if self.splits > 1 else "") + ("a" if self.stage_a else "") +
                ("p" if self.prefetch else "") + (f"r{self.ring}" if self.ring else "") +
                ("l" if self.late_scale else "") + ("A" if self.prefetch_a else ""))


@dataclass(frozen=True)
class DecodeGemm:
    cfg: DecodeConfig
    dtype: ScalarType
    wkind: str            # "f16" (weights in the activation dtype) | "int8" | "int4"
    group: int = 0        # 0: per-channel (int8)
    has_zeros: bool = False
    two_rows: bool = True  # rows g + 8 too (M > 8)
    exact: bool = False    # K's units split evenly into whole unroll steps of every warp (decode_exact)

    @property
    def unit(self) -> int:
        """k per 16-byte weight load."""
        return {"f16": 32, "int8": 64, "int4": 128}[self.wkind]

    @property
    def rows(self) -> int:
        """Rows of A a staged block holds (16, or 8 when M <= 8)."""
        return 16 if self.two_rows else 8

    @property
    def acc_tile(self) -> tiles.AccTile:
        return tiles.AccTile(1, self.cfg.nw)

    @property
    def is_f16(self) -> bool:
        return self.dtype.name == "f16"


def decode_exact(cfg: DecodeConfig, K: int, unit: int) -> bool:
    """Whether every warp's K range is a whole number of ``unroll`` steps and none is empty (K / unit
    a multiple of splits * k_split * unroll): the kernel then loads weights without a K mask or branch."""
    units = K // unit
    return K % unit == 0 and units > 0 and units % (cfg.splits * cfg.k_split * cfg.unroll) == 0


@kaiodsl.func
def warp_place(G: Const, tid):
    """(nt, kq): this warp's n group and K share."""
    warp = tid // 32
    return warp % G.cfg.n_tiles, warp // G.cfg.n_tiles


@kaiodsl.func
def _a_load(G: Const, ap, k0, sa, kbase, soff, extra: Const[int]):
    """8 halves of A at k0 + extra (+ this lane's offset) of one row: from global (``ap``: rows past M
    read row M - 1, whose products land in accumulator rows that are never stored) or, staged, from
    shared memory (``soff``: the lane's word offset in a 32-k chunk of ``stage_rows``' layout, from
    _stage_offset)."""
    if G.cfg.stage_a:
        return kaiodsl.load(sa, ((k0 - kbase) // 32) * (G.rows * 16) + soff + extra // 2, vec=4)
    return kaiodsl.load(ap, (k0 + extra) // 2, vec=4, cache="nc")


@kaiodsl.func
def _a_unit(G: Const, A, ku):
    """A's pieces of K unit ``ku``: int4 [(row g, row g + 8)] a 32-k step, f16 one pair, int8 the pairs at
    k 0 and k 8 of the lane's 16 (rows g + 8 zero for M <= 8)."""
    a0p, a1p, sa, kbase, s0, s1 = A
    k0 = ku * G.unit
    out = []
    for i in kaiodsl.static_range(4 if G.wkind == "int4" else 2 if G.wkind == "int8" else 1):
        kk = k0 + 32 * i if G.wkind == "int4" else k0
        extra = 8 * i if G.wkind == "int8" else 0
        x0 = _a_load(G, a0p, kk, sa, kbase, s0, extra)
        x1 = _a_load(G, a1p, kk, sa, kbase, s1, extra) if G.two_rows else (0, 0, 0, 0)
        out = out + [(x0, x1)]
    return out


@kaiodsl.func
def _stage_offset(G: Const, r, t):
    """u32 word offset of row r's piece for lane t in a staged chunk: piece t (int4/f16: k 8t ..) or, int8
    (k 16t .. of a 64-k unit), pieces 2 (t % 2), + 1 of chunk t // 2."""
    if G.wkind == "int8":
        return ((t // 2) * G.rows + r) * 16 + (t % 2) * 8
    return (r * 4 + t) * 4


@kaiodsl.func
def stage_rows(G: Const, sa, a, M, K, m0, kbase, units):
    """Copy rows m0 .. m0 + rows - 1 of A, k kbase .. kbase + unit * units, into shared memory as
    [32-k chunk][row][4 pieces of 8 k] (a warp's fragment loads are 512 contiguous bytes: no bank
    conflict); rows past M are zero-filled. One cp.async group: the caller waits for it (and syncs)."""
    C = G.cfg
    tid = kaiodsl.thread_idx.x
    total = units * (G.unit // 32) * G.rows * 4
    for i in range(tid, total, C.threads):
        row = m0 + (i // 4) % G.rows
        src = a + (i64(min(row, M - 1)) * K + kbase + 32 * (i // (4 * G.rows)) + 8 * (i % 4))
        kaiodsl.cp_async(sa + 4 * i, src, 16, mask=row < M)
    kaiodsl.cp_async_commit()


@kaiodsl.func
def _frag(x0, x1, w0: Const[int], w1: Const[int], H2: Const, TWO: Const[bool]):
    zero = kaiodsl.bitcast(u32(0), H2)
    return [kaiodsl.bitcast(x0[w0], H2), kaiodsl.bitcast(x1[w0], H2) if TWO else zero,
            kaiodsl.bitcast(x0[w1], H2), kaiodsl.bitcast(x1[w1], H2) if TWO else zero]


@kaiodsl.func
def main_loop(G: Const, smem32, a, w, scales, zeros, M, N, K, m0, col0):
    """The total (all K) accumulator tile AccTile(1, nw) of this warp's columns (col0 + 8 nw nt ..)
    for rows m0 .. m0 + 15; ``w`` a u32 pointer (int4: the pack_int4 layout; int8: [N, K] bytes);
    ``scales``/``zeros`` per group [N, K / group] (unused for per-channel int8).

    Rows past M read A's last row and columns past N the last n8 tile's (or row's) weights: their
    products only reach accumulator rows and columns the caller does not store, so no load is masked
    but the K tail's (none when G.exact)."""
    C = G.cfg
    tid = kaiodsl.thread_idx.x
    lane = tid % 32
    g = lane // 4
    t = lane % 4
    nt, kq = warp_place(G, tid)
    ntile = col0 // 8 + nt * C.nw
    KB = K // G.unit
    B0 = 0
    B1 = KB
    if C.splits > 1:                   # this block's K range (empty for the last splits of a short K)
        perb = (KB + C.splits - 1) // C.splits        # DecodeConfig.block_units
        B0 = kaiodsl.i32(min(i64(kaiodsl.block_idx.z) * perb, KB))     # (i64: no product wraps)
        B1 = min(B0 + perb, KB)
    per = (B1 - B0 + C.k_split - 1) // C.k_split
    b0 = B0 + kq * per
    b1 = min(b0 + per, B1)
    kbase = B0 * G.unit
    sa = kaiodsl.ptr_cast(smem32, u32)
    if C.stage_a:
        stage_rows(G, sa, a, M, K, m0, kbase, B1 - B0)
    lk = 16 if G.wkind == "int8" else 8             # k of A a lane loads at once
    a0p = kaiodsl.ptr_cast(a + (i64(min(m0 + g, M - 1)) * K + lk * t), u32)
    a1p = kaiodsl.ptr_cast(a + (i64(min(m0 + g + 8, M - 1)) * K + lk * t), u32)
    A = (a0p, a1p, sa, kbase, _stage_offset(G, g, t), _stage_offset(G, g + 8, t))
    wps = [_wbase(G, w, ntile + v, g, t, lane, N, K, KB) for v in range(C.nw)]
    Q = _quant_rows(G, scales, zeros, ntile, g, t, N, K)
    acc = tiles.fragments.zeros(G.acc_tile)
    if C.late_scale:                   # _int4_late's fma results: four f32 values a tile, not an mma's
        acc = tiles.fragments.fill(G.acc_tile, 0.0)
    nxt = []
    nq = []
    nxa = []
    if C.prefetch:                     # the first step's weights (and scales) in flight during A's copy
        nxt = _wload(G, wps, b0, b1)
        if C.prefetch_a:
            nxa = _a_ahead(G, A, b0, b1)
        if G.wkind == "int4" and not C.late_scale:
            nq = _qload(G, Q, b0, b1)
    if C.stage_a:
        kaiodsl.cp_async_wait(0)
        kaiodsl.syncthreads()
    slot = 0
    if C.ring:                         # the first ring - 1 steps' weights in flight
        for r in kaiodsl.static_range(C.ring - 1):
            _wcopy(G, sa, r, wps, b0 + r * C.unroll, b1, tid)
    for kb in range(b0, b1, C.unroll):
        qraw = []
        xa = []
        if C.ring:                     # step kb + (ring - 1) unroll into the slot step kb - unroll used
            ahead = slot + C.ring - 1
            if ahead >= C.ring:
                ahead = ahead - C.ring
            _wcopy(G, sa, ahead, wps, kb + (C.ring - 1) * C.unroll, b1, tid)
            kaiodsl.cp_async_wait(C.ring - 1)      # this thread's copies of step kb have landed
            words = _wread(G, sa, slot, tid)
            slot = slot + 1
            if slot == C.ring:
                slot = 0
        elif C.prefetch:               # step kb's registers; step kb + unroll's loads issued before its mma
            words = nxt
            qraw = nq
            xa = nxa
            nxt = _wload(G, wps, kb + C.unroll, b1, True)
            if C.prefetch_a:
                nxa = _a_ahead(G, A, kb + C.unroll, b1)
            if G.wkind == "int4" and not C.late_scale:
                nq = _qload(G, Q, kb + C.unroll, b1)
        else:
            words = _wload(G, wps, kb, b1)
        for u in kaiodsl.static_range(C.unroll):
            qu = qraw[u] if qraw else []
            xu = xa[u] if xa else []
            if G.exact:                # every step of the range is whole: no branch between the units
                acc = _unit_step(G, acc, words[u], qu, xu, kb + u, A, Q)
            elif kb + u < b1:
                acc = _unit_step(G, acc, words[u], qu, xu, kb + u, A, Q)
    if C.stage_a:
        kaiodsl.syncthreads()          # every warp is done with the staged A before smem is reused
    if C.ring:
        kaiodsl.cp_async_wait(0)       # the ring's last (masked, zero-filling) copies land before reuse
        kaiodsl.syncthreads()
    return _reduce(G, smem32, acc, nt, kq, lane)


@kaiodsl.func
def _a_ahead(G: Const, A, kb, b1):
    """_a_unit of steps kb .. kb + unroll - 1, each unit clamped into the warp's range [.., b1 - 1] and
    to 0 (a prefetch past the range reloads a unit it will not use, in bounds)."""
    return [_a_unit(G, A, max(min(kb + u, b1 - 1), 0)) for u in range(G.cfg.unroll)]


@kaiodsl.func
def _wbase(G: Const, w, tile, g, t, lane, N, K, KB):
    """u32 pointer to this lane's first weight word of n8 tile ``tile`` (clamped to the last tile, or for
    f16/int8 row 8 tile + g to the last row, N - 1): int4 the pack_int4 layout (the tile's K units are
    128 words apart), f16/int8 rows of [N, K] (k 8 t .. / 16 t .. of each unit; 16 words apart).
    64-bit: tile x KB x 128 words and n x K pass 2^31."""
    if G.wkind == "int4":
        return w + (i64(min(tile, (N + 7) // 8 - 1)) * KB * 32 + lane) * 4
    lk = 8 if G.wkind == "f16" else 16
    per_word = 2 if G.wkind == "f16" else 4
    return w + (i64(min(tile * 8 + g, N - 1)) * K + lk * t) // per_word


@kaiodsl.func
def _quant_rows(G: Const, scales, zeros, ntile, g, t, N, K):
    """The group-scale (and zero-point) row pointers a warp reads, per n8 tile v: int4 column
    8 (ntile + v) + g's rows (group_rows; late_scale: its zero row and the scale rows of the
    accumulator's columns 2t, 2t + 1); grouped int8 column 8 (ntile + v) + g's scale row. Clamped to
    column N - 1."""
    C = G.cfg
    if G.wkind == "f16" or not G.group:
        return []
    GN = K // G.group
    cols = [min((ntile + v) * 8 + g, N - 1) for v in range(C.nw)]
    if G.wkind == "int8":
        return [scales + i64(c) * GN for c in cols]
    if not C.late_scale:
        return [group_rows(scales, zeros, c, GN) for c in cols]
    out = []
    for v in kaiodsl.static_range(C.nw):
        c0 = (ntile + v) * 8 + 2 * t
        out = out + [(zeros + i64(cols[v]) * GN, scales + i64(min(c0, N - 1)) * GN,
                      scales + i64(min(c0 + 1, N - 1)) * GN)]
    return out


@kaiodsl.func
def _unit_step(G: Const, acc, words, qraw, xa, ku, A, Q):
    """``acc`` plus the products of K unit ``ku`` (``words``: its weight words [n8 tile v][...]; ``qraw``:
    int4's prefetched group constants or []; ``xa``: its prefetched A pieces (_a_unit) or [], loaded
    here); ``A`` and ``Q`` from main_loop."""
    C = G.cfg
    H2 = kaiodsl.f16x2 if G.is_f16 else kaiodsl.bf16x2
    if not xa:
        xa = _a_unit(G, A, ku)
    if G.wkind == "int4":
        MAGIC_BITS, MAGIC_F = MAGIC[G.dtype.name]
        if C.late_scale:
            return _int4_late(G, acc, words, xa, ku, Q, MAGIC_BITS, MAGIC_F, H2)
        for ci in kaiodsl.static_range(4):
            k0 = ku * 128 + 32 * ci
            if ci * 32 % G.group == 0:
                if qraw:
                    consts = [_qmake(G, qraw[ci * 32 // G.group][v], MAGIC_F, H2) for v in range(C.nw)]
                else:
                    consts = [group_consts(Q[v], k0 // G.group, MAGIC_F, G.has_zeros, H2) for v in range(C.nw)]
            x0, x1 = xa[ci]
            for st in kaiodsl.static_range(2):
                af = _frag(x0, x1, 2 * st, 2 * st + 1, H2, G.two_rows)
                for v in kaiodsl.static_range(C.nw):
                    zz, s2 = consts[v]
                    word = words[v][ci]
                    bf = (int4_pair(word, 2 * st, zz, s2, MAGIC_BITS, H2),
                          int4_pair(word, 2 * st + 1, zz, s2, MAGIC_BITS, H2))
                    acc[0][v] = kaiodsl.mma(af, bf, acc[0][v])
        return acc
    if G.wkind == "f16":
        x0, x1 = xa[0]
        for st in kaiodsl.static_range(2):
            af = _frag(x0, x1, 2 * st, 2 * st + 1, H2, G.two_rows)
            for v in kaiodsl.static_range(C.nw):
                word = words[v]
                bf = (kaiodsl.bitcast(word[2 * st], H2), kaiodsl.bitcast(word[2 * st + 1], H2))
                acc[0][v] = kaiodsl.mma(af, bf, acc[0][v])
        return acc
    k0 = ku * 64
    gs = [0.0 for v in range(C.nw)]
    if G.group:
        gs = [_scale(G, Q[v], k0 // G.group) for v in range(C.nw)]
    xs = [xa[0][0], xa[1][0]]
    ys = [xa[0][1], xa[1][1]]
    for st in kaiodsl.static_range(4):
        af = _frag(xs[st // 2], ys[st // 2], 2 * (st % 2), 2 * (st % 2) + 1, H2, G.two_rows)
        for v in kaiodsl.static_range(C.nw):
            bf = int8_quad(words[v][st], gs[v], G.group > 0, G.is_f16, H2)
            acc[0][v] = kaiodsl.mma(af, bf, acc[0][v])
    return acc


@kaiodsl.func
def _int4_late(G: Const, acc, words, xa, ku, Q, MAGIC_BITS: Const[int], MAGIC_F: Const[float], H2: Const):
    """int4 unit ``ku`` with late_scale: each group chunk's products of q - zero summed from zero in f32,
    then added to ``acc`` times the scales of the lane's accumulator columns (2t, 2t + 1)."""
    C = G.cfg
    chunk = min(G.group, 128) // 32          # 32-k steps a group chunk of this unit holds
    for ci in kaiodsl.static_range(4):
        k0 = ku * 128 + 32 * ci
        grp = k0 // G.group
        if ci % chunk == 0:
            zs = [int4_zero_halves(Q[v][0], grp, MAGIC_F, G.has_zeros, H2) for v in range(C.nw)]
            sc = [(f32(Q[v][1][grp]), f32(Q[v][2][grp])) for v in range(C.nw)]
            part = [kaiodsl.mma_zeros(G.acc_tile.acc) for v in range(C.nw)]
        x0, x1 = xa[ci]
        for v in kaiodsl.static_range(C.nw):
            q = int4_q_halves(words[v][ci], zs[v], MAGIC_BITS, G.is_f16, H2)
            for st in kaiodsl.static_range(2):
                af = _frag(x0, x1, 2 * st, 2 * st + 1, H2, G.two_rows)
                part[v] = kaiodsl.mma(af, (q[2 * st], q[2 * st + 1]), part[v])
        if ci % chunk == chunk - 1:
            for v in kaiodsl.static_range(C.nw):
                sx, sy = sc[v]
                p = part[v]
                o = acc[0][v]
                acc[0][v] = (kaiodsl.fma(p[0], sx, o[0]), kaiodsl.fma(p[1], sy, o[1]),
                             kaiodsl.fma(p[2], sx, o[2]), kaiodsl.fma(p[3], sy, o[3]))
    return acc


@kaiodsl.func
def _wload(G: Const, wps, kb, b1, ahead: Const[bool] = False):
    """The 16-byte weight loads of steps kb .. kb + unroll - 1 ([u][v]: n8 tile v), zeros past b1 (no mask
    when G.exact, unless ``ahead``: a prefetch, which runs past the warp's range on its last step)."""
    C = G.cfg
    out = []
    for u in kaiodsl.static_range(C.unroll):
        line = []
        index = _wsrc(G, kb, u)
        for v in kaiodsl.static_range(C.nw):
            if G.exact and not ahead:
                line = line + [kaiodsl.load(wps[v], index, vec=4, cache="nc")]
            else:
                line = line + [kaiodsl.load(wps[v], index, vec=4, cache="nc", mask=kb + u < b1, other=0)]
        out = out + [line]
    return out


@kaiodsl.func
def _wsrc(G: Const, kb, u: Const[int]):
    """u32 word index, from _wbase's pointer, of the 16-byte weight piece of step unit kb + u."""
    return (kb + u) * (128 if G.wkind == "int4" else 16)


@kaiodsl.func
def _piece(G: Const, slot, u: Const[int], v: Const[int], tid):
    """u32 word offset of this thread's 16-byte piece (step unit u, n8 tile v) in ring slot ``slot``."""
    C = G.cfg
    return ((slot * C.unroll + u) * C.nw + v) * (C.threads * 4) + tid * 4


@kaiodsl.func
def _wcopy(G: Const, ring, slot, wps, kb, b1, tid):
    """``_wload``'s pieces of steps kb .. kb + unroll - 1 by cp.async into ring slot ``slot`` (zero-filled
    where _wload reads zeros), one commit group."""
    C = G.cfg
    for u in kaiodsl.static_range(C.unroll):
        index = _wsrc(G, kb, u)
        for v in kaiodsl.static_range(C.nw):
            kaiodsl.cp_async(ring + _piece(G, slot, u, v, tid), wps[v] + index, 16, mask=kb + u < b1)
    kaiodsl.cp_async_commit()


@kaiodsl.func
def _wread(G: Const, ring, slot, tid):
    """Ring slot ``slot``'s pieces, [u][v] as _wload returns them."""
    C = G.cfg
    return [[kaiodsl.load(ring, _piece(G, slot, u, v, tid), vec=4) for v in range(C.nw)] for u in range(C.unroll)]


@kaiodsl.func
def _qload(G: Const, qrows, kb, b1):
    """int4's raw group scales (and zero points) of steps kb .. kb + unroll - 1: [u][group of the unit][v]
    (scale bits as u16, zero point as u8; zeros past b1), for _qmake."""
    C = G.cfg
    per = G.unit // G.group
    out = []
    for u in kaiodsl.static_range(C.unroll):
        ok = kb + u < b1
        line = []
        for j in kaiodsl.static_range(per):
            grp = (kb + u) * per + j
            vals = []
            for v in kaiodsl.static_range(C.nw):
                srow, zrow = qrows[v]
                sv = kaiodsl.bitcast(kaiodsl.load(srow, grp, mask=ok, other=0), kaiodsl.u16)
                zv = kaiodsl.load(zrow, grp, mask=ok, other=0) if G.has_zeros else 0
                vals = vals + [(sv, zv)]
            line = line + [vals]
        out = out + [line]
    return out


@kaiodsl.func
def _qmake(G: Const, raw, MAGIC_F: Const[float], H2: Const):
    """group_consts (kaiodsl.tiles.dequant) from prefetched raw values: (zero + magic, scale) as half2s."""
    sv, zv = raw
    s2 = kaiodsl.bitcast(kaiodsl.pack_b32(sv, sv), H2)
    zf = MAGIC_F + 8.0
    if G.has_zeros:
        zf = MAGIC_F + f32(zv)
    return kaiodsl.pack_half2(zf, zf, H2), s2


@kaiodsl.func
def _scale(G: Const, srow, grp):
    s = srow[grp]
    if G.is_f16:
        h = kaiodsl.bitcast(s, kaiodsl.u16)
        return kaiodsl.bitcast(kaiodsl.pack_b32(h, h), kaiodsl.f16x2)
    return f32(s)


@kaiodsl.func
def _reduce(G: Const, sm, acc, nt, kq, lane):
    """Sum the K split's partial tiles in kq order (deterministic); every warp gets its n group's total."""
    C = G.cfg
    if C.k_split == 1:
        return acc
    W = C.nw * 32 * 4
    for v in kaiodsl.static_range(C.nw):
        for e in kaiodsl.static_range(4):
            sm[((kq * C.n_tiles + nt) * C.nw + v) * 128 + lane * 4 + e] = acc[0][v][e]
    kaiodsl.syncthreads()
    out = []
    for v in kaiodsl.static_range(C.nw):
        vals = []
        for e in kaiodsl.static_range(4):
            total = sm[(nt * C.nw + v) * 128 + lane * 4 + e]
            for q in kaiodsl.static_range(1, C.k_split):
                total = total + sm[q * C.n_tiles * W + (nt * C.nw + v) * 128 + lane * 4 + e]
            vals = vals + [total]
        out = out + [(vals[0], vals[1], vals[2], vals[3])]
    return [out]


@kaiodsl.func
def combine_splits(G: Const, smem32, acc, ws, ticket):
    """(total accumulator, whether this warp stores it) across the ``splits`` blocks of one column tile.

    Each block's kq == 0 warps write their f32 partial tile to ``ws`` [tiles][splits][n_tiles, nw, 32
    lanes, 4]; after a gpu-scope fence and the block barrier thread 0 takes a ticket (``ticket``: one
    i32 per column tile, zero between launches). The block that draws splits - 1 arrived last: it sums
    the partials in split order 0, 1, .. (the same bits whatever the arrival order), stores, and resets
    the ticket for the next launch. Unsplit, the kq == 0 warps store their block's sum."""
    C = G.cfg
    tid = kaiodsl.thread_idx.x
    nt, kq = warp_place(G, tid)
    if C.splits == 1:
        return acc, kq == 0
    lane = tid % 32
    tile = i64(kaiodsl.block_idx.y) * kaiodsl.grid_dim.x + kaiodsl.block_idx.x
    TE = C.n_tiles * C.nw * 128             # f32 elements of one block's partial
    base = tile * (C.splits * TE) + (nt * C.nw * 32 + lane) * 4
    if kq == 0:
        for v in kaiodsl.static_range(C.nw):
            kaiodsl.store(ws, base + kaiodsl.block_idx.z * TE + v * 128, acc[0][v], vec=4)
    kaiodsl.fence()
    kaiodsl.syncthreads()                   # _reduce's shared reads are done too: slot 0 is free
    si = kaiodsl.ptr_cast(smem32, kaiodsl.i32)
    if tid == 0:
        si[0] = kaiodsl.atomic_add(ticket, tile, 1)
    kaiodsl.syncthreads()
    last = si[0] == C.splits - 1
    kaiodsl.syncthreads()                   # slot 0 read by all before an epilogue reuses shared memory
    if last:
        kaiodsl.fence()
    fin = last and kq == 0
    out = []
    for v in kaiodsl.static_range(C.nw):
        tot = kaiodsl.load(ws, base + v * 128, vec=4, cache="cg", mask=fin, other=0.0)
        vals = [tot[0], tot[1], tot[2], tot[3]]
        for s in kaiodsl.static_range(1, C.splits):
            p = kaiodsl.load(ws, base + s * TE + v * 128, vec=4, cache="cg", mask=fin, other=0.0)
            vals = [vals[0] + p[0], vals[1] + p[1], vals[2] + p[2], vals[3] + p[3]]
        out = out + [(vals[0], vals[1], vals[2], vals[3])]
    if last and tid == 0:
        ticket[tile] = 0
    return [out], fin
