"""qkv_project_int8 / qkv_project_int4 on sm_90a past M = 64: one launch of the dequantizing GEMM
(ops/gemm_sm90_w4.py; int4 without a rope: the swap-AB kernel of ops/gemm_sm90_w4_swap.py) with q, k, v
segments (ops/qkv_sm90.py), against the float64 reference_qkv of the dequantized weights, outputs
poisoned with NaN first.

The simulator (3 SMs: each persistent block walks several tiles across the three projections) runs
small GQA shapes: both layouts, both RoPE styles, bias, positions, int8 per-channel scales, int4
group sizes 32/64/128 with and without zero points, f16 and bf16, the weights' staging ring running
across tiles of different segments (a tensor map each); the GPU twins run Llama-3-8B at
M = 2048 with the default choice, which must be this kernel."""

import importlib

import numpy as np
import pytest

from kaiodsl import ops
from kaiodsl.errors import ArgumentError
from kaiodsl.ops.gemm_sm90 import Sm90Config
from kaiodsl.ops.gemm_sm90_w4 import W4Config
from kaiodsl.ops.gemm_sm90_w4_swap import W4SwapConfig

from qkvkit import spy
from test_qkv import _run, poison  # noqa: F401  (the poison fixture)

qmod = importlib.import_module("kaiodsl.ops.qkv")

N64 = W4Config(block_m=128, block_n=64, stages=2, consumers=2)        # D = 32: two heads a tile
N128 = W4Config(block_m=64, block_n=128, stages=3, consumers=1)       # D = 64: two heads a tile


@pytest.fixture
def on_sm90(sm90, monkeypatch):
    """The sm_90a backend, and every launch checked to be a segmented dequantizing kernel (either)."""
    from kaiodsl.ops import gemm_sm90_w4, qkv_sm90

    calls = spy(monkeypatch, gemm_sm90_w4, "launch_w4_segments")
    swapped = spy(monkeypatch, qkv_sm90, "launch_w4_swap_segments")
    yield sm90
    assert calls or swapped, "the op did not take an sm_90a dequantizing kernel"


@pytest.mark.parametrize("kind", ["int8", "int4"])
@pytest.mark.parametrize("layout", ["mn", "bhsd"])
@pytest.mark.parametrize("style", [None, "rotate_half", "interleaved"])
def test_qkv_sm90_quant_layouts_rope_bias(on_sm90, rng, poison, kind, layout, style):  # noqa: F811
    """GQA x [2 * 40, 256] (H 4, H_kv 2, D 32): int8 per-channel scales, int4 group 64 with zero points."""
    _run(rng, kind, "f16", 2, 40, 256, 4, 2, 32, layout=layout, rope_style=style, bias=True, config=N64)


@pytest.mark.parametrize("gs", [32, 64, 128])
@pytest.mark.parametrize("zeros", [False, True], ids=["sym", "zp"])
def test_qkv_sm90_int4_groups(on_sm90, rng, poison, gs, zeros):  # noqa: F811
    _run(rng, "int4", "f16", 1, 72, 256, 4, 2, 64, rope_style="rotate_half", x3d=False, config=N128,
         gs=gs, zeros=zeros)


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_qkv_sm90_quant_bf16_positions(on_sm90, rng, poison, kind):  # noqa: F811
    """bf16 (2-D x with seq_len), D = 64 on 128-column tiles, explicit positions; int8 with f32 outputs
    (its exact integer weights make the f32 tolerance hold; int4 weights are rounded to bf16 in the B tile,
    so int4 keeps bf16 outputs and tolerance)."""
    _run(rng, kind, "bf16", 2, 36, 128, 4, 2, 64, layout="bhsd", rope_style="interleaved", positions=True,
         x3d=False, config=N128, out_dtype="f32" if kind == "int8" else None, bias=True)


