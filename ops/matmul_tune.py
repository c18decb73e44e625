"""``matmul``'s entry in the tuning registry: its search space, inputs and how to run it.

The search space, per shape, before pruning: block tiles ``block_m`` x ``block_n`` from
{16, 32, 64, 128, 256} x {64, 128, 256}; 4 or 8 warps (2 or 4 for blocks of 16 or 32 rows) as
``warps_m`` x ``warps_n`` in {1, 2, 4}^2 with warp tiles 32 or 64 on a side (16 rows where the
block has 16: a warp tile under 32 x 32 spends more on shared-memory loads than on MMAs);
``block_k`` 32 or 64 (64- or 128-byte rows); 2 to 4 pipeline stages, and the synchronous kernel
(stages=1) where K is at most 128; 2 stages only 64 deep. About 16 configs a shape for M <= 16, 116 for
large M. Pruned,
for a shape:

* the config's own ``check`` for the layout and the arch's shared-memory limit (``check_config``);
* no block taller than the next power of two of M (a 256-row tile for M=16 computes 94% padding),
  no wider than that of N;
* no more stages than there are k steps.

This is the tiled (mma.sync) kernel's table: the decode weight stream (M <= 16, b [N, K]) and the
sm_90a kernel (``matmul_sm90``, ops/gemm_sm90_tune.py) are chosen before it where they apply.
The heuristic's choice comes first, then the configs that differ from it in the fewest fields
(a time budget that cuts the list keeps the neighbourhood of the known-good config), then larger
tiles first.
"""

from __future__ import annotations

import itertools

import numpy as np

from kaiodsl.errors import ArgumentError
from kaiodsl.tuning import Tunable, register

from .matmul import GemmConfig, check_config, matmul, tiled_config

BLOCK_M = (16, 32, 64, 128, 256)
BLOCK_N = (64, 128, 256)
WARPS = (1, 2, 4)
BLOCK_K = (32, 64)          # f16 / bf16: 64- or 128-byte rows
STAGES = (2, 3, 4)


def _pow2_at_least(x: int) -> int:
    return 1 << max(int(x) - 1, 0).bit_length()


def _space(M: int, N: int, K: int, layout: str):
    """Every config of the space above that the shape-based pruning keeps (before the checks)."""
    tall, wide = max(16, _pow2_at_least(M)), max(64, _pow2_at_least(N))
    for bm, bn, wm, wn, bk in itertools.product(BLOCK_M, BLOCK_N, WARPS, WARPS, BLOCK_K):
        warp_m, warp_n = bm // wm, bn // wn
        if bm > tall or bn > wide or wm * wn not in ((2, 4) if bm <= 32 else (4, 8)):
            continue
        if not (warp_m in (32, 64) or warp_m == bm == 16) or warp_n not in (32, 64):
            continue
        k_steps = -(-K // bk)
        # two 32-deep stages hide too little latency to be worth the compile and the timing
        stages = [s for s in STAGES if s <= k_steps and (bk == 64 or s > 2)] + ([1] if K <= 128 else [])
        for s in stages:
            yield GemmConfig(block_m=bm, block_n=bn, block_k=bk, warps_m=wm, warps_n=wn, stages=s)


def _valid(cfg: GemmConfig, layout: str) -> bool:
    try:
        check_config("matmul", cfg, 2, layout == "nk")
    except ArgumentError:
        return False
    return True


def candidates(shape, dtype: str, layout: str, arch: str) -> list:
    """The pruned search space for ``shape`` (M, N, K), the default first. ``arch`` is the current
    backend's (``check_config`` reads its shared-memory limit from there)."""
    M, N, K = shape
    default = tiled_config(M, N, K)
    found = [c for c in dict.fromkeys(_space(M, N, K, layout)) if c != default and _valid(c, layout)]

    def differs(c):
        return sum(getattr(c, f) != getattr(default, f) for f in ("block_m", "block_n", "block_k", "warps_m",
                                                                    "warps_n", "stages"))

    found.sort(key=lambda c: (differs(c), -c.block_m * c.block_n, -c.stages, c.block_k))
    return [default] + found


def make_inputs(shape, dtype: str, layout: str, backend: str, rng):
    """Random a [M, K] and b ([N, K] for "nk", [K, N] for "kn"), never zeros: torch CUDA tensors on
    the GPU, numpy (f16) or DeviceArray (bf16: numpy has none) in the simulator."""
    M, N, K = shape
    b_shape = (N, K) if layout == "nk" else (K, N)
    if backend == "cuda":
        import torch

        dt = {"f16": torch.float16, "bf16": torch.bfloat16}[dtype]
        return (torch.randn(M, K, device="cuda", dtype=dt), torch.randn(*b_shape, device="cuda", dtype=dt), layout,
                dtype)
    a, b = rng.standard_normal((M, K)), rng.standard_normal(b_shape)
    if dtype == "bf16":
        import kaiodsl
        from kaiodsl.runtime import to_device

        return to_device(a.astype(np.float32), kaiodsl.bf16), to_device(b.astype(np.float32), kaiodsl.bf16), layout, dtype
    return a.astype(np.float16), b.astype(np.float16), layout, dtype


def run(inputs, config: GemmConfig):
    a, b, layout, dtype = inputs
    return matmul(a, b, b_layout=layout, out_dtype=dtype, config=config)


def validate(config: GemmConfig, dtype: str, layout: str) -> None:
    check_config("matmul", config, 2, layout == "nk")


MATMUL = register(Tunable(
    name="matmul", config_type=GemmConfig, dtypes=("f16", "bf16"), layouts=("nk", "kn"),
    candidates=candidates, default=lambda shape, dtype, layout: tiled_config(*shape),
    make_inputs=make_inputs, run=run, validate=validate))
