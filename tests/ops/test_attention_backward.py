"""ops.attention_backward against float64 numpy gradients, in the simulator and on the GPU."""

import numpy as np
import pytest

from test_attention import no_alloc  # noqa: F401  (fixture)

from kaiodsl.errors import ArgumentError
from kaiodsl.ops import BwdConfig
from kaiodsl.ops.attention import attention, attention_backward, reference_attention_backward


def _rel(a, b):
    return np.linalg.norm(np.asarray(a, np.float64) - b) / max(np.linalg.norm(b), 1e-30)


@pytest.mark.parametrize("B,H,Hkv,Sq,Sk,D,causal,view", [
    (1, 2, 1, 40, 37, 32, False, False),              # GQA 2/1: dk/dv summed over the group; ragged
    (1, 2, 2, 40, 23, 32, "bottom_right", False),     # Sq > Sk: 17 rows see no key (their P is 0)
    (1, 2, 1, 45, 70, 64, "top_left", True),          # [B, S, H, D] views
    (1, 1, 1, 20, 33, 128, True, False),
    (1, 2, 1, 17, 21, 256, True, False),             # d 256: dK and dV in two launches (registers)
])
def test_attention_backward_matches_float64(backend, rng, B, H, Hkv, Sq, Sk, D, causal, view):
    def make(shape):
        if view:
            b, h, s, d = shape
            return rng.standard_normal((b, s, h, d)).astype(np.float16).transpose(0, 2, 1, 3)
        return rng.standard_normal(shape).astype(np.float16)

    q, do = make((B, H, Sq, D)), make((B, H, Sq, D))
    k, v = make((B, Hkv, Sk, D)), make((B, Hkv, Sk, D))
    o, lse = attention(q, k, v, causal=causal, return_lse=True)
    grads = attention_backward(do, q, k, v, o, lse, causal=causal)
    want = reference_attention_backward(do, q, k, v, causal)
    for name, g, w in zip(("dq", "dk", "dv"), grads, want):
        assert g.shape == w.shape, name
        assert not np.isnan(g).any(), name
        assert _rel(g, w) < 3e-3, (name, _rel(g, w))


def test_attention_backward_deterministic(backend, rng):
    q, k, v, do = (rng.standard_normal((1, 2, 33, 32)).astype(np.float16) for _ in range(4))
    o, lse = attention(q, k, v, return_lse=True)
    a = attention_backward(do, q, k, v, o, lse)
    b = attention_backward(do, q, k, v, o, lse)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.view(np.uint16), y.view(np.uint16))


@pytest.mark.parametrize("bad,match", [
    ("lse_shape", "'lse' must be a contiguous f32"),
    ("do_shape", "'do' has shape"),
    ("o_dtype", "'o' has dtype f32"),
])
def test_attention_backward_validation(no_alloc, bad, match):
    q = k = v = np.ones((1, 1, 8, 32), np.float16)
    do = np.ones((1, 1, 7, 32), np.float16) if bad == "do_shape" else q
    o = q.astype(np.float32) if bad == "o_dtype" else q
    lse = np.zeros((1, 8), np.float32) if bad == "lse_shape" else np.zeros((1, 1, 8), np.float32)
    with pytest.raises(ArgumentError, match=match):
        attention_backward(do, q, k, v, o, lse)


def test_attention_backward_no_keys(backend, rng):
    """Sk = 0: nothing attends, every gradient is 0 (not uninitialised memory)."""
    q = rng.standard_normal((1, 1, 5, 32)).astype(np.float16)
    k = np.zeros((1, 1, 0, 32), np.float16)
    o, lse = attention(q, k, k, return_lse=True)
    assert (o == 0).all() and np.isneginf(lse).all()
    dq, dk, dv = attention_backward(q, q, k, k, o, lse)
    assert (dq == 0).all() and dk.shape == (1, 1, 0, 32)


@pytest.mark.parametrize("cfg", [BwdConfig(128, 64, 128, 32), BwdConfig(32, 16, 32, 64)])
def test_attention_backward_configs(backend, rng, cfg):
    """Other tilings (``config=``: 8 warps a block, wider query/key tiles) compute the same gradients."""
    q, do = (rng.standard_normal((1, 2, 70, 64)).astype(np.float16) for _ in range(2))
    k, v = (rng.standard_normal((1, 1, 150, 64)).astype(np.float16) for _ in range(2))
    o, lse = attention(q, k, v, causal="bottom_right", return_lse=True)
    grads = attention_backward(do, q, k, v, o, lse, causal="bottom_right", config=cfg)
    for name, g, w in zip(("dq", "dk", "dv"), grads, reference_attention_backward(do, q, k, v, "bottom_right")):
        assert _rel(g, w) < 3e-3, (name, cfg, _rel(g, w))


@pytest.mark.parametrize("cfg,match", [(BwdConfig(48, 24, 64, 32), "bq_kv=24"), (BwdConfig(512, 32, 64, 32), "bkv=512"),
                                       ("kv64", "expected a kaiodsl.ops.BwdConfig")])
def test_attention_backward_bad_config(no_alloc, cfg, match):
    q = np.ones((1, 1, 8, 32), np.float16)
    o, lse = q, np.zeros((1, 1, 8), np.float32)
    with pytest.raises(ArgumentError, match=match):
        attention_backward(q, q, q, q, o, lse, config=cfg)
