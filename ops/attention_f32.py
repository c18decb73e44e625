"""f32 flash attention on the FMA pipes (KAIO's ``attention_flash``): single head, f32-accurate.

No tensor cores (their f32 inputs are tf32, ~1e-3): one warp owns one row (a query for the forward
and dQ, a key for dK/dV) and walks tiles of 32 rows of the other side staged in shared memory.
Lane j computes the dot product of the warp's row with tile row j (the column index rotated by the
lane, ``(d + lane) mod D``, so the 32 lanes hit 32 banks), the softmax statistics are warp reductions,
and the output row (lanes over D) accumulates ``sum_j p_j x_j`` with p_j broadcast by ``shfl``.
Scores are scaled in f32 (not folded into an exponent) and ``exp`` is kaiodsl's accurate one, guarded
so that a masked score never reaches it: masked / keyless rows give p = 0, o = 0, lse = -inf.
"""

from functools import lru_cache

import kaiodsl
from kaiodsl import Const, Ptr, f32, i32, i64

NEG_INF = -float("inf")
WARPS = 8          # rows a block
TILE = 32          # rows of the other side per tile (one a lane)


@kaiodsl.func
def _seen(q, key, Sk, shift, CAUSAL: Const[bool]):
    if CAUSAL:
        return key < Sk and key <= q + shift
    return key < Sk


@kaiodsl.func
def _stage(D: Const[int], smem, base, src, row0, n, tid):
    """Rows row0 .. row0 + 31 of a contiguous [n, D] f32 matrix into smem[base ..] (zeros past n)."""
    for e0 in kaiodsl.static_range(0, TILE * D, 32 * WARPS):
        e = e0 + tid
        r = e // D
        smem[base + e] = kaiodsl.load(src, i64(row0 + r) * D + (e - r * D), mask=row0 + r < n, other=0.0)


@kaiodsl.func
def _own_row(D: Const[int], smem, base, src, row, n, lane):
    """This warp's row of a contiguous [n, D] matrix into smem[base ..] (zeros if row >= n)."""
    for d0 in kaiodsl.static_range(0, D, 32):
        if d0 + lane < D:
            smem[base + d0 + lane] = kaiodsl.load(src, i64(row) * D + d0 + lane, mask=row < n, other=0.0)


@kaiodsl.func
def _dot(D: Const[int], smem, rowbase, tilebase, lane):
    """sum_d smem[rowbase + d] * smem[tilebase + lane * D + d], d rotated by the lane (no bank conflicts)."""
    acc = f32(0.0)
    for d in kaiodsl.static_range(D):
        dd = d + lane
        if D < 32:
            dd = dd % D
        else:
            dd = kaiodsl.where(dd >= D, dd - D, dd)
        acc = kaiodsl.fma(smem[rowbase + dd], smem[tilebase + lane * D + dd], acc)
    return acc


@kaiodsl.func
def _warp_max(x):
    for s in kaiodsl.static_range(5):
        x = max(x, kaiodsl.shfl_xor(x, 1 << s))
    return x


@kaiodsl.func
def _warp_sum(x):
    for s in kaiodsl.static_range(5):
        x = x + kaiodsl.shfl_xor(x, 1 << s)
    return x


@kaiodsl.func
def _accumulate(D: Const[int], acc, w, smem, tilebase, lane):
    """acc[c] += sum_j w_j * tile[j][d0 + lane] for this lane's columns (w_j from lane j)."""
    out = []
    for c in kaiodsl.static_range(len(acc)):
        a = acc[c]
        col = min(c * 32 + lane, D - 1)
        for j in kaiodsl.static_range(TILE):
            a = kaiodsl.fma(kaiodsl.shfl_idx(w, j), smem[tilebase + j * D + col], a)
        out = out + [a]
    return out


@kaiodsl.func
def _store(D: Const[int], dst, row, n, acc, factor, lane):
    if row < n:
        for c in kaiodsl.static_range(len(acc)):
            if c * 32 + lane < D:
                dst[i64(row) * D + c * 32 + lane] = acc[c] * factor


def smem_bytes(d: int, own_rows: int) -> int:
    """Dynamic shared memory of a kernel holding ``own_rows`` rows a warp and two 32-row tiles (> 48 KB
    at d = 256: static shared memory could not hold it)."""
    return 4 * d * (own_rows * WARPS + 2 * TILE)


