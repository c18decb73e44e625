"""One small named rule per IR op. ``RULES[op](ctx, node)`` appends PTX lines to ``ctx``.

Float arithmetic carries explicit ``.rn`` so that ptxas never contracts a
mul/add pair into an fma behind the user's back (PTX ISA 9.7.3: instructions
with an explicit rounding modifier are not fused); ``kaiodsl.fma`` asks for one.
"""

from __future__ import annotations

from ..errors import CompileError
from ..types import PtrType, ScalarType, TensorMapType, TupleType, bf16, f16, f32, i16, i32, ptx_suffix
from .features import form
from .ptx import Ctx, mov_suffix, resolve
from .rules_common import U32, bit_sfx, int_sfx, is_half, normalize8, to_f32, via_f32
from .rules_memory import r_atom, r_ld, r_ptradd, r_st

_INT_OPS = {"add": "add", "sub": "sub", "mul": "mul.lo", "div": "div", "rem": "rem", "min": "min",
            "max": "max", "mulhi": "mul.hi", "mulwide": "mul.wide"}
_BIT_OPS = {"and": "and", "or": "or", "xor": "xor", "shl": "shl"}
_FLOAT_OPS = {"add": "add.rn", "sub": "sub.rn", "mul": "mul.rn", "div": "div.rn", "min": "min", "max": "max"}
_HALF_NATIVE = {"add": "add.rn", "sub": "sub.rn", "mul": "mul.rn"}  # f16 since sm_53
_CMP_FLOAT = {"lt": "lt", "le": "le", "gt": "gt", "ge": "ge", "eq": "eq", "ne": "neu"}


# -- values -------------------------------------------------------------------------------------
def r_param(ctx: Ctx, n):
    t, d = n.type, ctx.reg(n)
    pname = f"{ctx.fn.name}_param_{n.attrs['index']}"
    if isinstance(t, TensorMapType):  # its generic address: what cp.async.bulk.tensor takes (PTX ISA 9.7.9.25.5.1)
        raw = ctx.new_reg(t)
        ctx.emit(f"mov.u64 {raw}, {pname};")
        ctx.emit(f"cvta.param.u64 {d}, {raw};")
    elif isinstance(t, PtrType):
        raw = ctx.new_reg(t)
        ctx.emit(f"ld.param.u64 {raw}, [{pname}];")
        ctx.emit(f"cvta.to.global.u64 {d}, {raw};")
    elif t.is_bool:
        w = ctx.new_reg(ScalarType("u16", 16, "uint"))
        ctx.emit(f"ld.param.u8 {w}, [{pname}];")
        ctx.emit(f"setp.ne.u16 {d}, {w}, 0;")
    elif is_half(t) or t.kind == "packed":
        ctx.emit(f"ld.param{bit_sfx(t)} {d}, [{pname}];")
    else:
        ctx.emit(f"ld.param{ptx_suffix(t)} {d}, [{pname}];")


def r_special(ctx: Ctx, n):
    ctx.emit(f"mov.u32 {ctx.reg(n)}, %{n.attrs['reg']};")


def r_shared_base(ctx: Ctx, n):
    ctx.emit(f"mov.u32 {ctx.reg(n)}, {n.attrs['symbol']};")


def r_nothing(ctx: Ctx, n):
    pass


