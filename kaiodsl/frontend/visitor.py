"""The frontend: one AST visitor, one method per supported node; anything else is a CompileError."""

from __future__ import annotations

import ast
import builtins as _py
import operator

from ..errors import CompileError, KaioError
from ..ir.node import Node, SourceLoc
from ..types import PtrType, ScalarType, TupleType, bool_
from .builder import Builder, PyConst
from .control import ControlFlow, flatten
from .values import SharedArray, Undefined

_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "truediv", ast.FloorDiv: "floordiv",
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
# Python builtins that only rearrange containers: they may hold run-time values.
_STRUCTURAL = {_py.tuple, _py.list, _py.len, _py.zip, _py.enumerate, _py.reversed, _py.isinstance}


class Source:
    """The user's function source: AST, file and line offsets, for locations."""

    def __init__(self, tree, file: str, first_line: int, lines: list, func: str, col_offset: int = 0):
        self.tree = tree
        self.file = file
        self.first_line = first_line
        self.lines = lines
        self.func = func
        self.col_offset = col_offset

    def loc(self, node) -> SourceLoc | None:
        if not hasattr(node, "lineno"):
            return None
        line = node.lineno + self.first_line - 1
        idx = node.lineno - 1
        text = self.lines[idx] if 0 <= idx < len(self.lines) else ""
        end = node.end_col_offset if getattr(node, "end_lineno", node.lineno) == node.lineno else None
        off = self.col_offset
        return SourceLoc(self.file, line, node.col_offset + off, (end + off) if end is not None else None,
                         text.rstrip("\n"), self.func)


