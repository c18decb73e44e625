"""qkv_project on sm_90a past M = 64: one launch of the Hopper GEMM with q, k, v segments
(ops/qkv_sm90.py), against the float64 reference_qkv, outputs poisoned with NaN first.

The simulator runs small GQA shapes (x [2 * 40, 256], H 4, H_kv 2) with tilings whose blocks walk
several tiles across the three projections; the GPU twins run Llama-3-8B at M = 2048 with the
default choice, which must be the sm_90a kernel."""

import importlib

import numpy as np
import pytest

from kaiodsl import ops
from kaiodsl.errors import ArgumentError
from kaiodsl.ops.gemm_sm90 import Sm90Config

from qkvkit import spy
from test_qkv import _run, poison  # noqa: F401  (the poison fixture)

qmod = importlib.import_module("kaiodsl.ops.qkv")

N64 = Sm90Config(block_m=128, block_n=64, stages=2, consumers=2)        # D = 32: two heads a tile
N128 = Sm90Config(block_m=64, block_n=128, stages=3, consumers=1)       # D = 64: two heads a tile


@pytest.fixture
def on_sm90(sm90, monkeypatch):
    """The sm_90a backend, and every qkv_project launch checked to be the segmented wgmma kernel."""
    from kaiodsl.ops import qkv_sm90

    calls = spy(monkeypatch, qkv_sm90, "launch")
    yield sm90
    assert calls, "qkv_project did not take the sm_90a path"


@pytest.mark.parametrize("layout", ["mn", "bhsd"])
@pytest.mark.parametrize("style", [None, "rotate_half", "interleaved"])
def test_qkv_sm90_layouts_rope_bias(on_sm90, rng, poison, layout, style):  # noqa: F811
    _run(rng, "f16", "f16", 2, 40, 256, 4, 2, 32, layout=layout, rope_style=style, bias=True, config=N64)


@pytest.mark.parametrize("style", ["rotate_half", "interleaved"])
def test_qkv_sm90_d64_positions_bf16(on_sm90, rng, poison, style):  # noqa: F811
    """D = 64 on 128-column tiles, explicit positions, bf16 (2-D x with seq_len), f32 outputs."""
    _run(rng, "f16", "bf16", 2, 36, 128, 4, 2, 64, layout="bhsd", rope_style=style, positions=True, x3d=False,
         config=N128, out_dtype="f32")


def test_qkv_sm90_cluster_pair(on_sm90, rng, poison):  # noqa: F811
    """cluster=2: a block pair multicasts halves of its segment's B tile (the map picked by the half's column)."""
    _run(rng, "f16", "f16", 3, 50, 128, 4, 2, 32, layout="bhsd", rope_style="rotate_half", bias=True,
         config=Sm90Config(block_m=128, block_n=64, stages=2, consumers=2, cluster=2))


def test_qkv_sm90_default_choice(sm90, rng, poison):  # noqa: F811
    """Without a config, sizes that fit 128-column tiles take the sm_90a kernel, and qkv_choice says so;
    N_kv = 64 does not (no tile may straddle two projections) and keeps the mma.sync kernel."""
    ch = qmod.qkv_choice("f16", 2048, 4096, 4096, 1024, 128, "rotate_half")
    assert isinstance(ch.config, Sm90Config) and "sm_90a" in ch.source
    assert ch.config.block_n == 128
    assert isinstance(qmod.qkv_choice("f16", 2048, 4096, 4096, 1024).config, Sm90Config)
    assert not isinstance(qmod.qkv_choice("f16", 16, 4096, 4096, 1024).config, Sm90Config)
    assert not isinstance(qmod.qkv_choice("int8", 2048, 4096, 4096, 1024).config, Sm90Config)
    small = qmod.qkv_choice("f16", 80, 256, 128, 64)
    assert not isinstance(small.config, Sm90Config) and "multiples of block_n" in small.source
    _run(rng, "f16", "f16", 1, 80, 256, 2, 1, 64, layout="bhsd", rope_style="rotate_half")


def test_qkv_sm90_default_runs_it(on_sm90, rng, poison):  # noqa: F811
    _run(rng, "f16", "f16", 1, 72, 128, 2, 2, 64, rope_style="interleaved")


