"""``kernel[grid, block](*args, smem=0, stream=None)``: the one launch path.

A ``Launcher`` is made per ``kernel[grid, block]`` expression, so it does no work
beyond normalizing the dimensions. Per call it splits Const values from runtime
arguments, finds the prepared launch for (backend, Const values) in the
kernel's ``_launch_cache`` and calls it; only the first call per key compiles
(``kernel.specialize``) and loads.
"""

from __future__ import annotations

import numpy as np

from ..errors import ArgumentError, LaunchError
from . import backend as _backend

_STATE = _backend.STATE


def dim3(d, what: str) -> tuple:
    """An int or a 1-3 tuple of positive ints -> a 3-tuple."""
    if type(d) is int and d > 0:
        return (d, 1, 1)
    t = tuple(d) if isinstance(d, (tuple, list)) else (d,)
    if not 1 <= len(t) <= 3 or not all(isinstance(x, (int, np.integer)) and x > 0 for x in t):
        raise LaunchError(f"{what} must be a positive int or a tuple of 1 to 3 positive ints, got {d!r}")
    return tuple(int(x) for x in t) + (1,) * (3 - len(t))


_DIMS: dict = {}  # grid/block value as written -> 3-tuple: a Launcher is built per launch


def _dims(d, what: str) -> tuple:
    try:
        return _DIMS[d]
    except KeyError:
        r = dim3(d, what)
        if len(_DIMS) > 4096:
            _DIMS.clear()
        _DIMS[d] = r
        return r
    except TypeError:  # lists are not hashable
        return dim3(d, what)


def split_args(kernel, args: tuple, kwargs: dict):
    """(consts dict, runtime args tuple) from a call's positional and keyword arguments."""
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
    missing = [n for n in names if n not in bound]
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
        return self.backend.launch(self.compiled, grid, block, args, smem, stream)


def _prepare(kernel, backend, consts: dict):
    compiled = kernel.specialize(consts, backend.arch)
    prep = getattr(backend, "prepare", None)
    if prep is None:
        return _Generic(backend, compiled)
    p = prep(compiled)
    return getattr(p, "fast", p)  # the CUDA backend's generated launch function


def _cache_of(kernel) -> dict:
    cache = kernel.__dict__.setdefault("_launch_cache", {})
    return cache


class Launcher:
    """``kernel[grid, block]``: call it with the kernel's arguments to launch."""

    __slots__ = ("kernel", "grid", "block")

    def __init__(self, kernel, grid, block):
        self.kernel = kernel
        self.grid = _dims(grid, "grid")
        self.block = _dims(block, "block")

    def __call__(self, *args, smem=0, stream=None, **kwargs):
        k = self.kernel
        b = _STATE.backend or _backend.current()
        try:
            cache = k._launch_cache
        except AttributeError:
            cache = _cache_of(k)
        if kwargs or k.const_names:
            consts, args = split_args(k, args, kwargs)
            key = (b, const_key(consts))
        else:
            consts, key = None, b
        entry = cache.get(key)
        if entry is None:
            entry = cache[key] = _prepare(k, b, consts or {})
        return entry(self.grid, self.block, args, smem, stream)

    def compiled(self, *args, **kwargs):
        """The CompiledKernel this call would run (for inspection: .ptx, .registers ...)."""
        b = _backend.current()
        consts, _ = split_args(self.kernel, args, kwargs)
        return self.kernel.specialize(consts, b.arch)

    def __repr__(self) -> str:
        return f"Launcher({getattr(self.kernel, '__name__', '?')}, grid={self.grid}, block={self.block})"
