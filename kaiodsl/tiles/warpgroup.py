"""Warpgroup-level matrix multiply: ``wgmma.mma_async`` over shared-memory tiles (PTX ISA 9.7.15, sm_90a).

A ``WarpgroupMma(dtype, n, row_bytes, m_tiles)`` is one warpgroup's share of a block tile: ``m_tiles``
m64 row blocks of A against the same ``n`` rows of B, both K-major in shared memory with rows of
``row_bytes`` bytes (one TMA box row: 128 bytes with the 128-byte swizzle, so 64 f16 or 128 8-bit
elements of K), as ``layouts.SmemTile`` describes them and TMA writes them. One k step of wgmma reads
32 bytes of every row (k16 for f16/bf16, k32 for 8-bit types), so a stage is ``row_bytes / 32``
steps; inside a swizzled row a step is 32 bytes further on the descriptor's start address (the
swizzle is applied to the address bits, 9.7.15.5.1). ``dtype`` names one type for A and B, or for
fp8 a mixed pair ``"e4m3_e5m2"`` / ``"e5m2_e4m3"`` (A's type first: wgmma takes any fp8 pair).

``mma_stage`` issues the whole stage (fence, the wgmmas of every m tile and k step, commit) and
returns the pending accumulators; ``wgmma_wait`` completes them. The accumulator of m tile i is
warp w's 16 rows ``64 i + 16 w ..`` in the m16n8 C layout, repeated along N: ``acc_tile`` views it as
a ``fragments.AccTile(1, n / 8)``, so the epilogue's per-element ops and stores apply unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import kaiodsl
from kaiodsl import Const

from .fragments import AccTile
from .mma import ACC, ELEM_BITS

K_STEP_BYTES = 32          # every wgmma shape reads 32 bytes of K per row
DTYPES = ("f16", "bf16", "e4m3", "e5m2", "s8", "u8", "e4m3_e5m2", "e5m2_e4m3")


@dataclass(frozen=True)
class WarpgroupMma:
    dtype: str = "f16"
    n: int = 256
    row_bytes: int = 128
    m_tiles: int = 1
    swizzle: int = 128

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"WarpgroupMma: dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not (8 <= self.n <= 256 and self.n % (8 if ELEM_BITS[self.types[0]] == 16 else 16) == 0):
            raise ValueError(f"WarpgroupMma: n={self.n} is not a wgmma N for {self.dtype}")
        if self.row_bytes % K_STEP_BYTES or self.swizzle not in (0, 32, 64, 128) or \
                (self.swizzle and self.row_bytes != self.swizzle):
            raise ValueError(f"WarpgroupMma: rows of {self.row_bytes} bytes with swizzle {self.swizzle}: a "
                             f"swizzled row is one swizzle atom wide")
        if self.m_tiles < 1:
            raise ValueError("WarpgroupMma: m_tiles >= 1")

    @property
    def types(self) -> tuple:
        """(A's element type, B's): ``dtype`` twice, or the two halves of a mixed fp8 pair."""
        a, _, b = self.dtype.partition("_")
        return a, b or a

    @property
    def acc(self) -> str:
        return ACC[self.types[0]]

    @property
    def rows(self) -> int:
        """A rows this warpgroup multiplies."""
        return 64 * self.m_tiles

    @property
    def k_steps(self) -> int:
        return self.row_bytes // K_STEP_BYTES

    @property
    def elem_bytes(self) -> int:
        return ELEM_BITS[self.types[0]] // 8

    @property
    def acc_tile(self) -> AccTile:
        return AccTile(1, self.n // 8, self.acc)


@kaiodsl.func
def index(tid):
    """Thread ``tid``'s warpgroup (tid // 128) as a value ptxas can prove warp-uniform (read from lane 0),
    so the shared-memory offsets and wgmma descriptors built from it live in uniform registers: no
    R2UR moves before each wgmma. Call it where the warp is converged."""
    return kaiodsl.shfl_idx(tid // 128, 0)


@kaiodsl.func
def zeros(W: Const):
    """Zero accumulators, one per m tile."""
    return [kaiodsl.wgmma_zeros(W.n, W.acc) for i in range(W.m_tiles)]


@kaiodsl.func
def mma_stage(W: Const, a, b, accs):
    """``accs += A @ B^T`` over one stage: ``a`` the shared pointer of this warpgroup's first A row,
    ``b`` of B's first row (both tiles of ``row_bytes`` rows, swizzle-atom aligned); one commit group."""
    kaiodsl.wgmma_fence()
    out = accs
    db0 = kaiodsl.wgmma_desc(b, W.swizzle, rows=W.n)
    da0 = kaiodsl.wgmma_desc(a, W.swizzle, rows=64)
    for s in kaiodsl.static_range(W.k_steps):
        db = kaiodsl.wgmma_desc_add(db0, s * K_STEP_BYTES)
        nxt = []
        for i in kaiodsl.static_range(W.m_tiles):
            da = kaiodsl.wgmma_desc_add(da0, 64 * i * W.row_bytes + s * K_STEP_BYTES)
            nxt = nxt + [kaiodsl.wgmma(da, db, out[i], dtype=W.types)]
        out = nxt
    kaiodsl.wgmma_commit()
    return out


