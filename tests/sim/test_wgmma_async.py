"""wgmma accumulators in hand-written PTX: a register that a wgmma.mma_async writes is in flight until a
wgmma.wait_group completes its group; reading or writing it before is reported (PTX line, source line,
thread), as is refilling an ``.rs`` wgmma's A fragment registers before its group completes; the
correct twins run clean with the right numbers. (The DSL refuses this at compile
time; PTX from elsewhere is only checked here.)"""

import re

import numpy as np
import pytest

from kaiodsl.errors import SimError
from kaiodsl.sim import run_ptx
from simkit import kernel, load_ptrs

# 128 threads fill 8 KB of shared memory with f16 ones; one descriptor (128-byte swizzle, SBO 1024)
# serves as A (64 x 16) and B (8 x 16): every element of D = A B^T is 16 per wgmma.
PRE = """\tmov.u32 %r1, %tid.x;
\tmov.u32 %r2, smem;
\tshl.b32 %r3, %r1, 6;
\tadd.s32 %r4, %r2, %r3;
\tmov.b32 %r5, 0x3C003C00;
\tst.shared.v4.b32 [%r4], {%r5, %r5, %r5, %r5};
\tst.shared.v4.b32 [%r4+16], {%r5, %r5, %r5, %r5};
\tst.shared.v4.b32 [%r4+32], {%r5, %r5, %r5, %r5};
\tst.shared.v4.b32 [%r4+48], {%r5, %r5, %r5, %r5};
\tfence.proxy.async.shared::cta;
\tbar.sync 0;
\tshr.u32 %r6, %r2, 4;
\tand.b32 %r6, %r6, 16383;
\tor.b32 %r6, %r6, 65536;
\tmov.b64 %rd2, {%r6, 1073741888};
\tmul.wide.u32 %rd3, %r1, 4;
\tadd.s64 %rd4, %rd0, %rd3;
\tmov.f32 %f1, 0f00000000;
\tmov.f32 %f2, 0f00000000;
\tmov.f32 %f3, 0f00000000;
\tmov.f32 %f4, 0f00000000;
\twgmma.fence.sync.aligned;
"""
MMA1 = "\twgmma.mma_async.sync.aligned.m64n8k16.f32.f16.f16 {%f1, %f2, %f3, %f4}, %rd2, %rd2, 1, 1, 1, 0, 0;"
MMA2 = "\twgmma.mma_async.sync.aligned.m64n8k16.f32.f16.f16 {%f5, %f6, %f7, %f8}, %rd2, %rd2, 0, 1, 1, 0, 0;"
# register-A form (.rs): the A fragment is %r5 (f16 ones) in four registers %r7..%r10, copied from it
FRAG = "\tmov.b32 %r7, %r5;\n\tmov.b32 %r8, %r5;\n\tmov.b32 %r9, %r5;\n\tmov.b32 %r10, %r5;"
MMA_RS = "\twgmma.mma_async.sync.aligned.m64n8k16.f32.f16.f16 {%f1, %f2, %f3, %f4}, {%r7, %r8, %r9, %r10}, %rd2, " \
         "1, 1, 1, 0;"
REFILL = "\tmov.b32 %r8, 0;"
COMMIT = "\twgmma.commit_group.sync.aligned;"
WAIT = "\twgmma.wait_group.sync.aligned {n};"
STORE = "\t// @ user.py:{line}  out[t] = acc\n\tst.global.f32 [%rd4], %f{reg};"
ADD = "\tadd.f32 %f1, %f1, %f5;"

CASES = {
    # name: (body, expected out or the error's pattern)
    "wait_then_read": ([MMA1, COMMIT, WAIT.format(n=0), STORE.format(line=9, reg=1)], 16.0),
    "read_before_wait": ([MMA1, COMMIT, STORE.format(line=9, reg=1), WAIT.format(n=0)],
                         r"reads register %f1, an accumulator of the wgmma.mma_async at PTX line \d+, before a "
                         r"wgmma.wait_group has completed"),
    "write_before_wait": ([MMA1, COMMIT, "\tmov.f32 %f2, 0f3F800000;", WAIT.format(n=0)],
                          r"writes register %f2, an accumulator of the wgmma.mma_async"),
    # wait_group waits for committed groups only: an uncommitted wgmma is still in flight
    "no_commit": ([MMA1, WAIT.format(n=0), STORE.format(line=9, reg=1)], r"reads register %f1, an accumulator"),
    # two groups, wait_group 1: the older one has landed, the newer one has not
    "older_group": ([MMA1, COMMIT, MMA2, COMMIT, WAIT.format(n=1), STORE.format(line=9, reg=1),
                     WAIT.format(n=0), STORE.format(line=10, reg=5)], 16.0),
    "newer_group": ([MMA1, COMMIT, MMA2, COMMIT, WAIT.format(n=1), ADD, WAIT.format(n=0)],
                    r"reads register %f5, an accumulator"),
    # scale-d 0 (MMA2) does not read the accumulator; scale-d 1 on registers nothing wrote does
    "unwritten_accumulator": ([MMA2.replace("0, 1, 1, 0, 0", "1, 1, 1, 0, 0"), COMMIT, WAIT.format(n=0)],
                              r"reads register %f5, which no executed instruction has written"),
    # an .rs wgmma reads its A fragment registers until its group completes: refilling them (the next
    # k step's fragment in a loop that reuses its registers) is reported before the wait, fine after it
    "rs_wait_then_refill": ([FRAG, MMA_RS, COMMIT, WAIT.format(n=0), REFILL, STORE.format(line=9, reg=1)], 16.0),
    "rs_refill_before_wait": ([FRAG, MMA_RS, COMMIT, REFILL, WAIT.format(n=0)],
                              r"writes register %r8, an A fragment register that the wgmma.mma_async at PTX "
                              r"line \d+ reads, before a wgmma.wait_group has completed"),
    "rs_refill_in_flight_group": ([FRAG, MMA_RS, COMMIT, MMA2, COMMIT, WAIT.format(n=1), REFILL, WAIT.format(n=0),
                                   STORE.format(line=9, reg=1)], 16.0),
    "rs_refill_newer_group": ([MMA2, COMMIT, FRAG, MMA_RS, COMMIT, WAIT.format(n=1), REFILL, WAIT.format(n=0)],
                              r"writes register %r8, an A fragment register"),
    # wgmmas chained on one accumulator need no wait between them
    "chain": ([MMA1, MMA1, COMMIT, WAIT.format(n=0), STORE.format(line=9, reg=1)], 32.0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_wgmma_accumulator_before_its_wait(case):
    body, want = CASES[case]
    ptx = kernel(load_ptrs(1) + PRE + "\n".join(body) + "\n\tret;",
                 decls="\t.shared .align 1024 .b8 smem[8320];\n")
    out = np.full(128, np.nan, np.float32)
    if not isinstance(want, str):
        run_ptx(ptx, "k", 1, 128, [out])
        np.testing.assert_array_equal(out, np.full(128, want, np.float32))
        return
    with pytest.raises(SimError, match=want) as e:
        run_ptx(ptx, "k", 1, 128, [out])
    err = e.value
    assert err.thread == (0, 0, 0) and err.ptx_line
    if case == "unwritten_accumulator":
        return
    mma_line = int(re.search(r"at PTX line (\d+)", str(err)).group(1))
    assert "wgmma.mma_async" in ptx.splitlines()[mma_line - 1]
    if case.startswith("rs_"):
        assert "{%r7, %r8, %r9, %r10}" in ptx.splitlines()[mma_line - 1]
    if case in ("read_before_wait", "no_commit"):
        assert err.source and "user.py:9" in err.source
