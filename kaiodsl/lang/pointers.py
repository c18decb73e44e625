"""Pointer reinterpretation: view a pointer's memory as another element type."""

from __future__ import annotations

from ..frontend.builder import Builder
from ..frontend.describe import describe
from ..frontend.values import SharedArray, builtin
from ..ir.node import Node
from ..types import PtrType, ScalarType


@builtin
def ptr_cast(b: Builder, ptr, dtype):
    """The same address as a pointer to ``dtype`` (same state space), e.g. to load 16 bytes of f16
    as four u32 with ``kaiodsl.load(kaiodsl.ptr_cast(p, kaiodsl.u32), 0, vec=4)``."""
    if isinstance(ptr, SharedArray):
        ptr = ptr.base
    if not (isinstance(ptr, Node) and isinstance(ptr.type, PtrType)):
        b.error(f"ptr_cast(): needs a pointer, got {describe(ptr)}"[:120])
    if not isinstance(dtype, ScalarType) or dtype.is_bool:
        b.error(f"ptr_cast(): dtype must be a kaiodsl scalar type, got {describe(dtype)}")
    t = PtrType(dtype, ptr.type.space)
    return ptr if t == ptr.type else b.emit("bitcast", t, (ptr,))
