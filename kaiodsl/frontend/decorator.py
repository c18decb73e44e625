"""``@kaiodsl.kernel`` and ``@kaiodsl.func``: from a Python function to a specialized CompiledKernel."""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import os
import textwrap
import threading

from .. import __version__
from ..compiled import CompiledKernel, ParamInfo
from ..errors import CompileError, KaioError
from ..ir.node import Function, Node
from ..types import ConstType, PtrType, ScalarType, bool_, f32, i32
from .builder import Builder
from .visitor import Source, Visitor

DEFAULT_ARCH = "sm_80"
_PY_ANNOTATIONS = {int: i32, float: f32, bool: bool_}


def _load_source(fn) -> Source:
    try:
        lines, first = inspect.getsourcelines(fn)
        file = inspect.getsourcefile(fn) or "<unknown>"
    except (OSError, TypeError) as e:
        raise KaioError(f"cannot read the source of {fn.__qualname__}: {e}") from None
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


def _resolve_annotation(ann, globals_, where: str):
    if isinstance(ann, str):
        try:
            ann = eval(ann, globals_)  # annotations from `from __future__ import annotations`
        except Exception as e:
            raise KaioError(f"cannot resolve the annotation {ann!r} of {where}: {e}") from None
    return _PY_ANNOTATIONS.get(ann, ann)


class _Compilable:
    """What kernels and device functions share: source, signature, dependency hashing."""

    def __init__(self, fn):
        self.fn = fn
        self.__name__ = fn.__name__
        self.__qualname__ = fn.__qualname__
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn
        self._source = None
        self._lock = threading.Lock()

    @property
    def source(self) -> Source:
        if self._source is None:
            self._source = _load_source(self.fn)
        return self._source

    def globals(self) -> dict:
        return _globals_of(self.fn)

    def source_hash(self, seen=None) -> str:
        """Hash of this function's source, the compile-time values it names (globals and closure
        cells: kernels made by a factory share their source text), and recursively of the device
        functions and Python helpers it calls."""
        seen = set() if seen is None else seen
        seen.add(id(self))
        h = hashlib.sha256(inspect.getsource(self.fn).encode())
        h.update(self.fn.__qualname__.encode())
        g = self.globals()
        for name in sorted({n.id for n in ast.walk(self.source.tree) if isinstance(n, ast.Name)}):
            if name not in g:
                continue
            obj = g[name]
            if isinstance(obj, _Compilable):
                if id(obj) not in seen:
                    h.update(obj.source_hash(seen).encode())
            elif inspect.isfunction(obj):
                if id(obj) not in seen:
                    seen.add(id(obj))
                    try:
                        h.update(inspect.getsource(obj).encode())
                    except (OSError, TypeError):
                        h.update(obj.__qualname__.encode())
            else:
                stable = _stable_repr(obj)
                if stable is not None:
                    h.update(f"{name}={stable}".encode())
        return h.hexdigest()


def _stable_repr(obj):
    """repr of a compile-time value that can change what a kernel compiles to, else None."""
    from ..types import Type
    from .values import Builtin

    if isinstance(obj, (int, float, bool, str, bytes, type(None), Type)):
        return repr(obj)
    if isinstance(obj, Builtin):  # e.g. a closure over kaiodsl.sqrt vs kaiodsl.rsqrt
        return f"builtin:{obj.name}"
    if inspect.ismodule(obj):
        return f"module:{obj.__name__}"
    if isinstance(obj, (tuple, list, frozenset)) and len(obj) < 4096:
        parts = [_stable_repr(x) for x in obj]
        return None if None in parts else f"{type(obj).__name__}({','.join(parts)})"
    if isinstance(obj, dict) and len(obj) < 4096:
        parts = [(_stable_repr(k), _stable_repr(v)) for k, v in obj.items()]
        return None if any(None in p for p in parts) else repr(sorted(parts))
    return None


