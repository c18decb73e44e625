"""IR -> PTX text: register assignment, block layout, one rule per op (codegen/rules.py).

The context is an explicit dataclass handed to each rule; nothing is hidden in
renderer state. Each group of lines generated from one Python line is preceded
by a ``// @ file:line  source`` comment (docs/internals.md).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .. import __version__
from ..arch import Arch
from ..errors import CompileError
from ..ir.node import Function, Node
from ..types import PtrType, ScalarType, TensorMapType, TupleType, bf16, bf16_bits, f16, reg_class
from .features import ptx_version_for

@dataclass
class Ctx:
    """Everything a rule needs: registers, the arch, the output lines, scratch registers."""

    fn: Function
    arch: str
    regs: dict = field(default_factory=dict)       # node -> register name (or list for tuples)
    counters: dict = field(default_factory=dict)   # register prefix -> count
    lines: list = field(default_factory=list)
    unused: set = field(default_factory=set)        # nodes whose value nobody reads

    def arch_num(self) -> int:
        return Arch.parse(self.arch).sm

    def new_reg(self, t) -> str:
        _, prefix = reg_class(t)
        n = self.counters.get(prefix, 0) + 1
        self.counters[prefix] = n
        return f"{prefix}{n}"

    def reg(self, n: Node):
        r = self.regs.get(n)
        if r is None:
            if n.op == "extract":  # an alias of one register of its tuple
                return resolve(self, n)
            if n.op == "const":  # needed in a register where an immediate was not expected
                return self.const_in_reg(n)
            raise CompileError(f"internal: %{n.id} ({n.op}) has no register", n.loc)
        return r

    def const_in_reg(self, n: Node) -> str:
        """A fresh register holding a constant, written just before the instruction that reads it.

        Never cached: a register shared between uses could be written on one path and read on
        another (the use that materialised it need not dominate the others); ptxas folds the copies.
        """
        r = self.new_reg(n.type)
        self.emit(f"mov{mov_suffix(n.type)} {r}, {immediate(n)};")
        return r

    def operand(self, n: Node, imm_ok: bool = True) -> str:
        """A register, or the immediate text of a constant where the position allows it."""
        if n.op == "const" and imm_ok and n.type.name not in ("f16", "bf16"):
            return immediate(n)
        return self.reg(n)

    def emit(self, line: str) -> None:
        self.lines.append("\t" + line)


def mov_suffix(t) -> str:
    if isinstance(t, PtrType):
        return f".u{t.bits}"
    if t.is_bool:
        return ".pred"
    if t.name in ("f32", "f64"):
        return "." + t.name
    return f".b{max(16, t.bits)}"


def immediate(n: Node) -> str:
    """PTX text of a constant: decimal ints, 0fXXXXXXXX / 0dXXXXXXXXXXXXXXXX floats, 0xXXXX halves."""
    t, v = n.type, n.attrs["value"]
    if t.is_bool:
        return "1" if v else "0"
    if t.is_int or isinstance(t, PtrType):
        return str(int(v))
    if t.name == "f32":
        return "0f%08X" % struct.unpack("<I", struct.pack("<f", v))[0]
    if t.name == "f64":
        return "0d%016X" % struct.unpack("<Q", struct.pack("<d", v))[0]
    if t == f16:
        import numpy as np
        return "0x%04X" % int(np.array(v, np.float16).view(np.uint16))
    if t == bf16:
        return "0x%04X" % int(bf16_bits(v))
    raise CompileError(f"internal: no immediate form for {t}", n.loc)


def _assign_registers(ctx: Ctx) -> None:
    fn = ctx.fn
    uses_by: dict = {}
    for n in fn.nodes():
        for i, o in enumerate(n.operands):
            uses_by.setdefault(o, []).append((n, i))
    ctx.unused = {n for n in fn.nodes() if n not in uses_by}
    for n in fn.nodes():
        t = n.type
        if n.op == "const":
            continue  # decided at each use: an immediate, or a fresh register (Ctx.const_in_reg)
        if n.op == "extract":
            continue  # aliases an element of its tuple, assigned on demand below
        if isinstance(t, TupleType):
            ctx.regs[n] = [ctx.new_reg(e) for e in t.elems] if n.op != "tuple" else None
        elif isinstance(t, (ScalarType, PtrType, TensorMapType)):
            ctx.regs[n] = ctx.new_reg(t)
    _tie_registers(ctx, uses_by)


def _tie_registers(ctx: Ctx, uses_by: dict) -> None:
    """A form with ``tie:i`` (wgmma accumulates in place) gets operand i's registers when that value
    is dead after it; otherwise the rule copies (codegen/rules.py r_inst)."""
    from .features import form

    where = {}
    for b in ctx.fn.blocks:
        for i, x in enumerate([*b.args, *b.body, b.term]):
            where[x] = (b, i)
    for n in ctx.fn.nodes():
        if n.op not in ("inst", "inst_pure", "inst_read"):
            continue
        k = form(n.attrs["form"]).tie
        if k is None or k >= len(n.operands):
            continue
        src = n.operands[k]
        if isinstance(ctx.regs.get(src), list) and _dead_after(src, n, uses_by, where):
            ctx.regs[n] = ctx.regs[src]
        elif _tuple_of_dead_registers(ctx, src, n, uses_by, where):
            ctx.regs[n] = [ctx.regs[o] for o in src.operands]


def _tuple_of_dead_registers(ctx: Ctx, src: Node, n: Node, uses_by: dict, where: dict) -> bool:
    """A tuple built element-wise (a rescaled wgmma accumulator, loop-carried scalars) whose elements
    are distinct registers of the result's types, each read by nothing but this tuple and n and dead
    after n: n may accumulate into them. Without this, the copies land right before the wgmma, inside
    another wgmma's pipeline stage when one is in flight (ptxas then serialises every wgmma: C7513)."""
    if src.op != "tuple" or src not in where or n in {u for o in src.operands for u, _ in uses_by.get(o, [])}:
        return False
    regs = [ctx.regs.get(o) for o in src.operands]
    if not all(isinstance(r, str) for r in regs) or len(set(regs)) != len(regs):
        return False
    if any(o.op in ("const", "extract", "tuple") or o.type != t for o, t in zip(src.operands, n.type.elems)):
        return False
    return _dead_after(src, n, uses_by, where) and \
        all(_dead_after(o, n, uses_by, where, also=src) for o in src.operands)