ATOM = 128                 # bytes of a 128-byte-swizzled row: one TMA box of 64 f16/bf16 columns


@kaiodsl.func
def load_blocks(smem, at, rows: Const, blocks: Const, tmap, b, h, row0, bar):
    """TMA ``rows`` rows of a [B, H, S, 64 blocks] f16/bf16 tensor map's head (b, h) from row ``row0``
    into the column-block layout the issue helpers below read: ``blocks`` boxes of 64 columns (128
    bytes, swizzled by the map) at element ``at`` of ``smem``, [blocks][rows][64]; ``bar`` is told of
    their bytes by the caller."""
    for c in kaiodsl.static_range(blocks):
        kaiodsl.tma_load(smem.ptr(at + c * rows * (ATOM // 2)), tmap, (b, h, row0, c * (ATOM // 2)), bar)


@kaiodsl.func
def mma_ss_blocks(dtype: Const, n: Const, blocks: Const, a, b, acc):
    """Issue ``acc = A B^T`` as one commit group and return it pending: A this warpgroup's 64 rows, B
    ``n`` rows, both f16/bf16 K-major and stored as ``blocks`` 128-byte-swizzled column blocks side by
    side (``[blocks][64][64]`` at shared pointer ``a``, ``[blocks][n][64]`` at ``b``: what TMA boxes
    of 64 columns write), 4 k16 steps a block. ``acc`` is dead: the first wgmma does not read it
    (scale_d=False), so the product lands in its registers with no zeroing moves."""
    kaiodsl.wgmma_fence()
    da0 = kaiodsl.wgmma_desc(a, ATOM, rows=64)
    db0 = kaiodsl.wgmma_desc(b, ATOM, rows=n)
    for c in kaiodsl.static_range(blocks):
        for s in kaiodsl.static_range(ATOM // K_STEP_BYTES):
            da = kaiodsl.wgmma_desc_add(da0, c * 64 * ATOM + s * K_STEP_BYTES)
            db = kaiodsl.wgmma_desc_add(db0, c * n * ATOM + s * K_STEP_BYTES)
            acc = kaiodsl.wgmma(da, db, acc, dtype=dtype, scale_d=c + s > 0)
    kaiodsl.wgmma_commit()
    return acc


@kaiodsl.func
def mma_rs_rows(dtype: Const, k: Const, pa, b, acc):
    """Issue ``acc += A B`` as one commit group and return it pending: A register fragments ``pa[0][kk]``
    (the k16 steps of k), B a row-major f16/bf16 ``[k, N]`` tile read MN-major, as 128-byte-swizzled
    column blocks of ``k`` rows at shared pointer ``b`` (a k16 step is 16 rows of every block; the
    descriptor's LBO steps the blocks)."""
    kaiodsl.wgmma_fence()
    db0 = kaiodsl.wgmma_desc(b, ATOM, major="mn", rows=k)
    for kk in kaiodsl.static_range(k // 16):
        acc = kaiodsl.wgmma(pa[0][kk], kaiodsl.wgmma_desc_add(db0, kk * 16 * ATOM), acc, dtype=dtype,
                            trans_b=True)
    kaiodsl.wgmma_commit()
    return acc


@kaiodsl.func
def wait(W: Const, pending: Const[int], accs):
    """Until at most ``pending`` stages are in flight; the accumulators to use from here."""
    if W.m_tiles == 1:
        return [kaiodsl.wgmma_wait(pending, accs[0])]
    return list(kaiodsl.wgmma_wait(pending, *accs))


@kaiodsl.func
def acc_tile(W: Const, acc):
    """One m tile's accumulator as the AccTile(1, n / 8) nested list the epilogue takes."""
    return [[(acc[4 * j], acc[4 * j + 1], acc[4 * j + 2], acc[4 * j + 3]) for j in range(W.n // 8)]]


@kaiodsl.func
def from_acc_tile(W: Const, tile):
    """The inverse of ``acc_tile``: one m tile's AccTile(1, n / 8) list back as the flat register list
    wgmma takes as its accumulator (after element-wise work on it, such as a per-row rescale)."""
    out = []
    for j in kaiodsl.static_range(W.n // 8):
        out = out + [tile[0][j][0], tile[0][j][1], tile[0][j][2], tile[0][j][3]]
    return out
