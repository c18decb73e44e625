"""Expressions: names, constants, attributes, subscripts, operators, comparisons, conditionals.

A mixin of the Visitor (visitor.py). Operators on two compile-time values run in Python; anything
else is typed IR built through the Builder.
"""

from __future__ import annotations

import ast
import builtins as _py
import operator

from ..ir.node import Node
from ..types import InvalidType, PtrType, ScalarType, TupleType, bool_
from .builder import SYMBOLS, PyConst
from .control import BOOL, VAL
from .describe import describe
from .values import StaticRange, Undefined

BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "truediv", ast.FloorDiv: "floordiv",
          ast.Mod: "mod", ast.LShift: "shl", ast.RShift: "shr", ast.BitAnd: "and", ast.BitOr: "or",
          ast.BitXor: "xor", ast.Pow: "pow", ast.MatMult: "matmul"}
_PYOPS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv,
          "floordiv": operator.floordiv, "mod": operator.mod, "shl": operator.lshift, "shr": operator.rshift,
          "and": operator.and_, "or": operator.or_, "xor": operator.xor, "pow": operator.pow}
_CMPS = {ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge", ast.Eq: "eq", ast.NotEq: "ne"}
_PYCMP = {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge, "eq": operator.eq,
          "ne": operator.ne}
# Calls whose arguments are evaluated without side effects: safe to evaluate eagerly in
# `a and b` / `x if c else y` instead of branching.
_SAFE_CALLS = {"min", "max", "abs", "float", "int", "bool"}


class Expressions:
    """visit_* for expressions. Expects the Visitor's ``b``, ``env``, ``globals``, ``eval``, ``error``."""

    def visit_Constant(self, node):
        if node.value is Ellipsis:
            self.error("'...' is not supported", node)
        return node.value

    def visit_Name(self, node):
        if node.id in self.env:
            v = self.env[node.id]
            if isinstance(v, Undefined):
                self.error(f"'{node.id}' may be undefined here: {v.reason}", node)
            return v
        if node.id in self.globals:
            return self.globals[node.id]
        if hasattr(_py, node.id):
            return getattr(_py, node.id)
        self.error(f"name '{node.id}' is not defined", node)

    def visit_Tuple(self, node):
        return tuple(self.eval(e) for e in node.elts)

    def visit_List(self, node):
        return [self.eval(e) for e in node.elts]

    def visit_JoinedStr(self, node):
        parts = []
        for v in node.values:
            x = self.eval(v.value) if isinstance(v, ast.FormattedValue) else v.value
            if isinstance(x, Node):
                self.error("f-strings take compile-time values only", node)
            parts.append(format(x, self.eval(v.format_spec) if getattr(v, "format_spec", None) else "")
                         if isinstance(v, ast.FormattedValue) else x)
        return "".join(parts)

    def visit_Attribute(self, node):
        obj = self.eval(node.value)
        if hasattr(obj, "__kaio_getattr__"):
            return obj.__kaio_getattr__(self, node.attr)
        if isinstance(obj, Node):
            if node.attr == "dtype":
                return obj.type
            self.error(f"{describe(obj)} has no attribute '{node.attr}'", node)
        try:
            return getattr(obj, node.attr)
        except AttributeError:
            self.error(f"{describe(obj)} has no attribute '{node.attr}'", node)

    def visit_Subscript(self, node):
        cont = self.eval(node.value)
        idx = self.eval(node.slice)
        b = self.b
        if isinstance(cont, Node):
            if isinstance(cont.type, PtrType):
                if isinstance(idx, tuple):
                    self.error("a pointer takes one index; compute a flat index (row * stride + col)", node)
                return b.load(b.ptradd(cont, idx))
            if isinstance(cont.type, TupleType):
                return b.extract(cont, self.const_index(idx, len(cont.type), node))
            self.error(f"{describe(cont)} cannot be indexed", node)
        if isinstance(cont, list):
            return cont[self.const_index(idx, len(cont), node)]
        if hasattr(cont, "__kaio_getitem__"):
            return cont.__kaio_getitem__(self, idx)
        if isinstance(idx, Node):
            self.error(f"{describe(cont)} can only be indexed with compile-time values", node)
        try:
            out = cont[idx]
        except Exception as e:  # a compile-time container; report Python's own complaint
            self.error(f"indexing {describe(cont)} failed: {e}", node)
        if isinstance(out, InvalidType):
            self.error(f"{out.text} is not a type: {out.reason}", node)
        return out

    def visit_Slice(self, node):
        self.error("slices are not supported in kernels", node)

    def visit_BinOp(self, node):
        op = BINOPS[type(node.op)]
        return self.binop(op, self.eval(node.left), self.eval(node.right), node)

    def binop(self, op, a, b_, node):
        b = self.b
        if isinstance(a, PyConst) and isinstance(b_, PyConst):
            try:
                return _PYOPS[op](a, b_)
            except Exception as e:
                self.error(f"compile-time '{SYMBOLS[op]}' failed: {e}", node)
        if isinstance(a, (list, tuple)) and isinstance(b_, (list, tuple)) and op == "add":
            return a + b_  # compile-time containers (a local array grows by concatenation)
        if op in ("matmul",):
            self.error("'@' is not supported; use the tensor-core primitives", node)
        if op == "pow":
            return self._pow(a, b_, node)
        if isinstance(a, Node) and isinstance(a.type, PtrType) and op in ("add", "sub"):
            if isinstance(b_, Node) and isinstance(b_.type, PtrType):
                self.error("pointer - pointer is not supported", node)
            return b.ptradd(a, b_ if op == "add" else self.binop("sub", 0, b_, node))
        if isinstance(b_, Node) and isinstance(b_.type, PtrType) and op == "add":
            return b.ptradd(b_, a)
        if not isinstance(a, (Node, *PyConst)) or not isinstance(b_, (Node, *PyConst)):
            self.error(f"'{SYMBOLS[op]}' does not apply to {describe(a)} and {describe(b_)}", node)
        if op == "truediv":
            return b.truediv(a, b_)
        if op == "floordiv":
            return b.floordiv(a, b_)
        if op == "mod":
            return b.mod(a, b_)
        if op in ("shl", "shr"):
            return b.shift(op, a, b_)
        return b.binary(op, a, b_)

    def _pow(self, a, e, node):
        if not (isinstance(a, PyConst) or isinstance(a, Node) and isinstance(a.type, ScalarType)):
            self.error(f"'**' does not apply to {describe(a)}", node)
        if isinstance(e, int) and not isinstance(e, bool) and 0 <= e <= 8:
            if e == 0:
                return 1
            r = a
            for _ in range(e - 1):
                r = self.b.binary("mul", r, a)
            return r
        self.error("'**' on run-time values needs a small constant integer exponent (0..8); "
                   "use kaiodsl.exp2 / kaiodsl.log2 for general powers", node)

    def visit_UnaryOp(self, node):
        v = self.eval(node.operand)
        b = self.b
        if isinstance(node.op, ast.Not):
            if not isinstance(v, Node):
                return not v  # a compile-time value
            t = b.truth(v)
            return (not t) if isinstance(t, bool) else b.emit("not", bool_, (t,))
        if isinstance(v, PyConst):
            return {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: operator.invert}[type(node.op)](v)
        if not isinstance(v, Node) or not isinstance(v.type, ScalarType):
            sym = {ast.USub: "-", ast.UAdd: "+", ast.Invert: "~"}[type(node.op)]
            self.error(f"unary '{sym}' does not apply to {describe(v)}", node)
        if isinstance(node.op, ast.UAdd):
            return v
        if isinstance(node.op, ast.USub):
            if v.type.kind == "uint":
                return b.binary("sub", 0, v)
            return b.emit("neg", v.type, (v,))
        if not v.type.is_int:
            self.error(f"'~' needs an integer, got {v.type}", node)
        return b.emit("not", v.type, (v,))

    def visit_Compare(self, node):
        left = self.eval(node.left)
        result = None
        for op, right_node in zip(node.ops, node.comparators):
            right = self.eval(right_node)
            if isinstance(op, (ast.Is, ast.IsNot)):
                if isinstance(left, Node) or isinstance(right, Node):
                    self.error("'is' compares compile-time values only", node)
                r = (left is right) if isinstance(op, ast.Is) else (left is not right)
            elif type(op) in _CMPS:
                pred = _CMPS[type(op)]
                if not isinstance(left, Node) and not isinstance(right, Node):
                    r = _PYCMP[pred](left, right)  # compile-time values of any Python type
                else:
                    r = self.b.compare(pred, left, right)
            else:
                names = {ast.In: "in", ast.NotIn: "not in"}
                if isinstance(left, Node) or isinstance(right, Node):
                    self.error(f"'{names.get(type(op), type(op).__name__)}' is not supported on run-time values; "
                               "compare with == / != instead", node)
                try:
                    r = (left in right) if isinstance(op, ast.In) else (left not in right)
                except TypeError as e:
                    self.error(f"compile-time '{names[type(op)]}' failed: {e}", node)
            result = r if result is None else self._and(result, r)
            left = right
        return result

    def _and(self, a, b_):
        if isinstance(a, bool):
            return b_ if a else False
        if isinstance(b_, bool):
            return a if b_ else False
        return self.b.emit("and", bool_, (a, b_))

    def visit_BoolOp(self, node):
        is_and = isinstance(node.op, ast.And)
        acc = self.b.truth(self.eval(node.values[0]))
        for rest in node.values[1:]:
            if isinstance(acc, bool):
                if acc != is_and:  # short-circuits at compile time
                    return acc
                acc = self.b.truth(self.eval(rest))
                continue
            if _is_safe(rest):
                r = self.b.truth(self.eval(rest))
                if isinstance(r, bool):
                    acc = (acc if r else False) if is_and else (True if r else acc)
                else:
                    acc = self.b.emit("and" if is_and else "or", bool_, (acc, r))
                continue
            acc = self._branchy_bool(acc, rest, is_and)
        return acc

    def _branchy_bool(self, acc, rest, is_and):
        """``acc and rest`` where ``rest`` may load or call: evaluate it only when needed."""
        b = self.b
        rhs, short = b.new_block("and" if is_and else "or"), b.new_block("short")
        b.cbr(acc, rhs, short) if is_and else b.cbr(acc, short, rhs)
        env0 = self.env
        self.env, b.block = dict(env0), rhs
        r = b.truth(self.eval(rest))
        ends = []
        if b.block is not None:
            ends.append((b.block, {**self.env, BOOL: r}))
        self.env, b.block = dict(env0), short
        ends.append((short, {**env0, BOOL: not is_and}))
        self.merge(ends, "endbool")
        return self.env.pop(BOOL)

    def visit_IfExp(self, node):
        cond = self.b.truth(self.eval(node.test))
        if isinstance(cond, bool):
            return self.eval(node.body if cond else node.orelse)
        if _is_safe(node.body) and _is_safe(node.orelse):
            return self.b.select(cond, self.eval(node.body), self.eval(node.orelse))
        b = self.b
        t, f = b.new_block("then"), b.new_block("else")
        b.cbr(cond, t, f)
        env0, ends = self.env, []
        for blk, expr in ((t, node.body), (f, node.orelse)):
            self.env, b.block = dict(env0), blk
            v = self.eval(expr)
            ends.append((b.block, {**self.env, VAL: v}))
        self.merge(ends, "endif")
        return self.env.pop(VAL)

    def visit_NamedExpr(self, node):
        v = self.eval(node.value)
        self.assign_target(node.target, v)
        return v

    def visit_ListComp(self, node):
        if len(node.generators) != 1 or node.generators[0].is_async:
            self.error("only single-generator list comprehensions are supported", node)
        gen = node.generators[0]
        values = self.eval(gen.iter)
        if isinstance(values, StaticRange):
            values = values.values
        if not isinstance(values, (list, tuple, range)):
            self.error("a list comprehension in a kernel needs a compile-time iterable "
                       "(range of constants, static_range or a list)", gen.iter)
        saved = dict(self.env)
        out = []
        for v in values:
            self.assign_target(gen.target, v)
            if all(self._const_truth(self.eval(c), c) for c in gen.ifs):
                out.append(self.eval(node.elt))
        self.env = {**saved, **{k: v for k, v in self.env.items() if k in saved}}
        return out

    def _const_truth(self, v, node):
        if isinstance(v, Node):
            self.error("conditions in list comprehensions must be compile-time values", node)
        return bool(v)


def _is_safe(expr) -> bool:
    """True when evaluating ``expr`` eagerly cannot fault or have effects (no loads, no calls)."""
    for n in ast.walk(expr):
        if isinstance(n, ast.Subscript):
            return False
        if isinstance(n, ast.Call):
            if not (isinstance(n.func, ast.Name) and n.func.id in _SAFE_CALLS):
                return False
        if isinstance(n, (ast.NamedExpr, ast.Lambda)):
            return False
    return True
