"""PTX edge cases, run by the simulator and by the GPU against the same expected bits.

Hand-written kernels (one per result width) compute each corner of PTX semantics from values
they load (so ptxas cannot fold them): integer wrap, shifts past the width, min/max with NaN,
integer division by zero and INT_MIN / -1 at 16, 32 and 64 bits, f16 and bf16 rounding ties,
NaN/inf/overflow conversions, and the f32 atomic add's flush of subnormals (global memory only).
Both backends must produce exactly the expected bits, so they agree bit for bit. A misaligned
vector load must fault on both.
"""

import os
import struct
import subprocess
import sys

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
          f32bits(3e9), f32bits(70000.0), f32bits(1 + 3 * 2 ** -8),
          0x8000,                          # INT16_MIN (in %r8, narrowed with cvt.u16.u32)
          0x00400000]                      # an f32 subnormal, 2**-127 (in %f10)

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
    ("INT16_MIN / -1", "cvt.u16.u32 %rs1, %r8; cvt.u16.u32 %rs2, %r5; div.s16 %rs3, %rs1, %rs2; "
     "cvt.u32.u16 %r40, %rs3;", 0x8000),
    ("INT16_MIN % -1", "cvt.u16.u32 %rs1, %r8; cvt.u16.u32 %rs2, %r5; rem.s16 %rs3, %rs1, %rs2; "
     "cvt.u32.u16 %r40, %rs3;", 0),
    ("div.s16 by zero", "cvt.u16.u32 %rs1, %r8; cvt.u16.u32 %rs2, %r3; div.s16 %rs3, %rs1, %rs2; "
     "cvt.u32.u16 %r40, %rs3;", 0xFFFF),
    # atom.add.f32 flushes subnormals on global memory, not on shared (PTX ISA atom)
    ("atom.global.add.f32 flushes a subnormal", "st.global.u32 {slot}, %r3; "
     "atom.global.add.f32 %f40, {slot}, %f10; ld.global.u32 %r40, {slot};", 0),
    ("atom.shared.add.f32 keeps a subnormal", "st.shared.u32 [sbuf], %r3; "
     "atom.shared.add.f32 %f40, [sbuf], %f10; ld.shared.u32 %r40, [sbuf];", 0x00400000),
]

