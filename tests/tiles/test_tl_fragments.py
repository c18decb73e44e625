"""kaiodsl.tiles.fragments: element coordinates vs the PTX ISA C/D layout (9.7.14.5.8) and the mma
itself, row max/sum across the quad, masks by coordinates, elementwise maps, acc -> A without shared
memory, dtype packing; against numpy."""

import numpy as np
import pytest

import kaiodsl
from kaiodsl import Const, Ptr, bf16, bf16x2, f16, f16x2, f32, tiles
from kaiodsl.tiles import epilogue, fragments, mma

from fragkit import operand

T = tiles.AccTile(2, 4)          # a 32 x 32 warp tile
F32_OUT = tiles.Epilogue((), f32)


def test_host_coordinates_follow_the_isa():
    """PTX ISA 9.7.14.5.8 (m16n8k16 C/D): row = groupID (+8 for c2, c3), col = 2 threadID_in_group + (i & 1)."""
    lanes = np.arange(32)
    lay = kaiodsl.fragment_layout("c", "f32")
    for i in range(T.mi):
        for j in range(T.nj):
            for e in range(4):
                r, c = T.coord(i, j, e, lanes)
                want_r = 16 * i + lanes // 4 + (8 if e >= 2 else 0)
                want_c = 8 * j + 2 * (lanes % 4) + (e & 1)
                np.testing.assert_array_equal(r, want_r)
                np.testing.assert_array_equal(c, want_c)
                lr, lc = lay.coord(e, lanes)
                np.testing.assert_array_equal((r - 16 * i, c - 8 * j), (lr, lc))
    # every (row, col) of the tile is held by exactly one (lane, i, j, e)
    cells = {(int(r), int(c)) for i in range(2) for j in range(4) for e in range(4)
             for r, c in zip(*T.coord(i, j, e, lanes))}
    assert len(cells) == 32 * 32


@kaiodsl.kernel(block_size=32)
def mma_coords(a: Ptr[f16], b: Ptr[f16], d: Ptr[f32]):
    """D = A [32, 16] @ B [16, 32] on the tensor cores, each element stored where fragments.coord says."""
    lane = kaiodsl.thread_idx.x
    W = tiles.WarpMma(32, 32)
    af = [operand("a", "f16", 16, a, 16, 16 * i, 0, f16x2) for i in range(2)]
    bf = [operand("b", "f16", 16, b, 32, 0, 8 * j, f16x2) for j in range(4)]
    acc = mma.mma_tile(W, fragments.zeros(W.acc_tile), af, bf)
    for i in kaiodsl.static_range(2):
        for j in kaiodsl.static_range(4):
            for e in kaiodsl.static_range(4):
                r, c = fragments.coord(W.acc_tile, i, j, e, lane)
                d[r * 32 + c] = acc[i][j][e]


def test_kernel_coordinates_match_the_mma(backend, rng):
    a = rng.integers(-8, 8, (32, 16)).astype(np.float16)
    b = rng.integers(-8, 8, (16, 32)).astype(np.float16)
    d = np.full((32, 32), np.nan, np.float32)
    mma_coords[1, 32](a, b, d)
    np.testing.assert_array_equal(d, a.astype(np.float64) @ b.astype(np.float64))


def _neg_inf_or(x, keep):
    return np.where(keep, x, -np.inf)


@kaiodsl.func
def causal(row, col, shift):
    return col <= row + shift


@kaiodsl.func
def relu(v):
    return max(v, 0.0)


@kaiodsl.func
def minus(v, m):
    return v - m


@kaiodsl.kernel(block_size=32)
def frag_ops(x: Ptr[f32], out: Ptr[f32], rmax: Ptr[f32], rsum: Ptr[f32], OP: Const[str]):
    """x [32, 32] loaded as an accumulator tile; OP picks the fragment operation under test."""
    lane = kaiodsl.thread_idx.x
    acc = fragments.load_c(T, x, 32, 0, 0, lane)
    if OP == "mask":
        acc = fragments.mask(T, acc, causal, 0, 0, 0, lane, -float("inf"))
    elif OP == "relu":
        acc = fragments.map(T, acc, relu)
    mx = fragments.row_max(T, acc, -float("inf"))
    sm = fragments.row_sum(T, acc, [[f32(2.0), f32(2.0)], [f32(2.0), f32(2.0)]])   # a running sum: counted once
    if OP == "center":
        acc = fragments.map_rows(T, acc, minus, mx)
        acc = fragments.scale_rows(T, acc, sm)
    epilogue.store_tile(F32_OUT, T, acc, out, (), 0, 0, lane, 32, 32)
    epilogue.store_rows(T, rmax, mx, 0, lane, 32)
    epilogue.store_rows(T, rsum, sm, 0, lane, 32)


