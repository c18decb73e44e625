"""The simulator refuses what a GPU refuses (issue 10, item 6): misaligned vector accesses, launches
past the arch's limits (the CUDA backend's check and messages), and PTX that ptxas rejects."""

import numpy as np
import pytest

import kaiodsl
from kaiodsl import Ptr, f32
from kaiodsl.errors import LaunchError, LinkError, SimError
from kaiodsl.limits import arch_limits, check_launch, max_threads_for
from kaiodsl.runtime.ptx_kernel import PtxKernel
from kaiodsl.sim import run_ptx
from simkit import HEADER, PROLOGUE, kernel, load_ptrs

SH = "\t.shared .align 16 .b8 buf[256];\n"


def _run(body, arrays, block=32, grid=1, smem=0, **kw):
    ptx = kernel(load_ptrs(len(arrays)) + PROLOGUE + "\tmov.u32 %r2, buf;\n" + body + "\n\tret;",
                 params=("u64",) * len(arrays), decls=SH, **kw)
    run_ptx(ptx, "k", (grid,), (block,), arrays, smem=smem)


# Every vector memory form at an address aligned to its element but not to the whole vector.
VECTOR = [
    ("ld.global.v4", "\tld.global.v4.u32 {%r10, %r11, %r12, %r13}, [%rd0+4];", "global", 16),
    ("ld.global.v2.f64", "\tld.global.v2.f64 {%fd1, %fd2}, [%rd0+8];", "global", 16),
    ("st.global.v2", "\tmov.u32 %r10, 1;\n\tst.global.v2.u32 [%rd0+4], {%r10, %r10};", "global", 8),
    ("ld.shared.v4", "\tld.shared.v4.f32 {%f1, %f2, %f3, %f4}, [%r2+8];", "shared", 16),
    ("st.shared.v2", "\tmov.b32 %r10, 1;\n\tst.shared.v2.b32 [%r2+4], {%r10, %r10};", "shared", 8),
    ("ld.generic.v4", "\tld.v4.u32 {%r10, %r11, %r12, %r13}, [%rd0+8];", "generic", 16),
    ("red.global.v2.f32", "\tmov.f32 %f1, 0f3F800000;\n\tred.global.v2.f32.add [%rd0+4], {%f1, %f1};",
     "global", 8),
    ("cp.async 16 source", "\tcp.async.cg.shared.global [%r2], [%rd0+8], 16;\n\tcp.async.wait_all;",
     "global", 16),
]


@pytest.mark.parametrize("body,space,width", [v[1:] for v in VECTOR], ids=[v[0] for v in VECTOR])
def test_misaligned_vector_access_faults(body, space, width):
    a = np.zeros(64, np.float32)
    with pytest.raises(SimError, match=f"misaligned {space} access.* {width} ") as e:
        _run(body, [a])
    assert e.value.address is not None and e.value.thread == (0, 0, 0)
    shift = {"+4]": "+16]", "+8]": "+16]"}
    fixed = body
    for k, v in shift.items():
        fixed = fixed.replace(k, v)
    _run(fixed, [a])


def test_misaligned_vector_load_does_not_return_shifted_data():
    # the load(x, 1, vec=4): runs on the CPU no more than on the GPU
    x = np.arange(16, dtype=np.float32)
    with pytest.raises(SimError, match="misaligned"):
        _run("\tld.global.v4.f32 {%f1, %f2, %f3, %f4}, [%rd0+4];\n\tst.global.f32 [%rd1], %f1;",
             [x, np.zeros(1, np.float32)])


TINY = kernel("\tret;", params=("u64",))


# (what, arch, grid, block, dynamic smem, message) -- the CUDA backend's messages (kaiodsl.limits)
LIMITS = [
    ("2048 threads", "sm_90a", 1, (2048, 1, 1), 0, "block.x=2048 exceeds the device limit 1024"),
    ("1024 x 2 threads", "sm_90a", 1, (1024, 2, 1), 0, "has 2048 threads; the device allows 1024"),
    ("block.z 128", "sm_90a", 1, (1, 1, 128), 0, "block.z=128 exceeds the device limit 64"),
    ("grid.y 70000", "sm_90a", (1, 70000, 1), 32, 0, "grid.y=70000 exceeds the device limit 65535"),
    ("grid.z 65536", "sm_80", (1, 1, 65536), 32, 0, "grid.z=65536 exceeds the device limit 65535"),
    ("grid.x 2^31", "sm_89", (2**31, 1, 1), 32, 0, "grid.x=2147483648 exceeds the device limit 2147483647"),
    ("300 KB smem", "sm_90a", 1, 32, 300 * 1024, "exceeds the device limit 232448 B"),
    ("228 KB smem sm_90", "sm_90a", 1, 32, 228 * 1024, "exceeds the device limit 232448 B"),
    ("164 KB smem sm_80", "sm_80", 1, 32, 164 * 1024, "exceeds the device limit 166912 B"),
    ("100 KB smem sm_89", "sm_89", 1, 32, 100 * 1024, "exceeds the device limit 101376 B"),
]


