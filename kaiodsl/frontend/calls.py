"""Calls in a kernel: kaiodsl builtins, @kaiodsl.func inlining, scalar casts, supported Python
builtins and compile-time Python helpers.

A mixin of the Visitor (visitor.py).
"""

from __future__ import annotations

import ast
import builtins as _py

from ..errors import CompileError, KaioError
from ..ir.node import Node
from ..types import ScalarType, TupleType, bool_, f32, i32
from .builder import PyConst
from .control import RET, flatten
from .describe import describe
from .params import bind_func_args
from .values import SharedArray



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
        from .decorator import Func, Kernel  # lazily: the decorator module imports the visitor

        if hasattr(fn, "__kaio_call__"):
            return fn.__kaio_call__(self, args, kwargs)
        if isinstance(fn, ScalarType):
            if len(args) != 1 or kwargs:
                self.error(f"kaiodsl.{fn}() takes 1 argument ({len(args) + len(kwargs)} given); "
                           f"call it as kaiodsl.{fn}(x)", node)
            return self.b.convert(args[0], fn)
        if isinstance(fn, Func):
            return self.inline(fn, args, kwargs, node)
        if isinstance(fn, Kernel):
            self.error(f"cannot call kernel '{fn.__name__}' from device code; make it a @kaiodsl.func", node)
        handler = PY_BUILTINS.get(fn) if _hashable(fn) else None
        if handler is not None:
            return handler(self, args, kwargs, node)
        if isinstance(fn, Node) or not callable(fn):
            self.error(f"{describe(fn)} is not callable", node)
        if any(_has_runtime(a) for a in [*args, *kwargs.values()]):
            self.error(_not_on_runtime_values(fn), node)
        try:
            return fn(*args, **kwargs)
        except KaioError as e:
            raise CompileError(str(e), self.src.loc(node)) from None
        except Exception as e:
            typed = [l for a in [*args, *kwargs.values()] for l in flatten(a)[1] if isinstance(l, Node)]
            if typed:  # Python's complaint would be about our IR classes: say what went in instead
                self.error(f"compile-time call to {describe(fn)} failed: it was given {describe(typed[0])}, a "
                           f"kaiodsl value that plain Python cannot compute with; pass a Python number, or "
                           f"decorate it with @kaiodsl.func", node)
            self.error(f"compile-time call to {describe(fn)} raised {type(e).__name__}: {e}", node)

    def inline(self, func, args, kwargs, node):
        """Inline a @kaiodsl.func: its body is visited by a child visitor sharing the Builder and the
        compile context (block size, arch, options), so it compiles exactly as the kernel body does."""
        if self.funcs_depth > 32:
            self.error(f"call depth limit reached inlining {func.__name__} (recursion is not supported)", node)
        env, const_names = bind_func_args(self, func, args, kwargs, node)
        b = self.b
        v = type(self)(self.ctx, b, func.source, env, func.globals(), const_names, self.funcs_depth + 1,
                       returns=[])
        saved_loc = b.loc
        v.visit_body(func.source.tree.body)
        if b.block is not None:
            v.returns.append((b.block, {RET: None}))
        v.env = {}
        v.merge(v.returns, "ret")
        b.loc = saved_loc
        return v.env.get(RET) if b.block is not None else None


# -- Python builtins in kernels: each supported one has a handler ------------------------------------
def _minmax(op):
    def handler(fx, args, kwargs, node):
        if kwargs or len(args) < 2:
            if len(args) == 1 and isinstance(args[0], (list, tuple)) and len(args[0]) >= 1:
                args = list(args[0])
            else:
                fx.error(f"{op}() takes two or more values, or one list or tuple of them", node)
        acc = args[0]
        for x in args[1:]:
            if isinstance(acc, PyConst) and isinstance(x, PyConst):
                acc = min(acc, x) if op == "min" else max(acc, x)
            else:
                acc = fx.b.binary(op, acc, x)
        return acc

    return handler


def _abs(fx, args, kwargs, node):
    if len(args) != 1 or kwargs:
        fx.error(f"abs() takes 1 argument ({len(args) + len(kwargs)} given)", node)
    (x,) = args
    if isinstance(x, PyConst):
        return abs(x)
    if not (isinstance(x, Node) and isinstance(x.type, ScalarType)):
        fx.error(f"abs() needs a number, got {describe(x)}", node)
    return fx.b.emit("abs", x.type, (x,))


def _convert_to(pyfn, t):
    """float(x) / int(x) / bool(x): f32 / i32 / bool on run-time values, Python on constants."""
    def handler(fx, args, kwargs, node):
        if len(args) == 1 and not kwargs and isinstance(args[0], Node):
            return fx.b.convert(args[0], t)
        if any(_has_runtime(a) for a in [*args, *kwargs.values()]):
            fx.error(f"{pyfn.__name__}() takes one run-time number; for other types use kaiodsl.cast(x, dtype)",
                     node)
        return _python(pyfn)(fx, args, kwargs, node)

    return handler


