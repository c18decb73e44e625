"""A small Hopper GEMM: TMA tensor loads completing on mbarriers, a 2-stage pipeline, wgmma from shared.

C[M, N] = A[M, K] @ B[N, K]^T (f16 in, f32 out; B is K-major like a Linear weight). One warpgroup
(128 threads) computes a 64 x 64 tile of C. Per 64-wide K step, one thread copies both 64 x 64 f16
tiles global -> shared with one cp.async.bulk.tensor each, through tensor maps passed by value; the
maps swizzle 128 bytes, which is the layout a 128-byte-swizzle wgmma descriptor reads (PTX ISA
9.7.15.5.1), and fill the parts of a box outside the matrices with zeros, so M and N need not be
multiples of 64. The tiles' bytes complete on that stage's mbarrier; four wgmma.m64n64k16 then read
them. Stage s+1 loads while stage s multiplies.
"""

import kaiodsl as K
from kaiodsl import Ptr, f16, f32, i32, u64

DEMO_ARCHS = ("sm_90a",)  # wgmma and setmaxnreg exist on sm_90a only
BM = BN = BK = 64
TILE = BM * BK           # f16 elements per operand tile: 64 rows of 128 bytes
STAGE_BYTES = 2 * TILE * 2


@K.kernel(block_size=128)
def hopper_gemm(ta: K.TensorMap, tb: K.TensorMap, c: Ptr[f32], M: i32, N: i32, Kd: i32):
    smem = K.shared_array(f16, (2 * 2 * TILE,), align=1024)  # [stage][A, B][64 x 64], swizzled
    bars = K.shared_array(u64, (2,), align=8)
    t = K.thread_idx.x
    m0 = K.block_idx.y * BM
    n0 = K.block_idx.x * BN
    if t == 0:
        K.tma_prefetch(ta)
        K.tma_prefetch(tb)
        K.mbarrier_init(bars.ptr(0), 1)
        K.mbarrier_init(bars.ptr(1), 1)
        K.fence_mbarrier_init()
    K.syncthreads()
    ktiles = (Kd + BK - 1) // BK

    acc = K.wgmma_zeros(BN)
    for kt in range(-1, ktiles):  # iteration kt loads K tile kt + 1 and multiplies tile kt
        nxt = kt + 1
        if nxt < ktiles and t == 0:  # its stage was released by the wait_group(0) of iteration kt - 1
            ns = nxt % 2
            K.mbarrier_arrive_expect_tx(bars.ptr(ns), STAGE_BYTES)  # whole boxes, zero fill included
            K.tma_load(smem.ptr(2 * ns * TILE), ta, (m0, nxt * BK), bars.ptr(ns))
            K.tma_load(smem.ptr((2 * ns + 1) * TILE), tb, (n0, nxt * BK), bars.ptr(ns))
        if kt >= 0:
            stage = kt % 2
            K.mbarrier_wait(bars.ptr(stage), (kt // 2) % 2)
            K.wgmma_fence()
            for s in K.static_range(BK // 16):  # k16 slices: 32 bytes further along each swizzled row
                da = K.wgmma_desc(smem.ptr(2 * stage * TILE + 16 * s), 128, rows=64)
                db = K.wgmma_desc(smem.ptr((2 * stage + 1) * TILE + 16 * s), 128, rows=64)
                acc = K.wgmma(da, db, acc, dtype=f16)
            K.wgmma_commit()
            acc = K.wgmma_wait(0, acc)
    w, lane = t // 32, t % 32
    for j in K.static_range(BN // 2):  # the m64nN accumulator layout (PTX ISA 9.7.15.5.1)
        row = m0 + 16 * w + lane // 4 + 8 * ((j >> 1) & 1)
        col = K.i64(K.block_idx.x) * BN + 8 * (j // 4) + 2 * (lane % 4) + (j & 1)   # n0's, in 64 bits: an offset
        if row < M and col < N:
            c[K.i64(row) * N + col] = acc[j]


def gemm(a, b, out=None):
    """C = a @ b.T for f16 numpy/torch/DeviceArray a [M, K], b [N, K]; K a multiple of 8 (TMA's
    16-byte row strides), M and N any size."""
    import numpy as np

    M, Kd = a.shape
    N = b.shape[0]
    for name, v in (("M", M), ("N", N)):
        if v <= 0:
            raise K.ArgumentError(f"hopper_gemm: {name}={v} must be positive")
    if Kd % 8 or Kd == 0:
        raise K.ArgumentError(f"hopper_gemm: K={Kd} must be a positive multiple of 8 (16-byte rows for TMA)")
    if b.shape[1] != Kd:
        raise K.ArgumentError(f"hopper_gemm: b.shape[1]={b.shape[1]} must equal a.shape[1]={Kd}")
    out = np.empty((M, N), np.float32) if out is None else out
    ta, tb = K.TensorMap(a, (BM, BK), swizzle=128), K.TensorMap(b, (BN, BK), swizzle=128)
    hopper_gemm[(-(-N // BN), -(-M // BM)), 128](ta, tb, out, M, N, Kd)
    return out


def run(quick: bool = False) -> str:
    import os

    import numpy as np

    M, N, Kd = (100, 72, 200) if quick else (2048, 2048, 2048)
    rng = np.random.default_rng(7)
    a = rng.integers(-3, 4, (M, Kd)).astype(np.float16)
    b = rng.integers(-3, 4, (N, Kd)).astype(np.float16)
    old = os.environ.get("KAIODSL_ARCH")
    os.environ["KAIODSL_ARCH"] = "sm_90a"  # wgmma exists on sm_90a only (the simulator defaults to sm_80)
    try:
        c = gemm(a, b, np.full((M, N), np.nan, np.float32))
    finally:
        if old is None:
            del os.environ["KAIODSL_ARCH"]
        else:
            os.environ["KAIODSL_ARCH"] = old
    want = a.astype(np.float64) @ b.astype(np.float64).T
    assert np.array_equal(c, want), "hopper_gemm mismatch"
    return f"{M}x{N}x{Kd}: exact (small-integer inputs)"


if __name__ == "__main__":
    print(run())
