"""The Hopper flash-attention backward (ops/attention_bwd_sm90.py) through ops.attention_backward.

Both backends compile for sm_90a (the simulator through KAIODSL_ARCH). The simulator runs small ragged
shapes against the float64 numpy reference: head dims 64 and 128, f16 and bf16, causal both ways
(with rows that see no key), GQA and MQA, dK/dV in one pass and in two, both schedules, every way to
make dQ (added by the dK/dV pass in key-block order or in any order, or by a dQ kernel), and small
tiles so that the rings wrap many times. The outputs are poisoned with NaN (every element must be written). The GPU
runs S = 1000..4096 with B*H = 16..32 against a float64 torch reference per head, and a bitwise
determinism check. The kernels assemble for sm_90a without spills (nvJitLink, on the CPU)."""

import importlib
import math
from dataclasses import replace

import numpy as np
import pytest

import kaiodsl.ops as ops
from kaiodsl.errors import ArgumentError
from kaiodsl.ops import attention_bwd_sm90
from kaiodsl.ops.attention import reference_attention_backward
from kaiodsl.ops.attention_bwd_sm90 import Sm90BwdConfig, convert_kernel, dkdv_kernel, dq_kernel, sm90_bwd_config

from opkit import host, make, ptxas_report, record

TOL = {"f16": 3e-3, "bf16": 2e-2}
C = Sm90BwdConfig


@pytest.fixture
def used(monkeypatch):
    """The configs the sm_90a backward ran with in this test (one entry per call)."""
    return record(monkeypatch, attention_bwd_sm90, "launch", lambda args: args[-1])


@pytest.fixture
def poisoned(monkeypatch):
    """ops.attention_backward's f16/bf16 outputs start as NaN: an element no kernel wrote shows."""
    mod = importlib.import_module("kaiodsl.ops.attention")
    real = mod.new_like

    def nan_like(a, shape, dtype):
        out = real(a, shape, dtype)
        if dtype.name in ("f16", "bf16"):
            if a.kind == "torch":
                return out.fill_(float("nan"))
            return make(np.full(shape, np.nan, np.float32), dtype.name)[0]
        return out

    monkeypatch.setattr(mod, "new_like", nan_like)


def _inputs(rng, B, H, Hkv, Sq, Sk, D, dtype):
    """(q, k, v, do) as op arguments and their exact float64 values."""
    shapes = ((B, H, Sq, D), (B, Hkv, Sk, D), (B, Hkv, Sk, D), (B, H, Sq, D))
    pairs = [make(rng.standard_normal(s), dtype) for s in shapes]
    return [p[0] for p in pairs], [p[1].reshape(s) for p, s in zip(pairs, shapes)]


def _run_and_check(args, ref, causal, dtype, config=None):
    q, k, v, do = args
    o, lse = ops.attention(q, k, v, causal=causal, return_lse=True)
    grads = ops.attention_backward(do, q, k, v, o, lse, causal=causal, config=config)
    want = reference_attention_backward(ref[3], *ref[:3], causal)
    for name, g, w in zip(("dq", "dk", "dv"), grads, want):
        g = host(g).astype(np.float64).reshape(w.shape)
        assert not np.isnan(g).any(), name
        err = np.linalg.norm(g - w) / max(np.linalg.norm(w), 1e-30)
        assert err < TOL[dtype], (name, err)
    return grads


