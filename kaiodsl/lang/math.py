"""Math functions. f32 ``/`` and ``sqrt`` are IEEE-exact; approximate forms live in ``kaiodsl.fast``.

Transcendentals use the special-function unit (PTX *.approx) with range reduction
where the raw instruction loses accuracy; accuracy per function is in docs/language.md.
f16/bf16 inputs are computed in f32 and rounded back; f64 supports the exact ops only.
"""

from __future__ import annotations

import math as _m

from ..frontend.builder import Builder, PyConst
from ..frontend.describe import describe
from ..frontend.values import builtin
from ..ir.node import Node
from ..types import ScalarType, f16, bf16, f32, f64

LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453


def _float_arg(b: Builder, x, name: str, f64_ok: bool):
    if isinstance(x, PyConst):
        x = b.const(f32, float(x))
    if not isinstance(x, Node) or not isinstance(x.type, ScalarType):
        b.error(f"{name}() needs a number, got {describe(x)}")
    t = x.type
    if t.is_int:
        x = b.convert(x, f32)
        t = f32
    if t in (f16, bf16):
        return b.convert(x, f32), t
    if t == f64 and not f64_ok:
        b.error(f"{name}() is not available for f64 (only sqrt, rsqrt, reciprocal, fma, floor, ceil, "
                f"trunc and round are); cast to f32 with kaiodsl.f32(x)")
    if not t.is_float:
        b.error(f"{name}() needs a float, got {t}")
    return x, t


def _back(b: Builder, v, t):
    return b.convert(v, t) if t != v.type else v


def _unary(op: str, f64_ok: bool, approx: bool = False):
    def impl(b: Builder, x):
        x, t = _float_arg(b, x, op, f64_ok)
        return _back(b, b.emit(op, x.type, (x,), {"approx": True} if approx else None), t)

    impl.__name__ = op
    return impl


sqrt = builtin(_unary("sqrt", True), name="sqrt")
sqrt.__doc__ = "Square root, correctly rounded (sqrt.rn)."
reciprocal = builtin(_unary("rcp", True), name="reciprocal")
reciprocal.__doc__ = "1/x, correctly rounded (rcp.rn)."
floor = builtin(_unary("floor", True), name="floor")
ceil = builtin(_unary("ceil", True), name="ceil")
trunc = builtin(_unary("trunc", True), name="trunc")
round_even = builtin(_unary("rint", True), name="round_even")
rsqrt = builtin(_unary("rsqrt", True), name="rsqrt")
rsqrt.__doc__ = "1/sqrt(x): the hardware approximation (rsqrt.approx, ~1 ulp in f32); no exact PTX form exists."


@builtin
def exp2(b: Builder, x):
    """2**x (ex2.approx.f32: max 2 ulp over the full range)."""
    x, t = _float_arg(b, x, "exp2", False)
    return _back(b, b.emit("ex2", f32, (x,)), t)


@builtin
def exp(b: Builder, x):
    """e**x: x*log2(e) split into a rounded part and its error (fma), so the result stays within a
    few ulp for all |x|, then ex2.approx of each part."""
    x, t = _float_arg(b, x, "exp", False)
    hi = b.binary("mul", x, LOG2E)
    lo = b.emit("fma", f32, (x, b.const(f32, LOG2E), b.emit("neg", f32, (hi,))))
    lo = b.emit("fma", f32, (x, b.const(f32, 1.925963033500011e-08), lo))  # log2(e) - f32(log2(e))
    r = b.binary("mul", b.emit("ex2", f32, (hi,)), b.emit("ex2", f32, (lo,)))
    return _back(b, r, t)


@builtin
def log2(b: Builder, x):
    """log2(x) (lg2.approx.f32: ~2**-22 absolute error)."""
    x, t = _float_arg(b, x, "log2", False)
    return _back(b, b.emit("lg2", f32, (x,)), t)


@builtin
def log(b: Builder, x):
    """Natural log: lg2.approx(x) * ln 2."""
    x, t = _float_arg(b, x, "log", False)
    return _back(b, b.binary("mul", b.emit("lg2", f32, (x,)), LN2), t)


def _trig(op):
    def impl(b: Builder, x):
        """sin/cos: reduce x to [-pi, pi] (2*pi split in two parts), then the SFU approximation
        (sin.approx: ~2**-20.9 absolute error in that range)."""
        x, t = _float_arg(b, x, op, False)
        k = b.emit("rint", f32, (b.binary("mul", x, 1 / (2 * _m.pi)),))
        r = b.emit("fma", f32, (b.emit("neg", f32, (k,)), b.const(f32, 6.2831854820251465), x))
        r = b.emit("fma", f32, (b.emit("neg", f32, (k,)), b.const(f32, -1.7484556000744883e-07), r))
        return _back(b, b.emit(op, f32, (r,)), t)

    impl.__name__ = op
    return impl


sin = builtin(_trig("sin"), name="sin")
cos = builtin(_trig("cos"), name="cos")


@builtin
def tanh(b: Builder, x):
    """tanh(x) (tanh.approx.f32, sm_75+: max relative error ~2**-11)."""
    x, t = _float_arg(b, x, "tanh", False)
    b.require_arch(75, "tanh")
    return _back(b, b.emit("tanh", f32, (x,)), t)


@builtin
def fma(b: Builder, x, y, z):
    """x * y + z with a single rounding (fma.rn); integers use mad.lo."""
    x, y = b.unify(x, y, "fma")
    x, z = b.unify(x, z, "fma")
    y = b.convert(y, x.type)
    return b.emit("fma", x.type, (x, y, z))


class _Fast:
    """Approximate forms, named as such: ``kaiodsl.fast.div``, ``.sqrt``, ``.reciprocal``, ``.exp``."""

    @staticmethod
    def _div(b: Builder, x, y):
        """x / y with div.approx.f32 (2 ulp; wrong for |y| > 2**126)."""
        x, y = b.unify(x, y, "fast.div")
        if x.type != f32:
            b.error(f"fast.div needs f32 operands, got {x.type}")
        return b.emit("div", f32, (x, y), {"approx": True})

    @staticmethod
    def _exp(b: Builder, x):
        """e**x as a single ex2.approx of x*log2(e): fast, error grows with |x|."""
        x, t = _float_arg(b, x, "fast.exp", False)
        return _back(b, b.emit("ex2", f32, (b.binary("mul", x, LOG2E),)), t)

    div = builtin(_div.__func__, name="fast.div")
    sqrt = builtin(_unary("sqrt", False, approx=True), name="fast.sqrt")
    reciprocal = builtin(_unary("rcp", False, approx=True), name="fast.reciprocal")
    exp = builtin(_exp.__func__, name="fast.exp")


fast = _Fast()
