"""Small helpers every codegen rule module shares: suffixes, 8-bit extension, f16/bf16 widening."""

from __future__ import annotations

from ..types import ScalarType, f16, f32, ptx_suffix
from .ptx import Ctx

U16 = ScalarType("u16", 16, "uint")
U32 = ScalarType("u32", 32, "uint")


def bit_sfx(t) -> str:
    return f".b{max(16, t.bits)}"


def is_half(t) -> bool:
    return isinstance(t, ScalarType) and t.name in ("f16", "bf16")


def int_sfx(t) -> str:
    """Integer suffix, with 8-bit types computed in their 16-bit registers."""
    if t.bits == 8:
        return ".s16" if t.is_signed else ".u16"
    return ptx_suffix(t)


def normalize8(ctx: Ctx, t, d: str) -> None:
    """Keep an 8-bit value sign/zero-extended in its 16-bit register after 16-bit math."""
    if isinstance(t, ScalarType) and t.is_int and t.bits == 8:
        ctx.emit(f"cvt.{'s16.s8' if t.is_signed else 'u16.u8'} {d}, {d};")


def via_f32(ctx: Ctx, n, body) -> None:
    """Half-precision op computed in f32 and rounded once: exact for + - * / sqrt (p32 >= 2*p16 + 2)."""
    srcs = [to_f32(ctx, o) for o in n.operands]
    t = ctx.new_reg(f32)
    body(t, srcs)
    ctx.emit(f"cvt.rn{ptx_suffix(n.type)}.f32 {ctx.reg(n)}, {t};")


def to_f32(ctx: Ctx, o) -> str:
    """An f16/bf16 operand widened to an f32 register (exact)."""
    src = ctx.operand(o, imm_ok=False)
    r = ctx.new_reg(f32)
    if o.type == f16:
        ctx.emit(f"cvt.f32.f16 {r}, {src};")
    elif ctx.arch_num() >= 90:
        ctx.emit(f"cvt.f32.bf16 {r}, {src};")
    else:  # sm_80 has no cvt.f32.bf16: a bf16 is the upper half of the f32
        w = ctx.new_reg(ScalarType("u32", 32, "uint"))
        ctx.emit(f"cvt.u32.u16 {w}, {src};")
        ctx.emit(f"shl.b32 {w}, {w}, 16;")
        ctx.emit(f"mov.b32 {r}, {w};")
    return r
