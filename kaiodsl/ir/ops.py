"""The op table: every IR op, its group, its effects and arity. Derived groups are data.

effects:
  pure    no side effects, no memory reads: CSE and DCE may touch it
  read    reads memory or state that stores/barriers change: DCE only
  effect  writes memory, synchronizes or talks to other threads: never removed or merged
  term    block terminator
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OpSpec:
    name: str
    group: str
    effects: str
    arity: tuple  # (min, max); max None = variadic
    doc: str


def _ops(group: str, effects: str, arity: tuple, *entries: tuple) -> list:
    return [OpSpec(name, group, effects, arity, doc) for name, doc in entries]


_TABLE = [
    *_ops("value", "pure", (0, 0),
          ("const", "a typed constant: attrs value"),
          ("param", "a kernel parameter: attrs index, name"),
          ("special", "a special register (%tid.x, %laneid, ...): attrs reg"),
          ("shared_base", "32-bit address of a shared array: attrs symbol"),
          ("blockarg", "a block argument (phi): attrs index")),
    *_ops("arith", "pure", (2, 2),
          ("add", "a + b (wrapping for ints)"), ("sub", "a - b"), ("mul", "a * b (low half for ints)"),
          ("div", "a / b: IEEE round-to-nearest for floats, truncating for ints; attrs approx"),
          ("rem", "truncating remainder (sign of a)"), ("min", "minimum (NaN-ignoring for floats)"),
          ("max", "maximum (NaN-ignoring for floats)"), ("and", "bitwise/logical and"),
          ("or", "bitwise/logical or"), ("xor", "bitwise/logical xor"), ("shl", "shift left"),
          ("shr", "shift right: arithmetic for signed, logical for unsigned"),
          ("mulhi", "high half of the full product"),
          ("mulwide", "full product in the double-width type")),
    *_ops("arith", "pure", (1, 1),
          ("neg", "-a"), ("not", "bitwise not / logical not"), ("abs", "|a|"),
          ("popc", "population count"), ("clz", "count leading zeros"), ("brev", "bit reverse")),
    *_ops("arith", "pure", (2, 2), ("cmp", "comparison: attrs pred (lt le gt ge eq ne); result bool")),
    *_ops("arith", "pure", (3, 3), ("select", "cond ? a : b"), ("fma", "a * b + c, one rounding")),
    *_ops("convert", "pure", (1, 1),
          ("cast", "value conversion: attrs mode (rn rz rm rp sat trunc ...)"),
          ("bitcast", "reinterpret the bits in a type of the same width")),
    *_ops("math", "pure", (1, 1),
          ("sqrt", "square root: attrs approx"), ("rsqrt", "1/sqrt (approximate)"),
          ("rcp", "reciprocal: attrs approx"), ("ex2", "2**x (approximate)"),
          ("lg2", "log2 x (approximate)"), ("sin", "sine (approximate)"), ("cos", "cosine (approximate)"),
          ("tanh", "tanh (approximate, sm_75+)"), ("floor", "round toward -inf"),
          ("ceil", "round toward +inf"), ("trunc", "round toward zero"), ("rint", "round half to even")),
    *_ops("memory", "pure", (2, 2), ("ptradd", "pointer + index * sizeof(elem)")),
    *_ops("memory", "read", (1, 3),
          ("ld", "load: attrs cache, vec; optional (pred, default) operands for a masked load")),
    *_ops("memory", "effect", (2, 3), ("st", "store: operands addr, value[, pred]; attrs cache, vec")),
    *_ops("atomic", "effect", (2, 3), ("atom", "atomic read-modify-write: attrs op, sem, scope")),
    *_ops("sync", "effect", (0, 2),
          ("barrier", "block barrier: attrs id, count (named barriers)"),
          ("barrier_arrive", "arrive at a named barrier without waiting"),
          ("syncwarp", "warp barrier: operand mask"),
          ("fence", "memory fence: attrs scope (cta gpu sys)")),
    *_ops("warp", "effect", (1, 4),
          ("shfl", "warp shuffle: attrs mode (idx up down bfly); operands value, lane, clamp, mask"),
          ("vote", "warp vote: attrs mode (any all uni ballot); operands pred, mask"),
          ("activemask", "mask of the active lanes")),
    *_ops("tuple", "pure", (0, None),
          ("tuple", "pack values into a register tuple"), ("extract", "element attrs index of a tuple")),
    *_ops("inst", "effect", (0, None),
          ("inst", "an instruction from ptx_templates: attrs form (and per-form attrs)")),
    *_ops("inst", "pure", (0, None),
          ("inst_pure", "a side-effect-free instruction from ptx_templates: attrs form")),
    *_ops("inst", "read", (0, None),
          ("inst_read", "an instruction from ptx_templates that only reads memory (ldmatrix): attrs form")),
    *_ops("asm", "effect", (0, None), ("asm", "inline PTX: attrs template, outputs, inputs")),
    *_ops("control", "term", (0, None),
          ("br", "jump: attrs target; operands are the target's arguments"),
          ("cbr", "conditional jump: operand cond; attrs true, false (no arguments)"),
          ("ret", "return from the kernel")),
]

OPS = {spec.name: spec for spec in _TABLE}

# Derived groups, as data.
PURE = frozenset(n for n, s in OPS.items() if s.effects == "pure")
REMOVABLE = frozenset(n for n, s in OPS.items() if s.effects in ("pure", "read"))
TERMINATORS = frozenset(n for n, s in OPS.items() if s.effects == "term")
COMMUTATIVE = frozenset({"add", "mul", "min", "max", "and", "or", "xor", "mulhi", "mulwide"})
BINARY = frozenset(n for n, s in OPS.items() if s.group == "arith" and s.arity == (2, 2) and n != "cmp")
UNARY_MATH = frozenset(n for n, s in OPS.items() if s.group == "math")


def spec(name: str) -> OpSpec:
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"unknown IR op {name!r}") from None
