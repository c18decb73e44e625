"""``kernel[grid, block](*args, smem=0, stream=None, cluster=None, pdl=False)``: the one launch path.

``kernel[grid, block]`` returns the kernel's cached ``Launcher`` for that
(grid, block) as written, so a repeated expression costs a dict lookup. A call
binds the arguments (Const values apart, omitted parameters from their
defaults), finds the prepared launch for (backend, Const values) in the
kernel's ``_launch_cache`` and calls it; only the first call per key compiles
(``kernel.specialize``) and loads. A kernel with no Const parameters and no
defaults skips the binding: its Launcher remembers the prepared launch of the
backend it last ran on.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np

from ..errors import ArgumentError, KaioError, LaunchError
from . import backend as _backend

_STATE = _backend.STATE
_NO_BACKEND = object()
_MAX_LAUNCHERS = 1024  # per kernel: grids computed from sizes vary; keep the table bounded


def dim3(d, what: str) -> tuple:
    """An int or a 1-3 tuple of positive ints -> a 3-tuple."""
    if type(d) is int and d > 0:
        return (d, 1, 1)
    t = tuple(d) if isinstance(d, (tuple, list)) else (d,)
    if not 1 <= len(t) <= 3 or not all(isinstance(x, (int, np.integer)) and x > 0 for x in t):
        raise LaunchError(f"{what} must be a positive int or a tuple of 1 to 3 positive ints, got {d!r}")
    return tuple(int(x) for x in t) + (1,) * (3 - len(t))


_DIMS: dict = {}  # grid/block as written -> the one 3-tuple object (the fast path compares by identity)


def _dims(d, what: str) -> tuple:
    try:
        return _DIMS[d]
    except KeyError:
        r = dim3(d, what)
        if len(_DIMS) > 4096:
            _DIMS.clear()
        r = _DIMS.setdefault(d, r)
        return r
    except TypeError:  # lists are not hashable
        return dim3(d, what)


@dataclass(frozen=True)
class LaunchConfig:
    """What cuLaunchKernelEx adds to a launch: cluster dimensions, programmatic dependent launch."""

    cluster: tuple = (1, 1, 1)
    pdl: bool = False

    @property
    def cluster_size(self) -> int:
        return self.cluster[0] * self.cluster[1] * self.cluster[2]


PORTABLE_CLUSTER, MAX_CLUSTER = 8, 16  # CUDA programming guide, "Thread Block Clusters"


def launch_config(name: str, grid: tuple, cluster, pdl, arch: str) -> LaunchConfig:
    """The launch options checked against the rules, before anything is compiled or launched."""
    from ..arch import at_least

    c = dim3(cluster, "cluster") if cluster is not None else (1, 1, 1)
    if not isinstance(pdl, bool):
        raise LaunchError(f"{name}: pdl must be True or False, got {pdl!r}")
    if (c != (1, 1, 1) or pdl) and not at_least(arch, 90):
        what = f"cluster={c}" if c != (1, 1, 1) else "pdl=True"
        raise LaunchError(f"{name}: {what} needs sm_90 or newer; this backend targets {arch}")
    for axis, g, n in zip("xyz", grid, c):
        if g % n:
            raise LaunchError(f"{name}: grid.{axis}={g} is not a multiple of cluster.{axis}={n} "
                              f"(the grid must be whole clusters)")
    size = c[0] * c[1] * c[2]
    if size > MAX_CLUSTER:
        raise LaunchError(f"{name}: cluster={c} has {size} CTAs; at most {PORTABLE_CLUSTER} (portable) "
                          f"or {MAX_CLUSTER} (non-portable, sm_90) are allowed")
    return LaunchConfig(c, pdl)


def defaults_of(kernel) -> dict:
    """name -> default of every parameter whose kernel signature has one (Const or runtime)."""
    d = kernel.__dict__.get("_arg_defaults")
    if d is None:
        fn = getattr(kernel, "__wrapped__", None)
        d = {}
        if fn is not None:
            d = {n: p.default for n, p in inspect.signature(fn).parameters.items()
                 if p.default is not inspect.Parameter.empty and n in kernel.arg_names}
        kernel.__dict__["_arg_defaults"] = d
    return d


def split_args(kernel, args: tuple, kwargs: dict):
    """(consts dict, runtime args tuple) from a call's positional and keyword arguments.

    Parameters left out take their signature defaults; Const values always come back
    complete, so equal specializations share one cache key.
    """
    names = kernel.arg_names
    name = getattr(kernel, "__name__", "kernel")
    if len(args) > len(names):
        raise ArgumentError(f"{name}() takes {len(names)} argument(s) ({', '.join(names)}), "
                            f"got {len(args)} positional")
    bound = dict(zip(names, args))
    for k, v in kwargs.items():
        if k not in names:
            raise ArgumentError(f"{name}() has no parameter '{k}' (parameters: {', '.join(names)})")
        if k in bound:
            raise ArgumentError(f"{name}() got two values for '{k}'")
        bound[k] = v
    if len(bound) < len(names):
        defaults = defaults_of(kernel)
        missing = []
        for n in names:
            if n not in bound:
                if n in defaults:
                    bound[n] = defaults[n]
                else:
                    missing.append(n)
        if missing:
            raise ArgumentError(f"{name}() is missing argument(s): {', '.join(missing)}")
    consts = {n: bound[n] for n in names if n in kernel.const_names}
    runtime = tuple(bound[n] for n in names if n not in kernel.const_names)
    return consts, runtime


def const_key(consts: dict):
    key = tuple(consts.items())
    try:
        hash(key)
    except TypeError:  # lists, dicts, ...: their repr is the identity that matters to codegen
        key = repr(key)
    return key


class _Generic:
    """A backend without ``prepare``: call its ``launch`` with the compiled kernel."""

    __slots__ = ("backend", "compiled")

    def __init__(self, backend, compiled):
        self.backend, self.compiled = backend, compiled

    def __call__(self, grid, block, args, smem, stream):
        self.backend.launch(self.compiled, grid, block, args, smem, stream)


def _prepare(kernel, backend, consts: dict) -> tuple:
    """(first, fallback): call first; if it returns NotImplemented, nothing ran: call fallback.

    The CUDA backend's first tier is the native launcher (native.py) where it can run,
    its fallback the generated Python launch function (fastpath.py).
    """
    compiled = kernel.specialize(consts, backend.arch)
    prep = getattr(backend, "prepare", None)
    if prep is None:
        g = _Generic(backend, compiled)
        return g, g
    p = prep(compiled)
    return p.entry, p.fast


def _is_plain(kernel) -> bool:
    """Positional arguments are the runtime arguments as they are: no Const, no defaults."""
    return not kernel.const_names and not defaults_of(kernel)


class Launcher:
    """``kernel[grid, block]``: call it with the kernel's arguments to launch.

    One per (kernel, grid, block as written), made once: ``Launcher(k, g, b)`` returns
    the cached one. Immutable but for ``_memo`` = (backend, prepared launch), swapped
    whole so that threads never see half of it.
    """

    __slots__ = ("kernel", "grid", "block", "_memo", "_plain")
    # _memo = (backend, first tier, fallback tier): see _prepare.

    def __new__(cls, kernel, grid, block):
        try:
            return kernel._launchers[grid, block]
        except AttributeError:
            table = kernel.__dict__.setdefault("_launchers", {})
        except (KeyError, TypeError):
            table = kernel._launchers
        self = object.__new__(cls)
        self.kernel = kernel
        self.grid = _dims(grid, "grid")
        self.block = _dims(block, "block")
        self._memo = (_NO_BACKEND, None, None)  # never `is` a backend: the first call takes the slow path
        self._plain = _is_plain(kernel)
        try:
            if len(table) >= _MAX_LAUNCHERS:
                table.clear()
            table[grid, block] = self
        except TypeError:  # a list grid or block: not cached
            pass
        return self

    def __call__(self, *args, smem=0, stream=None, cluster=None, pdl=False, **kwargs):
        try:
            if cluster is not None or pdl:  # cuLaunchKernelEx; ordinary launches keep the fast path below
                return self._launch_ex(args, kwargs, smem, stream, cluster, pdl)
            memo = self._memo
            if memo[0] is _STATE.backend and not kwargs:
                if memo[1](self.grid, self.block, args, smem, stream) is NotImplemented:
                    memo[2](self.grid, self.block, args, smem, stream)
                return
            self._launch(args, kwargs, smem, stream)
        except KaioError as e:  # the user's frame and this one: no runtime or compiler internals
            raise e.with_traceback(None) from None

    def _launch(self, args, kwargs, smem, stream):
        k = self.kernel
        b = _STATE.backend or _backend.current()
        cache = k.__dict__.get("_launch_cache")
        if cache is None:
            cache = k.__dict__.setdefault("_launch_cache", {})
        if self._plain and not kwargs:
            consts, key = None, b
        else:
            consts, args = split_args(k, args, kwargs)
            key = (b, const_key(consts)) if consts else b
        entry = cache.get(key)
        if entry is None:
            entry = cache[key] = _prepare(k, b, consts or {})
        if self._plain:
            self._memo = (b, *entry)
        if entry[0](self.grid, self.block, args, smem, stream) is NotImplemented:
            entry[1](self.grid, self.block, args, smem, stream)

    def _launch_ex(self, args, kwargs, smem, stream, cluster, pdl):
        b = _STATE.backend or _backend.current()
        name = getattr(self.kernel, "__name__", "kernel")
        cfg = launch_config(name, self.grid, cluster, pdl, b.arch)
        consts, args = split_args(self.kernel, args, kwargs)
        b.launch_ex(self.kernel.specialize(consts, b.arch), self.grid, self.block, args, smem, stream, cfg)

    def compiled(self, *args, **kwargs):
        """The CompiledKernel this call would run (for inspection: .ptx, .registers ...)."""
        b = _backend.current()
        try:
            consts, _ = split_args(self.kernel, args, kwargs)
            return self.kernel.specialize(consts, b.arch)
        except KaioError as e:
            raise e.with_traceback(None) from None

    def __repr__(self) -> str:
        return f"Launcher({getattr(self.kernel, '__name__', '?')}, grid={self.grid}, block={self.block})"