class Func(_Compilable):
    """A device function: inlined at every call site."""

    def __call__(self, *args, **kwargs):
        raise KaioError(f"@kaiodsl.func {self.__name__} can only be called from a kernel or another func")

    def inline(self, caller: Visitor, args, kwargs, node):
        if caller.funcs_depth > 32:
            caller.error(f"call depth limit reached inlining {self.__name__} (recursion is not supported)", node)
        sig = inspect.signature(self.fn)
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError as e:
            caller.error(f"{self.__name__}(): {e}", node)
        bound.apply_defaults()
        g = self.globals()
        b = caller.b
        env = {}
        for name, value in bound.arguments.items():
            ann = sig.parameters[name].annotation
            if ann is not inspect.Parameter.empty:
                ann = _resolve_annotation(ann, g, f"parameter '{name}' of {self.__name__}")
                if isinstance(ann, ScalarType):
                    value = b.coerce(value, ann, f"argument '{name}' of {self.__name__}()")
                elif isinstance(ann, PtrType):
                    if not (isinstance(value, Node) and value.type == ann):
                        caller.error(f"argument '{name}' of {self.__name__}() must be {ann}, got "
                                     f"{caller._describe(value)}", node)
                elif isinstance(ann, ConstType) and isinstance(value, Node):
                    caller.error(f"argument '{name}' of {self.__name__}() is Const: it needs a compile-time "
                                 f"value, got {caller._describe(value)}", node)
            env[name] = value
        const_names = {n for n, p in sig.parameters.items()
                       if isinstance(_resolve_annotation(p.annotation, g, n), ConstType)}
        v = Visitor(b, self.source, env, g, const_names, caller.funcs_depth + 1)
        v.returns = []
        saved_loc = b.loc
        v.visit_body(self.source.tree.body)
        if b.block is not None:
            v.returns.append((b.block, {"$ret": None}))
        v.env = {}
        v.merge(v.returns, "ret")
        b.loc = saved_loc
        return v.env.get("$ret") if b.block is not None else None


