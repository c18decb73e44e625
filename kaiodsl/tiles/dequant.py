"""Dequantization on load: low-bit weights straight into mma B fragments (W4A16, W8A16).

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
def int4_zero(zrow, grp, HAS_ZEROS: Const[bool]):
    """The zero point of group ``grp`` of a column (``zrow``: its zero-point row) as an f32: 8 without
    zero points."""
    if HAS_ZEROS:
        return f32(zrow[grp])
    return 8.0


@kaiodsl.func
def group_consts(rows, grp, MAGIC_F: Const[float], HAS_ZEROS: Const[bool], H2: Const):
    """(zero + magic, scale) of group ``grp`` of a column (``rows`` from group_rows), each in both
    halves of a half2; the default zero point is 8."""
    srow, zrow = rows
    s = kaiodsl.bitcast(srow[grp], kaiodsl.u16)
    s2 = kaiodsl.bitcast(kaiodsl.pack_b32(s, s), H2)
    zf = MAGIC_F + int4_zero(zrow, grp, HAS_ZEROS)
    return kaiodsl.pack_half2(zf, zf, H2), s2


@kaiodsl.func
def int4_zero_halves(zrow, grp, MAGIC_F: Const[float], HAS_ZEROS: Const[bool], H2: Const):
    """(magic + zero, -(magic / 16 + zero)) of group ``grp`` of a column (``zrow``: its zero-point row;
    the default zero point is 8), each in both halves of a half2: what int4_q_halves subtracts."""
    zf = int4_zero(zrow, grp, HAS_ZEROS)
    lo = MAGIC_F + zf
    hi = -(MAGIC_F / 16 + zf)
    return kaiodsl.pack_half2(lo, lo, H2), kaiodsl.pack_half2(hi, hi, H2)


SIXTEENTH_F16X2 = 0x2C002C00       # f16 1/16 in both halves


@kaiodsl.func
def int4_q_halves(w, zs, MAGIC_BITS: Const[int], IS_F16: Const[bool], H2: Const):
    """The four half2s (pairs j = 0..3: nibbles j and j + 4 of the word, as int4_pair) of q - zero,
    exact small integers, for a scale applied after the products (``zs`` from int4_zero_halves).
    f16 takes the odd pairs' nibbles in place (mask 0x00F000F0: magic + 16 q) and one fma by 1/16
    (exact: magic / 16 + q minus magic / 16 + zero), so a word costs one shift, four lop3 and four
    packed sub/fma; bf16 (128's mantissa has no room for 16 q) shifts each pair down."""
    zlo, nzhi = zs
    if IS_F16:
        sixteenth = kaiodsl.bitcast(kaiodsl.u32(SIXTEENTH_F16X2), H2)
        w8 = w >> 8
        return [kaiodsl.bitcast(kaiodsl.lop3(w, 0x000F000F, MAGIC_BITS, "(a & b) | c"), H2) - zlo,
                kaiodsl.fma(kaiodsl.bitcast(kaiodsl.lop3(w, 0x00F000F0, MAGIC_BITS, "(a & b) | c"), H2),
                            sixteenth, nzhi),
                kaiodsl.bitcast(kaiodsl.lop3(w8, 0x000F000F, MAGIC_BITS, "(a & b) | c"), H2) - zlo,
                kaiodsl.fma(kaiodsl.bitcast(kaiodsl.lop3(w8, 0x00F000F0, MAGIC_BITS, "(a & b) | c"), H2),
                            sixteenth, nzhi)]
    return [kaiodsl.bitcast(kaiodsl.lop3(w >> (4 * j), 0x000F000F, MAGIC_BITS, "(a & b) | c"), H2) - zlo
            for j in range(4)]


# -- int8 (W8A16) ----------------------------------------------------------------------------------
# Signed bytes become unsigned u = q + 128 with one XOR of the word (q ^ 0x80 == q + 128 mod 256); a
# prmt drops two bytes under 1024.0's exponent (f16: 1024 + u exact) or four prmt under 2^23 (f32, for
# bf16: 8 bits do not fit a bf16 mantissa); one packed sub of 1024 + 128 (2^23 + 128) gives q exactly.
I8_F16_SUB = 0x64806480            # f16 1152.0 in both halves
I8_F32_MAGIC = 0x4B000000          # f32 2^23: its mantissa ulp is 1
I8_F32_SUB = 8388736.0             # 2^23 + 128


@kaiodsl.func
def int8_select(w0, w1, sel):
    """Bytes 2t, 2t+1 of ``w0`` and of ``w1`` (``sel`` = int8_selector(t)) in one word: the four
    int8 weights an m16n8k16 B fragment of lane t holds (k 2t, 2t+1 | 2t+8, 2t+9; PTX ISA 9.7.14.5.8)."""
    return kaiodsl.prmt(w0, w1, sel)


@kaiodsl.func
def int8_selector(t):
    """The prmt selector of int8_select for lane t of the quad: bytes {0,1,4,5} or {2,3,6,7}."""
    return kaiodsl.where(t % 2 == 1, kaiodsl.u32(0x7632), kaiodsl.u32(0x5410))


@kaiodsl.func
def int8_quad(r, s, GROUPED: Const[bool], IS_F16: Const[bool], H2: Const):
    """Four int8 weights in ``r`` (bytes 0-3) as two packed halves (bytes 0,1 | 2,3), exact integers,
    or, GROUPED, times the group scale ``s`` (f16: a half2 pair; bf16: an f32) rounded once."""
    x = r ^ kaiodsl.u32(0x80808080)
    if IS_F16:
        sub = kaiodsl.bitcast(kaiodsl.u32(I8_F16_SUB), H2)
        lo = kaiodsl.bitcast(kaiodsl.prmt(x, kaiodsl.u32(0x64646464), kaiodsl.u32(0x4140)), H2) - sub
        hi = kaiodsl.bitcast(kaiodsl.prmt(x, kaiodsl.u32(0x64646464), kaiodsl.u32(0x4342)), H2) - sub
        if GROUPED:
            return lo * s, hi * s
        return lo, hi
    f = [kaiodsl.bitcast(kaiodsl.prmt(x, kaiodsl.u32(I8_F32_MAGIC), kaiodsl.u32(0x7540 + b)), f32) - I8_F32_SUB
         for b in range(4)]
    if GROUPED:
        f = [v * s for v in f]
    return kaiodsl.pack_half2(f[0], f[1], H2), kaiodsl.pack_half2(f[2], f[3], H2)
