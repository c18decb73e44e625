"""Compile-time values the frontend handles besides IR nodes and Python constants."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import KaioError
from ..ir.node import Node
from ..types import PtrType, ScalarType, bf16, bf16_bits


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
            return np.uint16(bf16_bits(self.value))
        return self.type.np_dtype.type(self.value)


def typed_constant(t: ScalarType, value) -> TypedScalar:
    return TypedScalar(t, value)


class Builtin:
    """A kaiodsl function usable inside kernels; ``impl(b, *args, **kwargs)`` builds its IR."""

    def __init__(self, name: str, impl, doc: str | None = None):
        self.name = name
        self.impl = impl
        self.__doc__ = doc or impl.__doc__
        self.__name__ = name

    def __call__(self, *args, **kwargs):
        raise KaioError(f"kaiodsl.{self.name}() can only be called inside a @kaiodsl.kernel or @kaiodsl.func")

    def __kaio_call__(self, fx, args, kwargs):
        return self.impl(fx.b, *args, **kwargs)

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
