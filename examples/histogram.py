"""256-bin byte histogram: per-block counts in shared memory with shared atomics, then global atomics."""

import kaiodsl
from kaiodsl import Ptr, i32, u8, u32

BINS = 256


@kaiodsl.kernel
def histogram(data: Ptr[u8], hist: Ptr[u32], n: i32):
    local = kaiodsl.shared_array(u32, BINS)
    tid = kaiodsl.thread_idx.x
    for b in range(tid, BINS, kaiodsl.block_dim.x):
        local[b] = 0
    kaiodsl.syncthreads()
    for i in range(kaiodsl.block_idx.x * kaiodsl.block_dim.x + tid, n, kaiodsl.grid_dim.x * kaiodsl.block_dim.x):
        kaiodsl.atomic_add(local, kaiodsl.i32(data[i]), 1)
    kaiodsl.syncthreads()
    for b in range(tid, BINS, kaiodsl.block_dim.x):
        count = local[b]
        if count != 0:
            kaiodsl.atomic_add(hist, b, count)


def run(quick: bool = False) -> str:
    import numpy as np

    n = 4000 if quick else 1 << 24
    data = np.random.default_rng(4).integers(0, 256, n, dtype=np.uint8)
    hist = np.zeros(BINS, np.uint32)
    histogram[4 if quick else 264, 256](data, hist, n)
    assert np.array_equal(hist, np.bincount(data, minlength=BINS).astype(np.uint32)), "histogram mismatch"
    return f"n={n}: exact counts"


if __name__ == "__main__":
    print(run())
