"""W4A16 on sm_90a (ops/gemm_sm90_w4.py): TMA for A and for the packed weights (a staging ring in shared
memory), int4 weights dequantized by the producer warpgroup into the swizzled shared B tile, wgmma,
through ops.matmul_int4.

Both backends compile for sm_90a. The simulator runs small tilings whose persistent blocks walk several
tiles each (its sm_count is 3) through rings that wrap (the staging ring across tiles, with 2 and 3
slots); ragged M and N, group sizes 32/64/128, with and without zero points, f16 and bf16 activations,
all against float64 with the reference-dequantized weights. The GPU runs the default tilings at LLM
shapes."""

import importlib

import numpy as np
import pytest

import kaiodsl
import kaiodsl.runtime
from kaiodsl import ops
from kaiodsl.ops import gemm_sm90_w4_swap as swap
from kaiodsl.ops.gemm_sm90_w4 import W4Config, use_sm90_w4, w4_config

from opkit import TOL, host, make, rel_err
from qkvkit import poison_outputs

SMALL = W4Config(block_m=128, block_n=64, stages=2, consumers=2)
ONE_WG = W4Config(block_m=64, block_n=32, stages=3, consumers=1)
TWO_BLOCKS = W4Config(block_m=128, block_n=32, stages=2, consumers=1)       # two m64 blocks a consumer
TWO_SLOTS = W4Config(block_m=64, block_n=64, stages=2, consumers=1, staging=2)   # one chunk ahead
DEEP = W4Config(block_m=64, block_n=96, stages=2, consumers=1, staging=3)        # 2 chunks ahead, 3 pieces a thread
AHEAD = W4Config(block_m=64, block_n=64, stages=2, consumers=1, ahead=3)        # scales 3 stages ahead
WARPS = W4Config(block_m=64, block_n=64, stages=4, consumers=1, staging=4, warp_stages=True)   # a warp a stage
WARPS2 = W4Config(block_m=128, block_n=32, stages=8, consumers=2, staging=8, warp_stages=True)  # 2 slots a warp


@pytest.fixture
def sm90(sm90, monkeypatch):
    """tests/conftest.py's sm90, with the op's outputs starting as NaN."""
    poison_outputs(monkeypatch, importlib.import_module("kaiodsl.ops.matmul_int4"))
    return sm90


