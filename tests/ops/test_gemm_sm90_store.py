"""The Hopper GEMM's two epilogue paths and split-K (ops/gemm_sm90.py, tiles/tma_epilogue.py,
ops/gemm_sm90_splitk.py), through ops.matmul, matmul_int8 / matmul_w8a8 and matmul_fp8.

Outputs (and split-K's workspace) start poisoned (NaN / 0xFF..). The simulator runs ragged shapes
(M = 200, N = 136: partial tiles on both edges, clipped by TMA) with small-integer inputs, whose
products and sums are exact in f32, so f32 outputs must equal float64; rounded outputs are checked
against float64 by relative norm and against the direct path bit for bit (the same ops, the same
rounding). The GPU runs the default tilings at large and LLM shapes."""

import importlib
from dataclasses import replace

import numpy as np
import pytest

import kaiodsl
import kaiodsl.runtime
from kaiodsl import ops
from kaiodsl.ops import gemm_sm90
from kaiodsl.ops.gemm_sm90 import Sm90Config, sm90_config

from opkit import TOL, host, make, rel_err
from qkvkit import poison_outputs

T128 = dict(block_m=128, block_n=128, stages=2)
T256 = dict(block_m=128, block_n=256, stages=2)


@pytest.fixture
def poison(monkeypatch):
    for name in ("matmul", "matmul_int8", "gemm_sm90"):
        poison_outputs(monkeypatch, importlib.import_module(f"kaiodsl.ops.{name}"))


def _small(rng, shape, dtype):
    return make(rng.integers(-3, 4, shape).astype(np.float32), dtype)


def _matmul(a, b, out_dtype, bias, **cfg):
    if bias is not None and not isinstance(a, np.ndarray):          # bf16 operands are DeviceArrays
        bias = kaiodsl.runtime.to_device(bias)
    return host(ops.matmul(a, b, b_layout="nk", out_dtype=out_dtype, bias=bias, config=Sm90Config(**cfg)))


@pytest.mark.parametrize("tile,consumers", [(T128, 1), (T128, 2), (T256, 2)])
@pytest.mark.parametrize("dtype,out_dtype", [("f16", "f16"), ("bf16", "bf16"), ("f16", "f32")])
def test_tma_store_ragged(sm90, rng, poison, tile, consumers, dtype, out_dtype):
    M, N, K = 200, 136, 320
    a, a64 = _small(rng, (M, K), dtype)
    b, b64 = _small(rng, (N, K), dtype)
    bias = rng.integers(-4, 5, N).astype(np.float32)
    want = a64 @ b64.T + bias
    got = _matmul(a, b, out_dtype, bias, consumers=consumers, store="tma", **tile)
    if out_dtype == "f32":
        np.testing.assert_array_equal(got, want)
    else:
        assert rel_err(got, want) < TOL[out_dtype]
    np.testing.assert_array_equal(got, _matmul(a, b, out_dtype, bias, consumers=consumers, store="direct", **tile))


def test_tma_store_two_row_blocks_per_consumer(sm90, rng, poison):
    """256-row tiles: each consumer stores two m64 row blocks, the buffers alternating across them."""
    M, N, K = 300, 72, 136
    a, a64 = _small(rng, (M, K), "f16")
    b, b64 = _small(rng, (N, K), "f16")
    got = _matmul(a, b, "f32", None, block_m=256, block_n=72, stages=2, store="tma")
    np.testing.assert_array_equal(got, a64 @ b64.T)


def test_store_auto_falls_back_to_direct(sm90, rng, poison):
    """Rows of N * 2 bytes off 16-byte boundaries are no TMA target: 'auto' stores directly, 'tma' refuses."""
    M, N, K = 130, 68, 64
    a, a64 = _small(rng, (M, K), "f16")
    b, b64 = _small(rng, (N, K), "f16")
    got = _matmul(a, b, "f16", None, **T128)
    np.testing.assert_array_equal(got, (a64 @ b64.T).astype(np.float16))
    with pytest.raises(kaiodsl.ArgumentError, match="store='tma'.*not a TMA store target"):
        ops.matmul(a, b, b_layout="nk", out_dtype="f16", config=Sm90Config(store="tma", **T128))


def test_store_config_checks():
    with pytest.raises(kaiodsl.ArgumentError, match="store must be one of"):
        Sm90Config(store="smem")
    ring = Sm90Config(store="direct").smem_bytes()
    assert Sm90Config().smem_bytes() == Sm90Config(store="tma").smem_bytes() == ring + 2 * gemm_sm90.STAGING
    Sm90Config().check(2)                             # 128 x 256, 4 stages: 192 KB + 32 KB of staging fit
    big = Sm90Config(block_n=192, stages=5, store="tma")   # a 200 KB ring: no room for the staging buffers
    with pytest.raises(kaiodsl.ArgumentError, match="TMA-store staging.*store='auto' / 'direct'"):
        big.check(2)
    auto = Sm90Config(block_n=192, stages=5)          # "auto" stores directly there
    assert not auto.staged and auto.smem_bytes() == auto.ring_bytes()
    auto.check(2)


