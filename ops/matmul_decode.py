"""The decode GEMM behind ``kaiodsl.ops.matmul`` for M <= 16 with b as [N, K] (the nn.Linear weight).

At M <= 16 a GEMM is a weight stream: each weight is read once and feeds at most 16 rows, so what
counts is how many bytes are in flight, not the tile shape. ``matmul`` runs ops/decode_gemm.py's
main loop with f16/bf16 weights for it: a block is ``n_tiles x k_split`` warps; warp (nt, kq)
streams ``8 nw`` weight rows with 16-byte loads over a 1/k_split share of K (``unroll`` loads per
n8 tile in flight), the K split's partial sums are added in kq order through shared memory
(deterministic: the same bits run after run), and the kq == 0 warps run the tile epilogue (bias,
f16/bf16/f32 output), as the tiled kernel does.

It needs K a multiple of 32 (one 16-byte load a lane covers 32 k of a warp's 8 rows) and both data
pointers 16-byte aligned; other shapes take the tiled kernel, which handles every K.

b as [K, N] keeps the tiled kernel (ASYNC_TINY_M). A [K, N] stream loads 8 consecutive columns of
one k row per 16 bytes, but the mma's B fragment wants 2 consecutive k of one column per register:
every word would need a prmt pair across two loaded rows before each mma (or ldmatrix.trans through
shared memory, which is what the tiled kernel already does). nn.Linear weights, the decode case,
are [N, K]; a [K, N] variant is left until a measurement shows the tiled kernel short there.

``decode_config(M, N, K)`` is the default; ``config=DecodeConfig(...)`` overrides it.
"""

from functools import lru_cache

import kaiodsl
from kaiodsl import Ptr, bf16, f16, f32, i32, tiles, u32
from kaiodsl.errors import ArgumentError

from . import decode_gemm
from ._common import require_smem
from .decode_gemm import DecodeConfig, DecodeGemm

MAX_M = 16
UNIT_K = 32            # k per 16-byte weight load of one lane (decode_gemm.DecodeGemm.unit for f16)
SMS = 132              # the H200's SM count: fixed, so the choice is the same on every machine
MIN_WARPS = 12 * SMS   # ~12 warps an SM: with nw * unroll 512-byte loads each, ~24 KB in flight an SM
MIN_WARP_BYTES = 8192  # weight bytes a warp streams at least: below that the K-split reduction dominates


