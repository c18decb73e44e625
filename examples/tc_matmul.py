"""Tensor-core matmul: C[M,N] (f32) = A[M,K] @ B[K,N] (f16, row-major), 64x64x64 block tiles.

Four warps, each a 32x32 warp tile (2 x 4 mma.m16n8k16 per k16 step). Tiles move global -> shared
with 16-byte cp.async into XOR-swizzled buffers, double-buffered so that the copy of k-tile t+1
overlaps the mma of k-tile t; fragments come from shared memory through ldmatrix (B via .trans).
Ragged edges (M, N, K not multiples of 64) are zero-filled by the copies and masked at the store;
rows must be 16-byte aligned (K and N multiples of 8).
"""

import kaiodsl
from kaiodsl import Const, Ptr, f16, f32, i32
from kaiodsl import tiles

BM, BN, BK = 64, 64, 64
WM, WN = 32, 32                 # warp tile
THREADS = 32 * (BM // WM) * (BN // WN)


@kaiodsl.kernel(block_size=THREADS)
def tc_matmul(a: Ptr[f16], b: Ptr[f16], c: Ptr[f32], M: i32, N: i32, K: i32, EDGE: Const[bool] = True):
    sa = kaiodsl.shared_array(f16, (2, BM, BK), align=128, name="sa")
    sb = kaiodsl.shared_array(f16, (2, BK, BN), align=128, name="sb")
    tid = kaiodsl.thread_idx.x
    warp = tid >> 5
    m_block = kaiodsl.block_idx.y * BM
    n_block = kaiodsl.block_idx.x * BN
    wm = (warp // (BN // WN)) * WM   # the warp's tile inside the block tile
    wn = (warp % (BN // WN)) * WN

    nk = (K + BK - 1) // BK
    tiles.copy_tile_async(sa[0], a, K, m_block, 0, M - m_block, K, tid, THREADS, EDGE)
    tiles.copy_tile_async(sb[0], b, N, 0, n_block, K, N - n_block, tid, THREADS, EDGE)
    kaiodsl.cp_async_commit()

    acc = tiles.zeros(WM // 16, WN // 8)
    for kt in range(nk):
        if kt + 1 < nk:  # prefetch the next k-tile into the other buffer
            k1 = (kt + 1) * BK
            nxt = (kt + 1) & 1
            tiles.copy_tile_async(sa[nxt], a, K, m_block, k1, M - m_block, K - k1, tid, THREADS, EDGE)
            tiles.copy_tile_async(sb[nxt], b, N, k1, n_block, K - k1, N - n_block, tid, THREADS, EDGE)
        kaiodsl.cp_async_commit()
        kaiodsl.cp_async_wait(1)  # everything but the prefetch has landed
        kaiodsl.syncthreads()
        cur = kt & 1
        for kk in kaiodsl.static_range(0, BK, 16):
            acc = tiles.mma_k_step(acc, sa[cur], sb[cur], wm, wn, kk)
        kaiodsl.syncthreads()  # the buffer is refilled by the next iteration's prefetch

    tiles.store_acc_tile(c, N, m_block + wm, n_block + wn, acc, M - m_block - wm, N - n_block - wn, True)


def run(quick: bool = False) -> str:
    """Launch on the current backend and check against numpy (f32 accumulation of f16 products)."""
    import numpy as np

    M, N, K = (72, 80, 136) if quick else (1000, 1016, 1024)
    rng = np.random.default_rng(0)
    a = rng.integers(-8, 8, (M, K)).astype(np.float16) / 8
    b = rng.integers(-8, 8, (K, N)).astype(np.float16) / 8
    c = np.full((M, N), np.nan, np.float32)
    tc_matmul[((N + BN - 1) // BN, (M + BM - 1) // BM), THREADS](a, b, c, M, N, K, EDGE=True)
    want = a.astype(np.float64) @ b.astype(np.float64)
    assert np.array_equal(c, want.astype(np.float32)), "tc_matmul does not match numpy"
    return f"{M}x{N}x{K}: exact (small integer / 8 inputs)"


if __name__ == "__main__":
    print(run())
