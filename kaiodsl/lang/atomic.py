"""Atomics on global and shared memory. An atomic whose result is unused becomes ``red``."""

from __future__ import annotations

from ..frontend.builder import Builder
from ..frontend.describe import describe
from ..frontend.values import SharedArray, builtin
from ..ir.node import Node
from ..types import PtrType, f16x2, bf16x2, f32, f64, i32, i64, u32, u64

# Which element types each operation supports (PTX ISA, atom).
_ALLOWED = {
    "add": {i32, u32, u64, f32, f64, f16x2, bf16x2},
    "min": {i32, u32, i64, u64}, "max": {i32, u32, i64, u64},
    "exch": {i32, u32, i64, u64, f32, f64}, "cas": {i32, u32, i64, u64, f32, f64},
    "and": {i32, u32, i64, u64}, "or": {i32, u32, i64, u64}, "xor": {i32, u32, i64, u64},
}


def _atomic(op: str):
    def impl(b: Builder, ptr, index, value, *extra, scope: str = "gpu"):
        p = ptr.base if isinstance(ptr, SharedArray) else ptr
        if not (isinstance(p, Node) and isinstance(p.type, PtrType)):
            b.error(f"atomic_{op}(): the first argument must be a pointer or shared array")
        p = b.ptradd(p, index)
        elem = p.type.elem
        if elem not in _ALLOWED[op]:
            b.error(f"atomic_{op}() on {elem} is not supported; supported: "
                    f"{', '.join(sorted(str(t) for t in _ALLOWED[op]))}")
        if scope not in ("cta", "gpu", "sys"):
            b.error(f"atomic_{op}(): scope must be 'cta', 'gpu' or 'sys', got {describe(scope)}")
        vals = [b.coerce(v, elem, f"atomic_{op} operand") for v in (value, *extra)]
        attrs = {"op": op, "space": p.type.space, "scope": "" if scope == "gpu" else scope}
        return b.emit("atom", elem, (p, *vals), attrs)

    impl.__doc__ = f"Atomically apply '{op}' at ptr[index]; returns the old value."
    return impl


atomic_add = builtin(_atomic("add"), name="atomic_add")
atomic_min = builtin(_atomic("min"), name="atomic_min")
atomic_max = builtin(_atomic("max"), name="atomic_max")
atomic_exch = builtin(_atomic("exch"), name="atomic_exch")
atomic_and = builtin(_atomic("and"), name="atomic_and")
atomic_or = builtin(_atomic("or"), name="atomic_or")
atomic_xor = builtin(_atomic("xor"), name="atomic_xor")
_cas = _atomic("cas")


@builtin
def atomic_cas(b: Builder, ptr, index, compare, value, scope: str = "gpu"):
    """If ptr[index] == compare, store value; returns the old value (atom.cas)."""
    return _cas(b, ptr, index, compare, value, scope=scope)
