"""Compile-time values the frontend handles besides IR nodes and Python constants."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np

from ..errors import KaioError
from ..ir.node import Node
from ..types import PtrType, ScalarType, Type, bf16
from .describe import describe


@dataclass(frozen=True)
class Undefined:
    """A name that is not defined on every path reaching this point."""

    name: str
    reason: str


@dataclass(frozen=True)
class TypedScalar:
    """``kaiodsl.f16(1.5)`` outside a kernel: a value with an explicit kaiodsl type."""

    type: ScalarType
    value: object

    def numpy(self):
        if self.type == bf16:
            f = np.array(self.value, np.float32).view(np.uint32)
            return np.uint16((f + 0x7FFF + ((f >> 16) & 1)) >> 16)
        return self.type.np_dtype.type(self.value)


def typed_constant(t: ScalarType, value) -> TypedScalar:
    return TypedScalar(t, value)


class Builtin:
    """A kaiodsl function usable inside kernels; ``impl(b, *args, **kwargs)`` builds its IR.

    Arguments are bound against ``impl``'s signature (without ``b``) before it runs, so a wrong
    call is reported with the user-visible arity: ``kaiodsl.exp() takes 1 argument (2 given)``.
    """

    def __init__(self, name: str, impl, doc: str | None = None):
        self.name = name
        self.impl = impl
        self.__doc__ = doc or impl.__doc__
        self.__name__ = name
        params = list(inspect.signature(impl).parameters.values())[1:]  # drop the Builder
        self.signature = inspect.Signature(params)

    def __call__(self, *args, **kwargs):
        raise KaioError(f"kaiodsl.{self.name}() can only be called inside a @kaiodsl.kernel or @kaiodsl.func")

    def usage(self) -> str:
        """``kaiodsl.shfl_down(value, lane, mask=0xffffffff, width=32)``."""
        parts = []
        for p in self.signature.parameters.values():
            if p.kind is p.VAR_POSITIONAL:
                parts.append(f"*{p.name}")
            elif p.kind is p.VAR_KEYWORD:
                parts.append(f"**{p.name}")
            elif p.default is p.empty:
                parts.append(p.name)
            else:
                d = p.default
                shown = (f"0x{d:X}" if isinstance(d, int) and not isinstance(d, bool) and d > 0xFFFF else
                         str(d) if isinstance(d, Type) else repr(d))
                parts.append(f"{p.name}={shown}")
        return f"kaiodsl.{self.name}({', '.join(parts)})"

    def arity_error(self, args, kwargs, err: TypeError) -> str:
        ps = list(self.signature.parameters.values())
        pos = [p for p in ps if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        need = [p for p in pos if p.default is p.empty]
        names = {p.name for p in ps if p.kind is not p.VAR_POSITIONAL}
        unknown = [k for k in kwargs if k not in names]
        given = len(args) + sum(1 for k in kwargs if k in names)
        if unknown:
            what = f"has no argument named '{unknown[0]}'"
        elif any(p.name in kwargs for p in pos[:len(args)]):
            what = f"got two values for '{next(p.name for p in pos[:len(args)] if p.name in kwargs)}'"
        else:
            variadic = any(p.kind is p.VAR_POSITIONAL for p in ps)
            lo, hi = len(need), len(pos)
            count = (f"at least {lo}" if variadic else f"{lo}" if lo == hi else f"{lo} to {hi}")
            plural = "s" if (hi != 1 or variadic) else ""
            missing = [p.name for p in need if p.name not in kwargs][len(args):]
            what = f"takes {count} argument{plural} ({given} given)"
            if missing and given < lo:
                what += f"; missing {', '.join(repr(m) for m in missing)}"
        return f"kaiodsl.{self.name}() {what}; call it as {self.usage()}"

    def __kaio_call__(self, fx, args, kwargs):
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as e:
            fx.error(self.arity_error(args, kwargs, e))
        try:
            return self.impl(fx.b, *args, **kwargs)
        except KaioError:
            raise
        except (TypeError, ValueError, AttributeError, KeyError, IndexError, ZeroDivisionError,
                OverflowError):  # an argument of a kind the builtin does not check for by name
            shown = [describe(a) for a in args] + [f"{k}={describe(v)}" for k, v in kwargs.items()]
            fx.error(f"kaiodsl.{self.name}() cannot take ({', '.join(shown)}); call it as {self.usage()} "
                     f"(see docs/language.md)")

    def __kaio_describe__(self) -> str:
        return f"the builtin kaiodsl.{self.name}"

    def __repr__(self) -> str:
        return f"<kaiodsl builtin {self.name}>"


def builtin(fn=None, *, name: str | None = None):
    """Decorator turning ``impl(b, ...)`` into a Builtin named after the function."""

    def wrap(f):
        return Builtin(name or f.__name__.rstrip("_"), f)

    return wrap(fn) if fn is not None else wrap


class SharedArray:
    """A shared-memory array: a 32-bit base address, an element type and a shape.

    ``a[i, j]`` loads, ``a[i, j] = v`` stores, ``a[i]`` on a 2-D array is a row view,
    ``a.ptr(i, j)`` is the element's shared address (for ldmatrix, cp.async).
    """

    def __init__(self, base: Node, elem: ScalarType, shape: tuple, strides: tuple | None = None):
        self.base = base
        self.elem = elem
        self.shape = tuple(shape)
        if strides is None:
            strides, acc = [], 1
            for dim in reversed(self.shape):
                strides.append(acc)
                acc *= dim if dim is not None else 1
            strides = tuple(reversed(strides))
        self.strides = tuple(strides)

    @property
    def ptr_type(self) -> PtrType:
        return PtrType(self.elem, "shared")

    def __repr__(self) -> str:
        return f"SharedArray({self.elem}, {self.shape})"

    def __kaio_describe__(self) -> str:
        return f"a shared array of {self.elem} with shape {self.shape}"


class StaticRange:
    """What ``kaiodsl.static_range`` returns: a compile-time list of loop values."""

    def __init__(self, values):
        self.values = list(values)

    def __kaio_describe__(self) -> str:
        return f"a static_range of {len(self.values)} values (use it in a for loop)"
