"""W4A16 past decode: the block-tiled int4 GEMM ``matmul_int4`` runs for M > 16.

The decode kernel (ops/matmul_int4.py) reads each weight once per 16 rows of A; at prefill sizes
that re-reads the weights M / 16 times. Here a block owns a [block_m, 8 * n8 * warps] output tile:
its A rows go through the tile library's cp.async ring into shared memory (one [block_m, 128] tile a
stage, shared by every warp), and each warp streams its own n8 weight tiles straight from global
memory into registers (one 16-byte load a lane per 8 x 128 tile, the next k block prefetched while
the current one is used), dequantizes each once (tiles.dequant.int4_pair) and multiplies it against
all of the block's block_m / 16 A fragments. The A fragment a lane needs for the packed layout
(ops/int4_pack.py: 8 consecutive k per row) is one 16-byte shared load per row.
"""

from dataclasses import dataclass
from functools import lru_cache

import kaiodsl
from kaiodsl import Const, Ptr, bf16, bf16x2, f16, f16x2, i32, i64, tiles, u8, u32
from kaiodsl.tiles import copies, pipeline
from kaiodsl.tiles.dequant import MAGIC, group_consts, group_rows, int4_pair
from kaiodsl.tiles.layouts import SmemTile, chunk_ptr
from kaiodsl.types import ScalarType


@dataclass(frozen=True)
class Int4Config:
    """block_m rows (block_m / 16 A fragments a warp), ``warps`` warps along N with ``n8`` n8 weight
    tiles each, ``stages`` A buffers of [block_m, 128]."""

    block_m: int = 64
    warps: int = 4
    n8: int = 4
    stages: int = 3

    @property
    def block_n(self) -> int:
        return 8 * self.n8 * self.warps

    @property
    def threads(self) -> int:
        return 32 * self.warps

    def smem_bytes(self) -> int:
        return self.stages * self.block_m * 128 * 2

    def __str__(self) -> str:
        return f"m{self.block_m}/w{self.warps}/n8x{self.n8}/s{self.stages}"


PREFILL = Int4Config(block_m=64, warps=4, n8=4, stages=3)
PREFILL_LARGE = Int4Config(block_m=128, warps=4, n8=2, stages=3)


def int4_tiled_config(M: int, N: int, K: int) -> Int4Config:
    return PREFILL_LARGE if M >= 1024 else PREFILL


@dataclass(frozen=True)
class Int4Gemm:
    cfg: Int4Config
    dtype: ScalarType
    group: int
    has_zeros: bool
    wide: bool = False

    def __post_init__(self):
        if self.a_tile.swizzle.shift or self.a_tile.swizzle.mask > 7:
            raise ValueError(f"Int4Gemm: the A tile's swizzle {self.a_tile.swizzle} must XOR row & 7 (a_lane)")
        if self.cfg.block_m % 16 or self.cfg.stages < 2 or self.cfg.n8 < 1:
            raise ValueError(f"Int4Gemm: block_m a multiple of 16, stages >= 2, got {self.cfg}")

    @property
    def mi(self) -> int:
        return self.cfg.block_m // 16

    @property
    def acc_tile(self) -> tiles.AccTile:
        return tiles.AccTile(self.mi, self.cfg.n8)

    @property
    def ring(self) -> pipeline.Ring:
        return pipeline.Ring(self.cfg.stages)

    @property
    def a_tile(self) -> SmemTile:
        return SmemTile(self.cfg.block_m, 128, self.dtype, self.cfg.stages)

    @property
    def a_copy(self) -> tiles.TileCopy:
        return tiles.TileCopy(self.a_tile, self.cfg.threads, "cols", "cp.async", self.wide)

    @property
    def is_f16(self) -> bool:
        return self.dtype.name == "f16"


@kaiodsl.func
def _words(G: Const, wp, kb, KB, ntile, N):
    """This lane's 16-byte piece of each of the warp's n8 weight tiles at k block kb (zeros past N/K)."""
    return [kaiodsl.load(wp, (v * KB + kb) * 128, vec=4, cache="nc",
                         mask=kb < KB and (ntile + v) * 8 < N, other=0) for v in range(G.cfg.n8)]


@kaiodsl.func
def _a_rows(G: Const, a_lane, base, i: Const[int], ci: Const[int], H2: Const):
    """The two m16n8k16 A fragments (k steps 0, 1) of rows 16 i .. 16 i + 15 for k32 chunk ci of the
    stage at ``base``: 8 consecutive k per row and lane (the packed weights' k order), one 16-byte
    shared load per row."""
    x0 = kaiodsl.load(kaiodsl.ptr_cast(a_lane[ci] + (base + 16 * i * 128), u32), 0, vec=4)
    x1 = kaiodsl.load(kaiodsl.ptr_cast(a_lane[ci] + (base + (16 * i + 8) * 128), u32), 0, vec=4)
    return [[kaiodsl.bitcast(x0[2 * s], H2), kaiodsl.bitcast(x1[2 * s], H2),
             kaiodsl.bitcast(x0[2 * s + 1], H2), kaiodsl.bitcast(x1[2 * s + 1], H2)] for s in range(2)]


