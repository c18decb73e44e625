"""The Hopper GEMM (sm_90a): persistent, warp-specialised, TMA loads into an mbarrier ring, wgmma.

``C = epilogue(A @ B^T)`` for A [M, K] and B [N, K] (K-major, the nn.Linear weight layout), 2-byte
(f16/bf16, f32 accumulation) or 1-byte (s8 with s32 accumulation, e4m3/e5m2 with f32) elements.

A block is ``1 + consumers`` warpgroups of 128 threads and owns one SM for the whole kernel
(``grid = min(tiles, SMs)``); it walks the output tiles ``pid, pid + grid, ...`` in the grouped order
of ``tiles.gemm.tile_coords_of`` (GROUP_M tile-rows at a time, so the tiles in flight share A rows
and B columns in L2).

* **Producer** (warpgroup 0) gives most of its registers back (``setmaxnreg.dec``); one thread walks
  the same tile sequence and, per K step, acquires a ring slot (``tiles.pipeline``: its empty
  mbarrier), announces the slot's bytes on its full mbarrier and issues two TMA loads (an A box of
  ``block_m x BK`` and a B box of ``block_n x BK``, 128-byte swizzled, zero-filled past the edges, so
  ragged M, N and K need no predication in the main loop). It runs up to ``stages`` steps ahead, into
  the next tile while the consumers finish the current one.
* **Consumers** (warpgroups 1..) raise their registers (``setmaxnreg.inc``); consumer c owns rows
  ``c * block_m / consumers ..`` of the tile and multiplies them against all ``block_n`` columns:
  ``m_tiles`` m64nN wgmmas per k step (``tiles.warpgroup``). Each stage is one wgmma commit group;
  after issuing stage s it waits until stage s - 1's group is done (``wgmma.wait_group 1``) and
  releases that slot, so one stage of tensor-core work is always queued behind the wait.
* **Epilogue** per consumer, straight from the accumulators (``tiles.epilogue``: scales, bias,
  rounding, 2-element stores guarded at M and N), while the producer already fills the ring for the
  next tile.

* **Segments** (``E`` a ``gemm_sm90_segments.Segments``): up to three B operands and outputs in one
  launch (the fused QKV projection); only the producer's B load and the epilogue call differ.

``BK`` is 128 bytes of K (64 f16 or 128 8-bit elements): one swizzle atom per row, what the 128-byte
wgmma descriptor and the TMA box agree on. Shared memory is ``stages x (block_m + block_n) x 128``
bytes; 128 x 256 tiles with 4 stages take 192 KB of the 227 KB.
"""


from dataclasses import dataclass, replace
from functools import lru_cache

import kaiodsl
from kaiodsl import Const, Ptr, TensorMap, f16, f32, i32, tiles, u64
from kaiodsl.errors import ArgumentError
from kaiodsl.tiles import tma_epilogue

from ._common import data_alignment, inspect_array, new_like, require_positive_fields, require_smem

ROW_BYTES = 128                 # bytes of K per stage row: one 128-byte swizzle atom
REGS = 64 * 1024                # registers per SM (and per block here: one block an SM)
SMEM_MAX = 227 * 1024           # shared memory of a block on sm_90
STAGING = 2 * 64 * ROW_BYTES    # a consumer's TMA-store staging: 2 buffers of 64 rows x 128 bytes (at most)
STORES = ("auto", "tma", "direct")
ELEM_BYTES = {"f16": 2, "bf16": 2, "s8": 1, "u8": 1, "e4m3": 1, "e5m2": 1,
              "e4m3_e5m2": 1, "e5m2_e4m3": 1}       # mixed fp8 pairs: A's type first (tiles.WarpgroupMma)


