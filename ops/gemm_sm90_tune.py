"""The Hopper GEMM's entry in the tuning registry (``python -m kaiodsl tune --op matmul_sm90``).

Search space per shape: tiles ``block_m`` x ``block_n`` with ``block_m`` in {128, 256} (two consumer
warpgroups of 64 or 128 rows; three consumers of 512 threads leave 128 registers a thread at launch, and
ptxas refuses the m64n256 accumulators there: "Insufficient registers (128)") and ``block_n`` in {128, 192, 256}; 3 to 6 stages; tile
groups of 8 or 16 rows; alone or in cluster pairs that multicast the B tile (``cluster=2``); the
epilogue staged in shared memory with TMA stores (``store="auto"``) or stored from the registers
(``"direct"``). Shapes whose 128 x 128 tiles leave at least half of the SMs idle also try split-K
(2, 3, 4, 8 ways) on 128 x 128 and 128 x 256 tiles. Pruned by the config's own check (the accumulators must fit the consumers'
registers; the ring and the staging buffers the shared memory, 227 KB), and tiles no larger than the next power of two of M
and N. The heuristic's choice comes first, then its neighbours (fewest fields changed).
"""

from __future__ import annotations

import itertools

from kaiodsl.errors import ArgumentError
from kaiodsl.tuning import Tunable, register

from .gemm_sm90 import Sm90Config, sm90_config, sm_count
from .matmul import matmul
from .matmul_tune import _pow2_at_least, make_inputs

SMEM_LIMIT = 227 * 1024 - 2048       # the ring and the alignment padding of the dynamic window


def _space(M: int, N: int, K: int):
    tall, wide = max(128, _pow2_at_least(M)), max(128, _pow2_at_least(N))
    few_tiles = 2 * -(-M // 128) * -(-N // 128) <= sm_count() and K >= 2048
    shapes = itertools.product(((128, 2), (256, 2)), (128, 192, 256), (3, 4, 5, 6), (8, 16), (1, 2),
                               ("auto", "direct"), (1,))
    splits = itertools.product(((128, 2),), (128, 256), (4, 6), (8,), (1,), ("auto",), (2, 3, 4, 8))
    for (bm, consumers), bn, stages, gm, cl, store, split in itertools.chain(shapes, splits if few_tiles else ()):
        if bm > tall or bn > wide:
            continue
        cfg = Sm90Config(block_m=bm, block_n=bn, stages=stages, consumers=consumers, group_m=gm, cluster=cl,
                         store=store, split_k=split)
        if cfg.smem_bytes() > SMEM_LIMIT or (store == "auto" and not cfg.staged):    # that "auto" is "direct"
            continue
        try:
            cfg.check(2)
        except ArgumentError:
            continue
        yield cfg


def candidates(shape, dtype: str, layout: str, arch: str) -> list:
    M, N, K = shape
    default = sm90_config(M, N, K, sm_count())
    found = [c for c in dict.fromkeys(_space(M, N, K)) if c != default]

    def differs(c):
        return sum(getattr(c, f) != getattr(default, f) for f in ("block_m", "block_n", "stages", "consumers",
                                                                    "group_m", "cluster", "store", "split_k"))

    found.sort(key=lambda c: (differs(c), -c.block_m * c.block_n, -c.stages))
    return [default] + found


def run(inputs, config: Sm90Config):
    a, b, layout, dtype = inputs
    return matmul(a, b, b_layout="nk", out_dtype=dtype, config=config)


def validate(config: Sm90Config, dtype: str, layout: str) -> None:
    config.check(2)


MATMUL_SM90 = register(Tunable(
    name="matmul_sm90", config_type=Sm90Config, dtypes=("f16", "bf16"), layouts=("nk",),
    candidates=candidates, default=lambda shape, dtype, layout: sm90_config(*shape, sm_count()),
    make_inputs=make_inputs, run=run, validate=validate))
