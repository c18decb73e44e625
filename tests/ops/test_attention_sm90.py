"""The Hopper flash-attention forward (ops/attention_sm90.py) through ops.attention, on both backends.

Both backends compile for sm_90a (the simulator through KAIODSL_ARCH). The simulator runs small
ragged shapes (a few 384-thread blocks each) against the float64 numpy reference: head dims 64 and
128, f16 and bf16, causal both ways (with rows that see no key), GQA, and small key tiles so that the
K/V rings wrap many times. The GPU runs S = 1000..8192 with B*H = 16..64 against a float64 torch
reference per head, and a bitwise determinism check. Outputs are poisoned with NaN."""

import math

import numpy as np
import pytest

import kaiodsl.ops as ops
from kaiodsl.errors import ArgumentError
from kaiodsl.ops import attention_sm90
from kaiodsl.ops.attention import reference_attention
from kaiodsl.ops.attention_sm90 import Sm90AttnConfig

from opkit import host, make, record

TOL = {"f16": 2e-3, "bf16": 1.5e-2}


@pytest.fixture
def used(monkeypatch):
    """The configs the sm_90a kernel ran with in this test (a list, one entry per launch)."""
    return record(monkeypatch, attention_sm90, "launch", lambda args: args[-2])


def _inputs(rng, B, H, Hkv, Sq, Sk, D, dtype):
    """(q, k, v) as op arguments and their exact float64 values."""
    q, q64 = make(rng.standard_normal((B, H, Sq, D)), dtype)
    k, k64 = make(rng.standard_normal((B, Hkv, Sk, D)), dtype)
    v, v64 = make(rng.standard_normal((B, Hkv, Sk, D)), dtype)
    return (q, k, v), (q64.reshape(B, H, Sq, D), k64.reshape(B, Hkv, Sk, D), v64.reshape(B, Hkv, Sk, D))


def _poisoned(like, shape, dtype):
    nan = np.full(shape, np.nan, np.float32)
    return make(nan, dtype)[0] if not isinstance(like, np.ndarray) else nan.astype(np.float16)


def _check(o, lse, ref, causal, dtype):
    want, want_lse = reference_attention(*ref, causal)
    o = host(o).astype(np.float64).reshape(want.shape)
    lse = host(lse)
    assert not np.isnan(o).any() and not np.isnan(lse).any()
    err = np.linalg.norm(o - want) / np.linalg.norm(want)
    assert err < TOL[dtype], err
    empty = np.isneginf(want_lse)
    np.testing.assert_array_equal(np.isneginf(lse), empty)       # a row that sees no key: lse -inf, o 0
    assert (o[empty] == 0).all()
    np.testing.assert_allclose(lse[~empty], want_lse[~empty], rtol=2e-4, atol=2e-4)


SIM_CASES = [  # B, H, Hkv, Sq, Sk, D, causal, dtype, config
    (1, 2, 2, 150, 150, 64, False, "f16", None),                        # ragged: 2 query tiles, key padding
    (1, 2, 2, 150, 150, 128, True, "bf16", None),                       # D = 128: two column blocks
    (1, 4, 2, 150, 150, 64, True, "f16", Sm90AttnConfig(bn=64)),        # GQA 4/2, diagonal tiles
    (1, 2, 1, 100, 230, 128, "bottom_right", "f16", Sm90AttnConfig(bn=64, stages=3)),
    (1, 2, 2, 200, 90, 64, "bottom_right", "bf16", None),               # Sq > Sk: rows 0..109 see no key
    (2, 1, 1, 70, 300, 128, False, "f16", Sm90AttnConfig(bn=32)),      # 10 key tiles: the rings wrap 5 times
    (1, 2, 2, 150, 200, 64, True, "bf16", Sm90AttnConfig(bn=48, overlap=False)),     # the serial schedule
    (1, 2, 1, 130, 170, 128, "bottom_right", "f16", Sm90AttnConfig(bn=176, stages=1)),
    (1, 2, 2, 150, 300, 64, True, "f16", Sm90AttnConfig(bn=32, pingpong=True)),     # consumers alternate
    (1, 2, 1, 200, 90, 128, "bottom_right", "bf16", Sm90AttnConfig(bn=64, pingpong=True)),
    (2, 4, 1, 300, 300, 64, True, "f16", Sm90AttnConfig(bn=64, stages=3, pingpong=True)),  # MQA, 3 q tiles
    (1, 2, 2, 150, 350, 128, "bottom_right", "bf16", Sm90AttnConfig(bn=160, pingpong=True)),  # D 128's default tile
    (2, 3, 3, 140, 300, 64, False, "f16", Sm90AttnConfig(bn=64, stages=1)),          # a one-slot ring, 5 passes
    (1, 4, 2, 260, 260, 64, True, "bf16", Sm90AttnConfig(bn=64, persistent=False)),  # one block a unit
    # the dynamic schedule: 3 blocks (the simulator's SMs) claim the other units from the counter
    (2, 4, 2, 300, 300, 64, True, "f16", Sm90AttnConfig(bn=64, pingpong=True, dynamic=True)),
    (1, 3, 1, 200, 330, 128, "bottom_right", "bf16", Sm90AttnConfig(bn=160, pingpong=True, dynamic=True)),
    (1, 2, 2, 260, 140, 64, False, "f16", Sm90AttnConfig(bn=48, stages=1, overlap=False, dynamic=True)),
]