def _dead_after(v: Node, n: Node, uses_by: dict, where: dict, also: Node | None = None) -> bool:
    """True when no use of ``v`` is reachable from just after ``n`` without passing v's definition
    (``also``: a user that does not count, the tuple that hands v to n)."""
    users = {u for u, _ in uses_by.get(v, [])} - {n, also}
    blk, pos = where[n]
    if any(where[u][0] is blk and where[u][1] > pos for u in users):
        return False
    user_blocks = {where[u][0] for u in users}
    def_block = where[v][0] if v in where else None
    seen, todo = set(), list(blk.successors())
    while todo:
        s = todo.pop()
        if s in seen or s is def_block:
            continue
        seen.add(s)
        if s in user_blocks:
            return False
        todo += s.successors()
    return True


def _tuple_regs(ctx: Ctx, n: Node) -> list:
    if n.op == "tuple":
        return [ctx.operand(o, imm_ok=False) for o in n.operands]
    return ctx.regs[n]


def resolve(ctx: Ctx, n: Node):
    """Register(s) of a node, materializing tuple/extract aliases."""
    if n.op == "extract":
        return resolve(ctx, n.operands[0])[n.attrs["index"]]
    if isinstance(n.type, TupleType):
        return _tuple_regs(ctx, n)
    return ctx.operand(n, imm_ok=False)


