"""Block sum reduction: warp shuffles, then one partial per warp through shared memory.

Each block writes one partial sum; the host (or a second launch) adds the partials.
"""

import kaiodsl
from kaiodsl import Const, Ptr, f32, i32


@kaiodsl.func
def warp_sum(v: f32) -> f32:
    for offset in kaiodsl.static_range(5):  # 16, 8, 4, 2, 1
        v = v + kaiodsl.shfl_xor(v, 16 >> offset)
    return v


@kaiodsl.kernel(block_size="BLOCK")
def block_sum(x: Ptr[f32], partial: Ptr[f32], n: i32, BLOCK: Const[int]):
    warps = kaiodsl.shared_array(f32, BLOCK // 32)
    tid = kaiodsl.thread_idx.x
    acc = 0.0
    for i in range(kaiodsl.block_idx.x * BLOCK + tid, n, kaiodsl.grid_dim.x * BLOCK):
        acc += x[i]
    acc = warp_sum(acc)
    lane = tid % 32
    if lane == 0:
        warps[tid // 32] = acc
    kaiodsl.syncthreads()
    if tid < 32:
        v = warps[lane] if lane < BLOCK // 32 else 0.0
        v = warp_sum(v)
        if tid == 0:
            partial[kaiodsl.block_idx.x] = v


# The Const values `python -m kaiodsl demo` compiles (and shows registers for), by kernel name.
DEMO_CONSTS = {"block_sum": {"BLOCK": 256}}


def run(quick: bool = False) -> str:
    import numpy as np

    n, blocks = (5000, 4) if quick else (1 << 22, 264)
    x = np.random.default_rng(2).standard_normal(n, np.float32)
    partial = np.full(blocks, np.nan, np.float32)
    block_sum[blocks, 256](x, partial, n, BLOCK=256)
    got, want = partial.astype(np.float64).sum(), x.astype(np.float64).sum()
    err = abs(got - want) / np.abs(x).sum()
    assert err < 1e-6, f"block_sum relative error {err:.2e}"
    return f"n={n}, {blocks} blocks: relative error {err:.1e}"


if __name__ == "__main__":
    print(run())
