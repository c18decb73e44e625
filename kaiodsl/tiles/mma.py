"""Warp-level matrix multiply over tiles: ``mma.sync.m16n8k*`` (PTX ISA 9.7.14.5.14).

An ``MmaAtom`` is one instruction shape: element type, K and accumulator. ``WarpMma`` is a warp's
[wm, wn] tile of atoms: ``mma_tile`` runs every (i, j) pair of one k step, reusing each A fragment
across j (operand reuse in hardware). Atoms read 32 bytes of K per step by default (one ldmatrix.x4
row pair: f16/bf16 k16, 8-bit k32, tf32 k8, 4-bit k64), which is what the copies' k slabs hold.

A warpgroup-level ``wgmma.mma_async`` (Hopper) slots in beside this: a ``WarpgroupMma`` config
with its m64nNk16 atom, A/B from shared-memory descriptors built from ``layouts.SmemTile``, and an
accumulator tile of 64 x N per warpgroup; ``fragments.AccTile`` keeps the coordinates (each warp
of the group holds a 16-row slab of the same C layout).
"""

from __future__ import annotations

from dataclasses import dataclass

import kaiodsl
from kaiodsl import Const

from .fragments import AccTile

ELEM_BITS = {"f16": 16, "bf16": 16, "tf32": 32, "s8": 8, "u8": 8, "e4m3": 8, "e5m2": 8, "s4": 4, "u4": 4}
ACC = {"f16": "f32", "bf16": "f32", "tf32": "f32", "s8": "s32", "u8": "s32", "e4m3": "f32", "e5m2": "f32",
       "s4": "s32", "u4": "s32"}


@dataclass(frozen=True)
class MmaAtom:
    """One mma.sync shape: m16 n8 k``k`` of ``dtype`` accumulating into ``acc``."""

    dtype: str = "f16"
    k: int = 0          # 0: 32 bytes of K (the ldmatrix.x4 slab)
    acc: str = ""       # "": f32 for floats, s32 for integers

    def __post_init__(self):
        if self.dtype not in ELEM_BITS:
            raise ValueError(f"MmaAtom: dtype must be one of {', '.join(ELEM_BITS)}, got {self.dtype!r}")
        if not self.k:
            object.__setattr__(self, "k", 256 // ELEM_BITS[self.dtype])
        if not self.acc:
            object.__setattr__(self, "acc", ACC[self.dtype])

    @property
    def shape(self) -> str:
        return f"m16n8k{self.k}"

    @property
    def k_bytes(self) -> int:
        return self.k * ELEM_BITS[self.dtype] // 8

    @property
    def a_regs(self) -> int:
        return self.k * ELEM_BITS[self.dtype] // 64

    @property
    def b_regs(self) -> int:
        return self.a_regs // 2

    @property
    def mma_dtype(self):
        """The dtype= kaiodsl.mma needs (None where the registers say it: f16x2, bf16x2, f32)."""
        return None if self.dtype in ("f16", "bf16", "tf32") else self.dtype


@dataclass(frozen=True)
class WarpMma:
    """A warp's wm x wn tile of ``atom``s."""

    wm: int
    wn: int
    atom: MmaAtom = MmaAtom()

    def __post_init__(self):
        if self.wm % 16 or self.wn % 8:
            raise ValueError(f"WarpMma: the warp tile {self.wm}x{self.wn} must be a multiple of 16x8")

    @property
    def mi(self) -> int:
        return self.wm // 16

    @property
    def nj(self) -> int:
        return self.wn // 8

    @property
    def acc_tile(self) -> AccTile:
        return AccTile(self.mi, self.nj, self.atom.acc)


@kaiodsl.func
def mma_tile(W: Const, acc, a_frags, b_frags):
    """acc[i][j] += a_frags[i] @ b_frags[j] for one k step (W.mi A and W.nj B fragments)."""
    for i in kaiodsl.static_range(W.mi):
        for j in kaiodsl.static_range(W.nj):
            acc[i][j] = kaiodsl.mma(a_frags[i], b_frags[j], acc[i][j], dtype=W.atom.mma_dtype)
    return acc
