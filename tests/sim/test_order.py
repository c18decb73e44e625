"""The race checker orders shared memory the Hopper way: an mbarrier phase hands one warp's st.shared
to the warps that wait on it, and distributed shared memory is ordered across the CTAs of a cluster by
barrier.cluster or a remote mbarrier arrive. Each planted bug is reported (PTX line, thread) and its
correct twin runs clean with the right numbers."""

import numpy as np
import pytest

from kaiodsl.errors import SimError
from kaiodsl.sim import run_ptx
from simkit import kernel, load_ptrs

# Warp 1 fills buf[lane] each round and arrives on FULL; warp 0 waits on FULL, reads buf[lane] into
# out and arrives on EMPTY, which warp 1 waits on before it overwrites buf in the next round.
# ``first`` is the warp whose code comes first (the simulator runs the lowest PC first).
RING = """\tmov.u32 %r1, %tid.x;
\tand.b32 %r7, %r1, 31;
\tmov.u32 %r2, buf;
\tshl.b32 %r3, %r7, 2;
\tadd.s32 %r4, %r2, %r3;
\tmov.u32 %r10, bars;
\tmul.wide.u32 %rd5, %r7, 4;
\tadd.s64 %rd5, %rd0, %rd5;
\tsetp.ne.u32 %p1, %r1, 0;
\t@%p1 bra $L_init;
\tmbarrier.init.shared.b64 [%r10], 32;
\tmbarrier.init.shared.b64 [%r10+8], 32;
\tfence.mbarrier_init.release.cluster;
$L_init:
\tbar.sync 0;
\tsetp.{cmp}.u32 %p2, %r1, 32;
\t@%p2 bra $L_second;
{first}
\tbra.uni $L_end;
$L_second:
{second}
$L_end:
\tret;"""

WAIT = """$L_w{n}:
\tmbarrier.try_wait.parity.shared::cta.b64 %p3, [%r10+{off}], {parity};
\t@!%p3 bra $L_w{n};"""


def _ring(bug: str, first: str, rounds: int = 2) -> str:
    prod, cons = [], []
    for r in range(rounds):
        if r and bug != "no_empty_wait":
            prod.append(WAIT.format(n=f"p{r}", off=8, parity=(r - 1) & 1))
        prod.append(f"\tadd.u32 %r20, %r1, {1000 * r};\n\tst.shared.u32 [%r4], %r20;\n"
                    "\tmbarrier.arrive.shared.b64 %rd9, [%r10];")
        if bug != "no_full_wait":
            parity = (r & 1) ^ (1 if bug == "wrong_parity" else 0)
            cons.append(WAIT.format(n=f"c{r}", off=0, parity=parity))
        cons.append(f"\tld.shared.u32 %r21, [%r4];\n\tst.global.u32 [%rd5+{128 * r}], %r21;\n"
                    "\tmbarrier.arrive.shared.b64 %rd9, [%r10+8];")
    code = {"producer": "\n".join(prod), "consumer": "\n".join(cons)}
    second = "consumer" if first == "producer" else "producer"
    decls = "\t.shared .align 8 .b64 bars[2];\n\t.shared .align 16 .b8 buf[128];\n"
    body = RING.format(cmp="lt" if first == "producer" else "ge", first=code[first], second=code[second])
    return kernel(load_ptrs(1) + body, decls=decls)


READ_RACE = r"race: thread reads shared byte 0x10; thread \(32, 0, 0\) of block \(0, 0, 0\) touched it"
WRITE_RACE = r"race: thread writes shared byte 0x10; thread \(0, 0, 0\) of block \(0, 0, 0\) touched it"


@pytest.mark.parametrize("bug,first,rounds,msg,at", [
    ("none", "producer", 2, None, None),
    ("none", "consumer", 2, None, None),
    # warp 0 reads what warp 1 wrote with no wait between: read after write
    ("no_full_wait", "producer", 2, READ_RACE, "ld.shared"),
    # warp 0 waits on parity 1 first: the phase before phase 0 counts as completed, so it reads
    # before warp 1 writes, and nothing orders the two: write after read
    ("wrong_parity", "consumer", 2, WRITE_RACE, "st.shared"),
    # ... or, with warp 1 first, phase 0 has completed and parity 1 waits for phase 1: nobody arrives
    ("wrong_parity", "producer", 1, r"deadlock: mbarrier at shared offset 0x0 of block \(0, 0, 0\) never "
                                    r"completes phase 1, .* waiting threads include \[\(0, 0, 0\)", "try_wait"),
    # warp 1 overwrites buf in round 1 while warp 0 may still read round 0's values
    ("no_empty_wait", "consumer", 2, WRITE_RACE, "st.shared"),
])
def test_mbarrier_handoff_through_shared_memory(bug, first, rounds, msg, at):
    out = np.full(64, 0xDEADBEEF, np.uint32)
    ptx = _ring(bug, first, rounds)
    if msg is None:
        run_ptx(ptx, "k", 1, 64, [out])
        lane = np.arange(32, dtype=np.uint32)
        np.testing.assert_array_equal(out, np.concatenate([lane + 32, lane + 1032]))
        return
    with pytest.raises(SimError, match=msg) as e:
        run_ptx(ptx, "k", 1, 64, [out])
    assert e.value.thread is not None and at in ptx.splitlines()[e.value.ptx_line - 1]