# -- arithmetic ---------------------------------------------------------------------------------
def r_binary(ctx: Ctx, n):
    op, t = n.op, n.operands[0].type
    d = ctx.reg(n)
    a = ctx.operand(n.operands[0], imm_ok=False)
    b = ctx.operand(n.operands[1])
    if t.is_bool:
        if op not in ("and", "or", "xor"):
            raise CompileError(f"'{op}' on bool values", n.loc)
        ctx.emit(f"{op}.pred {d}, {a}, {b};")
    elif t.is_int or isinstance(t, PtrType):
        if op in _BIT_OPS:
            ctx.emit(f"{_BIT_OPS[op]}{bit_sfx(t)} {d}, {a}, {b};")
        elif op == "shr":
            ctx.emit(f"shr{int_sfx(t)} {d}, {a}, {b};")
        else:
            ctx.emit(f"{_INT_OPS[op]}{int_sfx(t)} {d}, {a}, {b};")
        if op != "mulwide":
            normalize8(ctx, t, d)
    elif t.kind == "packed":
        name = {"add": "add.rn", "sub": "sub.rn", "mul": "mul.rn", "min": "min", "max": "max"}.get(op)
        if name is None:
            raise CompileError(f"'{op}' is not available on {t}", n.loc)
        b = ctx.operand(n.operands[1], imm_ok=False)
        if t.name == "bf16x2" and op in ("add", "sub", "mul") and ctx.arch_num() < 90:
            _packed_bf16_via_fma(ctx, op, d, a, b)
        else:
            ctx.emit(f"{name}{ptx_suffix(t)} {d}, {a}, {b};")
    elif is_half(t):
        b = ctx.operand(n.operands[1], imm_ok=False)
        if op in _HALF_NATIVE and (t == f16 or ctx.arch_num() >= 90):
            ctx.emit(f"{_HALF_NATIVE[op]}{ptx_suffix(t)} {d}, {a}, {b};")
        elif op in ("min", "max"):
            ctx.emit(f"{op}{ptx_suffix(t)} {d}, {a}, {b};")
        else:
            via_f32(ctx, n, lambda r, s: ctx.emit(f"{_FLOAT_OPS[op]}.f32 {r}, {s[0]}, {s[1]};"))
    else:
        if op not in _FLOAT_OPS:
            raise CompileError(f"'{op}' needs integer operands, got {t}", n.loc)
        name = _FLOAT_OPS[op]
        if op == "div" and n.attrs.get("approx"):
            name = "div.approx" if t == f32 else "div.rn"
        ctx.emit(f"{name}{ptx_suffix(t)} {d}, {a}, {b};")


def _packed_bf16_via_fma(ctx: Ctx, op, d, a, b):
    """bf16x2 add/sub/mul on sm_80 through fma.rn.bf16x2 (add/mul.bf16x2 need sm_90)."""
    c = ctx.new_reg(ScalarType("bf16x2", 32, "packed"))
    if op == "mul":
        ctx.emit(f"mov.b32 {c}, -2147450880;")  # 0x80008000: -0.0 in both halves keeps signed zeros
        ctx.emit(f"fma.rn.bf16x2 {d}, {a}, {b}, {c};")
        return
    one = 0x3F803F80 if op == "add" else 0xBF80BF80
    ctx.emit(f"mov.b32 {c}, {one};")
    ctx.emit(f"fma.rn.bf16x2 {d}, {b}, {c}, {a};")


def r_unary(ctx: Ctx, n):
    op, t = n.op, n.type
    d, a = ctx.reg(n), ctx.operand(n.operands[0], imm_ok=False)
    if t.is_bool:
        ctx.emit(f"not.pred {d}, {a};")
    elif op == "not":
        ctx.emit(f"not{bit_sfx(t)} {d}, {a};")
        normalize8(ctx, t, d)
    elif t.is_int and op == "abs" and not t.is_signed:
        ctx.emit(f"mov{bit_sfx(t)} {d}, {a};")  # abs of an unsigned value is itself (PTX has no abs.uN)
    elif t == i16:
        # ptxas keeps neg/abs.s16 of -32768 as +32768 in its 32-bit register (H200), so compares and
        # widening see 32768: compute in 32 bits and truncate back, which ptxas re-extends (PTX ISA 9.7.9.21)
        w = ctx.new_reg(i32)
        ctx.emit(f"cvt.s32.s16 {w}, {a};")
        ctx.emit(f"{op}.s32 {w}, {w};")
        ctx.emit(f"cvt.s16.s32 {d}, {w};")  # the form an i32 -> i16 cast emits
    elif t.is_int:
        # neg exists only for signed types (PTX ISA 9.7.1.9); two's complement gives unsigned the same bits
        ctx.emit(f"{op}.s{max(16, t.bits)} {d}, {a};")
        normalize8(ctx, t, d)
    else:
        ctx.emit(f"{op}{ptx_suffix(t)} {d}, {a};")


def r_bitcount(ctx: Ctx, n):
    """popc/clz/brev exist for .b32/.b64 only (PTX ISA 9.7.1.13-15): narrower values are widened."""
    src = n.operands[0]
    a, bits = ctx.operand(src, imm_ok=False), src.type.bits
    if bits >= 32:
        ctx.emit(f"{n.op}{bit_sfx(src.type)} {ctx.reg(n)}, {a};")
        return
    w = ctx.new_reg(U32)
    ctx.emit(f"cvt.u32.u{bits} {w}, {a};")  # only the value's own bits, zero-extended
    d = ctx.reg(n)
    if n.op == "popc":
        ctx.emit(f"popc.b32 {d}, {w};")
    elif n.op == "clz":
        ctx.emit(f"clz.b32 {d}, {w};")
        ctx.emit(f"sub.s32 {d}, {d}, {32 - bits};")
    else:
        ctx.emit(f"brev.b32 {w}, {w};")
        ctx.emit(f"shr.u32 {w}, {w}, {32 - bits};")
        ctx.emit(f"cvt.u{max(16, bits)}.u32 {d}, {w};")


