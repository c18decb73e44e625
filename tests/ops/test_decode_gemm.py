"""The decode main loop's staged-A and split-K paths (ops/decode_gemm.py): matmul_int4 and matmul_w8a16
at M <= 16 under explicit DecodeConfigs against the float64 reference, every output and workspace
poisoned; split counts that leave blocks with an empty K range; determinism; the tickets left zeroed;
the heuristic's choices; registers and spills. GPU cases at the decode shapes the heuristic is for."""

import dataclasses
import importlib

import numpy as np
import pytest

import kaiodsl
from kaiodsl import ops
from kaiodsl.errors import ArgumentError
from kaiodsl.ops import DecodeConfig

from opkit import bf16_values, check_close, host, make
from qkvkit import dev, poison_outputs

m4 = importlib.import_module("kaiodsl.ops.matmul_int4")
_common = importlib.import_module("kaiodsl.ops._common")
w8mod = importlib.import_module("kaiodsl.ops.matmul_w8a16")
common = importlib.import_module("kaiodsl.ops._common")

STAGED = DecodeConfig(4, 2, 4, 2, 1, True)
# (config, K in 128-units): splits 1..5 over 3 units leave blocks with empty K ranges at 4 and 5
CONFIGS = [(STAGED, 3), (DecodeConfig(4, 2, 4, 2, 2, True), 3), (DecodeConfig(1, 2, 2, 2, 4, True), 3),
           (DecodeConfig(2, 1, 1, 1, 5, False), 3), (DecodeConfig(1, 1, 1, 3, 3, True), 5),
           (DecodeConfig(8, 1, 1, 4, 2, True), 2), (DecodeConfig(2, 2, 2, 1, 4, True, True), 5),
           (DecodeConfig(1, 4, 1, 2, 2, False, True), 3),
           # whole steps for every warp (decode_exact: no K mask), prefetching past the range's end
           (DecodeConfig(1, 4, 1, 2, 2, False, True), 16), (DecodeConfig(2, 2, 2, 1, 4, True, True), 8),
           # late_scale: q - zero fragments, scales on the f32 group sums (exact, staged + split, prefetch)
           (DecodeConfig(2, 4, 2, 2, late_scale=True), 8), (DecodeConfig(4, 2, 4, 2, 2, True, late_scale=True), 3),
           (DecodeConfig(1, 2, 2, 2, prefetch=True, late_scale=True), 3),
           (DecodeConfig(1, 4, 1, 2, 2, False, True, late_scale=True), 16),
           # prefetch_a: A a step ahead too (clamped into the range), exact and ragged, split
           (DecodeConfig(2, 4, 2, 2, prefetch=True, prefetch_a=True), 8),
           (DecodeConfig(1, 2, 2, 2, 2, prefetch=True, prefetch_a=True, late_scale=True), 5)]


@pytest.fixture
def poison(monkeypatch):
    """Outputs and split workspaces start as NaN: an unwritten element or an unsummed partial shows."""
    poison_outputs(monkeypatch, m4)
    poison_outputs(monkeypatch, w8mod)
    poison_outputs(monkeypatch, common)