class Kernel(_Compilable):
    """A GPU kernel: ``k[grid, block](*args)`` launches; ``ptx()``, ``ir()``, ``compile()`` inspect."""

    def __init__(self, fn, *, block_size=None, name: str | None = None, line_info: bool = False):
        super().__init__(fn)
        self.entry_name = name or fn.__name__
        self.block_size = block_size
        self.line_info = line_info
        sig = inspect.signature(fn)
        g = self.globals()
        self.params = []
        for pname, p in sig.parameters.items():
            if p.annotation is inspect.Parameter.empty:
                raise CompileError(f"kernel parameter '{pname}' needs a type annotation "
                                   f"(e.g. {pname}: kaiodsl.Ptr[kaiodsl.f32] or {pname}: kaiodsl.i32)",
                                   self._param_loc(pname))
            ann = _resolve_annotation(p.annotation, g, f"parameter '{pname}' of {fn.__name__}")
            if not isinstance(ann, (ScalarType, PtrType, ConstType)):
                raise CompileError(f"kernel parameter '{pname}' has annotation {ann!r}; use a kaiodsl scalar "
                                   f"type, Ptr[T] or Const", self._param_loc(pname))
            if isinstance(ann, PtrType) and ann.space != "global":
                raise CompileError(f"kernel parameter '{pname}': only global pointers can be passed to a kernel",
                                   self._param_loc(pname))
            self.params.append((pname, ann, p.default))
        self.arg_names = tuple(n for n, _, _ in self.params)
        self.const_names = frozenset(n for n, a, _ in self.params if isinstance(a, ConstType))
        self._specs: dict = {}

    def _param_loc(self, pname):
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
    def _check_consts(self, consts: dict) -> dict:
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
            inner = ann.inner
            if inner in (int, float, bool) and not isinstance(v, inner):
                raise KaioError(f"{self.__name__}: Const parameter '{name}' must be {inner.__name__}, got {v!r}")
            out[name] = v
        extra = set(consts) - set(out)
        if extra:
            raise KaioError(f"{self.__name__}: {', '.join(sorted(extra))} "
                            f"{'is not a Const parameter' if len(extra) == 1 else 'are not Const parameters'} "
                            f"(Const parameters: {', '.join(sorted(self.const_names)) or 'none'})")
        return out

    def cache_key(self, consts: dict, arch: str, opts: dict) -> str:
        sig = [(n, str(a)) for n, a, _ in self.params]
        payload = json.dumps({"src": self.source_hash(), "name": self.entry_name, "sig": sig, "consts": _const_repr(consts),
                              "arch": arch, "opts": opts, "block": repr(self.block_size),
                              "version": __version__, "compiler": compiler_fingerprint()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def specialize(self, consts: dict | None = None, arch: str | None = None) -> CompiledKernel:
        """The CompiledKernel for these Const values and arch (memory cache, disk cache, then compile)."""
        arch = arch or default_arch()
        consts = self._check_consts(dict(consts or {}))
        mkey = (_const_repr(consts), arch)
        hit = self._specs.get(mkey)
        if hit is not None:
            return hit
        with self._lock:
            hit = self._specs.get(mkey)
            if hit is not None:
                return hit
            opts = {"line_info": self.line_info}
            key = self.cache_key(consts, arch, opts)
            disk = _disk_cache()
            payload = disk.load(key) if disk is not None else None
            if payload is not None:
                compiled = CompiledKernel.from_payload(payload)
            else:
                compiled = self._compile(consts, arch, key)
                if disk is not None:
                    disk.store(key, compiled.to_payload())
            self._specs[mkey] = compiled
            return compiled

    def _compile(self, consts: dict, arch: str, key: str) -> CompiledKernel:
        from ..codegen.ptx import emit_module
        from ..ir.printer import format_function
        from ..passes import run_pipeline

        fn = self.build_ir(consts, arch)
        run_pipeline(fn)
        ptx = emit_module(fn, arch, line_info=self.line_info)
        params = tuple(ParamInfo(p.attrs["name"], p.type, p.attrs.get("writable", False)) for p in fn.params)
        static = sum(d.size for d in fn.shared if d.size is not None)
        return CompiledKernel(name=fn.name, ptx=ptx, arch=arch, params=params, key=key,
                              static_shared_bytes=static,
                              uses_dynamic_shared=any(d.size is None for d in fn.shared),
                              required_block=fn.required_block, ir_text=format_function(fn),
                              source_file=self.source.file)

    def build_ir(self, consts: dict, arch: str) -> Function:
        """Run the frontend only: the IR before optimization passes."""
        src = self.source
        fn = Function(self.entry_name, [], [], source_file=src.file)
        b = Builder(fn, arch)
        b.block = b.new_block("entry")
        b.block.name = "entry"
        env = {}
        k = 0
        for name, ann, _ in self.params:
            if isinstance(ann, ConstType):
                env[name] = consts[name]
                continue
            p = b.emit("param", ann, (), {"index": k, "name": name}, self._param_loc(name))
            fn.params.append(p)
            env[name] = p
            k += 1
        fn.required_block = self._required_block(consts)
        g = self.globals()
        v = Visitor(b, src, env, g, self.const_names)
        v.kernel_block = fn.required_block
        try:
            v.visit_body(src.tree.body)
        except RecursionError:
            raise CompileError("kernel too deeply nested to compile", src.loc(src.tree)) from None
        if b.block is not None:
            b.terminate("ret")
        return fn

    def _required_block(self, consts):
        bs = self.block_size
        if bs is None:
            return None
        if callable(bs):
            bs = bs(**consts)
        elif isinstance(bs, str):
            bs = consts[bs]
        elif isinstance(bs, tuple):
            bs = tuple(consts[x] if isinstance(x, str) else x for x in bs)
        bs = (bs,) if isinstance(bs, int) else tuple(bs)
        return tuple(bs) + (1,) * (3 - len(bs))

    # -- inspection ----------------------------------------------------------------------------------
    def ptx(self, arch: str | None = None, **consts) -> str:
        try:
            return self.specialize(consts, arch).ptx
        except KaioError as e:  # the user's frame and this one: no compiler internals
            raise e.with_traceback(None) from None

    def ir(self, arch: str | None = None, optimized: bool = True, **consts) -> str:
        from ..ir.printer import format_function

        try:
            if optimized:
                return self.specialize(consts, arch).ir_text
            return format_function(self.build_ir(self._check_consts(consts), arch or default_arch()))
        except KaioError as e:
            raise e.with_traceback(None) from None

    def compile(self, arch: str | None = None, **consts) -> CompiledKernel:
        try:
            return self.specialize(consts, arch)
        except KaioError as e:
            raise e.with_traceback(None) from None


_SELF_HASH = None


def compiler_fingerprint() -> str:
    """kaiodsl's version plus a hash of its own sources, so that an edited compiler misses the disk cache."""
    global _SELF_HASH
    if _SELF_HASH is None:
        from pathlib import Path

        from ..ptx_templates import data_files

        h = hashlib.sha256(__version__.encode())
        root = Path(__file__).resolve().parent.parent
        for path in sorted([*root.rglob("*.py"), *data_files()]):
            if path.is_file() and "runtime" not in path.parts and "sim" not in path.parts:
                h.update(path.name.encode())
                h.update(path.read_bytes())
        _SELF_HASH = h.hexdigest()[:16]
    return _SELF_HASH


def _launcher_class():
    from ..runtime.launch import Launcher  # the runtime imports lazily: kaiodsl works without a driver

    return Launcher


def _const_repr(consts: dict) -> tuple:
    return tuple(sorted((k, f"{type(v).__name__}:{v!r}") for k, v in consts.items()))


def _disk_cache():
    try:
        from ..runtime.cache import default_cache
    except ImportError:
        return None
    return default_cache()


def default_arch() -> str:
    """The current backend's target: the device's arch, the simulator's, else sm_80."""
    env = os.environ.get("KAIODSL_ARCH")
    if env:
        return env
    try:
        from ..runtime import backend
    except ImportError:
        return DEFAULT_ARCH
    chosen = backend.STATE.backend
    if chosen is not None:
        return chosen.arch if chosen.name == "cuda" else DEFAULT_ARCH
    if os.environ.get("KAIODSL_BACKEND", "auto") in ("auto", "cuda") and backend.gpu_available():
        return backend.current().arch
    return DEFAULT_ARCH


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