def emit_module(fn: Function, arch: str, line_info: bool = False) -> str:
    from .rules import RULES, emit_branch_copies

    ctx = Ctx(fn, arch)
    _assign_registers(ctx)
    body_start = len(ctx.lines)
    last_line = None
    files: dict = {}
    layout = fn.blocks
    for bi, blk in enumerate(layout):
        if bi > 0:
            ctx.lines.append(f"${blk.name}:")
        nxt = layout[bi + 1] if bi + 1 < len(layout) else None
        for n in [*blk.body, blk.term]:
            if n.loc is not None and (n.loc.file, n.loc.line) != last_line and n.op not in ("const",):
                last_line = (n.loc.file, n.loc.line)
                ctx.lines.append(f"\t// @ {n.loc.file}:{n.loc.line}  {n.loc.text.strip()}")
                if line_info:
                    fid = files.setdefault(n.loc.file, len(files) + 1)
                    ctx.emit(f".loc {fid} {n.loc.line} {n.loc.col + 1}")
            if n.op == "const":
                continue
            if n.op in ("br", "cbr", "ret"):
                emit_branch_copies(ctx, n, nxt)
                continue
            rule = RULES.get(n.op)
            if rule is None:
                raise CompileError(f"internal: no PTX rule for IR op '{n.op}'", n.loc)
            rule(ctx, n)
    body = ctx.lines[body_start:]
    return _module_text(ctx, body, files)


def _module_text(ctx: Ctx, body: list, files: dict) -> str:
    fn = ctx.fn
    version = ptx_version_for(ctx.arch, fn.features)
    out = ["//", f"// Generated by kaiodsl {__version__}" + (f" from {fn.source_file}" if fn.source_file else ""),
           "//", f".version {version}", f".target {ctx.arch}", ".address_size 64", ""]
    for path, fid in files.items():
        out.append(f'.file {fid} "{path}"')
    params = []
    for p in fn.params:
        t = p.type
        pname = f"{fn.name}_param_{p.attrs['index']}"
        if isinstance(t, TensorMapType):  # by value, grid-constant (PTX ISA 5.1.6.3 kernel parameters)
            params.append(f"\t.param .align {t.align} .b8 {pname}[{t.size}]")
            continue
        ptype = ".u64" if isinstance(t, PtrType) else _param_type(t)
        params.append(f"\t.param {ptype} {pname}")
    comments = [f"  // {p.attrs['name']}: {p.type}" for p in fn.params]
    for d in fn.shared:  # the dynamic window is a module-scope declaration
        if d.size is None:
            out.append(f".extern .shared .align {d.align} .b8 {d.name}[];\n")
    out.append(f".visible .entry {fn.name}(")
    out.append(",\n".join(pl + ("" if i == len(params) - 1 else "") for i, pl in enumerate(params))
               if params else "")
    if params:
        # attach the parameter names as comments, keeping the commas right
        out[-1] = "\n".join(f"{pl}{',' if i < len(params) - 1 else ''}{c}"
                            for i, (pl, c) in enumerate(zip(params, comments)))
    out.append(")")
    if fn.required_block:
        out.append(".reqntid " + ", ".join(str(x) for x in fn.required_block))
        threads = fn.required_block[0] * fn.required_block[1] * fn.required_block[2]
        if any(n.op == "inst" and n.attrs.get("pin_entry") for n in fn.nodes()):
            # setmaxnreg(..., pin_entry=True): setmaxnreg moves registers between warpgroups of a budget
            # fixed at entry; without one ptxas ignores it when the kernel's own count is lower (C7508)
            out.append(f".maxnreg {min(255, 65536 // threads // 8 * 8)}")
    out.append("{")
    decls = {}
    for prefix_type in _DECL_ORDER:
        decl_type, prefix = prefix_type
        n = ctx.counters.get(prefix, 0)
        if n:
            decls[prefix] = f"\t.reg {decl_type} {prefix}<{n + 1}>;"
    out += list(decls.values())
    for d in fn.shared:
        if d.size is not None:
            out.append(f"\t.shared .align {d.align} .b8 {d.name}[{d.size}];")
    out.append("")
    out += body
    out.append("}")
    return "\n".join(out) + "\n"


_DECL_ORDER = [(".pred", "%p"), (".b16", "%rs"), (".b16", "%h"), (".b32", "%r"), (".b32", "%hh"),
               (".b64", "%rd"), (".f32", "%f"), (".f64", "%fd")]


def _param_type(t: ScalarType) -> str:
    if t.is_bool:
        return ".u8"
    if t.is_float and t.bits == 16:
        return ".b16"
    if t.kind == "packed":
        return ".b32"
    from ..types import ptx_suffix
    return ptx_suffix(t)
