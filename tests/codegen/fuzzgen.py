"""A small generator of random, valid kaiodsl kernels over every scalar type, op and cast.

Each kernel loads one value of every type, computes ``STMTS`` random typed expression trees
(unary and binary operators, comparisons, selects, min/max/abs, casts of every kind, math
builtins, float ``// 0`` and ``% 0``) and stores each result, so nothing is dead code. The
generator follows the language's typing rules (operands are cast to one type explicitly), so
every kernel it writes must compile, and the PTX must assemble.
"""

from __future__ import annotations

import random

INTS = ["i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64"]
FLOATS = ["f16", "bf16", "f32", "f64"]
TYPES = INTS + FLOATS
BITS = {"i8": 8, "u8": 8, "i16": 16, "u16": 16, "i32": 32, "u32": 32, "i64": 64, "u64": 64,
        "f16": 16, "bf16": 16, "f32": 32, "f64": 64}
INT_BIN = ["+", "-", "*", "//", "%", "&", "|", "^"]
FLOAT_BIN = ["+", "-", "*", "/", "//", "%"]
F32_MATH = ["exp", "exp2", "log", "log2", "sqrt", "rsqrt", "sin", "cos", "tanh", "reciprocal", "floor",
            "ceil", "trunc", "round_even", "fast.exp", "fast.sqrt", "fast.reciprocal"]
F64_MATH = ["sqrt", "reciprocal", "floor", "ceil", "trunc", "round_even", "rsqrt"]


class Gen:
    def __init__(self, seed: int):
        self.r = random.Random(seed)

    def leaf(self, t: str) -> str:
        if self.r.random() < 0.8:
            return f"p_{t}[i + {self.r.randrange(4)}]"
        if t in FLOATS:
            return f"kaiodsl.{t}({self.r.choice(['0.0', '-1.5', '3.0', '0.25'])})"
        return f"kaiodsl.{t}({self.r.choice(['1', '7', '100'])})"  # a constant 0 divisor is an error

    def boolean(self, d: int) -> str:
        k = self.r.randrange(4)
        t = self.r.choice(TYPES)
        if k == 0:
            return f"kaiodsl.bool_({self.expr(t, d - 1)})"
        if k == 1:
            return f"({self.expr(t, d - 1)} {self.r.choice(['<', '<=', '>', '>=', '==', '!='])} {self.expr(t, d - 1)})"
        if k == 2:
            return f"({self.boolean(d - 1) if d > 0 else 'p_bool[i]'} {self.r.choice(['and', 'or'])} p_bool[i + 1])"
        return f"(not {self.boolean(d - 1) if d > 0 else 'p_bool[i]'})"

    def expr(self, t: str, d: int) -> str:
        if d <= 0:
            return self.leaf(t)
        r, fl = self.r, t in FLOATS
        k = r.randrange(9)
        if k == 0:
            op = r.choice(FLOAT_BIN if fl else INT_BIN)
            return f"({self.expr(t, d - 1)} {op} {self.expr(t, d - 1)})"
        if k == 1:
            if fl:
                return f"({self.expr(t, d - 1)} {r.choice(['//', '%', '/'])} 0)"  # IEEE: inf/NaN, no error
            return f"({self.expr(t, d - 1)} {r.choice(['<<', '>>'])} {r.choice(['p_u32[i]', '3', 'kaiodsl.u32(40)'])})"
        if k == 2:
            ops = ["-", "abs"] if fl else ["-", "~", "abs"]
            op = r.choice(ops)
            return f"abs({self.expr(t, d - 1)})" if op == "abs" else f"({op}{self.expr(t, d - 1)})"
        if k == 3:
            return f"{r.choice(['min', 'max'])}({self.expr(t, d - 1)}, {self.expr(t, d - 1)})"
        if k == 4:
            return f"({self.expr(t, d - 1)} if {self.boolean(d - 1)} else {self.expr(t, d - 1)})"
        if k == 5:
            s = r.choice(TYPES)
            rounded = (fl or s in FLOATS) and r.random() < 0.3
            rnd = f", rounding='{r.choice(['rn', 'rz', 'rm', 'rp'])}'" if rounded else ""
            return f"kaiodsl.cast({self.expr(s, d - 1)}, kaiodsl.{t}{rnd})"
        if k == 6 and not fl:
            s = r.choice(TYPES)
            kind = r.choice(["saturate_cast", "truncate_cast"])
            return f"kaiodsl.{kind}({self.expr(s, d - 1)}, kaiodsl.{t})"
        if k == 7:
            same = [s for s in TYPES if BITS[s] == BITS[t] and s != t and not (s in FLOATS and t in FLOATS)]
            if same:
                return f"kaiodsl.bitcast({self.expr(r.choice(same), d - 1)}, kaiodsl.{t})"
        if k == 8 and fl:
            fn = r.choice(F64_MATH if t == "f64" else F32_MATH)
            return f"kaiodsl.{fn}({self.expr(t, d - 1)})"
        return f"kaiodsl.{t}({self.expr(r.choice(TYPES), d - 1)})"

    def kernel(self, name: str, stmts: int, depth: int) -> str:
        params = ", ".join([f"p_{t}: Ptr[{t}]" for t in TYPES] + ["p_bool: Ptr[bool_]"]
                           + [f"o_{t}: Ptr[{t}]" for t in TYPES] + ["o_bool: Ptr[bool_]"])
        body = []
        for j in range(stmts):
            t = self.r.choice(TYPES + ["bool"])
            e = self.boolean(depth) if t == "bool" else self.expr(t, depth)
            body.append(f"    o_{t}[i + {j}] = {e}")
        return (f"@kaiodsl.kernel\ndef {name}({params}):\n    i = kaiodsl.thread_idx.x\n" + "\n".join(body) + "\n")


def module_source(seed: int, kernels: int, stmts: int, depth: int) -> str:
    g = Gen(seed)
    head = ("import kaiodsl\nfrom kaiodsl import Ptr, bool_, i8, u8, i16, u16, i32, u32, i64, u64, f16, bf16, "
            "f32, f64\n\n")
    return head + "\n\n".join(g.kernel(f"fuzz{j}", stmts, depth) for j in range(kernels))
