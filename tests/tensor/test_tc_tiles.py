"""The tile library (kaiodsl.tiles) and the two examples: swizzles, edge-predicated cp.async tiles,
ldmatrix fragment loaders in both B layouts, the warp MMA and the converting, bounds-checked store."""

import sys
from pathlib import Path

import numpy as np
import pytest

import kaiodsl
from kaiodsl import Const, Ptr, bf16, f16, f32, i32
from kaiodsl import tiles

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
import mma_m16n8k16  # noqa: E402
import tc_matmul  # noqa: E402


# -- swizzles ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("row_bytes", [32, 64, 128, 256])
def test_swizzle_is_conflict_free_for_ldmatrix(row_bytes):
    """Each 8x8 ldmatrix phase reads 8 rows of one logical chunk: they must hit 8 distinct 16-byte
    bank groups (bank group = byte address / 16 mod 8), for every starting row and chunk."""
    chunks = row_bytes // 16
    for r0 in range(0, 64, 8):
        for c in range(chunks):
            groups = {((r * row_bytes + 16 * tiles.swizzle(r, c, row_bytes)) // 16) % 8 for r in range(r0, r0 + 8)}
            assert len(groups) == 8, (row_bytes, r0, c)
    for r in range(16):  # a permutation of each row's chunks
        assert sorted(tiles.swizzle(r, c, row_bytes) for c in range(chunks)) == list(range(chunks))


# -- a small GEMM built from the tile functions ----------------------------------------------------------
@kaiodsl.kernel(block_size=64)
def tile_gemm(a: Ptr[f16], b: Ptr[f16], c: Ptr[f32], M: i32, N: i32, K: i32, B_KN: Const[bool],
              PAIRS: Const[bool]):
    """C[32, 32] block tile with 2 warps (16 x 32 each); B is [K, N] when B_KN else [N, K]."""
    sa = kaiodsl.shared_array(f16, (32, 32), name="sa")
    sb = kaiodsl.shared_array(f16, (32, 32), name="sb")
    tid = kaiodsl.thread_idx.x
    wm = (tid >> 5) * 16
    acc = tiles.zeros(1, 4)
    for k0 in range(0, K, 32):
        tiles.copy_tile_async(sa, a, K, 0, k0, M, K - k0, tid, 64)
        if B_KN:
            tiles.copy_tile_async(sb, b, N, k0, 0, K - k0, N, tid, 64)
        else:
            tiles.copy_tile_async(sb, b, K, 0, k0, N, K - k0, tid, 64)
        kaiodsl.cp_async_wait_all()
        kaiodsl.syncthreads()
        for kk in kaiodsl.static_range(0, 32, 16):
            acc = tiles.mma_k_step(acc, sa, sb, wm, 0, kk, B_KN)
        kaiodsl.syncthreads()
    tiles.store_acc_tile(c, N, wm, 0, acc, M - wm, N, PAIRS)


@kaiodsl.kernel(block_size=64)
def tile_gemm_lowp(a: Ptr[f16], b: Ptr[f16], c: Ptr[bf16], M: i32, N: i32, K: i32, VEC: Const[int]):
    """Like tile_gemm with B [K, N], storing bf16 (rounded from the f32 accumulators); VEC-byte copies."""
    sa = kaiodsl.shared_array(f16, (32, 32), name="sa")
    sb = kaiodsl.shared_array(f16, (32, 32), name="sb")
    tid = kaiodsl.thread_idx.x
    wm = (tid >> 5) * 16
    acc = tiles.zeros(1, 4)
    for k0 in range(0, K, 32):
        tiles.copy_tile_async(sa, a, K, 0, k0, M, K - k0, tid, 64, True, VEC)
        tiles.copy_tile_async(sb, b, N, k0, 0, K - k0, N, tid, 64, True, VEC)
        kaiodsl.cp_async_commit()
        kaiodsl.cp_async_wait(0)
        kaiodsl.syncthreads()
        for kk in kaiodsl.static_range(0, 32, 16):
            acc = tiles.mma_k_step(acc, sa, sb, wm, 0, kk)
        kaiodsl.syncthreads()
    tiles.store_acc_tile(c, N, wm, 0, acc, M - wm, N, True)


def _inputs(rng, M, N, K, b_kn):
    a = ((rng.permutation(M * K) % 64) - 32).reshape(M, K).astype(np.float16) / 8
    b = ((rng.permutation(K * N) % 64) - 31).reshape(K, N).astype(np.float16) / 8
    return a, b, (b if b_kn else np.ascontiguousarray(b.T))


@pytest.mark.parametrize("M,N,K", [(32, 32, 64), (27, 24, 40), (9, 16, 8)])
@pytest.mark.parametrize("b_kn", [True, False], ids=["B_KN", "B_NK"])
@pytest.mark.parametrize("pairs", [False, True], ids=["scalar", "pairs"])
def test_tile_gemm(backend, rng, M, N, K, b_kn, pairs):
    a, b, b_arg = _inputs(rng, M, N, K, b_kn)
    c = np.full((M, N), np.nan, np.float32)
    tile_gemm[1, 64](a, b_arg, c, M, N, K, B_KN=b_kn, PAIRS=pairs)
    np.testing.assert_array_equal(c, (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32))


@pytest.mark.parametrize("N,vec", [(24, 16), (26, 4)])
def test_tile_gemm_bf16_out(backend, rng, N, vec):
    """cp.async needs VEC-aligned global rows: N = 26 halves (52-byte rows) takes 4-byte copies."""
    M, K = 30, 48
    a, b, _ = _inputs(rng, M, N, K, True)
    c = np.zeros((M, N), np.uint16)
    tile_gemm_lowp[1, 64](a, b, c, M, N, K, VEC=vec)
    from kaiodsl.types import bf16_bits
    want = bf16_bits((a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32))
    np.testing.assert_array_equal(c, want)


def test_tile_ptx_structure():
    ptx = tile_gemm.compile(arch="sm_80", B_KN=False, PAIRS=True).ptx
    assert "cp.async.cg.shared.global" in ptx and ", 16, %r" in ptx  # 16-byte copies with zero-fill
    assert "ldmatrix.sync.aligned.m8n8.x4.shared.b16" in ptx and ".trans" not in ptx
    assert "st.global.v2.f32" in ptx
    ptx = tile_gemm.compile(arch="sm_80", B_KN=True, PAIRS=False).ptx
    assert "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16" in ptx


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