class Visitor(ControlFlow):
    """Turns one function body into IR through a Builder. Helper functions are inlined."""

    def __init__(self, ctx, b: Builder, source: Source, env: dict, globals_: dict, const_names=frozenset(),
                 funcs_depth: int = 0, returns: list | None = None):
        self.ctx = ctx  # the frozen compiler.CompileContext: arch, block, Const values, options
        self.b = b
        self.src = source
        self.env = env
        self.globals = globals_
        self.const_names = set(const_names)
        self.loops: list = []
        self.if_depth = 0
        self.returns = returns  # inlined function: (block, env-with-$ret) ends; None in a kernel
        self.funcs_depth = funcs_depth

    # -- plumbing ------------------------------------------------------------------------------
    def error(self, msg: str, node=None):
        raise CompileError(msg, self.src.loc(node) if node is not None else self.b.loc)

    def visit(self, node):
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            self.error(f"{_describe_node(node)} is not supported in kaiodsl kernels", node)
        prev = self.b.loc
        loc = self.src.loc(node)
        if loc is not None:
            self.b.loc = loc
        try:
            return method(node)
        except CompileError:
            raise
        except KaioError as e:
            raise CompileError(str(e), loc) from None
        finally:
            self.b.loc = prev

    def eval(self, node):
        return self.visit(node)

    def visit_body(self, stmts):
        for s in stmts:
            if self.b.block is None:
                return
            self.visit(s)

    # -- statements ------------------------------------------------------------------------------
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
        op = _BINOPS.get(type(node.op))
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
        elif isinstance(t, (ast.Tuple, ast.List)):
            items = self.unpack(value, len(t.elts), t)
            for sub, v in zip(t.elts, items):
                self.assign_target(sub, v)
        elif isinstance(t, ast.Subscript):
            self.assign_subscript(t, value)
        else:
            self.error(f"assignment to {_describe_node(t)} is not supported", t)

    def unpack(self, value, n: int, node):
        if isinstance(value, Node) and isinstance(value.type, TupleType):
            if len(value.type) != n:
                self.error(f"cannot unpack a tuple of {len(value.type)} values into {n} names", node)
            return [self.b.extract(value, i) for i in range(n)]
        if isinstance(value, (tuple, list)):
            if len(value) != n:
                self.error(f"cannot unpack {len(value)} values into {n} names", node)
            return list(value)
        self.error(f"cannot unpack {self._describe(value)}", node)

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
            self.error(f"cannot assign into {self._describe(cont)}", t)

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
        env = {"$ret": value}
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
                self.error("range() takes 1 to 3 positional arguments", it)
            start, stop, step = (0, args[0], 1) if len(args) == 1 else (args[0], args[1], args[2] if len(args) == 3 else 1)
            if not isinstance(node.target, ast.Name):
                self.error("a range() loop needs a single loop variable", node.target)
            self.check_assignable(node.target.id, node.target)
            self.dynamic_loop(node, (node.target.id, start, stop, step))
            return
        values = self.eval(it)
        if isinstance(values, _StaticRange):
            self.static_loop(node, values.values)
        elif isinstance(values, (list, tuple, range)):
            self.static_loop(node, list(values))
        elif isinstance(values, Node) and isinstance(values.type, TupleType):
            self.static_loop(node, [self.b.extract(values, i) for i in range(len(values.type))])
        else:
            self.error(f"cannot iterate over {self._describe(values)}; use range(), kaiodsl.static_range() "
                       "or a compile-time list", it)

    # -- expressions -----------------------------------------------------------------------------
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
            self.error(f"a {obj.type} value has no attribute '{node.attr}'", node)
        try:
            return getattr(obj, node.attr)
        except AttributeError:
            self.error(f"{self._describe(obj)} has no attribute '{node.attr}'", node)

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
            self.error(f"a {cont.type} value cannot be indexed", node)
        if isinstance(cont, list):
            return cont[self.const_index(idx, len(cont), node)]
        if hasattr(cont, "__kaio_getitem__"):
            return cont.__kaio_getitem__(self, idx)
        if isinstance(idx, Node):
            self.error(f"{self._describe(cont)} can only be indexed with compile-time values", node)
        try:
            return cont[idx]
        except Exception as e:  # a compile-time container; report Python's own complaint
            self.error(f"indexing {self._describe(cont)} failed: {e}", node)

    def visit_Slice(self, node):
        self.error("slices are not supported in kernels", node)

    def visit_BinOp(self, node):
        op = _BINOPS[type(node.op)]
        return self.binop(op, self.eval(node.left), self.eval(node.right), node)

    def binop(self, op, a, b_, node):
        b = self.b
        if isinstance(a, PyConst) and isinstance(b_, PyConst):
            try:
                return _PYOPS[op](a, b_)
            except Exception as e:
                self.error(f"compile-time '{op}' failed: {e}", node)
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
            self.error(f"'{op}' does not apply to {self._describe(a)} and {self._describe(b_)}", node)
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
            self.error(f"unary operator on {self._describe(v)}", node)
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
            ends.append((b.block, {**self.env, "$bool": r}))
        self.env, b.block = dict(env0), short
        ends.append((short, {**env0, "$bool": not is_and}))
        self.merge(ends, "endbool")
        return self.env.pop("$bool")

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
            ends.append((b.block, {**self.env, "$val": v}))
        self.merge(ends, "endif")
        return self.env.pop("$val")

    def visit_NamedExpr(self, node):
        v = self.eval(node.value)
        self.assign_target(node.target, v)
        return v

    def visit_ListComp(self, node):
        if len(node.generators) != 1 or node.generators[0].is_async:
            self.error("only single-generator list comprehensions are supported", node)
        gen = node.generators[0]
        values = self.eval(gen.iter)
        if isinstance(values, _StaticRange):
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

    # -- helpers ---------------------------------------------------------------------------------
    def annotation(self, node):
        return self.eval(node)

    def _resolves_to(self, func_node, obj) -> bool:
        if isinstance(func_node, ast.Name):
            if func_node.id in self.env:
                return False
            return self.globals.get(func_node.id, getattr(_py, func_node.id, None)) is obj
        return False

    def _describe(self, v) -> str:
        if isinstance(v, Node):
            return f"a {v.type} value"
        if isinstance(v, SharedArray):
            return repr(v)
        if isinstance(v, (int, float, bool, str)):
            return repr(v)
        return f"{type(v).__name__} {getattr(v, '__name__', '')}".strip()


class _StaticRange:
    """What ``kaiodsl.static_range`` returns: a compile-time list of loop values."""

    def __init__(self, values):
        self.values = list(values)


def _describe_node(node) -> str:
    names = {"Lambda": "lambda", "With": "'with'", "Try": "'try'", "Raise": "'raise'", "Global": "'global'",
             "Nonlocal": "'nonlocal'", "Delete": "'del'", "FunctionDef": "a nested function definition",
             "ClassDef": "a class definition", "Import": "'import'", "ImportFrom": "'import'",
             "Dict": "a dict literal", "Set": "a set literal", "DictComp": "a dict comprehension",
             "SetComp": "a set comprehension", "GeneratorExp": "a generator expression", "Await": "'await'",
             "Yield": "'yield'", "YieldFrom": "'yield from'", "Starred": "'*' unpacking",
             "AsyncFor": "'async for'", "AsyncWith": "'async with'", "Match": "'match'", "Attribute": "an attribute",
             "TryStar": "'try'"}
    return names.get(type(node).__name__, f"'{type(node).__name__}'")


def _load_ctx(target):
    """The same target expression, read instead of written (for augmented assignment)."""
    new = ast.parse(ast.unparse(target), mode="eval").body
    ast.copy_location(new, target)
    for a, b in zip(ast.walk(new), ast.walk(target)):
        ast.copy_location(a, b)
    return new


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


def _has_runtime(v) -> bool:
    _, leaves = flatten(v)
    return any(isinstance(l, Node) and l.op != "const" for l in leaves) or isinstance(v, SharedArray)
