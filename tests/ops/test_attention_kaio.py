"""KAIO's attention names: attention_tc[_causal] (f16 -> f32, seq_k <= 384) and attention_flash[_causal] (f32,
rel err <= 1e-5 vs float64) with its backward, in the simulator and on the GPU."""

import numpy as np
import pytest

from test_attention import no_alloc  # noqa: F401  (fixture)

from kaiodsl.errors import ArgumentError
from kaiodsl.ops.attention import reference_attention, reference_attention_backward
from kaiodsl.ops.attention_kaio import (attention_flash, attention_flash_backward, attention_flash_causal, attention_tc,
                                attention_tc_causal)


def _rel(a, b):
    return np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_tc(backend, rng, causal):
    q, k, v = (rng.standard_normal(s).astype(np.float16) for s in ((37, 64), (45, 64), (45, 64)))
    o = (attention_tc_causal if causal else attention_tc)(q, k, v)
    want, _ = reference_attention(q[None, None], k[None, None], v[None, None], "top_left" if causal else False)
    assert o.dtype == np.float32 and o.shape == (37, 64)
    assert _rel(o, want[0, 0]) < 2e-3


def test_attention_tc_rejects_long_keys(no_alloc):
    q = np.ones((8, 64), np.float16)
    k = np.ones((385, 64), np.float16)
    with pytest.raises(ArgumentError, match="seq_k=385 is above this op's 384"):
        attention_tc(q, k, k)


@pytest.mark.parametrize("causal,Sq,Sk,D", [(False, 40, 37, 32), (True, 33, 70, 24), (True, 50, 50, 64),
                                           (False, 9, 40, 256)])
def test_attention_flash_f32_accurate(backend, rng, causal, Sq, Sk, D):
    q, do = (rng.standard_normal((Sq, D)).astype(np.float32) for _ in range(2))
    k, v = (rng.standard_normal((Sk, D)).astype(np.float32) for _ in range(2))
    o, lse = (attention_flash_causal if causal else attention_flash)(q, k, v, return_lse=True)
    c = "top_left" if causal else False
    want, want_lse = reference_attention(q[None, None], k[None, None], v[None, None], c)
    assert _rel(o, want[0, 0]) < 1e-5
    np.testing.assert_allclose(lse, want_lse[0, 0], rtol=1e-5, atol=1e-5)
    grads = attention_flash_backward(do, q, k, v, o, lse, causal=causal)
    wants = reference_attention_backward(do[None, None], q[None, None], k[None, None], v[None, None], c)
    for g, w in zip(grads, wants):
        assert _rel(g, w[0, 0]) < 1e-5


def test_attention_flash_validation(no_alloc):
    q = np.ones((8, 32), np.float16)
    with pytest.raises(ArgumentError, match="'q' has dtype f16"):
        attention_flash(q, q, q)
