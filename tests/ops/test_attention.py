"""ops.attention (forward, split-KV decode) against a float64 numpy reference, in the simulator and on the GPU.

Tiny shapes (the simulator is slow) with sequence lengths that are not multiples of the tiles, small
configs so that several query and key blocks run; outputs are poisoned (``out=`` filled with NaN)."""

import numpy as np
import pytest

from kaiodsl.errors import ArgumentError
from kaiodsl.ops.attention import attention, reference_attention
from kaiodsl.ops.attention_fwd import FwdConfig

@pytest.fixture
def no_alloc(no_launch, monkeypatch):
    """no_launch, and any output allocation by the attention ops fails the test."""
    import importlib

    def fail(*args, **kwargs):
        raise AssertionError("an attention op allocated an output although its arguments are invalid")

    for m in ("attention", "attention_kaio"):
        monkeypatch.setattr(importlib.import_module(f"kaiodsl.ops.{m}"), "new_like", fail)
    yield


SMALL = FwdConfig(bq=32, bk=16, warps=2, stages=2)      # 2 query blocks and several key blocks on tiny shapes
SMALL3 = FwdConfig(bq=16, bk=32, warps=1, stages=3)


def inputs(rng, B, H, Hkv, Sq, Sk, D, dtype=np.float16):
    q = rng.standard_normal((B, H, Sq, D)).astype(dtype)
    k = rng.standard_normal((B, Hkv, Sk, D)).astype(dtype)
    v = rng.standard_normal((B, Hkv, Sk, D)).astype(dtype)
    return q, k, v