@pytest.mark.parametrize("kind", ["int8", "int4"])
@pytest.mark.parametrize("config", [W4Config(block_m=64, block_n=256, stages=2, consumers=1),
                                    W4Config(block_m=128, block_n=64, stages=3, consumers=1)], ids=["wide", "tall"])
def test_qkv_sm90_quant_tilings(on_sm90, rng, poison, kind, config):  # noqa: F811
    """256-column tiles (int8: 8 pieces a producer thread, no prefetch, as at Llama sizes) and a consumer
    of two m64 row blocks."""
    _run(rng, kind, "f16", 1, 72, 128, 4, 2, 128 if config.block_n == 256 else 32, bias=True, config=config)


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_qkv_sm90_quant_staging_wrap(on_sm90, rng, poison, kind):  # noqa: F811
    """K = 1024 through 3 staging slots: the weights' copies run ahead across tiles of different segments
    (each a tensor map of its own)."""
    _run(rng, kind, "f16", 1, 40, 1024, 2, 1, 32, bias=True, gs=32, config=W4Config(128, 32, 2, 2, staging=3))


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_qkv_sm90_quant_warp_stages(on_sm90, rng, poison, kind):  # noqa: F811
    """W4Config.warp_stages: each producer warp dequantizes every fourth stage and stages its own weights
    (copies into its own slots), across tiles of different segments."""
    _run(rng, kind, "f16", 1, 40, 1024, 2, 1, 32, bias=True, gs=32,
         config=W4Config(128, 32, 4, 2, staging=4, warp_stages=True))


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_qkv_sm90_quant_default_runs_it(on_sm90, rng, poison, kind):  # noqa: F811
    _run(rng, kind, "f16", 1, 72, 128, 2, 2, 64, rope_style="rotate_half")


def test_qkv_sm90_quant_mid_m_choice(sm90, monkeypatch):
    """16 < M <= 64 on an H200's 132 SMs: without a rope the swap-AB kernel on M-row activation tiles
    (rounded up to 32), weight tiles of 64 rows where they are one wave (Llama-3-8B: 96), else 128 (70B-like:
    80); with rotate_half the mma.sync kernels (MID_QUANT's dequantizing tiles measured slower)."""
    from kaiodsl.ops import gemm_sm90
    from kaiodsl.ops.matmul_int4_tiled import Int4Config

    monkeypatch.setattr(gemm_sm90, "sm_count", lambda: 132)
    monkeypatch.setattr(qmod, "sm_count", lambda: 132)
    for M in (32, 64):
        for kind in ("int8", "int4"):
            got = qmod.qkv_choice(kind, M, 4096, 4096, 1024)
            assert got.config == W4SwapConfig(block_m=M, block_n=64, stages=got.config.stages, overlap=True), got
            assert "wgmma's A registers" in got.source
            assert qmod.qkv_choice(kind, M, 8192, 8192, 1024).config.block_n == 128
    assert qmod.qkv_choice("int8", 64, 4096, 4096, 1024, 128, "rotate_half").config.block_n == 128
    assert not isinstance(qmod.qkv_choice("int8", 64, 4096, 4096, 1024, 128, "rotate_half").config, W4SwapConfig)
    assert isinstance(qmod.qkv_choice("int4", 64, 4096, 4096, 1024, 128, "rotate_half").config, Int4Config)
    assert isinstance(qmod.qkv_choice("int8", 65, 4096, 4096, 1024).config, W4SwapConfig)


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_qkv_sm90_quant_mid_m_runs(on_sm90, rng, poison, kind):  # noqa: F811
    from kaiodsl.ops import qkv_sm90

    _run(rng, kind, "f16", 1, 48, 128, 4, 2, 64, bias=True, config=qkv_sm90.MID_QUANT)


