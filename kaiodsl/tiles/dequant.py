"""Dequantization on load: low-bit weights straight into mma B fragments (W4A16 today, W8A16 next).

int4 -> f16/bf16 in three instructions a pair (the "magic number" trick, as in FasterTransformer's
and Marlin's kernels): one ``lop3`` drops two nibbles into the mantissa of 1024.0 (f16) or 128.0
(bf16), whose ulp is exactly 1; one packed ``sub`` takes off magic + zero point (exact), one packed
``mul`` applies the scale (one rounding, as the reference does).
"""

from __future__ import annotations

import kaiodsl
from kaiodsl import Const, f32, i64

# (bits of magic in both halves, magic as a float): the mantissa ulp of the magic is 1.
MAGIC = {"f16": (0x64006400, 1024.0), "bf16": (0x43004300, 128.0)}


@kaiodsl.func
def int4_pair(w, j: Const[int], zz, s2, MAGIC_BITS: Const[int], H2: Const):
    """Weights 2j, 2j+1 of a packed word (nibbles j and j + 4 of each half) as a half2:
    (magic + q - (magic + zero)) * scale."""
    x = kaiodsl.lop3(w >> (4 * j), 0x000F000F, MAGIC_BITS, "(a & b) | c")
    return (kaiodsl.bitcast(x, H2) - zz) * s2


@kaiodsl.func
def group_rows(scales, zeros, n, G):
    """Pointers to column n's row of the [N, G] scales and zero points (64-bit: n x G; hoisted out of
    the k loop)."""
    return scales + i64(n) * G, zeros + i64(n) * G


@kaiodsl.func
def group_consts(rows, grp, MAGIC_F: Const[float], HAS_ZEROS: Const[bool], H2: Const):
    """(zero + magic, scale) of group ``grp`` of a column (``rows`` from group_rows), each in both
    halves of a half2; the default zero point is 8."""
    srow, zrow = rows
    s = kaiodsl.bitcast(srow[grp], kaiodsl.u16)
    s2 = kaiodsl.bitcast(kaiodsl.pack_b32(s, s), H2)
    zf = MAGIC_F + 8.0
    if HAS_ZEROS:
        zf = MAGIC_F + f32(zrow[grp])
    return kaiodsl.pack_half2(zf, zf, H2), s2