def r_cmp(ctx: Ctx, n):
    x, y = n.operands
    t, pred, d = x.type, n.attrs["pred"], ctx.reg(n)
    if t.is_bool:
        a, b = ctx.reg(x), ctx.operand(y, imm_ok=False)
        if pred not in ("eq", "ne"):
            raise CompileError(f"ordering comparison '{pred}' on bool values", n.loc)
        ctx.emit(f"xor.pred {d}, {a}, {b};")
        if pred == "eq":
            ctx.emit(f"not.pred {d}, {d};")
        return
    if is_half(t):
        a, b = to_f32(ctx, x), to_f32(ctx, y)
        ctx.emit(f"setp.{_CMP_FLOAT[pred]}.f32 {d}, {a}, {b};")
        return
    a, b = ctx.operand(x, imm_ok=False), ctx.operand(y)
    if t.is_float:
        ctx.emit(f"setp.{_CMP_FLOAT[pred]}{ptx_suffix(t)} {d}, {a}, {b};")
    else:
        ctx.emit(f"setp.{pred}{int_sfx(t)} {d}, {a}, {b};")


def r_select(ctx: Ctx, n):
    c, x, y = n.operands
    d = ctx.reg(n)
    if n.type.is_bool:
        ctx.emit(f"@{ctx.reg(c)} mov.pred {d}, {ctx.operand(x, imm_ok=False)};")
        ctx.emit(f"@!{ctx.reg(c)} mov.pred {d}, {ctx.operand(y, imm_ok=False)};")
        return
    t = n.type
    suffix = "." + t.name if t.name in ("f32", "f64") else bit_sfx(t)
    ctx.emit(f"selp{suffix} {d}, {ctx.operand(x)}, {ctx.operand(y)}, {ctx.reg(c)};")


def r_fma(ctx: Ctx, n):
    a, b, c = (ctx.operand(o, imm_ok=(i > 0 and not is_half(o.type))) for i, o in enumerate(n.operands))
    t = n.type
    if t.is_int:
        ctx.emit(f"mad.lo{int_sfx(t)} {ctx.reg(n)}, {a}, {b}, {c};")
        normalize8(ctx, t, ctx.reg(n))
    else:
        ctx.emit(f"fma.rn{ptx_suffix(t)} {ctx.reg(n)}, {a}, {b}, {c};")


# -- conversions --------------------------------------------------------------------------------
_FLOAT_TO_INT = {None: "rzi", "rz": "rzi", "rn": "rni", "rm": "rmi", "rp": "rpi"}


