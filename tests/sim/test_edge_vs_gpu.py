"""PTX edge cases, run by the simulator and by the GPU against the same expected bits.

One hand-written kernel computes each corner of PTX semantics from values it loads (so
ptxas cannot fold them): integer wrap, shifts past the width, min/max with NaN, integer
division by zero and INT_MIN / -1, f16 and bf16 rounding ties, NaN/inf/overflow
conversions. Both backends must produce exactly EXPECTED, so they agree bit for bit.
"""

import struct

import numpy as np
import pytest

import kaiodsl
from kaiodsl.runtime.backend import gpu_available
from kaiodsl.runtime.ptx_kernel import PtxKernel
from kaiodsl.sim import run_ptx


def f32bits(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


INPUTS = [0x7FFFFFFF, 1, 0, 0x80000000, 0xFFFFFFFF, 33, 0x12345678,
          0x7FC00000,                      # NaN
          f32bits(1.5),
          f32bits(1 + 2 ** -11),           # halfway between two f16 values: ties to even -> 1.0
          f32bits(1 + 3 * 2 ** -11),       # halfway, rounds up to the even 1 + 2**-9
          f32bits(1 + 2 ** -8),            # halfway between two bf16 values -> 1.0
          0x7F800000,                      # inf
          f32bits(3e9), f32bits(70000.0), f32bits(1 + 3 * 2 ** -8)]

# slot: (what, PTX, expected u32)
CASES = [
    ("s32 add wraps", "add.s32 %r40, %r1, %r2;", 0x80000000),
    ("s32 mul.lo wraps", "mul.lo.s32 %r40, %r1, %r1;", 1),
    ("shl past width", "shl.b32 %r40, %r7, %r6;", 0),
    ("shr.u32 past width", "shr.u32 %r40, %r7, %r6;", 0),
    ("shr.s32 past width fills the sign", "shr.s32 %r40, %r4, %r6;", 0xFFFFFFFF),
    ("min.f32 ignores NaN", "min.f32 %f40, %f1, %f2; mov.b32 %r40, %f40;", f32bits(1.5)),
    ("max.f32 ignores NaN", "max.f32 %f40, %f1, %f2; mov.b32 %r40, %f40;", f32bits(1.5)),
    ("min.f32 of two NaN is a quiet NaN", "min.f32 %f40, %f1, %f1; mov.b32 %r40, %f40;", 0x7FC00000),
    ("div.u32 by zero", "div.u32 %r40, %r7, %r3;", 0xFFFFFFFF),
    ("rem.u32 by zero", "rem.u32 %r40, %r7, %r3;", 0xFFFFFFFF),
    ("rem.s32 by zero", "rem.s32 %r40, %r7, %r3;", 0xFFFFFFFF),
    ("div.s32 by zero", "div.s32 %r40, %r7, %r3;", 0xFFFFFFFF),
    ("INT_MIN / -1", "div.s32 %r40, %r4, %r5;", 0x80000000),
    ("INT_MIN % -1", "rem.s32 %r40, %r4, %r5;", 0),
    ("f16 tie to even (down)", "cvt.rn.f16.f32 %rs1, %f3; cvt.u32.u16 %r40, %rs1;", 0x3C00),
    ("f16 tie to even (up)", "cvt.rn.f16.f32 %rs1, %f4; cvt.u32.u16 %r40, %rs1;", 0x3C02),
    ("f16 overflow to inf", "cvt.rn.f16.f32 %rs1, %f8; cvt.u32.u16 %r40, %rs1;", 0x7C00),
    ("bf16 tie to even (down)", "cvt.rn.bf16.f32 %rs1, %f5; cvt.u32.u16 %r40, %rs1;", 0x3F80),
    ("bf16 tie to even (up)", "cvt.rn.bf16.f32 %rs1, %f9; cvt.u32.u16 %r40, %rs1;", 0x3F82),
    ("bf16 of NaN", "cvt.rn.bf16.f32 %rs1, %f1; cvt.u32.u16 %r40, %rs1;", 0x7FFF),
    ("f32 NaN -> s32 is 0", "cvt.rzi.s32.f32 %r40, %f1;", 0),
    ("f32 inf -> s32 saturates", "cvt.rzi.s32.f32 %r40, %f6;", 0x7FFFFFFF),
    ("f32 3e9 -> s32 saturates", "cvt.rzi.s32.f32 %r40, %f7;", 0x7FFFFFFF),
    ("s32 -> s8 with .sat", "cvt.sat.s8.s32 %r40, %r1;", 0x7F),
]


def _ptx() -> str:
    loads_r = "\n".join(f"\tld.global.u32 %r{i + 1}, [%rd1+{4 * i}];" for i in range(7))
    loads_f = "\n".join(f"\tld.global.f32 %f{i + 1}, [%rd1+{4 * (7 + i)}];" for i in range(8))
    load_f9 = f"\tld.global.f32 %f9, [%rd1+{4 * 15}];"
    body = "\n".join(f"\t{ptx}\n\tst.global.u32 [%rd2+{4 * k}], %r40;" for k, (_, ptx, _) in enumerate(CASES))
    return f""".version 7.8
.target sm_80
.address_size 64
.visible .entry edge(.param .u64 pin, .param .u64 pout)
{{
\t.reg .b32 %r<48>;
\t.reg .f32 %f<48>;
\t.reg .b16 %rs<4>;
\t.reg .b64 %rd<4>;
\tld.param.u64 %rd1, [pin];
\tcvta.to.global.u64 %rd1, %rd1;
\tld.param.u64 %rd2, [pout];
\tcvta.to.global.u64 %rd2, %rd2;
{loads_r}
{loads_f}
{load_f9}
{body}
\tret;
}}
"""


@pytest.mark.parametrize("backend", ["sim", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_ptx_edge_cases_same_bits(backend):
    if backend == "cuda" and not gpu_available():
        pytest.skip("needs a CUDA driver and device")
    inp = np.array(INPUTS, np.uint32)
    out = np.full(len(CASES), 0xDEADBEEF, np.uint32)
    if backend == "sim":
        run_ptx(_ptx(), "edge", 1, 1, [inp, out])
    else:
        kaiodsl.set_backend("cuda")
        PtxKernel(_ptx(), ["pin: Ptr[u32]", "pout: Ptr[u32] writable"])[1, 1](inp, out)
    wrong = [f"{what}: got {int(got):#010x}, expected {want:#010x}"
             for (what, _, want), got in zip(CASES, out) if int(got) != want]
    assert not wrong, "\n".join(wrong)
