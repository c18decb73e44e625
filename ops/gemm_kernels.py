"""The GEMM kernels, written in kaiodsl: one tiled mma.sync main loop for f16/bf16 and int8.

Tiles are counted in bytes where it matters: a k-slab is 32 bytes of K (16 f16 or
32 int8), which is one ``mma.m16n8k16`` (f16/bf16) or ``mma.m16n8k32`` (s8) step,
and one ``ldmatrix.x4`` per 16x32-byte operand tile either way.

Shared memory holds ``stages`` copies of the A tile [BM, BK] and the B tile
([BN, BK] when B is [N, K]; [BK, BN] when B is [K, N], read with ldmatrix.trans).
16-byte chunks are XOR-swizzled within each row group so that the 8 rows one
ldmatrix phase reads fall in different banks:
  * 64-byte rows (4 chunks): chunk ^ ((row >> 1) & 3)
  * rows of 8 or more chunks: chunk ^ (row & 7)
``stages >= 2`` is the cp.async pipeline (prefetch ``stages - 1`` tiles ahead);
``stages == 1`` is the plain kernel: 16-byte loads to registers, stores to shared.
"""

import kaiodsl
from kaiodsl import Const, Ptr, f32, i32, u32


# -- device functions ----------------------------------------------------------------------------------
@kaiodsl.func
def swizzle(row, chunk, CPR: Const[int]):
    """The physical 16-byte chunk of logical ``chunk`` in ``row`` (see the module docstring)."""
    if CPR == 4:
        return chunk ^ ((row >> 1) & 3)
    return chunk ^ (row & 7)


