"""SAXPY, y = a * x + y, with a grid-stride loop."""

import kaiodsl
from kaiodsl import Ptr, f32, i32


@kaiodsl.kernel
def saxpy(a: f32, x: Ptr[f32], y: Ptr[f32], n: i32):
    i = kaiodsl.block_idx.x * kaiodsl.block_dim.x + kaiodsl.thread_idx.x
    stride = kaiodsl.grid_dim.x * kaiodsl.block_dim.x
    for j in range(i, n, stride):
        y[j] = a * x[j] + y[j]


def run(quick: bool = False) -> str:
    import numpy as np

    n = 3000 if quick else 1 << 20
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(n, np.float32), rng.standard_normal(n, np.float32)
    want = np.float32(2.5) * x + y  # same two roundings as the kernel (no fma contraction)
    saxpy[8, 128](2.5, x, y, n)
    assert np.array_equal(y, want), "saxpy does not match numpy"
    return f"n={n}, grid-stride over 8 blocks: bit-exact"


if __name__ == "__main__":
    print(run())
