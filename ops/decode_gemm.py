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
from kaiodsl.tiles.dequant import MAGIC, group_consts, group_rows, int4_pair, int8_quad
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
    a thread waits only for its own copies), ``ring - 1`` steps in flight that hold no registers."""

    n_tiles: int = 4
    k_split: int = 4
    nw: int = 4
    unroll: int = 2
    splits: int = 1
    stage_a: bool = False
    prefetch: bool = False
    ring: int = 0

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
                ("p" if self.prefetch else "") + (f"r{self.ring}" if self.ring else ""))


@dataclass(frozen=True)
class DecodeGemm:
    cfg: DecodeConfig
    dtype: ScalarType
    wkind: str            # "f16" (weights in the activation dtype) | "int8" | "int4"
    group: int = 0        # 0: per-channel (int8)
    has_zeros: bool = False
    two_rows: bool = True  # rows g + 8 too (M > 8)

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


@kaiodsl.func
def warp_place(G: Const, tid):
    """(nt, kq): this warp's n group and K share."""
    warp = tid // 32
    return warp % G.cfg.n_tiles, warp // G.cfg.n_tiles


@kaiodsl.func
def _a_load(G: Const, ap, ok, k0, sa, kbase, soff, extra: Const[int]):
    """8 halves of A at k0 + extra (+ this lane's offset) of one row: from global (``ap``, masked by
    ``ok``) or, staged, from shared memory (``soff``: the lane's word offset in a 32-k chunk of
    ``stage_rows``' layout, from _stage_offset)."""
    if G.cfg.stage_a:
        return kaiodsl.load(sa, ((k0 - kbase) // 32) * (G.rows * 16) + soff + extra // 2, vec=4)
    return kaiodsl.load(ap, (k0 + extra) // 2, vec=4, cache="nc", mask=ok, other=0)


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
    ``scales``/``zeros`` per group [N, K / group] (unused for per-channel int8)."""
    C = G.cfg
    tid = kaiodsl.thread_idx.x
    lane = tid % 32
    g = lane // 4
    t = lane % 4
    nt, kq = warp_place(G, tid)
    H2 = kaiodsl.f16x2 if G.is_f16 else kaiodsl.bf16x2
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
    ok0 = m0 + g < M
    ok1 = m0 + g + 8 < M
    s0 = _stage_offset(G, g, t)
    s1 = _stage_offset(G, g + 8, t)
    if G.wkind == "int4":
        MAGIC_BITS, MAGIC_F = MAGIC[G.dtype.name]
        wp = w + (i64(ntile * KB) * 32 + lane) * 4          # 64-bit: ntile x KB x 128 words pass 2^31
        a0p = kaiodsl.ptr_cast(a + (i64(m0 + g) * K + 8 * t), u32)
        a1p = kaiodsl.ptr_cast(a + (i64(m0 + g + 8) * K + 8 * t), u32)
        GN = K // G.group
        qrows = [group_rows(scales, zeros, min((ntile + v) * 8 + g, N - 1), GN) for v in range(C.nw)]
    elif G.wkind == "f16":
        # weight row n = 8 (ntile + v) + g, k 8 t .. 8 t + 7 of each 32-k unit: int4's k order (64-bit: n x K)
        wp = kaiodsl.ptr_cast(w, u32) + (i64(min(ntile * 8 + g, N - 1)) * K + 8 * t) // 2
        a0p = kaiodsl.ptr_cast(a + (i64(m0 + g) * K + 8 * t), u32)
        a1p = kaiodsl.ptr_cast(a + (i64(m0 + g + 8) * K + 8 * t), u32)
    else:
        # weight row n = 8 (ntile + v) + g, bytes 16 t .. of each 64-k unit (64-bit: n x K)
        wp = kaiodsl.ptr_cast(w, u32) + (i64(min(ntile * 8 + g, N - 1)) * K + 16 * t) // 4
        a0p = kaiodsl.ptr_cast(a + (i64(m0 + g) * K + 16 * t), u32)
        a1p = kaiodsl.ptr_cast(a + (i64(m0 + g + 8) * K + 16 * t), u32)
        srows = []
        if G.group:
            GN = K // G.group
            srows = [scales + i64(min((ntile + v) * 8 + g, N - 1)) * GN for v in range(C.nw)]
    acc = tiles.fragments.zeros(G.acc_tile)
    nxt = []
    nq = []
    if C.prefetch:                     # the first step's weights (and scales) in flight during A's copy
        nxt = _wload(G, wp, b0, b1, ntile, g, N, K, KB)
        if G.wkind == "int4":
            nq = _qload(G, qrows, b0, b1)
    if C.stage_a:
        kaiodsl.cp_async_wait(0)
        kaiodsl.syncthreads()
    slot = 0
    if C.ring:                         # the first ring - 1 steps' weights in flight
        for r in kaiodsl.static_range(C.ring - 1):
            _wcopy(G, sa, r, wp, b0 + r * C.unroll, b1, ntile, g, N, K, KB, tid)
    for kb in range(b0, b1, C.unroll):
        if C.ring:                     # step kb + (ring - 1) unroll into the slot step kb - unroll used
            ahead = slot + C.ring - 1
            if ahead >= C.ring:
                ahead = ahead - C.ring
            _wcopy(G, sa, ahead, wp, kb + (C.ring - 1) * C.unroll, b1, ntile, g, N, K, KB, tid)
            kaiodsl.cp_async_wait(C.ring - 1)      # this thread's copies of step kb have landed
            words = _wread(G, sa, slot, tid)
            slot = slot + 1
            if slot == C.ring:
                slot = 0
        elif C.prefetch:               # step kb's registers; step kb + unroll's loads issued before its mma
            words = nxt
            qraw = nq
            nxt = _wload(G, wp, kb + C.unroll, b1, ntile, g, N, K, KB)
            if G.wkind == "int4":
                nq = _qload(G, qrows, kb + C.unroll, b1)
        else:
            words = _wload(G, wp, kb, b1, ntile, g, N, K, KB)
        for u in kaiodsl.static_range(C.unroll):
            if kb + u < b1:
                if G.wkind == "int4":
                    for ci in kaiodsl.static_range(4):
                        k0 = (kb + u) * 128 + 32 * ci
                        if ci * 32 % G.group == 0:
                            if C.prefetch:
                                consts = [_qmake(G, qraw[u][ci * 32 // G.group][v], MAGIC_F, H2)
                                          for v in range(C.nw)]
                            else:
                                consts = [group_consts(qrows[v], k0 // G.group, MAGIC_F, G.has_zeros, H2)
                                          for v in range(C.nw)]
                        x0 = _a_load(G, a0p, ok0, k0, sa, kbase, s0, 0)
                        x1 = _a_load(G, a1p, ok1, k0, sa, kbase, s1, 0) if G.two_rows else (0, 0, 0, 0)
                        for st in kaiodsl.static_range(2):
                            af = _frag(x0, x1, 2 * st, 2 * st + 1, H2, G.two_rows)
                            for v in kaiodsl.static_range(C.nw):
                                zz, s2 = consts[v]
                                word = words[u][v][ci]
                                bf = (int4_pair(word, 2 * st, zz, s2, MAGIC_BITS, H2),
                                      int4_pair(word, 2 * st + 1, zz, s2, MAGIC_BITS, H2))
                                acc[0][v] = kaiodsl.mma(af, bf, acc[0][v])
                elif G.wkind == "f16":
                    k0 = (kb + u) * 32
                    x0 = _a_load(G, a0p, ok0, k0, sa, kbase, s0, 0)
                    x1 = _a_load(G, a1p, ok1, k0, sa, kbase, s1, 0) if G.two_rows else (0, 0, 0, 0)
                    for st in kaiodsl.static_range(2):
                        af = _frag(x0, x1, 2 * st, 2 * st + 1, H2, G.two_rows)
                        for v in kaiodsl.static_range(C.nw):
                            word = words[u][v]
                            bf = (kaiodsl.bitcast(word[2 * st], H2), kaiodsl.bitcast(word[2 * st + 1], H2))
                            acc[0][v] = kaiodsl.mma(af, bf, acc[0][v])
                else:
                    k0 = (kb + u) * 64
                    gs = [0.0 for v in range(C.nw)]
                    if G.group:
                        gs = [_scale(G, srows[v], k0 // G.group) for v in range(C.nw)]
                    xs = [_a_load(G, a0p, ok0, k0, sa, kbase, s0, 0),
                          _a_load(G, a0p, ok0, k0, sa, kbase, s0, 8)]
                    ys = [(0, 0, 0, 0), (0, 0, 0, 0)]
                    if G.two_rows:
                        ys = [_a_load(G, a1p, ok1, k0, sa, kbase, s1, 0),
                              _a_load(G, a1p, ok1, k0, sa, kbase, s1, 8)]
                    for st in kaiodsl.static_range(4):
                        af = _frag(xs[st // 2], ys[st // 2], 2 * (st % 2), 2 * (st % 2) + 1, H2, G.two_rows)
                        for v in kaiodsl.static_range(C.nw):
                            bf = int8_quad(words[u][v][st], gs[v], G.group > 0, G.is_f16, H2)
                            acc[0][v] = kaiodsl.mma(af, bf, acc[0][v])
    if C.stage_a:
        kaiodsl.syncthreads()          # every warp is done with the staged A before smem is reused
    if C.ring:
        kaiodsl.cp_async_wait(0)       # the ring's last (masked, zero-filling) copies land before reuse
        kaiodsl.syncthreads()
    return _reduce(G, smem32, acc, nt, kq, lane)


@kaiodsl.func
def _wload(G: Const, wp, kb, b1, ntile, g, N, K, KB):
    """The 16-byte weight loads of steps kb .. kb + unroll - 1 ([u][v]: n8 tile v), zeros past b1 or N."""
    C = G.cfg
    out = []
    for u in kaiodsl.static_range(C.unroll):
        line = []
        for v in kaiodsl.static_range(C.nw):
            index, ok = _wsrc(G, kb, u, v, b1, ntile, g, N, K, KB)
            line = line + [kaiodsl.load(wp, index, vec=4, cache="nc", mask=ok, other=0)]
        out = out + [line]
    return out


@kaiodsl.func
def _wsrc(G: Const, kb, u: Const[int], v: Const[int], b1, ntile, g, N, K, KB):
    """(u32 word index from ``wp``, in range) of the 16-byte weight piece of step unit kb + u, n8 tile v:
    int4 the pack_int4 layout, f16/int8 rows of [N, K] (64-bit: n x K)."""
    if G.wkind == "int4":
        return (v * KB + kb + u) * 128, (kb + u < b1) and ((ntile + v) * 8 < N)
    words = K // (2 if G.wkind == "f16" else 4)          # u32 words of one weight row
    return i64(v * 8) * words + (kb + u) * 16, (kb + u < b1) and ((ntile + v) * 8 + g < N)


@kaiodsl.func
def _piece(G: Const, slot, u: Const[int], v: Const[int], tid):
    """u32 word offset of this thread's 16-byte piece (step unit u, n8 tile v) in ring slot ``slot``."""
    C = G.cfg
    return ((slot * C.unroll + u) * C.nw + v) * (C.threads * 4) + tid * 4


@kaiodsl.func
def _wcopy(G: Const, ring, slot, wp, kb, b1, ntile, g, N, K, KB, tid):
    """``_wload``'s pieces of steps kb .. kb + unroll - 1 by cp.async into ring slot ``slot`` (zero-filled
    where _wload reads zeros), one commit group."""
    C = G.cfg
    for u in kaiodsl.static_range(C.unroll):
        for v in kaiodsl.static_range(C.nw):
            index, ok = _wsrc(G, kb, u, v, b1, ntile, g, N, K, KB)
            kaiodsl.cp_async(ring + _piece(G, slot, u, v, tid), wp + index, 16, mask=ok)
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