@dataclass(frozen=True)
class WarpgroupTiling:
    """What the warp-specialised Hopper kernels' tilings share (this GEMM's Sm90Config, the W4A16/W8A16
    kernel's W4Config): ``block_m x block_n`` output tiles, ``stages`` ring slots of 128 bytes of K a
    row, ``consumers`` consumer warpgroups (``block_m / consumers`` rows each), ``group_m`` tile-rows
    walked at a time, and one producer warpgroup."""

    block_m: int = 128
    block_n: int = 256
    stages: int = 4
    consumers: int = 2
    group_m: int = 8

    @property
    def wg_rows(self) -> int:
        return self.block_m // self.consumers

    @property
    def threads(self) -> int:
        return 128 * (1 + self.consumers)

    def ring_bytes(self) -> int:
        return self.stages * (self.block_m + self.block_n) * ROW_BYTES

    def tiling_rules(self) -> list:
        """(holds, rule) for the rules every such kernel has: m64 row blocks, one TMA box of rows, a ring."""
        return [
            (self.block_m % self.consumers == 0 and self.wg_rows % 64 == 0,
             "block_m / consumers must be a multiple of 64 (m64 wgmma row blocks)"),
            (self.wg_rows <= 256, "a consumer holds at most 4 m64 row blocks"),
            (self.block_m <= 256, "block_m must be at most 256 (one TMA box)"),
            (self.stages >= 2, "stages must be at least 2"),
        ]

    def __str__(self) -> str:
        return f"{self.block_m}x{self.block_n}/c{self.consumers}/s{self.stages}/g{self.group_m}"


