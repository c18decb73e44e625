"""PTX text -> Module of Kernels (flat instruction lists), using ptx_templates/ptx.lark.

The lark tree is turned into plain tuples in one LALR pass (inline transformer),
so the executor never walks lark objects. Parsed modules are cached by text hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from lark import Lark, Transformer, Token

from ..errors import SimError
from ..ptx_templates import resource

_GRAMMAR = resource("ptx.lark")


@dataclass
class Instr:
    """One PTX instruction. Operands are tuples:
    ('reg', name) ('not', name) ('pair', a, b) ('vec', [ops]) ('addr', base, offset)
    ('int', v) ('fbits', bits, width) ('float', v) ('sink',) ('name', s)
    where an address base is ('reg', name) | ('name', s) | ('int', v).
    """

    opcode: str
    operands: list
    guard: tuple | None  # (pred register, negated)
    line: int
    source: str | None = None  # the nearest preceding `// @` marker, without the `// @ `
    text: str = ""


@dataclass
class Var:
    name: str
    space: str  # shared | local | global | const
    size: int  # bytes; 0 for extern
    align: int
    extern: bool = False
    init: list | None = None


@dataclass
class Param:
    name: str
    type: str  # u64, f32, b8 ...
    size: int
    align: int


@dataclass
class Kernel:
    name: str
    params: list
    perf: dict
    regs: dict  # register name -> type string (without dot)
    vars: list  # Var in declaration order
    instrs: list
    labels: dict  # label -> instruction index


@dataclass
class Module:
    version: str = ""
    target: str = ""
    kernels: dict = field(default_factory=dict)
    globals: list = field(default_factory=list)
    lines: list = field(default_factory=list)


_TYPE_SIZE = {"b8": 1, "u8": 1, "s8": 1, "b16": 2, "u16": 2, "s16": 2, "f16": 2, "bf16": 2,
              "b32": 4, "u32": 4, "s32": 4, "f32": 4, "f16x2": 4, "bf16x2": 4,
              "b64": 8, "u64": 8, "s64": 8, "f64": 8, "pred": 1, "e4m3": 1, "e5m2": 1}


def _int(tok: str) -> int:
    t = tok.rstrip("U")
    return int(t, 16) if t[:2] in ("0x", "0X") else int(t)


def _dirs(items):
    """Split ptx_directive children into (align, type)."""
    align, typ = 0, None
    for d in items:
        if isinstance(d, tuple) and d[0] == "dir":
            if d[1] == ".align":
                align = d[2]
            elif d[1][1:] in _TYPE_SIZE:
                typ = d[1][1:]
    return align, typ


class _ToTuples(Transformer):
    """Inline LALR transformer: every rule becomes a tuple or a small dataclass."""

    def reg(self, c):
        return ("reg", str(c[0]))

    def notreg(self, c):
        return ("not", str(c[1]))

    def regpair(self, c):
        return ("pair", str(c[0]), str(c[1]))

    def vec(self, c):
        return ("vec", list(c))

    def addr(self, c):
        return c[0]

    def _base(self, t):
        if t.type == "REGISTER":
            return ("reg", str(t))
        if t.type == "NUMBER":
            return ("int", _int(t))
        return ("name", str(t))

    def tensor_addr(self, c):  # [tensorMap, {coords}] (PTX ISA 9.7.9.25.5.2)
        return ("taddr", self._base(c[0]), list(c[1:]))

    def addr_plain(self, c):
        return ("addr", self._base(c[0]), 0)

    def addr_pos(self, c):
        return ("addr", self._base(c[0]), _int(c[1]))

    def addr_neg(self, c):
        return ("addr", self._base(c[0]), -_int(c[-1]))

    def int_imm(self, c):
        return ("int", _int(c[0]))

    def neg_int_imm(self, c):
        return ("int", -_int(c[0]))

    def float_bits(self, c):
        t = str(c[0])
        return ("fbits", int(t[2:], 16), 32 if t[1] in "fF" else 64)

    def float_imm(self, c):
        return ("float", float(c[0]))

    def neg_float_imm(self, c):
        return ("float", -float(c[0]))

    def sink(self, c):
        return ("sink",)

    def name(self, c):
        return ("name", str(c[0]))

    def guard(self, c):
        return (str(c[-1]), len(c) == 2)

    def instr(self, c):
        guard = c[0] if isinstance(c[0], tuple) else None
        rest = c[1:] if guard is not None else c
        op = rest[0]
        ops = [o for o in rest[1:] if o is not None]
        return Instr(str(op), ops, guard, op.line)

    def label(self, c):
        return ("label", str(c[0])[:-1])

    def ptx_directive(self, c):
        return ("dir", str(c[0]), _int(c[1]) if len(c) > 1 else None)

    def range(self, c):
        return _int(c[0])

    def reg_name(self, c):
        return (str(c[0]), c[1] if len(c) > 1 else None)

    def reg_decl(self, c):
        align, typ = _dirs(c[1:])
        names = []
        for r in c[1:]:
            if isinstance(r, tuple) and r[0] != "dir":
                base, n = r
                names.extend([f"{base}{i}" for i in range(n)] if n is not None else [base])
        return ("regs", typ, names)

    def array_dim(self, c):
        return ("dim", _int(c[0]) if c and c[0] is not None else 0)

    def initializer(self, c):
        return ("init", [str(x) for x in c if x is not None])

    def space_decl(self, c):
        extern = any(isinstance(x, Token) and x.type == "EXTERN" for x in c)
        space = next(str(x)[1:] for x in c if isinstance(x, Token) and x.type == "SPACE")
        name = next(str(x) for x in c if isinstance(x, Token) and x.type == "NAME")
        align, typ = _dirs(c)
        size = _TYPE_SIZE.get(typ or "b8", 1)
        for x in c:
            if isinstance(x, tuple) and x[0] == "dim":
                size *= x[1]
        init = next((x[1] for x in c if isinstance(x, tuple) and x[0] == "init"), None)
        return Var(name, space, size, align or _TYPE_SIZE.get(typ or "b8", 1), extern, init)

    def global_decl(self, c):
        return next(x for x in c if isinstance(x, Var))

    def param(self, c):
        align, typ = _dirs(c[1:])
        name = next(str(x) for x in c[1:] if isinstance(x, Token) and x.type == "NAME")
        size = _TYPE_SIZE.get(typ or "b8", 1)
        for x in c:
            if isinstance(x, tuple) and x[0] == "dim":
                size *= x[1]
        return Param(name, typ or "b8", size, align or _TYPE_SIZE.get(typ or "b8", 1))

    def perf(self, c):
        return ("perf", str(c[0])[1:], tuple(_int(x) for x in c[1:]))

    def entry(self, c):
        name = next(str(x) for x in c if isinstance(x, Token) and x.type == "NAME")
        params, perf, regs, vars_, instrs, labels = [], {}, {}, [], [], {}
        marker = None
        for x in c:
            if isinstance(x, Param):
                params.append(x)
            elif isinstance(x, Var):
                vars_.append(x)
            elif isinstance(x, Instr):
                x.source = marker
                instrs.append(x)
            elif isinstance(x, Token) and x.type == "SRCMARK":
                marker = str(x)[4:].strip()
            elif isinstance(x, tuple):
                if x[0] == "perf":
                    perf[x[1]] = x[2]
                elif x[0] == "regs":
                    for r in x[2]:
                        regs[r] = x[1]
                elif x[0] == "label":
                    labels[x[1]] = len(instrs)
        return Kernel(name, params, perf, regs, vars_, instrs, labels)

    def version(self, c):
        return ("version", str(c[1]))

    def target(self, c):
        return ("target", str(c[1]))

    def address_size(self, c):
        return None

    def ignored(self, c):
        return None

    ignored_stmt = ignored

    def start(self, c):
        m = Module()
        for x in c:
            if isinstance(x, Kernel):
                m.kernels[x.name] = x
            elif isinstance(x, Var):
                m.globals.append(x)
            elif isinstance(x, tuple) and x[0] == "version":
                m.version = x[1]
            elif isinstance(x, tuple) and x[0] == "target":
                m.target = x[1]
        # module-scope .shared variables (e.g. the .extern dynamic window) belong to every kernel's block
        for v in [g for g in m.globals if g.space == "shared"]:
            for k in m.kernels.values():
                if all(kv.name != v.name for kv in k.vars):
                    k.vars.append(v)
        return m


_parser = None
_cache: dict = {}


def _get_parser() -> Lark:
    global _parser
    if _parser is None:
        _parser = Lark(_GRAMMAR.read_text(), parser="lalr", lexer="contextual",
                       transformer=_ToTuples(), maybe_placeholders=False)
    return _parser


def parse_ptx(text: str) -> Module:
    """Parse PTX text into a Module (cached by the text's hash)."""
    key = hashlib.sha1(text.encode()).hexdigest()
    mod = _cache.get(key)
    if mod is not None:
        return mod
    from lark.exceptions import UnexpectedInput

    try:
        mod = _get_parser().parse(text)
    except UnexpectedInput as e:
        line = text.splitlines()[e.line - 1] if 0 < e.line <= text.count("\n") + 1 else ""
        raise SimError(f"PTX parse error at line {e.line}, column {e.column}: {line.strip()}\n"
                       f"{str(e).splitlines()[0]}", ptx_line=e.line) from None
    lines = text.splitlines()
    mod.lines = lines
    for k in mod.kernels.values():
        for ins in k.instrs:
            ins.text = lines[ins.line - 1].strip() if ins.line <= len(lines) else ins.opcode
    if len(_cache) > 256:
        _cache.clear()
    _cache[key] = mod
    return mod
