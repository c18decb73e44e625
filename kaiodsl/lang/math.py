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

_SIM_NOTE = ""
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
rsqrt.__doc__ = ("1/sqrt(x): the hardware approximation (rsqrt.approx, relative error <= 2**-22); no exact PTX "
                 "form exists.")


@builtin
def exp2(b: Builder, x):
    """2**x (ex2.approx.f32: relative error <= 2**-21, all x)."""
    x, t = _float_arg(b, x, "exp2", False)
    return _back(b, b.emit("ex2", f32, (x,)), t)


@builtin
def exp(b: Builder, x):
    """e**x: x*log2(e) split into a rounded part and its error (fma), then ex2.approx of each part
    (docs/language.md, "Math accuracy"). Where x*log2(e) is ±inf or NaN the error part would be
    inf - inf: it is 0 there, so exp(-inf) = +0, exp(inf) = inf, exp(NaN) = NaN."""
    x, t = _float_arg(b, x, "exp", False)
    hi = b.binary("mul", x, LOG2E)
    lo = b.emit("fma", f32, (x, b.const(f32, LOG2E), b.emit("neg", f32, (hi,))))
    lo = b.emit("fma", f32, (x, b.const(f32, 1.925963033500011e-08), lo))  # log2(e) - f32(log2(e))
    finite = b.compare("le", b.emit("abs", f32, (hi,)), 3.4028234663852886e38)  # FLT_MAX: not inf, not NaN
    lo = b.emit("select", f32, (finite, lo, b.const(f32, 0.0)))
    r = b.binary("mul", b.emit("ex2", f32, (hi,)), b.emit("ex2", f32, (lo,)))
    return _back(b, r, t)


@builtin
def log2(b: Builder, x):
    """log2(x) (lg2.approx.f32: absolute error <= 2**-22 plus relative 2**-22)."""
    x, t = _float_arg(b, x, "log2", False)
    return _back(b, b.emit("lg2", f32, (x,)), t)


@builtin
def log(b: Builder, x):
    """Natural log: lg2.approx(x) * ln 2 (error as log2)."""
    x, t = _float_arg(b, x, "log", False)
    return _back(b, b.binary("mul", b.emit("lg2", f32, (x,)), LN2), t)


_TWO_PI_HI = 6.2831854820251465       # f32(2*pi)
_TWO_PI_LO = -1.7484556000744883e-07  # 2*pi - f32(2*pi), rounded to f32


def _reduce_2pi(b: Builder, x):
    """x - k*2*pi with k = rint(x / (2*pi)), 2*pi in two f32 parts (Cody-Waite, each product exact
    in its fma). Twice: the first quotient is off by one where x/(2*pi) rounds, the second brings
    the remainder into [-pi, pi]. Error <= 2**-21.2 for |x| <= 1e8 (docs/language.md)."""
    r = x
    for _ in range(2):
        k = b.emit("rint", f32, (b.binary("mul", r, 1 / (2 * _m.pi)),))
        nk = b.emit("neg", f32, (k,))
        r = b.emit("fma", f32, (nk, b.const(f32, _TWO_PI_HI), r))
        r = b.emit("fma", f32, (nk, b.const(f32, _TWO_PI_LO), r))
    # |x| <= pi needs no reduction; keeping x there also keeps sin(-0) = -0 (x - 0*c is +0)
    small = b.compare("le", b.emit("abs", f32, (x,)), 3.1415925)
    return b.emit("select", f32, (small, x, r))


def _trig(op):
    def impl(b: Builder, x):
        """sin/cos: reduce x to [-pi, pi], then the SFU approximation (sin.approx / cos.approx:
        2**-20.9 absolute error there); accurate to 2**-20 for |x| <= 1e8, inf/NaN give NaN."""
        x, t = _float_arg(b, x, op, False)
        return _back(b, b.emit(op, f32, (_reduce_2pi(b, x),)), t)

    impl.__name__ = op
    return impl


sin = builtin(_trig("sin"), name="sin")
cos = builtin(_trig("cos"), name="cos")


@builtin
def tanh(b: Builder, x):
    """tanh(x) (tanh.approx.f32, sm_75+: relative error <= 2**-10.5)."""
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
    """Approximate forms, named as such: ``kaiodsl.fast.div``, ``.sqrt``, ``.reciprocal``, ``.exp``, ``.exp2``."""

    @staticmethod
    def _div(b: Builder, x, y):
        """x / y with div.approx.f32 (2 ulp; wrong for |y| > 2**126)."""
        x, y = b.unify(x, y, "fast.div")
        if x.type != f32:
            b.error(f"fast.div needs f32 operands, got {x.type}")
        return b.emit("div", f32, (x, y), {"approx": True})

    @staticmethod
    def _exp(b: Builder, x):
        """e**x as a single ex2.approx of x*log2(e): relative error 2**-21 for |x| <= 10, growing with |x|."""
        x, t = _float_arg(b, x, "fast.exp", False)
        return _back(b, b.emit("ex2", f32, (b.binary("mul", x, LOG2E),)), t)

    @staticmethod
    def _exp2(b: Builder, x):
        """2**x with ex2.approx.ftz.f32: subnormal inputs and results are 0 (x < -126 gives +0), and
        the instruction is one MUFU.EX2 (plain ex2.approx.f32 wraps it in a subnormal fixup: a compare
        and two predicated multiplies). Elsewhere as accurate as ``exp2``. The softmax exponent of
        attention, where a p below 2**-126 adds nothing to a row sum >= 1."""
        x, t = _float_arg(b, x, "fast.exp2", False)
        return _back(b, b.emit("ex2", f32, (x,), {"ftz": True}), t)

    div = builtin(_div.__func__, name="fast.div")
    sqrt = builtin(_unary("sqrt", False, approx=True), name="fast.sqrt")
    reciprocal = builtin(_unary("rcp", False, approx=True), name="fast.reciprocal")
    exp = builtin(_exp.__func__, name="fast.exp")
    exp2 = builtin(_exp2.__func__, name="fast.exp2")


fast = _Fast()


fast.sqrt.__doc__ = "sqrt(x) with sqrt.approx.f32 (relative error <= 2**-22)."
fast.reciprocal.__doc__ = "1/x with rcp.approx.f32 (relative error <= 2**-22 for |x| <= 2**126)."
# Every approximate builtin says so where help() shows it.
_SIM_NOTE = (" Approximate: the simulator computes it exactly, the GPU within this bound; compare GPU results "
             "with the bound (docs/language.md, 'Math accuracy').")
for _f in (rsqrt, exp2, exp, log2, log, sin, cos, tanh, fast.div, fast.sqrt, fast.reciprocal, fast.exp, fast.exp2):
    _f.__doc__ = (_f.__doc__ or _f.__name__) + _SIM_NOTE
