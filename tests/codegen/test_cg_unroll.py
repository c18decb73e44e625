"""The unroll pass: small constant-trip range() loops become straight-line code with the same results."""

import re

import numpy as np
import pytest

import kaiodsl
from kaiodsl import Ptr, f32, i32


def _branches(ptx):
    return [l for l in ptx.splitlines() if "bra" in l and not l.strip().startswith("//")]


@kaiodsl.kernel
def _nested(x: Ptr[f32], o: Ptr[f32], oi: Ptr[i32]):
    i = kaiodsl.thread_idx.x
    acc = 0.0
    for j in range(4):
        for m in range(0, 6, 2):
            acc += x[i * 4 + j] * kaiodsl.f32(m + 1)
    s = 0
    for j in range(10, 0, -3):   # negative step
        s += j * i
    none = 0
    for j in range(5, 5):        # zero trips
        none += 1
    o[i] = acc
    oi[i] = s + none


@pytest.fixture(params=["sim", pytest.param("cuda", marks=pytest.mark.gpu)])
def backend(request):
    from kaiodsl.runtime import backend as rt

    if request.param == "cuda" and not rt.gpu_available():
        pytest.skip("needs a CUDA driver and device")
    rt.reset()
    yield rt.set_backend(request.param)
    rt.reset()


def test_unrolled_loops_have_no_branches_and_same_results(backend):
    ptx = _nested.ptx()
    assert _branches(ptx) == []
    assert "setp" not in ptx
    x = np.random.default_rng(1).uniform(-1, 1, 4 * 32).astype(np.float32)
    o, oi = np.full(32, np.nan, np.float32), np.full(32, -12345, np.int32)
    _nested[1, 32](x, o, oi)
    X = x.reshape(32, 4).astype(np.float32)
    want = np.zeros(32, np.float32)
    for j in range(4):
        for m in (0, 2, 4):
            want = want + X[:, j] * np.float32(m + 1)
    np.testing.assert_array_equal(o, want)
    np.testing.assert_array_equal(oi, np.arange(32) * (10 + 7 + 4 + 1))


def test_unoptimized_ir_still_has_the_loop():
    assert "cbr" in _nested.ir(optimized=False)
    assert "cbr" not in _nested.ir()


@kaiodsl.kernel
def _not_unrolled(x: Ptr[i32], o: Ptr[i32], n: i32):
    i = kaiodsl.thread_idx.x
    a = 0
    for j in range(100):          # too many trips
        a += x[j % 8]
    b = 0
    for j in range(n):            # run-time bound
        b += j
    c = 0
    for j in range(6):            # inner control flow: a break
        if x[j] > 50:
            break
        c += x[j]
    o[i] = a + b + c


def test_loops_that_must_stay_loops(backend):
    ptx = _not_unrolled.ptx()
    assert len(_branches(ptx)) >= 3
    x = np.random.default_rng(2).integers(0, 100, 8).astype(np.int32)
    o = np.full(32, -1, np.int32)
    _not_unrolled[1, 32](x, o, 7)
    c = 0
    for v in x[:6]:
        if v > 50:
            break
        c += int(v)
    assert (o == sum(int(x[j % 8]) for j in range(100)) + 21 + c).all()


def test_unroll_limits_trip_count():
    from kaiodsl.passes import unroll

    @kaiodsl.kernel
    def k(o: Ptr[i32]):
        s = 0
        for j in range(unroll.MAX_TRIP):
            s += j * kaiodsl.thread_idx.x
        t = 0
        for j in range(unroll.MAX_TRIP + 1):
            t += j * kaiodsl.thread_idx.x
        o[kaiodsl.thread_idx.x] = s + t

    ptx = k.ptx()
    assert len(_branches(ptx)) == 2       # the second loop stays: its exit test and its back edge
    assert len([l for l in ptx.splitlines() if re.match(r"^\$loop\d+:", l)]) == 1