@pytest.mark.parametrize("B,H,Hkv,Sq,Sk,D,causal,dtype,config", SIM_CASES)
def test_sm90_attention_matches_float64(sm90, used, rng, B, H, Hkv, Sq, Sk, D, causal, dtype, config):
    args, ref = _inputs(rng, B, H, Hkv, Sq, Sk, D, dtype)
    out = _poisoned(args[0], (B, H, Sq, D), dtype)
    o, lse = ops.attention(*args, causal=causal, return_lse=True, out=out, config=config)
    assert o is out and len(used) == 1
    _check(o, lse, ref, causal, dtype)


def test_sm90_attention_dynamic_schedule_leaves_its_counters_zero(sm90, used, rng):
    """The dynamic schedule draws exactly one ticket a unit plus one a block and the last block out
    resets the counters: a second launch computes every unit again (same bits), and the shared ticket
    buffer is zero after each."""
    from kaiodsl.ops import _common

    cfg = Sm90AttnConfig(bn=64, pingpong=True, dynamic=True)
    args, ref = _inputs(rng, 1, 4, 4, 270, 270, 64, "f16")
    outs = []
    for _ in range(2):
        out = _poisoned(args[0], (1, 4, 270, 64), "f16")
        outs.append(host(ops.attention(*args, causal=True, out=out, config=cfg)))
        assert all(not np.any(host(b)) for b in _common.TICKETS.values())
    np.testing.assert_array_equal(outs[0], outs[1])
    _check(outs[1], ops.attention(*args, causal=True, return_lse=True, config=cfg)[1], ref, True, "f16")


@pytest.mark.parametrize("D,causal,dtype,lazy", [(64, False, "f16", True), (128, True, "bf16", True),
                                                 (64, "bottom_right", "f16", False)])
