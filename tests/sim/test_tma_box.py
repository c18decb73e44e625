"""A TMA box outside the tensor map's rules, in hand-written PTX whose tensor map bytes nothing validated
(kaiodsl.TensorMap refuses such a box on the host): cp.async.bulk.tensor reports the rule, the PTX line
and the thread; the valid twin loads the box."""

import dataclasses

import numpy as np
import pytest

from kaiodsl.errors import SimError
from kaiodsl.runtime.tensormap import tensor_map
from kaiodsl.sim import run_ptx
from kaiodsl.sim.memory import GLOBAL_BASE
from simkit import kernel, load_ptrs

# p0: the [16, 32] u32 tensor (mapped first: at GLOBAL_BASE), p1: the tensor map's 128 bytes in global
# memory, p2: out. Thread 0 loads the box at (0, 0) into smem on an mbarrier; out[t] = smem word t.
BODY = """\tmov.u32 %r1, %tid.x;
\tmov.u32 %r2, smem;
\tmov.u32 %r3, bar;
\tmov.u32 %r4, 0;
\tsetp.ne.u32 %p1, %r1, 0;
\t@%p1 bra $L_wait;
\tmbarrier.init.shared.b64 [%r3], 1;
\tmbarrier.arrive.expect_tx.shared::cta.b64 %rd9, [%r3], 2048;
\tcp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%r2], [%rd1, {%r4, %r4}], [%r3];
$L_wait:
\tbar.sync 0;
$L_w:
\tmbarrier.try_wait.parity.shared::cta.b64 %p2, [%r3], 0;
\t@!%p2 bra $L_w;
\tshl.b32 %r5, %r1, 2;
\tadd.s32 %r5, %r2, %r5;
\tld.shared.u32 %r6, [%r5];
\tmul.wide.u32 %rd5, %r1, 4;
\tadd.s64 %rd5, %rd2, %rd5;
\tst.global.u32 [%rd5], %r6;
\tret;"""

SPEC = tensor_map(GLOBAL_BASE, "u32", (16, 32), (16, 32), swizzle=128)  # valid: 2048 bytes, 128-byte rows


@pytest.mark.parametrize("box,msg", [
    (None, None),
    ((64, 8), r"breaks the driver's rules: TensorMap box=\(8, 64\): the inner box dimension is 256 bytes, "
              r"more than the 128-byte swizzle span"),
    ((32, 300), r"box=\(300, 32\): every box dimension must be 1..256"),
    ((2, 16), r"box=\(16, 2\): the inner box dimension is 8 bytes: it must be a multiple of 16"),
    ((32, 32), r"the 4096-byte box does not fit in shared memory at this address"),
])
def test_tma_box_outside_the_tensor_map_rules(rng, box, msg):
    a = rng.integers(0, 2**32, (16, 32), dtype=np.uint32)
    spec = SPEC if box is None else dataclasses.replace(SPEC, box=box)  # innermost first, unvalidated
    tmap = np.frombuffer(spec.sim_bytes(), np.uint8).copy()
    out = np.full(32, 0xDEADBEEF, np.uint32)
    ptx = kernel(load_ptrs(3) + BODY, params=("u64",) * 3,
                 decls="\t.shared .align 1024 .b8 smem[2048];\n\t.shared .align 8 .b64 bar;\n")
    if msg is None:
        run_ptx(ptx, "k", 1, 32, [a, tmap, out])
        np.testing.assert_array_equal(out, a[0])  # row 0 of a 128-byte swizzle is not permuted
        return
    with pytest.raises(SimError, match=msg) as e:
        run_ptx(ptx, "k", 1, 32, [a, tmap, out])
    assert e.value.thread == (0, 0, 0) and "cp.async.bulk.tensor" in ptx.splitlines()[e.value.ptx_line - 1]
