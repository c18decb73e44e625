"""W4A16 on sm_90a with the weights as wgmma's register operand (ops/gemm_sm90_w4_swap.py), through
ops.matmul_int4 with a W4SwapConfig (and by default past the decode sizes).

The simulator (sm_count 3: persistent blocks walk several tiles, rings wrap within and across tiles)
runs small tilings with ragged M and N, group sizes 32/64/128 with and without zero points, f16 and
bf16, 1 to 3 consumer warpgroups, against float64 with the reference-dequantized weights; the GPU runs
the default tilings at LLM shapes in test_int4_sm90.test_w4_sm90_gpu_shapes."""

import dataclasses

import numpy as np
import pytest

import kaiodsl
from kaiodsl import ops
from kaiodsl.ops.gemm_sm90_w4_swap import DEFAULT, NARROW, W4SwapConfig, swap_config, w4_swap_kernel

from opkit import TOL, host, rel_err
from test_int4_sm90 import _inputs, _reference, sm90  # noqa: F401  (sm90: the fixture with poisoned outputs)

ONE = W4SwapConfig(block_m=32, block_n=64, stages=2)        # one consumer, 2 slots
TWO = W4SwapConfig(block_m=64, block_n=128, stages=2)
THREE = W4SwapConfig(block_m=48, block_n=192, stages=3)     # three consumers, an N of 48


def _case(rng, M, N, K, gs, dtype, with_zeros):
    """test_int4_sm90's inputs, the weights packed, and its float64 reference."""
    a, a64, q, sc, s64, zeros = _inputs(rng, M, N, K, gs, dtype, with_zeros)
    return a, ops.pack_int4(q), sc, zeros, _reference(a64, q, s64, zeros, gs)


@pytest.mark.parametrize("M,N,K,gs,config", [(40, 72, 256, 128, ONE), (70, 136, 512, 64, ONE),
                                             (130, 200, 384, 32, TWO), (100, 72, 256, 32, THREE),
                                             (300, 136, 256, 128, DEFAULT), (129, 8, 128, 64, NARROW),
                                             (40, 136, 384, 64, W4SwapConfig(block_m=32, block_n=128, stages=2,
                                                                             overlap=True)),
                                             (70, 72, 512, 128, W4SwapConfig(block_m=64, block_n=64, stages=3,
                                                                             overlap=True))])
@pytest.mark.parametrize("with_zeros", [False, True], ids=["sym", "zp"])
def test_w4_swap_ragged(sm90, rng, M, N, K, gs, config, with_zeros):  # noqa: F811
    a, wp, sc, zeros, want = _case(rng, M, N, K, gs, "f16", with_zeros)
    out = host(ops.matmul_int4(a, wp, sc, zeros=zeros, group_size=gs, config=config))
    assert out.shape == (M, N) and np.isfinite(out).all()
    assert rel_err(out, want) < TOL["f16"]


@pytest.mark.parametrize("gs,with_zeros", [(128, True), (64, False), (32, True)])
def test_w4_swap_bf16(sm90, rng, gs, with_zeros):  # noqa: F811
    a, wp, sc, zeros, want = _case(rng, 140, 104, 256, gs, "bf16", with_zeros)
    dev = kaiodsl.runtime.to_device          # bf16 arrays are device arrays: every operand is one
    out = host(ops.matmul_int4(a, dev(wp), sc, zeros=dev(zeros) if with_zeros else None, group_size=gs,
                               config=TWO))
    assert np.isfinite(out).all()
    assert rel_err(out, want) < TOL["bf16"]


def test_w4_swap_deterministic_and_default(sm90, rng):  # noqa: F811
    """Two runs agree bit for bit, and the default sm_90a path past M = 64 is this kernel's."""
    a, wp, sc, zeros, want = _case(rng, 150, 104, 512, 32, "f16", True)
    runs = [host(ops.matmul_int4(a, wp, sc, zeros=zeros, group_size=32, config=TWO)) for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])
    out = host(ops.matmul_int4(a, wp, sc, zeros=zeros, group_size=32))
    assert rel_err(out, want) < TOL["f16"]
    assert isinstance(ops.gemm_sm90_w4.sm90_w4_plan("matmul_int4", 2048, 4096, 4096, True, None, 16, None),
                      W4SwapConfig)


