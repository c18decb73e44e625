"""The fused QKV projection kernel: one launch, three outputs, for f16/bf16, int8 and int4 weights.

The grid's x axis walks the column tiles of q, then k, then v (``tiles(N_q) + 2 tiles(N_kv)``), its
y axis the row tiles of x: a block picks its projection's weights, scales, bias and output (a
``where`` on pointers), runs the main loop of its weight kind (the tile library's f16 BlockGemm,
ops/w8_gemm.py or ops/matmul_int4_tiled.py) on its projection's columns, and stores through the
epilogue: per-channel scale and bias (tiles.epilogue), rotary embedding on q and k (tiles.rope), then
row-major [M, N] or head-major [B, H, S, D] stores with the projection's own head count. Every block's
columns lie in one projection, so x's row tile is the only operand shared across projections.
"""

from dataclasses import dataclass
from functools import lru_cache

import kaiodsl
from kaiodsl import Const, Ptr, f32, i8, i32, i64, tiles, u8, u32
from kaiodsl.tiles import rope as trope
from kaiodsl.tiles.copies import store_pair

from . import decode_gemm
from . import matmul_int4_tiled as i4t
from . import w8_gemm


@dataclass(frozen=True)
class QkvPlan:
    """Compile-time facts of one QKV kernel: weight kind and main-loop config, out dtype, layout, rope."""

    kind: str            # "f16" | "int8" | "int4"
    G: object            # tiles.BlockGemm | w8_gemm.W8Gemm | i4t.Int4Gemm | decode_gemm.DecodeGemm
    out: object          # ScalarType
    bhsd: bool
    head_dim: int        # D (0: not needed)
    rope: str            # "" | "rotate_half" | "interleaved"
    has_bias: bool
    has_pos: bool
    bm: int
    bn: int
    threads: int

    @property
    def decode(self) -> bool:
        return isinstance(self.G, decode_gemm.DecodeGemm)

    @property
    def epi(self) -> tiles.Epilogue:
        ops = ((tiles.ColScale(),) if self.kind == "int8" else ()) + ((tiles.Bias(),) if self.has_bias else ())
        return tiles.Epilogue(ops, f32)


@kaiodsl.func
def _pick(p, xq, xk, xv):
    """q's, k's or v's pointer (selp does not take pointers: a block-uniform branch does)."""
    r = xq
    if p == 1:
        r = xk
    elif p == 2:
        r = xv
    return r