def check(o, lse, q, k, v, causal, seqlens_k=None, tol=2e-3):
    want, want_lse = reference_attention(q, k, v, causal, seqlens_k=seqlens_k)
    o = np.asarray(o, np.float64)
    assert not np.isnan(o).any() and not np.isnan(lse).any()
    err = np.linalg.norm(o - want) / max(np.linalg.norm(want), 1e-30)
    assert err < tol, err
    empty = np.isneginf(want_lse)
    np.testing.assert_array_equal(np.isneginf(lse), empty)          # no visible key: lse = -inf ...
    assert (o[empty] == 0).all()                                     # ... and o = 0
    np.testing.assert_allclose(lse[~empty], want_lse[~empty], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("B,H,Hkv,Sq,Sk,D,causal,cfg", [
    (1, 2, 2, 40, 37, 32, False, SMALL),                 # ragged Sq and Sk
    (1, 2, 1, 45, 70, 64, "top_left", SMALL),            # GQA 2/1, Sq < Sk
    (1, 2, 2, 40, 23, 32, "bottom_right", SMALL),        # Sq > Sk: the first 17 rows see no key
    (2, 1, 1, 19, 19, 128, True, SMALL3),                # causal=True, 3-stage ring, one warp
])
def test_attention_matches_float64(backend, rng, B, H, Hkv, Sq, Sk, D, causal, cfg):
    q, k, v = inputs(rng, B, H, Hkv, Sq, Sk, D)
    out = np.full(q.shape, np.nan, np.float16)
    o, lse = attention(q, k, v, causal=causal, return_lse=True, out=out, config=cfg)
    assert o is out
    check(o, lse, q, k, v, causal)


def test_attention_default_config(backend, rng):
    """The shipped 128-row, 8-warp config, MQA (4 query heads on one K/V head)."""
    q, k, v = inputs(rng, 1, 4, 1, 130, 70, 32)
    o, lse = attention(q, k, v, causal="bottom_right", return_lse=True)
    check(o, lse, q, k, v, "bottom_right")


def test_attention_strided_views_bshd(backend, rng):
    """[B, S, H, D] storage as [B, H, S, D] views (no copy), output into a [B, S, H, D] view too."""
    B, S, H, D = 2, 33, 2, 32
    store = [rng.standard_normal((B, S, H, D)).astype(np.float16) for _ in range(3)]
    q, k, v = (x.transpose(0, 2, 1, 3) for x in store)
    obuf = np.full((B, S, H, D), np.nan, np.float16)
    o, lse = attention(q, k, v, causal=True, return_lse=True, out=obuf.transpose(0, 2, 1, 3), config=SMALL)
    check(obuf.transpose(0, 2, 1, 3), lse, q, k, v, True)


def test_attention_bf16_scale(backend, rng):
    """bf16 (device arrays: numpy has no bfloat16) with an explicit scale, GQA 2/1."""
    import kaiodsl
    from kaiodsl.runtime import to_device

    q, k, v = inputs(rng, 1, 2, 1, 20, 30, 32, np.float32)
    qd, kd, vd = (to_device(x, kaiodsl.bf16) for x in (q, k, v))
    o, lse = attention(qd, kd, vd, scale=0.3, return_lse=True, config=SMALL)
    o = _from_bf16(o.numpy())
    want, want_lse = reference_attention(_bf16(q), _bf16(k), _bf16(v), scale=0.3)
    assert np.linalg.norm(o - want) / np.linalg.norm(want) < 1e-2
    np.testing.assert_allclose(lse.numpy(), want_lse, rtol=1e-4, atol=1e-4)


def test_attention_head_stride_0(backend, rng):
    """K/V broadcast over the heads with a head stride of 0 (no copy)."""
    q, k1, v1 = inputs(rng, 1, 3, 1, 20, 30, 32)
    k, v = (np.broadcast_to(x, (1, 3, 30, 32)) for x in (k1, v1))
    o, lse = attention(q, k, v, return_lse=True, config=SMALL)
    check(o, lse, q, k, v, False)


def _bf16(x):
    b = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16
    return b.astype(np.uint32).view(np.float32).astype(np.float64)


def _from_bf16(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


@pytest.mark.parametrize("Sq,Sk,causal,lens,view,splits,D", [
    (1, 300, False, None, False, 5, 64),               # decode: one query row, the GQA group packed as rows
    (1, 300, "bottom_right", [0, 170], True, 5, 64),   # padded cache (batch 0: no key at all), [B, S, H, D] views
    (3, 300, "bottom_right", [0, 170], False, 5, 64),  # 3 rows: not packed, the diagonal aligned to each length
    # 22 splits (more than the merge's 16 loads a step) and 3 column chunks; batch 1's last 10 splits see no key
    (1, 700, False, [700, 380], False, 40, 96),
])
def test_attention_decode_split_kv(backend, rng, Sq, Sk, causal, lens, view, splits, D):
    B = 2
    q, k, v = inputs(rng, B, 4, 2, Sq, Sk, D)
    if view:
        q, k, v = (np.ascontiguousarray(x.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3) for x in (q, k, v))
    seq = None if lens is None else np.array(lens, np.int32)
    o, lse = attention(q, k, v, causal=causal, return_lse=True, seqlens_k=seq, num_splits=splits)
    check(o, lse, q, k, v, causal, seqlens_k=seq)


@pytest.mark.parametrize("D", [96, 256])
def test_attention_other_head_dims_run(backend, rng, D):
    q, k, v = inputs(rng, 1, 1, 1, 17, 21, D)
    o, lse = attention(q, k, v, causal=True, return_lse=True)
    check(o, lse, q, k, v, True)


def test_attention_deterministic(backend, rng):
    q, k, v = inputs(rng, 1, 1, 1, 40, 50, 32)
    a = attention(q, k, v, config=SMALL)
    b = attention(q, k, v, config=SMALL)
    np.testing.assert_array_equal(a.view(np.uint16), b.view(np.uint16))


@pytest.mark.parametrize("kwargs,match", [
    (dict(q=(1, 2, 8, 48), k=(1, 1, 8, 48), v=(1, 1, 8, 48)), "head dim D=48"),
    (dict(k=(1, 3, 8, 32), v=(1, 3, 8, 32)), "multiple of Hkv=3"),
    (dict(v=(1, 1, 9, 32)), "'v' has shape"),
    (dict(causal="diagonal"), "causal must be"),
    (dict(scale=-1.0), "scale must be"),
    (dict(q_dtype=np.float32), "'q' has dtype f32"),
    (dict(q_stride=True), "unit stride on the head dimension"),
    (dict(seqlens_k=np.zeros(3, np.int32)), "'seqlens_k' has 3 elements"),
])
def test_attention_validation(no_alloc, kwargs, match):
    q = np.ones(kwargs.pop("q", (1, 2, 8, 32)), kwargs.pop("q_dtype", np.float16))
    k = np.ones(kwargs.pop("k", (1, 1, 8, 32)), np.float16)
    v = np.ones(kwargs.pop("v", (1, 1, 8, 32)), np.float16)
    if kwargs.pop("q_stride", False):
        q = np.ones((1, 2, 32, 8), np.float16).transpose(0, 1, 3, 2)
    with pytest.raises(ArgumentError, match=match):
        attention(q, k, v, **kwargs)


def _attention_kernels():
    import importlib

    fw = importlib.import_module("kaiodsl.ops.attention_fwd")
    bw = importlib.import_module("kaiodsl.ops.attention_bwd")
    rows = ("Sq", "qss", "kss", "vss")
    for d in (64, 128):
        yield f"fwd-d{d}", fw.forward_kernel(d, "f16", fw.fwd_config(d, 4096), True, "f16", 0), rows + ("oss",)
        yield f"fwd-split-d{d}", fw.forward_kernel(d, "f16", fw.fwd_config(d, 1), False, "f32", 2), rows + ("oss",)
        yield f"dkdv-d{d}", bw.dkdv_kernel(d, "f16", bw.bwd_config(d), True), rows + ("Sk", "doss")
        yield f"dq-d{d}", bw.dq_kernel(d, "f16", bw.bwd_config(d), False), rows + ("doss",)
    yield "combine", fw.combine_kernel(128, "bf16"), ("oss",)


@pytest.mark.parametrize("label,kernel,names", list(_attention_kernels()), ids=lambda x: x if isinstance(x, str)
                         else "")
def test_attention_kernels_use_64_bit_offsets(label, kernel, names):
    """Every row stride and sequence length that multiplies a block-derived index enters 64-bit arithmetic
    (test_offsets64's PTX dataflow check: B H S D passes 2^31 on big inputs; the simulator cannot hold them)."""
    from test_offsets64 import offsets_problems

    assert offsets_problems(kernel.ptx(), names) == []
