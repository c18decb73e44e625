"""``@kaiodsl.kernel`` and ``@kaiodsl.func``: a Python function's source, signature and Const
parameters. Compiling is kaiodsl/compiler.py's job: every inspection method and launch goes there."""

from __future__ import annotations

import ast
import inspect
import os
import textwrap

from ..errors import CompileError, KaioError
from ..ir.node import Node
from ..types import ConstType, PtrType, ScalarType, bool_, f32, i32
from .params import check_const_value, resolve_annotation
from .visitor import Source



def _load_source(fn) -> Source:
    try:
        lines, first = inspect.getsourcelines(fn)
        file = inspect.getsourcefile(fn) or "<unknown>"
    except (OSError, TypeError):
        where = getattr(getattr(fn, "__code__", None), "co_filename", "?")
        raise CompileError(
            f"cannot read the source of {fn.__qualname__} (it was defined in {where}): kaiodsl compiles a "
            f"kernel from its source text, so kernels and @kaiodsl.func functions must live in a .py file "
            f"or a notebook cell, not in code given to `python -c`, exec() or standard input. Put the "
            f"kernel in a file and import it or run it with `python file.py`.") from None
    raw = "".join(lines)
    text = textwrap.dedent(raw)
    indent = len(lines[0]) - len(lines[0].lstrip()) if lines else 0
    tree = ast.parse(text)
    fdef = tree.body[0]
    if not isinstance(fdef, ast.FunctionDef):
        raise KaioError(f"{fn.__qualname__} is not a plain function definition")
    try:
        file = os.path.relpath(file)
    except ValueError:
        pass
    if file.startswith(".."):
        file = inspect.getsourcefile(fn) or file
    return Source(fdef, file, first, [l[indent:] if len(l) > indent else l.lstrip() for l in lines],
                  fn.__name__, col_offset=indent)


def _globals_of(fn) -> dict:
    g = dict(fn.__globals__)
    if fn.__closure__:
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__):
            try:
                g[name] = cell.cell_contents
            except ValueError:
                pass
    return g


class _Compilable:
    """What kernels and device functions share: the source and the names it can read
    (kaiodsl/fingerprint.py hashes what they reach for the cache key)."""

    kind = ""

    def __init__(self, fn):
        self.fn = fn
        self.__name__ = fn.__name__
        self.__qualname__ = fn.__qualname__
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn
        self._source = None

    @property
    def source(self) -> Source:
        if self._source is None:
            self._source = _load_source(self.fn)
        return self._source

    def globals(self) -> dict:
        return _globals_of(self.fn)


class Func(_Compilable):
    """A device function: inlined at every call site."""

    kind = "func"

    def __call__(self, *args, **kwargs):
        raise KaioError(f"@kaiodsl.func {self.__name__} can only be called from a kernel or another func")