def r_cast(ctx: Ctx, n):
    src_node = n.operands[0]
    s, t, mode = src_node.type, n.type, n.attrs.get("mode")
    d = ctx.reg(n)
    a = ctx.operand(src_node, imm_ok=False)
    if s.is_bool:
        if t.is_float:
            one, zero = {"f32": ("0f3F800000", "0f00000000"), "f64": ("0d3FF0000000000000", "0d0000000000000000"),
                         "f16": ("0x3C00", "0x0000"), "bf16": ("0x3F80", "0x0000")}[t.name]
            sfx = "." + t.name if t.name in ("f32", "f64") else ".b16"
            if sfx == ".b16":  # selp has no 16-bit float form: select the bits
                ctx.emit(f"selp.b16 {d}, {one}, {zero}, {a};")
            else:
                ctx.emit(f"selp{sfx} {d}, {one}, {zero}, {a};")
        else:
            ctx.emit(f"selp{bit_sfx(t)} {d}, 1, 0, {a};")
        return
    if t.is_bool:
        if is_half(s):
            a = to_f32(ctx, src_node)
            ctx.emit(f"setp.neu.f32 {d}, {a}, 0f00000000;")
        elif s.is_float:
            zero = "0f00000000" if s.name == "f32" else "0d0000000000000000"
            ctx.emit(f"setp.neu{ptx_suffix(s)} {d}, {a}, {zero};")
        else:
            ctx.emit(f"setp.ne{int_sfx(s)} {d}, {a}, 0;")
        return
    sat = ".sat" if mode == "sat" else ""
    if sat and s.is_int and t.is_int and t.int_range[0] <= s.int_range[0] and s.int_range[1] <= t.int_range[1]:
        sat = ""  # every source value fits: ptxas refuses a .sat that cannot clamp (cvt.sat.s32.s16)
    if s.is_int and t.is_int:
        if s.bits == t.bits and not sat:
            ctx.emit(f"mov{bit_sfx(t)} {d}, {a};")
            if s.kind != t.kind:
                normalize8(ctx, t, d)  # i8 <-> u8: re-extend the 16-bit register for the new signedness
        else:
            ctx.emit(f"cvt{sat}{ptx_suffix(t)}{ptx_suffix(s)} {d}, {a};")
        return
    if s.is_int and t.is_float:
        rnd = "." + (mode if mode in ("rn", "rz", "rm", "rp") else "rn")
        if t == bf16 and (ctx.arch_num() < 90 or s.bits == 8):  # no cvt.bf16.{s8,u8}, none before sm_90
            _bf16_through_f32(ctx, d, a, s, rnd)
        else:
            ctx.emit(f"cvt{rnd}{ptx_suffix(t)}{ptx_suffix(s)} {d}, {a};")
        return
    if s.is_float and t.is_int:
        if s == bf16:
            a, s = to_f32(ctx, src_node), f32
        ctx.emit(f"cvt.{_FLOAT_TO_INT.get(mode, 'rzi')}{ptx_suffix(t)}{ptx_suffix(s)} {d}, {a};")
        return
    if s.is_float and t.is_float:
        rnd = "." + (mode if mode in ("rn", "rz", "rm", "rp") else "rn")
        if s == t:  # a rounding mode changes nothing within one type (ptxas refuses cvt.rz.f32.f32)
            ctx.emit(f"mov{bit_sfx(t) if is_half(t) else mov_suffix(t)} {d}, {a};")
            return
        if s == bf16 or (s == f16 and t == bf16):
            w = to_f32(ctx, src_node)
            if t == f32:
                ctx.emit(f"mov.f32 {d}, {w};")
            elif t.bits == 64:
                ctx.emit(f"cvt.f64.f32 {d}, {w};")
            else:
                ctx.emit(f"cvt{rnd}{ptx_suffix(t)}.f32 {d}, {w};")
            return
        if t.bits > s.bits:
            ctx.emit(f"cvt{ptx_suffix(t)}{ptx_suffix(s)} {d}, {a};")
        elif t == bf16 and s.name == "f64" and ctx.arch_num() < 90:
            _bf16_through_f32(ctx, d, a, s, rnd)
        else:
            ctx.emit(f"cvt{rnd}{ptx_suffix(t)}{ptx_suffix(s)} {d}, {a};")
        return
    raise CompileError(f"no conversion from {s} to {t}", n.loc)


def _bf16_through_f32(ctx: Ctx, d: str, a: str, s, rnd: str) -> None:
    """A wide int or an f64 to bf16 where PTX has no direct cvt, rounding once.

    Directed modes compose (rz of rz is rz). Nearest-even does not (rounding to f32 first can
    make a tie), so the f32 step rounds to odd: truncate, and set the last bit if inexact
    (24 bits >= 8 + 2, so the bf16 rounding of the odd value is that of the exact one).
    """
    w = ctx.new_reg(f32)
    if rnd != ".rn" or (s.is_int and s.bits <= 16):  # <= 16-bit ints are exact in f32
        ctx.emit(f"cvt{rnd}.f32{ptx_suffix(s)} {w}, {a};")
        ctx.emit(f"cvt{rnd}.bf16.f32 {d}, {w};")
        return
    back, inexact, bits = ctx.new_reg(s), ctx.new_reg(ScalarType("bool", 1, "bool")), ctx.new_reg(U32)
    ctx.emit(f"cvt.rz.f32{ptx_suffix(s)} {w}, {a};")
    if s.is_int:
        ctx.emit(f"cvt.rzi{ptx_suffix(s)}.f32 {back}, {w};")  # exact: w is an integer no larger than a
        ctx.emit(f"setp.ne{ptx_suffix(s)} {inexact}, {back}, {a};")
    else:
        ctx.emit(f"cvt.f64.f32 {back}, {w};")
        ctx.emit(f"setp.neu.f64 {inexact}, {back}, {a};")  # NaN: stays NaN with the bit set
    ctx.emit(f"mov.b32 {bits}, {w};")
    ctx.emit(f"@{inexact} or.b32 {bits}, {bits}, 1;")
    ctx.emit(f"mov.b32 {w}, {bits};")
    ctx.emit(f"cvt.rn.bf16.f32 {d}, {w};")


