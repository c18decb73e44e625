"""kaiodsl.ops.matmul (f16/bf16 GEMM) against a float64 numpy reference, on every backend."""

import numpy as np
import pytest

import kaiodsl
from kaiodsl import ops

from opkit import check_close, make

DTYPES = ["f16", "bf16"]
OUTS = ["f32", "f16", "bf16"]


def _case(rng, M, N, K, dtype, layout, bias, kind="numpy"):
    a, av = make(rng.standard_normal((M, K)), dtype, kind)
    b, bv = make(rng.standard_normal((K, N) if layout == "kn" else (N, K)), dtype, kind)
    bias_arg, biasv = None, None
    if bias:
        biasv = rng.standard_normal(N).astype(np.float32)
        bias_arg = biasv if kind == "numpy" and dtype == "f16" else kaiodsl.runtime.to_device(biasv)
    return a, b, bias_arg, ops.reference_matmul(av, bv, layout, biasv)


# The full cross product at one ragged shape (odd N for nk; kn needs N % 8 == 0).
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("pipeline", ["sync", "async"])
@pytest.mark.parametrize("layout", ["kn", "nk"])
@pytest.mark.parametrize("out", OUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_all_combos(backend, rng, dtype, out, layout, pipeline, bias):
    M, N, K = 37, (48 if layout == "kn" else 45), 64
    a, b, bias_arg, ref = _case(rng, M, N, K, dtype, layout, bias)
    c = ops.matmul(a, b, out_dtype=out, bias=bias_arg, pipeline=pipeline, b_layout=layout)
    check_close(c, ref, out)


# Shapes: tiny, M = 1 (decode), ragged M/N/K across tile edges, more than one k tile.
SHAPES = [(1, 8, 16), (1, 45, 64), (37, 45, 64), (128, 72, 96), (130, 136, 200), (5, 13, 8)]


@pytest.mark.parametrize("pipeline", ["sync", "async"])
@pytest.mark.parametrize("layout", ["kn", "nk"])
@pytest.mark.parametrize("M,N,K", SHAPES, ids=[f"{m}x{n}x{k}" for m, n, k in SHAPES])
def test_matmul_shapes(backend, rng, M, N, K, layout, pipeline):
    if layout == "kn" and N % 8:
        N = (N + 7) // 8 * 8          # [K, N] rows must be 16-byte multiples
    a, b, _, ref = _case(rng, M, N, K, "f16", layout, False)
    check_close(ops.matmul(a, b, pipeline=pipeline, b_layout=layout), ref, "f16")


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_bf16_shapes_bias(backend, rng, dtype):
    for M, N, K in [(1, 8, 16), (128, 72, 96)]:
        a, b, bias_arg, ref = _case(rng, M, N, K, dtype, "nk", True)
        check_close(ops.matmul(a, b, bias=bias_arg, out_dtype="f32", b_layout="nk"), ref, "f32")


def test_matmul_defaults(backend, rng):
    """out_dtype defaults to the input dtype, b_layout to 'kn', pipeline to 'auto'; outputs are
    the input's kind; a DeviceArray f16 works as numpy does."""
    a, b, _, ref = _case(rng, 20, 24, 40, "f16", "kn", False)
    c = ops.matmul(a, b)
    assert isinstance(c, np.ndarray) and c.dtype == np.float16
    check_close(c, ref, "f16")
    da, db, bias, ref = _case(rng, 20, 24, 40, "f16", "kn", True, kind="device")
    c = ops.matmul(da, db, bias=bias, out_dtype=kaiodsl.f32)
    assert isinstance(c, kaiodsl.runtime.DeviceArray) and c.scalar_type == kaiodsl.f32
    check_close(c, ref, "f32")


def test_matmul_f16_bias_is_converted(backend, rng):
    a, b, _, _ = _case(rng, 9, 16, 32, "f16", "nk", False)
    bias = rng.standard_normal(16).astype(np.float16)
    ref = ops.reference_matmul(a, b, "nk", bias)
    check_close(ops.matmul(a, b, bias=bias, b_layout="nk", out_dtype="f32"), ref, "f32")


def test_matmul_empty(backend):
    c = ops.matmul(np.ones((0, 16), np.float16), np.ones((16, 8), np.float16))
    assert c.shape == (0, 8)


def _configs():
    """Every config the heuristic picks for f16 and the int8 config table, run at a small shape."""
    seen = []
    for M in (1, 16, 64, 256, 1024, 4096):
        for K in (64, 4096):
            for pipe in ("auto", "sync", "async"):
                for lay in ("kn", "nk"):
                    cfg = ops.matmul_config(M, 4096, K, "f16", lay, pipe)
                    if (cfg, lay) not in seen:
                        seen.append((cfg, lay))
    return seen


@pytest.mark.parametrize("cfg,layout", _configs(), ids=lambda x: str(x))
def test_matmul_heuristic_configs(backend, rng, cfg, layout):
    """The configs matmul_config returns (whatever the tuned table holds) are valid and correct
    on a ragged shape that spans more than one k tile and edge tiles in M and N."""
    M, N, K = 37, 72, 136
    if isinstance(cfg, ops.DecodeConfig):     # the decode kernel: M <= 16, K a multiple of 32
        M, K = 16, 160
    a, b, _, ref = _case(rng, M, N, K, "f16", layout, False)
    check_close(ops.matmul(a, b, b_layout=layout, out_dtype="f32", config=cfg), ref, "f32")


def test_reference_matmul():
    a = np.arange(6, dtype=np.float16).reshape(2, 3)
    b = np.arange(12, dtype=np.float16).reshape(3, 4)
    assert np.array_equal(ops.reference_matmul(a, b), a.astype(np.float64) @ b)
    assert np.array_equal(ops.reference_matmul(a, b.T.copy(), "nk"), a.astype(np.float64) @ b)


def test_matmul_out_dtype_numpy_type(rng):
    kaiodsl.runtime.set_backend("sim")
    a, b, _, _ = _case(rng, 8, 8, 16, "f16", "kn", False)
    c = ops.matmul(a, b, out_dtype=np.float32)
    assert c.dtype == np.float32