@lru_cache(maxsize=None)
def flash_f32_forward(d: int, causal: bool):
    NC = (d + 31) // 32

    @kaiodsl.kernel(block_size=32 * WARPS, name=f"attn_flash_f32_d{d}" + ("_causal" if causal else ""))
    def attn_flash_f32(q: Ptr[f32], k: Ptr[f32], v: Ptr[f32], o: Ptr[f32], lse: Ptr[f32], Sq: i32, Sk: i32,
                       scale: f32, shift: i32):
        smem = kaiodsl.dynamic_shared(f32)          # smem_bytes(d, 1)
        tid = kaiodsl.thread_idx.x
        lane = tid % 32
        warp = tid // 32
        row = kaiodsl.block_idx.x * WARPS + warp
        KB = WARPS * d
        VB = KB + TILE * d
        _own_row(d, smem, warp * d, q, row, Sq, lane)
        kend = Sk
        if causal:
            kend = max(min(Sk, kaiodsl.block_idx.x * WARPS + WARPS + shift), 0)
        m = f32(NEG_INF)
        l = f32(0.0)
        acc = [f32(0.0) for c in range(NC)]
        for k0 in range(0, kend, TILE):
            kaiodsl.syncthreads()
            _stage(d, smem, KB, k, k0, kend, tid)
            _stage(d, smem, VB, v, k0, kend, tid)
            kaiodsl.syncthreads()
            ok = _seen(row, k0 + lane, kend, shift, causal)
            s = kaiodsl.where(ok, _dot(d, smem, warp * d, KB, lane) * scale, f32(NEG_INF))
            m_new = max(m, _warp_max(s))
            m_use = kaiodsl.where(m_new == NEG_INF, f32(0.0), m_new)
            p = kaiodsl.where(ok, kaiodsl.exp(kaiodsl.where(ok, s - m_use, f32(0.0))), f32(0.0))
            alpha = kaiodsl.where(m == NEG_INF, f32(0.0), kaiodsl.exp(kaiodsl.where(m == NEG_INF, f32(0.0),
                                                                                    m - m_use)))
            l = l * alpha + _warp_sum(p)
            acc = _accumulate(d, [a * alpha for a in acc], p, smem, VB, lane)
            m = m_new
        inv = kaiodsl.where(l > 0.0, 1.0 / l, f32(0.0))
        _store(d, o, row, Sq, acc, inv, lane)
        if lane == 0 and row < Sq:
            lse[i64(row)] = kaiodsl.where(l > 0.0, m + kaiodsl.log(kaiodsl.where(l > 0.0, l, f32(1.0))),
                                          f32(NEG_INF))

    return attn_flash_f32


@lru_cache(maxsize=None)
def flash_f32_dq(d: int, causal: bool):
    """dQ: a warp a query row i; lane j of a key tile: p = exp(s - lse_i), ds = p (dO_i . v_j - Dr_i)."""
    NC = (d + 31) // 32

    @kaiodsl.kernel(block_size=32 * WARPS, name=f"attn_flash_f32_dq_d{d}" + ("_causal" if causal else ""))
    def attn_flash_f32_dq(q: Ptr[f32], k: Ptr[f32], v: Ptr[f32], do: Ptr[f32], lse: Ptr[f32], dr: Ptr[f32],
                          dq: Ptr[f32], Sq: i32, Sk: i32, scale: f32, shift: i32):
        smem = kaiodsl.dynamic_shared(f32)          # smem_bytes(d, 2)
        tid = kaiodsl.thread_idx.x
        lane = tid % 32
        warp = tid // 32
        row = kaiodsl.block_idx.x * WARPS + warp
        DB = WARPS * d
        KB = 2 * WARPS * d
        VB = KB + TILE * d
        _own_row(d, smem, warp * d, q, row, Sq, lane)
        _own_row(d, smem, DB + warp * d, do, row, Sq, lane)
        li = kaiodsl.load(lse, i64(row), mask=row < Sq, other=NEG_INF)
        di = kaiodsl.load(dr, i64(row), mask=row < Sq, other=0.0)
        acc = [f32(0.0) for c in range(NC)]
        for k0 in range(0, Sk, TILE):
            kaiodsl.syncthreads()
            _stage(d, smem, KB, k, k0, Sk, tid)
            _stage(d, smem, VB, v, k0, Sk, tid)
            kaiodsl.syncthreads()
            ok = _seen(row, k0 + lane, Sk, shift, causal) and li != NEG_INF
            s = _dot(d, smem, warp * d, KB, lane) * scale
            p = kaiodsl.where(ok, kaiodsl.exp(kaiodsl.where(ok, s - li, f32(0.0))), f32(0.0))
            ds = p * (_dot(d, smem, DB + warp * d, VB, lane) - di)
            acc = _accumulate(d, acc, ds, smem, KB, lane)
        _store(d, dq, row, Sq, acc, scale, lane)

    return attn_flash_f32_dq


