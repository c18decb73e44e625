"""W8A16 on sm_90a with the int8 weights as wgmma's register operand (ops/gemm_sm90_w4_swap.py, 64-k
slots, the weights' TMA box 64B-swizzled), through ops.matmul_w8a16 with a W4SwapConfig (and by
default past the decode sizes).

The simulator runs small tilings (persistent blocks over several tiles, rings wrapping) with ragged
M, N and K (K a multiple of 16: the last slot zero-filled), per-channel and group scales, bias, f16 /
bf16 / f32 outputs, against float64; the GPU runs the default tilings at LLM shapes, twice each (bit-equal:
the kernel once raced on its A-fragment registers there, benchmarks/results/logs/
swap_fragment_race_2026-12-04.log)."""

import dataclasses
import importlib

import numpy as np
import pytest

import kaiodsl
from kaiodsl import ops
from kaiodsl.ops.gemm_sm90_w4 import w8_sm90_kernel
from kaiodsl.ops.gemm_sm90_w4_swap import DEFAULT8, NARROW8, W4SwapConfig, swap_config

from opkit import TOL, host, make, rel_err
from qkvkit import poison_outputs


@pytest.fixture
def sm90(sm90, monkeypatch):
    poison_outputs(monkeypatch, importlib.import_module("kaiodsl.ops.matmul_w8a16"))
    return sm90


