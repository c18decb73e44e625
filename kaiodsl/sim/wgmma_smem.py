"""Where wgmma finds each byte of a shared-memory operand: descriptor -> shared addresses.

PTX ISA 9.7.15.5.1.2 ("Shared Memory Matrix Layout") builds every operand from swizzle atoms of
8 rows x W bytes (W = 32/64/128 with a swizzle, 16 without); the descriptor (9.7.15.5.1.1) gives
the start address, the leading-dimension byte offset (LBO), the stride-dimension byte offset (SBO)
and the swizzle. The swizzle XORs address bits [4, 4 + log2(W/16)) with bits [7, ...) of the
final address. Per major-ness (imm-trans-a / imm-trans-b):

K-major (trans 0): a row is one M/N index holding 32 bytes of K.
  swizzled:  start + (mn // 8) SBO + (mn % 8) W + kbyte                    (LBO unused)
  none:      start + (mn // 8) SBO + (kbyte // 16) LBO + (mn % 8) 16 + kbyte % 16

MN-major (trans 1, 16-bit types): a row is one K index holding W bytes of M/N; k16 is 16 rows.
  swizzled:  start + (mnbyte // W) LBO + (k // 8) SBO + (k % 8) W + mnbyte % W
  none:      start + (mnbyte // 16) SBO + (k // 8) LBO + (k % 8) 16 + mnbyte % 16
  (the leading-dimension table: MN-major LBO is the step between blocks of W/16 128-bit M/N
  elements when swizzled, between groups of 8 K columns without swizzle; SBO is the other one)
"""

from __future__ import annotations

import numpy as np

SWIZZLE_WIDTH = {0: 16, 1: 128, 2: 64, 3: 32}  # descriptor mode (bits 62-63) -> atom row width in bytes


def fields(desc: int) -> tuple:
    """(start, lbo, sbo, W, swizzled) of a 64-bit matrix descriptor, in bytes."""
    start = (desc & 0x3FFF) << 4
    lbo, sbo = ((desc >> 16) & 0x3FFF) << 4, ((desc >> 32) & 0x3FFF) << 4
    mode = desc >> 62
    return start, lbo, sbo, SWIZZLE_WIDTH[mode], mode != 0


def operand_addresses(desc: int, rows: int, ebytes: int, mn_major: bool) -> np.ndarray:
    """[rows, 32] shared byte addresses: entry (i, j) is byte j % ebytes of K element j // ebytes of
    M/N index i (every wgmma shape reads 32 bytes of K), i.e. the operand as K-major [rows, K] bytes."""
    start, lbo, sbo, w, swizzled = fields(desc)
    r = np.arange(rows)[:, None]
    j = np.arange(32)[None, :]
    if not mn_major:
        if swizzled:
            lin = start + (r // 8) * sbo + (r % 8) * w + j
        else:
            lin = start + (r // 8) * sbo + (j // 16) * lbo + (r % 8) * 16 + j % 16
    else:
        k = j // ebytes
        mnb = r * ebytes + j % ebytes  # byte offset along M/N
        if swizzled:
            lin = start + (mnb // w) * lbo + (k // 8) * sbo + (k % 8) * w + mnb % w
        else:
            lin = start + (mnb // 16) * sbo + (k // 8) * lbo + (k % 8) * 16 + mnb % 16
    if swizzled:
        lin = lin ^ (((lin >> 7) & (w // 16 - 1)) << 4)  # 16-byte chunks XOR the row within the atom
    return lin