@lru_cache(maxsize=None)
def flash_f32_dkdv(d: int, causal: bool):
    """dK, dV: a warp a key row j; lane i of a query tile: p = exp(s - lse_i), dV += p dO_i, dK += ds q_i."""
    NC = (d + 31) // 32

    @kaiodsl.kernel(block_size=32 * WARPS, name=f"attn_flash_f32_dkdv_d{d}" + ("_causal" if causal else ""))
    def attn_flash_f32_dkdv(q: Ptr[f32], k: Ptr[f32], v: Ptr[f32], do: Ptr[f32], lse: Ptr[f32], dr: Ptr[f32],
                            dk: Ptr[f32], dv: Ptr[f32], Sq: i32, Sk: i32, scale: f32, shift: i32):
        smem = kaiodsl.dynamic_shared(f32)          # smem_bytes(d, 2)
        tid = kaiodsl.thread_idx.x
        lane = tid % 32
        warp = tid // 32
        key = kaiodsl.block_idx.x * WARPS + warp
        VB = WARPS * d
        QB = 2 * WARPS * d
        OB = QB + TILE * d
        _own_row(d, smem, warp * d, k, key, Sk, lane)
        _own_row(d, smem, VB + warp * d, v, key, Sk, lane)
        ka = [f32(0.0) for c in range(NC)]
        va = [f32(0.0) for c in range(NC)]
        for q0 in range(0, Sq, TILE):
            kaiodsl.syncthreads()
            _stage(d, smem, QB, q, q0, Sq, tid)
            _stage(d, smem, OB, do, q0, Sq, tid)
            kaiodsl.syncthreads()
            qi = q0 + lane
            li = kaiodsl.load(lse, i64(qi), mask=qi < Sq, other=NEG_INF)
            di = kaiodsl.load(dr, i64(qi), mask=qi < Sq, other=0.0)
            ok = qi < Sq and _seen(qi, key, Sk, shift, causal) and li != NEG_INF
            s = _dot(d, smem, warp * d, QB, lane) * scale
            p = kaiodsl.where(ok, kaiodsl.exp(kaiodsl.where(ok, s - li, f32(0.0))), f32(0.0))
            ds = p * (_dot(d, smem, VB + warp * d, OB, lane) - di)
            va = _accumulate(d, va, p, smem, OB, lane)
            ka = _accumulate(d, ka, ds, smem, QB, lane)
        _store(d, dk, key, Sk, ka, scale, lane)
        _store(d, dv, key, Sk, va, f32(1.0), lane)

    return attn_flash_f32_dkdv


@lru_cache(maxsize=None)
def rowdot_f32(d: int):
    NC = (d + 31) // 32

    @kaiodsl.kernel(block_size=128, name=f"attn_rowdot_f32_d{d}")
    def attn_rowdot_f32(do: Ptr[f32], o: Ptr[f32], dr: Ptr[f32], rows: i32):
        tid = kaiodsl.thread_idx.x
        lane = tid % 32
        row = kaiodsl.block_idx.x * 4 + tid // 32
        if row < rows:
            acc = f32(0.0)
            for c in kaiodsl.static_range(NC):
                col = c * 32 + lane
                if col < d:
                    acc = kaiodsl.fma(do[i64(row) * d + col], o[i64(row) * d + col], acc)
            acc = _warp_sum(acc)
            if lane == 0:
                dr[i64(row)] = acc

    return attn_rowdot_f32
