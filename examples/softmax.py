"""Row softmax: one block per row; max and sum reduced with shuffles and shared memory."""

import kaiodsl
from kaiodsl import Const, Ptr, f32, i32


@kaiodsl.func
def warp_reduce(v: f32, op: Const[str]) -> f32:
    for k in kaiodsl.static_range(5):
        other = kaiodsl.shfl_xor(v, 16 >> k)
        v = max(v, other) if op == "max" else v + other
    return v


@kaiodsl.func
def block_reduce(v: f32, scratch, op: Const[str], WARPS: Const[int]) -> f32:
    v = warp_reduce(v, op)
    lane = kaiodsl.thread_idx.x % 32
    warp = kaiodsl.thread_idx.x // 32
    kaiodsl.syncthreads()  # scratch may still be read by a previous reduction
    if lane == 0:
        scratch[warp] = v
    kaiodsl.syncthreads()
    identity = -float("inf") if op == "max" else 0.0
    v = scratch[lane] if lane < WARPS else identity
    return warp_reduce(v, op)


@kaiodsl.kernel(block_size="BLOCK")
def softmax(x: Ptr[f32], y: Ptr[f32], cols: i32, BLOCK: Const[int]):
    scratch = kaiodsl.shared_array(f32, 32)
    row = kaiodsl.block_idx.x
    base = kaiodsl.i64(row) * cols      # row * cols passes 2**31 on big inputs
    tid = kaiodsl.thread_idx.x
    m = -float("inf")
    for c in range(tid, cols, BLOCK):
        m = max(m, x[base + c])
    m = block_reduce(m, scratch, "max", BLOCK // 32)
    s = 0.0
    for c in range(tid, cols, BLOCK):
        s += kaiodsl.exp(x[base + c] - m)
    s = block_reduce(s, scratch, "sum", BLOCK // 32)
    inv = 1.0 / s
    for c in range(tid, cols, BLOCK):
        y[base + c] = kaiodsl.exp(x[base + c] - m) * inv


# The Const values `python -m kaiodsl demo` compiles (and shows registers for), by kernel name.
DEMO_CONSTS = {"softmax": {"BLOCK": 256}}


def run(quick: bool = False) -> str:
    import numpy as np

    rows, cols = (6, 300) if quick else (4096, 1000)
    x = (np.random.default_rng(5).standard_normal((rows, cols)) * 4).astype(np.float32)
    y = np.full_like(x, np.nan)
    softmax[rows, 256](x, y, cols, BLOCK=256)
    ref = np.exp(x.astype(np.float64) - x.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    err = np.linalg.norm(y - ref) / np.linalg.norm(ref)
    assert err < 1e-5, f"softmax relative error {err:.2e}"
    return f"{rows}x{cols}: relative error {err:.1e}"


if __name__ == "__main__":
    print(run())