SIM_CASES = [  # B, H, Hkv, Sq, Sk, D, causal, dtype, config
    (1, 2, 2, 150, 150, 64, False, "f16", None),                         # ragged: key and query padding
    (1, 2, 1, 150, 130, 128, True, "bf16", None),                        # D = 128: dK and dV in two passes
    (1, 2, 1, 100, 230, 128, True, "f16", C(split=False)),              # D = 128 in one pass
    (1, 4, 2, 150, 200, 64, "bottom_right", "f16", C(bq=32, bn=32, stages=3)),    # GQA 4/2
    (1, 2, 2, 200, 90, 128, "bottom_right", "f16", C(bq=16, bn=16)),    # Sq > Sk: 110 rows see no key
    (1, 4, 1, 130, 260, 64, True, "bf16", C(bq=16, bn=16, split=True)),  # MQA; rings wrap 16+ times
    (2, 1, 1, 70, 300, 64, False, "bf16", C(bq=128, bn=128, stages=4)),  # a key block past Sk's last box
    (1, 2, 2, 90, 170, 128, "bottom_right", "bf16", C(bq=48, bn=80)),   # tiles that are no power of 2
    (1, 2, 2, 64, 64, 64, True, "f16", None),                            # exactly one tile
    (1, 2, 1, 150, 130, 128, True, "f16", C(overlap=True)),              # the pipelined schedule
    (1, 4, 2, 150, 200, 64, "bottom_right", "bf16", C(bq=32, bn=32, stages=3, overlap=True)),
    (1, 2, 2, 200, 90, 128, "bottom_right", "f16", C(bq=16, bn=16, split=False, overlap=True)),
    (1, 4, 1, 130, 260, 64, True, "f16", C(bq=16, bn=16, split=True, overlap=True)),
    (2, 1, 1, 70, 300, 64, False, "f16", C(bq=128, bn=128, stages=4, overlap=True)),
    # dQ in the dK/dV pass (the default where bq = 64): key blocks add in order, GQA over 3 key blocks
    (1, 4, 2, 150, 300, 64, "bottom_right", "f16", C(dq="ordered")),
    (1, 2, 2, 200, 90, 128, "bottom_right", "bf16", C(split=False, dq="ordered", dq_slots=1)),  # tile 0: no key
    (1, 2, 1, 100, 230, 128, True, "f16", C(dq="ordered")),
    (1, 2, 2, 64, 64, 64, True, "bf16", C(dq="ordered")),              # one key block: no counter
    (1, 4, 1, 130, 400, 128, True, "f16", C(dq="atomic")),             # MQA, unordered adds
    (2, 2, 1, 100, 260, 64, False, "bf16", C(dq="atomic", dq_slots=1)),
    (1, 2, 2, 150, 150, 64, False, "f16", C(dq="kernel")),              # the dQ kernel at bq = 64
]


@pytest.mark.parametrize("B,H,Hkv,Sq,Sk,D,causal,dtype,config", SIM_CASES)
def test_sm90_backward_matches_float64(sm90, used, poisoned, rng, B, H, Hkv, Sq, Sk, D, causal, dtype, config):
    args, ref = _inputs(rng, B, H, Hkv, Sq, Sk, D, dtype)
    _run_and_check(args, ref, causal, dtype, config)
    assert used == [config]


def test_sm90_backward_scale_and_deterministic(sm90, used, rng):
    """An explicit scale; two runs give the same bits."""
    args, ref = _inputs(rng, 1, 2, 1, 80, 100, 64, "f16")
    q, k, v, do = args
    o, lse = ops.attention(q, k, v, scale=0.3, return_lse=True)
    a = ops.attention_backward(do, q, k, v, o, lse, scale=0.3)
    b = ops.attention_backward(do, q, k, v, o, lse, scale=0.3)
    for name, x, y, w in zip(("dq", "dk", "dv"), a, b, reference_attention_backward(ref[3], *ref[:3], scale=0.3)):
        np.testing.assert_array_equal(x.view(np.uint16), y.view(np.uint16))
        assert np.linalg.norm(x - w) / np.linalg.norm(w) < TOL["f16"], name
    assert len(used) == 2


def test_sm90_backward_chosen_only_where_it_applies(sm90, used, rng):
    """The sm_90a kernels run by default for D 64/128 with contiguous operands; a BwdConfig, head dim 32
    and a strided view keep the mma.sync kernels."""
    from kaiodsl.ops import BwdConfig

    q = rng.standard_normal((1, 1, 40, 64)).astype(np.float16)
    o, lse = ops.attention(q, q, q, return_lse=True)
    ops.attention_backward(q, q, q, q, o, lse)
    assert len(used) == 1
    ops.attention_backward(q, q, q, q, o, lse, config=BwdConfig())
    bshd = rng.standard_normal((1, 40, 2, 64)).astype(np.float16).transpose(0, 2, 1, 3)
    o2, lse2 = ops.attention(bshd, bshd, bshd, return_lse=True)
    ops.attention_backward(bshd, bshd, bshd, bshd, o2, lse2)
    q32 = rng.standard_normal((1, 1, 40, 32)).astype(np.float16)
    o3, lse3 = ops.attention(q32, q32, q32, return_lse=True)
    ops.attention_backward(q32, q32, q32, q32, o3, lse3)
    assert len(used) == 1


