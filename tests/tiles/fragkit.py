"""Kernel-side helpers for the tile tests: mma operand fragments loaded from global memory by the
coordinates of the PTX ISA layouts (kaiodsl.frag_coord), for f16/bf16, tf32 and 8-bit types."""

import kaiodsl
from kaiodsl import Const, u32


@kaiodsl.func
def operand(role: Const[str], DT: Const[str], K: Const[int], p, ld, row0, col0, H2: Const):
    """This lane's A ('a', 16 x K at (row0, col0)) or B ('b', K x 8) fragment of row-major p."""
    lay = kaiodsl.fragment_layout(role, DT, K)
    regs = []
    for r in kaiodsl.static_range(lay.nregs):
        vals = []
        for j in kaiodsl.static_range(lay.per_reg):
            row, col = kaiodsl.frag_coord(role, r * lay.per_reg + j, DT, K)
            vals = vals + [p[(row0 + row) * ld + col0 + col]]
        if lay.per_reg == 1:
            regs = regs + [vals[0]]
        elif lay.per_reg == 2:
            regs = regs + [kaiodsl.pack_half2(vals[0], vals[1], H2)]
        else:
            w = u32(0)
            for j in kaiodsl.static_range(4):
                w = w | ((kaiodsl.bitcast(vals[j], kaiodsl.u8) & u32(255)) << (8 * j))
            regs = regs + [w]
    return regs
