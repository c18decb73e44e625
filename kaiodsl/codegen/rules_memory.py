"""Codegen rules for memory: pointer offsets, loads, stores (vector, masked, bool) and atomics."""

from __future__ import annotations

from ..types import ScalarType, bf16, f16, ptx_suffix
from .ptx import Ctx, mov_suffix, resolve
from .rules_common import U16, U32, bit_sfx, is_half

# -- memory -------------------------------------------------------------------------------------
def _mem_type(t) -> str:
    if isinstance(t, ScalarType) and t.is_int:
        return ptx_suffix(t)
    if t.name in ("f32", "f64"):
        return ptx_suffix(t)
    return bit_sfx(t) if t.bits > 8 else ".b8"


def r_ptradd(ctx: Ctx, n):
    """Pointer plus a byte offset (the frontend made the scaling explicit IR)."""
    p, off = n.operands
    ctx.emit(f"add.s{p.type.bits} {ctx.reg(n)}, {ctx.reg(p)}, {ctx.operand(off)};")


def _space(n) -> str:
    return "." + n.attrs.get("space", "global")


def _cache_load(n) -> str:
    c = n.attrs.get("cache", "")
    if c == "nc":
        return ".nc"
    return f".{c}" if c else ""


def _ld_bool(ctx: Ctx, n):
    """bool lives in memory as one byte (0/1) and in a predicate register: load the byte, test it."""
    p, d = n.operands[0], ctx.reg(n)
    w = ctx.new_reg(U16)
    guard = ""
    if len(n.operands) == 3:
        m, other = n.operands[1], n.operands[2]
        ctx.emit(f"@!{ctx.reg(m)} mov.pred {d}, {ctx.operand(other)};")
        guard = f"@{ctx.reg(m)} "
    ctx.emit(f"{guard}ld{_space(n)}{_cache_load(n)}.u8 {w}, [{ctx.reg(p)}];")
    ctx.emit(f"{guard}setp.ne.u16 {d}, {w}, 0;")


def _st_bool(ctx: Ctx, n, pred: str):
    p, v = n.operands[0], n.operands[1]
    if v.op == "const":
        src = "1" if v.attrs["value"] else "0"
    else:
        src = ctx.new_reg(U16)
        ctx.emit(f"selp.u16 {src}, 1, 0, {ctx.reg(v)};")
    c = n.attrs.get("cache", "")
    ctx.emit(f"{pred}st{_space(n)}{'.' + c if c else ''}.u8 [{ctx.reg(p)}], {src};")