def test_sm90_attention_rescale_when_the_max_jumps(sm90, used, rng, D, causal, dtype, lazy):
    """Keys whose scores grow tile after tile (scaled by 1 + 3 j in key tile j: the row max rises by
    about 2^10 a tile) and one that dwarfs every other: the lazy softmax has to move its max and rescale
    O in the middle of the rows (and keep p <= 2^8 between moves), and still match float64."""
    B, H, Sq, Sk, bn = 1, 2, 130, 256, 32
    cfg = Sm90AttnConfig(bn=bn, pingpong=True, lazy=lazy)
    grow = np.repeat(1.0 + 3.0 * np.arange(Sk // bn), bn)
    q, q64 = make(rng.standard_normal((B, H, Sq, D)), dtype)
    kr = rng.standard_normal((B, H, Sk, D)) * grow[None, None, :, None] / grow.max()
    kr[:, :, 200] *= 3.0                                     # one key a row's max jumps to late
    k, k64 = make(kr * 3.0, dtype)
    v, v64 = make(rng.standard_normal((B, H, Sk, D)), dtype)
    out = _poisoned(q, (B, H, Sq, D), dtype)
    o, lse = ops.attention(q, k, v, causal=causal, return_lse=True, out=out, config=cfg)
    assert used == [cfg]
    _check(o, lse, (q64.reshape(B, H, Sq, D), k64.reshape(B, H, Sk, D), v64.reshape(B, H, Sk, D)), causal, dtype)


def test_sm90_attention_scale_and_no_lse(sm90, used, rng):
    """An explicit scale; without return_lse the op returns the output alone."""
    args, ref = _inputs(rng, 1, 1, 1, 130, 140, 64, "f16")
    o = ops.attention(*args, scale=0.3)
    want, _ = reference_attention(*ref, scale=0.3)
    assert len(used) == 1
    assert np.linalg.norm(host(o) - want) / np.linalg.norm(want) < TOL["f16"]


def test_sm90_attention_size1_views(sm90, used, rng):
    """[B, S, H, D] storage with H = 1 seen as [B, H, S, D]: contiguous, with odd strides on the size-1
    head dimension, which the tensor maps must not see."""
    store = [rng.standard_normal((1, 90, 1, 64)).astype(np.float16) for _ in range(3)]
    q, k, v = (x.transpose(0, 2, 1, 3) for x in store)
    o, lse = ops.attention(q, k, v, causal=True, return_lse=True)
    assert len(used) == 1
    _check(o, lse, (q, k, v), True, "f16")


def test_sm90_attention_chosen_only_where_it_applies(sm90, used, rng):
    """The sm_90a kernel runs by default for D 64/128 and Sq > 64; other shapes, an f32 output and an
    explicit FwdConfig keep the sm_80 kernel."""
    from kaiodsl.ops.attention_fwd import FwdConfig

    q = rng.standard_normal((1, 1, 65, 64)).astype(np.float16)
    ops.attention(q, q, q)
    assert len(used) == 1
    ops.attention(q[:, :, :64], q, q)                                           # Sq = 64: decode kernels
    ops.attention(q, q, q, out_dtype="f32")
    ops.attention(q, q, q, config=FwdConfig(bq=64, bk=64, warps=4))
    q32 = rng.standard_normal((1, 1, 65, 32)).astype(np.float16)
    ops.attention(q32, q32, q32)
    assert len(used) == 1


def test_sm90_attention_config_errors(sm90, rng, monkeypatch):
    """An Sm90AttnConfig that cannot run is an ArgumentError naming why, before any allocation."""
    import importlib

    def no_alloc(*args, **kwargs):
        raise AssertionError("ops.attention allocated an output although its arguments are invalid")

    monkeypatch.setattr(importlib.import_module("kaiodsl.ops.attention"), "new_like", no_alloc)
    q = rng.standard_normal((1, 1, 70, 32)).astype(np.float16)
    with pytest.raises(ArgumentError, match="D=32 is not 64 or 128"):
        ops.attention(q, q, q, config=Sm90AttnConfig())
    q = rng.standard_normal((1, 2, 70, 64)).astype(np.float16)
    bshd = rng.standard_normal((1, 70, 2, 64)).astype(np.float16).transpose(0, 2, 1, 3)
    with pytest.raises(ArgumentError, match="contiguous"):
        ops.attention(q, q, bshd, config=Sm90AttnConfig())
    with pytest.raises(ArgumentError, match="bytes of shared memory"):
        ops.attention(q, q, q, config=Sm90AttnConfig(bn=256, stages=4))
    with pytest.raises(ArgumentError, match="bn must be a multiple of 16"):
        Sm90AttnConfig(bn=24)
    with pytest.raises(ArgumentError, match="pingpong=True needs overlap=True"):
        Sm90AttnConfig(overlap=False, pingpong=True)
    with pytest.raises(ArgumentError, match="lazy must be a bool, got 'yes'"):
        Sm90AttnConfig(lazy="yes")
    with pytest.raises(ArgumentError, match="dynamic must be a bool, got 1"):
        Sm90AttnConfig(dynamic=1)
    with pytest.raises(ArgumentError, match="dynamic=True needs persistent=True"):
        Sm90AttnConfig(persistent=False, dynamic=True)
    monkeypatch.setenv("KAIODSL_ARCH", "sm_80")
    with pytest.raises(ArgumentError, match="not sm_90a"):
        ops.attention(q, q, q, config=Sm90AttnConfig())


# -- GPU tier ----------------------------------------------------------------------------------------

GPU_SHAPES = [  # B, H, Hkv, Sq, Sk, D, causal
    (2, 8, 8, 1024, 1024, 64, False), (2, 16, 4, 2048, 2048, 128, True), (1, 16, 16, 4096, 4096, 128, False),
    (1, 16, 8, 8192, 8192, 64, True), (4, 16, 16, 1000, 1000, 128, True), (1, 16, 16, 3000, 5000, 128, "bottom_right"),
    (2, 32, 32, 1024, 1024, 128, False)]


def _torch_reference(torch, q, k, v, causal):
    """float64 (o, lse) one head at a time (an S x S float64 score matrix per head)."""
    B, H, Sq, D = q.shape
    Hkv, Sk = k.shape[1], k.shape[2]
    o = torch.empty(q.shape, dtype=torch.float64, device=q.device)
    lse = torch.empty((B, H, Sq), dtype=torch.float64, device=q.device)
    shift = Sk - Sq if causal == "bottom_right" else 0
    keep = None
    if causal:
        keep = torch.arange(Sk, device=q.device)[None, :] <= torch.arange(Sq, device=q.device)[:, None] + shift
    for b in range(B):
        for h in range(H):
            s = q[b, h].double() @ k[b, h // (H // Hkv)].double().T / math.sqrt(D)
            if keep is not None:
                s = s.masked_fill(~keep, -math.inf)
            lse[b, h] = torch.logsumexp(s, -1)
            o[b, h] = torch.softmax(s, -1) @ v[b, h // (H // Hkv)].double()
    return o, lse


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("B,H,Hkv,Sq,Sk,D,causal", GPU_SHAPES)
def test_sm90_attention_gpu_large(torch_sm90, monkeypatch, used, B, H, Hkv, Sq, Sk, D, causal, dtype):
    torch = torch_sm90
    dt = getattr(torch, dtype)
    q = torch.randn(B, H, Sq, D, device="cuda", dtype=dt)
    k, v = (torch.randn(B, Hkv, Sk, D, device="cuda", dtype=dt) for _ in range(2))
    out = torch.full_like(q, float("nan"))
    o, lse = ops.attention(q, k, v, causal=causal, return_lse=True, out=out)
    torch.cuda.synchronize()
    assert len(used) == 1
    ref, ref_lse = _torch_reference(torch, q, k, v, causal)
    assert not torch.isnan(o).any()
    err = (o.double() - ref).norm().item() / ref.norm().item()
    assert err < (4e-3 if dtype == "float16" else 2e-2), err
    assert (lse.double() - ref_lse).abs().max().item() < 1e-3


GPU_CONFIGS = [Sm90AttnConfig(), Sm90AttnConfig(overlap=False), Sm90AttnConfig(pingpong=True),
               Sm90AttnConfig(bn=64, stages=3), Sm90AttnConfig(bn=176)]


@pytest.mark.gpu
@pytest.mark.parametrize("config", GPU_CONFIGS, ids=str)
@pytest.mark.parametrize("D,causal", [(64, False), (128, True), (128, "bottom_right")])
def test_sm90_attention_gpu_configs(torch_sm90, used, config, D, causal):
    """Every schedule and tile option against float64 at a ragged shape with GQA."""
    torch = torch_sm90
    q = torch.randn(2, 8, 1500, D, device="cuda", dtype=torch.float16)
    k, v = (torch.randn(2, 2, 1700, D, device="cuda", dtype=torch.float16) for _ in range(2))
    o, lse = ops.attention(q, k, v, causal=causal, return_lse=True, out=torch.full_like(q, float("nan")),
                           config=config)
    torch.cuda.synchronize()
    assert used == [config]
    ref, ref_lse = _torch_reference(torch, q, k, v, causal)
    assert (o.double() - ref).norm().item() / ref.norm().item() < 4e-3
    assert (lse.double() - ref_lse).abs().max().item() < 1e-3


@pytest.mark.gpu
def test_sm90_attention_gpu_deterministic(torch_sm90, used):
    torch = torch_sm90
    q, k, v = (torch.randn(2, 16, 4096, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    first = ops.attention(q, k, v, causal=True, return_lse=True)
    for _ in range(3):
        again = ops.attention(q, k, v, causal=True, return_lse=True)
        assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert len(used) == 4
