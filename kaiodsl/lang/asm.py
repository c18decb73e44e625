"""Inline PTX: the escape hatch, with typed outputs and inputs."""

from __future__ import annotations

from ..frontend.builder import Builder
from ..frontend.describe import describe
from ..frontend.values import builtin
from ..types import ScalarType, TupleType, void


@builtin
def asm(b: Builder, template: str, outputs, *inputs, volatile: bool = True):
    """Emit inline PTX. ``template`` names the result as ``{out}`` (or ``{out0}``, ``{out1}``...
    for a tuple of outputs) and the inputs as ``{0}``, ``{1}``, ...; ``outputs`` is a type, a tuple
    of types, or None. Inputs are converted like function arguments; registers are chosen by kaiodsl.

        hi = kaiodsl.asm("mul.hi.u32 {out}, {0}, {1};", kaiodsl.u32, a, b)
    """
    if not isinstance(template, str):
        b.error("asm(): the template must be a compile-time string")
    if outputs is None:
        t = void
    elif isinstance(outputs, ScalarType):
        t = outputs
    elif isinstance(outputs, tuple) and all(isinstance(o, ScalarType) for o in outputs):
        t = TupleType(outputs)
    else:
        b.error(f"asm(): outputs must be a kaiodsl type, a tuple of types or None, got {describe(outputs)}")
    vals = [b.value(v) for v in inputs]
    for i in range(len(vals)):
        if "{%d}" % i not in template:
            b.error(f"asm(): input {i} is not used in the template (write {{{i}}})")
    return b.emit("asm", t, vals, {"template": template})