@pytest.mark.parametrize("op", ["none", "mask", "relu", "center"])
def test_row_reductions_masks_and_maps(backend, rng, op):
    x = (rng.standard_normal((32, 32)) * 4).astype(np.float32)
    out = np.full((32, 32), np.nan, np.float32)
    rmax = np.full(32, np.nan, np.float32)
    rsum = np.full(32, np.nan, np.float32)
    frag_ops[1, 32](x, out, rmax, rsum, OP=op)
    want = x.astype(np.float64)
    if op == "mask":
        want = _neg_inf_or(want, np.tril(np.ones((32, 32), bool)))
    elif op == "relu":
        want = np.maximum(want, 0)
    mx = want.max(axis=1)
    finite = np.where(np.isinf(want), 0.0, want) if op != "mask" else want
    sm = finite.sum(axis=1) + 2.0
    np.testing.assert_array_equal(rmax, mx.astype(np.float32))
    np.testing.assert_allclose(rsum, sm, rtol=1e-5, atol=1e-4)
    if op == "center":
        want = (want - mx[:, None]) * rsum.astype(np.float64)[:, None]
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-4)
    else:
        np.testing.assert_array_equal(out, want.astype(np.float32))


def _acc_to_a(H2, V):
    dt = "f16" if H2 == f16x2 else "bf16"

    @kaiodsl.kernel(block_size=32, name=f"acc_to_a_{dt}")
    def acc_to_a(p: Ptr[f32], v: Ptr[V], out: Ptr[f32]):
        """O [32, 32] = P [32, 32] (an f32 accumulator tile, rounded to V) @ V [32, 32]: P feeds the
        mma as its A operand straight from registers (fragments.to_a), FlashAttention-2's P @ V."""
        lane = kaiodsl.thread_idx.x
        W = tiles.WarpMma(32, 32, tiles.MmaAtom(dt))
        pa = fragments.to_a(T, fragments.load_c(T, p, 32, 0, 0, lane), H2)
        o = fragments.zeros(W.acc_tile)
        for kk in kaiodsl.static_range(2):
            bf = [operand("b", dt, 16, v, 32, 16 * kk, 8 * j, H2) for j in range(4)]
            o = mma.mma_tile(W, o, [pa[0][kk], pa[1][kk]], bf)
        epilogue.store_tile(F32_OUT, W.acc_tile, o, out, (), 0, 0, lane, 32, 32)

    return acc_to_a


ACC_TO_A = {f16x2: _acc_to_a(f16x2, f16), bf16x2: _acc_to_a(bf16x2, bf16)}


@pytest.mark.parametrize("h2", [f16x2, bf16x2], ids=["f16", "bf16"])
def test_accumulator_as_a_operand(backend, rng, h2):
    """Exact: P and V are small multiples of 1/8, so rounding P to f16/bf16 and the f32 sums are exact."""
    p = (rng.integers(-16, 16, (32, 32)) / 8).astype(np.float32)
    vv = (rng.integers(-16, 16, (32, 32)) / 8).astype(np.float32)
    if h2 == f16x2:
        v = vv.astype(np.float16)
    else:
        v = (vv.view(np.uint32) >> 16).astype(np.uint16)   # exact in bf16
    out = np.full((32, 32), np.nan, np.float32)
    ACC_TO_A[h2][1, 32](p, v, out)
    np.testing.assert_array_equal(out, (p.astype(np.float64) @ vv.astype(np.float64)).astype(np.float32))


def test_to_a_needs_no_shared_memory():
    ptx = ACC_TO_A[f16x2].compile(arch="sm_80").ptx
    assert ".shared" not in ptx and "ld.shared" not in ptx and "st.shared" not in ptx
    assert ptx.count("cvt.rn.f16x2.f32") == 16          # 32 x 32 f32 = 32 a lane = 16 packed pairs
