"""W4A16 on sm_90a with the weights as wgmma's register operand (``C^T = W A^T``: "swap AB").

``C = A @ W^T`` for A [M, K] f16/bf16 and W [N, K] int4 in the ``pack_int4`` layout (ops/int4_pack.py)
with group scales (and zero points); the arguments are ``ops.matmul_int4``'s, which runs this kernel
on sm_90a past the decode sizes (``W4SwapConfig``; ops/gemm_sm90_w4.py keeps the kernel that
dequantizes into a shared B tile, for the fused QKV projections and where its config is asked for).

Why the swap: in the shared-B kernel a producer warpgroup writes every dequantized f16 weight to
shared memory and each consumer's wgmma reads it back, on top of the A tile's TMA writes and wgmma
reads: at 256 x 128 tiles that is about 145 bytes of shared-memory traffic a clock for the tensor
work of one, over the SM's 128. Here each consumer warpgroup holds 64 weight rows as the m64 A
fragment of ``wgmma ... .rs`` (registers), dequantized straight from the raw words, and the
activations are the shared-memory B operand, a block_m-wide wgmma N. A 128 x 256 (weights x
activations) tile moves about 110 bytes a clock: activation reads by both consumers, the raw words
(read 4 times over, below), and the TMA writes.

Block: one producer warpgroup (one thread issues TMA, the rest idle; ``setmaxnreg`` gives their
registers to the consumers) and ``block_n / 64`` consumer warpgroups, persistent over the output
tiles in grouped order (tiles.gemm.tile_coords_of). A ring slot (``stages`` of them, mbarrier full /
empty pairs: tiles.pipeline) holds 128 k: the activations as two 64-column TMA boxes of block_m rows
(128-byte swizzle, zero-filled past M), then the block's ``block_n / 8`` pack_int4 row tiles of that
k tile (one TMA box of 512 bytes a row tile, the words seen as [N / 8, K]; zero-filled past N).

Fragments: warp w of consumer c owns weight rows ``64 c + 16 w + g`` and ``+ 8`` (g = lane / 4,
t = lane % 4): row tiles ``8 c + 2 w`` and ``+ 1``, row g of each. The A fragment of k16 step s
(k ``16 s ..`` of the slot) wants weights k ``16 s + 2 t, + 1`` (registers 0 / 1: rows g / g + 8) and
``16 s + 8 + 2 t, + 1`` (2 / 3). In pack_int4, k ``32 w' + 8 t' + j`` of row g is nibble-pair j / 2
of word w' of lane ``4 g + t'``; so with ``s = 2 w' + h`` the fragment's registers are pair t of
word w' of lanes ``4 g + 2 h`` and ``4 g + 2 h + 1``. A thread reads row g's 64 bytes of each of
its two row tiles (8 ``ld.shared.v4``, shared by the quad: one bank-conflict-free broadcast phase
each) and takes pair t of every word: one shift by ``4 t``, then ``tiles.dequant.int4_pair``'s
``lop3`` / sub / mul. Each stage's 32 registers are built, then one fence and 8 wgmmas. A pending
wgmma may still read its A fragment registers (PTX ISA 9.7.15.7), so a loop iteration must not build
its fragments in the registers the last one's wgmmas read: keeping a slot of wgmma work in flight
that way gave wrong int8 results on the H200 now and then (benchmarks/results/logs/
swap_fragment_race_2026-12-04.log; the simulator now reports the write). With ``overlap`` (the
default tilings) the k loop is unrolled by two, each half with its own fragment registers, and
``wgmma.wait_group 1`` keeps one slot in flight while the next is dequantized, releasing the slot
before; without it each slot waits for its wgmmas (``wait_group 0``) and goes back at once.

Scales (zero points) of the thread's two rows: plain loads a stage ahead (one group a stage for 128,
two for 64, four for 32), rows past N read row N - 1 (their columns are never stored).

Epilogue: accumulator element (row n, column m) is C[m, n]. Lanes 4 g + t and its neighbour g ^ 1
swap one value of each pair (one ``shfl.xor`` a pair), so each holds two adjacent columns of C of one
row: 4-byte stores, guarded at M and N.

K is a multiple of 128 (pack_int4); N a multiple of 8; any M.
"""

from dataclasses import dataclass
from functools import lru_cache

import kaiodsl
from kaiodsl import Const, Ptr, TensorMap, bf16, f16, f32, i32, i64, tiles, u8, u32, u64
from kaiodsl.errors import ArgumentError
from kaiodsl.tiles.dequant import int4_pair