@kaiodsl.func
def main_loop(G: Const, smem, a, w, scales, zeros, M, N, K, row0, col0):
    """The warp's AccTile(mi, n8) for the block tile at (row0, col0) of a [M, K] @ W.T, W [N, K] int4
    packed (w a u32 pointer); the warp's columns start at col0 + warp * 8 * n8."""
    tid = kaiodsl.thread_idx.x
    lane = tid % 32
    g = lane // 4
    t = lane % 4
    C = G.cfg
    R = G.ring
    S = C.stages
    H2 = f16x2 if G.is_f16 else bf16x2
    MAGIC_BITS, MAGIC_F = MAGIC[G.dtype.name]
    ntile = col0 // 8 + (tid // 32) * C.n8
    KB = K // 128
    GN = K // G.group
    wp = w + (i64(ntile * KB) * 32 + lane) * 4       # 64-bit: ntile x KB x 128 words pass 2^31
    qrows = [group_rows(scales, zeros, min((ntile + v) * 8 + g, N - 1), GN) for v in range(C.n8)]
    a_plan = copies.plan(G.a_copy, smem, a, K, row0, M, tid)
    # rows 16 i + 8 h + g share row g's swizzle (the 128-byte pattern XORs row & 7): one pointer per chunk
    a_lane = [chunk_ptr(smem, G.a_tile, g, 4 * ci + t) for ci in range(4)]
    acc = tiles.fragments.zeros(G.acc_tile)
    for s in kaiodsl.static_range(S - 1):
        if s < KB:
            copies.issue(G.a_copy, a_plan, K, s, s * 128, K)
        pipeline.commit(R)
    words = _words(G, wp, 0, KB, ntile, N)
    read = pipeline.start(R)
    write = pipeline.start(R, S - 1)
    for kb in range(KB):
        nxt = _words(G, wp, kb + 1, KB, ntile, N)         # the next k block's weights, in flight now
        pipeline.wait(R, S - 2)
        write = pipeline.acquire(R, write)
        wi, wph = write
        if kb + S - 1 < KB:
            copies.issue(G.a_copy, a_plan, K, wi, (kb + S - 1) * 128, K)
        pipeline.commit(R)
        write = pipeline.advance(R, write)
        index, phase = read
        base = index * G.a_tile.elems
        for ci in kaiodsl.static_range(4):
            k0 = kb * 128 + 32 * ci
            if ci * 32 % G.group == 0:
                consts = [group_consts(qrows[v], k0 // G.group, MAGIC_F, G.has_zeros, H2) for v in range(C.n8)]
            bfs = []                                      # each weight dequantized once, used mi times
            for v in kaiodsl.static_range(C.n8):
                zz, s2 = consts[v]
                word = words[v][ci]
                bfs = bfs + [[(int4_pair(word, 2 * st, zz, s2, MAGIC_BITS, H2),
                               int4_pair(word, 2 * st + 1, zz, s2, MAGIC_BITS, H2)) for st in range(2)]]
            for i in kaiodsl.static_range(G.mi):
                af = _a_rows(G, a_lane, base, i, ci, H2)
                for st in kaiodsl.static_range(2):
                    for v in kaiodsl.static_range(C.n8):
                        acc[i][v] = kaiodsl.mma(af[st], bfs[v][st], acc[i][v])
        read = pipeline.advance(R, read)
        words = nxt
    pipeline.drain(R)
    return acc


@lru_cache(maxsize=None)
def int4_tiled_kernel(dtype_name: str, group_size: int, has_zeros: bool, cfg: Int4Config, wdtype: str = "i32",
                      wide: bool = False):
    T = {"f16": f16, "bf16": bf16}[dtype_name]
    W = {"i32": i32, "u32": u32}[wdtype]
    G = Int4Gemm(cfg, T, group_size, has_zeros, wide)
    E = tiles.Epilogue((), T)
    name = f"w4a16_tiled_{dtype_name}_g{group_size}" + ("_zp" if has_zeros else "") + f"_{cfg}_{wdtype}" \
        .replace("/", "_") + ("_wide" if wide else "")

    @kaiodsl.kernel(block_size=cfg.threads, name=name)
    def w4a16_tiled(a: Ptr[T], w: Ptr[W], scales: Ptr[T], zeros: Ptr[u8], c: Ptr[T], M: i32, N: i32, K: i32):
        smem = kaiodsl.dynamic_shared(T)
        tid = kaiodsl.thread_idx.x
        col0 = kaiodsl.block_idx.x * cfg.block_n
        row0 = kaiodsl.block_idx.y * cfg.block_m
        acc = main_loop(G, smem, a, kaiodsl.ptr_cast(w, u32), scales, zeros, M, N, K, row0, col0)
        tiles.epilogue.store_tile(E, G.acc_tile, acc, c, (), row0, col0 + (tid // 32) * 8 * cfg.n8, tid % 32,
                                  M, N)

    return w4a16_tiled


def launch_int4_tiled(a, w_packed, scales, z, out, M: int, N: int, K: int, dtype_name: str, group_size: int,
                      has_zeros: bool, wdtype: str, config=None):
    """matmul_int4's M > 16 path (arguments already validated by matmul_int4)."""
    from .matmul import needs_wide

    cfg = config or int4_tiled_config(M, N, K)
    k = int4_tiled_kernel(dtype_name, group_size, has_zeros, cfg, wdtype, needs_wide(M, N, K))
    grid = ((N + cfg.block_n - 1) // cfg.block_n, (M + cfg.block_m - 1) // cfg.block_m)
    k[grid, cfg.threads](a, w_packed, scales, z, out, M, N, K, smem=cfg.smem_bytes())
    return out