def test_int8_tma_store_exact(sm90, rng, monkeypatch):
    poison_outputs(monkeypatch, importlib.import_module("kaiodsl.ops.matmul_int8"))
    M, N, K = 200, 136, 320
    a = rng.integers(-128, 128, (M, K), dtype=np.int8)
    b = rng.integers(-128, 128, (N, K), dtype=np.int8)
    cfg = Sm90Config(block_m=128, block_n=128, stages=2, consumers=1, store="tma")
    want = ops.reference_matmul_int8(a, b).astype(np.float32)
    np.testing.assert_array_equal(ops.matmul_int8(a, b, 0.5, config=cfg), want * np.float32(0.5))


def test_w8a8_scales_and_bias_tma_equals_direct(sm90, rng, monkeypatch):
    """Row and column scales and a bias into f16: the staged path rounds exactly as the direct one."""
    poison_outputs(monkeypatch, importlib.import_module("kaiodsl.ops.matmul_int8"))
    M, N, K = 200, 136, 128
    a = rng.integers(-128, 128, (M, K), dtype=np.int8)
    w = rng.integers(-128, 128, (N, K), dtype=np.int8)
    sa = rng.uniform(0.001, 0.01, M).astype(np.float32)
    sw = rng.uniform(0.001, 0.01, N).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32)
    outs = [host(ops.matmul_w8a8(a, w, sa, sw, bias=bias, out_dtype="f16",
                                 config=Sm90Config(block_m=128, block_n=128, stages=2, store=s)))
            for s in ("tma", "direct")]
    np.testing.assert_array_equal(outs[0], outs[1])
    want = ops.reference_matmul_w8a8(a, w, sa, sw, bias)
    assert rel_err(outs[0], want) < TOL["f16"]


# -- split-K --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("split,store,out_dtype", [(2, "tma", "f32"), (3, "direct", "f16"), (4, "tma", "bf16")])
def test_split_k(sm90, rng, poison, split, store, out_dtype):
    """Each split's partial tile is written whole (the workspace starts as NaN), summed in a fixed
    order: small integers give float64's result exactly, and a second run the same bits."""
    M, N, K = 200, 136, 320          # 5 k tiles of 64: splits of 3, 2 (or 2, 2, 1; 2, 2, 1 -> 3 splits for 4)
    dtype = "bf16" if out_dtype == "bf16" else "f16"
    a, a64 = _small(rng, (M, K), dtype)
    b, b64 = _small(rng, (N, K), dtype)
    bias = rng.integers(-4, 5, N).astype(np.float32)
    want = a64 @ b64.T + bias
    cfg = dict(block_m=128, block_n=64, stages=2, split_k=split, store=store)
    got = _matmul(a, b, out_dtype, bias, **cfg)
    if out_dtype == "f32":
        np.testing.assert_array_equal(got, want)
    else:
        assert rel_err(got, want) < TOL[out_dtype]
        np.testing.assert_array_equal(got, _matmul(a, b, out_dtype, bias, block_m=128, block_n=64, stages=2))
    np.testing.assert_array_equal(got, _matmul(a, b, out_dtype, bias, **cfg))


def test_split_k_cluster_pairs(sm90, rng, poison):
    """Split-K with cluster pairs: the partial rows of a pair's second tile stay inside the workspace."""
    M, N, K = 200, 72, 320
    a, a64 = _small(rng, (M, K), "f16")
    b, b64 = _small(rng, (N, K), "f16")
    got = _matmul(a, b, "f32", None, block_m=128, block_n=64, stages=2, cluster=2, split_k=2)
    np.testing.assert_array_equal(got, a64 @ b64.T)


def test_tma_store_kernel_inspectable():
    """The staged epilogue's kernel: stmatrix, TMA stores, no spills."""
    a = np.ones((256, 64), np.float16)
    k = ops.matmul_kernel_for(a, a, "nk", Sm90Config(store="tma"), out_dtype="bf16", bias=True)
    assert "stmatrix.sync.aligned.m8n8.x4" in k.ptx and "cp.async.bulk.tensor.2d.global.shared" in k.ptx
    assert "cp.async.bulk.wait_group.read" in k.ptx and "fence.proxy.async" in k.ptx
    stats = k.stats()
    assert stats["spills"] == 0 and stats["local_bytes"] == 0, stats


def test_split_k_random_is_deterministic(sm90, rng, poison):
    M, N, K = 130, 72, 512
    a, a64 = make(rng.standard_normal((M, K)), "f16")
    b, b64 = make(rng.standard_normal((N, K)), "f16")
    cfg = dict(block_m=128, block_n=64, stages=2, split_k=4)
    first = _matmul(a, b, "f32", None, **cfg)
    assert rel_err(first, a64 @ b64.T) < TOL["f32"]
    assert first.tobytes() == _matmul(a, b, "f32", None, **cfg).tobytes()


