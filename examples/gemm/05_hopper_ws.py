"""GEMM tutorial, level 5: the Hopper kernel -- TMA, wgmma, warp specialisation (sm_90a).

Level 4 made every thread a copier and a computer in turn. On Hopper both jobs get their own
hardware and, in this kernel, their own warps:

* **TMA** (``cp.async.bulk.tensor``): one thread issues the copy of a whole [rows, 64] box of A or B
  described by a tensor map; the copy engine computes the addresses, applies the 128-byte swizzle
  that wgmma reads, and zero-fills past the matrix edges. No registers, no per-thread address math.
* **An mbarrier ring**: each stage has a *full* barrier (the TMA bytes complete on it: ``expect_tx``)
  and an *empty* one (the consumers arrive when they are done reading); waits check a phase bit
  that flips each time the ring wraps (``tiles.Ring``'s ``(index, phase)``).
* **Warp specialisation**: a *producer* warpgroup only issues TMA into the ring; the *consumer*
  warpgroups only run ``wgmma.mma_async`` (a warpgroup-wide m64nNk16 that reads A and B straight from
  shared memory through descriptors, no ldmatrix) and the epilogue. ``setmaxnreg`` moves registers
  from the producer (it needs few) to the consumers (their accumulators are large).
* **A persistent tile loop**: one block per SM walks the output tiles, so the ring and the barriers
  are set up once and the next tile's loads overlap the current tile's epilogue.

The kernel is the op library's own (``kaiodsl/ops/gemm_sm90.py``, about 120 lines of kernel built
from ``tiles.pipeline.Ring(kind="mbarrier")``, ``tiles.warpgroup`` and ``tiles.epilogue``): read it
next to this file. This level calls it with the heuristic's tiling (``sm90_config``: 128 x 256 tiles,
two consumer warpgroups of 64 rows, a 4-stage ring) and prints the choice; ``ops.matmul`` takes the
same kernel by itself on sm_90a. Same contract as every level: a [M, K] @ b [N, K]^T -> f32.
"""

import importlib
import importlib.util
import os
from contextlib import contextmanager

import kaiodsl

from gemm_common import check_args, check_level

DEMO_ARCHS = ("sm_90a",)          # wgmma and setmaxnreg exist on sm_90a only
MODULE = "kaiodsl.ops.gemm_sm90"
ENTRY = "gemm_sm90"               # the function of MODULE this level calls: (a, b, out_dtype=...) -> result


def available() -> bool:
    """Whether the Hopper GEMM op is installed (kaiodsl.ops is the checkout's ops/ folder)."""
    return importlib.util.find_spec(MODULE) is not None


DEMO_SKIP = None if available() else f"{MODULE} is not part of this kaiodsl install"


def gemm(a, b, out=None):
    """a [M, K] f16 @ b [N, K] f16 ^T -> [M, N] f32 on sm_90a; K a multiple of 8 (TMA row strides)."""
    M, N, K, out = check_args("gemm_hopper_ws", a, b, out, k_multiple=8)
    if not available():
        raise kaiodsl.KaioError(f"gemm_hopper_ws: {MODULE} is not part of this kaiodsl install")
    res = getattr(importlib.import_module(MODULE), ENTRY)(a, b, out_dtype="f32")
    if out is None:
        return res
    out[...] = res
    return out


@contextmanager
def _sm90a_in_simulator():
    """The simulator defaults to sm_80; wgmma needs sm_90a (on a GPU the device decides)."""
    old = os.environ.get("KAIODSL_ARCH")
    if kaiodsl.get_backend_name() == "sim":
        os.environ["KAIODSL_ARCH"] = "sm_90a"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("KAIODSL_ARCH", None)
        else:
            os.environ["KAIODSL_ARCH"] = old


def run(quick: bool = False) -> str:
    if not available():
        return f"skipped: {MODULE} is not part of this kaiodsl install"
    with _sm90a_in_simulator():
        return check_level(gemm, quick)


if __name__ == "__main__":
    print(run(quick=True))