def _words(ctx: Ctx, vec: int, elem) -> list | None:
    """b32 registers carrying a vector PTX has no form for (8 x 16-bit, 8 or 16 x 8-bit), else None.

    ld/st have .v2/.v4 only (PTX ISA 9.7.9.8): 16 bytes of halves move as ld.v4.b32 and unpack.
    """
    if vec <= 4:
        return None
    return [ctx.new_reg(U32) for _ in range(vec * elem.nbytes // 4)]


def _unpack(ctx: Ctx, words, regs, elem, guard: str) -> None:
    per = 4 // elem.nbytes
    for w, word in enumerate(words):
        part = regs[w * per:(w + 1) * per]
        if per == 2:  # PTX ISA 9.7.9.1 mov: a b32 splits into two b16 halves, low first
            ctx.emit(f"{guard}mov.b32 {{{part[0]}, {part[1]}}}, {word};")
            continue
        signed = "s" if elem.is_int and elem.is_signed else "u"
        for j, r in enumerate(part):  # bytes, extended into their 16-bit registers
            t = ctx.new_reg(U32)
            ctx.emit(f"{guard}bfe.{signed}32 {t}, {word}, {8 * j}, 8;")
            ctx.emit(f"{guard}cvt.u16.u32 {r}, {t};")


def _pack(ctx: Ctx, words, regs, elem) -> None:
    per = 4 // elem.nbytes
    for w, word in enumerate(words):
        part = regs[w * per:(w + 1) * per]
        if per == 2:
            ctx.emit(f"mov.b32 {word}, {{{part[0]}, {part[1]}}};")
            continue
        ctx.emit(f"cvt.u32.u16 {word}, {part[0]};")
        for j, r in enumerate(part[1:], 1):
            t = ctx.new_reg(U32)
            ctx.emit(f"cvt.u32.u16 {t}, {r};")
            ctx.emit(f"bfi.b32 {word}, {t}, {word}, {8 * j}, 8;")


def r_ld(ctx: Ctx, n):
    p = n.operands[0]
    elem = p.type.elem
    vec = n.attrs.get("vec", 1)
    if elem.is_bool and vec == 1:
        return _ld_bool(ctx, n)
    regs = resolve(ctx, n) if vec > 1 else ctx.reg(n)
    words = _words(ctx, vec, elem)
    dst = "{" + ", ".join(words or regs) + "}" if vec > 1 else regs
    mvec, mtype = (len(words), ".b32") if words else (vec, _mem_type(elem))
    instr = f"ld{_space(n)}{_cache_load(n)}{'.v%d' % mvec if mvec > 1 else ''}{mtype} {dst}, [{ctx.reg(p)}];"
    guard = ""
    if len(n.operands) == 3:  # masked load: the default where the mask is off
        m, other = n.operands[1], n.operands[2]
        o = ctx.operand(other, imm_ok=not is_half(elem))
        for r in (regs if vec > 1 else [regs]):
            ctx.emit(f"@!{ctx.reg(m)} mov{mov_suffix(elem)} {r}, {o};")
        guard = f"@{ctx.reg(m)} "
    ctx.emit(f"{guard}{instr}")
    if words:
        _unpack(ctx, words, regs, elem, guard)


def r_st(ctx: Ctx, n):
    p, v = n.operands[0], n.operands[1]
    elem = p.type.elem
    vec = n.attrs.get("vec", 1)
    words = _words(ctx, vec, elem)
    if words:
        _pack(ctx, words, resolve(ctx, v), elem)
        src = "{" + ", ".join(words) + "}"
    elif vec > 1:
        src = "{" + ", ".join(resolve(ctx, v)) + "}"
    else:
        src = ctx.operand(v, imm_ok=not is_half(elem))
    c = n.attrs.get("cache", "")
    pred = f"@{ctx.reg(n.operands[2])} " if len(n.operands) == 3 else ""
    if elem.is_bool and vec == 1:
        return _st_bool(ctx, n, pred)
    mvec, mtype = (len(words), ".b32") if words else (vec, _mem_type(elem))
    ctx.emit(f"{pred}st{_space(n)}{'.' + c if c else ''}{'.v%d' % mvec if mvec > 1 else ''}{mtype} "
             f"[{ctx.reg(p)}], {src};")


_ATOM_TYPE = {"add": None, "min": None, "max": None, "exch": "b", "cas": "b", "and": "b", "or": "b",
              "xor": "b", "inc": None, "dec": None}


def r_atom(ctx: Ctx, n):
    p = n.operands[0]
    op = n.attrs["op"]
    elem = n.operands[1].type
    if _ATOM_TYPE[op] == "b":
        sfx = bit_sfx(elem)
    elif elem.kind == "packed":
        sfx = ".noftz" + ptx_suffix(elem)
    elif elem == f16 or elem == bf16:
        sfx = ".noftz" + ptx_suffix(elem)
    else:
        sfx = ptx_suffix(elem)
    srcs = ", ".join(ctx.operand(o, imm_ok=(elem.is_int)) for o in n.operands[1:])
    sem = f".{n.attrs['sem']}" if n.attrs.get("sem") else ""
    scope = f".{n.attrs['scope']}" if n.attrs.get("scope") else ""
    if n in ctx.unused and op not in ("cas", "exch"):
        ctx.emit(f"red{sem}{scope}{_space(n)}.{op}{sfx} [{ctx.reg(p)}], {srcs};")
    else:
        ctx.emit(f"atom{sem}{scope}{_space(n)}.{op}{sfx} {ctx.reg(n)}, [{ctx.reg(p)}], {srcs};")