def test_split_k_fp8_scales(sm90, rng):
    """matmul_fp8's per-tensor scales (a device scalar) and bias go to the reduction's epilogue."""
    M, N, K = 130, 64, 512
    codes = np.arange(256, dtype=np.uint8)
    v = ops.fp8_values(codes, "e4m3")
    ok = codes[(np.abs(v) <= 4) & (v == np.round(v))]
    a, b = rng.choice(ok, (M, K)), rng.choice(ok, (N, K))
    dev = lambda x: kaiodsl.runtime.to_device(x, kaiodsl.e4m3)       # noqa: E731
    sa = kaiodsl.runtime.to_device(np.array([0.5], np.float32))
    bias = rng.integers(-4, 5, N).astype(np.float32)
    cfg = Sm90Config(block_m=128, block_n=64, stages=2, split_k=4)
    got = host(ops.matmul_fp8(dev(a), dev(b), sa, 0.25, out_dtype="f32", bias=kaiodsl.runtime.to_device(bias),
                              config=cfg))
    want = ops.fp8_values(a, "e4m3").astype(np.float64) @ ops.fp8_values(b, "e4m3").astype(np.float64).T
    np.testing.assert_array_equal(got, want * 0.125 + bias)


def test_split_k_refused_for_int8(sm90):
    a = np.ones((128, 64), np.int8)
    with pytest.raises(kaiodsl.ArgumentError, match="split_k=2.*s32"):
        ops.matmul_int8(a, a, config=Sm90Config(split_k=2))


def test_split_k_heuristic(sm90, monkeypatch):
    """Few 128 x 128 tiles (at most half the SMs busy) with K >= 4096 split K; int8 never does."""
    assert sm90_config(128, 4096, 4096, 132).split_k == 4
    assert sm90_config(256, 4096, 14336, 132).split_k == 2
    assert sm90_config(128, 1024, 8192, 132).split_k == 8
    assert sm90_config(512, 4096, 4096, 132).split_k == 1      # 128 tiles: enough
    assert sm90_config(128, 4096, 2048, 132).split_k == 1      # short K
    assert sm90_config(128, 4096, 4096, 132, "s32").split_k == 1
    monkeypatch.setattr(gemm_sm90, "sm_count", lambda: 132)
    choice = ops.matmul_choice(128, 4096, 4096, "f16", "nk")
    assert choice.config.split_k == 4 and "split-K 4" in choice.source and "/k4" in str(choice.config)


# -- the GPU ----------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("M,N,K", [(1000, 1500, 1000), (4096, 4096, 4096), (2048, 14336, 4096), (257, 6144, 4096)])
@pytest.mark.parametrize("out_dtype", ["f16", "bf16", "f32"])
def test_tma_store_gpu(sm90, torch_cuda, M, N, K, out_dtype):
    """TMA and direct stores give the same bits; both near float64."""
    torch = torch_cuda
    if sm90.name != "cuda":
        pytest.skip("large shapes run on the GPU only")
    td = torch.bfloat16 if out_dtype == "bf16" else torch.float16
    a = torch.randn(M, K, device="cuda", dtype=td)
    b = torch.randn(N, K, device="cuda", dtype=td)
    bias = torch.randn(N, device="cuda", dtype=torch.float32)
    want = a.double() @ b.double().T + bias.double()
    # rows off 16-byte boundaries (N = 1500 in f16) are no TMA target: there "auto" must store directly
    first = "tma" if N * {"f32": 4}.get(out_dtype, 2) % 16 == 0 else "auto"
    for base in (Sm90Config(), Sm90Config(block_n=128, stages=6), Sm90Config(consumers=1, block_m=128, block_n=128),
                 Sm90Config(cluster=2)):
        outs = [ops.matmul(a, b, b_layout="nk", out_dtype=out_dtype, bias=bias, config=replace(base, store=s))
                for s in (first, "direct")]
        assert torch.equal(outs[0], outs[1]), base
        err = float((outs[0].double() - want).norm() / want.norm())
        assert err < TOL[out_dtype] + 3e-5, (base, err)


@pytest.mark.gpu
@pytest.mark.parametrize("M,N,K", [(128, 4096, 4096), (256, 4096, 14336), (200, 4096, 8192), (128, 1000, 14336)])
def test_split_k_gpu(sm90, torch_cuda, M, N, K):
    """The heuristic's split-K (and explicit splits) near float64, the same bits run after run."""
    torch = torch_cuda
    if sm90.name != "cuda":
        pytest.skip("large shapes run on the GPU only")
    a = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(N, K, device="cuda", dtype=torch.bfloat16)
    bias = torch.randn(N, device="cuda", dtype=torch.float32)
    want = a.double() @ b.double().T + bias.double()
    auto = sm90_config(M, N, K, gemm_sm90.sm_count())
    for cfg in (auto, Sm90Config(block_n=128, stages=6, split_k=3), Sm90Config(block_n=128, stages=6, split_k=8,
                                                                                store="direct")):
        out = ops.matmul(a, b, b_layout="nk", out_dtype="f32", bias=bias, config=cfg)
        err = float((out.double() - want).norm() / want.norm())
        assert err < 3e-5, (cfg, err)
        assert torch.equal(out, ops.matmul(a, b, b_layout="nk", out_dtype="f32", bias=bias, config=cfg)), cfg