def test_w4_swap_misaligned_scales_refused(sm90, rng):  # noqa: F811
    """A stage's scales (zero points) of a row come in one load: scales whose data is off that boundary
    are refused by name before anything runs."""
    torch = pytest.importorskip("torch")
    dev = "cuda" if sm90.name == "cuda" else "cpu"
    M, N, K, gs = 96, 64, 256, 32
    a, wp, sc, zeros, want = _case(rng, M, N, K, gs, "f16", False)
    flat = torch.zeros(N * K // gs + 1, dtype=torch.float16, device=dev)
    flat[1:] = torch.from_numpy(sc.reshape(-1)).to(dev)
    with pytest.raises(kaiodsl.ArgumentError, match="'scales'.*8-byte boundary"):
        ops.matmul_int4(torch.from_numpy(a).to(dev), torch.from_numpy(wp).to(dev), flat[1:].view(N, K // gs),
                        group_size=gs, config=ONE)


@pytest.mark.parametrize("kw,what", [(dict(block_m=100), "block_m must be a multiple of 8"),
                                     (dict(block_n=96), "block_n must be 64, 128 or 192"),
                                     (dict(stages=1), "stages must be at least 2"),
                                     (dict(stages=4), "shared memory"),
                                     (dict(block_n=192, block_m=256), "accumulators")])
def test_w4_swap_config_refused(kw, what):
    with pytest.raises(kaiodsl.ArgumentError, match=what):
        W4SwapConfig(**kw).check()


@pytest.mark.parametrize("overlap", [1, "yes", None])
def test_w4_swap_config_overlap_refused(overlap):
    with pytest.raises(kaiodsl.ArgumentError, match=f"overlap must be True or False, got {overlap!r}"):
        W4SwapConfig(overlap=overlap)


def test_w4_swap_heuristic():
    assert swap_config(2048, 4096, 4096, 132) == DEFAULT        # 256 tiles of 256 x 128
    assert swap_config(512, 4096, 4096, 132) == NARROW          # 128 x 128 gives every SM a tile
    assert swap_config(2048, 4096, 4096, 132, "int4", 32) == W4SwapConfig(overlap=False)     # spills with it
    # small M: one activation tile of M rows rounded up to 32; the weight-tile height with the fewest
    # waves of tiles, then the most (H200, scripts/swap_midm_sweep.py)
    assert swap_config(64, 8192, 8192, 132) == W4SwapConfig(block_m=64, block_n=64, stages=NARROW.stages,
                                                                overlap=True)
    assert swap_config(20, 14336, 4096, 132) == W4SwapConfig(block_m=32, block_n=128, stages=NARROW.stages,
                                                                overlap=True)
    assert swap_config(128, 4096, 4096, 132).block_n == 64 and swap_config(200, 4096, 4096, 132).block_m == 128


@pytest.mark.parametrize("M", [2048, 512])             # the 256 x 128 and 128 x 128 defaults
@pytest.mark.parametrize("dt,gs,z", [("f16", 128, False), ("f16", 32, True), ("bf16", 64, True)])
def test_w4_swap_compiles_without_spills(M, dt, gs, z):
    cfg = swap_config(M, 4096, 4096, 132, "int4", gs)
    k = w4_swap_kernel(dt, gs, z, cfg, "i32").compile(arch="sm_90a")
    assert "wgmma.mma_async" in k.ptx and "setmaxnreg" in k.ptx and "cp.async.bulk.tensor.2d" in k.ptx
    stats = k.stats()
    assert stats["spills"] == 0 and stats["local_bytes"] == 0 and stats["registers"] <= 168, stats


@pytest.mark.gpu
@pytest.mark.parametrize("M", [17, 32, 64, 128, 256])
@pytest.mark.parametrize("N", [4096, 14336])
def test_w4_swap_gpu_small_m(sm90, torch_cuda, rng, M, N):  # noqa: F811
    """The tiles swap_config sizes to M (and the same without overlap) at Llama widths, twice each (bit-equal)."""
    torch = torch_cuda
    if sm90.name != "cuda":
        pytest.skip("large shapes run on the GPU only")
    K, gs = 4096, 128
    q = rng.integers(0, 16, (N, K), dtype=np.uint8)
    s = torch.from_numpy(rng.uniform(0.5, 1.5, (N, K // gs)).astype(np.float16) * 0.02).cuda()
    a = torch.randn(M, K, device="cuda", dtype=torch.float16)
    wp = torch.from_numpy(ops.pack_int4(q)).cuda()
    w = (q - 8.0) * np.repeat(s.double().cpu().numpy(), gs, axis=1)
    want = a.double().cpu().numpy() @ w.T
    base = swap_config(M, N, K, 132)
    for cfg in (None, base, dataclasses.replace(base, overlap=False)):
        out = ops.matmul_int4(a, wp, s, group_size=gs, config=cfg)
        assert rel_err(out.cpu().numpy(), want) < TOL["f16"], cfg
        assert torch.equal(out, ops.matmul_int4(a, wp, s, group_size=gs, config=cfg)), (cfg, "run to run")
