"""W8A16 on sm_90a (ops/gemm_sm90_w4.py, int8 kind): TMA for A and for the int8 weight rows (a staging
ring in shared memory), dequantized by the producer warpgroup into the swizzled shared B tile, wgmma,
through ops.matmul_w8a16.

The simulator runs small tilings whose persistent blocks walk several tiles (its sm_count is 3) with
wrapping rings (the staging ring across tiles): ragged M, N and K (K a multiple of 16, not of the
64-k stage), per-channel and grouped scales, bias and output dtypes, f16 and bf16, determinism,
against float64 with the reference-dequantized weights."""

import importlib

import numpy as np
import pytest

import kaiodsl
import kaiodsl.runtime
from kaiodsl import ops
from kaiodsl.ops.gemm_sm90_w4 import W4Config, use_sm90_w8, w8_sm90_kernel

from opkit import bf16_values, check_close, make
from qkvkit import poison_outputs

dev = kaiodsl.runtime.to_device
SMALL = W4Config(block_m=128, block_n=64, stages=2, consumers=2)
ONE_WG = W4Config(block_m=64, block_n=32, stages=3, consumers=1)
WIDE = W4Config(block_m=64, block_n=256, stages=2, consumers=1)      # 8 pieces a producer thread
DEEP = W4Config(block_m=64, block_n=96, stages=2, consumers=1, staging=3)    # 2 chunks ahead, 3 pieces a thread
WARPS = W4Config(block_m=64, block_n=64, stages=4, consumers=1, staging=8, warp_stages=True)   # a warp a stage


@pytest.fixture
def sm90(sm90, monkeypatch):
    """tests/conftest.py's sm90, with the op's outputs starting as NaN."""
    poison_outputs(monkeypatch, importlib.import_module("kaiodsl.ops.matmul_w8a16"))
    return sm90


