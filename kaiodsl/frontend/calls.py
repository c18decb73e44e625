"""Calls in a kernel: kaiodsl builtins, @kaiodsl.func inlining, scalar casts, supported Python
builtins and compile-time Python helpers.

A mixin of the Visitor (visitor.py).
"""

from __future__ import annotations

import ast
import builtins as _py

from ..errors import CompileError, KaioError
from ..ir.node import Node
from ..types import ScalarType, TupleType, bool_
from .builder import PyConst
from .control import flatten
from .values import SharedArray

# Python builtins that only rearrange containers: they may hold run-time values.
_STRUCTURAL = {_py.tuple, _py.list, _py.len, _py.zip, _py.enumerate, _py.reversed, _py.isinstance}


class Calls:
    """visit_Call and what a call can reach. Expects the Visitor's ``b``, ``eval``, ``error``."""

    def visit_Call(self, node):
        fn = self.eval(node.func)
        args = []
        for a in node.args:
            if isinstance(a, ast.Starred):
                v = self.eval(a.value)
                if not isinstance(v, (tuple, list)):
                    self.error("*args needs a compile-time tuple or list", a)
                args.extend(v)
            else:
                args.append(self.eval(a))
        kwargs = {}
        for k in node.keywords:
            if k.arg is None:
                self.error("**kwargs is not supported in kernels", node)
            kwargs[k.arg] = self.eval(k.value)
        return self.call(fn, args, kwargs, node)

    def call(self, fn, args, kwargs, node):
        from .decorator import Func, Kernel  # the decorator module imports this one

        b = self.b
        if hasattr(fn, "__kaio_call__"):
            try:
                return fn.__kaio_call__(self, args, kwargs)
            except TypeError as e:
                if "argument" in str(e):
                    self.error(f"{getattr(fn, 'name', fn)}(): {e}".replace("impl()", ""), node)
                raise
        if isinstance(fn, ScalarType):
            if len(args) != 1 or kwargs:
                self.error(f"{fn}(x) takes one argument", node)
            return b.convert(args[0], fn)
        if isinstance(fn, Func):
            return fn.inline(self, args, kwargs, node)
        if isinstance(fn, Kernel):
            self.error(f"cannot call kernel '{fn.__name__}' from device code; make it a @kaiodsl.func", node)
        if fn in (_py.min, _py.max):
            return self._minmax("min" if fn is _py.min else "max", args, kwargs, node)
        if fn is _py.abs:
            (x,) = args
            return abs(x) if isinstance(x, PyConst) else b.emit("abs", x.type, (x,))
        if fn in (_py.float, _py.int, _py.bool) and args and isinstance(args[0], Node):
            from ..types import f32, i32
            return b.convert(args[0], {_py.float: f32, _py.int: i32, _py.bool: bool_}[fn])
        if fn is _py.len and len(args) == 1:
            v = args[0]
            if isinstance(v, Node) and isinstance(v.type, TupleType):
                return len(v.type)
        if fn is _py.print:
            self.error("print() is not supported in kernels", node)
        if fn not in _STRUCTURAL and any(_has_runtime(a) for a in [*args, *kwargs.values()]):
            name = getattr(fn, "__name__", repr(fn))
            self.error(f"'{name}' is plain Python, so it runs at compile time and cannot take run-time values; "
                       f"decorate it with @kaiodsl.func to call it on run-time values", node)
        try:
            return fn(*args, **kwargs)
        except KaioError as e:
            raise CompileError(str(e), self.src.loc(node)) from None
        except Exception as e:
            self.error(f"compile-time call to {getattr(fn, '__name__', fn)!r} raised "
                       f"{type(e).__name__}: {e}", node)

    def _minmax(self, op, args, kwargs, node):
        if kwargs or len(args) < 2:
            if len(args) == 1 and isinstance(args[0], (list, tuple)):
                args = list(args[0])
            else:
                self.error(f"{op}() takes two or more values", node)
        acc = args[0]
        for x in args[1:]:
            if isinstance(acc, PyConst) and isinstance(x, PyConst):
                acc = min(acc, x) if op == "min" else max(acc, x)
            else:
                acc = self.b.binary(op, acc, x)
        return acc


def _has_runtime(v) -> bool:
    _, leaves = flatten(v)
    return any(isinstance(l, Node) and l.op != "const" for l in leaves) or isinstance(v, SharedArray)
