"""The fp8 (e4m3) Hopper attention forward (ops/attention_sm90_fp8.py) through ops.attention(descale=).

Inputs are e4m3 codes of Gaussian values (numpy has no fp8: DeviceArrays of kaiodsl.e4m3, or torch
float8_e4m3fn tensors), decoded exactly by ops.fp8_values. Two references:

* float64 attention on the dequantized values (reference_attention of fp8_values * descale): the
  kernel rounds P to e4m3 (3 mantissa bits, a relative rounding error up to 2^-4) before P V, so the
  output is off by a relative norm of about 2.5e-2 (measured: 0.021..0.026 over the cases below, the
  same on D 64 / 128 and with causal masks; the P errors are independent and average out over the keys,
  which is why it is well under 2^-4). TOL_F64 = 4e-2 leaves room for other seeds and shapes.
* ``_emulated``: the kernel's arithmetic in numpy (the online softmax tile by tile, P rounded to e4m3
  with the running max of its tile, l summed from the unrounded p): what remains is ex2.approx flipping
  a rare e4m3 rounding, the f32 sums and the f16/bf16 output rounding, TOL_EMU below.

Simulator shapes are small (a few 384-thread blocks); the GPU runs S 1024..4096 and a determinism check.
"""

import math

import numpy as np
import pytest

import kaiodsl
import kaiodsl.runtime
from kaiodsl import ops
from kaiodsl.errors import ArgumentError
from kaiodsl.ops import attention_sm90_fp8 as fp8
from kaiodsl.ops.attention import CAUSAL, reference_attention
from kaiodsl.ops.attention_sm90 import Sm90AttnConfig
from kaiodsl.sim.numeric import f32_to_fp8
from kaiodsl.tiles import fragments

from opkit import host, ptxas_report, record

TOL_F64 = 4e-2
TOL_EMU = {"bf16": 5e-3, "f16": 1e-3}    # measured 1.5e-3 / 2e-4: the output rounding, a few ulps
# On the H200 the fp8 wgmma sums in an accumulator narrower than f32 (opkit.FP8_GPU_F32_TOL): against the
# exact-f32 emulation f16 outputs were off by 1.3e-3 .. 3.7e-3 and the LSE by 2e-4 .. 1.2e-3 relative;
# the float64 bound TOL_F64 is the same on both backends.
TOL_EMU_GPU = {"bf16": 8e-3, "f16": 6e-3}
LSE_RTOL = {"sim": 2e-4, "cuda": 3e-3}
LOG2E = 1.4426950408889634
RESCALE_LOG2 = 8.0             # kaiodsl.tiles.softmax.RESCALE_LOG2, restated: the test pins the value


@pytest.fixture
def used(monkeypatch):
    """The configs the fp8 kernel ran with in this test."""
    return record(monkeypatch, fp8, "launch", lambda args: args[-2])


def _codes(rng, shape, spread=3.0):
    return f32_to_fp8(rng.standard_normal(shape) * spread, "e4m3")


def _dev(codes):
    return kaiodsl.runtime.to_device(codes, kaiodsl.e4m3)


def _inputs(rng, B, H, Hkv, Sq, Sk, D):
    """(q, k, v) DeviceArrays and their e4m3 values (float64)."""
    codes = (_codes(rng, (B, H, Sq, D)), _codes(rng, (B, Hkv, Sk, D)), _codes(rng, (B, Hkv, Sk, D)))
    return tuple(_dev(c) for c in codes), tuple(ops.fp8_values(c, "e4m3") for c in codes)


def _per_head(d, n):
    return np.broadcast_to(np.asarray(d, np.float64).reshape(-1, 1, 1), (n, 1, 1))


def _true_values(vals, descale, H, Hkv):
    """q * dq etc. with per-tensor or per-head ([H] / [Hkv] / [1]) descales."""
    out = []
    for x, d, n in zip(vals, descale, (H, Hkv, Hkv)):
        d = np.asarray(host(d) if not np.isscalar(d) else d, np.float64)
        out.append(x * (_per_head(d, n) if d.ndim else float(d)))
    return out


