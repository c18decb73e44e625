"""int8 ops: matmul_int8 (bit-exact), matmul_w8a8 (SmoothQuant scales), quantize_per_token (bit-exact)."""

import numpy as np
import pytest

import kaiodsl
import kaiodsl.runtime
from kaiodsl import ops

from opkit import check_close, dtype_name, host, make

SHAPES = [(1, 8, 16), (37, 45, 64), (128, 72, 96), (130, 129, 272)]
IDS = [f"{m}x{n}x{k}" for m, n, k in SHAPES]


def _int8(rng, shape):
    return rng.integers(-128, 128, shape, dtype=np.int8)


@pytest.mark.parametrize("M,N,K", SHAPES, ids=IDS)
def test_matmul_int8_bit_exact(backend, rng, M, N, K):
    """|acc| < 2**24 here (128 * 128 * 272 < 2**23), so the f32 output is the exact integer."""
    a, b = _int8(rng, (M, K)), _int8(rng, (N, K))
    c = ops.matmul_int8(a, b)
    assert c.dtype == np.float32 and c.shape == (M, N)
    assert np.array_equal(c.astype(np.int64), ops.reference_matmul_int8(a, b))
    c2 = ops.matmul_int8(a, b, 0.25)            # a power-of-two scale stays exact
    assert np.array_equal(c2, (ops.reference_matmul_int8(a, b) * 0.25).astype(np.float32))


def test_matmul_int8_device_arrays(backend, rng):
    a, b = _int8(rng, (19, 32)), _int8(rng, (24, 32))
    c = ops.matmul_int8(kaiodsl.runtime.to_device(a), kaiodsl.runtime.to_device(b))
    assert isinstance(c, kaiodsl.runtime.DeviceArray)
    assert np.array_equal(c.numpy().astype(np.int64), ops.reference_matmul_int8(a, b))


@pytest.mark.parametrize("M", [1, 37, 600])
def test_int8_config_table(backend, rng, M):
    """The config int8_config picks for M (decode .. large), run on a small ragged problem."""
    cfg = ops.int8_config(M, 4096, 4096)
    a, b = _int8(rng, (45, 160)), _int8(rng, (40, 160))
    assert np.array_equal(ops.matmul_int8(a, b, config=cfg).astype(np.int64), ops.reference_matmul_int8(a, b))


def _w8a8_case(rng, M, N, K, per_token, bias, kind="numpy"):
    a, w = _int8(rng, (M, K)), _int8(rng, (N, K))
    act = (rng.uniform(0.5, 1.5, M) * 1e-2).astype(np.float32) if per_token else 0.0123
    ws = (rng.uniform(0.5, 1.5, N) * 1e-2).astype(np.float32)
    bv = rng.standard_normal(N).astype(np.float32) if bias else None
    ref = ops.reference_matmul_w8a8(a, w, act, ws, bv)
    if kind == "device":
        dev = kaiodsl.runtime.to_device
        a, w, ws = dev(a), dev(w), dev(ws)
        act = dev(act) if per_token else act
        bv = dev(bv) if bias else None
    return a, w, act, ws, bv, ref


@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("per_token", [True, False], ids=["per_token", "per_tensor"])
@pytest.mark.parametrize("out", ["f16", "bf16", "f32"])
def test_matmul_w8a8(backend, rng, out, per_token, bias):
    M, N, K = 37, 45, 64
    a, w, act, ws, bv, ref = _w8a8_case(rng, M, N, K, per_token, bias)
    check_close(ops.matmul_w8a8(a, w, act, ws, bias=bv, out_dtype=out), ref, out)


@pytest.mark.parametrize("M,N,K", SHAPES, ids=IDS)
def test_matmul_w8a8_shapes(backend, rng, M, N, K):
    a, w, act, ws, bv, ref = _w8a8_case(rng, M, N, K, True, True, kind="device")
    out = ops.matmul_w8a8(a, w, act, ws, bias=bv, out_dtype=kaiodsl.bf16)
    assert isinstance(out, kaiodsl.runtime.DeviceArray)
    check_close(out, ref, "bf16")


def test_matmul_w8a8_f32_is_one_rounding(backend, rng):
    """f32 output: acc * (w * act) in f32 -- within a few f32 ulps of the float64 value."""
    a, w, act, ws, _, ref = _w8a8_case(rng, 16, 24, 32, True, False)
    out = ops.matmul_w8a8(a, w, act, ws, out_dtype="f32")
    assert np.allclose(out, ref, rtol=4 * 2.0**-23, atol=1e-30)


# -- quantize_per_token ----------------------------------------------------------------------------
def _rows(rng, M, K):
    x = rng.standard_normal((M, K)) * rng.uniform(0.01, 10.0, (M, 1))
    if M > 2:
        x[1] = 0.0                     # an all-zero row: scale 0, all zeros
    return x


@pytest.mark.parametrize("M,K", [(1, 16), (5, 1), (7, 300), (3, 1024)], ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_quantize_per_token_bit_exact(backend, rng, dtype, M, K):
    x, xv = make(_rows(rng, M, K), dtype)
    q, s = ops.quantize_per_token(x)
    rq, rs = ops.reference_quantize_per_token(xv.astype(np.float32))
    q, s = host(q), host(s)
    assert q.dtype == np.int8 and s.dtype == np.float32
    assert np.array_equal(s.view(np.uint32), rs.view(np.uint32))
    assert np.array_equal(q, rq)
    if M > 2:
        assert s[1] == 0 and not q[1].any()


def test_quantize_then_w8a8(backend, rng):
    """The SmoothQuant pipeline: per-token quantized activations through matmul_w8a8."""
    x = rng.standard_normal((9, 64)).astype(np.float16)
    w = _int8(rng, (24, 64))
    ws = np.full(24, 1e-2, np.float32)
    xq, s = ops.quantize_per_token(x)
    out = ops.matmul_w8a8(xq, w, s, ws, out_dtype="f32")
    check_close(out, ops.reference_matmul_w8a8(xq, w, s, ws), "f32")
    approx = x.astype(np.float64) @ (w.astype(np.float64) * 1e-2).T
    assert np.linalg.norm(out - approx) / np.linalg.norm(approx) < 2e-2


def test_quantize_empty(backend):
    q, s = ops.quantize_per_token(np.ones((0, 16), np.float16))
    assert q.shape == (0, 16) and s.shape == (0,)
    assert dtype_name(q) == "i8"