def _inputs(rng, M, N, K, gs, dtype, with_zeros):
    q = rng.integers(0, 16, (N, K), dtype=np.uint8)
    s = rng.uniform(0.5, 1.5, (N, K // gs)) * 0.05
    zeros = rng.integers(0, 16, (N, K // gs), dtype=np.uint8) if with_zeros else None
    a, a64 = make(rng.standard_normal((M, K)), dtype)
    sc, s64 = make(s, dtype)
    return a, a64, q, sc, s64, zeros


def _reference(a64, q, s64, zeros, gs):
    z = np.full(s64.shape, 8.0) if zeros is None else zeros.astype(np.float64)
    w = (q - np.repeat(z, gs, axis=1)) * np.repeat(s64, gs, axis=1)
    return a64 @ w.T


@pytest.mark.parametrize("M,N,K,gs,config", [(200, 136, 256, 128, SMALL), (130, 72, 384, 64, ONE_WG),
                                             (150, 40, 256, 32, TWO_BLOCKS), (65, 200, 128, 64, SMALL),
                                             (300, 136, 256, 128, ops.gemm_sm90_w4.TALL),
                                             (130, 72, 128, 32, AHEAD),      # fewer K stages than ahead
                                             (130, 72, 128, 32, WARPS), (150, 40, 256, 64, WARPS2)])
@pytest.mark.parametrize("with_zeros", [False, True], ids=["sym", "zp"])
def test_w4_sm90_ragged(sm90, rng, M, N, K, gs, config, with_zeros):
    a, a64, q, sc, s64, zeros = _inputs(rng, M, N, K, gs, "f16", with_zeros)
    out = host(ops.matmul_int4(a, ops.pack_int4(q), sc, zeros=zeros, group_size=gs, config=config))
    assert out.shape == (M, N) and np.isfinite(out).all()
    assert rel_err(out, _reference(a64, q, s64, zeros, gs)) < TOL["f16"]


@pytest.mark.parametrize("gs,with_zeros", [(128, True), (64, False), (32, True), (32, False)])
def test_w4_sm90_bf16(sm90, rng, gs, with_zeros):
    M, N, K = 140, 104, 256
    a, a64, q, sc, s64, zeros = _inputs(rng, M, N, K, gs, "bf16", with_zeros)
    dev = kaiodsl.runtime.to_device          # bf16 arrays are device arrays: every operand is one
    out = host(ops.matmul_int4(a, dev(ops.pack_int4(q)), sc, zeros=dev(zeros) if with_zeros else None,
                               group_size=gs, config=SMALL))
    assert np.isfinite(out).all()
    assert rel_err(out, _reference(a64, q, s64, zeros, gs)) < TOL["bf16"]


@pytest.mark.parametrize("M,N,K,gs,config", [(130, 200, 1024, 32, TWO_SLOTS), (70, 296, 1024, 128, DEEP),
                                             (200, 136, 896, 64, SMALL), (130, 136, 640, 64, AHEAD),
                                             (130, 200, 1024, 32, WARPS), (70, 136, 896, 128, WARPS2)])
@pytest.mark.parametrize("with_zeros", [False, True], ids=["sym", "zp"])
def test_w4_sm90_staging_wrap(sm90, rng, M, N, K, gs, config, with_zeros):
    """Long K through small rings: the staging ring (2 slots: one copy ahead; 3 slots: two) wraps within a
    tile and runs on across the tiles of a persistent block; ragged M, N."""
    a, a64, q, sc, s64, zeros = _inputs(rng, M, N, K, gs, "f16", with_zeros)
    out = host(ops.matmul_int4(a, ops.pack_int4(q), sc, zeros=zeros, group_size=gs, config=config))
    assert np.isfinite(out).all()
    assert rel_err(out, _reference(a64, q, s64, zeros, gs)) < TOL["f16"]


def test_w4_sm90_deterministic(sm90, rng):
    M, N, K, gs = 150, 104, 512, 32
    a, a64, q, sc, s64, zeros = _inputs(rng, M, N, K, gs, "f16", True)
    wp = ops.pack_int4(q)
    runs = [host(ops.matmul_int4(a, wp, sc, zeros=zeros, group_size=gs, config=DEEP)) for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])


def test_w4_sm90_torch_views(sm90, rng):
    """CPU torch tensors (the words' [N / 8, K] view of the weights' map is a reshape of the tensor) give
    the numpy result; groups of 32 read two scales (zero points) a load, so a view of the scales off
    4-byte boundaries is refused before anything runs."""
    torch = pytest.importorskip("torch")
    dev = "cuda" if sm90.name == "cuda" else "cpu"     # the backend's tensors: CPU ones for the simulator
    M, N, K, gs = 96, 64, 256, 32
    a, a64, q, sc, s64, zeros = _inputs(rng, M, N, K, gs, "f16", True)
    wp = ops.pack_int4(q)
    flat = torch.zeros(N * K // gs + 1, dtype=torch.float16, device=dev)
    flat[1:] = torch.from_numpy(sc.reshape(-1)).to(dev)
    ta, tw, tz = (torch.from_numpy(x).to(dev) for x in (a, wp, zeros))
    with pytest.raises(kaiodsl.ArgumentError, match="4-byte boundary"):
        ops.matmul_int4(ta, tw, flat[1:].view(N, K // gs), zeros=tz, group_size=gs, config=ONE_WG)
    got = host(ops.matmul_int4(ta, tw, torch.from_numpy(sc).to(dev), zeros=tz, group_size=gs, config=ONE_WG))
    np.testing.assert_array_equal(got, host(ops.matmul_int4(a, wp, sc, zeros=zeros, group_size=gs, config=ONE_WG)))
    assert rel_err(got, _reference(a64, q, s64, zeros, gs)) < TOL["f16"]


def test_w4_sm90_uint32_words(sm90, rng):
    """GPTQ-style uint32 words give the same result as pack_int4's int32."""
    M, N, K, gs = 96, 64, 128, 64
    a, a64, q, sc, s64, zeros = _inputs(rng, M, N, K, gs, "f16", True)
    wp = ops.pack_int4(q)
    got = host(ops.matmul_int4(a, wp.view(np.uint32), sc, zeros=zeros, group_size=gs, config=ONE_WG))
    np.testing.assert_array_equal(got, host(ops.matmul_int4(a, wp, sc, zeros=zeros, group_size=gs,
                                                            config=ONE_WG)))
    assert rel_err(got, _reference(a64, q, s64, zeros, gs)) < TOL["f16"]


def test_w4_sm90_default_dispatch(sm90, rng):
    """matmul_int4 takes an sm_90a kernel by itself for M > 16 on sm_90a (default tiling: the swap-AB
    kernel's, its activation tile M rounded up to 32 rows) and agrees with the reference."""
    N, K, gs = 256, 128, 128
    assert not use_sm90_w4(16, N, K, gs)
    for M in (17, 72):
        assert use_sm90_w4(M, N, K, gs)
        a, a64, q, sc, s64, zeros = _inputs(rng, M, N, K, gs, "f16", False)
        out = host(ops.matmul_int4(a, ops.pack_int4(q), sc, group_size=gs))
        assert np.isfinite(out).all()
        assert rel_err(out, _reference(a64, q, s64, zeros, gs)) < TOL["f16"]


def test_w4_sm90_not_taken_off_sm90(backend, monkeypatch):
    monkeypatch.setenv("KAIODSL_ARCH", "sm_80")
    assert not use_sm90_w4(2048, 4096, 4096, 128)
    a = np.ones((128, 128), np.float16)
    wp = ops.pack_int4(np.full((64, 128), 9, np.uint8))
    s = np.ones((64, 1), np.float16)
    with pytest.raises(kaiodsl.ArgumentError, match="sm_90a kernel"):
        ops.matmul_int4(a, wp, s, config=SMALL)


def test_w4_sm90_config_errors(sm90):
    a = np.ones((128, 128), np.float16)
    wp = ops.pack_int4(np.full((64, 128), 9, np.uint8))
    s = np.ones((64, 1), np.float16)
    with pytest.raises(kaiodsl.ArgumentError, match="multiple of 32"):
        ops.matmul_int4(a, wp, s, config=W4Config(block_n=48))
    with pytest.raises(kaiodsl.ArgumentError, match="multiple of 64"):
        ops.matmul_int4(a, wp, s, config=W4Config(block_m=96))
    with pytest.raises(kaiodsl.ArgumentError, match="exclude each other"):
        ops.matmul_int4(a, wp, s, config=SMALL, parallelism=(1, 1, 1, 1))
    with pytest.raises(kaiodsl.ArgumentError, match="W4Config"):
        ops.matmul_int4(a, wp, s, config="fast")
    with pytest.raises(kaiodsl.ArgumentError, match="staging"):
        W4Config(staging=0)
    with pytest.raises(kaiodsl.ArgumentError, match="staging must be at least 2"):
        ops.matmul_int4(a, wp, s, config=W4Config(staging=1))
    with pytest.raises(kaiodsl.ArgumentError, match="staging slots"):
        ops.matmul_int4(a, wp, s, config=W4Config(stages=4, staging=3))      # 192 + 48 KB


def test_w4_sm90_registers_and_heuristic():
    """Every thread keeps the launch's registers (no setmaxnreg: the producer dequantizes), so the
    consumers' accumulators must fit them; the default tilings pass, a consumer of 256 x 256 does not."""
    for cfg in (W4Config(), W4Config(block_n=128, stages=6), SMALL, ONE_WG, TWO_BLOCKS):
        cfg.check()
        assert cfg.registers() % 8 == 0 and cfg.registers() * cfg.threads <= 64 * 1024
    assert W4Config().registers() == 168
    assert W4Config().smem_bytes() == 4 * 384 * 128 + 2 * 64 * 256          # the ring, 2 staging slots
    assert ops.gemm_sm90_w4.NARROW.smem_bytes() + 1024 <= 227 * 1024
    with pytest.raises(kaiodsl.ArgumentError, match="accumulators"):
        W4Config(block_m=256, block_n=256, consumers=1).check()
    assert w4_config(2048, 4096, 4096, 132) == ops.gemm_sm90_w4.TALL          # 256 x 128: 256 tiles
    assert w4_config(1024, 4096, 4096, 132) == ops.gemm_sm90_w4.NARROW      # 128 tiles either way: 128 x 128
    assert w4_config(128, 1024, 4096, 132).block_n == 128


NO_SPILL = [(cfg, dt, gs, z) for cfg in (W4Config(), W4Config(block_n=128, stages=6, staging=4))
            for dt in ("f16", "bf16") for gs in (32, 64, 128) for z in (False, True)] \
    + [(ops.gemm_sm90_w4.TALL, "f16", 128, False), (ops.gemm_sm90_w4.TALL, "bf16", 32, True)]


@pytest.mark.parametrize("cfg,dt,gs,z", NO_SPILL, ids=lambda v: str(v).replace("/", "_"))
def test_w4_sm90_kernel_compiles_without_spills(cfg, dt, gs, z):
    """The default tilings' PTX goes through ptxas (nvJitLink) for sm_90a without spills, every group size
    with and without zero points, f16 and bf16."""
    from kaiodsl.ops.gemm_sm90_w4 import w4_sm90_kernel
    k = w4_sm90_kernel(dt, gs, z, cfg, "i32").compile(arch="sm_90a")
    assert "wgmma.mma_async" in k.ptx and "cp.async.bulk.tensor.2d" in k.ptx and "fence.proxy.async" in k.ptx
    stats = k.stats()
    assert stats["spills"] == 0 and stats["local_bytes"] == 0 and stats["registers"] <= 168, stats


# -- the GPU: default tilings at LLM shapes --------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("M,N,K", [(2048, 4096, 4096), (2048, 14336, 4096), (1000, 1000 // 8 * 8, 1024),
                                   (8192, 4096, 4096)])
@pytest.mark.parametrize("dtype,gs,with_zeros", [("f16", 128, False), ("bf16", 64, True), ("bf16", 32, True)])
def test_w4_sm90_gpu_shapes(sm90, torch_cuda, rng, M, N, K, dtype, gs, with_zeros):
    torch = torch_cuda
    if sm90.name != "cuda":
        pytest.skip("large shapes run on the GPU only")
    td = {"f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    q = rng.integers(0, 16, (N, K), dtype=np.uint8)
    s = torch.from_numpy(rng.uniform(0.5, 1.5, (N, K // gs)).astype(np.float32) * 0.02).to("cuda", td)
    zeros = rng.integers(0, 16, (N, K // gs), dtype=np.uint8) if with_zeros else None
    a = torch.randn(M, K, device="cuda", dtype=td)
    wp = torch.from_numpy(ops.pack_int4(q)).cuda()
    zt = torch.from_numpy(zeros).cuda() if with_zeros else None
    for cfg in (None, W4Config(), W4Config(block_n=128, stages=6, staging=4), W4Config(stages=3, staging=4),
                swap.DEFAULT, swap.NARROW):        # the default is the swap-AB kernel (ops/gemm_sm90_w4_swap.py)
        out = ops.matmul_int4(a, wp, s, zeros=zt, group_size=gs, config=cfg)
        z = np.full((N, K // gs), 8.0) if zeros is None else zeros.astype(np.float64)
        w = (q - np.repeat(z, gs, axis=1)) * np.repeat(s.double().cpu().numpy(), gs, axis=1)
        want = a.double().cpu().numpy() @ w.T
        err = float(np.linalg.norm(out.double().cpu().numpy() - want) / np.linalg.norm(want))
        assert err < TOL[dtype], (cfg, err)


@pytest.mark.parametrize("kw,what", [
    (dict(warp_stages=1), "warp_stages must be True or False, got 1"),
    (dict(ahead=0), "ahead must be a positive int, got 0"),
    (dict(ahead=5), "ahead must be in 1..4"),
    (dict(ahead=2, warp_stages=True, staging=4), "ahead applies to the warpgroup producer"),
    (dict(stages=3, staging=4, warp_stages=True), "stages and staging must be multiples of 4"),
    (dict(stages=4, staging=2, warp_stages=True), "stages and staging must be multiples of 4"),
])
def test_w4_config_producer_options_refused(kw, what):
    """W4Config's producer options: a bad value is refused by name, saying what is allowed."""
    from kaiodsl.errors import ArgumentError

    with pytest.raises(ArgumentError, match=what.replace(".", r"\.")):
        W4Config(block_m=128, block_n=128, **{"stages": 4, **kw}).check()