from .gemm_sm90_segments import MAX_SEGMENTS, Segments, segment_of
from .gemm_sm90_w4_stage import W4Dequant
from ._common import data_alignment, inspect_array, require_positive_fields
from .gemm_sm90 import REGS, SMEM_MAX

KT = 128                     # k a ring slot of int4 weights: one pack_int4 k tile
KT8 = 64                     # k a ring slot of int8 weights: one 64-byte (64B-swizzled) row
W_ROW = 64                   # weight bytes a row a slot (128 nibbles or 64 bytes)
SLOT_K = {"int4": KT, "int8": KT8}


@dataclass(frozen=True)
class W4SwapConfig:
    """``block_m`` activation rows (the wgmma N: a multiple of 8, at most 256) by ``block_n`` weight rows
    (output columns: 64 for each consumer warpgroup) an output tile, ``stages`` ring slots of 128 k,
    tiles walked ``group_m`` tile-rows at a time. ``overlap``: the k loop unrolled by two, so a slot's
    A fragments live in other registers than the last slot's and one slot of wgmma work stays in flight
    while the next is dequantized (``wait_group 1``; 16 or 32 more registers a thread)."""

    block_m: int = 256
    block_n: int = 128
    stages: int = 3
    group_m: int = 8
    overlap: bool = False

    def __post_init__(self):
        require_positive_fields(self, skip=("overlap",))
        if type(self.overlap) is not bool:
            raise ArgumentError(f"W4SwapConfig: overlap must be True or False, got {self.overlap!r}")

    @property
    def consumers(self) -> int:
        return self.block_n // 64

    @property
    def threads(self) -> int:
        return 128 * (1 + self.consumers)

    def stage_bytes(self, kind: str = "int4") -> int:
        """A ring slot: the activations' 64-column boxes of its k (128 bytes a row each), then the weights."""
        return self.block_m * 2 * SLOT_K[kind] + self.block_n * W_ROW

    def smem_bytes(self, kind: str = "int4") -> int:
        return self.stages * self.stage_bytes(kind)

    def registers(self) -> tuple:
        """(producer, consumer) register budgets for setmaxnreg (as gemm_sm90.Sm90Config.registers)."""
        prod = 40 if self.consumers <= 2 else 24
        return prod, min(256, (REGS - 128 * prod) // (128 * self.consumers)) // 8 * 8

    def check(self, kind: str = "int4") -> None:
        """Raise ArgumentError unless the kernel computes this tiling correctly for ``kind`` weights."""
        rules = [
            (8 <= self.block_m <= 256 and self.block_m % 8 == 0,
             "block_m must be a multiple of 8 in 8..256 (a wgmma N, one TMA box of rows)"),
            (self.block_n % 64 == 0 and 64 <= self.block_n <= 192,
             "block_n must be 64, 128 or 192 (64 weight rows a consumer warpgroup, at most 3)"),
            (self.stages >= 2, "stages must be at least 2"),
            (self.registers()[1] >= self.block_m // 2 + 64,
             "the accumulators (block_m / 2 registers a thread) do not fit the consumers' registers"),
            (self.smem_bytes(kind) + 1024 <= SMEM_MAX,
             f"the ring needs {self.smem_bytes(kind) + 1024} bytes of shared memory (with the 1024-byte "
             f"alignment), more than {SMEM_MAX}: fewer stages or a smaller block_m"),
        ]
        for ok, rule in rules:
            if not ok:
                raise ArgumentError(f"W4SwapConfig {self!r} is not a valid tiling: {rule}")

    def __str__(self) -> str:
        return f"swap{self.block_m}x{self.block_n}/s{self.stages}/g{self.group_m}" + ("/o" if self.overlap else "")


# overlap everywhere: H200, scripts/swap_midm_sweep.py (logs/swap_midm_sweep_2026-12-04.log): 0-12 % faster
# at M = 32-128, 2-11 % at M = 2048 (int4 N = 14336: 0.74x -> 0.82x f16 cuBLAS), slower nowhere by more
# than the run-to-run noise (qkv int4 8B M = 32: 22.4 -> 23.2 us)
DEFAULT = W4SwapConfig(overlap=True)
NARROW = W4SwapConfig(block_m=128, block_n=128, stages=5, overlap=True)
DEFAULT8 = W4SwapConfig(stages=5, overlap=True)       # int8: 64-k slots, 40 KB each
NARROW8 = W4SwapConfig(block_m=128, block_n=128, stages=8, overlap=True)


def swap_config(M: int, N: int, K: int, sms: int, kind: str = "int4", group_size: int = 128) -> W4SwapConfig:
    """256 x 128 tiles where they give every SM a tile. Else activation tiles of M rows rounded up to 32
    (at most 128), and the weight-tile height (128 or 64 rows) giving the fewest waves of tiles over the
    SMs, then the most tiles: at small M the kernel streams weights, and each SM streams its tiles' (H200,
    scripts/swap_midm_sweep.py: M = 64, N = K = 8192, 64-row tiles on 128 SMs 0.97x f16 cuBLAS for int8
    against 0.76x with 128-row ones on 64). int4 groups of 32 at 256 x 128 go without overlap (its second
    fragment registers spill there, beside four scales a row a slot)."""
    if -(-M // 256) * -(-N // 128) >= sms:
        if kind == "int8":
            return DEFAULT8
        return DEFAULT if group_size > 32 else W4SwapConfig(overlap=False)
    bm = min(128, -(-M // 32) * 32)
    mt = -(-M // bm)

    def waves_then_tiles(bn):
        t = mt * -(-N // bn)
        return -(-t // sms), -t

    bn = min((128, 64), key=waves_then_tiles)
    return W4SwapConfig(block_m=bm, block_n=bn, stages=(NARROW8 if kind == "int8" else NARROW).stages, overlap=True)


@kaiodsl.func
def _scales(D: Const, scales, zeros, row, kt, G):
    """Row ``row``'s raw scales and zero points of ring slot kt (its 128 / group_size groups): one load
    each, the scales as u32 words of two halves (the low half alone for groups of 128), the zero points
    as one word of bytes."""
    NG = KT // D.group_size
    base = i64(row) * G + kt * NG
    if NG == 1:
        sc = [u32(kaiodsl.bitcast(kaiodsl.load(scales, base, cache="nc"), kaiodsl.u16))]
    elif NG == 2:
        sc = [kaiodsl.load(kaiodsl.ptr_cast(scales, u32), base // 2, cache="nc")]
    else:
        v = kaiodsl.load(kaiodsl.ptr_cast(scales, u32), base // 2, vec=2, cache="nc")
        sc = [v[0], v[1]]
    zw = 0
    if D.has_zeros:
        if NG == 1:
            zw = u32(kaiodsl.load(zeros, base, cache="nc"))
        elif NG == 2:
            zw = u32(kaiodsl.load(kaiodsl.ptr_cast(zeros, kaiodsl.u16), base // 2, cache="nc"))
        else:
            zw = kaiodsl.load(kaiodsl.ptr_cast(zeros, u32), base // 4, cache="nc")
    return sc, zw


@kaiodsl.func
def _group(D: Const, raw, j: Const[int]):
    """(magic + zero, scale) of group j of a row's raw constants (from _scales), each in both halves of
    a half2: the scale's half by one prmt, magic + zero by OR-ing the zero point's byte into the
    magic's mantissa (exact: its ulp is 1; the default zero point 8 is a constant)."""
    sc, zw = raw
    w = sc[j // 2]
    s2 = kaiodsl.bitcast(kaiodsl.prmt(w, w, u32(0x3232 if j % 2 else 0x1010)), D.h2)
    if D.has_zeros:
        z = (zw >> (8 * j)) & 0xFF
        return kaiodsl.bitcast(u32(D.magic[0]) | (z * 0x10001), D.h2), s2
    return kaiodsl.bitcast(u32(D.magic[0] + 8 * 0x10001), D.h2), s2


@kaiodsl.func
def _fragment(D: Const, wp, base, raws, sh, s: Const[int]):
    """The A fragment of k16 step s of a slot: ``wp`` the slot's words (u32), ``base`` the thread's row
    g of its first row tile there, ``raws`` its two rows' raw group constants, ``sh`` = 4 t."""
    w, h = s // 2, s % 2
    grp = s * 16 // D.group_size
    regs = []
    for half in kaiodsl.static_range(2):          # k 2t.. (registers 0, 1), k 8 + 2t.. (2, 3)
        for rt in kaiodsl.static_range(2):        # row g, row g + 8
            zz, s2 = _group(D, raws[rt], grp)
            x = kaiodsl.load(wp, base + 128 * rt + 4 * (2 * h + half) + w)
            regs = regs + [int4_pair(x >> sh, 0, zz, s2, D.magic[0], D.h2)]
    return regs[0], regs[1], regs[2], regs[3]


@kaiodsl.func
def _store(E: Const, BM: Const[int], acc, c, args, m0, n, lane, M, N):
    """C[m0 + m, n + ..] through epilogue E (tiles.Epilogue: its ops, out type and store policy) from the
    m64 x BM accumulator, whose row is this thread's weight row (``n``: its g row of the warp's 16, local
    to the output of N columns) and whose column is m. Neighbours g, g ^ 1 swap one value of each pair
    (the shuffles run in every lane, before any guard), so each holds two adjacent columns of C of one
    row: even g row m0 + 8 j + 2 t, odd g the next. Rows >= M and columns >= N are skipped."""
    g, t = lane // 4, lane % 4
    odd = g % 2 == 1
    col = n - g % 2                               # the pair's even column
    args = tiles.epilogue.load_scalars(E, args)
    terms = []
    for rt in kaiodsl.static_range(2):           # columns col, col + 8: fragment rows g, g + 8
        terms = terms + [(tiles.epilogue.col_terms(E, args, col + 8 * rt, N),
                          tiles.epilogue.col_terms(E, args, col + 8 * rt + 1, N))]
    for j in kaiodsl.static_range(BM // 8):
        m = m0 + 8 * j + 2 * t + g % 2
        rf = tiles.epilogue.row_factor(E, args, min(m, M - 1), M)
        for rt in kaiodsl.static_range(2):
            v0, v1 = acc[4 * j + 2 * rt], acc[4 * j + 2 * rt + 1]
            got = kaiodsl.shfl_xor(kaiodsl.where(odd, v0, v1), 4)
            cc = col + 8 * rt
            (cf0, cv0), (cf1, cv1) = terms[rt]
            lo = tiles.epilogue.apply(E, kaiodsl.where(odd, got, v0), cf0, rf, cv0, m, cc)
            hi = tiles.epilogue.apply(E, kaiodsl.where(odd, v1, got), cf1, rf, cv1, m, cc + 1)
            if m < M and cc < N:
                tiles.epilogue.store_pair_values(E, c, m, cc, N, lo, hi)


@kaiodsl.func
def _store_segments(SEGS: Const, BM: Const[int], acc, outs, args, m0, n0, wrow, lane, M):
    """The tile at column n0 of the tile space through the segment holding it: its epilogue, operands
    and output (gemm_sm90_segments.Segment; no rope: a rotation pairs columns across warps here)."""
    lo = 0
    for s in kaiodsl.static_range(len(SEGS)):
        P = SEGS[s]
        if n0 >= lo and n0 < lo + P.width:
            pargs = []
            for a in kaiodsl.static_range(len(P.args)):
                pargs = pargs + [args[P.args[a]]]
            _store(P.epilogue, BM, acc, outs[s], pargs, m0, n0 - lo + wrow, lane, M, P.width)
        lo = lo + P.width


@kaiodsl.func
def _tma_weights(D: Const, dst, tw, col, kt, bar):
    """Slot kt's weights of the block's rows from column ``col`` of the (segment's) output: int4 the row
    tiles' 128-k tile (the words seen as [N / 8, K]), int8 64 k of the [N, K] rows (64B swizzle)."""
    if D.kind == "int8":
        kaiodsl.tma_load(kaiodsl.ptr_cast(dst, kaiodsl.i8), tw, (col, kt * KT8), bar)
    else:
        kaiodsl.tma_load(kaiodsl.ptr_cast(dst, u32), tw, (col // 8, kt * KT), bar)


@kaiodsl.func
def _row_consts(D: Const, scales, zeros, ra, rb, kt, G):
    """The raw group constants of rows ra, rb for slot kt: int4 (scales, zero points) each (_scales),
    grouped int8 the group's scale (one slot is inside one group), per-channel int8 nothing."""
    if D.kind == "int8":
        if D.group_size:
            grp = kt * KT8 // D.group_size
            return (kaiodsl.load(scales, i64(ra) * G + grp, cache="nc"),
                    kaiodsl.load(scales, i64(rb) * G + grp, cache="nc"))
        return (0, 0)
    return (_scales(D, scales, zeros, ra, kt, G), _scales(D, scales, zeros, rb, kt, G))


@kaiodsl.func
def _fragment8(D: Const, wp, wrow, raws, t, s: Const[int]):
    """The A fragment of k16 step s (16-byte chunk s of the 64-byte rows, stored at chunk
    ``s ^ ((row >> 1) & 3)``: TMA's 64B swizzle) for rows wrow, wrow + 8 of the slot's int8 weights:
    words t / 2 and 2 + t / 2 of the chunk, bytes 2t, 2t+1 of each (tiles.dequant.int8_select), as
    exact integers or times the group scale (int8_quad)."""
    IS_F16 = D.dtype_name == "f16"
    sel = tiles.dequant.int8_selector(t)
    halves = []
    for rt in kaiodsl.static_range(2):
        row = wrow + 8 * rt
        at = row * (W_ROW // 4) + 4 * (s ^ ((row >> 1) & 3)) + t // 2
        r = tiles.dequant.int8_select(kaiodsl.load(wp, at), kaiodsl.load(wp, at + 2), sel)
        gs = 0
        if D.group_size:
            if IS_F16:
                sb = kaiodsl.bitcast(raws[rt], kaiodsl.u16)
                gs = kaiodsl.bitcast(kaiodsl.pack_b32(sb, sb), D.h2)
            else:
                gs = f32(raws[rt])
        halves = halves + [tiles.dequant.int8_quad(r, gs, D.group_size > 0, IS_F16, D.h2)]
    return halves[0][0], halves[1][0], halves[0][1], halves[1][1]


@kaiodsl.func
def _step_fragment(D: Const, wp, wrow, rtile, raws, lane, s: Const[int]):
    """The A fragment of k16 step s of the slot at ``wp`` (_fragment8 or _fragment by D.kind)."""
    if D.kind == "int8":
        return _fragment8(D, wp, wrow, raws, lane % 4, s)
    return _fragment(D, wp, 128 * rtile + 16 * (lane // 4), raws, 4 * (lane % 4), s)


@kaiodsl.func
def _slot(D: Const, smem, R: Const, bars, state, acc, nxt, sc, zp, ra, rb, kt, ktiles, G, wrow, rtile, lane):
    """Consumer work on ring slot ``state`` (k tile kt): the next slot's row constants loaded, the slot's
    fragments built and its wgmmas issued and committed. Returns (acc, the next row constants)."""
    cfg = D.cfg
    SB = cfg.stage_bytes(D.kind)
    SK = SLOT_K[D.kind]
    BM = cfg.block_m
    raws = nxt
    ka = min(kt + 1, ktiles - 1)
    nxt = _row_consts(D, sc, zp, ra, rb, ka, G)
    tiles.pipeline.wait(R, 0, state, bars)
    index, phase = state
    slot = smem.ptr(index * SB)
    wp = kaiodsl.ptr_cast(slot + BM * 2 * SK, u32)
    db0 = kaiodsl.wgmma_desc(kaiodsl.ptr_cast(slot, f16), 128, rows=BM)
    for s in kaiodsl.static_range(SK // 16):   # each step's fragment is new registers: a fence each
        frag = _step_fragment(D, wp, wrow, rtile, raws, lane, s)
        kaiodsl.wgmma_fence()
        db = kaiodsl.wgmma_desc_add(db0, (s // 4) * BM * 128 + (s % 4) * 32)
        acc = kaiodsl.wgmma(frag, db, acc, dtype=D.dtype_name)
    kaiodsl.wgmma_commit()
    return acc, nxt


@kaiodsl.func
def _body(D: Const, E: Const, ta, tw, scales, zeros, c, args, M, N, K):
    """The kernel (module doc) with epilogue E (run-time operands ``args``), or with E a
    gemm_sm90_segments.Segments one weight map, scales, zero points and output per segment."""
    cfg = D.cfg
    SEGS = E.parts if isinstance(E, Segments) else ()
    BM, BN, S, GM = cfg.block_m, cfg.block_n, cfg.stages, cfg.group_m
    SB = cfg.stage_bytes(D.kind)
    SK = SLOT_K[D.kind]
    A_BYTES = BM * 2 * SK
    R = tiles.Ring(S, kind="mbarrier", arrivals=128 * cfg.consumers)
    PROD_REGS, CONS_REGS = cfg.registers()
    smem = kaiodsl.dynamic_shared(u8, align=1024)
    bars = kaiodsl.shared_array(u64, (R.barriers,), align=8, name="ring")
    tid = kaiodsl.thread_idx.x
    wg = tiles.warpgroup.index(tid)
    if tid == 0:
        kaiodsl.tma_prefetch(ta)
        if SEGS:
            for m in kaiodsl.static_range(len(SEGS)):
                kaiodsl.tma_prefetch(tw[m])
        else:
            kaiodsl.tma_prefetch(tw)
        tiles.pipeline.init(R, bars)
    kaiodsl.syncthreads()
    total = ((M + BM - 1) // BM) * ((N + BN - 1) // BN)
    ktiles = (K + SK - 1) // SK         # int8: TMA zero-fills the last slot past K
    G = K // max(D.group_size, 1)
    first, step = kaiodsl.block_idx.x, kaiodsl.grid_dim.x
    if wg == 0:
        kaiodsl.setmaxnreg(PROD_REGS, False)
        if tid == 0:
            state = tiles.pipeline.start(R)
            for t in range(first, total, step):
                m0, n0 = tiles.gemm.tile_coords_of(t, M, N, BM, BN, GM)
                for kt in range(ktiles):
                    tiles.pipeline.acquire(R, state, bars)
                    index, phase = state
                    tiles.pipeline.commit(R, state, bars, SB)
                    slot = smem.ptr(index * SB)
                    for h in kaiodsl.static_range(SK // 64):
                        kaiodsl.tma_load(kaiodsl.ptr_cast(slot + h * BM * 128, f16), ta, (m0, kt * SK + 64 * h),
                                         bars.ptr(index))
                    if SEGS:              # the weights of the segment holding the tile, at its local column
                        lo = 0
                        for sg in kaiodsl.static_range(len(SEGS)):
                            if n0 >= lo and n0 < lo + SEGS[sg].width:
                                _tma_weights(D, slot + A_BYTES, tw[sg], n0 - lo, kt, bars.ptr(index))
                            lo = lo + SEGS[sg].width
                    else:
                        _tma_weights(D, slot + A_BYTES, tw, n0, kt, bars.ptr(index))
                    state = tiles.pipeline.advance(R, state)
    else:
        kaiodsl.setmaxnreg(CONS_REGS, True)
        cw = wg - 1
        warp, lane = (tid // 32) % 4, tid % 32
        g = lane // 4
        rtile = 8 * cw + 2 * warp                 # the thread's first row tile of the block's
        wrow = 64 * cw + 16 * warp + g            # its first weight row of the block's
        state = tiles.pipeline.start(R)
        for tt in range(first, total, step):
            m0, n0 = tiles.gemm.tile_coords_of(tt, M, N, BM, BN, GM)
            sc, zp, bn0, bN = scales, zeros, n0, N
            if SEGS:              # the scales and zero points of the tile's segment, its local column
                (sc, zp), bn0, bN = segment_of(SEGS, (scales, zeros), n0)
            ra = min(bn0 + wrow, bN - 1)
            rb = min(bn0 + wrow + 8, bN - 1)
            nxt = _row_consts(D, sc, zp, ra, rb, 0, G)
            acc = kaiodsl.wgmma_zeros(BM, f32)
            if cfg.overlap:       # two register sets of fragments: a slot of wgmma work in flight
                prev = state
                for kt2 in range(0, ktiles - 1, 2):
                    for u in kaiodsl.static_range(2):
                        acc, nxt = _slot(D, smem, R, bars, state, acc, nxt, sc, zp, ra, rb, kt2 + u, ktiles, G,
                                         wrow, rtile, lane)
                        acc = kaiodsl.wgmma_wait(1, acc)      # the other set's slot is done: release it
                        if kt2 + u > 0:
                            tiles.pipeline.release(R, prev, bars)
                        prev = state
                        state = tiles.pipeline.advance(R, state)
                acc = kaiodsl.wgmma_wait(0, acc)              # complete before the branch below joins
                if ktiles > 1:
                    tiles.pipeline.release(R, prev, bars)
                if ktiles % 2 == 1:                           # the odd last slot
                    acc, nxt = _slot(D, smem, R, bars, state, acc, nxt, sc, zp, ra, rb, ktiles - 1, ktiles, G,
                                     wrow, rtile, lane)
                    acc = kaiodsl.wgmma_wait(0, acc)
                    tiles.pipeline.release(R, state, bars)
                    state = tiles.pipeline.advance(R, state)
            else:
                for kt in range(ktiles):
                    acc, nxt = _slot(D, smem, R, bars, state, acc, nxt, sc, zp, ra, rb, kt, ktiles, G, wrow, rtile,
                                     lane)
                    acc = kaiodsl.wgmma_wait(0, acc)    # the next slot's fragments reuse these registers
                    tiles.pipeline.release(R, state, bars)
                    state = tiles.pipeline.advance(R, state)
            if SEGS:
                _store_segments(SEGS, BM, acc, c, args, m0, n0, wrow, lane, M)
            else:
                _store(E, BM, acc, c, args, m0, n0 + wrow, lane, M, N)


def require_group_alignment(op: str, group_size: int, has_zeros: bool, scales, zeros) -> None:
    """A slot's 128 / group_size scales (zero points) of a row come in one load of 2, 4 or 8 bytes (1, 2
    or 4): their data must start on such a boundary (a torch view may not)."""
    ng = KT // group_size
    for name, x, need in (("scales", scales, 2 * ng),) + ((("zeros", zeros, ng),) if has_zeros else ()):
        got = data_alignment(inspect_array(name, x, op))
        if got < need:
            raise ArgumentError(f"{op}(): group_size={group_size} reads '{name}' {need} bytes at a time on sm_90a: "
                                f"its data must start on a {need}-byte boundary, it is {got}-byte aligned (pass a "
                                f"copy)")


@lru_cache(maxsize=None)
def w4_swap_kernel(dtype_name: str, group_size: int, has_zeros: bool, cfg: W4SwapConfig, wdtype: str = "i32"):
    """The kernel for ``dtype_name`` activations, int4 groups of ``group_size`` (with zero points or the
    default 8) and tiling ``cfg`` (``wdtype``: the words' element type, part of the name only)."""
    cfg.check()
    T = {"f16": f16, "bf16": bf16}[dtype_name]
    D = W4Dequant(cfg, dtype_name, group_size, has_zeros)
    name = f"w4a16_sm90_{dtype_name}_g{group_size}" + ("_zp" if has_zeros else "") + f"_{cfg}_{wdtype}" \
        .replace("/", "_")

    E = tiles.Epilogue((), T)

    @kaiodsl.kernel(block_size=cfg.threads, name=name)
    def kern(ta: TensorMap, tw: TensorMap, scales: Ptr[T], zeros: Ptr[u8], c: Ptr[T], M: i32, N: i32, K: i32):
        _body(D, E, ta, tw, scales, zeros, c, (), M, N, K)

    return kern


def launch_w4_swap(a, w_packed, scales, z, out, M: int, N: int, K: int, dtype_name: str, group_size: int,
                   has_zeros: bool, wdtype: str, cfg: W4SwapConfig):
    """matmul_int4's sm_90a path with this kernel (arguments validated by matmul_int4; ``z`` the zero
    points or a 1-element placeholder)."""
    from .gemm_sm90 import sm_count

    require_group_alignment("matmul_int4", group_size, has_zeros, scales, z)
    ta = TensorMap(a, (cfg.block_m, 64), swizzle=128, l2_promotion=256)
    tw = _weights_map("int4", cfg, w_packed)
    total = -(-M // cfg.block_m) * -(-N // cfg.block_n)
    k = w4_swap_kernel(dtype_name, group_size, has_zeros, cfg, wdtype)
    k[min(total, sm_count()), cfg.threads](ta, tw, scales, z, out, M, N, K, smem=cfg.smem_bytes("int4"))
    return out


# -- segments (ops/gemm_sm90_segments.py): the fused int4 QKV projection, one launch ----------------------
SEGMENT_ARGS = 9           # epilogue operand slots (as gemm_sm90_w4's segmented kernel)


def _weights_map(kind: str, cfg: W4SwapConfig, w):
    """The weights' tensor map, one slot's block rows a box: int4 the [N / 8, K / 128, 32, 4] words seen as
    [N / 8, K]; int8 the [N, K] rows, 64 k a box, 64B-swizzled (conflict-free fragment reads)."""
    from .gemm_sm90_w4_stage import rows_view

    if kind == "int8":
        return TensorMap(w, (cfg.block_n, KT8), swizzle=64, l2_promotion=256)
    return TensorMap(rows_view(w, (w.shape[0], w.shape[1] * 128)), (cfg.block_n // 8, KT), l2_promotion=256)


@lru_cache(maxsize=None)
def w4_swap_segments_kernel(dtype_name: str, group_size: int, has_zeros: bool, cfg: W4SwapConfig, E: Segments,
                            wdtype: str, arg_types: tuple, kind: str = "int4"):
    """The kernel over segments ``E`` (no rope) for ``kind`` weights (int4: pack_int4 words, group scales;
    int8: [N, K] rows, per-channel scales as an epilogue ColScale, ``group_size`` 0): per segment its
    weights' tensor map, scales, zero points and output; ``arg_types`` the kaiodsl types of the
    epilogues' run-time operands."""
    cfg.check(kind)
    E.checked(cfg, len(arg_types), SEGMENT_ARGS)
    if any(p.rope for p in E.parts):
        raise ArgumentError("w4_swap_segments_kernel: no rope epilogue (a rotation pairs columns that live in "
                            "other warps here); gemm_sm90_w4's kernel takes it")
    T = {"f16": f16, "bf16": bf16}[dtype_name]
    D = W4Dequant(cfg, dtype_name, group_size, has_zeros, kind)
    O0, O1, O2 = (E.outs + (E.out,) * MAX_SEGMENTS)[:MAX_SEGMENTS]
    T0, T1, T2, T3, T4, T5, T6, T7, T8 = (tuple(arg_types) + (Ptr[f32],) * SEGMENT_ARGS)[:SEGMENT_ARGS]
    what = f"w8a16_{dtype_name}" if kind == "int8" else f"w4a16_{dtype_name}_g{group_size}"
    name = (f"{what}_sm90" + ("_zp" if has_zeros else "") + f"_{cfg}_{wdtype}").replace("/", "_") + E.tag

    @kaiodsl.kernel(block_size=cfg.threads, name=name)
    def kern(ta: TensorMap, w0: TensorMap, w1: TensorMap, w2: TensorMap, s0: Ptr[T], s1: Ptr[T], s2: Ptr[T],
             z0: Ptr[u8], z1: Ptr[u8], z2: Ptr[u8], c0: Ptr[O0], c1: Ptr[O1], c2: Ptr[O2], x0: T0, x1: T1, x2: T2,
             x3: T3, x4: T4, x5: T5, x6: T6, x7: T7, x8: T8, M: i32, N: i32, K: i32):
        _body(D, E, ta, (w0, w1, w2), (s0, s1, s2), (z0, z1, z2), (c0, c1, c2), (x0, x1, x2, x3, x4, x5, x6, x7, x8),
              M, N, K)

    return kern


def launch_w4_swap_segments(dtype_name: str, group_size: int, has_zeros: bool, wdtype: str, cfg: W4SwapConfig, a,
                            ws: tuple, scales: tuple, zeros: tuple, outs: tuple, M: int, K: int, E: Segments,
                            args: tuple, arg_types: tuple, dummy, kind: str = "int4"):
    """Run the segmented kernel on validated operands (as gemm_sm90_w4.launch_w4_segments)."""
    from .gemm_sm90 import sm_count

    ta = TensorMap(a, (cfg.block_m, 64), swizzle=128, l2_promotion=256)
    pad = MAX_SEGMENTS - len(ws)
    ws, scales, zeros, outs = (list(v) + [v[0]] * pad for v in (ws, scales, zeros, outs))
    if kind == "int4":
        for sc, z in zip(scales, zeros):
            require_group_alignment("qkv_project_int4", group_size, has_zeros, sc, z)
    tws = [_weights_map(kind, cfg, w) for w in ws]
    fill = [dummy] * (SEGMENT_ARGS - len(args))
    total = -(-M // cfg.block_m) * (E.width // cfg.block_n)
    k = w4_swap_segments_kernel(dtype_name, group_size, has_zeros, cfg, E, wdtype, arg_types, kind)
    k[min(total, sm_count()), cfg.threads](ta, *tws, *scales, *zeros, *outs, *args, *fill, M, E.width, K,
                                           smem=cfg.smem_bytes(kind))
    return tuple(outs[:len(outs) - pad])


# -- W8A16 (ops.matmul_w8a16's sm_90a path; its kernel is gemm_sm90_w4.w8_sm90_kernel with a W4SwapConfig) --
def launch_w8_swap(a, w_q, pc, gsc, out, bias, M: int, N: int, K: int, dtype_name: str, out_name: str,
                   group_size: int, has_bias: bool, cfg: W4SwapConfig):
    """matmul_w8a16's sm_90a path with this kernel (arguments validated there; ``pc`` the per-channel f32
    scales or a placeholder, ``gsc`` the group scales or a placeholder)."""
    from .gemm_sm90 import sm_count
    from .gemm_sm90_w4 import w8_sm90_kernel

    ta = TensorMap(a, (cfg.block_m, 64), swizzle=128, l2_promotion=256)
    tw = _weights_map("int8", cfg, w_q)
    total = -(-M // cfg.block_m) * -(-N // cfg.block_n)
    k = w8_sm90_kernel(dtype_name, out_name, group_size, has_bias, cfg)
    k[min(total, sm_count()), cfg.threads](ta, tw, pc, gsc, out, bias, M, N, K, smem=cfg.smem_bytes("int8"))
    return out