def r_bitcast(ctx: Ctx, n):
    ctx.emit(f"mov{bit_sfx(n.type)} {ctx.reg(n)}, {ctx.operand(n.operands[0], imm_ok=False)};")
    if n.operands[0].type != n.type:
        normalize8(ctx, n.type, ctx.reg(n))


# -- math ---------------------------------------------------------------------------------------
_MATH = {"sqrt": "sqrt.rn", "rcp": "rcp.rn", "rsqrt": "rsqrt.approx", "ex2": "ex2.approx",
         "lg2": "lg2.approx", "sin": "sin.approx", "cos": "cos.approx", "tanh": "tanh.approx",
         "floor": "cvt.rmi", "ceil": "cvt.rpi", "trunc": "cvt.rzi", "rint": "cvt.rni"}
_APPROX = {"sqrt": "sqrt.approx", "rcp": "rcp.approx"}


def r_math(ctx: Ctx, n):
    t = n.type
    name = _APPROX.get(n.op, _MATH[n.op]) if n.attrs.get("approx") else _MATH[n.op]
    if t.name == "f64" and name in ("sqrt.approx", "rcp.approx"):
        name = name.replace("approx", "rn")
    if t.name == "f64" and name == "rcp.approx":
        name = "rcp.approx.ftz"
    sfx = ptx_suffix(t)
    if name.startswith("cvt.") and t == bf16 and ctx.arch_num() < 90:
        # cvt.rmi.bf16.bf16 needs sm_90: round in f32; the integral result converts back exactly
        w = ctx.new_reg(f32)
        ctx.emit(f"{name}.f32.f32 {w}, {to_f32(ctx, n.operands[0])};")
        ctx.emit(f"cvt.rn.bf16.f32 {ctx.reg(n)}, {w};")
        return
    if name.startswith("cvt."):
        sfx = sfx + sfx
    if n.attrs.get("ftz"):
        name = name + ".ftz"
    ctx.emit(f"{name}{sfx} {ctx.reg(n)}, {ctx.operand(n.operands[0], imm_ok=False)};")


# -- sync and warp ------------------------------------------------------------------------------
def r_barrier(ctx: Ctx, n):
    args = ", ".join(ctx.operand(o) for o in n.operands) if n.operands else "0"
    ctx.emit(f"bar.sync {args};")


def r_barrier_arrive(ctx: Ctx, n):
    ctx.emit(f"bar.arrive {', '.join(ctx.operand(o) for o in n.operands)};")


def r_syncwarp(ctx: Ctx, n):
    ctx.emit(f"bar.warp.sync {ctx.operand(n.operands[0])};")


_FENCE = {"cta": "membar.cta", "gpu": "membar.gl", "sys": "membar.sys"}


def r_fence(ctx: Ctx, n):
    ctx.emit(f"{_FENCE[n.attrs.get('scope', 'gpu')]};")


def r_shfl(ctx: Ctx, n):
    v, lane, clamp, mask = n.operands
    ctx.emit(f"shfl.sync.{n.attrs['mode']}.b32 {ctx.reg(n)}, {ctx.reg(v)}, {ctx.operand(lane)}, "
             f"{ctx.operand(clamp)}, {ctx.operand(mask)};")


def r_vote(ctx: Ctx, n):
    p, mask = n.operands
    mode = n.attrs["mode"]
    sfx = ".b32" if mode == "ballot" else ".pred"
    ctx.emit(f"vote.sync.{mode}{sfx} {ctx.reg(n)}, {ctx.reg(p)}, {ctx.operand(mask)};")


def r_activemask(ctx: Ctx, n):
    ctx.emit(f"activemask.b32 {ctx.reg(n)};")