@kaiodsl.func
def _warp_tile(Q: Const, tid):
    """(row, col) of the warp tile in the block."""
    if Q.decode:
        nt, kq = decode_gemm.warp_place(Q.G, tid)
        return 0, nt * 8 * Q.G.cfg.nw
    if Q.kind == "int4":
        return 0, (tid // 32) * 8 * Q.G.cfg.n8
    if Q.kind == "int8":
        return w8_gemm.warp_origin(Q.G, tid)
    return tiles.gemm.warp_origin(Q.G, tid)


@kaiodsl.func
def _store(Q: Const, out, row, col, N, S, v0, v1):
    """Columns col, col + 1 of row ``row`` of a projection with N columns ([M, N] or [B, N / D, S, D])."""
    if col < N:
        if Q.bhsd:
            b = row // S
            s = row - b * S
            h = col // Q.head_dim
            d = col - h * Q.head_dim
            idx = ((i64(b) * (N // Q.head_dim) + h) * S + s) * Q.head_dim + d
            store_pair(out, idx, v0, v1, d, Q.head_dim, Q.out)
        else:
            store_pair(out, i64(row) * N + col, v0, v1, col, N, Q.out)


@kaiodsl.func
def _finish(Q: Const, T: Const, acc, out, args, rope_args, smem, r0, c0, wr0, wc0, lane, M, N, S, is_qk,
            active):
    """Scale/bias, rope on q and k, store: the warp tile at (r0, c0) of the projection
    ((wr0, wc0) inside the block tile); only ``active`` warps write (decode: the K split's kq == 0)."""
    E = Q.epi
    g = lane // 4
    t = lane % 4
    vals = []
    for i in kaiodsl.static_range(T.mi):
        line = []
        for j in kaiodsl.static_range(T.nj):
            col = c0 + 8 * j + 2 * t
            cf0, cv0 = tiles.epilogue.col_terms(E, args, col, N)
            cf1, cv1 = tiles.epilogue.col_terms(E, args, col + 1, N)
            v = []
            for h in kaiodsl.static_range(2):
                row = r0 + 16 * i + g + 8 * h
                v = v + [tiles.epilogue.apply(E, f32(acc[i][j][2 * h]), cf0, 1.0, cv0, row, col),
                         tiles.epilogue.apply(E, f32(acc[i][j][2 * h + 1]), cf1, 1.0, cv1, row, col + 1)]
            line = line + [(v[0], v[1], v[2], v[3])]
        vals = vals + [line]
    if Q.rope:
        cos, sin, pos = rope_args
        prow = []
        for i in kaiodsl.static_range(T.mi):
            pair = []
            for h in kaiodsl.static_range(2):
                row = min(r0 + 16 * i + g + 8 * h, M - 1)
                pair = pair + [pos[i64(row)] if Q.has_pos else row % S]
            prow = prow + [pair]
        if Q.rope == "interleaved":
            rot = trope.interleaved(T, vals, cos, sin, prow, c0, lane, Q.head_dim)
        else:
            sm = kaiodsl.ptr_cast(smem.ptr(0), f32)
            rot = trope.rotate_half(T, vals, cos, sin, prow, sm, Q.bn, wr0, wc0, lane, Q.head_dim, active)
        if is_qk:
            vals = rot
    for i in kaiodsl.static_range(T.mi):
        for j in kaiodsl.static_range(T.nj):
            for h in kaiodsl.static_range(2):
                row = r0 + 16 * i + g + 8 * h
                if row < M and active:
                    _store(Q, out, row, c0 + 8 * j + 2 * t, N, S, vals[i][j][2 * h], vals[i][j][2 * h + 1])


@kaiodsl.func
def qkv_body(Q: Const, x, ws, quant, biases, outs, rope_args, split, M, Nq, Nkv, K, S, nbq, nbk):
    """One block: its projection p, the main loop on p's weights, the epilogue on p's output (decode
    with K split across blocks: ``split`` = (f32 workspace, tickets), the last block of a tile stores)."""
    G = Q.G
    smem = kaiodsl.dynamic_shared(G.dtype)
    tid = kaiodsl.thread_idx.x
    lane = tid % 32
    ct = kaiodsl.block_idx.x
    p = kaiodsl.where(ct >= nbq, 1, 0) + kaiodsl.where(ct >= nbq + nbk, 1, 0)
    local = ct - kaiodsl.where(p >= 1, nbq, 0) - kaiodsl.where(p >= 2, nbk, 0)
    col0 = local * Q.bn
    row0 = kaiodsl.block_idx.y * Q.bm
    N = kaiodsl.where(p == 0, Nq, Nkv)
    w = _pick(p, ws[0], ws[1], ws[2])
    active = True
    if Q.decode:
        sc = x
        zp = x
        args = ()
        if Q.kind == "int4":
            sc = _pick(p, quant[0][0], quant[0][1], quant[0][2])
            zp = _pick(p, quant[1][0], quant[1][1], quant[1][2])
        elif Q.kind == "int8":
            args = (_pick(p, quant[0], quant[1], quant[2]),)
        acc = decode_gemm.main_loop(G, kaiodsl.ptr_cast(smem.ptr(0), f32), x, kaiodsl.ptr_cast(w, u32), sc, zp,
                                    M, N, K, row0, col0)
        T = G.acc_tile
        acc, active = decode_gemm.combine_splits(G, kaiodsl.ptr_cast(smem.ptr(0), f32), acc, split[0], split[1])
    elif Q.kind == "f16":
        acc = tiles.gemm.main_loop(G, smem, x, w, M, N, K, row0, col0)
        args = ()
        T = G.warp.acc_tile
    elif Q.kind == "int8":
        acc = w8_gemm.main_loop(G, smem, x, kaiodsl.ptr_cast(w, G.dtype), x, M, N, K, row0, col0)
        args = (_pick(p, quant[0], quant[1], quant[2]),)
        T = G.warp.acc_tile
    else:
        sc = _pick(p, quant[0][0], quant[0][1], quant[0][2])
        zp = _pick(p, quant[1][0], quant[1][1], quant[1][2])
        acc = i4t.main_loop(G, smem, x, kaiodsl.ptr_cast(w, u32), sc, zp, M, N, K, row0, col0)
        args = ()
        T = G.acc_tile
    if Q.has_bias:
        args = args + (_pick(p, biases[0], biases[1], biases[2]),)
    out = _pick(p, outs[0], outs[1], outs[2])
    wr0, wc0 = _warp_tile(Q, tid)
    _finish(Q, T, acc, out, args, rope_args, smem, row0 + wr0, col0 + wc0, wr0, wc0, lane, M, N, S, p < 2,
            active)


@lru_cache(maxsize=None)
def qkv_kernel(Q: QkvPlan, wdtype: str = "i32"):
    T = Q.G.dtype
    OUT = Q.out
    W = {"f16": T, "int8": i8}.get(Q.kind) or {"i32": i32, "u32": u32}[wdtype]
    name = (f"qkv_{Q.kind}_{T.name}_{OUT.name}_{Q.bm}x{Q.bn}_t{Q.threads}" + ("_bhsd" if Q.bhsd else "_mn") +
            (f"_d{Q.head_dim}" if Q.head_dim else "") + (f"_{Q.rope}" if Q.rope else "") +
            ("_bias" if Q.has_bias else "") + ("_pos" if Q.has_pos else ""))
    if Q.kind == "int4":
        name += f"_g{Q.G.group}" + ("_zp" if Q.G.has_zeros else "")
    if Q.decode:
        name += f"_dec_{Q.G.cfg}" + ("" if Q.G.two_rows else "_m8") + ("_x" if Q.G.exact else "")

    @kaiodsl.kernel(block_size=Q.threads, name=name)
    def qkv(x: Ptr[T], wq: Ptr[W], wk: Ptr[W], wv: Ptr[W], sq: Ptr[f32], sk: Ptr[f32], sv: Ptr[f32],
            gq: Ptr[T], gk: Ptr[T], gv: Ptr[T], zq: Ptr[u8], zk: Ptr[u8], zv: Ptr[u8],
            bq: Ptr[f32], bk: Ptr[f32], bv: Ptr[f32], oq: Ptr[OUT], ok: Ptr[OUT], ov: Ptr[OUT],
            cos: Ptr[f32], sin: Ptr[f32], pos: Ptr[i32], wsp: Ptr[f32], tck: Ptr[i32], M: i32, Nq: i32, Nkv: i32,
            K: i32, S: i32, nbq: i32, nbk: i32):
        if Q.kind == "int8":
            quant = (sq, sk, sv)
        else:
            quant = ((gq, gk, gv), (zq, zk, zv))
        qkv_body(Q, x, (wq, wk, wv), quant, (bq, bk, bv), (oq, ok, ov), (cos, sin, pos), (wsp, tck), M, Nq, Nkv,
                 K, S, nbq, nbk)

    return qkv