def test_sm90_backward_config_errors(sm90, rng, monkeypatch):
    """A bad Sm90BwdConfig, or one asked for where the kernels cannot run, is an ArgumentError naming why."""
    for kw, match in (({"bq": 24}, "bq=24: must be a multiple of 16 in 16..128"), ({"bn": 256}, "bn=256"),
                      ({"stages": 1}, "stages=1: must be an int in 2..4"), ({"split": 1}, "split=1"),
                      ({"dq": "fast"}, "dq='fast': must be None"), ({"dq_slots": 3}, "dq_slots=3: must be 1 or 2"),
                      ({"bq": 32, "dq": "ordered"}, "dq='ordered' adds dQ in the dK/dV pass, which needs bq=64"),
                      ({"overlap": True, "dq": "atomic"}, "overlap=False")):
        with pytest.raises(ArgumentError, match=match):
            Sm90BwdConfig(**kw)
    q32 = np.ones((1, 1, 8, 32), np.float16)
    lse = np.zeros((1, 1, 8), np.float32)
    with pytest.raises(ArgumentError, match="D=32 is not 64 or 128"):
        ops.attention_backward(q32, q32, q32, q32, q32, lse, config=Sm90BwdConfig())
    with pytest.raises(ArgumentError, match="bytes of shared memory"):
        q = np.ones((1, 1, 8, 128), np.float16)
        ops.attention_backward(q, q, q, q, q, lse, config=Sm90BwdConfig(bq=128, bn=128, stages=4))
    q = np.ones((1, 1, 8, 64), np.float16)
    with pytest.raises(ArgumentError, match="expected a kaiodsl.ops.BwdConfig, a kaiodsl.ops.Sm90BwdConfig"):
        ops.attention_backward(q, q, q, q, q, lse, config="fast")
    monkeypatch.setenv("KAIODSL_ARCH", "sm_80")
    with pytest.raises(ArgumentError, match="not sm_90a"):
        ops.attention_backward(q, q, q, q, q, lse, config=Sm90BwdConfig())


@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", ["f16", "bf16"])
@pytest.mark.parametrize("d", [64, 128])
def test_sm90_backward_kernels_no_spills(d, dtype, causal, overlap):
    """The default configs' kernels under ptxas (the driver JIT's assembler: nvJitLink ignores setmaxnreg
    and reports 1240 spill bytes for the fused d 128 dK/dV kernel that ptxas does not), and the pipelined
    schedule on 32-row tiles under nvJitLink too, assemble for sm_90a without spills or local memory."""
    cfg = Sm90BwdConfig(bq=32, bn=32, overlap=True) if overlap else sm90_bwd_config(d)
    kernels = [dkdv_kernel(d, dtype, cfg, causal, part) for part in cfg.parts(d)] + [dq_kernel(d, dtype, cfg, causal)]
    if not overlap:                                       # dQ in the dK/dV pass and its f32 -> dtype kernel
        kernels += [dkdv_kernel(d, dtype, replace(cfg, dq="ordered"), causal), convert_kernel(d, dtype)]
    for k in kernels:
        compiled = k.compile(arch="sm_90a")
        if overlap:
            stats = compiled.stats()
            assert stats["spills"] == 0 and stats["local_bytes"] == 0, stats
        err = ptxas_report(compiled.ptx)
        assert "0 bytes spill stores, 0 bytes spill loads" in err, err


# -- GPU tier ----------------------------------------------------------------------------------------

GPU_SHAPES = [  # B, H, Hkv, Sq, Sk, D, causal
    (2, 8, 8, 1024, 1024, 64, False), (2, 8, 8, 1024, 1024, 128, True), (1, 16, 4, 2048, 2048, 128, True),
    (1, 16, 16, 4096, 4096, 128, False), (2, 8, 2, 4096, 4096, 64, True), (4, 4, 4, 1000, 1000, 128, True),
    (1, 16, 16, 3000, 1700, 64, "bottom_right"), (1, 32, 8, 1500, 2500, 128, "bottom_right")]


