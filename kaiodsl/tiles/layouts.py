"""Shared-memory tile layouts: a tile descriptor (shape, dtype, stages, swizzle) with the swizzle as data.

A tile is ``rows`` rows of ``cols`` elements, row-major, ``stages`` copies back to back, at an
element ``offset`` inside the kernel's dynamic shared buffer. Rows are cut into 16-byte chunks
(one ``cp.async`` / one ``ldmatrix`` row each); chunk ``c`` of row ``r`` is stored at chunk
``c ^ ((r >> shift) & (2**bits - 1))`` (``Swizzle``). An ldmatrix phase reads one chunk column of
8 consecutive rows (PTX ISA 9.7.9.26, ldmatrix: lanes 8m..8m+7 address matrix m's rows); those 8
chunks must fall in 8 different 16-byte bank groups of the 128-byte bank line.

With ``m = row_bytes / 16`` chunks a row and ``p = min(v2(m), 3)`` (v2: factors of two),
rows r and r' collide exactly when ``m * (r - r') % 8 == 0``; XOR-ing the low ``p`` chunk bits with
``(r >> (3 - p))`` separates them, and keeps each chunk inside its row (m is a multiple of 2**p).
For rows of exactly 32, 64 and 128 bytes that is the 32B / 64B / 128B pattern of TMA and the wgmma
shared-memory descriptors (PTX ISA 9.7.15.5.1, "Shared memory matrix layout": address bits [4, 4+p)
XOR bits [7, 7+p)), so Hopper tiles use the same descriptor.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import kaiodsl
from kaiodsl import Const

from ..types import ScalarType


@dataclass(frozen=True)
class Swizzle:
    """16-byte chunk ``c`` of row ``r`` lives at chunk ``c ^ ((r >> shift) & (2**bits - 1))``."""

    bits: int = 0
    shift: int = 0

    @property
    def mask(self) -> int:
        return (1 << self.bits) - 1

    @property
    def width_bytes(self) -> int:
        """The TMA / wgmma name of the pattern (0 = none): 32, 64 or 128 bytes."""
        return 16 << self.bits if self.bits else 0

    def chunk(self, row, chunk):
        """Host side (ints or numpy arrays): the physical chunk of logical ``chunk`` in ``row``."""
        return chunk ^ ((row >> self.shift) & self.mask)

    @staticmethod
    def for_row(row_bytes: int) -> "Swizzle":
        """The conflict-free pattern for rows of ``row_bytes`` (a multiple of 16; see the module doc)."""
        if row_bytes <= 0 or row_bytes % 16:
            raise ValueError(f"shared tiles need rows of a positive multiple of 16 bytes, got {row_bytes}")
        m, p = row_bytes // 16, 0
        while p < 3 and m % (2 << p) == 0:
            p += 1
        return Swizzle(p, 3 - p) if p else NONE


NONE = Swizzle(0, 0)
B32 = Swizzle(1, 2)    # TMA CU_TENSOR_MAP_SWIZZLE_32B on 32-byte rows
B64 = Swizzle(2, 1)    # ... 64B on 64-byte rows
B128 = Swizzle(3, 0)   # ... 128B on 128-byte rows (and every wider row that is a multiple of 128 B)


@dataclass(frozen=True)
class SmemTile:
    """``stages`` x [rows, cols] elements of ``dtype`` at element ``offset`` of dynamic shared memory."""

    rows: int
    cols: int
    dtype: ScalarType
    stages: int = 1
    offset: int = 0
    swizzle: Swizzle | None = None     # None: Swizzle.for_row(row_bytes)

    def __post_init__(self):
        if self.swizzle is None:
            object.__setattr__(self, "swizzle", Swizzle.for_row(self.row_bytes))
        if self.swizzle.bits and self.chunks % (1 << self.swizzle.bits):
            raise ValueError(f"{self.swizzle} permutes {1 << self.swizzle.bits} chunks; a row has {self.chunks}")

    @property
    def elem_bytes(self) -> int:
        return self.dtype.nbytes

    @property
    def row_bytes(self) -> int:
        return self.cols * self.elem_bytes

    @property
    def chunks(self) -> int:
        """16-byte chunks per row."""
        return self.row_bytes // 16

    @property
    def chunk_elems(self) -> int:
        return 16 // self.elem_bytes

    @property
    def elems(self) -> int:
        """Elements of one stage."""
        return self.rows * self.cols

    @property
    def end(self) -> int:
        """The element offset just past the last stage (where the next tile can start)."""
        return self.offset + self.stages * self.elems

    def nbytes(self) -> int:
        return self.stages * self.elems * self.elem_bytes

    def after(self, other: "SmemTile") -> "SmemTile":
        """This tile placed right after ``other`` in the same buffer (both of one dtype)."""
        return replace(self, offset=other.end)

    def element_offset(self, row, col, stage=0):
        """Host side: the element offset (from the buffer start) of logical (row, col)."""
        ce = self.chunk_elems
        return (self.offset + stage * self.elems + row * self.cols
                + self.swizzle.chunk(row, col // ce) * ce + col % ce)


@kaiodsl.func
def swizzle_chunk(T: Const, row, chunk):
    """In a kernel: the physical chunk of logical ``chunk`` in ``row`` of tile T."""
    if T.swizzle.bits == 0:
        return chunk
    if T.swizzle.shift == 0:
        return chunk ^ (row & T.swizzle.mask)
    return chunk ^ ((row >> T.swizzle.shift) & T.swizzle.mask)


@kaiodsl.func
def chunk_ptr(smem, T: Const, row, chunk):
    """Shared pointer to the first element of logical chunk ``chunk`` of ``row`` in stage 0 of T
    (add ``stage * T.elems`` for another stage)."""
    return smem.ptr(T.offset + row * T.cols + swizzle_chunk(T, row, chunk) * T.chunk_elems)
