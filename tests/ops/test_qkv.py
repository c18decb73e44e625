"""Fused QKV projections (f16/bf16, W8A16, W4A16) against float64 references from the dequantized
weights: GQA shapes, ragged M and N, both layouts, both RoPE conventions, bias, positions."""

import importlib

import numpy as np
import pytest

import kaiodsl
import kaiodsl.runtime
from kaiodsl import ops
from kaiodsl.errors import ArgumentError
from kaiodsl.ops.matmul_w8a16 import dequantize_w8

from opkit import bf16_values, check_close, make
from qkvkit import poison_outputs

qmod = importlib.import_module("kaiodsl.ops.qkv")
dev = kaiodsl.runtime.to_device


@pytest.fixture
def poison(monkeypatch):
    poison_outputs(monkeypatch, qmod)


def _weights(rng, kind, dt, Ns, K, gs=64, zeros=True):
    """(the op's weight arguments, the float weights the reference uses, extra kwargs)."""
    to = (lambda a: dev(a)) if dt == "bf16" else (lambda a: a)
    if kind == "f16":
        ws = [make(rng.standard_normal((n, K)) * 0.1, dt) for n in Ns]
        return [w for w, _ in ws], [v for _, v in ws], {}
    if kind == "int8":
        qs = [rng.integers(-128, 128, (n, K), dtype=np.int8) for n in Ns]
        ss = [(rng.uniform(0.5, 1.5, n) * 1e-2).astype(np.float32) for n in Ns]
        return [to(q) for q in qs] + [to(s) for s in ss], [dequantize_w8(q, s) for q, s in zip(qs, ss)], {}
    qs = [rng.integers(0, 16, (n, K), dtype=np.uint8) for n in Ns]
    ss = [rng.uniform(0.5, 1.5, (n, K // gs)) * 1e-1 for n in Ns]
    ss = [bf16_values(s) if dt == "bf16" else s.astype(np.float16) for s in ss]
    zs = [rng.integers(0, 16, (n, K // gs), dtype=np.uint8) for n in Ns] if zeros else None
    ref = [ops.dequantize(q, s, None if zs is None else zs[i], gs, np.float32 if dt == "bf16" else np.float16)
           for i, (q, s) in enumerate(zip(qs, ss))]
    sarg = [dev(s, kaiodsl.bf16) for s in ss] if dt == "bf16" else ss
    kw = dict(group_size=gs, zeros=None if zs is None else [to(z) for z in zs])
    return [to(ops.pack_int4(q)) for q in qs] + sarg, ref, kw


OP = {"f16": ops.qkv_project, "int8": ops.qkv_project_int8, "int4": ops.qkv_project_int4}


def _tables(rng, P, D):
    ang = rng.uniform(0, 2 * np.pi, (P, D // 2))
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def _run(rng, kind, dt, B, S, K, H, Hkv, D, layout="mn", rope_style=None, bias=False, positions=False,
         x3d=True, out_dtype=None, config=None, gs=64, zeros=True):
    Ns = (H * D, Hkv * D, Hkv * D)
    xs = rng.standard_normal((B, S, K) if x3d else (B * S, K))
    x, xv = make(xs, dt)
    args, wref, kw = _weights(rng, kind, dt, Ns, K, gs, zeros)
    to = (lambda a: dev(a)) if dt == "bf16" else (lambda a: a)
    if layout == "bhsd" or rope_style:
        kw["head_dim"] = D
    if layout == "bhsd":
        kw["layout"] = "bhsd"
        if not x3d:
            kw["seq_len"] = S
    elif not x3d and rope_style:
        kw["seq_len"] = S
    ref_kw = dict(layout=layout, head_dim=D, seq_len=S)
    if rope_style:
        P = S + 5
        cos, sin = _tables(rng, P, D)
        kw.update(rope=(to(cos), to(sin)), rope_style=rope_style)
        ref_kw.update(rope=(cos, sin), rope_style=rope_style)
        if positions:
            pos = rng.integers(0, P, B * S).astype(np.int32)
            kw["positions"] = to(pos)
            ref_kw["positions"] = pos
    if bias:
        bs = [rng.standard_normal(n).astype(np.float32) for n in Ns]
        kw["bias"] = [to(b) for b in bs]
        ref_kw["bias"] = bs
    if out_dtype:
        kw["out_dtype"] = out_dtype
    if config is not None:
        kw["config"] = config
    outs = OP[kind](x, *args, **kw)
    refs = qmod.reference_qkv(xv.reshape(xs.shape), *wref, **ref_kw)
    for o, r in zip(outs, refs):
        assert o.shape == r.shape
        check_close(o, r, out_dtype or dt)


KINDS = ["f16", "int8", "int4"]


# (B, S, hidden, H, H_kv, D): GQA, ragged M (B S not a multiple of 16) and N (48 or 80 < the block's 128)
SHAPES = [(1, 1, 128, 4, 2, 16), (2, 5, 128, 3, 1, 16), (1, 37, 256, 8, 2, 32), (3, 7, 128, 5, 1, 16)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_qkv_mn(backend, rng, poison, kind, shape):
    _run(rng, kind, "f16", *shape)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("style", ["rotate_half", "interleaved"])
def test_qkv_bhsd_rope(backend, rng, poison, kind, style):
    _run(rng, kind, "f16", 2, 9, 128, 4, 2, 32, layout="bhsd", rope_style=style)


@pytest.mark.parametrize("kind", ["int8", "int4"])
@pytest.mark.parametrize("M,style", [(7, "interleaved"), (12, None), (5, "rotate_half")])
def test_qkv_decode_narrow_blocks(backend, rng, poison, kind, M, style):
    """Decode with quantized weights takes narrow blocks (int8 32 columns; int4 64 up to M = 8, 16 past
    it; rotate_half keeps whole heads a block): a block straddles no projection, interleaved
    rope pairs stay inside a block, and the bhsd store holds."""
    cfg = qmod.qkv_config(kind, M, 128, style or "", 256)
    want = 128 if style == "rotate_half" else 32 if kind == "int8" else 64 if M <= 8 else 16
    assert cfg.__class__.__name__ == "DecodeConfig" and cfg.block_n == want
    _run(rng, kind, "f16", 1, M, 128, 4, 2, 32, layout="bhsd", rope_style=style, bias=True)


@pytest.mark.parametrize("kind", KINDS)
def test_qkv_bf16_bias_positions(backend, rng, poison, kind):
    _run(rng, kind, "bf16", 2, 6, 128, 4, 1, 16, layout="bhsd", rope_style="rotate_half", bias=True,
         positions=True)


@pytest.mark.parametrize("style", [None, "interleaved"])
def test_qkv_2d_x_seq_len(backend, rng, poison, style):
    """x as [M, hidden] with seq_len: head-major outputs and per-sequence default positions."""
    _run(rng, "f16", "f16", 3, 4, 128, 2, 2, 16, layout="bhsd", rope_style=style, x3d=False)


@pytest.mark.parametrize("out_dtype", ["f32", "bf16"])
def test_qkv_out_dtype(backend, rng, poison, out_dtype):
    _run(rng, "int8", "f16", 1, 20, 128, 2, 1, 16, bias=True, out_dtype=out_dtype)


def test_qkv_large_m_config(backend, rng, poison):
    """M > 512 takes the large-tile config (one block row of 128 with a ragged tail)."""
    _run(rng, "int4", "f16", 1, 520, 128, 2, 1, 16, rope_style="rotate_half", x3d=False)


def test_qkv_kaio_aliases(backend, rng, poison):
    """KAIO's contract: f16 in, three f16 [M, N] outputs, the same values as the kaiodsl op."""
    M, K = 5, 128
    x = rng.standard_normal((M, K)).astype(np.float16)
    args, wref, _ = _weights(rng, "int8", "f16", (32, 16, 16), K)
    outs = ops.KAIO_NAMES["qkv_project_int8"](x, *args)
    for o, r in zip(outs, qmod.reference_qkv(x, *wref)):
        assert o.dtype == np.float16 and o.shape == r.shape
        check_close(o, r, "f16")
    with pytest.raises(ArgumentError, match=r"qkv_project_int8\(\): 'x' has dtype f32"):
        ops.KAIO_NAMES["qkv_project_int8"](x.astype(np.float32), *args)


def _valid():
    x = np.zeros((4, 128), np.float16)
    w = [np.zeros((n, 128), np.float16) for n in (32, 16, 16)]
    return x, w


BAD = [
    (dict(layout="nhd"), "layout must be 'mn' or 'bhsd', got 'nhd'"),
    (dict(layout="bhsd", head_dim=16), "needs seq_len="),
    (dict(layout="bhsd", head_dim=16, seq_len=3), "seq_len must be a positive int dividing M=4"),
    (dict(layout="bhsd", head_dim=12, seq_len=2), "multiples of head_dim=12"),
    (dict(rope=(np.zeros((4, 8), np.float32),) * 2), "head_dim must be a positive even int"),
    (dict(rope=(np.zeros((4, 4), np.float32),) * 2, head_dim=16), "rope cos must be [P, head_dim // 2]"),
    (dict(rope=(np.zeros((4, 8), np.float16),) * 2, head_dim=16), "'rope cos' has dtype f16"),
    (dict(rope=(np.zeros((4, 8), np.float32),) * 2, head_dim=16, rope_style="neox"), "rope_style must be"),
    (dict(rope=(np.zeros((4, 8), np.float32),) * 2, head_dim=16, positions=np.full(4, 9, np.int32)),
     "positions must lie in [0, 4)"),
    (dict(positions=np.zeros(4, np.int32)), "positions= is only used with rope"),
    (dict(bias=np.zeros(32, np.float32)), "'bias' must be a triple"),
    (dict(bias=[np.zeros(n, np.float32) for n in (32, 16, 8)]), "'bias' has 8 elements"),
    (dict(out_dtype="i8"), "out_dtype must be f32, f16 or bf16"),
    (dict(wv=np.zeros((8, 128), np.float16)), "'wk' and 'wv' must have the same N"),
    (dict(wq=np.zeros((32, 64), np.float16)), "x has hidden=128 but 'wq'"),
    (dict(x=np.zeros((4, 128), np.float32)), "'x' has dtype f32"),
    (dict(x=np.zeros((128,), np.float16)), "'x' must be [M, hidden] or [B, S, hidden]"),
    (dict(strange=1), "unknown keyword(s) ['strange']"),
]


@pytest.mark.parametrize("kw,msg", BAD, ids=[m[:28] for _, m in BAD])
def test_qkv_validation(no_launch, monkeypatch, kw, msg):
    monkeypatch.setattr(qmod, "new_like", lambda *a, **k: (_ for _ in ()).throw(AssertionError("allocated")))
    x, (wq, wk, wv) = _valid()
    x = kw.pop("x", x)
    wq, wv = kw.pop("wq", wq), kw.pop("wv", wv)
    with pytest.raises(ArgumentError) as e:
        ops.qkv_project(x, wq, wk, wv, **kw)
    assert msg in str(e.value)


BAD_Q = [
    ("int8", dict(sk=np.zeros(8, np.float32)), "'sk' has 8 elements"),
    ("int8", dict(wq=np.zeros((32, 128), np.uint8)), "'wq' has dtype u8"),
    ("int4", dict(group_size=48), "group_size must be 32, 64 or 128"),
    ("int4", dict(sq=np.zeros((32, 1), np.float16)), "'sq' must be [N, hidden // group_size] = (32, 2)"),
    ("int4", dict(zeros=[np.zeros((n, 2), np.int8) for n in (32, 16, 16)]), "'zeros[q]' has dtype i8"),
    ("int4", dict(wk=np.zeros((2, 2, 32, 4), np.int32)), "pack_int4 layout"),
]


@pytest.mark.parametrize("kind,kw,msg", BAD_Q, ids=[m[:28] for _, _, m in BAD_Q])
def test_qkv_quant_validation(no_launch, monkeypatch, kind, kw, msg):
    monkeypatch.setattr(qmod, "new_like", lambda *a, **k: (_ for _ in ()).throw(AssertionError("allocated")))
    x = np.zeros((4, 128), np.float16)
    if kind == "int8":
        a = dict(wq=np.zeros((32, 128), np.int8), wk=np.zeros((16, 128), np.int8), wv=np.zeros((16, 128), np.int8),
                 sq=np.ones(32, np.float32), sk=np.ones(16, np.float32), sv=np.ones(16, np.float32))
    else:
        a = dict(wq=np.zeros((4, 1, 32, 4), np.int32), wk=np.zeros((2, 1, 32, 4), np.int32),
                 wv=np.zeros((2, 1, 32, 4), np.int32), sq=np.ones((32, 2), np.float16),
                 sk=np.ones((16, 2), np.float16), sv=np.ones((16, 2), np.float16))
        kw.setdefault("group_size", 64)
    pos = {k: kw.pop(k) for k in list(kw) if k in a}
    a.update(pos)
    with pytest.raises(ArgumentError) as e:
        OP[kind](x, *a.values(), **kw)
    assert msg in str(e.value)


def test_qkv_int4_from_gptq(backend, rng, poison):
    """GPTQ checkpoints: from_gptq per projection, then one fused launch."""
    from test_int4 import _to_gptq

    K, gs, Ns = 256, 64, (32, 16, 16)
    qs = [rng.integers(0, 16, (n, K), dtype=np.uint8) for n in Ns]
    ss = [(rng.uniform(0.5, 1.5, (n, K // gs)) * 1e-1).astype(np.float16) for n in Ns]
    zs = [rng.integers(0, 16, (n, K // gs), dtype=np.uint8) for n in Ns]
    conv = [ops.from_gptq(*_to_gptq(q, s, z, gs), group_size=gs) for q, s, z in zip(qs, ss, zs)]
    x = rng.standard_normal((3, K)).astype(np.float16)
    outs = ops.qkv_project_int4(x, *[c[0] for c in conv], *[c[1] for c in conv], zeros=[c[2] for c in conv],
                                group_size=gs)
    refs = qmod.reference_qkv(x, *[ops.dequantize(q, s, z, gs, np.float16) for q, s, z in zip(qs, ss, zs)])
    for o, r in zip(outs, refs):
        check_close(o, r, "f16")


@pytest.mark.parametrize("kind,hidden", [("f16", 80), ("int8", 48)])
def test_qkv_decode_fallback_ragged_hidden(backend, rng, poison, kind, hidden):
    """Decode sizes with a hidden size the weight stream's k unit does not divide (f16: 32, int8: 64)
    run the block GEMM instead."""
    assert qmod.qkv_config(kind, 3, hidden).__class__.__name__ != "DecodeConfig"
    _run(rng, kind, "f16", 1, 3, hidden, 2, 1, 16)
