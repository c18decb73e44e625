"""kaiodsl.tiles.copies: copy plans with ragged edges (piece masks and element-exact zero fill), both
k axes, cp.async and synchronous copies, ldmatrix loaders for both B layouts, stmatrix; and the
tc_matmul example built from them."""

import sys
from pathlib import Path

import numpy as np
import pytest

import kaiodsl
from kaiodsl import Const, Ptr, f16, f32, i32, tiles
from kaiodsl.tiles import copies, epilogue, fragments, mma, pipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
import mma_m16n8k16  # noqa: E402
import tc_matmul  # noqa: E402

THREADS = 64
WARP = tiles.WarpMma(16, 32)


@kaiodsl.kernel(block_size=THREADS)
def tile_gemm(a: Ptr[f16], b: Ptr[f16], c: Ptr[f32], M: i32, N: i32, K: i32, lda: i32, ldb: i32,
              B_KN: Const[bool], VEC: Const[int], EDGE: Const[str], KIND: Const[str], GRAN: Const[int]):
    """C [32, 32] = A [M, K] @ B with two warps (16 x 32 each), one 32-deep k tile at a time; A and B
    rows are lda / ldb elements apart (>= the extent: the padding must never be read); GRAN: the
    copies' granule (0: whole pieces)."""
    TA = tiles.SmemTile(32, 32, f16)
    TB = tiles.SmemTile(32, 32, f16).after(TA)
    ca = tiles.TileCopy(TA, THREADS, "cols", KIND, vec=VEC, edge=EDGE, granule=GRAN)
    cb = tiles.TileCopy(TB, THREADS, "rows" if B_KN else "cols", KIND, vec=VEC, edge=EDGE, granule=GRAN)
    smem = kaiodsl.shared_array(f16, (TB.end,), align=128, name="smem")
    tid = kaiodsl.thread_idx.x
    lane = tid % 32
    wm = (tid // 32) * 16
    b_ld = ldb
    pa = copies.plan(ca, smem, a, lda, 0, M, tid)
    pb = copies.plan(cb, smem, b, b_ld, 0, N, tid)
    aps = copies.a_ptrs(smem, TA, wm, lane, 1)
    bps = copies.b_ptrs(smem, TB, 0, lane, 4, not B_KN)
    acc = fragments.zeros(WARP.acc_tile)
    for k0 in range(0, K, 32):
        copies.issue(ca, pa, lda, 0, k0, K)
        copies.issue(cb, pb, b_ld, 0, k0, K)
        if KIND == "cp.async":
            pipeline.commit(tiles.Ring(1))
            pipeline.drain(tiles.Ring(1))
        kaiodsl.syncthreads()
        for kk in kaiodsl.static_range(2):
            acc = mma.mma_tile(WARP, acc, copies.load_a(aps[kk], 0), copies.load_b(bps[kk], 0, not B_KN))
        kaiodsl.syncthreads()
    epilogue.store_tile(tiles.Epilogue((), f32), WARP.acc_tile, acc, c, (), wm, 0, lane, M, N)


def _inputs(rng, M, N, K, b_kn):
    a = ((rng.permutation(M * K) % 64) - 32).reshape(M, K).astype(np.float16) / 8
    b = ((rng.permutation(K * N) % 64) - 31).reshape(K, N).astype(np.float16) / 8
    return a, b, (b if b_kn else np.ascontiguousarray(b.T))


def _padded(x, align):
    """x with each row padded with NaN to a multiple of ``align`` elements (what must not be read)."""
    ld = -(-x.shape[1] // align) * align
    out = np.full((x.shape[0], ld), np.nan, x.dtype)
    out[:, :x.shape[1]] = x
    return out, ld


CASES = [  # (M, N, K, vec, edge, kind): every M/N/K ragged somewhere; rows padded to vec bytes
    (32, 32, 64, 16, "piece", "cp.async"), (27, 24, 40, 16, "piece", "cp.async"), (9, 16, 8, 16, "piece", "sync"),
    (30, 26, 44, 4, "piece", "cp.async"), (30, 28, 36, 8, "piece", "sync"), (17, 30, 50, 4, "element", "cp.async"),
    (31, 20, 36, 16, "element", "cp.async"),
]


@pytest.mark.parametrize("M,N,K,vec,edge,kind", CASES)
@pytest.mark.parametrize("b_kn", [True, False], ids=["B_KN", "B_NK"])
def test_copy_plans_with_ragged_edges(backend, rng, M, N, K, vec, edge, kind, b_kn):
    """edge='element' with 16-byte copies and K = 36 or N = 20 (not multiples of 8) zero-fills inside
    a chunk: the NaN padding after the extent never reaches the product."""
    a, b, b_arg = _inputs(rng, M, N, K, b_kn)
    a_pad, lda = _padded(a, vec // 2)
    b_pad, ldb = _padded(b_arg, vec // 2)
    if edge != "element" and (lda != K or ldb != b_arg.shape[1]):
        pytest.skip("piece edges need extents that are multiples of the copy")
    c = np.full((M, N), np.nan, np.float32)
    tile_gemm[1, THREADS](a_pad, b_pad, c, M, N, K, lda, ldb, B_KN=b_kn, VEC=vec, EDGE=edge, KIND=kind, GRAN=0)
    np.testing.assert_array_equal(c, (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32))


def test_copy_ptx_structure():
    ptx = tile_gemm.compile(arch="sm_80", B_KN=False, VEC=16, EDGE="piece", KIND="cp.async", GRAN=0).ptx
    assert "cp.async.cg.shared.global" in ptx and ", 16, %r" in ptx  # 16-byte copies with zero-fill
    assert "ldmatrix.sync.aligned.m8n8.x4.shared.b16" in ptx and ".trans" not in ptx
    assert "st.global.v2.f32" in ptx
    ptx = tile_gemm.compile(arch="sm_80", B_KN=True, VEC=4, EDGE="piece", KIND="cp.async", GRAN=0).ptx
    assert "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16" in ptx and "cp.async.ca.shared.global" in ptx
    ptx = tile_gemm.compile(arch="sm_80", B_KN=True, VEC=16, EDGE="piece", KIND="sync", GRAN=0).ptx
    assert "cp.async" not in ptx and "ld.global.v4.u32" in ptx


GRANULE_CASES = [  # (M, N, K, granule, kind): rows aligned only to the granule (lda, ldb padded to it)
    (27, 24, 37, 2, "sync"), (30, 13, 9, 2, "sync"), (17, 30, 50, 4, "cp.async"), (30, 26, 44, 8, "cp.async"),
    (9, 21, 6, 4, "sync"), (32, 30, 68, 8, "sync"),
]


@pytest.mark.parametrize("M,N,K,gran,kind", GRANULE_CASES)
@pytest.mark.parametrize("b_kn", [True, False], ids=["B_KN", "B_NK"])
def test_copy_plans_with_granules(backend, rng, M, N, K, gran, kind, b_kn):
    """16-byte chunks filled granule by granule: rows that start off 16-byte boundaries land in the
    same swizzled tile; the NaN padding past each row (up to the granule) is never read."""
    a, b, b_arg = _inputs(rng, M, N, K, b_kn)
    a_pad, lda = _padded(a, gran // 2)
    b_pad, ldb = _padded(b_arg, gran // 2)
    c = np.full((M, N), np.nan, np.float32)
    tile_gemm[1, THREADS](a_pad, b_pad, c, M, N, K, lda, ldb, B_KN=b_kn, VEC=16, EDGE="piece", KIND=kind, GRAN=gran)
    np.testing.assert_array_equal(c, (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32))


def test_granule_ptx():
    ptx = tile_gemm.compile(arch="sm_80", B_KN=True, VEC=16, EDGE="piece", KIND="sync", GRAN=2).ptx
    assert "cp.async" not in ptx and "ld.global.u16" in ptx and "st.shared.u16" in ptx
    ptx = tile_gemm.compile(arch="sm_80", B_KN=False, VEC=16, EDGE="piece", KIND="cp.async", GRAN=8).ptx
    assert "cp.async.ca.shared.global" in ptx and "cp.async.cg" not in ptx and "ld.global" not in ptx


def test_bad_plans_are_refused():
    T = tiles.SmemTile(32, 32, f16)
    with pytest.raises(ValueError, match="do not split"):
        tiles.TileCopy(T, 96)
    with pytest.raises(ValueError, match="needs cp.async"):
        tiles.TileCopy(T, 64, kind="sync", edge="element")
    for bad in (dict(granule=2), dict(granule=16), dict(granule=3, kind="sync"), dict(granule=4, edge="element"),
                dict(granule=1, kind="sync")):   # 2 bytes under cp.async, >= vec, not a power of 2, one f16 < 2
        with pytest.raises(ValueError, match="granule"):
            tiles.TileCopy(T, 64, **bad)


@kaiodsl.kernel(block_size=32)
def stmatrix_roundtrip(x: Ptr[f16], y: Ptr[f16]):
    """A 16x16 f16 block loaded as an A fragment (ldmatrix), stored back with stmatrix, dumped."""
    T = tiles.SmemTile(16, 64, f16)
    smem = kaiodsl.shared_array(f16, (T.end,), align=128, name="s")
    lane = kaiodsl.thread_idx.x
    for q in range(lane, T.elems, 32):
        smem[q] = x[q]
    kaiodsl.syncthreads()
    frag = kaiodsl.ldmatrix(copies.a_ptrs(smem, T, 0, lane, 1)[1][0], 4)     # columns 16..31
    kaiodsl.syncthreads()
    copies.stmatrix_tile(smem, T, 0, 48, lane, frag)                         # to columns 48..63
    kaiodsl.syncthreads()
    for q in range(lane, T.elems, 32):
        y[q] = smem[q]


def test_stmatrix_tile(backend, rng):
    T = tiles.SmemTile(16, 64, f16)
    logical = rng.standard_normal((16, 64)).astype(np.float16)
    phys = np.zeros(T.elems, np.float16)
    for r in range(16):
        for c in range(64):
            phys[T.element_offset(r, c)] = logical[r, c]
    x = phys.copy()
    y = np.zeros_like(phys)
    stmatrix_roundtrip[1, 32](x, y)
    got = np.array([[y[T.element_offset(r, c)] for c in range(64)] for r in range(16)])
    np.testing.assert_array_equal(got[:, 48:], logical[:, 16:32])


# -- the examples ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["sm_80", "sm_89", "sm_90a"])
def test_examples_assemble_without_spills(arch):
    for k, consts in ((tc_matmul.tc_matmul, dict(EDGE=True)), (tc_matmul.tc_matmul, dict(EDGE=False)),
                      (mma_m16n8k16.mma_m16n8k16, {})):
        ck = k.compile(arch=arch, **consts)
        assert ck.spills == 0, (k, arch, ck.registers)
        assert ck.registers <= 128, (k, arch, ck.registers)  # 4 warps x 128 regs: 4 blocks per SM


def test_tc_matmul_structure():
    ptx = tc_matmul.tc_matmul.compile(arch="sm_90a").ptx
    for inst in ("cp.async.cg.shared.global", "cp.async.commit_group", "cp.async.wait_group 1",
                 "ldmatrix.sync.aligned.m8n8.x4.shared.b16", "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16",
                 "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32"):
        assert inst in ptx, inst
    body = ptx[ptx.index("$loop"):]
    assert body.count("\tmma.sync") == 32 and body.count("\tldmatrix") == 16


def test_mma_example(backend):
    mma_m16n8k16.run(quick=True)


@pytest.mark.parametrize("M,N,K", [(64, 64, 64), (72, 80, 136), (5, 8, 200), (130, 64, 8)])
def test_tc_matmul(backend, rng, M, N, K):
    a = rng.integers(-8, 8, (M, K)).astype(np.float16) / 8
    b = rng.integers(-8, 8, (K, N)).astype(np.float16) / 8
    c = np.full((M, N), np.nan, np.float32)
    grid = ((N + 63) // 64, (M + 63) // 64)
    tc_matmul.tc_matmul[grid, tc_matmul.THREADS](a, b, c, M, N, K, EDGE=True)
    np.testing.assert_array_equal(c, (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32))


def test_tc_matmul_no_edge_checks(backend, rng):
    M, N, K = 128, 64, 128
    a = rng.integers(-8, 8, (M, K)).astype(np.float16) / 8
    b = rng.integers(-8, 8, (K, N)).astype(np.float16) / 8
    c = np.full((M, N), np.nan, np.float32)
    tc_matmul.tc_matmul[(1, 2), tc_matmul.THREADS](a, b, c, M, N, K, EDGE=False)
    np.testing.assert_array_equal(c, (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32))