def _torch_reference(torch, q, k, v, do, causal):
    """float64 (dq, dk, dv) one head at a time (dk, dv summed over each GQA group)."""
    B, H, Sq, D = q.shape
    Hkv, Sk = k.shape[1], k.shape[2]
    g = H // Hkv
    sc = 1.0 / math.sqrt(D)
    dq = torch.empty(q.shape, dtype=torch.float64, device=q.device)
    dk = torch.zeros(k.shape, dtype=torch.float64, device=q.device)
    dv = torch.zeros(k.shape, dtype=torch.float64, device=q.device)
    shift = Sk - Sq if causal == "bottom_right" else 0
    keep = None
    if causal:
        keep = torch.arange(Sk, device=q.device)[None, :] <= torch.arange(Sq, device=q.device)[:, None] + shift
    for b in range(B):
        for h in range(H):
            qh, kh, vh, doh = q[b, h].double(), k[b, h // g].double(), v[b, h // g].double(), do[b, h].double()
            s = qh @ kh.T * sc
            if keep is not None:
                s = s.masked_fill(~keep, -math.inf)
            p = torch.nan_to_num(torch.softmax(s, -1))          # a row that sees no key: P = 0
            dp = doh @ vh.T
            ds = p * (dp - (p * dp).sum(-1, keepdim=True))
            dq[b, h] = ds @ kh * sc
            dk[b, h // g] += ds.T @ qh * sc
            dv[b, h // g] += p.T @ doh
    return dq, dk, dv


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("B,H,Hkv,Sq,Sk,D,causal", GPU_SHAPES)
def test_sm90_backward_gpu_large(torch_sm90, used, poisoned, B, H, Hkv, Sq, Sk, D, causal, dtype):
    torch = torch_sm90
    dt = getattr(torch, dtype)
    q, do = (torch.randn(B, H, Sq, D, device="cuda", dtype=dt) for _ in range(2))
    k, v = (torch.randn(B, Hkv, Sk, D, device="cuda", dtype=dt) for _ in range(2))
    o, lse = ops.attention(q, k, v, causal=causal, return_lse=True)
    grads = ops.attention_backward(do, q, k, v, o, lse, causal=causal)
    torch.cuda.synchronize()
    assert len(used) == 1
    for name, got, want in zip(("dq", "dk", "dv"), grads, _torch_reference(torch, q, k, v, do, causal)):
        assert not torch.isnan(got).any(), name
        err = (got.double() - want).norm().item() / want.norm().item()
        assert err < (1e-2 if dtype == "float16" else 3e-2), (name, err)


@pytest.mark.gpu
@pytest.mark.parametrize("config", [C(split=False), C(split=True), C(bq=32, bn=128), C(bn=32, stages=4),
                                    C(overlap=True), C(bq=32, bn=32, overlap=True), C(bq=128, bn=32),
                                    C(dq="ordered"), C(dq="atomic"), C(dq="kernel"), C(dq="ordered", dq_slots=1),
                                    C(dq="ordered", stages=3)], ids=str)
@pytest.mark.parametrize("D,causal", [(64, False), (128, True), (128, "bottom_right")])
def test_sm90_backward_gpu_configs(torch_sm90, used, config, D, causal):
    """Every pass split, schedule and tile option against float64 at a ragged shape with GQA."""
    torch = torch_sm90
    q, do = (torch.randn(2, 8, 1500, D, device="cuda", dtype=torch.float16) for _ in range(2))
    k, v = (torch.randn(2, 2, 1700, D, device="cuda", dtype=torch.float16) for _ in range(2))
    o, lse = ops.attention(q, k, v, causal=causal, return_lse=True)
    grads = ops.attention_backward(do, q, k, v, o, lse, causal=causal, config=config)
    torch.cuda.synchronize()
    assert used == [config]
    for name, got, want in zip(("dq", "dk", "dv"), grads, _torch_reference(torch, q, k, v, do, causal)):
        assert (got.double() - want).norm().item() / want.norm().item() < 1e-2, name


@pytest.mark.gpu
@pytest.mark.parametrize("config", [None, C(dq="ordered")], ids=str)
@pytest.mark.parametrize("D,causal", [(128, True), (64, False)])
def test_sm90_backward_gpu_deterministic(torch_sm90, used, D, causal, config):
    """The default and dQ added key block after key block give the same bits run after run, while the
    key blocks of a head run at once on many SMs; the counters left are zero."""
    from kaiodsl.ops._common import TICKETS

    torch = torch_sm90
    q, do = (torch.randn(2, 16, 4096, D, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    k, v = (torch.randn(2, 4, 4096, D, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    o, lse = ops.attention(q, k, v, causal=causal, return_lse=True)
    first = ops.attention_backward(do, q, k, v, o, lse, causal=causal, config=config)
    for _ in range(2):
        again = ops.attention_backward(do, q, k, v, o, lse, causal=causal, config=config)
        assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert len(used) == 3
    torch.cuda.synchronize()
    assert all(int(buf.abs().sum()) == 0 for buf in TICKETS.values() if hasattr(buf, "is_cuda"))