def _k_split(K: int, nw: int) -> int:
    """The largest K split (8, 4, 2, 1) whose warps each stream >= MIN_WARP_BYTES of weights."""
    for ks in (8, 4, 2):
        if 8 * nw * (K // ks) * 2 >= MIN_WARP_BYTES and K // ks >= UNIT_K:
            return ks
    return 1


@lru_cache(maxsize=4096)
def decode_config(M: int, N: int, K: int) -> DecodeConfig:
    """The default parallelism: one n group a block (n_tiles=1, the most blocks), K split while each
    warp still streams >= 8 KB, two n8 tiles a warp (each A fragment feeds two mma) when that gives
    >= ~12 warps an SM on 132 SMs, else one (twice the blocks); with fewer warps than that even so
    (small N), 4 loads a tile in flight instead of 2. N = K = 4096 gives (1, 8, 2, 2), the config
    measured at 1.30x cuBLAS on the H200 at M = 16."""
    for nw in (2, 1):
        ks = _k_split(K, nw)
        if -(-N // (8 * nw)) * ks >= MIN_WARPS:
            return DecodeConfig(n_tiles=1, k_split=ks, nw=nw, unroll=2)
    return DecodeConfig(n_tiles=1, k_split=_k_split(K, 1), nw=1, unroll=4)


# The heuristic streams weights with this kernel below this N. Measured on the H200 (one run, f16/bf16,
# K = 4096, against cuBLAS): at N = 4096 the stream is 1.04x/1.26x (M = 1) and 1.01x/0.97x (M = 16),
# the 16 x 64 tiled kernel 0.63-0.70x; at N = 14336 the tiled kernel is ahead, 0.95x/1.00x (M = 1) and
# 0.93x/0.92x (M = 16) against the stream's 0.91x/0.96x and 0.75x/0.75x.
DECODE_MAX_N = 8192


def decode_preferred(N: int) -> bool:
    """Whether the heuristic takes the weight stream for this N (where the kernel can run)."""
    return N < DECODE_MAX_N


def decode_unfit(M: int, K: int, layout: str, aligned: bool) -> str:
    """Why the decode kernel cannot run this product ('' when it can)."""
    if M > MAX_M:
        return f"M={M} is more than {MAX_M}"
    if layout != "nk":
        return "b is [K, N] (the decode kernel streams [N, K] weights: b_layout='nk')"
    if K == 0 or K % UNIT_K:
        return f"K={K} is not a positive multiple of {UNIT_K}"
    if not aligned:
        return "a or b does not start on a 16-byte boundary"
    return ""


def check_decode_config(op: str, cfg: DecodeConfig, staged: bool = False, K: int = 0, unit: int = 32,
                        two_rows: bool = True) -> None:
    """Raise ArgumentError unless ``cfg`` is a tiling the decode kernel runs on the current backend's arch
    (require_smem's, with A staged for K); ``staged``: the op passes split workspaces and staged A's
    shared memory (else splits > 1 and stage_a are refused). The tuples that passed are remembered."""
    from kaiodsl.runtime import current

    key = (cfg, staged, K, unit, two_rows, getattr(current(), "arch", None))
    if key in _VALID:
        return
    if not isinstance(cfg, DecodeConfig):
        raise ArgumentError(f"{op}(): config must be a DecodeConfig, got {cfg!r}")
    for name in ("n_tiles", "k_split", "nw", "unroll", "splits"):
        v = getattr(cfg, name)
        if not (type(v) is int and v >= 1):
            raise ArgumentError(f"{op}(): config {cfg!r}: {name} must be a positive int, got {v!r}")
    for name in ("stage_a", "prefetch", "late_scale", "prefetch_a"):
        if type(getattr(cfg, name)) is not bool:
            raise ArgumentError(f"{op}(): config {cfg!r}: {name} must be True or False, got {getattr(cfg, name)!r}")
    if cfg.prefetch_a and (not cfg.prefetch or cfg.stage_a):
        raise ArgumentError(f"{op}(): config {cfg!r}: prefetch_a loads A a step ahead with the weights: it needs "
                            f"prefetch=True and A read from global memory (stage_a=False)")
    if cfg.late_scale and unit != 128:
        raise ArgumentError(f"{op}(): config {cfg!r}: late_scale applies to int4 weights (group scales after the "
                            f"products); these weights are {'int8' if unit == 64 else 'f16/bf16'}: use "
                            f"late_scale=False")
    if not (type(cfg.ring) is int and (cfg.ring == 0 or cfg.ring >= 2)):
        raise ArgumentError(f"{op}(): config {cfg!r}: ring must be 0 (off) or an int >= 2 (steps in the "
                            f"cp.async weight ring), got {cfg.ring!r}")
    if cfg.ring and (cfg.stage_a or cfg.prefetch):
        raise ArgumentError(f"{op}(): config {cfg!r}: ring={cfg.ring} replaces prefetch and cannot share shared "
                            f"memory with stage_a; use ring with stage_a=False, prefetch=False")
    if not staged and (cfg.splits > 1 or cfg.stage_a):
        raise ArgumentError(f"{op}(): config {cfg!r}: splits={cfg.splits}, stage_a={cfg.stage_a}; this op's "
                            f"decode kernel takes splits=1 and stage_a=False")
    if cfg.splits > MAX_SPLITS:
        raise ArgumentError(f"{op}(): config {cfg!r}: splits={cfg.splits}; allowed 1..{MAX_SPLITS} (grid.z)")
    if cfg.threads > 1024:
        raise ArgumentError(f"{op}(): config {cfg!r}: n_tiles * k_split = {cfg.n_tiles * cfg.k_split} warps; "
                            f"a block holds at most 32")
    require_smem(op, f"config {cfg}", cfg.smem_bytes(a_bytes=cfg.a_bytes(K, unit, two_rows)))
    _VALID.add(key)


MAX_SPLITS = 64          # K ranges across blocks: each block at least one 16-byte weight load a lane in practice


def split_buffers(like, cfg: DecodeConfig, tiles_mn: int) -> tuple:
    """(f32 workspace, i32 tickets) for ``cfg.splits`` > 1 over ``tiles_mn`` column tiles, else 1-element
    placeholders. The workspace is fresh (every split writes its partial before the ticket); the tickets
    are one zeroed buffer per device (and PyTorch stream: ``tickets``) that the kernels leave zeroed (the
    last block resets its slot), so no launch pays a memset."""
    from ._common import new_like, tickets

    n = cfg.workspace_elems(tiles_mn)
    ws = new_like(like, (max(n, 1),), f32)
    if cfg.splits == 1:
        return ws, tickets(like, 1)
    return ws, tickets(like, tiles_mn)


_VALID: set = set()     # (DecodeConfig, staged, K, unit, two_rows, arch) that passed check_decode_config


def decode_grid(M: int, N: int, cfg: DecodeConfig) -> tuple:
    return (N + cfg.block_n - 1) // cfg.block_n, (M + 15) // 16


@lru_cache(maxsize=None)
def decode_kernel(dtype_name: str, out_name: str, cfg: DecodeConfig, has_bias: bool, two_rows: bool,
                  exact: bool = False):
    """The kernel for ``a`` [M <= 16, K] @ ``b`` [N, K]^T (+ bias); ``two_rows``: M > 8; ``exact``:
    decode_exact(cfg, K, 32) holds for the K it runs."""
    T = {"f16": f16, "bf16": bf16}[dtype_name]
    OUT = {"f16": f16, "bf16": bf16, "f32": f32}[out_name]
    G = DecodeGemm(cfg, T, "f16", 0, False, two_rows, exact)
    E = tiles.Epilogue((tiles.Bias(),) if has_bias else (), OUT)
    name = f"gemm_decode_{dtype_name}_{out_name}_{cfg}" + ("_bias" if has_bias else "") + \
           ("" if two_rows else "_m8") + ("_x" if exact else "")

    @kaiodsl.kernel(block_size=cfg.threads, name=name)
    def gemm_decode(a: Ptr[T], b: Ptr[T], c: Ptr[OUT], bias: Ptr[f32], M: i32, N: i32, K: i32):
        sm = kaiodsl.dynamic_shared(f32)
        tid = kaiodsl.thread_idx.x
        col0 = kaiodsl.block_idx.x * cfg.block_n
        m0 = kaiodsl.block_idx.y * 16
        w = kaiodsl.ptr_cast(b, u32)
        acc = decode_gemm.main_loop(G, sm.ptr(0), a, w, w, w, M, N, K, m0, col0)
        nt, kq = decode_gemm.warp_place(G, tid)
        if kq == 0:
            tiles.epilogue.store_tile(E, G.acc_tile, acc, c, (bias,) if has_bias else (), m0,
                                      col0 + nt * 8 * cfg.nw, tid % 32, M, N)

    return gemm_decode