def _int4_case(rng, M, N, K, gs, with_zeros, dtype):
    q = rng.integers(0, 16, (N, K), dtype=np.uint8)
    s = rng.uniform(0.5, 1.5, (N, K // gs)) * 1e-1
    zeros = rng.integers(0, 16, (N, K // gs), dtype=np.uint8) if with_zeros else None
    a, av = make(rng.standard_normal((M, K)), dtype)
    if dtype == "bf16":
        sv = bf16_values(s)
        sc = dev(sv, kaiodsl.bf16)
    else:
        sc = sv = s.astype(np.float16)
    ref = ops.reference_matmul_int4(av, q, sv, zeros, gs)
    w = ops.pack_int4(q)
    if dtype == "bf16":                    # bf16 is a DeviceArray: every operand on the device
        w, zeros = dev(w), None if zeros is None else dev(zeros)
    return (a, w, sc), zeros, ref


def _tickets_zero():
    return all(not np.any(host(b)) for b in _common.TICKETS.values())


@pytest.mark.parametrize("cfg,units", CONFIGS, ids=[str(c) for c, _ in CONFIGS])
@pytest.mark.parametrize("M", [1, 5, 16])
def test_int4_decode_configs(backend, rng, poison, cfg, units, M):
    """Every K split (incl. empty ranges), staged or not, M = 1 / <= 8 / > 8, ragged N."""
    N, K, gs = 40, 128 * units, 64
    args, zeros, ref = _int4_case(rng, M, N, K, gs, M == 5, "f16")
    out = ops.matmul_int4(*args, zeros=zeros, group_size=gs, config=cfg)
    assert out.shape == (M, N)
    check_close(out, ref, "f16")
    assert _tickets_zero()


RINGS = [(DecodeConfig(2, 4, 2, 2, ring=3), 5), (DecodeConfig(1, 8, 4, 2, ring=2), 3),
         (DecodeConfig(2, 2, 2, 1, 2, ring=4), 7), (DecodeConfig(1, 2, 1, 3, ring=2), 1),
         (DecodeConfig(1, 4, 2, 2, ring=3), 8), (DecodeConfig(2, 2, 2, 2, ring=3, late_scale=True), 5)]


@pytest.mark.parametrize("cfg,units", RINGS, ids=[str(c) for c, _ in RINGS])
@pytest.mark.parametrize("M", [1, 16])
def test_int4_decode_weight_ring_is_the_same_sum(backend, rng, poison, cfg, units, M):
    """ring=: the weights come through the cp.async ring; the arithmetic is the register stream's, so the
    output has the same bits as the config without the ring (and matches float64); ragged N, K ranges
    shorter than the ring, a K split across blocks."""
    N, K, gs = 40, 128 * units, 64
    args, zeros, ref = _int4_case(rng, M, N, K, gs, True, "f16")
    out = ops.matmul_int4(*args, zeros=zeros, group_size=gs, config=cfg)
    check_close(out, ref, "f16")
    plain = ops.matmul_int4(*args, zeros=zeros, group_size=gs, config=dataclasses.replace(cfg, ring=0))
    np.testing.assert_array_equal(host(out).view(np.uint16), host(plain).view(np.uint16))
    assert _tickets_zero()


@pytest.mark.parametrize("kind", ["f16", "int8"])
def test_w8_f16_decode_weight_ring(backend, rng, poison, kind):
    """The ring for int8 and f16/bf16 weights (QKV's decode stream): the same bits as without it."""
    M, B, S = 5, 1, 5
    cfg = DecodeConfig(1, 4, 2, 2, ring=3)
    a, av = make(rng.standard_normal((M, 256)), "f16")
    if kind == "int8":
        wq = rng.integers(-127, 128, (48, 256), dtype=np.int8)
        sc = rng.uniform(0.5, 1.5, 48).astype(np.float16) * np.float16(1e-2)
        got = ops.matmul_w8a16(a, wq, sc, config=cfg)
        want = ops.matmul_w8a16(a, wq, sc, config=dataclasses.replace(cfg, ring=0))
    else:
        w, _ = make(rng.standard_normal((48, 256)) * 0.1, "f16")
        got = ops.matmul(a, w, b_layout="nk", config=cfg)
        want = ops.matmul(a, w, b_layout="nk", config=dataclasses.replace(cfg, ring=0))
    np.testing.assert_array_equal(host(got).view(np.uint16), host(want).view(np.uint16))


@pytest.mark.parametrize("gs", [32, 64, 128])
@pytest.mark.parametrize("with_zeros", [False, True], ids=["sym", "zp"])
@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_int4_split_staged_dtypes(backend, rng, poison, gs, with_zeros, dtype):
    M, N, K = 16, 24, 512
    args, zeros, ref = _int4_case(rng, M, N, K, gs, with_zeros, dtype)
    for prefetch in (False, True):
        out = ops.matmul_int4(*args, zeros=zeros, group_size=gs, config=DecodeConfig(2, 2, 2, 1, 3, True, prefetch))
        check_close(out, ref, dtype)


def test_int4_split_many_row_tiles(backend, rng, poison):
    """An explicit split config past M = 16: one ticket and workspace slot per (row tile, column tile)."""
    args, zeros, ref = _int4_case(rng, 37, 40, 384, 128, True, "f16")
    out = ops.matmul_int4(*args, zeros=zeros, group_size=128, config=DecodeConfig(2, 1, 2, 1, 2, True, True))
    check_close(out, ref, "f16")
    assert _tickets_zero()


def test_int4_split_is_deterministic(backend, rng, poison):
    """Two runs give the same bits (partials summed in split order, whatever the arrival order)."""
    args, zeros, ref = _int4_case(rng, 13, 48, 768, 128, True, "f16")
    cfg = DecodeConfig(2, 2, 2, 1, 4, True)
    a = ops.matmul_int4(*args, zeros=zeros, group_size=128, config=cfg)
    b = ops.matmul_int4(*args, zeros=zeros, group_size=128, config=cfg)
    check_close(a, ref, "f16")
    assert np.array_equal(host(a).view(np.uint16), host(b).view(np.uint16))


@pytest.mark.parametrize("M", [3, 16])
def test_int4_default_config_runs(backend, rng, poison, M):
    """The heuristic's config at a small shape (staged past M = 1)."""
    args, zeros, ref = _int4_case(rng, M, 64, 1024, 128, False, "f16")
    check_close(ops.matmul_int4(*args, group_size=128), ref, "f16")


@pytest.mark.parametrize("cfg", [DecodeConfig(1, 2, 4, 2, 3, True), DecodeConfig(2, 2, 2, 1, 1, True, True),
                                 DecodeConfig(1, 4, 2, 2, 2, False, True)], ids=str)
@pytest.mark.parametrize("M,gs", [(5, None), (16, 64)])
def test_w8a16_decode_split_bias(backend, rng, poison, cfg, M, gs):
    """int8 weights on the same paths; per-channel scales and bias applied once (by the final block)."""
    N, K = 40, 192
    q = rng.integers(-128, 128, (N, K), dtype=np.int8)
    s = (rng.uniform(0.5, 1.5, (N,) if gs is None else (N, K // gs)) * 1e-2).astype(
        np.float32 if gs is None else np.float16)
    bias = rng.standard_normal(N).astype(np.float32)
    a = rng.standard_normal((M, K)).astype(np.float16)
    out = ops.matmul_w8a16(a, q, s, bias=bias, group_size=gs, config=cfg)
    w = q.astype(np.float64) * (s.astype(np.float64)[:, None] if gs is None else
                                np.repeat(s.astype(np.float64), gs, axis=1))
    check_close(out, a.astype(np.float64) @ w.T + bias, "f16")
    assert _tickets_zero()


@pytest.mark.parametrize("kind", ["f16", "int8", "int4"])
@pytest.mark.parametrize("cfg", [DecodeConfig(2, 2, 2, 1, 1, True, True), DecodeConfig(1, 2, 4, 2, 3, True),
                                 DecodeConfig(4, 1, 1, 2, 2, False, True)], ids=str)
@pytest.mark.parametrize("B,S,style", [(1, 5, "interleaved"), (2, 8, "rotate_half")])
def test_qkv_decode_staged_split(backend, rng, monkeypatch, kind, cfg, B, S, style):
    """The fused QKV decode path with A staged, weights prefetched, K split over blocks (3 splits of 4 k
    units for int4 leave one block empty): bias and rope applied once, by the block that stores."""
    from test_qkv import _run

    poison_outputs(monkeypatch, importlib.import_module("kaiodsl.ops.qkv"))
    _run(rng, kind, "f16", B, S, 512, 4, 2, 16, rope_style=style, bias=True, config=cfg)
    assert _tickets_zero()


@pytest.mark.parametrize("field,value,msg", [("ring", 1, "ring must be 0 \\(off\\) or an int >= 2"),
                                             ("prefetch_ring", 2, "ring=2 replaces prefetch"),
                                             ("splits", 0, "splits must be a positive int"),
                                             ("splits", 65, "splits=65; allowed 1..64"),
                                             ("stage_a", 1, "stage_a must be True or False"),
                                             ("prefetch", None, "prefetch must be True or False"),
                                             ("late_scale", 1, "late_scale must be True or False"),
                                             ("prefetch_a", "yes", "prefetch_a must be True or False"),
                                             ("prefetch_a", True, "prefetch_a .* needs prefetch=True"),
                                             ("prefetch_a_staged", True, "prefetch_a loads A .*\\(stage_a=False\\)"),
                                             ("unroll", 9, "unroll=9 must be at most 8")])
def test_decode_config_validation(rng, field, value, msg):
    kaiodsl.runtime.set_backend("sim")
    args, _, _ = _int4_case(rng, 2, 8, 128, 128, False, "f16")
    kw = {**dict(n_tiles=1, k_split=1, nw=1, unroll=2, splits=1, stage_a=False), field: value}
    if field == "prefetch_ring":
        ring = kw.pop(field)
        kw = {**kw, "prefetch": True, "ring": ring}
    if field == "prefetch_a_staged":
        on = kw.pop(field)
        kw = {**kw, "prefetch": True, "prefetch_a": on, "stage_a": True}
    with pytest.raises(ArgumentError, match=msg):
        ops.matmul_int4(*args, group_size=128, config=DecodeConfig(**kw))


def test_late_scale_is_for_int4_weights(rng):
    """late_scale on int8 or f16/bf16 weights names the weights and what to pass instead."""
    kaiodsl.runtime.set_backend("sim")
    a = np.ones((4, 128), np.float16)
    cfg = DecodeConfig(1, 2, 1, 2, late_scale=True)
    with pytest.raises(ArgumentError, match="late_scale applies to int4 weights.*int8.*late_scale=False"):
        ops.matmul_w8a16(a, np.ones((8, 128), np.int8), np.ones(8, np.float16), config=cfg)
    with pytest.raises(ArgumentError, match="late_scale applies to int4 weights.*f16/bf16.*late_scale=False"):
        ops.matmul(a, np.ones((8, 128), np.float16), b_layout="nk", config=cfg)


def test_staged_a_too_big_and_matmul_refuses_splits(rng):
    """A staged A past the shared memory limit names the config; the f16 matmul takes no splits."""
    kaiodsl.runtime.set_backend("sim")
    args, _, _ = _int4_case(rng, 16, 8, 128 * 64, 128, False, "f16")
    with pytest.raises(ArgumentError, match="bytes of shared memory"):
        ops.matmul_int4(*args, group_size=128, config=DecodeConfig(1, 1, 1, 2, 1, True))
    a = np.ones((4, 64), np.float16)
    with pytest.raises(ArgumentError, match="splits=1 and stage_a=False"):
        ops.matmul(a, np.ones((8, 64), np.float16), b_layout="nk", config=DecodeConfig(1, 1, 1, 2, 2, False))


def test_int4_decode_config_heuristic():
    """The default is the unstaged stream (the H200 sweep timed it fastest at M = 16, N = K = 8192 and
    4096), in blocks of 32 columns where they are ~2 an SM, else 16; the staged, split candidate gives
    ~2 blocks an SM and keeps staged A within budget at long K."""
    assert m4.int4_decode_config(1, 8192, 8192) == DecodeConfig(1, 8, 4, 2)
    assert m4.int4_decode_config(16, 8192, 8192) == DecodeConfig(1, 8, 4, 2)
    assert m4.int4_decode_config(16, 4096, 4096) == DecodeConfig(1, 8, 2, 2)
    assert m4.int4_decode_config(16, 14336, 4096) == DecodeConfig(1, 8, 4, 2)
    for M in (2, 4, 16):
        for N, K in ((4096, 4096), (8192, 8192), (14336, 4096), (4096, 14336), (6144, 4096)):
            cfg = m4.staged_decode_config(M, N, K, 132)
            assert cfg.stage_a and cfg.prefetch and cfg.block_n == 128
            blocks = -(-N // 128) * cfg.splits
            assert 128 <= blocks <= 4 * 132, (M, N, K, cfg)
            assert cfg.a_bytes(K, 128, M > 8) <= 100 * 1024, (M, N, K, cfg)
    assert m4.staged_decode_config(16, 8192, 8192) == DecodeConfig(4, 2, 4, 1, 4, True, True)
    for N, K in ((8192, 28672), (128256, 8192), (1024, 65536)):    # long K / a wide vocabulary: A still fits
        cfg = m4.staged_decode_config(16, N, K, 132)
        assert cfg.a_bytes(K, 128, True) <= m4.A_BUDGET and cfg.splits * cfg.block_units(K, 128) >= K // 128


@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
def test_decode_kernels_do_not_spill(arch):
    """The heuristic's configs and the sweep's candidates: no spills."""
    for cfg in (DecodeConfig(1, 8, 4, 2), DecodeConfig(2, 4, 2, 2, late_scale=True), DecodeConfig(1, 8, 2, 2),
                DecodeConfig(2, 4, 4, 2, late_scale=True), DecodeConfig(2, 4, 2, 2, prefetch=True, prefetch_a=True),
                DecodeConfig(4, 2, 4, 1, 4, True, True), DecodeConfig(4, 2, 4, 2, 4, True),
                DecodeConfig(4, 2, 4, 2, 4, True, True), DecodeConfig(8, 1, 4, 2, 4, True)):
        for dt, gs, z in (("f16", 128, False), ("bf16", 32, True)):
            stats = m4.decode_kernel(dt, gs, z, True, cfg, "i32").compile(arch=arch).stats()
            assert stats["spills"] == 0 and stats["local_bytes"] == 0 and stats["registers"] <= 255, (cfg, stats)


# -- the GPU: the decode shapes the heuristic is for ---------------------------------------------------
GPU_CFGS = [None, DecodeConfig(4, 2, 4, 2, 4, True), DecodeConfig(8, 1, 4, 1, 8, True, True)]


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", GPU_CFGS, ids=str)
@pytest.mark.parametrize("M", [1, 4, 16])
@pytest.mark.parametrize("N,K", [(4096, 4096), (8192, 8192), (14336, 4096), (6144, 4096)])
def test_int4_decode_gpu_shapes(torch_cuda, cfg, M, N, K):
    """The default (and two split/staged tilings) at LLM decode shapes; two runs bitwise equal."""
    torch = torch_cuda
    rng = np.random.default_rng(M * N + K)
    q = rng.integers(0, 16, (N, K), dtype=np.uint8)
    s = (rng.uniform(0.5, 1.5, (N, K // 128)) * 1e-2).astype(np.float16)
    z = rng.integers(0, 16, (N, K // 128), dtype=np.uint8)
    a = rng.standard_normal((M, K)).astype(np.float16)
    ref = ops.reference_matmul_int4(a, q, s, z, 128)
    ta, tw, ts, tz = (torch.from_numpy(x).cuda() for x in (a, ops.pack_int4(q), s, z))
    out = ops.matmul_int4(ta, tw, ts, zeros=tz, group_size=128, config=cfg)
    again = ops.matmul_int4(ta, tw, ts, zeros=tz, group_size=128, config=cfg)
    check_close(out.cpu().numpy(), ref, "f16")
    assert torch.equal(out, again)
    assert not any(b.any().item() for b in _common.TICKETS.values() if isinstance(b, torch.Tensor) and b.is_cuda)


@pytest.mark.gpu
def test_int4_decode_gpu_two_streams(torch_cuda):
    """Split launches (tickets) on two PyTorch streams at once: each stream draws from its own counters, so
    both results are right, and every buffer is left zeroed."""
    torch = torch_cuda
    cfg = DecodeConfig(4, 2, 4, 2, 8, True)
    rng = np.random.default_rng(7)
    N, K = 4096, 8192
    runs = []
    for _ in range(2):
        q = rng.integers(0, 16, (N, K), dtype=np.uint8)
        s = (rng.uniform(0.5, 1.5, (N, K // 128)) * 1e-2).astype(np.float16)
        a = rng.standard_normal((4, K)).astype(np.float16)
        runs.append((ops.reference_matmul_int4(a, q, s, None, 128),
                     [torch.from_numpy(x).cuda() for x in (a, ops.pack_int4(q), s)]))
    streams = [torch.cuda.Stream() for _ in runs]
    torch.cuda.synchronize()
    outs = [[] for _ in runs]
    for rep in range(20):                 # interleaved: the streams' launches overlap on the GPU
        for i, (st, (_, (ta, tw, ts))) in enumerate(zip(streams, runs)):
            with torch.cuda.stream(st):
                outs[i].append(ops.matmul_int4(ta, tw, ts, group_size=128, config=cfg))
    torch.cuda.synchronize()
    for (ref, _), got in zip(runs, outs):
        for out in got:
            check_close(out.cpu().numpy(), ref, "f16")
    assert not any(b.any().item() for b in _common.TICKETS.values() if isinstance(b, torch.Tensor) and b.is_cuda)


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", [DecodeConfig(4, 2, 4, 2, 4, True, True), DecodeConfig(1, 8, 4, 2, 1, False, True)],
                         ids=str)
def test_w8a16_decode_gpu_split(torch_cuda, cfg):
    torch = torch_cuda
    rng = np.random.default_rng(7)
    M, N, K = 16, 8192, 8192
    q = rng.integers(-128, 128, (N, K), dtype=np.int8)
    s = (rng.uniform(0.5, 1.5, N) * 1e-2).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32)
    a = rng.standard_normal((M, K)).astype(np.float16)
    ta, tq, ts, tb = (torch.from_numpy(x).cuda() for x in (a, q, s, bias))
    out = ops.matmul_w8a16(ta, tq, ts, bias=tb, config=cfg)
    check_close(out.cpu().numpy(), a.astype(np.float64) @ (q.astype(np.float64) * s[:, None]).T + bias, "f16")
    assert torch.equal(out, ops.matmul_w8a16(ta, tq, ts, bias=tb, config=cfg))


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", [DecodeConfig(4, 2, 4, 1, 6, True, True), DecodeConfig(2, 4, 2, 2, 1, True, True)],
                         ids=str)
@pytest.mark.parametrize("M", [1, 16])
def test_qkv_int4_llama_split_gpu(backend, rng, cfg, M):
    """Llama-3-8B's fused int4 QKV (hidden 4096, 32 / 8 heads of 128) with a rope and bias: rotate_half
    where a block holds whole heads (128 columns), interleaved on 32-column blocks."""
    if backend.name != "cuda":
        pytest.skip("the Llama-3-8B shape is for the GPU")
    from test_qkv import _run

    style = "rotate_half" if cfg.block_n % 128 == 0 else "interleaved"
    _run(rng, "int4", "f16", 1, M, 4096, 32, 8, 128, layout="bhsd", rope_style=style, bias=True,
         config=cfg, gs=128)
