"""Typed IR construction: promotion, implicit conversion of Python constants, op helpers.

The visitor and every builtin build IR through a ``Builder``; it is the one
place that knows the language's typing rules (docs/language.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..arch import Arch, at_least
from ..errors import CompileError
from ..ir.node import Block, Function, Node, SharedDecl, SourceLoc
from ..types import (ScalarType, TupleType, Type, bool_, f32, f64, i32, i64, nan_to_int, promote,
                     u32, u64, void)
from .describe import describe

PyConst = (bool, int, float)
# How users write each binary op, for messages.
SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "truediv": "/", "floordiv": "//", "mod": "%", "shl": "<<",
           "shr": ">>", "and": "&", "or": "|", "xor": "^", "pow": "**", "matmul": "@", "min": "min()",
           "max": "max()"}
# Largest finite value of each narrow float type, and the value past which round-to-nearest gives inf
# (max + half an ulp, a tie that rounds to even = inf): (threshold, shown max).
_FLOAT_MAX = {"f16": (65520.0, "65504"), "bf16": (3.3961775292304e38, "3.3895e38"),
              "f32": (3.4028235677973366e38, "3.4028235e38")}


def is_const(v) -> bool:
    """A Python constant (weakly typed) or a ``const`` node."""
    return isinstance(v, PyConst) or (isinstance(v, Node) and v.op == "const")


def const_value(v):
    return v.attrs["value"] if isinstance(v, Node) else v


def default_type(v) -> ScalarType:
    """The type a weak Python constant takes when nothing else decides it."""
    if isinstance(v, bool):
        return bool_
    if isinstance(v, int):
        return i32 if -(2**31) <= v < 2**31 else i64
    return f32


def _fits(t: ScalarType, v) -> bool:
    if t.is_bool:
        return isinstance(v, (bool, int)) and v in (0, 1)
    if t.is_int:
        if not isinstance(v, (bool, int)):
            return False
        lo, hi = t.int_range
        return lo <= v <= hi
    return isinstance(v, (bool, int, float))


@dataclass
class Builder:
    """Appends nodes to the current block; ``block is None`` means the code is unreachable."""

    fn: Function
    arch: str
    block: Block | None = None
    loc: SourceLoc | None = None
    _labels: int = 0
    shared_names: set = field(default_factory=set)

    # -- blocks -------------------------------------------------------------------------
    def new_block(self, hint: str) -> Block:
        self._labels += 1
        b = Block(f"{hint}{self._labels}")
        self.fn.blocks.append(b)
        return b

    def emit(self, op: str, type: Type = void, operands=(), attrs=None, loc=None) -> Node:
        if self.block is None:
            raise CompileError("internal: emitting into unreachable code", loc or self.loc)
        if op in ("inst", "inst_pure", "inst_read"):
            op = self._check_form(attrs["form"])  # the form's effects decide the op
        n = Node(op, type, operands, attrs, loc or self.loc)
        n.block = self.block
        self.block.body.append(n)
        return n

    def terminate(self, op: str, operands=(), attrs=None) -> None:
        if self.block is not None:
            n = Node(op, void, operands, attrs, self.loc)
            n.block = self.block
            self.block.term = n
        self.block = None

    def br(self, target: Block, args=()) -> None:
        self.terminate("br", args, {"target": target})

    def cbr(self, cond: Node, t: Block, f: Block) -> None:
        self.terminate("cbr", (cond,), {"true": t, "false": f})

    def _check_form(self, name: str) -> str:
        """An instruction form from ptx_templates: gate it on its arch predicate, record it for .version."""
        from ..codegen.features import form

        f = form(name)
        if not f.allows(self.arch):
            self.error(f"{f.mnemonic} {f.arch.describe()}; this kernel is compiled for {self.arch}")
        self.fn.features.add(name)
        return f.op

    def arch_num(self) -> int:
        return Arch.parse(self.arch).sm

    def require_arch(self, sm: int, what: str) -> None:
        if not at_least(self.arch, sm):
            self.error(f"{what} needs sm_{sm} or newer; this kernel is compiled for {self.arch}")

    def error(self, msg: str, loc: SourceLoc | None = None):
        raise CompileError(msg, loc or self.loc)

    # -- values -------------------------------------------------------------------------
    def const(self, t: ScalarType, v) -> Node:
        if not isinstance(v, PyConst):
            self.error(f"{describe(v)} cannot be used as a {t} value")
        if not _fits(t, v):
            self.error(f"constant {v!r} does not fit in {t}")
        if t.is_bool:
            v = bool(v)
        elif t.is_int:
            v = int(v)
        else:
            v = float(v)
        return self.emit("const", t, (), {"value": v})

    def coerce(self, v, t: Type, what: str = "value") -> Node:
        """Convert a weak Python constant to ``t``; typed values must already have type ``t``."""
        if isinstance(v, Node):
            if v.type != t:
                self.error(f"{what} has type {v.type}, expected {t}; cast it explicitly "
                           f"(e.g. kaiodsl.{t}(x))" if isinstance(t, ScalarType) else
                           f"{what} has type {v.type}, expected {t}")
            return v
        if isinstance(v, PyConst) and isinstance(t, ScalarType):
            if t.is_int and isinstance(v, float):
                self.error(f"{what} {v!r} is a float where {t} is expected; cast it explicitly")
            if t.kind == "packed":
                self.error(f"{what} {v!r} cannot become {t}; build it with kaiodsl.pack_half2")
            return self.weak_const(t, v, what)
        self.error(f"{what} {describe(v)} cannot be used as {t}")

    def value(self, v) -> Node:
        """Materialize a weak constant with its default type."""
        if isinstance(v, Node):
            return v
        if isinstance(v, PyConst):
            return self.const(default_type(v), v)
        self.error(f"{describe(v)} is not a runtime value")

    def unify(self, a, b, what: str) -> tuple[Node, Node]:
        """Bring two operands to a common type (docs/language.md, 'Promotion')."""
        an, bn = isinstance(a, Node), isinstance(b, Node)
        if not an and not bn:
            t = default_type(a) if isinstance(a, float) or not isinstance(b, float) else default_type(b)
            if isinstance(a, float) or isinstance(b, float):
                t = f32
            return self.coerce(a, t), self.coerce(b, t)
        if an and not bn:
            a = self._int_to_float_for(a, b)
            return a, self._weak_to(b, a.type, what)
        if bn and not an:
            b = self._int_to_float_for(b, a)
            return self._weak_to(a, b.type, what), b
        if not isinstance(a.type, ScalarType) or not isinstance(b.type, ScalarType):
            self.error(f"{what}: operands {a.type} and {b.type} do not combine")
        t = promote(a.type, b.type)
        if t is None:
            self.error(f"{what}: {a.type} and {b.type} do not mix implicitly; cast one side "
                       f"(e.g. kaiodsl.{a.type}(y))")
        return self.convert(a, t), self.convert(b, t)

    def _weak_to(self, v, t: Type, what: str) -> Node:
        if not isinstance(t, ScalarType):
            self.error(f"{what}: {describe(v)} does not combine with {t}")
        if t.kind == "packed":
            self.error(f"{what}: a Python number does not combine with {t}")
        return self.weak_const(t, v, what)

    def weak_const(self, t: ScalarType, v, what: str) -> Node:
        """A Python number taking the type of the value it meets: it must be representable there
        (a finite literal that would round to inf in f16 is a mistake, not an infinity)."""
        if t.is_float and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            big = _FLOAT_MAX.get(t.name)
            if big is not None and abs(v) >= big[0]:
                self.error(f"the constant {v!r} is out of range for {t} (largest finite {t} is {big[1]}), so "
                           f"{what} would compute with inf; scale the values, or compute in f32 with "
                           f"kaiodsl.f32(x) (or write float('inf') if infinity is meant)")
        return self.const(t, v)

    def _int_to_float_for(self, n: Node, weak) -> Node:
        """An int value meeting a Python float becomes f32 (f64 for 64-bit ints), as in Python."""
        if isinstance(weak, float) and isinstance(n.type, ScalarType) and n.type.is_int:
            return self.convert(n, f64 if n.type.bits == 64 else f32)
        return n

    # -- conversions --------------------------------------------------------------------
    def convert(self, v, t: ScalarType, mode: str | None = None) -> Node:
        """Value-preserving conversion (``kaiodsl.T(x)``). mode: rn rz rm rp (floats), sat."""
        if not isinstance(v, Node):
            if isinstance(v, PyConst) and isinstance(t, ScalarType) and t.kind != "packed":
                if t.is_int and isinstance(v, float):
                    return self.const(t, _py_float_to_int(v, t, mode))
                if t.is_bool:
                    return self.const(t, bool(v))
                if t.is_int and mode == "sat":
                    lo, hi = t.int_range
                    return self.const(t, min(max(int(v), lo), hi))
                if t.is_int:
                    return self.const(t, _wrap(int(v), t))
                return self.const(t, float(v))
            self.error(f"cannot convert {describe(v)} to {t}")
        if v.type == t and mode is None:
            return v
        if not isinstance(v.type, ScalarType):
            self.error(f"cannot convert a {v.type} to {t}")
        if v.op == "const" and mode is None and t.kind != "packed" and v.type.kind != "packed":
            if t.is_int and v.type.is_float:  # NaN's result depends on the source type
                return self.const(t, _py_float_to_int(float(v.attrs["value"]), t, None, v.type.name))
            return self.convert(v.attrs["value"], t)
        return self.emit("cast", t, (v,), {"mode": mode} if mode else None)

    def bitcast(self, v: Node, t: ScalarType) -> Node:
        if v.type.bits != t.bits:
            self.error(f"bitcast needs equal widths: {v.type} is {v.type.bits} bits, {t} is {t.bits}")
        return v if v.type == t else self.emit("bitcast", t, (v,))

    def truth(self, v) -> Node | bool:
        """Python truthiness of a value, as a bool node (or a Python bool for constants)."""
        if isinstance(v, PyConst):
            return bool(v)
        if isinstance(v, Node):
            if v.type == bool_:
                return v
            if isinstance(v.type, ScalarType) and v.type.kind in ("int", "uint", "float"):
                return self.emit("cmp", bool_, (v, self.const(v.type, 0)), {"pred": "ne"})
            self.error(f"{describe(v)} has no truth value")
        return bool(v)  # any compile-time Python value (str, None, list ...): Python truthiness

    # -- arithmetic ---------------------------------------------------------------------
    def binary(self, op: str, a, b) -> Node:
        sym = SYMBOLS.get(op, op)
        a, b = self.unify(a, b, f"'{sym}'")
        t = a.type
        if op in ("and", "or", "xor", "shl", "shr") and t.is_float:
            self.error(f"'{sym}' needs integer operands, got {t}")
        if op in ("and", "or", "xor") and t.kind == "packed":
            self.error(f"'{sym}' needs integer operands, got {t}")
        return self.emit(op, t, (a, b))

    def shift(self, op: str, a, amount) -> Node:
        a = self.value(a)
        if not (isinstance(a.type, ScalarType) and a.type.is_int):
            self.error(f"shift needs an integer, got {a.type}")
        amount = self.convert(self.value(amount), u32) if isinstance(amount, Node) else self.const(u32, amount)
        return self.emit(op, a.type, (a, amount))

    def compare(self, pred: str, a, b) -> Node:
        a, b = self.unify(a, b, "comparison")
        return self.emit("cmp", bool_, (a, b), {"pred": pred})

    def select(self, cond, a, b) -> Node:
        cond = self.truth(cond)
        a, b = self.unify(a, b, "conditional expression")
        if isinstance(cond, bool):
            return a if cond else b
        return self.emit("select", a.type, (cond, a, b))

    def floordiv(self, a, b) -> Node:
        """Python ``//``: floor division for ints (docs/language.md), floor(a / b) for floats."""
        a, b = self.unify(a, b, "'//'")
        t = a.type
        if t.is_int and b.op == "const" and b.attrs["value"] == 0:  # float // 0 is IEEE (inf/NaN)
            self.error("integer division by the constant zero")
        if t.is_float:
            return self.emit("floor", t, (self.emit("div", t, (a, b)),))
        if not t.is_int:
            self.error(f"'//' needs numbers, got {t}")
        k = _pow2(b)
        if k is not None:  # floor division by 2**k is an arithmetic shift, for any sign
            return self.emit("shr", t, (a, self.const(u32, k)))
        q = self.emit("div", t, (a, b))
        if not t.is_signed:
            return q
        r = self.emit("rem", t, (a, b))
        return self.emit("sub", t, (q, self.convert(self._floor_fix(r, b), t)))

    def mod(self, a, b) -> Node:
        """Python ``%``: the result takes the sign of the divisor."""
        a, b = self.unify(a, b, "'%'")
        t = a.type
        if t.is_int and b.op == "const" and b.attrs["value"] == 0:  # float % 0 is IEEE (NaN)
            self.error("integer modulo by the constant zero")
        if t.is_float:
            q = self.emit("floor", t, (self.emit("div", t, (a, b)),))
            return self.emit("sub", t, (a, self.emit("mul", t, (q, b))))
        k = _pow2(b)
        if k is not None:  # two's complement: x & (2**k - 1) is the floor modulo
            return self.emit("and", t, (a, self.const(t, (1 << k) - 1)))
        r = self.emit("rem", t, (a, b))
        if not t.is_signed:
            return r
        fix = self._floor_fix(r, b)
        return self.emit("add", t, (r, self.emit("select", t, (fix, b, self.const(t, 0)))))

    def _floor_fix(self, r: Node, b: Node) -> Node:
        """True where a truncating quotient must step down: r != 0 and sign(r) != sign(b)."""
        t = r.type
        nz = self.emit("cmp", bool_, (r, self.const(t, 0)), {"pred": "ne"})
        sx = self.emit("xor", t, (r, b))
        neg = self.emit("cmp", bool_, (sx, self.const(t, 0)), {"pred": "lt"})
        return self.emit("and", bool_, (nz, neg))

    def truediv(self, a, b) -> Node:
        a, b = self.unify(a, b, "'/'")
        if a.type.is_int:
            ft = f64 if a.type.bits == 64 else f32
            a, b = self.convert(a, ft), self.convert(b, ft)
        if a.type.is_bool:
            self.error("'/' needs numbers, got bool")
        return self.emit("div", a.type, (a, b))

    # -- pointers and memory ------------------------------------------------------------
    def ptradd(self, p: Node, index) -> Node:
        """``p + index`` elements. The byte offset is explicit IR (mul.wide / mul) so CSE shares it."""
        size = p.type.elem.nbytes
        wide = p.type.bits == 64
        if isinstance(index, PyConst):
            if isinstance(index, float) or isinstance(index, bool):
                self.error(f"pointer index {index!r} must be an integer")
            if index == 0:
                return p
            return self.emit("ptradd", p.type, (p, self.const(i64 if wide else i32, index * size)))
        if not (isinstance(index.type, ScalarType) and index.type.is_int):
            self.error(f"pointer index must be an integer, got {index.type}")
        if index.op == "const":
            return self.ptradd(p, index.attrs["value"])
        it = index.type
        if wide:
            if it.bits < 32:
                index = self.convert(index, i32 if it.is_signed else u32)
                it = index.type
            if it.bits == 32:
                off = self.emit("mulwide", i64 if it.is_signed else u64, (index, self.const(it, size)))
            else:
                off = self.emit("mul", it, (index, self.const(it, size))) if size != 1 else index
        else:
            if it.bits != 32:
                index = self.convert(index, i32)
            off = self.emit("mul", index.type, (index, self.const(index.type, size))) if size != 1 else index
        return self.emit("ptradd", p.type, (p, off))

    def load(self, p: Node, *, cache: str = "", vec: int = 1, mask=None, other=None) -> Node:
        elem = p.type.elem
        t = elem if vec == 1 else TupleType((elem,) * vec)
        operands = [p]
        if mask is not None:
            m = self.truth(mask)
            if isinstance(m, bool):
                if not m:
                    return self._splat(self.coerce(0 if other is None else other, elem, "default"), vec)
            else:
                other_v = self.coerce(0 if other is None else other, elem, "the masked-load default")
                operands += [m, other_v]
        return self.emit("ld", t, operands, {"cache": cache, "vec": vec, "space": p.type.space})

    def _splat(self, v: Node, vec: int) -> Node:
        return v if vec == 1 else self.emit("tuple", TupleType((v.type,) * vec), (v,) * vec)

    def store(self, p: Node, value, *, cache: str = "", vec: int = 1, mask=None) -> None:
        elem = p.type.elem
        if vec == 1:
            value = self.coerce(value, elem, f"stored value (into Ptr[{elem}])")
        operands = [p, value]
        if mask is not None:
            m = self.truth(mask)
            if isinstance(m, bool):
                if not m:
                    return
            else:
                operands.append(m)
        self.emit("st", void, operands, {"cache": cache, "vec": vec, "space": p.type.space})

    def extract(self, t: Node, i: int) -> Node:
        if t.op == "tuple":
            return t.operands[i]
        return self.emit("extract", t.type.elems[i], (t,), {"index": i})

    def make_tuple(self, values) -> Node:
        values = [self.value(v) for v in values]
        return self.emit("tuple", TupleType(tuple(v.type for v in values)), values)

    def declare_shared(self, name: str, size: int | None, align: int) -> Node:
        base = name
        n = 0
        while name in self.shared_names:
            n += 1
            name = f"{base}_{n}"
        self.shared_names.add(name)
        self.fn.shared.append(SharedDecl(name, size, align))
        return name


def _pow2(b):
    v = const_value(b) if is_const(b) else None
    if isinstance(v, int) and not isinstance(v, bool) and v > 0 and v & (v - 1) == 0:
        return v.bit_length() - 1
    return None


def _wrap(v: int, t: ScalarType) -> int:
    v &= (1 << t.bits) - 1
    if t.is_signed and v >= 1 << (t.bits - 1):
        v -= 1 << t.bits
    return v


def _py_float_to_int(v: float, t: ScalarType, mode: str | None, src: str = "f32") -> int:
    """Float -> int like cvt.rzi (truncation) with PTX saturation; NaN as the GPU gives it from `src`
    (a weak float is f32)."""
    if math.isnan(v):
        return nan_to_int(src, t.bits, t.is_signed)
    r = {"rn": round, "rm": math.floor, "rp": math.ceil}.get(mode or "rz", math.trunc)
    lo, hi = t.int_range
    if math.isinf(v):
        return hi if v > 0 else lo
    return min(max(int(r(v)), lo), hi)