# -- templated instructions and inline PTX ------------------------------------------------------
def _render(ctx: Ctx, n, template: str) -> str:
    def regs(x):
        r = resolve(ctx, x)
        return "{" + ", ".join(r) + "}" if isinstance(r, list) else r

    fields = {str(i): (regs(o) if o.op != "const" or isinstance(o.type, TupleType) else ctx.operand(o))
              for i, o in enumerate(n.operands)}
    if n.type is not None and str(n.type) != "void":
        out = resolve(ctx, n)
        fields["out"] = "{" + ", ".join(out) + "}" if isinstance(out, list) else out
        if isinstance(out, list):
            for i, r in enumerate(out):
                fields[f"out{i}"] = r
    for k, v in n.attrs.items():
        fields.setdefault(k, v)
    positional = [fields.pop(str(i)) for i in range(len(n.operands))]  # {0} {1} ... are positional
    try:
        return template.format(*positional, **fields)
    except (KeyError, IndexError) as e:
        raise CompileError(f"PTX template {template!r} names {e}, which this call does not provide", n.loc)


def r_inst(ctx: Ctx, n):
    f = form(n.attrs["form"])
    if f.tie is not None and f.tie < len(n.operands):  # in-place result: copy in unless registers are shared
        src, dst = resolve(ctx, n.operands[f.tie]), resolve(ctx, n)
        if src != dst:
            for d, s_, t in zip(dst, src, n.type.elems):
                ctx.emit(f"mov{mov_suffix(t)} {d}, {s_};")
            if f.after_copy:  # e.g. wgmma.fence between register writes and wgmma (PTX ISA 9.7.15.6)
                ctx.emit(form(f.after_copy).template)
    ctx.emit(_render(ctx, n, f.template))


def r_asm(ctx: Ctx, n):
    for line in _render(ctx, n, n.attrs["template"]).splitlines():
        ctx.emit(line.strip())


# -- terminators --------------------------------------------------------------------------------
def emit_branch_copies(ctx: Ctx, n, next_block) -> None:
    if n.op == "ret":
        ctx.emit("ret;")
        return
    if n.op == "cbr":
        c = ctx.reg(n.operands[0])
        t, f = n.attrs["true"], n.attrs["false"]
        if t is next_block:
            ctx.emit(f"@!{c} bra ${f.name};")
        else:
            ctx.emit(f"@{c} bra ${t.name};")
            if f is not next_block:
                ctx.emit(f"bra.uni ${f.name};")
        return
    target = n.attrs["target"]
    copies = []
    for arg, val in zip(target.args, n.operands):
        dst = resolve(ctx, arg)
        if isinstance(arg.type, TupleType):
            src = resolve(ctx, val)
            copies += list(zip(dst, src, arg.type.elems))
        else:
            copies.append((dst, ctx.operand(val), arg.type))
    _parallel_copy(ctx, copies)
    if target is not next_block:
        ctx.emit(f"bra.uni ${target.name};")


def _parallel_copy(ctx: Ctx, copies) -> None:
    """Emit moves for simultaneous assignments dst_i <- src_i, breaking cycles with a temporary."""
    pending = [(d, s, t) for d, s, t in copies if d != s]
    while pending:
        sources = {s for _, s, _ in pending}
        ready = [c for c in pending if c[0] not in sources]
        if ready:
            d, s, t = ready[0]
            ctx.emit(f"mov{mov_suffix(t)} {d}, {s};")
            pending.remove(ready[0])
            continue
        d, s, t = pending[0]
        tmp = ctx.new_reg(t)
        ctx.emit(f"mov{mov_suffix(t)} {tmp}, {d};")
        pending = [(dd, tmp if ss == d else ss, tt) for dd, ss, tt in pending]


RULES = {
    "param": r_param, "special": r_special, "shared_base": r_shared_base, "blockarg": r_nothing,
    "tuple": r_nothing, "extract": r_nothing,
    **{op: r_binary for op in ("add", "sub", "mul", "div", "rem", "min", "max", "and", "or", "xor", "shl",
                                "shr", "mulhi", "mulwide")},
    "neg": r_unary, "not": r_unary, "abs": r_unary, "popc": r_bitcount, "clz": r_bitcount, "brev": r_bitcount,
    "cmp": r_cmp, "select": r_select, "fma": r_fma, "cast": r_cast, "bitcast": r_bitcast,
    **{op: r_math for op in _MATH},
    "ptradd": r_ptradd, "ld": r_ld, "st": r_st, "atom": r_atom,
    "barrier": r_barrier, "barrier_arrive": r_barrier_arrive, "syncwarp": r_syncwarp, "fence": r_fence,
    "shfl": r_shfl, "vote": r_vote, "activemask": r_activemask,
    "inst": r_inst, "inst_pure": r_inst, "inst_read": r_inst, "asm": r_asm,
}