def _emulated(vals, descale, causal, scale, bn, H, Hkv, lazy=True):
    """The kernel's arithmetic in float64: per key tile the running max m, p = exp2(s c - m c) with
    c = scale log2(e) dq dk (s the raw e4m3 product), P rounded to e4m3 for P V, l from the unrounded p.
    ``lazy`` (softmax.lazy_update): m moves only in a tile where some row of the warp's 16 (rows
    16 w .. 16 w + 15) sees a score above its max by more than RESCALE_LOG2, and then for all 16."""
    q, k, v = vals
    B, _, Sq, D = q.shape
    Sk = k.shape[2]
    g = H // Hkv
    dq, dk, dv = (np.asarray(host(d) if not np.isscalar(d) else d, np.float64).reshape(-1) for d in descale)
    qh = np.arange(H)
    c = scale * LOG2E * dq[qh % dq.size] * dk[(qh // g) % dk.size]
    dvh = dv[(qh // g) % dv.size]
    kr, vr = np.repeat(k, g, axis=1), np.repeat(v, g, axis=1)
    s = np.einsum("bhqd,bhkd->bhqk", q, kr)
    mode = CAUSAL[causal]
    shift = Sk - Sq if mode == "bottom_right" else 0
    keep = np.ones((Sq, Sk), bool) if mode is None else np.arange(Sk)[None, :] <= np.arange(Sq)[:, None] + shift
    s = np.where(keep, s, -np.inf)
    m = np.full((B, H, Sq, 1), -np.inf)
    l = np.zeros((B, H, Sq, 1))
    o = np.zeros((B, H, Sq, D))
    cc = c[None, :, None, None]
    for k0 in range(0, Sk, bn):
        st = s[..., k0:k0 + bn]
        m_new = np.maximum(m, st.max(-1, keepdims=True))
        if lazy:
            with np.errstate(invalid="ignore"):
                grow = (m_new - m) * cc > RESCALE_LOG2                    # NaN (-inf twice): no move
            pad = np.pad(grow[..., 0], ((0, 0), (0, 0), (0, -Sq % 16)))
            moved = np.repeat(pad.reshape(B, H, -1, 16).any(-1), 16, axis=-1)[..., :Sq, None]
            m_new = np.where(moved, m_new, m)
        off = np.where(np.isneginf(m_new), 0.0, m_new * cc)
        with np.errstate(invalid="ignore"):
            alpha = np.exp2(m * cc - off)
            p = np.exp2(st * cc - off)
        alpha, p = np.nan_to_num(alpha), np.nan_to_num(p)
        pq = ops.fp8_values(f32_to_fp8(p.astype(np.float32), "e4m3"), "e4m3")
        o = o * alpha + np.einsum("bhqk,bhkd->bhqd", pq, vr[..., k0:k0 + bn, :])
        l = l * alpha + p.sum(-1, keepdims=True)
        m = m_new
    return np.where(l > 0, o * dvh[None, :, None, None] / np.where(l > 0, l, 1.0), 0.0)


def _check(o, lse, vals, descale, causal, scale, bn, H, Hkv, out_dtype):
    true = _true_values(vals, descale, H, Hkv)
    want, want_lse = reference_attention(*true, causal, scale)
    got = host(o).astype(np.float64).reshape(want.shape)
    lse = host(lse)
    assert not np.isnan(got).any() and not np.isnan(lse).any()
    err = np.linalg.norm(got - want) / np.linalg.norm(want)
    assert err < TOL_F64, err
    emu = _emulated(vals, descale, causal, scale or 1 / math.sqrt(got.shape[-1]), bn, H, Hkv)
    err_emu = np.linalg.norm(got - emu) / np.linalg.norm(emu)
    gpu = kaiodsl.runtime.get_backend_name() == "cuda"
    assert err_emu < (TOL_EMU_GPU if gpu else TOL_EMU)[out_dtype], err_emu
    empty = np.isneginf(want_lse)
    np.testing.assert_array_equal(np.isneginf(lse), empty)
    assert (got[empty] == 0).all()
    tol = LSE_RTOL["cuda" if gpu else "sim"]
    np.testing.assert_allclose(lse[~empty], want_lse[~empty], rtol=tol, atol=tol)
    return err, err_emu


def _poisoned(shape, out_dtype):
    nan = np.full(shape, np.nan, np.float32)
    if out_dtype == "f16":
        return kaiodsl.runtime.to_device(nan.astype(np.float16))
    return kaiodsl.runtime.to_device(nan, kaiodsl.bf16)


SIM_CASES = [  # B, H, Hkv, Sq, Sk, D, causal, out_dtype, config
    (1, 2, 2, 150, 150, 64, False, "bf16", None),                         # ragged: 2 query tiles, key padding
    (1, 2, 2, 150, 150, 128, True, "f16", None),                          # D = 128: one 128-byte column block
    (1, 4, 2, 150, 170, 64, True, "bf16", Sm90AttnConfig(bn=64)),         # GQA 4/2, 64-byte V^T boxes
    (1, 2, 1, 100, 230, 128, "bottom_right", "f16", Sm90AttnConfig(bn=64, stages=3)),
    (1, 2, 2, 200, 90, 64, "bottom_right", "bf16", None),                 # Sq > Sk: rows that see no key
    (2, 1, 1, 70, 300, 128, False, "bf16", Sm90AttnConfig(bn=32)),        # 10 key tiles: the rings wrap 5 times
    (1, 2, 2, 150, 200, 64, True, "f16", Sm90AttnConfig(bn=96, overlap=False)),   # 32-byte boxes, serial
    (1, 2, 2, 130, 300, 64, True, "bf16", Sm90AttnConfig(bn=32, pingpong=True)),  # consumers alternate
    (1, 2, 1, 130, 260, 128, False, "f16", Sm90AttnConfig(bn=256, stages=1)),     # two 128-byte V^T boxes
]


@pytest.mark.parametrize("B,H,Hkv,Sq,Sk,D,causal,out_dtype,config", SIM_CASES)
def test_fp8_attention_matches_float64(sm90, used, rng, B, H, Hkv, Sq, Sk, D, causal, out_dtype, config):
    args, vals = _inputs(rng, B, H, Hkv, Sq, Sk, D)
    descale = (0.5, 0.125, 0.25)
    out = _poisoned((B, H, Sq, D), out_dtype)
    o, lse = ops.attention(*args, causal=causal, descale=descale, out_dtype=out_dtype, return_lse=True,
                           out=out, config=config)
    assert o is out and len(used) == 1
    bn = (config or fp8.default_config(D)).bn
    _check(o, lse, vals, descale, causal, None, bn, H, Hkv, out_dtype)


def test_sm90_f16_one_stage_ring_wraps(sm90, rng):
    """The f16 kernel with one-slot rings over several key tiles (tiles.pipeline's one-slot mbarrier
    ring flips its phase every step; it once stayed at 0 and the second pass failed)."""
    q = rng.standard_normal((1, 1, 70, 64)).astype(np.float16)
    k = rng.standard_normal((1, 1, 200, 64)).astype(np.float16)
    o = ops.attention(q, k, k, config=Sm90AttnConfig(bn=64, stages=1))
    want, _ = reference_attention(q, k, k)
    assert np.linalg.norm(host(o) - want) / np.linalg.norm(want) < 2e-3


@pytest.mark.parametrize("form", ["per_head", "one"])
def test_fp8_attention_descale_arrays(sm90, used, rng, form):
    """Per-head f32 descales ([H] for q, [Hkv] for k and v) and one-element ones, read on the device."""
    B, H, Hkv, Sq, Sk, D = 1, 4, 2, 80, 100, 64
    args, vals = _inputs(rng, B, H, Hkv, Sq, Sk, D)
    n = (H, Hkv, Hkv) if form == "per_head" else (1, 1, 1)
    descale = tuple(kaiodsl.runtime.to_device((2.0 ** rng.integers(-3, 2, c) * rng.uniform(0.7, 1.3, c))
                                              .astype(np.float32)) for c in n)
    o, lse = ops.attention(*args, causal=True, scale=0.2, descale=descale, return_lse=True)
    assert len(used) == 1
    _check(o, lse, vals, descale, True, 0.2, 128, H, Hkv, "bf16")


def test_fp8_attention_torch_tensors(sm90, used, rng):
    """torch float8_e4m3fn tensors (CPU ones in the simulator); the output is a torch bf16 tensor."""
    torch = pytest.importorskip("torch")
    device = "cuda" if sm90.name == "cuda" else "cpu"
    B, H, Sq, Sk, D = 1, 2, 90, 120, 128
    codes = (_codes(rng, (B, H, Sq, D)), _codes(rng, (B, H, Sk, D)), _codes(rng, (B, H, Sk, D)))
    args = tuple(torch.from_numpy(c).view(torch.float8_e4m3fn).to(device) for c in codes)
    o = ops.attention(*args, descale=(1.0, 0.5, 2.0))
    assert o.dtype == torch.bfloat16 and len(used) == 1
    vals = tuple(ops.fp8_values(c, "e4m3") for c in codes)
    want, _ = reference_attention(vals[0], vals[1] * 0.5, vals[2] * 2.0)
    assert np.linalg.norm(host(o) - want) / np.linalg.norm(want) < TOL_F64


@pytest.mark.parametrize("D,Sk", [(64, 70), (128, 33), (64, 32)])
def test_fp8_vt_prep_bit_exact(sm90, rng, monkeypatch, D, Sk):
    """V^T [B, Hkv, D, Sk_pad]: keys of each 32-key chunk in fragments.a8_order, zeros in the pad
    (written into a buffer poisoned with 0xFF)."""
    monkeypatch.setattr(fp8, "new_like", lambda like, shape, dtype: kaiodsl.runtime.to_device(
        np.full(shape, 0xFF, np.uint8)))
    codes = rng.integers(0, 256, (2, 3, Sk, D)).astype(np.uint8)
    v = _dev(codes)
    vt = host(fp8.transpose_v(v, fp8.inspect_array("v", v, "t"), 6, Sk, D))
    skp = fp8.padded_keys(Sk)
    pad = np.zeros((2, 3, skp, D), np.uint8)
    pad[:, :, :Sk] = codes
    order = (np.arange(skp) // 32) * 32 + np.tile(fragments.a8_order(), skp // 32)
    np.testing.assert_array_equal(vt, pad[:, :, order, :].transpose(0, 1, 3, 2))


def test_a8_order_is_the_accumulator_columns_of_the_a_fragment():
    """A's k index p (lane t holds k 4t..4t+3 and 16+4t..16+4t+3) -> the column that lane holds in the
    m16n8 C layout (8j + 2t + {0, 1}): every lane keeps its own values."""
    order = fragments.a8_order()
    assert sorted(order) == list(range(32))
    for t in range(4):
        held = {8 * j + 2 * t + e for j in range(4) for e in range(2)}
        ks = [4 * t + i for i in range(4)] + [16 + 4 * t + i for i in range(4)]
        assert {int(order[k]) for k in ks} == held


@pytest.fixture
def no_fp8_launch(sm90, no_launch, monkeypatch):
    """ops.attention's fp8 path must stop before any allocation or launch."""
    def no_alloc(*args, **kwargs):
        raise AssertionError("allocated although the arguments are invalid")

    monkeypatch.setattr(fp8, "new_like", no_alloc)
    monkeypatch.setattr(fp8, "_DUMMY", {})
    monkeypatch.setenv("KAIODSL_ARCH", "sm_90a")


def _ok(D=64, Sq=70, Sk=80, H=2, Hkv=2):
    z = np.full((1, H, Sq, D), 0x38, np.uint8)
    kv = np.full((1, Hkv, Sk, D), 0x38, np.uint8)
    return _dev(z), _dev(kv), _dev(kv.copy())


F32 = kaiodsl.runtime.to_device


ERRORS = [
    (dict(descale=(1.0, 1.0)), r"descale must be \(dq, dk, dv\)"),
    (dict(descale=(1.0, 0.0, 1.0)), r"descale\[1\] \(dk\) must be a finite positive number, got 0.0"),
    (dict(descale=(1.0, float("nan"), 1.0)), r"descale\[1\] \(dk\) must be a finite positive"),
    (dict(descale=(1.0, np.ones(2, np.float32), 1.0)), "not a mix"),
    (dict(descale=(np.ones(3, np.float32),) * 3), r"descale\[0\] \(dq\) has shape \(3,\); allowed: a contiguous "
                                                  r"f32 \[H=2\]"),
    (dict(descale=(np.ones(2, np.float64),) * 3), r"descale\[0\] \(dq\)' has dtype f64; allowed: f32"),
    (dict(out_dtype="f32"), "out_dtype for fp8 inputs must be 'bf16' \\(default\\) or 'f16', got 'f32'"),
    (dict(config=Sm90AttnConfig(bn=48)), "bn a multiple of 32"),
    (dict(config=Sm90AttnConfig(bn=256, stages=7)), "bytes of shared memory"),
    (dict(num_splits=2), "num_splits are not supported for fp8"),
    (dict(causal="diagonal"), "causal must be"),
]


@pytest.mark.parametrize("kwargs,match", ERRORS)
def test_fp8_attention_errors(no_fp8_launch, kwargs, match):
    kw = dict(descale=(1.0, 1.0, 1.0))
    kw.update(kwargs)
    ds = kw["descale"]
    if isinstance(ds, tuple) and any(isinstance(x, np.ndarray) for x in ds):
        kw["descale"] = tuple(F32(x) if isinstance(x, np.ndarray) else x for x in ds)
    with pytest.raises(ArgumentError, match=match):
        ops.attention(*_ok(), **kw)


def test_fp8_attention_operand_errors(no_fp8_launch):
    q, k, v = _ok()
    with pytest.raises(ArgumentError, match="head dim D=64 or 128, got D=32"):
        ops.attention(*_ok(D=32), descale=(1.0, 1.0, 1.0))
    with pytest.raises(ArgumentError, match="'k' has dtype f16; allowed: e4m3"):
        ops.attention(q, F32(np.ones((1, 2, 80, 64), np.float16)), v, descale=(1.0, 1.0, 1.0))
    with pytest.raises(ArgumentError, match="'q' has dtype f16; allowed: e4m3"):
        ops.attention(F32(np.ones((1, 2, 70, 64), np.float16)), k, v, descale=(1.0, 1.0, 1.0))
    with pytest.raises(ArgumentError, match=r"fp8 \(e4m3\) inputs are taken by attention\(..., descale="):
        ops.attention(q, k, v)
    with pytest.raises(ArgumentError, match="Sk >= 1"):
        ops.attention(*_ok(Sk=0), descale=(1.0, 1.0, 1.0))
    with pytest.raises(ArgumentError, match=r"'out' has dtype f16; allowed: bf16"):
        ops.attention(q, k, v, descale=(1.0, 1.0, 1.0), out=F32(np.ones((1, 2, 70, 64), np.float16)))


def test_fp8_attention_needs_sm90a(backend, no_launch, monkeypatch):
    monkeypatch.setenv("KAIODSL_ARCH", "sm_89")
    monkeypatch.setattr(fp8, "new_like", lambda *a, **k: (_ for _ in ()).throw(AssertionError("allocated")))
    with pytest.raises(ArgumentError, match="sm_90a kernel only; the target is sm_89"):
        ops.attention(*_ok(), descale=(1.0, 1.0, 1.0))


def test_fp8_attention_kernels_do_not_spill():
    """ptxas (where it is on PATH; nvJitLink ignores setmaxnreg, so its figures do not apply) puts the
    default tilings' consumers in 240 registers without spills."""
    for d, causal, cfg, per_head in ((64, False, fp8.default_config(64), False), (128, True, fp8.default_config(128), True),
                                     (128, False, Sm90AttnConfig(pingpong=True), False)):
        err = ptxas_report(fp8.fp8_attention_kernel(d, "bf16", cfg, causal, per_head).compile(arch="sm_90a").ptx)
        assert "0 bytes spill stores, 0 bytes spill loads" in err, err
        assert "C7513" not in err and "C7509" not in err, err    # wgmma not serialised


# -- GPU tier ----------------------------------------------------------------------------------------

GPU_SHAPES = [  # B, H, Hkv, Sq, Sk, D, causal
    (2, 8, 8, 1024, 1024, 64, False), (2, 16, 4, 2048, 2048, 128, True), (1, 16, 16, 4096, 4096, 128, False),
    (1, 8, 8, 4096, 4096, 64, True), (2, 8, 2, 1000, 1500, 128, "bottom_right")]


def _gpu_inputs(torch, B, H, Hkv, Sq, Sk, D):
    """e4m3 tensors of N(0, 3^2) values and their float64 values (on the GPU)."""
    q = (torch.randn(B, H, Sq, D, device="cuda") * 3).to(torch.float8_e4m3fn)
    k, v = ((torch.randn(B, Hkv, Sk, D, device="cuda") * 3).to(torch.float8_e4m3fn) for _ in range(2))
    return q, k, v


def _torch_reference(torch, q, k, v, causal, scale):
    """float64 (o, lse) one head at a time."""
    B, H, Sq, D = q.shape
    Hkv, Sk = k.shape[1], k.shape[2]
    o = torch.empty(q.shape, dtype=torch.float64, device=q.device)
    lse = torch.empty((B, H, Sq), dtype=torch.float64, device=q.device)
    shift = Sk - Sq if causal == "bottom_right" else 0
    keep = torch.arange(Sk, device=q.device)[None, :] <= torch.arange(Sq, device=q.device)[:, None] + shift
    for b in range(B):
        for h in range(H):
            s = q[b, h] @ k[b, h // (H // Hkv)].T * scale
            if causal:
                s = s.masked_fill(~keep, -math.inf)
            lse[b, h] = torch.logsumexp(s, -1)
            o[b, h] = torch.softmax(s, -1) @ v[b, h // (H // Hkv)]
    return o, lse


@pytest.mark.gpu
@pytest.mark.parametrize("out_dtype", ["bf16", "f16"])
@pytest.mark.parametrize("B,H,Hkv,Sq,Sk,D,causal", GPU_SHAPES)
def test_fp8_attention_gpu_large(torch_sm90, used, B, H, Hkv, Sq, Sk, D, causal, out_dtype):
    torch = torch_sm90
    q, k, v = _gpu_inputs(torch, B, H, Hkv, Sq, Sk, D)
    dq, dk, dv = 0.5, 0.25, 0.125
    td = {"bf16": torch.bfloat16, "f16": torch.float16}[out_dtype]
    out = torch.full((B, H, Sq, D), float("nan"), dtype=td, device="cuda")
    o, lse = ops.attention(q, k, v, causal=causal, descale=(dq, dk, dv), out_dtype=out_dtype, return_lse=True,
                           out=out)
    torch.cuda.synchronize()
    assert len(used) == 1 and not torch.isnan(o).any()
    ref, ref_lse = _torch_reference(torch, q.double() * dq, k.double() * dk, v.double() * dv, causal,
                                    1 / math.sqrt(D))
    err = (o.double() - ref).norm().item() / ref.norm().item()
    assert err < TOL_F64, err
    assert (lse.double() - ref_lse).abs().max().item() < 1e-3


@pytest.mark.gpu
def test_fp8_attention_gpu_per_head_descale(torch_sm90, used):
    torch = torch_sm90
    B, H, Hkv, S, D = 2, 8, 2, 2048, 128
    q, k, v = _gpu_inputs(torch, B, H, Hkv, S, S, D)
    dq = torch.rand(H, device="cuda") + 0.5
    dk, dv = (torch.rand(Hkv, device="cuda") + 0.5 for _ in range(2))
    o = ops.attention(q, k, v, causal=True, descale=(dq, dk, dv))
    ref, _ = _torch_reference(torch, q.double() * dq.double()[:, None, None],
                              k.double() * dk.double()[:, None, None], v.double() * dv.double()[:, None, None],
                              True, 1 / math.sqrt(D))
    assert (o.double() - ref).norm().item() / ref.norm().item() < TOL_F64


@pytest.mark.gpu
def test_fp8_attention_gpu_deterministic(torch_sm90, used):
    torch = torch_sm90
    q, k, v = _gpu_inputs(torch, 2, 16, 16, 4096, 4096, 128)
    first = ops.attention(q, k, v, causal=True, descale=(1.0, 1.0, 1.0), return_lse=True)
    for _ in range(3):
        again = ops.attention(q, k, v, causal=True, descale=(1.0, 1.0, 1.0), return_lse=True)
        assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert len(used) == 4
