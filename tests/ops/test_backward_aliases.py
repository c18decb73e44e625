"""matmul_backward (through the forward kernels) and the KAIO-named aliases."""

import numpy as np
import pytest

import kaiodsl
import kaiodsl.runtime
from kaiodsl import ops

from opkit import check_close, dtype_name, make

SHAPES = [(1, 8, 16), (37, 48, 64), (37, 45, 64), (128, 72, 96), (0, 8, 16), (6, 0, 16)]
CASES = [(s, lay) for s in SHAPES for lay in ("kn", "nk") if lay == "nk" or s[1] % 8 == 0]  # kn: N % 8


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
@pytest.mark.parametrize("shape,layout", CASES, ids=[f"{m}x{n}x{k}-{lay}" for (m, n, k), lay in CASES])
def test_matmul_backward(backend, rng, shape, layout, dtype):
    M, N, K = shape
    g, gv = make(rng.standard_normal((M, N)), dtype)
    a, av = make(rng.standard_normal((M, K)), dtype)
    b, bv = make(rng.standard_normal((K, N) if layout == "kn" else (N, K)), dtype)
    da, db = ops.matmul_backward(g, a, b, b_layout=layout)
    rda, rdb = ops.reference_matmul_backward(gv, av, bv, layout)
    assert tuple(db.shape) == tuple(b.shape) and tuple(da.shape) == (M, K)
    check_close(da, rda, dtype)
    check_close(db, rdb, dtype)


def test_matmul_backward_matches_finite_forward(backend, rng):
    """<grad, d/dt f(a + t*da_dir)> identity: the gradient pairs with the forward it came from."""
    a = rng.standard_normal((16, 32)).astype(np.float16)
    w = rng.standard_normal((24, 32)).astype(np.float16)
    g = rng.standard_normal((16, 24)).astype(np.float16)
    da, dw = ops.matmul_backward(g, a, w, b_layout="nk")
    # y = a @ w^T is linear in a: <g, ea @ w^T> = <g @ w, ea> for any direction ea
    ea = rng.standard_normal((16, 32))
    lhs = np.sum(g.astype(np.float64) * (ea @ w.astype(np.float64).T))
    assert abs(lhs - np.sum(da.astype(np.float64) * ea)) <= 5e-3 * np.abs(lhs) + 1.0
    ew = rng.standard_normal((24, 32))
    lhs = np.sum(g.astype(np.float64) * (a.astype(np.float64) @ ew.T))
    assert abs(lhs - np.sum(dw.astype(np.float64) * ew)) <= 5e-3 * np.abs(lhs) + 1.0


def test_matmul_backward_device_arrays_f16(backend, rng):
    g, gv = make(rng.standard_normal((13, 16)), "f16", "device")
    a, av = make(rng.standard_normal((13, 32)), "f16", "device")
    b, bv = make(rng.standard_normal((32, 16)), "f16", "device")
    da, db = ops.matmul_backward(g, a, b)
    assert isinstance(da, kaiodsl.runtime.DeviceArray) and isinstance(db, kaiodsl.runtime.DeviceArray)
    rda, rdb = ops.reference_matmul_backward(gv, av, bv)
    check_close(da, rda, "f16")
    check_close(db, rdb, "f16")


# -- KAIO names ------------------------------------------------------------------------------------
TC = [("matmul_tc", "f16"), ("matmul_tc_bf16", "bf16"), ("matmul_tc_async", "f16"),
      ("matmul_tc_bf16_async", "bf16")]


@pytest.mark.parametrize("name,dtype", TC)
def test_kaio_tc_aliases(backend, rng, name, dtype):
    """KAIO's contract: b [K, N] row-major, f32 out."""
    fn = getattr(ops, name)
    for M, N, K in [(1, 8, 16), (37, 48, 64)]:
        a, av = make(rng.standard_normal((M, K)), dtype)
        b, bv = make(rng.standard_normal((K, N)), dtype)
        c = fn(a, b)
        assert dtype_name(c) == "f32"
        check_close(c, av @ bv, "f32")


@pytest.mark.parametrize("name,dtype", TC)
def test_kaio_tc_aliases_reject_other_dtype(name, dtype):
    other = "bf16" if dtype == "f16" else "f16"
    a, _ = make(np.ones((8, 16)), other)
    b, _ = make(np.ones((16, 8)), other)
    with pytest.raises(kaiodsl.ArgumentError, match=rf"{name}\(\): 'a' has dtype {other}; allowed: {dtype}"):
        getattr(ops, name)(a, b)


def test_kaio_names_table():
    assert ops.KAIO_NAMES["matmul_int8"] is ops.aliases.matmul_int8
    assert ops.KAIO_NAMES["matmul_int8"] is not ops.matmul_int8       # KAIO's takes b [K, N]
    assert ops.matmul_int4 is ops.KAIO_NAMES["matmul_int4"]
    assert set(ops.KAIO_NAMES) == {"matmul_tc", "matmul_tc_bf16", "matmul_tc_async", "matmul_tc_bf16_async",
                                   "matmul_int8", "matmul_int4", "attention_tc", "attention_tc_causal",
                                   "attention_flash", "attention_flash_causal", "attention_flash_backward",
                                   "qkv_project_int8", "qkv_project_int4"}
    assert all(name in ops.__all__ for name in ops.KAIO_NAMES)


# square shapes are the case a transposed product passes unnoticed; non-square ones catch a shape mix-up
KAIO_INT8_SHAPES = [(32, 32, 32), (16, 16, 16), (5, 24, 48), (37, 16, 64)]


@pytest.mark.parametrize("M,N,K", KAIO_INT8_SHAPES, ids=[f"{m}x{n}x{k}" for m, n, k in KAIO_INT8_SHAPES])
@pytest.mark.parametrize("kind", ["numpy", "device"])
def test_kaio_matmul_int8_contract(backend, rng, M, N, K, kind):
    """KAIO's matmul_int8: b [K, N] row-major, out = (a @ b) * scale in f32 -- not a @ b.T."""
    a = rng.integers(-128, 128, (M, K), dtype=np.int8)
    b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    want = (a.astype(np.int64) @ b.astype(np.int64)).astype(np.float32) * np.float32(0.5)
    args = (a, b) if kind == "numpy" else (kaiodsl.runtime.to_device(a), kaiodsl.runtime.to_device(b))
    got = ops.KAIO_NAMES["matmul_int8"](*args, 0.5)
    got = got if kind == "numpy" else got.numpy()
    assert got.shape == (M, N) and got.dtype == np.float32
    assert np.array_equal(got, want)
    if M == N == K:          # the [N, K] reading of the same b is a different product: the test can tell
        assert not np.array_equal(got, (a.astype(np.int64) @ b.astype(np.int64).T) * 0.5)


def test_kaio_matmul_int8_rejects_nk_shape():
    """A [N, K] b given to the KAIO name is a shape error (K mismatch), named as the KAIO call."""
    a, b = np.ones((16, 32), np.int8), np.ones((24, 32), np.int8)
    with pytest.raises(kaiodsl.ArgumentError, match=r"matmul_int8 \(KAIO\).*b_layout='kn'.*K=32 and 24 differ"):
        ops.KAIO_NAMES["matmul_int8"](a, b)