def test_qkv_sm90_quant_choice(sm90):
    """qkv_choice names the swap-AB kernel at Llama-3-8B prefill without a rope (256 x 128 tiles) and the
    shared-B dequantizing one with a rope (128 x 128; 128 x 128 where 256-row tiles would leave SMs idle), and keeps the mma.sync kernel at M <= 16, off
    16-byte boundaries and where a projection's N is no multiple of block_n."""
    from kaiodsl.ops import gemm_sm90_w4, gemm_sm90_w4_swap

    for kind in ("int8", "int4"):
        ch = qmod.qkv_choice(kind, 2048, 4096, 4096, 1024)
        want = gemm_sm90_w4_swap.DEFAULT8 if kind == "int8" else gemm_sm90_w4_swap.DEFAULT     # 64-k / 128-k slots
        assert ch.config == want and "gemm_sm90_w4_swap" in ch.source
        assert gemm_sm90_w4.w4_config(512, 6144, 4096, 132) == gemm_sm90_w4.NARROW    # 96 tall tiles: too few
        ch = qmod.qkv_choice(kind, 2048, 4096, 4096, 1024, 128, "rotate_half")
        assert isinstance(ch.config, W4Config) and ch.config.block_n == 128
        assert not isinstance(qmod.qkv_choice(kind, 16, 4096, 4096, 1024).config, (W4Config, W4SwapConfig))
        assert not isinstance(qmod.qkv_choice(kind, 2048, 4096, 4096, 1024, rows_aligned=False).config,
                              (W4Config, W4SwapConfig))
        small = qmod.qkv_choice(kind, 80, 256, 128, 32)       # 32 columns: no tiling's block_n divides it
        assert not isinstance(small.config, (W4Config, W4SwapConfig)) and "multiples of block_n" in small.source


def test_qkv_sm90_quant_refused(backend, monkeypatch):
    x = np.zeros((80, 128), np.float16)
    w = [np.zeros((n, 128), np.int8) for n in (128, 64, 64)]
    s = [np.ones(n, np.float32) for n in (128, 64, 64)]
    monkeypatch.setenv("KAIODSL_ARCH", "sm_80")
    with pytest.raises(ArgumentError, match="sm_90a kernel"):
        ops.qkv_project_int8(x, *w, *s, config=N64)
    assert not isinstance(qmod.qkv_choice("int4", 2048, 4096, 4096, 1024).config, (W4Config, W4SwapConfig))
    monkeypatch.setenv("KAIODSL_ARCH", "sm_90a")
    with pytest.raises(ArgumentError, match="multiples of block_n=128"):
        ops.qkv_project_int8(x, *w, *s, config=N128)
    with pytest.raises(ArgumentError, match="f16/bf16 weights' sm_90a kernel"):
        ops.qkv_project_int8(x, *w, *s, config=Sm90Config(block_n=64))
    with pytest.raises(ArgumentError, match="int8/int4 weights' sm_90a kernel"):
        ops.qkv_project(x, *(a.astype(np.float16) for a in w), config=N64)


SWAP64 = W4SwapConfig(block_m=32, block_n=64, stages=2)          # one consumer, 64 columns: D = 32, two heads


@pytest.mark.parametrize("layout", ["mn", "bhsd"])
@pytest.mark.parametrize("kind,gs,zeros", [("int4", 128, False), ("int4", 32, True), ("int8", 64, False)])
def test_qkv_sm90_swap(sm90, monkeypatch, rng, poison, layout, kind, gs, zeros):  # noqa: F811
    """The swap-AB kernel's segments: both layouts, bias, ragged M, int4 group sizes and zero points, int8
    per-channel scales (an epilogue ColScale) with a ragged K (a zero-filled last 64-k slot)."""
    from kaiodsl.ops import qkv_sm90

    calls = spy(monkeypatch, qkv_sm90, "launch_w4_swap_segments")
    _run(rng, kind, "f16", 2, 40, 256 if kind == "int4" else 208, 4, 2, 32, layout=layout, bias=True, gs=gs,
         zeros=zeros, config=SWAP64)
    assert calls