M64 = (1 << 64) - 1
INPUTS64 = [-2**63 & M64, M64, 0, 7, 2**63 - 1, -7 & M64, 2]   # %rd10 .. %rd16
CASES64 = [
    ("INT64_MIN / -1 wraps", "div.s64 %rd40, %rd10, %rd11;", 1 << 63),
    ("INT64_MIN % -1", "rem.s64 %rd40, %rd10, %rd11;", 0),
    ("INT64_MIN / 7 truncates", "div.s64 %rd40, %rd10, %rd13;", -(2**63 // 7) & M64),
    ("INT64_MIN % 7 takes the dividend's sign", "rem.s64 %rd40, %rd10, %rd13;", -(2**63 % 7) & M64),
    ("INT64_MIN / INT64_MIN", "div.s64 %rd40, %rd10, %rd10;", 1),
    ("INT64_MAX / -1", "div.s64 %rd40, %rd14, %rd11;", -(2**63 - 1) & M64),
    ("-7 / 2", "div.s64 %rd40, %rd15, %rd16;", -3 & M64),
    ("-7 % 2", "rem.s64 %rd40, %rd15, %rd16;", -1 & M64),
    ("div.s64 by zero", "div.s64 %rd40, %rd10, %rd12;", M64),
    ("rem.s64 by zero", "rem.s64 %rd40, %rd15, %rd12;", M64),
    ("div.u64 2^63 / 7", "div.u64 %rd40, %rd10, %rd13;", 2**63 // 7),
    ("div.u64 by zero", "div.u64 %rd40, %rd13, %rd12;", M64),
]


def _ptx(cases, loads, width) -> str:
    bits, res = (32, "%r40") if width == 32 else (64, "%rd40")
    body = "\n".join(f"\t{ptx.format(slot=f'[%rd2+{width // 8 * k}]')}\n"
                     f"\tst.global.u{bits} [%rd2+{width // 8 * k}], {res};"
                     for k, (_, ptx, _) in enumerate(cases))
    return f""".version 7.8
.target sm_80
.address_size 64
.visible .entry edge(.param .u64 pin, .param .u64 pout)
{{
\t.reg .b32 %r<48>;
\t.reg .f32 %f<48>;
\t.reg .b16 %rs<4>;
\t.reg .b64 %rd<48>;
\t.shared .align 4 .b8 sbuf[4];
\tld.param.u64 %rd1, [pin];
\tcvta.to.global.u64 %rd1, %rd1;
\tld.param.u64 %rd2, [pout];
\tcvta.to.global.u64 %rd2, %rd2;
{loads}
{body}
\tret;
}}
"""


def _loads32():
    r = [f"\tld.global.u32 %r{i + 1}, [%rd1+{4 * i}];" for i in range(7)]
    f = [f"\tld.global.f32 %f{i + 1}, [%rd1+{4 * (7 + i)}];" for i in range(9)]
    return "\n".join(r + f + ["\tld.global.u32 %r8, [%rd1+64];", "\tld.global.f32 %f10, [%rd1+68];"])


TABLES = {
    32: (CASES, INPUTS, _loads32),
    64: (CASES64, INPUTS64, lambda: "\n".join(f"\tld.global.u64 %rd{10 + i}, [%rd1+{8 * i}];"
                                               for i in range(len(INPUTS64)))),
}


@pytest.mark.parametrize("width", [32, 64])
@pytest.mark.parametrize("backend", ["sim", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_ptx_edge_cases_same_bits(backend, width):
    if backend == "cuda" and not gpu_available():
        pytest.skip("needs a CUDA driver and device")
    cases, inputs, loads = TABLES[width]
    u = np.uint32 if width == 32 else np.uint64
    ptx = _ptx(cases, loads(), width)
    inp = np.array(inputs, u)
    out = np.full(len(cases), 0xDEADBEEF, u)
    if backend == "sim":
        run_ptx(ptx, "edge", 1, 1, [inp, out])
    else:
        kaiodsl.set_backend("cuda")
        PtxKernel(ptx, [f"pin: Ptr[u{width}]", f"pout: Ptr[u{width}] writable"])[1, 1](inp, out)
    wrong = [f"{what}: got {int(got):#x}, expected {want:#x}"
             for (what, _, want), got in zip(cases, out) if int(got) != want]
    assert not wrong, "\n".join(wrong)


MISALIGNED = """.version 7.8
.target sm_80
.address_size 64
.visible .entry mis(.param .u64 pin, .param .u64 pout)
{
\t.reg .b32 %r<8>;
\t.reg .b64 %rd<4>;
\tld.param.u64 %rd1, [pin];
\tcvta.to.global.u64 %rd1, %rd1;
\tld.param.u64 %rd2, [pout];
\tcvta.to.global.u64 %rd2, %rd2;
\tld.global.v4.u32 {%r1, %r2, %r3, %r4}, [%rd1+4];
\tst.global.v4.u32 [%rd2], {%r1, %r2, %r3, %r4};
\tret;
}
"""

_FAULT = f"""
import numpy as np, kaiodsl
from kaiodsl.runtime.ptx_kernel import PtxKernel
k = PtxKernel({MISALIGNED!r}, ["pin: Ptr[u32]", "pout: Ptr[u32] writable"])
print("BACKEND", kaiodsl.get_backend_name())
try:
    k[1, 1](np.arange(16, dtype=np.uint32), np.zeros(4, np.uint32))
    kaiodsl.synchronize()  # the fault is asynchronous: RAN only once the launch is known to be done
    print("RAN")
except kaiodsl.KaioError as e:
    print(type(e).__name__, e)
"""


@pytest.mark.parametrize("backend", ["sim", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_misaligned_vector_load_faults_on_both_backends(backend):
    """A .v4 load at 4 bytes past a 16-byte boundary: the GPU's misaligned-address fault (in a
    child process: on the GPU the fault ends the CUDA context). All four words are stored: with
    only one used, ptxas narrows the load to an aligned scalar LDG.E (seen in its SASS): no fault."""
    if backend == "cuda" and not gpu_available():
        pytest.skip("needs a CUDA driver and device")
    env = {**os.environ, "KAIODSL_BACKEND": backend}
    r = subprocess.run([sys.executable, "-c", _FAULT], capture_output=True, text=True, env=env, timeout=300)
    out = r.stdout + r.stderr
    assert f"BACKEND {backend}" in out and "RAN" not in out and "misaligned address" in out.lower(), out