@pytest.mark.parametrize("arch,grid,block,smem,msg", [c[1:] for c in LIMITS], ids=[c[0] for c in LIMITS])
def test_launch_past_the_device_limits_is_refused(arch, grid, block, smem, msg):
    ptx = TINY.replace(".target sm_90a", f".target {arch}").replace(".extern", ".extern")
    with pytest.raises(LaunchError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        run_ptx(ptx, "k", grid, block, [np.zeros(1, np.float32)], smem=smem)


@pytest.mark.parametrize("arch,smem", [("sm_90a", 227 * 1024), ("sm_80", 163 * 1024), ("sm_89", 99 * 1024)])
def test_largest_dynamic_shared_memory_of_each_arch_runs(arch, smem):
    ptx = TINY.replace(".target sm_90a", f".target {arch}")
    run_ptx(ptx, "k", 1, 32, [np.zeros(1, np.float32)], smem=smem)


def test_static_shared_counts_toward_the_limit():
    ptx = kernel("\tret;", decls="\t.shared .align 4 .b8 big[200000];\n")
    with pytest.raises(LaunchError, match="200000 B static \\+ 40000 B dynamic"):
        run_ptx(ptx, "k", 1, 32, [np.zeros(1)], smem=40000)


def test_register_limits_follow_the_allocation_granularity():
    a = arch_limits("sm_90a")
    assert max_threads_for(32, a) == 1024 and max_threads_for(64, a) == 1024
    assert max_threads_for(65, a) == 896 and max_threads_for(255, a) == 256
    assert max_threads_for(32, a, maxntid=128) == 128
    with pytest.raises(LaunchError, match="255 registers/thread x 512 threads"):
        check_launch("k", a, (1, 1, 1), (512, 1, 1), 0, 0, None, 255, max_threads_for(255, a))


def test_maxntid_is_a_launch_limit():
    ptx = TINY.replace(".visible .entry k(\n\t.param .u64 p0\n)\n", ".visible .entry k(\n\t.param .u64 p0\n)\n"
                       ".maxntid 128, 1, 1\n")
    assert ".maxntid" in ptx
    with pytest.raises(LaunchError, match="at most 128 threads per block"):
        run_ptx(ptx, "k", 1, 256, [np.zeros(1)])
    run_ptx(ptx, "k", 1, 128, [np.zeros(1)])


def test_unknown_arch_is_an_error():
    with pytest.raises(LaunchError, match="no launch limits are known for arch 'sm_52'"):
        arch_limits("sm_52")


# PTX that ptxas rejects is never run (issue 10, items 5 and 6): the two forms from the fuzz run.
REJECTED = [
    ("abs.u32", "\tmov.u32 %r5, 3;\n\tabs.u32 %r6, %r5;", "abs"),
    ("cvt.sat.s32.s32", "\tmov.u32 %r5, 3;\n\tcvt.sat.s32.s32 %r6, %r5;", "cvt"),
]


@pytest.mark.parametrize("body,word", [r[1:] for r in REJECTED], ids=[r[0] for r in REJECTED])
def test_ptx_that_ptxas_rejects_is_a_link_error(body, word):
    with pytest.raises(LinkError, match="rejects this PTX for sm_90a") as e:
        _run(body, [np.zeros(4, np.float32)])
    assert "ptxas" in str(e.value) and word in str(e.value)


def test_user_ptx_kernel_is_assembled_before_the_simulator_runs_it(backend):
    bad = HEADER + ".visible .entry k(.param .u64 p0)\n{\n\t.reg .b32 %r<4>;\n\tmov.u32 %r1, 1;\n" \
        "\tabs.u32 %r2, %r1;\n\tret;\n}\n"
    with pytest.raises((LinkError, kaiodsl.CudaError), match="abs"):
        PtxKernel(bad, ["x: Ptr[f32]"])[1, 32](np.zeros(4, np.float32))


def test_generated_kernels_are_assembled_once_per_text(backend):
    @kaiodsl.kernel
    def k(x: Ptr[f32]):
        x[0] = f32(2.0)

    x = np.zeros(1, np.float32)
    k[1, 1](x)
    assert x[0] == 2.0
    if backend.name == "sim":
        from kaiodsl.sim import preflight
        n = len(preflight._LINKED)
        k[1, 1](x)
        assert len(preflight._LINKED) == n
