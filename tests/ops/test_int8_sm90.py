"""matmul_int8 / matmul_w8a8 on the Hopper kernel (ops/gemm_sm90.py with s8 operands, s32 accumulators).

Both backends compile for sm_90a (KAIODSL_ARCH); the simulator (sm_count 3) runs small tilings whose
persistent blocks walk several tiles each, at ragged M, N and K. The int32 accumulator's value is
checked bit-exactly: the f32 output must be the int64 product rounded once to f32."""

import numpy as np
import pytest

import kaiodsl
import kaiodsl.runtime
from kaiodsl import ops
from kaiodsl.ops import gemm_sm90
from kaiodsl.ops.gemm_sm90 import Sm90Config

from opkit import check_close

SMALL = Sm90Config(block_m=128, block_n=64, stages=2, consumers=2)
ONE_WG = Sm90Config(block_m=64, block_n=32, stages=3, consumers=1)
TALL = Sm90Config(block_m=256, block_n=48, stages=2, consumers=2)     # two m64 blocks per consumer


@pytest.fixture
def hopper_launches(monkeypatch):
    """The number of gemm_sm90.launch calls (which kernel an automatic choice ran)."""
    calls = []
    real = gemm_sm90.launch

    def spy(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(gemm_sm90, "launch", spy)
    return calls


def _int8(rng, shape):
    return rng.integers(-128, 128, shape, dtype=np.int8)


def _exact_f32(acc: np.ndarray) -> np.ndarray:
    """The int64 product as the kernel's f32 output holds it: one round-to-nearest of the s32 value."""
    assert np.abs(acc).max() < 2**31
    return acc.astype(np.float32)


@pytest.mark.parametrize("M,N,K,config", [(200, 136, 208, SMALL), (64, 45, 96, ONE_WG), (300, 70, 272, TALL),
                                          (1, 16, 16, SMALL), (517, 40, 128, ONE_WG)])
def test_int8_sm90_bit_exact(sm90, rng, M, N, K, config):
    a, b = _int8(rng, (M, K)), _int8(rng, (N, K))
    want = ops.reference_matmul_int8(a, b)
    c = ops.matmul_int8(a, b, config=config)
    assert c.dtype == np.float32 and c.shape == (M, N)
    np.testing.assert_array_equal(c, _exact_f32(want))
    c2 = ops.matmul_int8(a, b, 0.25, config=config)            # a power-of-two scale stays exact
    np.testing.assert_array_equal(c2, _exact_f32(want) * np.float32(0.25))


def test_int8_sm90_past_f32_integers(sm90, rng):
    """Accumulators past 2**24 (all of a, b at -128: 128 * 128 * K): the s32 sum, then one rounding."""
    M, N, K = 70, 32, 2048
    a = np.full((M, K), -128, np.int8)
    b = _int8(rng, (N, K))
    b[:, :1024] = -128
    want = ops.reference_matmul_int8(a, b)
    assert np.abs(want).max() > 2**24
    np.testing.assert_array_equal(ops.matmul_int8(a, b, config=ONE_WG), _exact_f32(want))


def test_int8_sm90_is_the_default(sm90, rng, hopper_launches):
    """config='auto' on sm_90a takes the Hopper kernel for b [N, K], M > 64 and 16-byte rows; the
    mma.sync kernel otherwise (M <= 64, K off 16, b [K, N]), every one exact."""
    for M, K, layout, hopper in [(130, 64, "nk", True), (64, 64, "nk", False), (130, 72, "nk", False),
                                 (130, 64, "kn", False)]:
        a = _int8(rng, (M, K))
        b = _int8(rng, (24, K) if layout == "nk" else (K, 24))
        before = len(hopper_launches)
        c = ops.matmul_int8(a, b, b_layout=layout)
        assert (len(hopper_launches) > before) == hopper, (M, K, layout)
        np.testing.assert_array_equal(c, _exact_f32(ops.reference_matmul_int8(a, b, layout)))


def test_int8_sm90_device_arrays(sm90, rng):
    a, b = _int8(rng, (150, 64)), _int8(rng, (40, 64))
    c = ops.matmul_int8(kaiodsl.runtime.to_device(a), kaiodsl.runtime.to_device(b), config=SMALL)
    assert isinstance(c, kaiodsl.runtime.DeviceArray)
    np.testing.assert_array_equal(c.numpy(), _exact_f32(ops.reference_matmul_int8(a, b)))


def _w8a8_case(rng, M, N, K, per_token, bias):
    a, w = _int8(rng, (M, K)), _int8(rng, (N, K))
    act = (rng.uniform(0.5, 1.5, M) * 1e-2).astype(np.float32) if per_token else 0.0123
    ws = (rng.uniform(0.5, 1.5, N) * 1e-2).astype(np.float32)
    bv = rng.standard_normal(N).astype(np.float32) if bias else None
    return a, w, act, ws, bv, ops.reference_matmul_w8a8(a, w, act, ws, bv)


@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("per_token", [True, False], ids=["per_token", "per_tensor"])
@pytest.mark.parametrize("out", ["f16", "bf16", "f32"])
def test_w8a8_sm90(sm90, rng, out, per_token, bias):
    a, w, act, ws, bv, ref = _w8a8_case(rng, 150, 70, 144, per_token, bias)
    check_close(ops.matmul_w8a8(a, w, act, ws, bias=bv, out_dtype=out, config=SMALL), ref, out)


def test_w8a8_sm90_default_device_arrays(sm90, rng, hopper_launches):
    a, w, act, ws, bv, ref = _w8a8_case(rng, 200, 48, 96, True, True)
    dev = kaiodsl.runtime.to_device
    out = ops.matmul_w8a8(dev(a), dev(w), dev(act), dev(ws), bias=dev(bv), out_dtype="bf16")
    assert hopper_launches == ["s8"]
    check_close(out, ref, "bf16")


def test_w8a8_sm90_f32_is_one_rounding(sm90, rng):
    a, w, act, ws, _, ref = _w8a8_case(rng, 100, 40, 64, True, False)
    out = ops.matmul_w8a8(a, w, act, ws, out_dtype="f32", config=ONE_WG)
    assert np.allclose(out, ref, rtol=4 * 2.0**-23, atol=1e-30)


# -- errors: before anything is allocated or launched ------------------------------------------------
def test_int8_sm90_config_errors(sm90, no_launch):
    a, b = np.ones((128, 64), np.int8), np.ones((32, 64), np.int8)
    with pytest.raises(kaiodsl.ArgumentError, match="b_layout='nk'"):
        ops.matmul_int8(a, b.T.copy(), b_layout="kn", config=SMALL)
    with pytest.raises(kaiodsl.ArgumentError, match="K=72 a multiple of 16"):
        ops.matmul_int8(np.ones((128, 72), np.int8), np.ones((32, 72), np.int8), config=SMALL)
    with pytest.raises(kaiodsl.ArgumentError, match="block_n must be a multiple of 16"):
        ops.matmul_int8(a, b, config=Sm90Config(block_n=40))
    with pytest.raises(kaiodsl.ArgumentError, match="matmul_w8a8.*multiple of 64"):
        ops.matmul_w8a8(a, b, 0.5, np.ones(32, np.float32), config=Sm90Config(block_m=96))


def test_int8_sm90_refused_off_sm90(backend, monkeypatch, no_launch):
    monkeypatch.setenv("KAIODSL_ARCH", "sm_80")
    a = np.ones((128, 64), np.int8)
    with pytest.raises(kaiodsl.ArgumentError, match="sm_90a kernel.*current target is sm_80"):
        ops.matmul_int8(a, a, config=SMALL)
    with pytest.raises(kaiodsl.ArgumentError, match="sm_90a kernel.*current target is sm_80"):
        ops.matmul_w8a8(a, a, 0.5, np.ones(128, np.float32), config=SMALL)


# -- the GPU: default tilings at large shapes ----------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("M,N,K", [(4096, 4096, 4096), (1000, 1500, 1024), (257, 6144, 4096), (8192, 8192, 8192)])
def test_int8_sm90_gpu_shapes(sm90, torch_cuda, M, N, K):
    torch = torch_cuda
    if sm90.name != "cuda":
        pytest.skip("large shapes run on the GPU only")
    a = torch.randint(-128, 128, (M, K), device="cuda", dtype=torch.int8)
    b = torch.randint(-128, 128, (N, K), device="cuda", dtype=torch.int8)
    # exact int32 (|acc| <= 128 * 128 * K < 2**31); torch._int_mm needs N a multiple of 8, float64 is exact too
    acc = torch._int_mm(a, b.t()) if N % 8 == 0 else (a.double() @ b.double().T).to(torch.int32)
    for cfg in (None, Sm90Config(), Sm90Config(block_n=128, stages=6)):
        out = ops.matmul_int8(a, b, config=cfg)
        assert torch.equal(out, acc.float()), cfg       # s32 -> f32: one round-to-nearest, as .float()
    act = torch.rand(M, device="cuda") * 1e-2 + 1e-3
    ws = torch.rand(N, device="cuda") * 1e-2 + 1e-3
    bias = torch.randn(N, device="cuda")
    out = ops.matmul_w8a8(a, b, act, ws, bias=bias, out_dtype="bf16")
    want = acc.double() * act.double()[:, None] * ws.double()[None, :] + bias.double()
    assert float((out.double() - want).norm() / want.norm()) < 1.5e-2
    assert torch.equal(out, ops.matmul_w8a8(a, b, act, ws, bias=bias, out_dtype="bf16"))     # deterministic