def _inputs(rng, M, N, K, dt, gs):
    """(a, its values, int8 w, scales, their values): bf16 operands are all device arrays."""
    a, av = make(rng.standard_normal((M, K)), dt)
    q = rng.integers(-128, 128, (N, K), dtype=np.int8)
    s = rng.uniform(0.5, 1.5, (N,) if gs is None else (N, K // gs)) * 1e-2
    if gs is None:
        sa = sv = s.astype(np.float32)
    elif dt == "f16":
        sa = sv = s.astype(np.float16)
    else:
        sv = bf16_values(s)
        sa = dev(sv, kaiodsl.bf16)
    if dt == "bf16":
        return a, av, q, dev(q), (dev(sa) if isinstance(sa, np.ndarray) else sa), sv
    return a, av, q, q, sa, sv


@pytest.mark.parametrize("M,N,K,gs,config", [(200, 136, 208, None, SMALL), (130, 72, 256, 64, ONE_WG),
                                             (150, 40, 384, 128, SMALL), (65, 96, 256, 256, ONE_WG),
                                             (100, 64, 80, None, ONE_WG), (70, 264, 192, 64, WIDE),
                                             (300, 136, 128, None, ops.gemm_sm90_w4.TALL),
                                             (130, 72, 256, 64, WARPS)])
@pytest.mark.parametrize("dt", ["f16", "bf16"])
def test_w8_sm90(sm90, rng, M, N, K, gs, config, dt):
    a, av, qh, q, sa, sv = _inputs(rng, M, N, K, dt, gs)
    out = ops.matmul_w8a16(a, q, sa, group_size=gs, config=config)
    check_close(out, ops.reference_matmul_w8a16(av, qh, sv, group_size=gs, bf16=dt == "bf16"), dt)


@pytest.mark.parametrize("M,N,K,gs,config", [(130, 200, 1040, None, DEEP), (70, 136, 1024, 128, SMALL),
                                             (100, 104, 784, None, ONE_WG), (130, 200, 1040, None, WARPS),
                                             (70, 136, 1024, 128, WARPS)])
def test_w8_sm90_staging_wrap(sm90, rng, M, N, K, gs, config):
    """Long, ragged K (past the last full 64-k chunk TMA zero-fills) through small rings: the staging ring
    wraps within a tile and runs on across a persistent block's tiles."""
    a, av, qh, q, sa, sv = _inputs(rng, M, N, K, "f16", gs)
    out = ops.matmul_w8a16(a, q, sa, group_size=gs, config=config)
    check_close(out, ops.reference_matmul_w8a16(av, qh, sv, group_size=gs), "f16")


def test_w8_sm90_deterministic(sm90, rng):
    M, N, K = 150, 104, 336
    a, av, qh, q, sa, sv = _inputs(rng, M, N, K, "f16", None)
    runs = [np.asarray(ops.matmul_w8a16(a, q, sa, config=DEEP)) for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.parametrize("out_dtype", ["f32", "f16", "bf16"])
def test_w8_sm90_bias_out_dtype(sm90, rng, out_dtype):
    M, N, K = 90, 40, 128
    a, av, qh, q, sa, sv = _inputs(rng, M, N, K, "f16", None)
    bias = rng.standard_normal(N).astype(np.float32)
    out = ops.matmul_w8a16(a, q, sa, bias=bias, out_dtype=out_dtype, config=ONE_WG)
    check_close(out, ops.reference_matmul_w8a16(av, qh, sv, bias), out_dtype)


def test_w8_sm90_default_dispatch(sm90, rng):
    """matmul_w8a16 takes an sm_90a kernel by itself for M > 16 on sm_90a (default tiling: the swap-AB
    kernel's)."""
    N, K = 256, 128
    assert not use_sm90_w8(16, N, K)
    for M in (17, 72):
        assert use_sm90_w8(M, N, K)
        a, av, qh, q, sa, sv = _inputs(rng, M, N, K, "f16", 64)
        check_close(ops.matmul_w8a16(a, q, sa, group_size=64),
                    ops.reference_matmul_w8a16(av, qh, sv, group_size=64), "f16")


def test_w8_sm90_refused_off_sm90(backend, monkeypatch):
    monkeypatch.setenv("KAIODSL_ARCH", "sm_80")
    assert not use_sm90_w8(2048, 4096, 4096)
    with pytest.raises(kaiodsl.ArgumentError, match="sm_90a kernel"):
        ops.matmul_w8a16(np.ones((128, 64), np.float16), np.ones((64, 64), np.int8), np.ones(64, np.float32),
                         config=SMALL)


NO_SPILL = [(cfg, dt, gs, bias) for cfg in (W4Config(), W4Config(block_n=128, stages=6, staging=4),
                                            ops.gemm_sm90_w4.TALL_WS)
            for dt in ("f16", "bf16") for gs, bias in ((0, True), (0, False), (64, False), (128, True))]


@pytest.mark.parametrize("cfg,dt,gs,bias", NO_SPILL, ids=lambda v: str(v).replace("/", "_"))
def test_w8_sm90_compiles_without_spills(cfg, dt, gs, bias):
    """The default tilings, per-channel and grouped, f16 and bf16, assemble for sm_90a (nvJitLink) without
    spills in the launch's 168 registers."""
    k = w8_sm90_kernel(dt, dt, gs, bias, cfg).compile(arch="sm_90a")
    assert "wgmma.mma_async" in k.ptx and "cp.async.bulk.tensor.2d" in k.ptx and "fence.proxy.async" in k.ptx
    stats = k.stats()
    assert stats["spills"] == 0 and stats["local_bytes"] == 0 and stats["registers"] <= 168, stats


@pytest.mark.gpu
@pytest.mark.parametrize("M,N,K", [(2048, 4096, 4096), (2048, 14336, 4096)])
@pytest.mark.parametrize("gs", [None, 128])
def test_w8_sm90_gpu_shapes(sm90, torch_cuda, rng, M, N, K, gs):
    torch = torch_cuda
    if sm90.name != "cuda":
        pytest.skip("large shapes run on the GPU only")
    q = torch.randint(-128, 128, (N, K), device="cuda", dtype=torch.int8)
    s = (torch.rand(N if gs is None else (N, K // gs), device="cuda") * 0.01 + 0.005)
    s = s if gs is None else s.half()
    a = torch.randn(M, K, device="cuda", dtype=torch.float16)
    for cfg in (None, W4Config(), W4Config(block_n=128, stages=6, staging=4), W4Config(stages=3, staging=4)):
        out = ops.matmul_w8a16(a, q, s, group_size=gs, config=cfg)
        w = q.double() * (s.double()[:, None] if gs is None else s.double().repeat_interleave(gs, 1))
        if gs is not None:
            w = w.half().double()          # grouped: the weight is rounded once to f16, as the kernel does
        want = a.double() @ w.T
        err = float((out.double() - want).norm() / want.norm())
        assert err < 2e-3, (cfg, err)