class Kernel(_Compilable):
    """A GPU kernel: ``k[grid, block](*args)`` launches; ``ptx()``, ``ir()``, ``compile()`` inspect.
    All of them compile through ``kaiodsl.compiler.compile``."""

    kind = "kernel"

    def __init__(self, fn, *, block_size=None, name: str | None = None, line_info: bool = False):
        from ..compiler import CompileOptions

        super().__init__(fn)
        self.entry_name = name or fn.__name__
        self.block_size = block_size
        self.options = CompileOptions(line_info=line_info)
        sig = inspect.signature(fn)
        g = self.globals()
        self.params = []
        for pname, p in sig.parameters.items():
            if p.annotation is inspect.Parameter.empty:
                raise CompileError(f"kernel parameter '{pname}' needs a type annotation "
                                   f"(e.g. {pname}: kaiodsl.Ptr[kaiodsl.f32] or {pname}: kaiodsl.i32)",
                                   self.param_loc(pname))
            ann = resolve_annotation(p.annotation, g, f"parameter '{pname}' of {fn.__name__}", self.param_loc(pname))
            if not isinstance(ann, (ScalarType, PtrType, ConstType)):
                raise CompileError(f"kernel parameter '{pname}' has annotation {ann!r}; use a kaiodsl scalar "
                                   f"type, Ptr[T] or Const", self.param_loc(pname))
            if isinstance(ann, PtrType) and ann.space != "global":
                raise CompileError(f"kernel parameter '{pname}': only global pointers can be passed to a kernel",
                                   self.param_loc(pname))
            self.params.append((pname, ann, p.default))
        self.arg_names = tuple(n for n, _, _ in self.params)
        self.const_names = frozenset(n for n, a, _ in self.params if isinstance(a, ConstType))

    @property
    def line_info(self) -> bool:
        return self.options.line_info

    def param_loc(self, pname):
        try:
            fdef = self.source.tree
        except KaioError:
            return None
        for a in fdef.args.args:
            if a.arg == pname:
                return self.source.loc(a)
        return None

    def __repr__(self) -> str:
        return f"<kaiodsl.kernel {self.__name__}>"

    def __call__(self, *args, **kwargs):
        raise KaioError(f"launch a kernel with a configuration: {self.__name__}[grid, block](...)")

    def __getitem__(self, cfg):
        try:  # the launcher for this (grid, block) as written, made on the first launch
            return self._launchers[cfg]
        except (AttributeError, KeyError, TypeError):
            pass
        if not isinstance(cfg, tuple) or len(cfg) != 2:
            raise KaioError(f"{self.__name__}[grid, block]: give both the grid and the block, got {cfg!r}")
        return _launcher_class()(self, cfg[0], cfg[1])

    # -- specialization ----------------------------------------------------------------------------
    def check_consts(self, consts: dict) -> dict:
        """Every Const parameter's value (given, else its default), checked against its annotation."""
        out = {}
        for name, ann, default in self.params:
            if not isinstance(ann, ConstType):
                continue
            if name in consts:
                v = consts[name]
            elif default is not inspect.Parameter.empty:
                v = default
            else:
                raise KaioError(f"{self.__name__}: Const parameter '{name}' needs a value (pass {name}=...)")
            out[name] = check_const_value(self.__name__, name, ann, v, self.param_loc(name))
        extra = set(consts) - set(out)
        if extra:
            raise KaioError(f"{self.__name__}: {', '.join(sorted(extra))} "
                            f"{'is not a Const parameter' if len(extra) == 1 else 'are not Const parameters'} "
                            f"(Const parameters: {', '.join(sorted(self.const_names)) or 'none'})")
        return out

    def specialize(self, consts: dict | None = None, arch: str | None = None):
        """The CompiledKernel for these Const values and arch (what the launch path calls)."""
        from ..compiler import compile

        return compile(self, consts, arch)

    def build_ir(self, consts: dict, arch: str):
        """The frontend only: the IR before optimization passes."""
        from ..compiler import build_ir, make_context

        consts = self.check_consts(dict(consts))
        return build_ir(self, make_context(self, consts, arch, self.options))

    # -- inspection ----------------------------------------------------------------------------------
    def ptx(self, arch: str | None = None, **consts) -> str:
        try:
            return self.specialize(consts, arch).ptx
        except KaioError as e:  # the user's frame and this one: no compiler internals
            raise e.with_traceback(None) from None

    def ir(self, arch: str | None = None, optimized: bool = True, **consts) -> str:
        from ..compiler import default_arch
        from ..ir.printer import format_function

        try:
            if optimized:
                return self.specialize(consts, arch).ir_text
            return format_function(self.build_ir(consts, arch or default_arch()))
        except KaioError as e:
            raise e.with_traceback(None) from None

    def compile(self, arch: str | None = None, **consts):
        try:
            return self.specialize(consts, arch)
        except KaioError as e:
            raise e.with_traceback(None) from None


def _launcher_class():
    from ..runtime.launch import Launcher  # the runtime imports lazily: kaiodsl works without a driver

    return Launcher


def kernel(fn=None, *, block_size=None, name: str | None = None, line_info: bool = False):
    """Decorate a function as a GPU kernel.

    block_size: the block shape the kernel is written for -- an int or tuple, the name of a
    Const parameter, or a callable of the Const values. It becomes ``.reqntid`` in the PTX,
    makes ``block_dim`` a compile-time constant, and launches are checked against it.
    line_info: emit ``.file``/``.loc`` for profilers.
    """

    def wrap(f):
        try:
            return Kernel(f, block_size=block_size, name=name, line_info=line_info)
        except KaioError as e:
            raise e.with_traceback(None) from None

    if fn is None:
        return wrap
    try:
        return Kernel(fn, block_size=block_size, name=name, line_info=line_info)
    except KaioError as e:
        raise e.with_traceback(None) from None


def func(fn):
    """Decorate a device function: it is inlined wherever a kernel or func calls it."""
    return Func(fn)