@dataclass(frozen=True)
class Sm90Config(WarpgroupTiling):
    """``block_m x block_n`` output tiles, ``stages`` ring slots, ``consumers`` consumer warpgroups
    (each ``block_m / consumers`` rows, a multiple of 64), tiles walked ``group_m`` tile-rows at a time;
    ``cluster=2``: pairs of blocks (a thread-block cluster) take two neighbouring tile-rows of one
    tile-column and share its B tile: each loads one half and multicasts it to both.

    ``store``: the epilogue's stores. ``"tma"``: through shared memory (``tiles.tma_epilogue``: 2
    staging buffers of up to 8 KB per consumer; TMA stores that run on while the consumer starts its
    next tile), for row-major f16/bf16/f32 outputs whose rows start on 16-byte boundaries (an
    ArgumentError otherwise); ``"direct"``: 2-element stores from the registers
    (``tiles.epilogue.store_tile``), any output; ``"auto"``: ``"tma"`` where the output allows it
    and the staging fits in shared memory next to the ring, else ``"direct"``. ``split_k``: K cut into that many ranges, one work unit per (tile, range), each
    writing its f32 partial tile to a workspace that a second kernel (``gemm_sm90_splitk``) sums in a
    fixed order before the epilogue (deterministic; float accumulators only: f16/bf16/fp8)."""

    cluster: int = 1
    store: str = "auto"
    split_k: int = 1

    def __post_init__(self):
        require_positive_fields(self, skip=("store",))
        if self.store not in STORES:
            raise ArgumentError(f"Sm90Config: store must be one of {', '.join(map(repr, STORES))}, "
                                f"got {self.store!r}")

    def block_k(self, elem_bytes: int) -> int:
        return ROW_BYTES // elem_bytes

    @property
    def staged(self) -> bool:
        """Whether the staging buffers are allocated: store="tma", or "auto" where they fit next to the ring."""
        fits = self.ring_bytes() + self.consumers * STAGING + 1024 <= SMEM_MAX
        return self.store == "tma" or (self.store == "auto" and fits)

    def smem_bytes(self) -> int:
        """The ring and, when ``staged``, the consumers' staging buffers."""
        return self.ring_bytes() + (self.consumers * STAGING if self.staged else 0)

    def registers(self) -> tuple:
        """(producer, consumer) per-thread register budgets for setmaxnreg: the producer keeps 40
        (24 with three or more consumers), the consumers share the rest of the 64K in multiples of 8."""
        prod = 40 if self.consumers <= 2 else 24
        cons = min(256, (REGS - 128 * prod) // (128 * self.consumers)) // 8 * 8
        return prod, cons

    def check(self, elem_bytes: int = 2) -> None:
        """Raise ArgumentError unless the kernel computes this tiling correctly (a pure function of the
        config: the ones that passed are remembered, so that an eager call does not re-derive them)."""
        if (self, elem_bytes) in _VALID:
            return
        n_step = 8 if elem_bytes == 2 else 16
        rules = self.tiling_rules() + [
            (8 <= self.block_n <= 256 and self.block_n % n_step == 0,
             f"block_n must be a multiple of {n_step} in {n_step}..256 (a wgmma N, and one TMA box)"),
            (self.consumers <= 3, "at most 3 consumer warpgroups (512 threads a block)"),
            (self.cluster in (1, 2), "cluster must be 1 or 2"),
            (self.cluster == 1 or self.block_n % 16 == 0 and self.block_n // 2 % n_step == 0,
             "with cluster=2 each block loads block_n / 2 rows of B: a multiple of 8 (of 16 for 8-bit types)"),
            (self.registers()[1] * 128 * self.consumers >= self.wg_rows // 64 * self.block_n // 2 * 128 * self.consumers,
             "the accumulators do not fit in the consumers' registers"),
            (self.split_k <= 16, "split_k must be at most 16"),
            (self.smem_bytes() + 1024 <= SMEM_MAX,
             f"the ring{' and the TMA-store staging' if self.staged else ''} need "
             f"{self.smem_bytes() + 1024} bytes of shared memory (with the 1024-byte alignment), more than "
             f"{SMEM_MAX}: fewer stages" + (" or store='auto' / 'direct'" if self.staged else "")),
        ]
        for ok, rule in rules:
            if not ok:
                raise ArgumentError(f"Sm90Config {self!r} is not a valid tiling: {rule}")
        _VALID.add((self, elem_bytes))

    def __str__(self) -> str:
        return WarpgroupTiling.__str__(self) + \
            (f"/cl{self.cluster}" if self.cluster > 1 else "") + (f"/k{self.split_k}" if self.split_k > 1 else "") + \
            (f"/{self.store}" if self.store != "auto" else "")


_VALID: set = set()     # (Sm90Config, element bytes) that passed Sm90Config.check
DEFAULT = Sm90Config()
NARROW = Sm90Config(block_m=128, block_n=128, stages=6)


def sm90_config(M: int, N: int, K: int, sms: int, acc: str = "f32") -> Sm90Config:
    """The heuristic: 128 x 256 tiles when they still give every SM a tile, else 128 x 128, with K
    split (``split_k_for``) when even those leave most SMs idle; ``acc``: the accumulator type
    (split-K sums f32 partials: never for the s32 accumulators of the int8 kernels)."""
    tiles_256 = -(-M // 128) * -(-N // 256)
    if tiles_256 >= sms:
        return DEFAULT
    split = split_k_for(M, N, K, sms) if acc == "f32" else 1
    return NARROW if split == 1 else replace(NARROW, split_k=split)


def split_k_for(M: int, N: int, K: int, sms: int) -> int:
    """How many ways the heuristic splits K for 128 x 128 tiles: 1 unless the tiles would keep at
    most half of the SMs busy and K >= 4096; then enough splits to give about every SM a unit
    (at most 8, each split at least 1024 deep), so M = 128 / 256 with N = 4096 take 4 / 2."""
    tiles = -(-M // 128) * -(-N // 128)
    if 2 * tiles > sms or K < 4096:
        return 1
    return max(1, min(sms // tiles, 8, K // 1024))


@lru_cache(maxsize=None)
def sm90_gemm_kernel(dtype_name: str, cfg: Sm90Config, E, arg_types: tuple):
    """The kernel for ``dtype_name`` operands, tiling ``cfg`` (its ``store`` resolved to "tma" or
    "direct") and epilogue ``E`` (whose run-time operands have kaiodsl types ``arg_types``): a
    tiles.Epilogue, or a ``gemm_sm90_segments.Segments`` (several B operands and outputs in one launch;
    direct stores, no split-K). With ``split_k > 1``, E is the partials' (no ops, f32) and ``c`` the workspace."""
    eb = ELEM_BYTES[dtype_name]
    cfg.check(eb)
    from . import gemm_sm90_segments as seg       # several B maps and outputs (that module's doc)

    SEGS = E.checked(cfg, len(arg_types)) if isinstance(E, seg.Segments) else ()
    if SEGS and cfg.store == "auto":
        cfg = replace(cfg, store="direct")
    if cfg.store not in ("tma", "direct"):
        raise ArgumentError(f"sm90_gemm_kernel: store={cfg.store!r} must be resolved to 'tma' or 'direct' "
                            f"(gemm_sm90.resolve_store)")
    if SEGS and (cfg.store != "direct" or cfg.split_k != 1):
        raise ArgumentError(f"sm90_gemm_kernel: segments store directly without split-K, got {cfg}")
    BM, BN, BK, S, GM = cfg.block_m, cfg.block_n, cfg.block_k(eb), cfg.stages, cfg.group_m
    W = tiles.WarpgroupMma(dtype_name, BN, ROW_BYTES, cfg.wg_rows // 64)
    CL = cfg.cluster
    SPLIT = cfg.split_k
    R = tiles.Ring(S, kind="mbarrier", arrivals=128 * cfg.consumers * CL, cluster=CL)
    HALF_B = BN // 2 * BK                 # cluster=2: the B rows each block loads and multicasts
    A_ELEMS, B_ELEMS = BM * BK, BN * BK
    STAGE_ELEMS = A_ELEMS + B_ELEMS
    STAGE_BYTES = STAGE_ELEMS * eb
    WG_ELEMS = cfg.wg_rows * BK
    PROD_REGS, CONS_REGS = cfg.registers()
    SMEM_T = {1: kaiodsl.u8, 2: f16}[eb]
    OUT = E.out
    TS = tma_store_of(cfg, OUT) if cfg.store == "tma" else None
    nargs = len(arg_types)
    name = f"gemm_sm90_{dtype_name}_{OUT.name}_{BM}x{BN}_c{cfg.consumers}_s{S}" + (f"_cl{CL}" if CL > 1 else "") + \
           (f"_k{SPLIT}" if SPLIT > 1 else "") + ("_tma" if TS else "") + \
           "".join(f"_{op.kind}{getattr(op, 'axis', '')}" for op in (() if SEGS else E.ops)) + (E.tag if SEGS else "")

    @kaiodsl.func
    def body(ta, tb, c, args, M, N, K):
        smem = kaiodsl.dynamic_shared(SMEM_T, align=1024)
        bars = kaiodsl.shared_array(u64, (R.barriers,), align=8, name="ring")
        tid = kaiodsl.thread_idx.x
        wg = tiles.warpgroup.index(tid)
        if tid == 0:
            kaiodsl.tma_prefetch(ta)
            if SEGS:
                for m in kaiodsl.static_range(len(SEGS)):
                    kaiodsl.tma_prefetch(tb[m])
            else:
                kaiodsl.tma_prefetch(tb)
            tiles.pipeline.init(R, bars)
        rank = 0
        if CL == 1:
            kaiodsl.syncthreads()
        else:
            kaiodsl.cluster_sync()        # the peer's barriers exist before anything multicasts into them
            rank = kaiodsl.i32(kaiodsl.cluster_ctarank())
        total = ((M + BM * CL - 1) // (BM * CL)) * ((N + BN - 1) // BN)     # tiles (pairs of tiles with CL = 2)
        ktiles = (K + BK - 1) // BK
        first, step = kaiodsl.block_idx.x // CL, kaiodsl.grid_dim.x // CL
        if wg == 0:
            kaiodsl.setmaxnreg(PROD_REGS, False)
            if tid == 0:
                state = tiles.pipeline.start(R)
                for u in range(first, total * SPLIT, step):
                    t, split, k_lo, k_hi = tiles.gemm.split_unit(u, total, ktiles, SPLIT)
                    mp, n0 = tiles.gemm.tile_coords_of(t, M, N, BM * CL, BN, GM)
                    m0 = mp + rank * BM
                    for kt in range(k_lo, k_hi):
                        tiles.pipeline.acquire(R, state, bars)
                        index, phase = state
                        tiles.pipeline.commit(R, state, bars, STAGE_BYTES)
                        slot = smem.ptr(index * STAGE_ELEMS)
                        kaiodsl.tma_load(slot, ta, (m0, kt * BK), bars.ptr(index))
                        if SEGS:                  # B from the map of the segment holding the tile
                            seg.load_segment_b(SEGS, CL, slot + A_ELEMS + rank * HALF_B, tb,
                                               n0 + rank * (BN // 2), kt * BK, bars.ptr(index))
                        elif CL == 1:
                            kaiodsl.tma_load(slot + A_ELEMS, tb, (n0, kt * BK), bars.ptr(index))
                        else:
                            kaiodsl.tma_load(slot + A_ELEMS + rank * HALF_B, tb, (n0 + rank * (BN // 2), kt * BK),
                                             bars.ptr(index), multicast=kaiodsl.u16(3))
                        state = tiles.pipeline.advance(R, state)
        else:
            kaiodsl.setmaxnreg(CONS_REGS, True)
            cw = wg - 1
            state = tiles.pipeline.start(R)
            peer = rank ^ 1                   # the other block of a cluster pair (unused without one)
            ctx = 0
            if TS:
                ctx = tma_epilogue.context(TS, kaiodsl.dynamic_shared(OUT, offset=cfg.ring_bytes(), align=1024),
                                           cw, tid)
            for u in range(first, total * SPLIT, step):
                t, split, k_lo, k_hi = tiles.gemm.split_unit(u, total, ktiles, SPLIT)
                mp, n0 = tiles.gemm.tile_coords_of(t, M, N, BM * CL, BN, GM)
                m0 = mp + rank * BM
                accs = tiles.warpgroup.zeros(W)
                prev = state
                for kt in range(k_lo, k_hi):
                    tiles.pipeline.wait(R, 0, state, bars)
                    index, phase = state
                    slot = smem.ptr(index * STAGE_ELEMS)
                    accs = tiles.warpgroup.mma_stage(W, slot + cw * WG_ELEMS, slot + A_ELEMS, accs)
                    accs = tiles.warpgroup.wait(W, 1, accs)
                    if kt > k_lo:
                        tiles.pipeline.release(R, prev, bars, peer)
                    prev = state
                    state = tiles.pipeline.advance(R, state)
                accs = tiles.warpgroup.wait(W, 0, accs)
                if k_hi > k_lo:
                    tiles.pipeline.release(R, prev, bars, peer)
                # split-K: the partial goes to rows split * Mp + m0 of the [SPLIT * Mp, Np] workspace
                mrows = ((M + BM * CL - 1) // (BM * CL)) * (BM * CL)
                ncols = ((N + BN - 1) // BN) * BN
                if SEGS:                          # through the output, epilogue and rope of n0's segment
                    seg.store_segments(SEGS, W, accs, c, args, m0 + cw * cfg.wg_rows + 16 * ((tid // 32) % 4), n0,
                                       tid % 32, M)
                elif SPLIT > 1:
                    consumer_epilogue(TS, E, W, accs, c, args, ctx, split * mrows + m0 + cw * cfg.wg_rows, n0, tid,
                                      SPLIT * mrows, ncols)
                else:
                    consumer_epilogue(TS, E, W, accs, c, args, ctx, m0 + cw * cfg.wg_rows, n0, tid, M, N)
            if TS:
                tma_epilogue.finish(TS, ctx)
        if CL > 1:
            kaiodsl.cluster_sync()            # no block leaves while its peer may still arrive on its barriers

    C = TensorMap if TS else Ptr[OUT]
    if SEGS:
        O0, O1, O2 = (E.outs + (OUT,) * seg.MAX_SEGMENTS)[:seg.MAX_SEGMENTS]
        T0, T1, T2, T3, T4, T5 = (tuple(arg_types) + (Ptr[f32],) * seg.MAX_SEGMENT_ARGS)[:seg.MAX_SEGMENT_ARGS]

        @kaiodsl.kernel(block_size=cfg.threads, name=name)
        def kern(ta: TensorMap, tb0: TensorMap, tb1: TensorMap, tb2: TensorMap, c0: Ptr[O0], c1: Ptr[O1],
                 c2: Ptr[O2], x0: T0, x1: T1, x2: T2, x3: T3, x4: T4, x5: T5, M: i32, N: i32, K: i32):
            body(ta, (tb0, tb1, tb2), (c0, c1, c2), (x0, x1, x2, x3, x4, x5), M, N, K)
    elif nargs == 0:
        @kaiodsl.kernel(block_size=cfg.threads, name=name)
        def kern(ta: TensorMap, tb: TensorMap, c: C, M: i32, N: i32, K: i32):
            body(ta, tb, c, (), M, N, K)
    elif nargs == 1:
        T0, = arg_types

        @kaiodsl.kernel(block_size=cfg.threads, name=name)
        def kern(ta: TensorMap, tb: TensorMap, c: C, x0: T0, M: i32, N: i32, K: i32):
            body(ta, tb, c, (x0,), M, N, K)
    elif nargs == 2:
        T0, T1 = arg_types

        @kaiodsl.kernel(block_size=cfg.threads, name=name)
        def kern(ta: TensorMap, tb: TensorMap, c: C, x0: T0, x1: T1, M: i32, N: i32, K: i32):
            body(ta, tb, c, (x0, x1), M, N, K)
    else:
        T0, T1, T2 = arg_types

        @kaiodsl.kernel(block_size=cfg.threads, name=name)
        def kern(ta: TensorMap, tb: TensorMap, c: C, x0: T0, x1: T1, x2: T2, M: i32, N: i32, K: i32):
            body(ta, tb, c, (x0, x1, x2), M, N, K)
    return kern


# -- the epilogue: direct stores from the registers, or staged in shared memory and stored by TMA --------
@lru_cache(maxsize=None)
def tma_store_of(cfg: Sm90Config, out) -> tiles.TmaStore:
    """The staging of one consumer's m64 row blocks of ``cfg``'s tile (2 buffers, named barriers 1..)."""
    return tma_epilogue.TmaStore(64, cfg.block_n, out)


@kaiodsl.func
def consumer_epilogue(TS: Const, E: Const, W: Const, accs, c, args, ctx, r0, n0, tid, M, N):
    """One consumer's ``W.m_tiles`` m64 row blocks from row ``r0`` of the tile at column ``n0``: with
    TS (a TmaStore) through its staging buffers to the tensor map ``c``, else straight to ``c``."""
    lane = tid % 32
    if TS:
        tma_epilogue.begin(TS, ctx)
        for i in kaiodsl.static_range(W.m_tiles):
            tma_epilogue.store_tile(TS, E, W.acc_tile, tiles.warpgroup.acc_tile(W, accs[i]), c, ctx, args,
                                    r0 + 64 * i, n0, M, N, i * TS.chunks)
    else:
        wr = r0 + 16 * ((tid // 32) % 4)
        for i in kaiodsl.static_range(W.m_tiles):
            tiles.epilogue.store_tile(E, W.acc_tile, tiles.warpgroup.acc_tile(W, accs[i]), c, args,
                                      wr + 64 * i, n0, lane, M, N)


def sm_count() -> int:
    """SMs of the current device (a persistent grid's size); the simulator reports a few."""
    from kaiodsl.runtime import current
    return int(getattr(current(), "sm_count", 132))


def resolve_store(cfg: Sm90Config, E: tiles.Epilogue, out, N: int) -> Sm90Config:
    """``cfg`` with ``store`` decided for this output: "tma" where the kernel's target is a TMA store
    target (``tma_epilogue.fits``: a row-major f16/bf16/f32 [M, N] whose rows start on 16-byte
    boundaries; with split_k > 1 the f32 workspace, always), "direct" where it is not and the config
    said "auto"; ``store="tma"`` where it is not is an ArgumentError."""
    if cfg.store == "direct" or not cfg.staged:
        return with_store(cfg, "direct")
    ok = cfg.split_k > 1 or (E.store.kind == "row_major" and
                             tma_epilogue.fits(E.out.name, N, data_alignment(inspect_array("out", out, "gemm_sm90"))))
    if not ok and cfg.store == "tma":
        raise ArgumentError(f"Sm90Config(store='tma'): the output ({E.out.name}, N={N}, {E.store.kind}) is not a "
                            f"TMA store target: that needs a row-major f16, bf16 or f32 output whose rows start on "
                            f"16-byte boundaries (N * {E.out.nbytes} bytes a multiple of 16); use store='auto' or "
                            f"'direct'")
    return with_store(cfg, "tma" if ok else "direct")


@lru_cache(maxsize=None)
def with_store(cfg: Sm90Config, store: str) -> Sm90Config:
    """``cfg`` with ``store`` (made once per pair: replace() re-runs the config's checks)."""
    return cfg if cfg.store == store else replace(cfg, store=store)


def launch(dtype_name: str, a, b, out, M: int, N: int, K: int, cfg: Sm90Config, E: tiles.Epilogue,
           args: tuple = (), arg_types: tuple = ()):
    """Run the kernel on validated operands: a [M, K], b [N, K] (row-major, 16-byte aligned rows),
    out [M, N]; ``args`` the epilogue's run-time operands. With split_k > 1 (as many splits as K has
    k tiles for, at most): the partials into a workspace, then gemm_sm90_splitk's reduction."""
    if cfg.split_k > 1 and dtype_name in ("s8", "u8"):
        raise ArgumentError(f"Sm90Config(split_k={cfg.split_k}): split-K sums f32 partials; the {dtype_name} kernel "
                            f"accumulates exactly in s32: use split_k=1")
    cfg = resolve_store(cfg, E, out, N)
    eb = ELEM_BYTES[dtype_name]
    BK = cfg.block_k(eb)
    CL = cfg.cluster
    ta = TensorMap(a, (cfg.block_m, BK), swizzle=128, l2_promotion=256)
    tb = TensorMap(b, (cfg.block_n // CL, BK), swizzle=128, l2_promotion=256)
    total = -(-M // (cfg.block_m * CL)) * -(-N // cfg.block_n)
    if cfg.split_k > 1:
        ktiles = -(-K // BK)
        cfg = replace(cfg, split_k=-(-ktiles // -(-ktiles // cfg.split_k)))      # no empty k range
    if cfg.split_k == 1:
        _run(dtype_name, cfg, E, arg_types, total, ta, tb, _target(cfg, E.out, out), args, M, N, K)
        return out
    from . import gemm_sm90_splitk

    S = cfg.split_k
    mp, np_ = -(-M // (cfg.block_m * CL)) * cfg.block_m * CL, -(-N // cfg.block_n) * cfg.block_n
    if S * mp > 2**31 - 1:
        raise ArgumentError(f"gemm_sm90: split_k={S} with M={M}: the workspace's {S * mp} rows pass the i32 "
                            f"row coordinates; use split_k=1")
    ws = new_like(inspect_array("out", out, "gemm_sm90"), (S * mp, np_), f32)
    part = tiles.Epilogue((), f32)
    _run(dtype_name, cfg, part, (), total * S, ta, tb, _target(cfg, f32, ws), (), M, N, K)
    return gemm_sm90_splitk.reduce(ws, S, mp, np_, out, M, N, E, args, arg_types)


def _target(cfg: Sm90Config, out_t, out):
    """The kernel's ``c``: the output itself, or with store="tma" its tensor map (the staging box)."""
    if cfg.store != "tma":
        return out
    box, swizzle = _store_box(cfg, out_t)
    return TensorMap(out, box, dtype=out_t.name, swizzle=swizzle)


@lru_cache(maxsize=None)
def _store_box(cfg: Sm90Config, out_t) -> tuple:
    """(box, swizzle bytes) of the output's tensor map with store="tma"."""
    TS = tma_store_of(cfg, out_t)
    return TS.box, TS.swizzle_bytes


def _run(dtype_name, cfg: Sm90Config, E, arg_types, units: int, ta, tb, c, args, M, N, K):
    """One launch of the persistent kernel over ``units`` work units (tiles, or tiles x splits)."""
    k = sm90_gemm_kernel(dtype_name, cfg, E, arg_types)
    CL = cfg.cluster
    if CL == 1:
        k[min(units, sm_count()), cfg.threads](ta, tb, c, *args, M, N, K, smem=cfg.smem_bytes())
    else:
        grid = min(units, sm_count() // CL) * CL
        k[grid, cfg.threads](ta, tb, c, *args, M, N, K, smem=cfg.smem_bytes(), cluster=(CL, 1, 1))


def kernel_for(dtype_name: str, cfg: Sm90Config, E: tiles.Epilogue, arg_types: tuple):
    """The GEMM kernel ``launch`` runs for ``cfg`` (for its registers, spills, PTX): store="auto" as
    "tma" (an aligned row-major output), split_k > 1 with the partials' epilogue."""
    if cfg.store == "auto":
        cfg = replace(cfg, store="tma" if cfg.staged and E.store.kind == "row_major" else "direct")
    if cfg.split_k > 1:
        E, arg_types = tiles.Epilogue((), f32), ()
    return sm90_gemm_kernel(dtype_name, cfg, E, arg_types)


def wants_sm90(M: int, N: int, K: int, b_layout: str) -> bool:
    """Whether ops.matmul's heuristic takes this kernel: on sm_90a, b as [N, K], and M past the
    decode sizes (there one 128-row tile would be mostly padding; the small-M kernels stream B)."""
    from kaiodsl.compiler import default_arch
    return default_arch() == "sm_90a" and b_layout == "nk" and M > 64


def checked_config(op: str, config, K: int, layout: str, rows_aligned: bool, elem_bytes: int, default) -> Sm90Config:
    """The tiling an op runs on this kernel (``config`` when it is an Sm90Config, else ``default()``),
    after every check that the kernel can run it: the sm_90a target, b as [N, K], rows on 16-byte
    boundaries (TMA), the tiling's own rules for ``elem_bytes``-byte elements, shared memory."""
    from kaiodsl.compiler import default_arch

    arch = default_arch()
    if arch != "sm_90a":
        raise ArgumentError(f"{op}(): config {config!r} is the sm_90a kernel (wgmma, TMA); the current target is "
                            f"{arch}: use a GemmConfig or config='auto'")
    if layout != "nk":
        raise ArgumentError(f"{op}(): the sm_90a kernel takes b as [N, K] (b_layout='nk'); got b_layout={layout!r}")
    if not rows_aligned:
        raise ArgumentError(f"{op}(): the sm_90a kernel loads rows with TMA, which needs every row of the operands "
                            f"on a 16-byte boundary (K={K} a multiple of {16 // elem_bytes} and 16-byte aligned "
                            f"data); use config='auto'")
    cfg = config if isinstance(config, Sm90Config) else default()
    try:
        cfg.check(elem_bytes)
    except ArgumentError as e:
        raise ArgumentError(f"{op}(): config: {e}") from None
    require_smem(op, f"config {cfg}", cfg.smem_bytes() + 1024)     # + the 1024-byte alignment of the ring
    return cfg


def gemm_sm90(a, b, *, bias=None, out_dtype="f32", config: Sm90Config | None = None):
    """``a @ b.T`` through this kernel (the GEMM tutorial's last level; ``ops.matmul`` picks it by
    itself on sm_90a): a [M, K], b [N, K] f16/bf16, the result [M, N] in ``out_dtype``."""
    import kaiodsl.ops as ops
    if config is None:
        M, N, K = a.shape[0], b.shape[0], a.shape[1]
        config = sm90_config(M, N, K, sm_count())
    return ops.matmul(a, b, b_layout="nk", out_dtype=out_dtype, bias=bias, config=config)
