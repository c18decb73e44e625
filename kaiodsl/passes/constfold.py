"""Constant folding and a few algebraic identities, with the target's arithmetic (wrapping ints, IEEE floats)."""

from __future__ import annotations

import math
import operator
import warnings

import numpy as np

from ..ir.node import Function
from ..types import ScalarType
from .dce import remove_unreachable
from .util import replace_uses

_INT = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "mulwide": operator.mul, "and": operator.and_,
        "or": operator.or_, "xor": operator.xor, "min": min, "max": max}
_CMP = {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge, "eq": operator.eq,
        "ne": operator.ne}
_FLOAT = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}


def _wrap(v: int, t: ScalarType) -> int:
    v &= (1 << t.bits) - 1
    if t.is_signed and v >= 1 << (t.bits - 1):
        v -= 1 << t.bits
    return v


def _fold(n):
    """The folded Python value of ``n``, or None when it does not fold."""
    ops = n.operands
    if not ops or any(o.op != "const" for o in ops):
        return None
    vals = [o.attrs["value"] for o in ops]
    t = n.type
    if not isinstance(t, ScalarType):
        return None
    src = ops[0].type
    if n.op == "cmp":
        if not isinstance(src, ScalarType) or src.name in ("f16", "bf16"):
            return None
        a, b = vals
        if src.is_float and (math.isnan(a) or math.isnan(b)):
            return n.attrs["pred"] == "ne"
        return _CMP[n.attrs["pred"]](a, b)
    if n.op == "select":
        return vals[1] if vals[0] else vals[2]
    if n.op == "cast":
        return _fold_cast(vals[0], src, t, n.attrs.get("mode"))
    if t.is_bool and n.op in ("and", "or", "xor", "not"):
        if n.op == "not":
            return not vals[0]
        return bool(_INT[n.op](bool(vals[0]), bool(vals[1])))
    if t.is_int and not t.is_bool:
        if n.op in _INT:
            return _wrap(_INT[n.op](*vals), t)
        if n.op in ("div", "rem") and vals[1] != 0:
            q = abs(vals[0]) // abs(vals[1]) * (1 if (vals[0] >= 0) == (vals[1] >= 0) else -1)
            return _wrap(q if n.op == "div" else vals[0] - q * vals[1], t)
        if n.op == "shl":
            return _wrap(vals[0] << vals[1], t) if vals[1] < t.bits else 0
        if n.op == "shr":
            sh = min(vals[1], t.bits - 1 if t.is_signed else t.bits)
            return _wrap(vals[0] >> sh, t) if sh < t.bits else 0
        if n.op == "neg":
            return _wrap(-vals[0], t)
        if n.op == "not":
            return _wrap(~vals[0], t)
        return None
    if t.name in ("f32", "f64") and n.op in _FLOAT:
        dt = np.float32 if t.name == "f32" else np.float64
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return float(_FLOAT[n.op](dt(vals[0]), dt(vals[1])))
    if t.name in ("f32", "f64") and n.op == "neg":
        return -vals[0]
    return None


def _fold_cast(v, src, t: ScalarType, mode):
    """Exact conversions only: int -> int (wrapping), int/f32/f64 -> f32/f64 (round to nearest)."""
    if mode is not None or not isinstance(src, ScalarType) or src.kind not in ("int", "uint", "float"):
        return None
    if src.is_float and src.name not in ("f32", "f64"):
        return None
    if t.is_int and src.is_int:
        return _wrap(int(v), t)
    if t.name == "f64":
        return float(v)
    if t.name == "f32":
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return float(np.float32(v))
    return None


def _is_zero(n) -> bool:
    """x * 0, x & 0, x - x, x ^ x for integers."""
    if n.op not in ("mul", "and", "sub", "xor") or not isinstance(n.type, ScalarType) or not n.type.is_int:
        return False
    a, b = n.operands
    if n.op in ("sub", "xor"):
        return a is b
    return any(o.op == "const" and o.attrs["value"] == 0 for o in (a, b))


def _identity(n):
    """x + 0, x * 1, x & -1 ... for integers: the operand the node equals, or None."""
    if n.op not in ("add", "sub", "mul", "or", "xor", "shl", "shr") or not isinstance(n.type, ScalarType):
        return None
    if not n.type.is_int:
        return None
    a, b = n.operands
    if b.op == "const":
        v = b.attrs["value"]
        if (v == 0 and n.op in ("add", "sub", "or", "xor", "shl", "shr")) or (v == 1 and n.op == "mul"):
            return a
    if a.op == "const" and n.op in ("add", "or", "xor") and a.attrs["value"] == 0:
        return b
    if a.op == "const" and n.op == "mul" and a.attrs["value"] == 1:
        return b
    return None


def constant_fold(fn: Function) -> None:
    mapping, folded_branch = {}, False
    for b in fn.blocks:
        for n in b.body:
            if mapping:
                n.operands = tuple(mapping.get(o, o) for o in n.operands)
            v = _fold(n)
            if v is not None:
                n.op, n.operands, n.attrs = "const", (), {"value": v}
                continue
            if _is_zero(n):
                n.op, n.operands, n.attrs = "const", (), {"value": 0}
                continue
            same = _identity(n)
            if same is not None:
                mapping[n] = same
        if b.term is not None and b.term.op == "cbr" and b.term.operands[0].op == "const":
            taken = b.term.attrs["true"] if b.term.operands[0].attrs["value"] else b.term.attrs["false"]
            b.term.op, b.term.operands, b.term.attrs = "br", (), {"target": taken}
            folded_branch = True
    replace_uses(fn, mapping)
    if folded_branch:  # the branch not taken may have been its block's only way in
        remove_unreachable(fn)
