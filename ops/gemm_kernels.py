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
from kaiodsl import Const, f32, u32


# -- device functions ----------------------------------------------------------------------------------
@kaiodsl.func
def swizzle(row, chunk, CPR: Const[int]):
    """The physical 16-byte chunk of logical ``chunk`` in ``row`` (see the module docstring)."""
    if CPR == 4:
        return chunk ^ ((row >> 1) & 3)
    return chunk ^ (row & 7)


@kaiodsl.func
def plan_k_major(smem, src, ld, row0, rows_total, tid,
                 ROWS: Const[int], BK: Const[int], ESZ: Const[int], THREADS: Const[int]):
    """This thread's share of copying a [ROWS, BK] tile of a K-contiguous matrix: one entry per
    16-byte chunk, (global pointer at k = 0, row in range, swizzled shared offset, k of the chunk).
    Computed once, before the k loop."""
    CPR = BK * ESZ // 16          # 16-byte chunks per row
    CE = 16 // ESZ                # elements per chunk
    plan = []
    for it in kaiodsl.static_range(ROWS * CPR // THREADS):
        q = tid + it * THREADS
        r = q // CPR
        c = q % CPR
        plan = plan + [(src + ((row0 + r) * ld + c * CE), row0 + r < rows_total,
                        smem.ptr(r * BK + swizzle(r, c, CPR) * CE), c * CE)]
    return plan


@kaiodsl.func
def plan_n_major(smem, src, ld, col0, cols_total, tid,
                 BK: Const[int], BN: Const[int], ESZ: Const[int], THREADS: Const[int]):
    """The same for a [BK, BN] tile of an N-contiguous B [K, N]: (pointer at k = 0, column in
    range, shared offset, k row of the chunk)."""
    CPR = BN * ESZ // 16
    CE = 16 // ESZ
    plan = []
    for it in kaiodsl.static_range(BK * CPR // THREADS):
        q = tid + it * THREADS
        r = q // CPR
        c = q % CPR
        plan = plan + [(src + (r * ld + col0 + c * CE), col0 + c * CE < cols_total,
                        smem.ptr(r * BN + swizzle(r, c, CPR) * CE), r)]
    return plan


@kaiodsl.func
def issue_copies(plan, stage_base, k0, K, kstride, ASYNC: Const[bool]):
    """Copy one tile per ``plan`` into the stage at ``stage_base``: chunk k = k0 + its k offset,
    zero-filled where out of range. ``kstride`` is the pointer step per unit of k0."""
    for e in kaiodsl.static_range(len(plan)):
        g, ok, sp, kofs = plan[e]
        valid = ok and k0 + kofs < K
        gp = g + k0 * kstride
        s = sp + stage_base
        if ASYNC:
            kaiodsl.cp_async(s, gp, 16, mask=valid)
        else:
            v = kaiodsl.load(kaiodsl.ptr_cast(gp, u32), 0, vec=4, mask=valid, other=0)
            kaiodsl.store(kaiodsl.ptr_cast(s, u32), 0, v, vec=4)


@kaiodsl.func
def fragment_offsets(smem, wm0, wn0, lane, WM: Const[int], WN: Const[int], BK: Const[int], BN: Const[int],
                     ESZ: Const[int], B_KMAJOR: Const[bool]):
    """Per k-slab, the shared addresses (in stage 0) this lane gives ldmatrix for each A fragment and
    each pair of B fragments. Loop-invariant: computed once; the loop adds the stage offset."""
    CPR = BK * ESZ // 16
    CE = 16 // ESZ
    a_offs = []
    b_offs = []
    for kk in kaiodsl.static_range(BK * ESZ // 32):
        row_a = []
        for i in kaiodsl.static_range(WM // 16):
            r = wm0 + i * 16 + lane % 16
            row_a = row_a + [smem.ptr(r * BK + swizzle(r, kk * 2 + lane // 16, CPR) * CE)]
        row_b = []
        for j in kaiodsl.static_range(WN // 16):
            if B_KMAJOR:
                r = wn0 + j * 16 + (lane // 16) * 8 + lane % 8
                row_b = row_b + [smem.ptr(r * BK + swizzle(r, kk * 2 + (lane // 8) % 2, CPR) * CE)]
            else:
                r = kk * 16 + ((lane // 8) % 2) * 8 + lane % 8
                c = (wn0 + j * 16) // 8 + lane // 16
                row_b = row_b + [smem.ptr(r * BN + swizzle(r, c, BN * ESZ // 16) * 8)]
        a_offs = a_offs + [row_a]
        b_offs = b_offs + [row_b]
    return a_offs, b_offs


@kaiodsl.func
def load_fragments(a_base, b_base, a_ptrs, b_ptrs, WN: Const[int], B_KMAJOR: Const[bool]):
    """ldmatrix one 32-byte k-slab of the warp tile: A fragments, and B fragments in pairs of n8 tiles."""
    a_frags = [kaiodsl.ldmatrix(p + a_base, 4) for p in a_ptrs]
    b_frags = []
    for j in kaiodsl.static_range(WN // 16):
        f = kaiodsl.ldmatrix(b_ptrs[j] + b_base, 4, trans=not B_KMAJOR)
        b_frags = b_frags + [(f[0], f[1]), (f[2], f[3])]
    return a_frags, b_frags


@kaiodsl.func
def mma_all(frags, acc, WM: Const[int], WN: Const[int], MMA_DTYPE: Const):
    """WM/16 x WN/8 mma over one k-slab's fragments (A reused across j: operand reuse in hardware)."""
    a_frags, b_frags = frags
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
    a_plan = plan_k_major(smem, a, K, row0, M, tid, BM, BK, ESZ, THREADS)
    if B_KMAJOR:
        b_plan = plan_k_major(smem, b, K, col0, N, tid, BN, BK, ESZ, THREADS)
        b_step = 1
    else:
        b_plan = plan_n_major(smem, b, N, col0, N, tid, BK, BN, ESZ, THREADS)
        b_step = N
    a_ptrs, b_ptrs = fragment_offsets(smem, wm0, wn0, lane, WM, WN, BK, BN, ESZ, B_KMAJOR)
    acc = [[kaiodsl.mma_zeros(ACC) for j in range(WN // 8)] for i in range(WM // 16)]
    KT = (K + BK - 1) // BK
    SLABS = BK * ESZ // 32
    if STAGES == 1:  # the plain kernel: copy a tile, barrier, compute, barrier
        for kt in range(KT):
            kaiodsl.syncthreads()
            issue_copies(a_plan, 0, kt * BK, K, 1, False)
            issue_copies(b_plan, B_OFF, kt * BK, K, b_step, False)
            kaiodsl.syncthreads()
            for kk in kaiodsl.static_range(SLABS):
                frags = load_fragments(0, B_OFF, a_ptrs[kk], b_ptrs[kk], WN, B_KMAJOR)
                acc = mma_all(frags, acc, WM, WN, MMA_DTYPE)
        return acc
    # The cp.async pipeline (CUTLASS's multistage main loop, in outline): STAGES - 1 tiles in
    # flight; the fragments of the next k-slab are read while the current slab's mma run, and
    # the wait + barrier for the next tile sit at the last slab of the current one.
    for s in kaiodsl.static_range(STAGES - 1):
        if s < KT:
            issue_copies(a_plan, s * A_ELEMS, s * BK, K, 1, True)
            issue_copies(b_plan, B_OFF + s * B_ELEMS, s * BK, K, b_step, True)
        kaiodsl.cp_async_commit()
    kaiodsl.cp_async_wait(STAGES - 2)
    kaiodsl.syncthreads()
    frags = load_fragments(0, B_OFF, a_ptrs[0], b_ptrs[0], WN, B_KMAJOR)
    read = 0
    write = STAGES - 1
    for kt in range(KT):
        for kk in kaiodsl.static_range(SLABS):
            if kk == SLABS - 1:
                kaiodsl.cp_async_wait(STAGES - 2)
                kaiodsl.syncthreads()
                read = read + 1 if read + 1 < STAGES else 0
                nxt = load_fragments(read * A_ELEMS, B_OFF + read * B_ELEMS, a_ptrs[0], b_ptrs[0], WN, B_KMAJOR)
            else:
                nxt = load_fragments(read * A_ELEMS, B_OFF + read * B_ELEMS, a_ptrs[kk + 1], b_ptrs[kk + 1],
                                     WN, B_KMAJOR)
            if kk == 0:
                t = kt + STAGES - 1
                if t < KT:
                    issue_copies(a_plan, write * A_ELEMS, t * BK, K, 1, True)
                    issue_copies(b_plan, B_OFF + write * B_ELEMS, t * BK, K, b_step, True)
                kaiodsl.cp_async_commit()
                write = write + 1 if write + 1 < STAGES else 0
            acc = mma_all(frags, acc, WM, WN, MMA_DTYPE)
            frags = nxt
    kaiodsl.cp_async_wait_all()
    return acc


@kaiodsl.func
def store_tile(c, acc, r0, c0, lane, M, N, alpha, rscale, cscale, bias, WM: Const[int], WN: Const[int],
               OUT: Const, SCALE: Const[bool], ROW: Const[bool], COL: Const[bool], BIAS: Const[bool]):
    """The epilogue of every GEMM: ``out = f32(acc) [* alpha [* rscale[row]] [* cscale[col]]] [+ bias[col]]``
    rounded once to OUT, two columns per lane (C fragment: rows g and g+8, columns 2t, 2t+1),
    bounds-checked. Pointers whose flag is off are never read."""
    g = lane // 4
    t = lane % 4
    for j in kaiodsl.static_range(WN // 8):
        col = c0 + j * 8 + 2 * t
        s0 = alpha
        s1 = alpha
        if COL:
            s0 = s0 * (cscale[col] if col < N else 0.0)
            s1 = s1 * (cscale[col + 1] if col + 1 < N else 0.0)
        b0 = 0.0
        b1 = 0.0
        if BIAS:
            b0 = bias[col] if col < N else 0.0
            b1 = bias[col + 1] if col + 1 < N else 0.0
        for i in kaiodsl.static_range(WM // 16):
            for h in kaiodsl.static_range(2):
                row = r0 + i * 16 + g + 8 * h
                if row < M:
                    v0 = f32(acc[i][j][2 * h])
                    v1 = f32(acc[i][j][2 * h + 1])
                    if SCALE:
                        rs = rscale[row] if ROW else 1.0
                        v0 = v0 * (s0 * rs)
                        v1 = v1 * (s1 * rs)
                    if BIAS:
                        v0 = v0 + b0
                        v1 = v1 + b1
                    store_pair(c, row * N + col, v0, v1, col, N, OUT)


@kaiodsl.func
def store_pair(c, idx, v0, v1, col, N, OUT: Const):
    """c[idx], c[idx+1] = v0, v1 (converted); one vector store when both columns exist and idx is even."""
    if col + 1 < N and idx % 2 == 0:
        if OUT == f32:
            kaiodsl.store(c, idx, (v0, v1), vec=2)
        else:
            kaiodsl.store(c, idx, (OUT(v0), OUT(v1)), vec=2)
    elif col < N:
        c[idx] = OUT(v0)
        if col + 1 < N:
            c[idx + 1] = OUT(v1)
