"""Vector add: one thread per element, bounds-checked."""

import kaiodsl
from kaiodsl import Ptr, f32, i32


@kaiodsl.kernel
def vector_add(a: Ptr[f32], b: Ptr[f32], out: Ptr[f32], n: i32):
    # 64-bit index: block_idx.x * block_dim.x passes 2**31 on grids of more than 2**31 threads
    i = kaiodsl.i64(kaiodsl.block_idx.x) * kaiodsl.block_dim.x + kaiodsl.thread_idx.x
    if i < n:
        out[i] = a[i] + b[i]


def run(quick: bool = False) -> str:
    """Launch on the current backend and check against numpy."""
    import numpy as np

    n = 1000 if quick else 1 << 20
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(n, np.float32), rng.standard_normal(n, np.float32)
    out = np.full(n, np.nan, np.float32)
    vector_add[(n + 255) // 256, 256](a, b, out, n)
    assert np.array_equal(out, a + b), "vector_add does not match numpy"
    return f"n={n}: bit-exact"


if __name__ == "__main__":
    print(run())
