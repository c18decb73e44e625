"""The Hopper GEMM (ops/gemm_sm90.py): persistent, warp-specialised TMA + wgmma, through ops.matmul.

Both backends compile for sm_90a. The simulator runs small tilings whose persistent blocks walk
several tiles each (its sm_count is 3) through a ring that wraps many times; the GPU runs the
default tilings at ragged, square and LLM shapes against float64, plus a determinism run."""

import numpy as np
import pytest

import kaiodsl
import kaiodsl.ops as ops
from kaiodsl.ops.gemm_sm90 import Sm90Config, sm90_config

from opkit import TOL, host, make, rel_err

SMALL = Sm90Config(block_m=128, block_n=64, stages=2, consumers=2)
ONE_WG = Sm90Config(block_m=64, block_n=32, stages=3, consumers=1)
TALL = Sm90Config(block_m=256, block_n=64, stages=2, consumers=2)     # two m64 blocks per consumer
PAIR = Sm90Config(block_m=128, block_n=64, stages=2, consumers=2, cluster=2)   # B halves multicast in a pair


def _run(rng, M, N, K, dtype="f16", out_dtype="f32", bias=False, config=None):
    a, a64 = make(rng.standard_normal((M, K)), dtype)
    b, b64 = make(rng.standard_normal((N, K)), dtype)
    bv = rng.standard_normal(N).astype(np.float32) if bias else None
    if bias and not isinstance(a, np.ndarray):
        bv = kaiodsl.runtime.to_device(bv)
    kw = {} if config is None else {"config": config}
    out = ops.matmul(a, b, b_layout="nk", out_dtype=out_dtype, bias=bv, **kw)
    want = a64 @ b64.T + (host(bv).astype(np.float64) if bias else 0.0)
    return host(out), want


@pytest.mark.parametrize("M,N,K,config", [(200, 136, 200, SMALL), (64, 40, 72, ONE_WG), (300, 70, 136, TALL),
                                          (1, 8, 8, SMALL), (300, 136, 200, PAIR), (100, 64, 64, PAIR)])
def test_sm90_exact_small_integers(sm90, rng, M, N, K, config):
    """Small integers: every product and sum is exact in f32, so the result must equal float64."""
    a = rng.integers(-3, 4, (M, K)).astype(np.float16)
    b = rng.integers(-3, 4, (N, K)).astype(np.float16)
    out = host(ops.matmul(a, b, b_layout="nk", out_dtype="f32", config=config))
    np.testing.assert_array_equal(out, a.astype(np.float64) @ b.astype(np.float64).T)


@pytest.mark.parametrize("dtype,out_dtype,bias", [("f16", "f16", True), ("bf16", "bf16", False),
                                                  ("bf16", "f32", True)])
def test_sm90_dtypes_and_bias(sm90, rng, dtype, out_dtype, bias):
    got, want = _run(rng, 130, 72, 264, dtype, out_dtype, bias, SMALL)
    assert rel_err(got, want) < TOL[out_dtype] + (1e-2 if dtype == "bf16" else 1e-3)


def test_sm90_chosen_by_default_on_sm90(sm90, rng):
    """ops.matmul's heuristic takes the sm_90a kernel for b [N, K] past the decode sizes, and says so."""
    choice = ops.matmul_choice(512, 512, 512, "f16", "nk")
    assert isinstance(choice.config, Sm90Config) and "sm_90a" in choice.source
    assert not isinstance(ops.matmul_choice(16, 512, 512, "f16", "nk").config, Sm90Config)
    assert not isinstance(ops.matmul_choice(512, 512, 512, "f16", "kn").config, Sm90Config)


def test_sm90_config_errors(sm90):
    a = np.ones((128, 64), np.float16)
    with pytest.raises(kaiodsl.ArgumentError, match="multiple of 64"):
        ops.matmul(a, a, b_layout="nk", config=Sm90Config(block_m=96, consumers=2))
    with pytest.raises(kaiodsl.ArgumentError, match="b_layout='nk'"):
        ops.matmul(a, a.T.copy(), b_layout="kn", config=Sm90Config())
    with pytest.raises(kaiodsl.ArgumentError, match="must be a positive int"):
        Sm90Config(stages=0)


def test_sm90_refused_off_sm90(backend, monkeypatch):
    monkeypatch.setenv("KAIODSL_ARCH", "sm_80")
    a = np.ones((128, 64), np.float16)
    with pytest.raises(kaiodsl.ArgumentError, match="sm_90a kernel"):
        ops.matmul(a, a, b_layout="nk", config=Sm90Config())


# -- the GPU: default tilings, ragged and LLM shapes, determinism ----------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("M,N,K", [(1000, 1500, 1000), (4096, 4096, 4096), (2048, 14336, 4096), (8192, 4096, 14336),
                                   (257, 6144, 4096), (3000, 128256 // 4, 1024)])
@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_sm90_gpu_shapes(sm90, torch_cuda, M, N, K, dtype):
    torch = torch_cuda
    if sm90.name != "cuda":
        pytest.skip("large shapes run on the GPU only")
    td = {"f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    a = torch.randn(M, K, device="cuda", dtype=td)
    b = torch.randn(N, K, device="cuda", dtype=td)
    bias = torch.randn(N, device="cuda", dtype=torch.float32)
    for cfg in (None, Sm90Config(), Sm90Config(block_n=128, stages=6), Sm90Config(cluster=2)):
        out = ops.matmul(a, b, b_layout="nk", out_dtype="f32", bias=bias, config=cfg or "auto")
        want = a.double() @ b.double().T + bias.double()
        err = float((out.double() - want).norm() / want.norm())
        assert err < 3e-5, (cfg, err)       # f32 accumulation over K up to 14336
    again = ops.matmul(a, b, b_layout="nk", bias=bias)
    assert torch.equal(again, ops.matmul(a, b, b_layout="nk", bias=bias))      # deterministic


def test_sm90_heuristic_fills_the_gpu():
    assert sm90_config(4096, 4096, 4096, 132).block_n == 256
    assert sm90_config(1024, 1024, 4096, 132).block_n == 128


def test_sm90_kernel_is_inspectable():
    """Registers, spills and PTX of the kernel ops.matmul runs, one call away."""
    a = np.ones((256, 64), np.float16)
    k = ops.matmul_kernel_for(a, a, "nk", Sm90Config(), bias=True)
    assert "wgmma.mma_async" in k.ptx and "cp.async.bulk.tensor" in k.ptx and "setmaxnreg" in k.ptx
    stats = k.stats()
    assert stats["spills"] == 0 and stats["local_bytes"] == 0 and stats["registers"] <= 168, stats