def _case(rng, M, N, K, gs, dtype, bias):
    q = rng.integers(-128, 128, (N, K)).astype(np.int8)
    a, a64 = make(rng.standard_normal((M, K)), dtype)
    if gs:
        s, s64 = make(rng.uniform(0.5, 1.5, (N, K // gs)) * 1e-2, dtype)
        w = q * np.repeat(s64, gs, axis=1)
    else:
        s = (rng.uniform(0.5, 1.5, N) * 1e-2).astype(np.float32)
        w = q * s.astype(np.float64)[:, None]
    b = rng.standard_normal(N).astype(np.float32) if bias else None
    return a, q, s, b, a64 @ w.T + (b if bias else 0)


@pytest.mark.parametrize("M,N,K,gs,bias,out,config", [
    (40, 72, 256, None, False, None, W4SwapConfig(block_m=32, block_n=64, stages=2)),
    (70, 136, 208, None, True, "f32", W4SwapConfig(block_m=48, block_n=128, stages=3)),
    (130, 200, 512, 128, False, None, W4SwapConfig(block_m=64, block_n=128, stages=4)),
    (300, 136, 256, 64, True, None, DEFAULT8),
    (100, 72, 256, 256, False, None, W4SwapConfig(block_m=16, block_n=192, stages=3)),
    (40, 136, 208, None, True, None, W4SwapConfig(block_m=32, block_n=128, stages=3, overlap=True)),
    (70, 72, 320, 64, False, None, W4SwapConfig(block_m=64, block_n=64, stages=2, overlap=True))])
def test_w8_swap_ragged(sm90, rng, M, N, K, gs, bias, out, config):
    a, q, s, b, want = _case(rng, M, N, K, gs, "f16", bias)
    got = host(ops.matmul_w8a16(a, q, s, group_size=gs, bias=b, out_dtype=out, config=config))
    assert got.shape == (M, N) and np.isfinite(got).all()
    assert rel_err(got, want) < TOL[out or "f16"]


@pytest.mark.parametrize("gs", [None, 128])
def test_w8_swap_bf16(sm90, rng, gs):
    a, q, s, b, want = _case(rng, 140, 104, 256, gs, "bf16", True)
    dev = kaiodsl.runtime.to_device
    got = host(ops.matmul_w8a16(a, dev(q), s if gs else dev(s), group_size=gs, bias=dev(b),
                                config=W4SwapConfig(block_m=64, block_n=64, stages=3)))
    assert np.isfinite(got).all()
    assert rel_err(got, want) < TOL["bf16"]


def test_w8_swap_default_and_deterministic(sm90, rng):
    a, q, s, b, want = _case(rng, 150, 104, 512, None, "f16", False)
    runs = [host(ops.matmul_w8a16(a, q, s)) for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert rel_err(runs[0], want) < TOL["f16"]
    plan = ops.gemm_sm90_w4.sm90_w4_plan("matmul_w8a16", 2048, 4096, 4096, True, None, 16, None)
    assert plan == DEFAULT8 and swap_config(512, 4096, 4096, 132, "int8") == NARROW8


def test_w8_swap_config_refused(sm90):
    a = np.ones((128, 128), np.float16)
    q = np.ones((64, 128), np.int8)
    s = np.ones(64, np.float32)
    with pytest.raises(kaiodsl.ArgumentError, match="shared memory"):
        ops.matmul_w8a16(a, q, s, config=W4SwapConfig(stages=6))        # 6 x 40 KB
    DEFAULT8.check("int8")
    with pytest.raises(kaiodsl.ArgumentError, match="shared memory"):
        DEFAULT8.check("int4")                                          # 5 x 72 KB


@pytest.mark.parametrize("cfg", [DEFAULT8, NARROW8])
@pytest.mark.parametrize("dt,out,gs,bias", [("f16", "f16", 0, False), ("bf16", "bf16", 128, True),
                                            ("f16", "f32", 0, True)])
def test_w8_swap_compiles_without_spills(cfg, dt, out, gs, bias):
    k = w8_sm90_kernel(dt, out, gs, bias, cfg).compile(arch="sm_90a")
    assert "wgmma.mma_async" in k.ptx and "setmaxnreg" in k.ptx
    stats = k.stats()
    assert stats["spills"] == 0 and stats["local_bytes"] == 0 and stats["registers"] <= 168, stats


@pytest.mark.gpu
@pytest.mark.parametrize("M,N,K", [(2048, 4096, 4096), (2048, 14336, 4096), (1000, 1000 // 8 * 8, 1040),
                                   (8192, 4096, 4096)])
@pytest.mark.parametrize("dtype,gs", [("f16", None), ("bf16", 128)])
def test_w8_swap_gpu_shapes(sm90, torch_cuda, rng, M, N, K, dtype, gs):
    torch = torch_cuda
    if sm90.name != "cuda":
        pytest.skip("large shapes run on the GPU only")
    td = {"f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    K = -(-K // gs) * gs if gs else K          # groups need K % gs == 0; per-channel keeps the ragged last slot
    q = torch.randint(-128, 128, (N, K), device="cuda", dtype=torch.int8)
    if gs:
        s = (torch.rand(N, K // gs, device="cuda") * 1e-3 + 1e-4).to(td)
        w = q.double() * s.double().repeat_interleave(gs, 1)
    else:
        s = torch.rand(N, device="cuda") * 1e-3 + 1e-4
        w = q.double() * s.double()[:, None]
    a = torch.randn(M, K, device="cuda", dtype=td)
    want = a.double() @ w.T
    for cfg in (None, DEFAULT8, NARROW8):
        out = ops.matmul_w8a16(a, q, s, group_size=gs, config=cfg)
        err = float(torch.linalg.norm(out.double() - want) / torch.linalg.norm(want))
        assert err < TOL[dtype], (cfg, err)
        again = ops.matmul_w8a16(a, q, s, group_size=gs, config=cfg)
        assert torch.equal(out, again), (cfg, "run to run")


@pytest.mark.gpu
@pytest.mark.parametrize("M", [17, 32, 64, 128, 256])
@pytest.mark.parametrize("N,gs", [(4096, None), (14336, 128)])
def test_w8_swap_gpu_small_m(sm90, torch_cuda, rng, M, N, gs):
    """The tiles swap_config sizes to M (and the same without overlap) at Llama widths, twice each (bit-equal)."""
    torch = torch_cuda
    if sm90.name != "cuda":
        pytest.skip("large shapes run on the GPU only")
    K = 4096
    q = torch.randint(-128, 128, (N, K), device="cuda", dtype=torch.int8)
    if gs:
        s = (torch.rand(N, K // gs, device="cuda") * 1e-3 + 1e-4).half()
        w = q.double() * s.double().repeat_interleave(gs, 1)
    else:
        s = torch.rand(N, device="cuda") * 1e-3 + 1e-4
        w = q.double() * s.double()[:, None]
    a = torch.randn(M, K, device="cuda", dtype=torch.float16)
    want = a.double() @ w.T
    base = swap_config(M, N, K, 132, "int8")
    for cfg in (None, base, dataclasses.replace(base, overlap=False)):
        out = ops.matmul_w8a16(a, q, s, group_size=gs, config=cfg)
        err = float(torch.linalg.norm(out.double() - want) / torch.linalg.norm(want))
        assert err < TOL["f16"], (cfg, err)
        assert torch.equal(out, ops.matmul_w8a16(a, q, s, group_size=gs, config=cfg)), (cfg, "run to run")
