"""A small Hopper GEMM: bulk async copies completing on mbarriers, a 2-stage pipeline, wgmma from shared.

C[M, N] = A[M, K] @ B[N, K]^T (f16 in, f32 out; B is K-major like a Linear weight). One warpgroup
(128 threads) computes a 64 x 64 tile of C. Per 64-wide K step, both 64 x 64 f16 tiles are copied
global -> shared by 16-byte cp.async.bulk copies into the canonical no-swizzle layout (8-row x 16-byte
core matrices; PTX ISA 9.7.15.5.1), whose bytes complete on that stage's mbarrier; four
wgmma.m64n64k16 then read them through matrix descriptors. Stage s+1 loads while stage s multiplies.
(Tensor-map TMA would copy whole tiles with one instruction and swizzle them; see docs/hopper.md.)
"""

import kaiodsl as K
from kaiodsl import Ptr, f16, f32, i32, u64

DEMO_ARCHS = ("sm_90a",)  # wgmma and setmaxnreg exist on sm_90a only
BM = BN = BK = 64
TILE = BM * BK           # f16 elements per operand tile
STAGE_BYTES = 2 * TILE * 2


@K.kernel(block_size=128)
def hopper_gemm(a: Ptr[f16], b: Ptr[f16], c: Ptr[f32], M: i32, N: i32, Kd: i32):
    smem = K.shared_array(f16, (2 * 2 * TILE,), align=1024)  # [stage][A, B][64 x 64]
    bars = K.shared_array(u64, (2,), align=8)
    t = K.thread_idx.x
    m0 = K.block_idx.y * BM
    n0 = K.block_idx.x * BN
    if t == 0:
        K.mbarrier_init(bars.ptr(0), 1)
        K.mbarrier_init(bars.ptr(1), 1)
        K.fence_mbarrier_init()
    K.syncthreads()
    ktiles = Kd // BK

    acc = K.wgmma_zeros(BN)
    for kt in range(-1, ktiles):  # iteration kt loads K tile kt + 1 and multiplies tile kt
        nxt = kt + 1
        if nxt < ktiles:  # its stage was released by the wait_group(0) of iteration kt - 1
            ns = nxt % 2
            if t == 0:  # announce the stage's bytes; the copies below complete them
                K.mbarrier_arrive_expect_tx(bars.ptr(ns), STAGE_BYTES)
            for q in K.static_range(4):  # thread t copies 16-byte chunks t, t+128, ... of both tiles
                chunk = t + 128 * q
                r, ch = chunk // 8, chunk % 8
                dst = ch * 64 * 8 + (r // 8) * 64 + (r % 8) * 8  # f16 offset in the core-matrix layout
                src = nxt * BK + ch * 8
                K.bulk_load(smem.ptr(2 * ns * TILE + dst), a + K.i64(m0 + r) * Kd + src, 16, bars.ptr(ns))
                K.bulk_load(smem.ptr((2 * ns + 1) * TILE + dst), b + K.i64(n0 + r) * Kd + src, 16, bars.ptr(ns))
        if kt >= 0:
            stage = kt % 2
            K.mbarrier_wait(bars.ptr(stage), (kt // 2) % 2)
            K.wgmma_fence()
            for s in K.static_range(BK // 16):  # k16 slices: two 16-byte column blocks of 64 rows each
                da = K.wgmma_desc(smem.ptr(2 * stage * TILE + s * 2 * 64 * 8), 0, rows=64)
                db = K.wgmma_desc(smem.ptr((2 * stage + 1) * TILE + s * 2 * 64 * 8), 0, rows=64)
                acc = K.wgmma(da, db, acc, dtype=f16)
            K.wgmma_commit()
            acc = K.wgmma_wait(0, acc)
    w, lane = t // 32, t % 32
    for j in K.static_range(BN // 2):  # the m64nN accumulator layout (PTX ISA 9.7.15.5.1)
        row = m0 + 16 * w + lane // 4 + 8 * ((j >> 1) & 1)
        col = n0 + 8 * (j // 4) + 2 * (lane % 4) + (j & 1)
        c[K.i64(row) * N + col] = acc[j]


def gemm(a, b, out=None):
    """C = a @ b.T for f16 numpy/torch/DeviceArray a [M, K], b [N, K]; M, N, K multiples of 64."""
    import numpy as np

    M, Kd = a.shape
    N = b.shape[0]
    for name, v in (("M", M), ("N", N), ("K", Kd)):
        if v % 64 or v == 0:
            raise K.ArgumentError(f"hopper_gemm: {name}={v} must be a positive multiple of 64")
    if b.shape[1] != Kd:
        raise K.ArgumentError(f"hopper_gemm: b.shape[1]={b.shape[1]} must equal a.shape[1]={Kd}")
    out = np.empty((M, N), np.float32) if out is None else out
    hopper_gemm[(N // BN, M // BM), 128](a, b, out, M, N, Kd)
    return out


def run(quick: bool = False) -> str:
    import os

    import numpy as np

    M, N, Kd = (128, 64, 192) if quick else (2048, 2048, 2048)
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