@pytest.mark.parametrize("dt,out", [("bf16", None), ("f16", "f32")])
def test_qkv_sm90_int4_swap_dtypes(sm90, monkeypatch, rng, poison, dt, out):  # noqa: F811
    """bf16 activations (weights dequantized to bf16, as the shared-B kernel does: its tolerance), and f32
    outputs of f16 activations (exact f16 weights: f32's tolerance)."""
    from kaiodsl.ops import qkv_sm90

    calls = spy(monkeypatch, qkv_sm90, "launch_w4_swap_segments")
    _run(rng, "int4", dt, 1, 72, 256, 4, 2, 32, x3d=False, bias=True, out_dtype=out,
         config=W4SwapConfig(block_m=48, block_n=64, stages=3))
    assert calls


def test_qkv_sm90_int4_swap_refuses_rope(sm90):
    """A rope needs the shared-B kernel; the swap config is refused by name, and the default picks the other."""
    x = np.zeros((80, 128), np.float16)
    w = [ops.pack_int4(np.zeros((n, 128), np.uint8)) for n in (128, 64, 64)]
    s = [np.ones((n, 1), np.float16) for n in (128, 64, 64)]
    rope = (np.ones((80, 16), np.float32), np.zeros((80, 16), np.float32))
    with pytest.raises(ArgumentError, match="no rope epilogue"):
        ops.qkv_project_int4(x, *w, *s, head_dim=32, rope=rope, rope_style="rotate_half", config=SWAP64)
    assert isinstance(qmod.qkv_choice("int4", 2048, 4096, 4096, 1024, 128, "rotate_half").config, W4Config)


# -- Llama-3-8B: the kernels assemble without spills; the GPU twins at M = 2048 ---------------------------
LLAMA8B = (4096, 32, 8, 128)


def _llama_kernel(kind, bhsd, style, zeros=False, gs=128, dtype="f16"):
    """The kernel qkv_choice picks for Llama-3-8B at M = 2048 (test_qkv_sm90_quant_choice), bias and positions."""
    from kaiodsl import f16
    from kaiodsl.ops import gemm_sm90_w4, qkv_sm90

    hidden, H, Hkv, D = LLAMA8B
    cfg = gemm_sm90_w4.NARROW if style else gemm_sm90_w4.TALL_WS if kind == "int8" else gemm_sm90_w4.TALL
    segs, types = qkv_sm90.segments(H * D, Hkv * D, f16, True, bhsd, 1024, D, style, True, kind == "int8")
    Dq = gemm_sm90_w4.W4Dequant(cfg, dtype, gs if kind == "int4" else 0, zeros, kind)
    return gemm_sm90_w4.w4_segments_kernel(Dq, segs, "i8" if kind == "int8" else "i32", types)


LLAMA_KERNELS = [("int8", False, "", False, 0), ("int8", True, "rotate_half", False, 0),
                 ("int4", False, "", False, 128), ("int4", False, "", True, 32), ("int4", True, "", True, 64),
                 ("int4", True, "rotate_half", True, 128), ("int4", True, "interleaved", True, 32)]


@pytest.mark.parametrize("kind,bhsd,style,zeros,gs", LLAMA_KERNELS)
def test_qkv_sm90_quant_llama_kernel_no_spills(kind, bhsd, style, zeros, gs):
    """The kernels the heuristic picks for Llama-3-8B (bias, positions) assemble for sm_90a without spills."""
    stats = _llama_kernel(kind, bhsd, style, zeros, gs).compile(arch="sm_90a").stats()
    assert stats["spills"] == 0 and stats["local_bytes"] == 0, stats


