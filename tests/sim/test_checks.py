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


# One st.shared by many threads to one address (compute-sanitizer racecheck's definition, see
# docs/simulator.md): one warp storing one value is a single access; different values in a warp,
# or two warps (not ordered with each other), are a race.
@pytest.mark.parametrize("block,value,error", [
    (32, "7", None),                                   # one warp, same value
    (32, "%r1", "one warp write different values"),    # one warp, lane ids
    (64, "7", "different warps"),                      # two warps, same value
    (64, "%r1", "different warps|different values"),
])
def test_same_instruction_store_to_one_address(block, value, error):
    body = f"\tmov.u32 %r5, {value};\n\tst.shared.u32 [%r2], %r5;"
    if error is None:
        _run(body, block=block)
    else:
        err = _expect(error, body, block=block)
        assert err.ptx_line and err.thread is not None


def test_same_value_store_then_barrier_then_read_is_clean():
    _run("\tst.shared.u32 [%r2], 5;\n\tbar.sync 0;\n\tld.shared.u32 %r6, [%r2];", block=32)


def test_partial_barrier():
    div = "\tsetp.lt.u32 %p1, %r1, 32;\n\t@!%p1 bra $L_9;\n\tbar.sync 0;\n$L_9:"
    _expect("only part of the block", div)
    early = "\tsetp.ge.u32 %p1, %r1, 48;\n\t@%p1 ret;\n\tbar.sync 0;"
    err = _expect("exited before reaching it", early)
    assert err.block == (0, 0, 0)
    _run("\tsetp.lt.u32 %p1, %r1, 32;\n\t@!%p1 bra $L_9;\n\tmov.u32 %r9, 1;\n$L_9:\n\tbar.sync 0;")


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


# A register read by a thread that no executed instruction wrote it for (issue 10, item 2): the
# write skipped by a branch, by a predicate, or never made. Each twin writes it first and passes.
UNWRITTEN = [
    ("branch",  # the constant of the then-branch, read in the else-branch
     """\tsetp.lt.u32 %p1, %r1, 16;
\t@%p1 bra $L_else;
\t// @ user.py:5  atomic_add(x, 0, one)
\tmov.f32 %f1, 0f3FC00000;
\tst.global.f32 [%rd0], %f1;
\tbra $L_end;
$L_else:
\t// @ user.py:7  atomic_add(x, 1, one)
\tst.global.f32 [%rd0+4], %f1;
$L_end:""", "\tmov.f32 %f1, 0f3FC00000;\n", (0, 0, 0), "user.py:7"),
    ("predicated write",
     """\tsetp.lt.u32 %p1, %r1, 8;
\t// @ user.py:3  y = 7 if tid < 8
\t@%p1 mov.u32 %r7, 7;
\t// @ user.py:4  out[tid] = y
\tadd.s64 %rd5, %rd0, %rd40;
\tst.global.u32 [%rd5], %r7;""", "\tmov.u32 %r7, 0;\n", (8, 0, 0), "user.py:4"),
    ("guard predicate", "\t// @ user.py:2  if flag: ...\n\t@%p5 st.global.u32 [%rd0], %r1;",
     "\tsetp.eq.u32 %p5, %r1, 0;\n", (0, 0, 0), "user.py:2"),
    ("address", "\t// @ user.py:9  x[j] = 1\n\tst.global.u32 [%rd9], 1;",
     "\tmov.u64 %rd9, %rd0;\n", (0, 0, 0), "user.py:9"),
]


@pytest.mark.parametrize("body,fix,thread,src", [c[1:] for c in UNWRITTEN], ids=[c[0] for c in UNWRITTEN])
def test_read_of_unwritten_register(body, fix, thread, src):
    arrays = [np.zeros(64, np.int32)]
    err = _expect("no executed instruction has written", body, arrays, block=32)
    assert err.thread == thread and src in str(err) and err.source.startswith(src)
    assert err.ptx_line and str(err).count("PTX line") == 1
    _run(fix + body, arrays, block=32)


def test_unwritten_check_is_per_thread_in_lanes_that_diverged():
    # lanes 0..15 write %r7 and later read it under the same predicate: no error
    _run("\tsetp.lt.u32 %p1, %r1, 16;\n\t@%p1 mov.u32 %r7, 7;\n\t@%p1 add.s32 %r8, %r7, 1;", block=32)


# bar.sync in a divergent branch (issue 10, item 8): reported at the barrier, not as a later race.
DIVERGENT_BAR = """\tst.shared.u32 [%r4], %r1;
\tsetp.lt.u32 %p1, %r1, 64;
\t@!%p1 bra $L_skip;
\t// @ user.py:12  if tid < 64: syncthreads()
\tbar.sync 0;
$L_skip:
\t// @ user.py:13  v = buf[127 - tid]
\tsub.s32 %r5, 127, %r1;
\tshl.b32 %r5, %r5, 2;
\tadd.s32 %r5, %r2, %r5;
\tld.shared.u32 %r6, [%r5];"""


def test_barrier_in_divergent_branch_is_reported_at_the_barrier():
    err = _expect("only part of the block", DIVERGENT_BAR, block=128)
    assert "bar.sync 0;" in str(err) and err.source.startswith("user.py:12")
    assert err.thread == (64, 0, 0) and "thread (0, 0, 0)" in str(err) and "race" not in str(err)
    _run(DIVERGENT_BAR.replace("setp.lt.u32 %p1, %r1, 64", "setp.lt.u32 %p1, %r1, 128"), block=128)


def test_barrier_left_early_by_a_loop_is_divergent():
    # warp 0 runs the loop (and its barrier) twice, warp 1 once
    body = """\tshr.u32 %r5, %r1, 5;
\tsub.s32 %r5, 2, %r5;
$L_top:
\tbar.sync 0;
\tsub.s32 %r5, %r5, 1;
\tsetp.gt.s32 %p1, %r5, 0;
\t@%p1 bra $L_top;"""
    _expect("only part of the block", body, block=64)
    _run(body.replace("shr.u32 %r5, %r1, 5", "mov.u32 %r5, 0"), block=64)


def test_unaligned_barrier_may_be_reached_from_two_places():
    # barrier.sync without .aligned: threads may wait at different instructions (PTX ISA barrier)
    _run("""\tsetp.lt.u32 %p1, %r1, 32;
\t@%p1 bra $L_a;
\tbarrier.sync 0;
\tbra $L_end;
$L_a:
\tbarrier.sync 0;
$L_end:""", block=64)
    _expect("another barrier instruction", """\tsetp.lt.u32 %p1, %r1, 32;
\t@%p1 bra $L_a;
\tbar.sync 0;
\tbra $L_end;
$L_a:
\tbar.sync 0;
$L_end:""", block=64)