@kaiodsl.func
def copy_k_major(smem, base, src, ld, row0, rows_total, k0, K, tid,
                 ROWS: Const[int], BK: Const[int], ESZ: Const[int], THREADS: Const[int], ASYNC: Const[bool]):
    """Copy a [ROWS, BK] tile of a K-contiguous matrix (row stride ``ld``) into shared memory, swizzled.

    Rows past ``rows_total`` and columns past ``K`` are zero-filled.
    """
    CPR = BK * ESZ // 16          # 16-byte chunks per row
    CE = 16 // ESZ                # elements per chunk
    for it in kaiodsl.static_range(ROWS * CPR // THREADS):
        q = tid + it * THREADS
        r = q // CPR
        c = q % CPR
        ok = (row0 + r < rows_total) and (k0 + c * CE < K)
        g = src + ((row0 + r) * ld + k0 + c * CE)
        s = smem.ptr(base + r * BK + swizzle(r, c, CPR) * CE)
        if ASYNC:
            kaiodsl.cp_async(s, g, 16, mask=ok)
        else:
            v = kaiodsl.load(kaiodsl.ptr_cast(g, u32), 0, vec=4, mask=ok, other=0)
            kaiodsl.store(kaiodsl.ptr_cast(s, u32), 0, v, vec=4)


@kaiodsl.func
def copy_n_major(smem, base, src, ld, k0, K, col0, N, tid,
                 BK: Const[int], BN: Const[int], ESZ: Const[int], THREADS: Const[int], ASYNC: Const[bool]):
    """Copy a [BK, BN] tile of an N-contiguous matrix B [K, N] into shared memory, swizzled."""
    CPR = BN * ESZ // 16
    CE = 16 // ESZ
    for it in kaiodsl.static_range(BK * CPR // THREADS):
        q = tid + it * THREADS
        r = q // CPR
        c = q % CPR
        ok = (k0 + r < K) and (col0 + c * CE < N)
        g = src + ((k0 + r) * ld + col0 + c * CE)
        s = smem.ptr(base + r * BN + swizzle(r, c, CPR) * CE)
        if ASYNC:
            kaiodsl.cp_async(s, g, 16, mask=ok)
        else:
            v = kaiodsl.load(kaiodsl.ptr_cast(g, u32), 0, vec=4, mask=ok, other=0)
            kaiodsl.store(kaiodsl.ptr_cast(s, u32), 0, v, vec=4)


@kaiodsl.func
def mma_slab(smem, a_base, b_base, wm0, wn0, lane, kk, acc,
             WM: Const[int], WN: Const[int], BK: Const[int], BN: Const[int], ESZ: Const[int],
             B_KMAJOR: Const[bool], MMA_DTYPE: Const):
    """One 32-byte k-slab of the warp tile: ldmatrix the A and B fragments, then WM/16 x WN/8 mma."""
    CPR = BK * ESZ // 16
    a_frags = []
    for i in kaiodsl.static_range(WM // 16):
        r = wm0 + i * 16 + lane % 16
        c = kk * 2 + lane // 16
        a_frags = a_frags + [kaiodsl.ldmatrix(smem.ptr(a_base + r * BK + swizzle(r, c, CPR) * (16 // ESZ)), 4)]
    b_frags = []
    for j in kaiodsl.static_range(WN // 16):
        if B_KMAJOR:
            r = wn0 + j * 16 + (lane // 16) * 8 + lane % 8
            c = kk * 2 + (lane // 8) % 2
            f = kaiodsl.ldmatrix(smem.ptr(b_base + r * BK + swizzle(r, c, CPR) * (16 // ESZ)), 4)
        else:
            r = kk * 16 + ((lane // 8) % 2) * 8 + lane % 8
            c = (wn0 + j * 16) // 8 + lane // 16
            f = kaiodsl.ldmatrix(smem.ptr(b_base + r * BN + swizzle(r, c, BN * ESZ // 16) * 8), 4, trans=True)
        b_frags = b_frags + [(f[0], f[1]), (f[2], f[3])]
    for i in kaiodsl.static_range(WM // 16):
        for j in kaiodsl.static_range(WN // 8):
            acc[i][j] = kaiodsl.mma(a_frags[i], b_frags[j], acc[i][j], dtype=MMA_DTYPE)
    return acc


@kaiodsl.func
def tile_coords(M, N, BM: Const[int], BN: Const[int], GROUP_M: Const[int]):
    """(row0, col0) of this block's output tile; blocks walk GROUP_M tile-rows at a time for L2 reuse."""
    pid = kaiodsl.block_idx.x
    num_m = (M + BM - 1) // BM
    num_n = (N + BN - 1) // BN
    width = GROUP_M * num_n
    first_m = (pid // width) * GROUP_M
    size_m = min(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % width) % size_m
    pid_n = (pid % width) // size_m
    return pid_m * BM, pid_n * BN


@kaiodsl.func
def main_loop(a, b, M, N, K, row0, col0, smem, tid,
              BM: Const[int], BN: Const[int], BK: Const[int], WARPS_N: Const[int], WM: Const[int],
              WN: Const[int], STAGES: Const[int], ESZ: Const[int], B_KMAJOR: Const[bool], MMA_DTYPE: Const,
              ACC: Const):
    """The k loop of the block tile: returns the warp's accumulators (a list of lists of fragments)."""
    THREADS = (BM // WM) * WARPS_N * 32
    A_ELEMS = BM * BK
    B_ELEMS = BN * BK
    B_OFF = STAGES * A_ELEMS
    lane = tid % 32
    warp = tid // 32
    wm0 = (warp // WARPS_N) * WM
    wn0 = (warp % WARPS_N) * WN
    acc = [[kaiodsl.mma_zeros(ACC) for j in range(WN // 8)] for i in range(WM // 16)]
    KT = (K + BK - 1) // BK
    ASYNC = STAGES > 1
    if ASYNC:
        for s in kaiodsl.static_range(STAGES - 1):
            if s < KT:
                copy_k_major(smem, s * A_ELEMS, a, K, row0, M, s * BK, K, tid, BM, BK, ESZ, THREADS, True)
                if B_KMAJOR:
                    copy_k_major(smem, B_OFF + s * B_ELEMS, b, K, col0, N, s * BK, K, tid, BN, BK, ESZ,
                                 THREADS, True)
                else:
                    copy_n_major(smem, B_OFF + s * B_ELEMS, b, N, s * BK, K, col0, N, tid, BK, BN, ESZ,
                                 THREADS, True)
            kaiodsl.cp_async_commit()
    for kt in range(KT):
        if ASYNC:
            kaiodsl.cp_async_wait(STAGES - 2)
            kaiodsl.syncthreads()
            nxt = kt + STAGES - 1
            if nxt < KT:
                ns = nxt % STAGES
                copy_k_major(smem, ns * A_ELEMS, a, K, row0, M, nxt * BK, K, tid, BM, BK, ESZ, THREADS, True)
                if B_KMAJOR:
                    copy_k_major(smem, B_OFF + ns * B_ELEMS, b, K, col0, N, nxt * BK, K, tid, BN, BK, ESZ,
                                 THREADS, True)
                else:
                    copy_n_major(smem, B_OFF + ns * B_ELEMS, b, N, nxt * BK, K, col0, N, tid, BK, BN, ESZ,
                                 THREADS, True)
            kaiodsl.cp_async_commit()
            stage = kt % STAGES
        else:
            stage = 0
            kaiodsl.syncthreads()
            copy_k_major(smem, 0, a, K, row0, M, kt * BK, K, tid, BM, BK, ESZ, THREADS, False)
            if B_KMAJOR:
                copy_k_major(smem, B_OFF, b, K, col0, N, kt * BK, K, tid, BN, BK, ESZ, THREADS, False)
            else:
                copy_n_major(smem, B_OFF, b, N, kt * BK, K, col0, N, tid, BK, BN, ESZ, THREADS, False)
            kaiodsl.syncthreads()
        for kk in kaiodsl.static_range(BK * ESZ // 32):
            acc = mma_slab(smem, stage * A_ELEMS, B_OFF + stage * B_ELEMS, wm0, wn0, lane, kk, acc,
                           WM, WN, BK, BN, ESZ, B_KMAJOR, MMA_DTYPE)
    if ASYNC:
        kaiodsl.cp_async_wait_all()
    return acc