# Cluster of 2 CTAs of 32 threads: rank 1 writes rank 0's buf[lane] through mapa + st.shared::cluster,
# then {sync}; rank 0 (after {wait}) reads its own buf[lane] into out.
DSMEM = """\tmov.u32 %r1, %tid.x;
\tmov.u32 %r8, %cluster_ctarank;
\tmov.u32 %r2, buf;
\tshl.b32 %r3, %r1, 2;
\tadd.s32 %r4, %r2, %r3;
\tmov.u32 %r10, bar;
\tmov.u32 %r9, %ctaid.x;
\tshr.u32 %r9, %r9, 1;
\tshl.b32 %r9, %r9, 5;
\tadd.s32 %r9, %r9, %r1;
\tmul.wide.u32 %rd5, %r9, 4;
\tadd.s64 %rd5, %rd0, %rd5;
\tsetp.ne.u32 %p1, %r1, 0;
\t@%p1 bra $L_init;
\tmbarrier.init.shared.b64 [%r10], 32;
\tfence.mbarrier_init.release.cluster;
$L_init:
\tbarrier.cluster.arrive.aligned;
\tbarrier.cluster.wait.aligned;
\tsetp.eq.u32 %p2, %r8, 0;
\t@%p2 bra $L_rank0;
\tmapa.shared::cluster.u32 %r11, %r4, 0;
\tadd.u32 %r12, %r1, 77;
\tst.shared::cluster.u32 [%r11], %r12;
{release}
\tbra.uni $L_end;
$L_rank0:
{acquire}
\tld.shared.u32 %r13, [%r4];
\tst.global.u32 [%rd5], %r13;
$L_end:
{tail}
\tret;"""

CLUSTER = "\tbarrier.cluster.arrive{relaxed}.aligned;\n\tbarrier.cluster.wait.aligned;"
REMOTE_ARRIVE = "\tmapa.shared::cluster.u32 %r14, %r10, 0;\n" \
                "\tmbarrier.arrive.release.cluster.shared::cluster.b64 _, [%r14];"
BAR_WAIT = "$L_w:\n\tmbarrier.try_wait.parity.shared::cta.b64 %p3, [%r10], 0;\n\t@!%p3 bra $L_w;"
FINAL = "\tbarrier.cluster.arrive.aligned;\n\tbarrier.cluster.wait.aligned;"  # buf outlives the peer's use


def _dsmem(release, acquire, tail=FINAL):
    decls = "\t.shared .align 8 .b64 bar;\n\t.shared .align 16 .b8 buf[128];\n"
    return kernel(load_ptrs(1) + DSMEM.format(release=release, acquire=acquire, tail=tail), decls=decls)


CASES = {
    # barrier.cluster on both sides, as cluster_sync(): ordered
    "cluster_sync": (_dsmem(CLUSTER.format(relaxed=""), CLUSTER.format(relaxed=""), ""), None),
    # rank 1 arrives remotely on rank 0's mbarrier after its writes; rank 0 waits on it: ordered
    "remote_arrive": (_dsmem(REMOTE_ARRIVE, BAR_WAIT), None),
    # no synchronization between rank 1's remote write and rank 0's read
    "none": (_dsmem("", ""), r"race: thread reads shared byte 0x10; thread \(0, 0, 0\) of block \(1, 0, 0\)"),
    # .relaxed arrive orders no memory
    "relaxed": (_dsmem(CLUSTER.format(relaxed=".relaxed"), CLUSTER.format(relaxed=""), ""),
                r"race: thread reads shared byte 0x10; thread \(0, 0, 0\) of block \(1, 0, 0\)"),
    # the remote arrive without rank 0 waiting on the barrier
    "arrive_no_wait": (_dsmem(REMOTE_ARRIVE, ""), r"race: thread reads .* of block \(1, 0, 0\)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_distributed_shared_memory_ordering(case):
    ptx, msg = CASES[case]
    out = np.full(64, 0xDEADBEEF, np.uint32)
    if msg is None:
        run_ptx(ptx, "k", 4, 32, [out], cluster=2)
        np.testing.assert_array_equal(out, np.tile(np.arange(32, dtype=np.uint32) + 77, 2))
        return
    with pytest.raises(SimError, match=msg) as e:
        run_ptx(ptx, "k", 4, 32, [out], cluster=2)
    assert "ld.shared.u32" in ptx.splitlines()[e.value.ptx_line - 1] and e.value.block == (0, 0, 0)


def test_bar_sync_does_not_order_another_ctas_writes():
    """Rank 1 writes rank 0's buf; rank 0 passes a bar.sync of its own and writes it too: bar.sync
    orders one CTA, so the two writes race."""
    ptx = _dsmem("", "\tbar.sync 0;\n\tst.shared.u32 [%r4], %r1;")
    with pytest.raises(SimError, match=r"race: thread writes shared byte 0x10; thread \(0, 0, 0\) of block "
                                       r"\(1, 0, 0\) touched it") as e:
        run_ptx(ptx, "k", 2, 32, [np.zeros(32, np.uint32)], cluster=2)
    assert e.value.block == (0, 0, 0)
