"""examples/hopper_gemm.py: TMA loads on mbarriers + wgmma, exact on both backends (ragged M, N, K); bad
shapes refused."""

import os
import sys

import numpy as np
import pytest

import kaiodsl

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
import hopper_gemm  # noqa: E402

sys.path.pop(0)


@pytest.mark.parametrize("m,n,k", [(64, 64, 64), (128, 64, 192), (100, 72, 200)])
def test_hopper_gemm_exact(hopper, rng, m, n, k):
    a = rng.integers(-3, 4, (m, k)).astype(np.float16)
    b = rng.integers(-3, 4, (n, k)).astype(np.float16)
    out = np.full((m, n), np.nan, np.float32)
    hopper_gemm.gemm(a, b, out)
    np.testing.assert_array_equal(out, a.astype(np.float64) @ b.astype(np.float64).T)


@pytest.mark.gpu
@pytest.mark.parametrize("m,n,k", [(1024, 512, 2048)])
def test_hopper_gemm_large_gpu(hopper, rng, m, n, k):
    if hopper.name != "cuda":
        pytest.skip("large shapes run on the GPU only")
    a = rng.standard_normal((m, k)).astype(np.float16)
    b = rng.standard_normal((n, k)).astype(np.float16)
    out = hopper_gemm.gemm(a, b)
    want = a.astype(np.float64) @ b.astype(np.float64).T
    assert np.linalg.norm(out - want) / np.linalg.norm(want) < 1e-5


@pytest.mark.parametrize("shape_a,shape_b,msg", [((64, 100), (64, 100), "K=100 must be a positive multiple of 8"),
                                                 ((64, 64), (64, 128), r"b.shape\[1\]=128 must equal")])
def test_hopper_gemm_bad_shapes(shape_a, shape_b, msg):
    with pytest.raises(kaiodsl.ArgumentError, match=msg):
        hopper_gemm.gemm(np.zeros(shape_a, np.float16), np.zeros(shape_b, np.float16))


def test_example_run_quick():
    assert "exact" in hopper_gemm.run(quick=True)
