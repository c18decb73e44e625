"""What a kernel's compiled code depends on, as one hash: the disk-cache key never goes stale.

A kernel's PTX is a function of its source, of every compile-time value it reads (globals,
closure cells, attributes read through chains such as ``cfg.SCALE`` or ``h.f``), of the
device functions and plain Python helpers it calls -- and, recursively, of everything
*those* read -- plus kaiodsl itself. ``Dependencies`` walks that graph:

- ``@kaiodsl.func`` / kernels: the source text the frontend compiles, and each name and
  attribute chain in its AST, resolved against the function's globals and closure.
- plain helpers: their bytecode (what runs), defaults, closure cells, and every global
  their code names (``co_names``), attribute names included, so ``cfg.X`` inside a helper
  is seen.
- values: scalars, numpy scalars and arrays (dtype and bytes), containers, dataclasses,
  enums, classes and objects by their state; user modules by their file text.
- kaiodsl's own modules (``kaiodsl``, ``kaiodsl.ops``, package data) are covered by
  ``compiler_fingerprint()``; libraries (stdlib, site-packages) by name and version.

A value that has no stable fingerprint (an object whose state lives in C: a tensor, a lock,
an iterator) makes the key ``None``: that kernel is then compiled in every process rather than
ever served stale (``unstable`` names the culprit). Like Triton's dependency finder
(python/triton/runtime/jit.py), attribute chains are followed; unlike it, helpers are
followed too.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import functools
import hashlib
import importlib.machinery
import importlib.util
import linecache
import os
import sys
import sysconfig
import types

import numpy as np

from . import __version__

_MAX_ITEMS = 50_000      # values walked per kernel before giving up (a huge object graph)
# C-level objects whose repr says everything about them
_FAITHFUL_REPR = (range, slice, np.dtype, type(Ellipsis), type(NotImplemented))
_FAITHFUL_NAMES = {"torch.dtype", "torch.device", "torch.memory_format", "torch.layout"}


# -- kaiodsl's own sources --------------------------------------------------------------
def _package_roots() -> list:
    """Folders whose files make up the compiler: kaiodsl, kaiodsl.ops, kaiodsl.ptx_templates."""
    roots = []
    for name in ("kaiodsl", "kaiodsl.ops", "kaiodsl.ptx_templates"):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        for loc in (spec.submodule_search_locations or []) if spec else []:
            roots.append(os.path.realpath(loc))
    return sorted(set(roots))


_ROOTS = _package_roots()
_SELF_HASH = None


def compiler_fingerprint() -> str:
    """kaiodsl's version and a hash of every file of the compiler: its Python sources (the ops
    included) and its package data (ptx_templates/*). The simulator and the runtime execute
    and load code but never change it, so they are left out."""
    global _SELF_HASH
    if _SELF_HASH is None:
        _SELF_HASH = hash_tree(_ROOTS)
    return _SELF_HASH


def hash_tree(roots) -> str:
    h = hashlib.sha256(__version__.encode())
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            rel = os.path.relpath(dirpath, root)
            parts = set(rel.split(os.sep))
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            if parts & {"sim", "runtime"}:
                continue
            for f in sorted(filenames):
                if f.endswith((".pyc", ".tmp")):
                    continue
                path = os.path.join(dirpath, f)
                h.update(f"{os.path.basename(root)}/{rel}/{f}".encode())
                with open(path, "rb") as fh:
                    h.update(fh.read())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=4096)
def _is_kaiodsl_file(path: str | None) -> bool:
    if not path:
        return False
    p = os.path.realpath(path)
    return any(p == r or p.startswith(r + os.sep) for r in _ROOTS)


_LIB_DIRS = sorted({os.path.realpath(p) for k in ("stdlib", "platstdlib", "purelib", "platlib")
                    if (p := sysconfig.get_paths().get(k))})


@functools.lru_cache(maxsize=4096)
def _is_library_file(path: str | None) -> bool:
    if not path or path.startswith("<"):
        return False
    p = os.path.realpath(path)
    return any(p.startswith(d + os.sep) for d in _LIB_DIRS) and not _is_kaiodsl_file(p)


def _library_tag(modname: str) -> str:
    top = (modname or "").split(".")[0]
    mod = sys.modules.get(top)
    return f"{modname}@{getattr(mod, '__version__', '')}"


# -- the walk ---------------------------------------------------------------------------
class Dependencies:
    """Feed a kernel and everything it reaches into one sha256; ``digest()`` is None when unstable."""

    def __init__(self):
        self.h = hashlib.sha256()
        self.seen: dict = {}       # id(obj) -> visit index: cycles and shared objects hash as a reference
        self.keep: list = []       # keeps visited objects alive so ids stay unique during the walk
        self.count = 0
        self.unstable: str | None = None

    def digest(self) -> str | None:
        return None if self.unstable else self.h.hexdigest()

    def add(self, label: str, value) -> None:
        """One named value (a Const value, the block size ...)."""
        self._put(label)
        self.value(value)

    def _put(self, *parts) -> None:
        for p in parts:
            self.h.update(str(p).encode())
            self.h.update(b"\x00")

    def _once(self, obj) -> bool:
        """True the first time ``obj`` is met; afterwards its visit index is hashed instead."""
        k = id(obj)
        if k in self.seen:
            self._put("ref", self.seen[k])
            return False
        self.seen[k] = len(self.seen)
        self.keep.append(obj)
        return True

    # a kernel or @func: its source text and what its AST names
    def compilable(self, c) -> None:
        if not self._once(c):
            return
        src = c.source
        self._put("compilable", c.fn.__module__, c.fn.__qualname__, "".join(src.lines))
        if c.kind == "func":
            self._put("defaults")
            self.value(c.fn.__defaults__)
            self.value(c.fn.__kwdefaults__)
        g = c.globals()
        for chain in _free_chains(src.tree):
            if chain[0] in g:
                self.chain(g, chain)

    def chain(self, scope: dict, chain: tuple) -> None:
        """``a.b.c`` read from ``scope``: each module on the way, and the value at its end."""
        obj = scope[chain[0]]
        got = chain[:1]
        for attr in chain[1:]:
            if isinstance(obj, types.ModuleType):
                self._put("via", ".".join(got))
                self.value(obj)
            try:
                nxt = getattr(obj, attr)
            except Exception:  # noqa: BLE001 - e.g. kaiodsl.thread_idx.x outside a kernel
                break
            obj, got = nxt, got + (attr,)
        self._put("name", ".".join(got))
        self.value(obj)

    def value(self, obj, depth: int = 0) -> None:
        self.count += 1
        if self.count > _MAX_ITEMS or depth > 40:
            self._fail(obj, "too large an object graph")
            return
        from .frontend.decorator import _Compilable

        if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
            self._put(type(obj).__name__, repr(obj))  # numpy's float64 is a float: its type name says so
        elif isinstance(obj, np.generic):
            self._put("np", obj.dtype.str, obj.tobytes().hex())
        elif isinstance(obj, np.ndarray):
            self._put("ndarray", obj.dtype.str, obj.shape, hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest())
        elif isinstance(obj, _Compilable):
            self.compilable(obj)
        elif isinstance(obj, types.ModuleType):
            self.module(obj)
        elif isinstance(obj, (tuple, list)):
            self._put(type(obj).__name__, len(obj))
            for x in obj:
                self.value(x, depth + 1)
        elif isinstance(obj, (set, frozenset)):
            self._sorted_items(type(obj).__name__, [(x, None) for x in obj], depth)
        elif isinstance(obj, (dict, types.MappingProxyType)):
            self._sorted_items("dict", list(obj.items()), depth)
        elif isinstance(obj, enum.Enum):
            self._put("enum", type(obj).__qualname__, obj.name)
            self.value(obj.value, depth + 1)
        elif isinstance(obj, types.FunctionType):
            self.function(obj, depth)
        elif isinstance(obj, types.MethodType):
            self._put("method")
            self.value(obj.__func__, depth + 1)
            self.value(obj.__self__, depth + 1)
        elif isinstance(obj, (types.BuiltinFunctionType, types.BuiltinMethodType, types.WrapperDescriptorType,
                              types.MethodWrapperType, types.MethodDescriptorType)):
            self._put("builtin", getattr(obj, "__module__", ""), getattr(obj, "__qualname__", repr(obj)))
            owner = getattr(obj, "__self__", None)
            if owner is not None and not isinstance(owner, types.ModuleType):
                self.value(owner, depth + 1)
        elif isinstance(obj, type):
            self.cls(obj, depth)
        else:
            self.instance(obj, depth)

    def _sorted_items(self, tag, items, depth) -> None:
        """Containers without a stable order: each item's own hash decides its place."""
        parts = []
        for k, v in items:
            sub = Dependencies()
            sub.count, sub.seen, sub.keep = self.count, self.seen, self.keep
            sub.value(k, depth + 1)
            if v is not None:
                sub.value(v, depth + 1)
            self.count = sub.count
            if sub.unstable:
                self.unstable = self.unstable or sub.unstable
            parts.append(sub.h.hexdigest())
        self._put(tag, *sorted(parts))

    @staticmethod
    def _module_kind(mod) -> str:
        name, path = mod.__name__, getattr(mod, "__file__", None)
        if name == "kaiodsl" or name.startswith("kaiodsl.") or _is_kaiodsl_file(path):
            return "kaiodsl"  # compiler_fingerprint covers it
        if path is None or _is_library_file(path) or name in sys.builtin_module_names:
            return "library"
        return "user"

    def _is_user_module(self, mod) -> bool:
        return self._module_kind(mod) == "user"

    def module(self, mod) -> None:
        kind = self._module_kind(mod)
        if kind == "kaiodsl":
            self._put("kaiodsl-module", mod.__name__)
        elif kind == "library":
            self._put("library", _library_tag(mod.__name__))
        elif self._once(mod):
            self._put("module", mod.__name__, _file_text(mod.__file__, vars(mod)))

    def function(self, fn, depth: int) -> None:
        file = fn.__code__.co_filename
        if _is_kaiodsl_file(file):
            self._put("kaiodsl-function", fn.__module__, fn.__qualname__)
            return
        if _is_library_file(file):
            self._put("library-function", _library_tag(fn.__module__ or ""), fn.__qualname__)
            return
        if not self._once(fn):
            return
        self._put("function", fn.__module__, fn.__qualname__)
        _hash_code(self, fn.__code__)
        self.value(fn.__defaults__, depth + 1)
        self.value(fn.__kwdefaults__, depth + 1)
        g = fn.__globals__
        names = sorted(_code_names(fn.__code__))
        for name in names:
            if name in g:
                v = g[name]
                self._put("global", name)
                self.value(v, depth + 1)
                if isinstance(v, types.ModuleType) and self._is_user_module(v):
                    # ``cfg.X`` in a helper: X is among the code's names; the module's text may
                    # not hold X's value (computed at import), so hash the attribute too
                    for attr in names:
                        if attr in vars(v):
                            self._put("global-attr", name, attr)
                            self.value(vars(v)[attr], depth + 1)
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
            try:
                v = cell.cell_contents
            except ValueError:  # not yet assigned
                continue
            self._put("cell", name)
            self.value(v, depth + 1)

    def cls(self, c: type, depth: int) -> None:
        mod = c.__module__ or ""
        file = getattr(sys.modules.get(mod), "__file__", None)
        if mod == "builtins" or mod.startswith("kaiodsl") or _is_kaiodsl_file(file) or _is_library_file(file):
            self._put("class", mod, c.__qualname__)
            return
        if not self._once(c):
            return
        self._put("user-class", mod, c.__qualname__)
        for k in sorted(vars(c)):
            v = vars(c)[k]
            if isinstance(v, (staticmethod, classmethod)):
                v = v.__func__
            elif isinstance(v, property):
                v = (v.fget, v.fset)
            elif (k.startswith("__") and k.endswith("__")) or isinstance(
                    v, (types.MemberDescriptorType, types.GetSetDescriptorType)):
                continue  # Python's bookkeeping (__dict__, slots ...); dunder methods stay
            self._put("attr", k)
            self.value(v, depth + 1)

    def instance(self, obj, depth: int) -> None:
        t = type(obj)
        self.cls(t, depth)
        if dataclasses.is_dataclass(obj):
            for f in dataclasses.fields(obj):
                self._put("field", f.name)
                self.value(getattr(obj, f.name), depth + 1)
            return
        if not _c_level(t):
            if self._once(obj):
                self._sorted_items("state", list(_state(obj).items()), depth)
            return
        if isinstance(obj, _FAITHFUL_REPR) or f"{t.__module__}.{t.__qualname__}" in _FAITHFUL_NAMES:
            self._put("repr", repr(obj))
        else:  # state in C (a tensor, an iterator, a handle): a repr may round or elide it
            self._fail(obj, "its state lives in C, out of kaiodsl's sight")

    def _fail(self, obj, why: str) -> None:
        if self.unstable is None:
            self.unstable = f"{type(obj).__module__}.{type(obj).__qualname__}: {why}"


def _state(obj) -> dict:
    """A Python-level object's state: its __dict__ and __slots__ values."""
    out = dict(getattr(obj, "__dict__", None) or {})
    for klass in type(obj).__mro__[:-1]:
        slots = getattr(klass, "__slots__", ())
        for s in (slots,) if isinstance(slots, str) else slots:
            if s not in ("__dict__", "__weakref__"):
                try:
                    out[s] = getattr(obj, s)
                except AttributeError:
                    pass
    return out


def _c_level(t: type) -> bool:
    """True when a base class other than ``object`` is not written in Python (its state lives in C)."""
    return any(k is not object and not _is_python_class(k) for k in t.__mro__)


def _is_python_class(k: type) -> bool:
    # A class statement makes a heap type (Py_TPFLAGS_HEAPTYPE, 1 << 9); so does a C extension
    # using PyType_FromSpec, which its module (built in, or a shared library) gives away.
    if not k.__flags__ & (1 << 9) or k.__module__ in sys.builtin_module_names:
        return False
    f = getattr(sys.modules.get(k.__module__), "__file__", None)
    return not (f and f.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)))


_CHAINS: dict = {}  # id(tree) -> (tree, chains): a @func's source is walked once per process


def _free_chains(tree) -> list:
    """The sorted name chains of ``tree`` whose head is not one of its parameters."""
    hit = _CHAINS.get(id(tree))
    if hit is not None and hit[0] is tree:
        return hit[1]
    local = {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}
    chains = sorted(c for c in _chains(tree) if c[0] not in local)
    if len(_CHAINS) > 4096:
        _CHAINS.clear()
    _CHAINS[id(tree)] = (tree, chains)
    return chains


def _chains(tree) -> set:
    """Every ``name`` and ``name.attr.attr`` read in ``tree`` (the longest chain of each)."""
    out = set()
    inner = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute):
            inner.add(id(n.value))
    for n in ast.walk(tree):
        if id(n) in inner:
            continue
        parts = []
        cur = n
        while isinstance(cur, ast.Attribute):
            parts.append(cur.attr)
            cur = cur.value
        if isinstance(cur, ast.Name) and (parts or isinstance(n, ast.Name)):
            out.add((cur.id, *reversed(parts)))
    return out


def _code_names(code) -> set:
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _code_names(c)
    return names


def _hash_code(dep: Dependencies, code) -> None:
    """The bytecode that runs, its constants and names (not marshal: its bytes vary by refcount)."""
    dep._put("code", code.co_code.hex(), code.co_names, code.co_varnames, code.co_freevars, code.co_argcount)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            _hash_code(dep, c)
        else:
            dep.value(c)


def _file_text(path: str, module_globals) -> str:
    lines = linecache.getlines(path, module_globals)
    return "".join(lines)
