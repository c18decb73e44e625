"""SAXPY, y = a * x + y, with a grid-stride loop."""

import kaiodsl
from kaiodsl import Ptr, f32, i32


@kaiodsl.kernel
def saxpy(a: f32, x: Ptr[f32], y: Ptr[f32], n: i32):
    i = kaiodsl.block_idx.x * kaiodsl.block_dim.x + kaiodsl.thread_idx.x
    stride = kaiodsl.grid_dim.x * kaiodsl.block_dim.x
    for j in range(i, n, stride):
        y[j] = a * x[j] + y[j]
