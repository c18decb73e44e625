"""Every register is written on every path before it is read (issue 10 item 2).

The checker (ptxdefs.py) runs over kernels whose constants are read in several branches and
loops, over every example and over the op kernels; the branch reproducer also runs on both backends.
"""

import inspect

import numpy as np
import pytest

import kaiodsl
from kaiodsl import Ptr, bf16, f16, f32, i32, u8

from ptxdefs import undefined_reads
from test_cg_examples import CONSTS, KERNELS, ONLY_ON


@kaiodsl.kernel
def const_in_two_branches(x: Ptr[f32], c: i32):
    one = f32(1.5)
    if c > 0:
        kaiodsl.atomic_add(x, 0, one)
    else:
        kaiodsl.atomic_add(x, 1, one)


@kaiodsl.kernel
def consts_in_loops_and_branches(h: Ptr[f16], b: Ptr[bf16], o: Ptr[f32], q: Ptr[u8], c: i32):
    i = kaiodsl.thread_idx.x
    k = f16(0.25)
    acc = f32(0.0)
    for j in range(c):
        if j % 2 == 0:
            h[i] = h[i] + k
            acc = acc + 2.0
        else:
            b[i] = bf16(3.0)
            acc = acc * 2.0
    if c > 3:
        q[i] = u8(7)
        kaiodsl.atomic_add(o, i, acc)
    else:
        h[i + 1] = k
        kaiodsl.atomic_add(o, i, 2.0)


@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
@pytest.mark.parametrize("kernel", [const_in_two_branches, consts_in_loops_and_branches], ids=lambda k: k.__name__)
def test_no_register_read_before_written(kernel, arch):
    ptx = kernel.ptx(arch=arch)
    assert undefined_reads(ptx) == []


def test_checker_finds_a_read_on_a_path_that_never_wrote():
    ptx = """.visible .entry k()
{
\t.reg .pred %p<2>;
\t.reg .f32 %f<3>;
\t.reg .b32 %r<2>;
\tmov.u32 %r1, %tid.x;
\tsetp.eq.u32 %p1, %r1, 0;
\t@%p1 bra $a;
\tmov.f32 %f1, 0f3F800000;
\tbra.uni $b;
$a:
\t@%p1 mov.f32 %f2, 0f3F800000;
\t@!%p1 mov.f32 %f2, 0f00000000;
$b:
\tadd.f32 %f2, %f1, %f2;
\tret;
}"""
    assert undefined_reads(ptx) == [("add.f32 %f2, %f1, %f2", "%f1"), ("add.f32 %f2, %f1, %f2", "%f2")]


@pytest.mark.parametrize("backend", ["sim", pytest.param("cuda", marks=pytest.mark.gpu)], indirect=True)
@pytest.mark.parametrize("c", [1, -1])
def test_constant_read_in_either_branch(backend, c):
    x = np.full(2, -7.0, np.float32)
    const_in_two_branches[1, 1](x, c)
    want = np.array([-5.5, -7.0] if c > 0 else [-7.0, -5.5], np.float32)
    np.testing.assert_array_equal(x, want)


@pytest.mark.parametrize("kernel", KERNELS)
def test_examples_define_before_use(kernel):
    arch = ONLY_ON[kernel.__name__][0]
    defaults = {n for n, _, d in kernel.params if d is not inspect.Parameter.empty}
    assert not kernel.const_names - set(CONSTS.get(kernel.__name__, {})) - defaults
    assert undefined_reads(kernel.ptx(arch=arch, **CONSTS.get(kernel.__name__, {}))) == []


def _op_kernels():
    """One kernel per op family and pipeline (the op modules' kernel factories)."""
    import importlib
    names = ("matmul", "matmul_int4", "matmul_int8", "quantize")
    mm, m4, m8, qz = (importlib.import_module(f"kaiodsl.ops.{m}") for m in names)
    return [
        ("matmul sync nk bias", lambda: mm.gemm_kernel("f16", "f16", True, mm.SYNC, True)),
        ("matmul async kn bf16->f32", lambda: mm.gemm_kernel("bf16", "f32", False, mm.ASYNC_SMALL_M, False)),
        ("matmul tiny-M", lambda: mm.gemm_kernel("f16", "bf16", True, mm.ASYNC_TINY_M, False)),
        ("int8 scales+bias", lambda: m8.int8_kernel("f16", mm.ASYNC_SMALL_M, True, True, True)),
        ("int4 zeros", lambda: m4.int4_kernel("f16", 128, True)),
        ("int4 symmetric bf16", lambda: m4.int4_kernel("bf16", 64, False)),
        ("quantize f16", lambda: qz.KERNELS["f16"]),
    ]


@pytest.mark.parametrize("name,factory", _op_kernels(), ids=[n for n, _ in _op_kernels()])
def test_op_kernels_define_before_use(name, factory):
    assert undefined_reads(factory().ptx(arch="sm_80")) == []
