"""Helpers for hand-written PTX in the simulator tests."""

from __future__ import annotations

HEADER = """.version 8.4
.target sm_90a
.address_size 64
"""

REGS = """\t.reg .pred %p<16>;
\t.reg .b16 %rs<32>;
\t.reg .b16 %h<32>;
\t.reg .b32 %r<96>;
\t.reg .b32 %hh<16>;
\t.reg .b64 %rd<48>;
\t.reg .f32 %f<64>;
\t.reg .f64 %fd<16>;
"""


def kernel(body: str, params=("u64",), name: str = "k", decls: str = "", module_decls: str = "") -> str:
    """A one-entry module: params named p0, p1 ... of the given PTX types; module_decls go before
    the entry (ptxas wants `.extern .shared` there)."""
    plist = ",\n".join(f"\t.param .{t} p{i}" for i, t in enumerate(params))
    return (f"{HEADER}\n{module_decls}\n.visible .entry {name}(\n{plist}\n)\n{{\n{REGS}{decls}{body}"
            f"\n}}\n")


# Load global pointer params p0.. into %rd0.. and the linear thread index into %r0.
PROLOGUE = """
\tmov.u32 %r0, %tid.x;
\tmov.u32 %r90, %ctaid.x;
\tmov.u32 %r91, %ntid.x;
\tmad.lo.s32 %r0, %r90, %r91, %r0;
\tmul.wide.u32 %rd40, %r0, 4;
"""


def load_ptrs(n: int) -> str:
    return "".join(f"\tld.param.u64 %rd{i}, [p{i}];\n\tcvta.to.global.u64 %rd{i}, %rd{i};\n"
                   for i in range(n))


_REG = {1: ("%rs", "u8", 16), 2: ("%rs", "b16", 16), 4: ("%r", "b32", 32), 8: ("%rd", "b64", 64)}


def elementwise(instrs: str, inputs, out_dtype, grid=1):
    """Run `instrs` once per element: inputs in {a} {b} {c}, result in {o}. Returns the output array."""
    import numpy as np

    from kaiodsl.sim import run_ptx

    inputs = [np.ascontiguousarray(x) for x in inputs]
    n = inputs[0].size
    out = np.zeros(n, dtype=out_dtype)
    names = {}
    body = load_ptrs(len(inputs) + 1) + PROLOGUE
    for i, x in enumerate(inputs):
        pre, ty, _ = _REG[x.dtype.itemsize]
        r = f"{pre}{10 + i}"
        names["abc"[i]] = r
        body += (f"\tmul.wide.u32 %rd30, %r0, {x.dtype.itemsize};\n\tadd.s64 %rd31, %rd{i}, %rd30;\n"
                 f"\tld.global.{ty} {r}, [%rd31];\n")
    pre, ty, _ = _REG[out.dtype.itemsize]
    names["o"] = f"{pre}20"
    body += instrs.format(**names) + "\n"
    k = len(inputs)
    body += (f"\tmul.wide.u32 %rd30, %r0, {out.dtype.itemsize};\n\tadd.s64 %rd31, %rd{k}, %rd30;\n"
             f"\tst.global.{ty} [%rd31], {names['o']};\n\tret;\n")
    ptx = kernel(body, params=("u64",) * (k + 1))
    assert n % grid == 0
    run_ptx(ptx, "k", (grid,), (n // grid,), inputs + [out])
    return out