@pytest.mark.parametrize("bhsd,zeros,gs", [(False, False, 128), (True, True, 32), (False, True, 64)])
def test_qkv_sm90_int4_swap_llama_kernel_no_spills(bhsd, zeros, gs):
    """The swap-AB kernel qkv_choice picks for Llama-3-8B without a rope (bias) assembles without spills."""
    from kaiodsl import f16
    from kaiodsl.ops import gemm_sm90_w4_swap, qkv_sm90

    hidden, H, Hkv, D = LLAMA8B
    segs, types = qkv_sm90.segments(H * D, Hkv * D, f16, True, bhsd, 1024, D, "", False)
    k = gemm_sm90_w4_swap.w4_swap_segments_kernel("f16", gs, zeros, gemm_sm90_w4_swap.DEFAULT, segs, "i32", types)
    stats = k.compile(arch="sm_90a").stats()
    assert stats["spills"] == 0 and stats["local_bytes"] == 0, stats


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["int8", "int4"])
@pytest.mark.parametrize("layout,style", [("mn", None), ("bhsd", "rotate_half"), ("bhsd", "interleaved")])
def test_qkv_sm90_quant_gpu_llama8b(sm90, torch_cuda, rng, kind, layout, style):
    torch = torch_cuda
    if sm90.name != "cuda":
        pytest.skip("Llama shapes run on the GPU only")
    from test_qkv_gpu import _check, _rope_ref

    hidden, H, Hkv, D = LLAMA8B
    B, S, gs = 2, 1024, 128
    Ns = (H * D, Hkv * D, Hkv * D)
    if kind == "int8":
        qs = [torch.randint(-128, 128, (n, hidden), device="cuda", dtype=torch.int8) for n in Ns]
        ss = [torch.rand(n, device="cuda") * 2e-4 + 1e-4 for n in Ns]
        wargs, extra = qs + ss, {}
        wf = [q.double() * s.double()[:, None] for q, s in zip(qs, ss)]
    else:
        q8 = [rng.integers(0, 16, (n, hidden), dtype=np.uint8) for n in Ns]
        ss = [(torch.rand(n, hidden // gs, device="cuda") * 2e-3 + 1e-3).half() for n in Ns]
        zs = [rng.integers(0, 16, (n, hidden // gs), dtype=np.uint8) for n in Ns]
        wargs = [torch.from_numpy(ops.pack_int4(q)).cuda() for q in q8] + ss
        extra = dict(group_size=gs, zeros=[torch.from_numpy(z).cuda() for z in zs])
        wf = [(torch.from_numpy(q).cuda().double() - torch.from_numpy(z).cuda().double().repeat_interleave(gs, 1))
              * s.double().repeat_interleave(gs, 1) for q, z, s in zip(q8, zs, ss)]
    bs = [torch.randn(n, device="cuda") for n in Ns]
    x = torch.randn(B, S, hidden, device="cuda", dtype=torch.float16)
    kw = dict(bias=bs, layout=layout, head_dim=D, **extra)
    pos = torch.randint(0, S + 64, (B * S,), device="cuda", dtype=torch.int32)
    if style:
        ang = torch.rand(S + 64, D // 2, device="cuda") * 6.28
        kw.update(rope=(ang.cos(), ang.sin()), rope_style=style, positions=pos)
    choice = qmod.qkv_choice(kind, B * S, hidden, Ns[0], Ns[1], D, style or "")
    assert isinstance(choice.config, (W4Config, W4SwapConfig)), choice
    op = ops.qkv_project_int8 if kind == "int8" else ops.qkv_project_int4
    outs = op(x, *wargs, **kw)
    x2 = x.reshape(B * S, hidden).double()
    for n, (o, w, b) in enumerate(zip(outs, wf, bs)):
        y = x2 @ w.T + b.double()
        if style and n < 2:
            y = _rope_ref(torch, y, kw["rope"][0], kw["rope"][1], pos.long(), D, style)
        want = y.reshape(B, S, -1, D).transpose(1, 2) if layout == "bhsd" else y.reshape(B, S, -1)
        assert o.shape == want.shape
        _check(torch, o, want)
    again = op(x, *wargs, **kw)
    assert all(torch.equal(a, b) for a, b in zip(outs, again))          # deterministic
