"""Every checker catches its planted bug, and the correct twin passes."""

import numpy as np
import pytest

from kaiodsl.errors import SimError
from kaiodsl.sim import run_ptx
from simkit import PROLOGUE, kernel, load_ptrs

SH = "\t.shared .align 16 .b8 buf[512];\n"


def _run(body, arrays=(), block=64, grid=1, decls=SH, **kw):
    arrays = list(arrays) or [np.zeros(block * grid, np.int32)]
    ptx = kernel(load_ptrs(len(arrays)) + PROLOGUE + "\tmov.u32 %r1, %tid.x;\n\tmov.u32 %r2, buf;\n"
                 "\tshl.b32 %r3, %r1, 2;\n\tadd.s32 %r4, %r2, %r3;\n" + body + "\n\tret;",
                 params=("u64",) * len(arrays), decls=decls)
    run_ptx(ptx, "k", (grid,), (block,), arrays, **kw)


def _expect(match, *a, **kw):
    with pytest.raises(SimError, match=match) as e:
        _run(*a, **kw)
    return e.value


def test_global_out_of_bounds_names_everything():
    a = np.zeros(60, np.int32)
    body = "\t// @ user.py:7  a[i] = 1\n\tadd.s64 %rd5, %rd0, %rd40;\n\tst.global.u32 [%rd5], 1;"
    err = _expect("out-of-bounds global", body, [a], grid=2, block=32)
    assert err.thread == (28, 0, 0) and err.block == (1, 0, 0)
    assert "user.py:7" in str(err) and "st.global.u32 [%rd5], 1;" in str(err) and err.ptx_line
    assert err.address is not None
    _run(body, [np.zeros(64, np.int32)], grid=2, block=32)


def test_shared_and_local_out_of_bounds():
    _expect("out-of-bounds shared", "\tst.shared.u32 [%r4+300], %r1;")
    _run("\tst.shared.u32 [%r4+256], %r1;")
    loc = SH + "\t.local .align 4 .b8 l[8];\n"
    _expect("out-of-bounds local", "\tmov.u64 %rd6, l;\n\tst.local.u32 [%rd6+8], %r1;", decls=loc)
    _run("\tmov.u64 %rd6, l;\n\tst.local.u32 [%rd6+4], %r1;", decls=loc)


RACE = """\tst.shared.u32 [%r4], %r1;
{sync}
\tadd.s32 %r5, %r1, {d};
\tand.b32 %r5, %r5, 63;
\tshl.b32 %r5, %r5, 2;
\tadd.s32 %r5, %r2, %r5;
\tld.shared.u32 %r6, [%r5];"""


def test_shared_race_between_warps():
    _expect("shared-memory race", RACE.format(sync="", d=32))
    _run(RACE.format(sync="\tbar.sync 0;", d=32))


def test_write_after_read_race_needs_second_barrier():
    body = RACE.format(sync="\tbar.sync 0;", d=32) + "\n\tst.shared.u32 [%r4], %r6;"
    _expect("shared-memory race", body)
    _run(RACE.format(sync="\tbar.sync 0;", d=32) + "\n\tbar.sync 0;\n\tst.shared.u32 [%r4], %r6;")


def test_warp_synchronous_code_needs_bar_warp_sync():
    _expect("shared-memory race", RACE.format(sync="", d=1), block=32)
    _run(RACE.format(sync="\tbar.warp.sync 0xffffffff;", d=1), block=32)


def test_atomics_do_not_race_but_plain_reads_do():
    _run("\tatom.shared.add.u32 %r6, [%r2], 1;\n\tred.shared.add.u32 [%r2], 1;")
    _expect("shared-memory race", "\tatom.shared.add.u32 %r6, [%r2], 1;\n\tld.shared.u32 %r7, [%r2];")
    _run("\tatom.shared.add.u32 %r6, [%r2], 1;\n\tbar.sync 0;\n\tld.shared.u32 %r7, [%r2];")


def test_same_instruction_write_write_race():
    _expect("write the same shared byte", "\tst.shared.u32 [%r2], %r1;")


def test_partial_barrier():
    div = "\tsetp.lt.u32 %p1, %r1, 32;\n\t@!%p1 bra $L_9;\n\tbar.sync 0;\n$L_9:"
    _expect("only part of the block", div)
    early = "\tsetp.ge.u32 %p1, %r1, 48;\n\t@%p1 ret;\n\tbar.sync 0;"
    err = _expect("exited before reaching it", early)
    assert err.block == (0, 0, 0)
    _run("\tsetp.lt.u32 %p1, %r1, 32;\n\t@!%p1 bra $L_9;\n\tadd.s32 %r9, %r9, 1;\n$L_9:\n\tbar.sync 0;")


CP = """\tmul.wide.u32 %rd6, %r1, 16;
\tadd.s64 %rd6, %rd0, %rd6;
\tshl.b32 %r7, %r1, 4;
\tadd.s32 %r7, %r2, %r7;
\tcp.async.ca.shared.global [%r7], [%rd6], 16;
\tcp.async.commit_group;
{wait}
\tld.shared.u32 %r8, [%r7+4];
\tadd.s64 %rd7, %rd1, %rd40;
\tst.global.u32 [%rd7], %r8;"""


def test_cp_async_read_before_wait():
    src = np.arange(128, dtype=np.int32)
    out = np.zeros(32, np.int32)
    _expect("before the cp.async.wait_group", CP.format(wait=""), [src, out], block=32)
    _run(CP.format(wait="\tcp.async.wait_group 0;"), [src, out], block=32)
    assert np.array_equal(out, src[1::4])


def test_cp_async_lands_at_wait_not_before():
    # with the check off the early read sees the old shared contents (zero), like hardware may
    src = np.arange(1, 129, dtype=np.int32)
    out = np.full(32, -1, np.int32)
    body = CP.format(wait="").replace("\tld.shared", "\tcp.async.wait_all;\n\tld.shared")
    _run(body, [src, out], block=32)
    assert np.array_equal(out, src[1::4])


def test_uninitialized_shared_read(monkeypatch):
    body = "\tld.shared.u32 %r6, [%r4+256];"
    _run(body)  # off by default
    _expect("uninitialized", body, check_uninit=True)
    monkeypatch.setenv("KAIODSL_SIM_CHECK_UNINIT", "1")
    _expect("uninitialized", body)
    _run("\tst.shared.u32 [%r4+256], %r1;\n\tbar.sync 0;\n\tld.shared.u32 %r6, [%r4+256];")


def test_partial_warp_collective():
    mma = ("\tsetp.lt.u32 %p1, %r1, 16;\n\t@!%p1 bra $L_9;\n"
           "\tmma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%f0,%f1,%f2,%f3}, {%r10,%r11,%r12,%r13}, "
           "{%r14,%r15}, {%f0,%f1,%f2,%f3};\n$L_9:")
    _expect("only part of the warp", mma, block=32)
    _expect("membermask", "\tsetp.lt.u32 %p1, %r1, 16;\n\t@!%p1 bra $L_9;\n"
            "\tshfl.sync.bfly.b32 %r6, %r1, 1, 31, 0xffffffff;\n$L_9:", block=32)
    _run("\tsetp.lt.u32 %p1, %r1, 16;\n\t@!%p1 bra $L_9;\n"
         "\tshfl.sync.bfly.b32 %r6, %r1, 1, 31, 0xffff;\n$L_9:", block=32)
