"""Statements of a kernel body: assignments, return, assert and the two kinds of ``for``.

A mixin of the Visitor (visitor.py); if and while live in control.py with the merging of paths.
"""

from __future__ import annotations

import ast
import builtins as _py

from ..ir.node import Node
from ..types import PtrType, ScalarType, TupleType
from .control import RET
from .describe import describe, describe_node
from .expressions import BINOPS
from .values import StaticRange


class Statements:
    """visit_* for statements. Expects the Visitor's ``b``, ``env``, ``eval``, ``error``."""

    def visit_Expr(self, node):
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return  # docstring
        self.eval(node.value)

    def visit_Pass(self, node):
        pass

    def visit_Assign(self, node):
        value = self.eval(node.value)
        for t in node.targets:
            self.assign_target(t, value)

    def visit_AnnAssign(self, node):
        if node.value is None:
            self.error("a declaration without a value is not supported; assign an initial value", node)
        ann = self.annotation(node.annotation)
        value = self.eval(node.value)
        if isinstance(ann, ScalarType):
            value = self.b.convert(value, ann) if not isinstance(value, Node) or value.type != ann else value
        self.assign_target(node.target, value)

    def visit_AugAssign(self, node):
        op = BINOPS.get(type(node.op))
        cur = self.eval(_load_ctx(node.target))
        value = self.binop(op, cur, self.eval(node.value), node)
        self.assign_target(node.target, value)

    def check_assignable(self, name: str, node=None):
        if name in self.const_names:
            self.error(f"cannot assign to '{name}': it is a Const parameter (a compile-time value)", node)

    def assign_target(self, t, value):
        if isinstance(t, ast.Name):
            self.check_assignable(t.id, t)
            self.env[t.id] = value
            self.assigned_at[(t.id, id(value))] = (value, self.src.loc(t))
        elif isinstance(t, (ast.Tuple, ast.List)):
            items = self.unpack(value, len(t.elts), t)
            for sub, v in zip(t.elts, items):
                self.assign_target(sub, v)
        elif isinstance(t, ast.Subscript):
            self.assign_subscript(t, value)
        else:
            self.error(f"assignment to {describe_node(t)} is not supported", t)

    def unpack(self, value, n: int, node):
        if isinstance(value, Node) and isinstance(value.type, TupleType):
            if len(value.type) != n:
                self.error(f"cannot unpack a tuple of {len(value.type)} values into {n} names", node)
            return [self.b.extract(value, i) for i in range(n)]
        if isinstance(value, (tuple, list)):
            if len(value) != n:
                self.error(f"cannot unpack {len(value)} values into {n} names", node)
            return list(value)
        self.error(f"cannot unpack {describe(value)}", node)

    def assign_subscript(self, t: ast.Subscript, value):
        cont = self.eval(t.value)
        idx = self.eval(t.slice)
        b = self.b
        if isinstance(cont, list):
            i = self.const_index(idx, len(cont), t)
            new = list(cont)
            new[i] = value
            self.assign_target(t.value, new)
        elif isinstance(cont, Node) and isinstance(cont.type, PtrType):
            if isinstance(idx, tuple):
                self.error("a pointer takes one index", t)
            b.store(b.ptradd(cont, idx), value)
        elif hasattr(cont, "__kaio_setitem__"):
            cont.__kaio_setitem__(self, idx, value)
        else:
            self.error(f"cannot assign into {describe(cont)}", t)

    def const_index(self, idx, n: int, node) -> int:
        if isinstance(idx, Node) and idx.op == "const":
            idx = idx.attrs["value"]
        if not isinstance(idx, int) or isinstance(idx, bool):
            self.error("a local array (a Python list in a kernel) lives in registers and must be indexed "
                       "with compile-time constants; use kaiodsl.static_range to unroll the loop", node)
        if not -n <= idx < n:
            self.error(f"index {idx} is out of range for a local array of {n} elements", node)
        return idx

    def visit_Return(self, node):
        if self.returns is None:
            if node.value is not None:
                self.error("a kernel cannot return a value; store results through a pointer", node)
            self.b.terminate("ret")
            return
        value = self.eval(node.value) if node.value is not None else None
        self.assigned_at[(RET, id(value))] = (value, self.src.loc(node))
        env = {RET: value}
        self.returns.append((self.b.block, env))
        self.b.block = None

    def visit_Assert(self, node):
        test = self.eval(node.test)
        if isinstance(test, Node):
            self.error("assert needs a compile-time condition (run-time asserts are not supported)", node)
        if not test:
            msg = self.eval(node.msg) if node.msg is not None else "assertion failed"
            self.error(f"compile-time assertion failed: {msg}", node)

    def visit_For(self, node):
        it = node.iter
        if node.orelse:
            self.error("for ... else is not supported", node)
        if isinstance(it, ast.Call) and self._resolves_to(it.func, _py.range):
            args = [self.eval(a) for a in it.args]
            if it.keywords or not 1 <= len(args) <= 3:
                self.error(f"range() takes 1 to 3 arguments: range(stop) or range(start, stop[, step]) "
                           f"({len(args) + len(it.keywords)} given)", it)
            start, stop, step = ((0, args[0], 1) if len(args) == 1 else
                                 (args[0], args[1], args[2] if len(args) == 3 else 1))
            if not isinstance(node.target, ast.Name):
                self.error("a range() loop needs a single loop variable", node.target)
            self.check_assignable(node.target.id, node.target)
            self.dynamic_loop(node, (node.target.id, start, stop, step))
            return
        values = self.eval(it)
        if isinstance(values, StaticRange):
            self.static_loop(node, values.values)
        elif isinstance(values, (list, tuple, range)):
            self.static_loop(node, list(values))
        elif isinstance(values, Node) and isinstance(values.type, TupleType):
            self.static_loop(node, [self.b.extract(values, i) for i in range(len(values.type))])
        else:
            self.error(f"cannot iterate over {describe(values)}; use range(), kaiodsl.static_range() "
                       "or a compile-time list", it)


def _load_ctx(target):
    """The same target expression, read instead of written (for augmented assignment)."""
    new = ast.parse(ast.unparse(target), mode="eval").body
    ast.copy_location(new, target)
    for a, b in zip(ast.walk(new), ast.walk(target)):
        ast.copy_location(a, b)
    return new
