"""matmul_int4 past decode (M > 16): the block-tiled kernel of ops/matmul_int4_tiled.py against the
float64 product with the reference-dequantized weights, its configs, and the dequant bit for bit."""

import importlib

import numpy as np
import pytest

import kaiodsl
import kaiodsl.runtime
from kaiodsl import ops

from opkit import bf16_values, check_close, host, make
from qkvkit import poison_outputs

i4mod = importlib.import_module("kaiodsl.ops.matmul_int4")
tiled = importlib.import_module("kaiodsl.ops.matmul_int4_tiled")
dev = kaiodsl.runtime.to_device


@pytest.fixture
def poison(monkeypatch):
    poison_outputs(monkeypatch, i4mod)


def _q(rng, N, K):
    return rng.integers(0, 16, (N, K), dtype=np.uint8)


CASES = [(17, 40, 128, 32), (40, 24, 256, 64), (70, 136, 256, 128), (130, 8, 384, 128)]


@pytest.mark.parametrize("with_zeros", [False, True], ids=["sym", "zp"])
@pytest.mark.parametrize("M,N,K,gs", CASES, ids=[f"{m}x{n}x{k}-g{g}" for m, n, k, g in CASES])
def test_int4_large_m_f16(backend, rng, poison, M, N, K, gs, with_zeros):
    q = _q(rng, N, K)
    scales = (rng.uniform(0.5, 1.5, (N, K // gs)) * 1e-1).astype(np.float16)
    zeros = rng.integers(0, 16, (N, K // gs), dtype=np.uint8) if with_zeros else None
    a = rng.standard_normal((M, K)).astype(np.float16)
    out = ops.matmul_int4(a, ops.pack_int4(q), scales, zeros=zeros, group_size=gs)
    check_close(out, ops.reference_matmul_int4(a, q, scales, zeros, gs), "f16")


@pytest.mark.parametrize("with_zeros", [False, True], ids=["sym", "zp"])
def test_int4_large_m_bf16(backend, rng, poison, with_zeros):
    M, N, K, gs = 33, 24, 256, 64
    q = _q(rng, N, K)
    sv = bf16_values(rng.uniform(0.5, 1.5, (N, K // gs)) * 1e-1)
    zeros = rng.integers(0, 16, (N, K // gs), dtype=np.uint8) if with_zeros else None
    a, av = make(rng.standard_normal((M, K)), "bf16")
    out = ops.matmul_int4(a, dev(ops.pack_int4(q)), dev(sv, kaiodsl.bf16),
                          zeros=None if zeros is None else dev(zeros), group_size=gs)
    check_close(out, ops.reference_matmul_int4(av, q, sv, zeros, gs), "bf16")


CONFIGS = [tiled.Int4Config(16, 1, 1, 2), tiled.Int4Config(32, 2, 2, 3), tiled.Int4Config(48, 2, 3, 4)]


@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
def test_int4_tiled_configs(backend, rng, cfg):
    """Every tiling computes the same product (edges in M and N inside and past a block)."""
    M, N, K, gs = 37, 56, 384, 128
    q = _q(rng, N, K)
    scales = (rng.uniform(0.5, 1.5, (N, K // gs)) * 1e-1).astype(np.float16)
    zeros = rng.integers(0, 16, (N, K // gs), dtype=np.uint8)
    a = rng.standard_normal((M, K)).astype(np.float16)
    out = np.full((M, N), np.nan, np.float16)
    tiled.launch_int4_tiled(a, ops.pack_int4(q), scales, zeros, out, M, N, K, "f16", gs, True, "i32", cfg)
    check_close(out, ops.reference_matmul_int4(a, q, scales, zeros, gs), "f16")


def test_int4_large_m_dequant_is_exact(backend, rng, poison):
    """a = rows of the identity: out[m, n] = W[n, m] = (q - zero) * scale rounded once to f16, bit for bit."""
    M, N, K, gs = 24, 16, 128, 32
    q = _q(rng, N, K)
    scales = rng.uniform(0.5, 1.5, (N, K // gs)).astype(np.float16)
    zeros = rng.integers(0, 16, (N, K // gs), dtype=np.uint8)
    out = host(ops.matmul_int4(np.eye(M, K, dtype=np.float16), ops.pack_int4(q), scales, zeros=zeros,
                               group_size=gs))
    want = ops.dequantize(q, scales, zeros, gs, np.float16).T[:M]
    assert np.array_equal(out, want)


def test_int4_decode_and_tiled_agree(backend, rng):
    """M = 16 (decode kernel) and M = 17 (tiled) on the same rows give the same first 16 rows (up to the
    f32 summation order)."""
    N, K, gs = 24, 256, 64
    q = _q(rng, N, K)
    scales = (rng.uniform(0.5, 1.5, (N, K // gs)) * 1e-1).astype(np.float16)
    a = rng.standard_normal((17, K)).astype(np.float16)
    w = ops.pack_int4(q)
    dec = host(ops.matmul_int4(a[:16], w, scales, group_size=gs)).astype(np.float64)
    til = host(ops.matmul_int4(a, w, scales, group_size=gs)).astype(np.float64)[:16]
    assert np.abs(dec - til).max() <= 2e-3 * np.abs(dec).max()


@pytest.mark.gpu
@pytest.mark.parametrize("M", [1, 4, 16, 64, 256, 2048, 8192])
def test_int4_llama_shapes_gpu(torch_cuda, M):  # noqa: F811
    torch = torch_cuda
    N, K, gs = 4096, 4096, 128
    rng = np.random.default_rng(M)
    q = _q(rng, N, K)
    scales = torch.tensor((rng.uniform(0.5, 1.5, (N, K // gs)) * 1e-2).astype(np.float16), device="cuda")
    zeros = torch.tensor(rng.integers(0, 16, (N, K // gs), dtype=np.uint8), device="cuda")
    w = torch.tensor(ops.pack_int4(q), device="cuda")
    a = torch.randn(M, K, device="cuda", dtype=torch.float16)
    out = ops.matmul_int4(a, w, scales, zeros=zeros, group_size=gs)
    ref = ops.reference_matmul_int4(a.cpu().numpy(), q, scales.cpu().numpy(), zeros.cpu().numpy(), gs)
    check_close(out, ref, "f16")
    assert torch.equal(out, ops.matmul_int4(a, w, scales, zeros=zeros, group_size=gs))   # deterministic
