"""Edge cases every op defines: empty inputs (no launch, an empty or defined result), non-finite rows in
quantize_per_token, and the [K, N] layout of the int8 GEMMs."""

import numpy as np
import pytest

import kaiodsl
import kaiodsl.runtime
from kaiodsl import ops

from opkit import check_close, host

F16 = np.float16


def _w4(N, K):
    return ops.pack_int4(np.full((N, K), 7, np.uint8))


# (call, output shape(s)) -- each gives an empty result without a launch
EMPTY = {
    "matmul-M0": (lambda: ops.matmul(np.ones((0, 16), F16), np.ones((16, 8), F16)), [(0, 8)]),
    "matmul-N0": (lambda: ops.matmul(np.ones((4, 16), F16), np.ones((0, 16), F16), b_layout="nk"), [(4, 0)]),
    "matmul-M0-K0": (lambda: ops.matmul(np.ones((0, 0), F16), np.ones((0, 8), F16)), [(0, 8)]),
    "int8-M0": (lambda: ops.matmul_int8(np.ones((0, 16), np.int8), np.ones((8, 16), np.int8)), [(0, 8)]),
    "int8-N0-kn": (lambda: ops.matmul_int8(np.ones((4, 16), np.int8), np.ones((16, 0), np.int8), b_layout="kn"),
                   [(4, 0)]),
    "w8a8-M0": (lambda: ops.matmul_w8a8(np.ones((0, 16), np.int8), np.ones((8, 16), np.int8),
                                        np.ones(0, np.float32), np.ones(8, np.float32)), [(0, 8)]),
    "int4-M0": (lambda: ops.matmul_int4(np.ones((0, 128), F16), _w4(8, 128), np.ones((8, 1), F16)), [(0, 8)]),
    "int4-N0": (lambda: ops.matmul_int4(np.ones((3, 128), F16), np.ones((0, 1, 32, 4), np.int32),
                                        np.ones((0, 1), F16)), [(3, 0)]),
    "quantize-M0": (lambda: ops.quantize_per_token(np.ones((0, 16), F16)), [(0, 16), (0,)]),
    "backward-M0": (lambda: ops.matmul_backward(np.ones((0, 8), F16), np.ones((0, 16), F16),
                                                np.ones((16, 8), F16)), [(0, 16), (16, 8)]),
    "backward-N0-nk": (lambda: ops.matmul_backward(np.ones((4, 0), F16), np.ones((4, 16), F16),
                                                   np.ones((0, 16), F16), b_layout="nk"), [(4, 16), (0, 16)]),
}


@pytest.mark.parametrize("case", list(EMPTY))
def test_empty_inputs_launch_nothing(launches, case):
    call, shapes = EMPTY[case]
    out = call()
    out = out if isinstance(out, tuple) else (out,)
    assert [tuple(o.shape) for o in out] == shapes
    assert all(not host(o).any() for o in out)        # empty, or (a gradient over nothing) zeros
    assert launches.launches == 0


def test_quantize_per_token_k0_scales_are_zero(launches):
    """K = 0: every row is empty, its scale 0 (as an all-zero row's), x_q [M, 0]; no launch."""
    x = kaiodsl.runtime.to_device(np.ones((5, 0), np.float32), kaiodsl.bf16)
    q, s = ops.quantize_per_token(x)
    assert tuple(q.shape) == (5, 0) and np.array_equal(host(s), np.zeros(5, np.float32))
    assert launches.launches == 0


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_quantize_per_token_nonfinite_rows(backend, rng, dtype):
    """A NaN row: scale NaN, x_q 0; an inf row: scale inf, x_q 0; other rows untouched -- kernel and
    reference agree (NaN compared as NaN: its bits are the hardware's)."""
    x = rng.standard_normal((7, 300)).astype(np.float32)
    x[1, 5] = np.nan                         # NaN in one thread's elements
    x[2, 7] = np.inf
    x[3, 9], x[3, 11] = -np.inf, np.nan      # both: NaN wins
    x[4, :] = np.nan
    x[5, 299] = np.nan                       # in the last thread's tail
    if dtype == "bf16":
        from opkit import bf16_values

        xv = bf16_values(x)
        arg = kaiodsl.runtime.to_device(xv, kaiodsl.bf16)
    else:
        arg = xv = x.astype(F16)
    q, s = ops.quantize_per_token(arg)
    q, s = host(q), host(s)
    rq, rs = ops.reference_quantize_per_token(np.asarray(xv, np.float32))
    assert np.array_equal(q, rq)
    assert np.array_equal(np.isnan(s), [False, True, False, True, True, True, False])
    assert np.array_equal(np.isnan(s), np.isnan(rs)) and np.array_equal(s[~np.isnan(s)], rs[~np.isnan(rs)])
    assert s[2] == np.inf and not q[1:6].any() and q[0].any() and q[6].any()


LAYOUT_SHAPES = [(32, 32, 32), (5, 24, 48), (37, 16, 64)]


@pytest.mark.parametrize("M,N,K", LAYOUT_SHAPES, ids=[f"{m}x{n}x{k}" for m, n, k in LAYOUT_SHAPES])
@pytest.mark.parametrize("layout", ["nk", "kn"])
def test_matmul_int8_b_layout(backend, rng, M, N, K, layout):
    """b [N, K] ("nk", a @ b.T) or [K, N] ("kn", a @ b), bit-exact, square shapes included."""
    a = rng.integers(-128, 128, (M, K), dtype=np.int8)
    b = rng.integers(-128, 128, (N, K) if layout == "nk" else (K, N), dtype=np.int8)
    got = ops.matmul_int8(a, b, 0.5, b_layout=layout)
    assert np.array_equal(got, ops.reference_matmul_int8(a, b, layout).astype(np.float32) * np.float32(0.5))
    dev = kaiodsl.runtime.to_device
    got_dev = ops.matmul_int8(dev(a), dev(b), 0.5, b_layout=layout)
    assert np.array_equal(got_dev.numpy(), got)


@pytest.mark.parametrize("layout", ["nk", "kn"])
def test_matmul_w8a8_b_layout(backend, rng, layout):
    M, N, K = 24, 24, 32
    a = rng.integers(-128, 128, (M, K), dtype=np.int8)
    w = rng.integers(-128, 128, (N, K) if layout == "nk" else (K, N), dtype=np.int8)
    act = rng.uniform(0.5, 1.5, M).astype(np.float32) * 1e-2
    ws = rng.uniform(0.5, 1.5, N).astype(np.float32) * 1e-2
    bias = rng.standard_normal(N).astype(np.float32)
    out = ops.matmul_w8a8(a, w, act, ws, bias=bias, out_dtype="f32", b_layout=layout)
    check_close(out, ops.reference_matmul_w8a8(a, w, act, ws, bias, layout), "f32")
