"""Warn where a 32-bit integer product may pass 2**31 (2**32 unsigned) and feeds a global address.

``p[row * N + col]`` computes ``row * N`` in i32 and only then widens the offset: with more than
2**31 elements the product wraps and the access lands elsewhere. A small interval analysis
bounds each 32-bit value (constants exactly, thread/lane indices by the hardware limits,
narrower types by their range, everything else by its type's range); a ``mul`` (or integer
``fma``) inside an index whose bounds pass the type's range gets an ``IndexOverflowWarning`` at
the user's line. The fix it suggests is the documented idiom ``kaiodsl.i64(row) * N + col``.
Runs before constant folding, so the nodes still carry the user's expressions.
"""

from __future__ import annotations

import os
import sys
import warnings

from ..errors import IndexOverflowWarning
from ..ir.node import Function
from ..types import PtrType, ScalarType

# Hardware bounds of the special registers (CUDA programming guide, "Compute capabilities").
_SPECIAL = {"tid.x": (0, 1023), "tid.y": (0, 1023), "tid.z": (0, 63), "ntid.x": (1, 1024), "ntid.y": (1, 1024),
            "ntid.z": (1, 64), "laneid": (0, 31), "warpid": (0, 63), "ctaid.x": (0, 2 ** 31 - 2),
            "ctaid.y": (0, 65534), "ctaid.z": (0, 65534), "nctaid.x": (1, 2 ** 31 - 1),
            "nctaid.y": (1, 65535), "nctaid.z": (1, 65535)}
_WALK = {"add", "sub", "mul", "fma", "shl", "min", "max", "select", "cast", "and", "rem", "div", "shr"}


def _range(t) -> tuple:
    return t.int_range if isinstance(t, ScalarType) and t.is_int else (-(2 ** 63), 2 ** 64)


class _Bounds:
    def __init__(self):
        self.memo = {}

    def __call__(self, n) -> tuple:
        if n not in self.memo:
            self.memo[n] = _range(n.type)  # cycles (loop-carried values) see the type's range
            self.memo[n] = self._compute(n)
        return self.memo[n]

    def _compute(self, n) -> tuple:
        full = _range(n.type)
        op, ops = n.op, n.operands
        if op == "const" and isinstance(n.attrs.get("value"), int):
            v = n.attrs["value"]
            return (v, v)
        if op == "special":
            return _SPECIAL.get(n.attrs.get("reg"), full)
        if op == "cast" and ops and isinstance(ops[0].type, ScalarType) and ops[0].type.is_int:
            lo, hi = self(ops[0])
            return (lo, hi) if full[0] <= lo and hi <= full[1] else full
        if op in ("add", "sub", "mul", "min", "max") and len(ops) == 2:
            (a, b), (c, d) = self(ops[0]), self(ops[1])
            if op == "add":
                r = (a + c, b + d)
            elif op == "sub":
                r = (a - d, b - c)
            elif op == "mul":
                ps = (a * c, a * d, b * c, b * d)
                r = (min(ps), max(ps))
            elif op == "min":
                r = (min(a, c), min(b, d))
            else:
                r = (max(a, c), max(b, d))
            return r if full[0] <= r[0] and r[1] <= full[1] else full
        if op == "and" and len(ops) == 2:
            for o in ops:
                lo, hi = self(o)
                if lo >= 0:
                    return (0, hi)
        if op in ("div", "shr") and len(ops) == 2 and ops[1].op == "const":
            lo, hi = self(ops[0])
            c = ops[1].attrs["value"] if op == "div" else 1 << min(ops[1].attrs["value"], 64)
            if isinstance(c, int) and c > 0:
                return (lo // c if lo >= 0 else -((-lo) // c), hi // c if hi >= 0 else -((-hi) // c))
        if op == "rem" and len(ops) == 2:
            lo, hi = self(ops[1])
            m = max(abs(lo), abs(hi))
            return (max(full[0], -m), min(full[1], m))
        if op == "select":
            (a, b), (c, d) = self(ops[1]), self(ops[2])
            return (min(a, c), max(b, d))
        return full

    def overflows(self, n) -> bool:
        """Whether the exact product of ``n``'s operands can leave ``n``'s type range."""
        (a, b), (c, d) = self(n.operands[0]), self(n.operands[1])
        ps = (a * c, a * d, b * c, b * d)
        if n.op == "fma":
            e, f = self(n.operands[2])
            ps = (min(ps) + e, max(ps) + f)
        lo, hi = _range(n.type)
        return min(ps) < lo or max(ps) > hi


def _products_in(index, bounds: _Bounds, seen: set):
    """32-bit muls inside an index expression (through casts to 64 bits too) whose result can wrap."""
    stack = [index]
    while stack:
        n = stack.pop()
        if n in seen or not isinstance(n.type, ScalarType) or not n.type.is_int:
            continue
        seen.add(n)
        product = n.type.bits == 32 and n.op in ("mul", "fma")
        if product and not all(o.op == "const" for o in n.operands[:2]) and bounds.overflows(n):
            yield n
        if n.op in _WALK:
            stack.extend(n.operands)


def _library(file: str) -> str | None:
    """The module name when ``file`` is kaiodsl's own library code (the tile library, the language; not
    the op library, whose kernels are kernels like the user's), else None."""
    mod = _module_of(file)
    return mod if mod and mod.startswith("kaiodsl.") and not mod.startswith("kaiodsl.ops") else None


def _module_of(file: str) -> str | None:
    """The dotted name of the loaded module whose source is ``file``, so that warning filters can name
    modules (``warnings.filterwarnings(..., module="mypkg.kernels")``) as for any Python warning."""
    want = os.path.realpath(file)
    for name, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None)
        if f and os.path.realpath(f) == want:
            return name
    return None


def check_index_width(fn: Function) -> None:
    bounds, seen, warned = _Bounds(), set(), set()
    for n in fn.nodes():
        if n.op != "ptradd" or not isinstance(n.type, PtrType) or n.type.bits != 64:
            continue
        off = n.operands[1]
        index = off.operands[0] if off.op == "mulwide" else off
        for m in _products_in(index, bounds, seen):
            loc = m.loc
            key = (loc.file, loc.line) if loc else id(m)
            if key in warned:
                continue
            warned.add(key)
            expr = loc.text[loc.col:loc.end_col].strip() if loc and loc.end_col else ""
            if not expr or expr.count("(") != expr.count(")") or "*" not in expr:
                expr = None  # the expression spans lines: name the line only
            what = f"`{expr}`" if expr else "on this line"
            msg = (f"{m.type} product {what} can leave the {m.type} range and is used as a pointer "
                   f"offset, where it would wrap; compute it in 64 bits, e.g. kaiodsl.i64(row) * n + col "
                   f"(docs/language.md, '64-bit indexing')")
            if loc is None:
                warnings.warn(msg, IndexOverflowWarning, stacklevel=2)
            elif _library(loc.file) and fn.source_file and os.path.realpath(fn.source_file) != os.path.realpath(loc.file):
                # a tile-library function inlined into the kernel: the warning is the kernel's (its line, its
                # module, for filters), naming the library line
                warnings.warn_explicit(f"{msg}; in {_library(loc.file)} line {loc.line}, inlined into kernel {fn.name}",
                                       IndexOverflowWarning, fn.source_file, fn.source_line or 1,
                                       _module_of(fn.source_file))
            else:
                warnings.warn_explicit(msg, IndexOverflowWarning, loc.file, loc.line, _module_of(loc.file))