def _len(fx, args, kwargs, node):
    if len(args) == 1 and not kwargs and isinstance(args[0], Node) and isinstance(args[0].type, TupleType):
        return len(args[0].type)
    return _python(_py.len)(fx, args, kwargs, node)


def _print(fx, args, kwargs, node):
    fx.error("print() is not supported in kernels; store values through a pointer and print them on the host, "
             "or run the kernel in the simulator (KAIODSL_BACKEND=sim)", node)


def _python(fn):
    """Run the builtin in Python: it only rearranges containers, which may hold run-time values."""
    def handler(fx, args, kwargs, node):
        for a in args:
            if isinstance(a, Node) and fn is not _py.isinstance:
                fx.error(f"{fn.__name__}() needs compile-time values or containers (a tuple or a list), got "
                         f"{describe(a)}", node)
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            fx.error(f"{fn.__name__}() failed at compile time: {type(e).__name__}: {e}", node)

    return handler


PY_BUILTINS = {
    _py.min: _minmax("min"), _py.max: _minmax("max"), _py.abs: _abs,
    _py.float: _convert_to(_py.float, f32), _py.int: _convert_to(_py.int, i32),
    _py.bool: _convert_to(_py.bool, bool_),
    _py.len: _len, _py.print: _print,
    **{f: _python(f) for f in (_py.tuple, _py.list, _py.zip, _py.enumerate, _py.reversed, _py.isinstance)},
}
"""The Python builtins a kernel may call with run-time values (``range`` is a for-loop form, see
statements.py); any other builtin runs at compile time on compile-time values only."""

# What to write instead of a Python builtin (or numpy/math function) that gets run-time values.
_INSTEAD = {
    "round": "kaiodsl.round_even(x) (or kaiodsl.cast(x, kaiodsl.i32, 'rn'))", "pow": "x ** n with a constant "
    "n in 0..8, or kaiodsl.exp2(y * kaiodsl.log2(x))", "divmod": "x // y and x % y", "sum": "a loop "
    "with += (or a + b + ...)", "sorted": "min()/max() or a compile-time list", "hex": "a compile-time value",
    "str": "a compile-time value", "range": "range() as the iterable of a for loop",
    "minimum": "min(a, b)", "maximum": "max(a, b)", "fmin": "min(a, b)", "fmax": "max(a, b)",
    "absolute": "abs(x)", "fabs": "abs(x)", "rint": "kaiodsl.round_even(x)", "power": "x ** n",
    "float32": "kaiodsl.f32(x)", "float16": "kaiodsl.f16(x)", "float64": "kaiodsl.f64(x)",
    "int32": "kaiodsl.i32(x)", "uint32": "kaiodsl.u32(x)", "int64": "kaiodsl.i64(x)",
}
_LIST_METHODS = {"append": "lst = lst + [x]", "extend": "lst = lst + more", "insert": "lst = lst[:i] + [x] + ...",
                 "pop": "a new list without the element", "remove": "a new list without the element"}


def _not_on_runtime_values(fn) -> str:
    """The message for a plain-Python callable that was given run-time values."""
    import kaiodsl

    name = getattr(fn, "__name__", None) or type(fn).__name__
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, list) and name in _LIST_METHODS:
        return (f"a local array (a Python list in a kernel) is built at compile time and cannot change in "
                f"place with .{name}() on run-time values; write `{_LIST_METHODS[name]}` instead")
    module = getattr(fn, "__module__", None) or type(fn).__module__ or ""
    ours = getattr(kaiodsl, name, None)
    hint = _INSTEAD.get(name) or (f"kaiodsl.{name}(x)" if ours is not None and not isinstance(ours, type(kaiodsl))
                                  else None)
    if getattr(_py, name, None) is fn:
        supported = ", ".join(sorted(f.__name__ for f in PY_BUILTINS if f is not _py.print))
        return (f"Python's {name}() runs at compile time and cannot take run-time values"
                f"{'; use ' + hint if hint else ''}. Python builtins that take run-time values in a kernel: "
                f"{supported} (and range() in a for loop)")
    top = module.split(".")[0]
    if top in ("numpy", "math", "cmath", "torch", "cupy"):
        return (f"{top}.{name} runs in Python at compile time and cannot take run-time values; "
                f"{'use ' + hint if hint else 'use the kaiodsl builtins (docs/language.md)'}")
    return (f"'{name}' is plain Python, so it runs at compile time and cannot take run-time values; "
            f"decorate it with @kaiodsl.func to call it on run-time values")


def _hashable(fn) -> bool:
    try:
        hash(fn)
    except TypeError:
        return False
    return True


def _has_runtime(v) -> bool:
    _, leaves = flatten(v)
    return any(isinstance(l, Node) and l.op != "const" for l in leaves) or isinstance(v, SharedArray)
