"""Vector add: one thread per element, bounds-checked."""

import kaiodsl
from kaiodsl import Ptr, f32, i32


@kaiodsl.kernel
def vector_add(a: Ptr[f32], b: Ptr[f32], out: Ptr[f32], n: i32):
    i = kaiodsl.block_idx.x * kaiodsl.block_dim.x + kaiodsl.thread_idx.x
    if i < n:
        out[i] = a[i] + b[i]