@pytest.mark.parametrize("M", [17, 48, 64])
def test_qkv_sm90_mid_m(on_sm90, rng, poison, M):  # noqa: F811
    """16 < M <= 64 takes one consumer warpgroup on 64 x 128 tiles (qkv_sm90.MID), ragged rows, a rope."""
    from kaiodsl.ops import qkv_sm90

    assert qmod.qkv_choice("f16", M, 4096, 4096, 1024, 128, "rotate_half").config == qkv_sm90.MID
    _run(rng, "f16", "f16", 1, M, 128, 4, 2, 64, rope_style="rotate_half", bias=True)


def test_qkv_sm90_refused_off_sm90_and_misfit(backend, monkeypatch):
    x = np.zeros((80, 128), np.float16)
    w = [np.zeros((n, 128), np.float16) for n in (128, 64, 64)]
    monkeypatch.setenv("KAIODSL_ARCH", "sm_80")
    with pytest.raises(ArgumentError, match="sm_90a kernel"):
        ops.qkv_project(x, *w, config=N64)
    assert not isinstance(qmod.qkv_choice("f16", 2048, 4096, 4096, 1024).config, Sm90Config)
    monkeypatch.setenv("KAIODSL_ARCH", "sm_90a")
    with pytest.raises(ArgumentError, match="multiples of block_n=128"):
        ops.qkv_project(x, *w, config=N128)
    with pytest.raises(ArgumentError, match="head_dim a multiple of 16"):
        ops.qkv_project(x, *w, config=N64, head_dim=8, rope=(np.zeros((80, 4), np.float32),) * 2)


# -- the GPU: Llama-3-8B at M = 2048 through the default choice -------------------------------------------
LLAMA8B = (4096, 32, 8, 128)


@pytest.mark.gpu
@pytest.mark.parametrize("layout,style", [("mn", None), ("mn", "rotate_half"), ("bhsd", "rotate_half"),
                                          ("bhsd", "interleaved")])
def test_qkv_sm90_gpu_llama8b(sm90, torch_cuda, layout, style):
    torch = torch_cuda
    if sm90.name != "cuda":
        pytest.skip("Llama shapes run on the GPU only")
    from test_qkv_gpu import _check, _rope_ref

    hidden, H, Hkv, D = LLAMA8B
    B, S = 2, 1024
    Ns = (H * D, Hkv * D, Hkv * D)
    ws = [(torch.randn(n, hidden, device="cuda") * 0.02).half() for n in Ns]
    bs = [torch.randn(n, device="cuda") for n in Ns]
    x = torch.randn(B, S, hidden, device="cuda", dtype=torch.float16)
    kw = dict(bias=bs, layout=layout, head_dim=D)
    pos = torch.randint(0, S + 64, (B * S,), device="cuda", dtype=torch.int32)
    if style:
        ang = torch.rand(S + 64, D // 2, device="cuda") * 6.28
        kw.update(rope=(ang.cos(), ang.sin()), rope_style=style, positions=pos)
    choice = qmod.qkv_choice("f16", B * S, hidden, Ns[0], Ns[1], D, style or "")
    assert isinstance(choice.config, Sm90Config), choice
    outs = ops.qkv_project(x, *ws, **kw)
    x2 = x.reshape(B * S, hidden).double()
    for n, (o, w, b) in enumerate(zip(outs, ws, bs)):
        y = x2 @ w.double().T + b.double()
        if style and n < 2:
            y = _rope_ref(torch, y, kw["rope"][0], kw["rope"][1], pos.long(), D, style)
        want = y.reshape(B, S, -1, D).transpose(1, 2) if layout == "bhsd" else y.reshape(B, S, -1)
        assert o.shape == want.shape
        _check(torch, o, want)
    again = ops.qkv_project(x, *ws, **kw)
    assert all(torch.equal(a, b) for a, b in zip(outs, again))          # deterministic


@pytest.mark.parametrize("bhsd,style", [(False, ""), (True, "rotate_half"), (True, "interleaved")])
def test_qkv_sm90_llama_kernel_no_spills(bhsd, style):
    """The kernels the heuristic picks for Llama-3-8B (bias, positions) assemble for sm_90a without spills."""
    from kaiodsl import f16
    from kaiodsl.ops import gemm_sm90, qkv_sm90

    cfg = gemm_sm90.NARROW if style else gemm_sm90.DEFAULT
    segs, types = qkv_sm90.segments(4096, 1024, f16, True, bhsd, 1024, 128, style, True)
    stats = gemm_sm90.sm90_gemm_kernel("f16", cfg, segs, types).compile(arch="sm_90a").stats()
    assert stats["spills"] == 0 and stats["local_bytes"] == 0, stats
