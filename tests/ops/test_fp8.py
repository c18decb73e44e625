"""ops.matmul_fp8: e4m3 / e5m2 GEMMs on the Hopper kernel, against float64.

Both backends compile for sm_90a (KAIODSL_ARCH); the simulator (sm_count 3) runs small tilings whose
persistent blocks walk several tiles each. Inputs are built as fp8 bytes (numpy has no fp8) and decoded
by ops.fp8_values; small-integer values make every product and sum exact in f32, so those runs are
checked bit for bit; random values by relative norm."""

import numpy as np
import pytest

import kaiodsl
import kaiodsl.runtime
from kaiodsl import ops
from kaiodsl.ops.gemm_sm90 import Sm90Config

from opkit import TOL, fp8_tol, host, rel_err

SMALL = Sm90Config(block_m=128, block_n=64, stages=2, consumers=2)
ONE_WG = Sm90Config(block_m=64, block_n=32, stages=3, consumers=1)
TALL = Sm90Config(block_m=256, block_n=48, stages=2, consumers=2)     # two m64 blocks per consumer
PAIRS = [("e4m3", "e4m3"), ("e5m2", "e5m2"), ("e4m3", "e5m2"), ("e5m2", "e4m3")]
CODES = np.arange(256, dtype=np.uint8)


def _codes(rng, shape, kind, small=False):
    """Random fp8 bytes: finite values up to 16 in magnitude, or (``small``) the integers -4..4."""
    v = ops.fp8_values(CODES, kind)
    ok = (np.abs(v) <= 4) & (v == np.round(v)) if small else np.isfinite(v) & (np.abs(v) <= 16)
    return rng.choice(CODES[ok], shape)


def _dev(codes, kind):
    return kaiodsl.runtime.to_device(codes, getattr(kaiodsl, kind))


def _f32(x):
    return kaiodsl.runtime.to_device(np.asarray(x, np.float32))


def _pow2(rng, n):
    return (2.0 ** rng.integers(-2, 3, n)).astype(np.float32)


@pytest.mark.parametrize("M,N,K,config,pair", [(200, 136, 208, SMALL, p) for p in PAIRS] +
                         [(64, 45, 96, ONE_WG, ("e4m3", "e4m3")), (300, 70, 272, TALL, ("e5m2", "e4m3")),
                          (1, 16, 16, SMALL, ("e4m3", "e5m2"))])
def test_fp8_exact_small_integers(sm90, rng, M, N, K, config, pair):
    """Integer values, power-of-two scales, an integer bias: exact in f32, so equal to float64."""
    ac, bc = _codes(rng, (M, K), pair[0], True), _codes(rng, (N, K), pair[1], True)
    sa, sb, bias = _pow2(rng, M), _pow2(rng, N), rng.integers(-8, 9, N).astype(np.float32)
    out = ops.matmul_fp8(_dev(ac, pair[0]), _dev(bc, pair[1]), _f32(sa), _f32(sb), bias=_f32(bias),
                         out_dtype="f32", config=config)
    want = (ops.fp8_values(ac, pair[0]) @ ops.fp8_values(bc, pair[1]).T) * sa[:, None] * sb[None, :] + bias
    np.testing.assert_array_equal(host(out), want)


SA_FORMS = ["float", "scalar", "one", "row", "row2"]
SB_FORMS = ["float", "scalar", "col", "col2"]


def _scale(rng, form, n, axis):
    """(the op's argument, its float64 values broadcastable to [M, N]) for a scale in ``form``."""
    if form == "float":
        return 0.75, 0.75
    if form in ("scalar", "one"):
        v = np.float32(rng.uniform(0.5, 2))
        return _f32(np.array(v) if form == "scalar" else [v]), float(v)
    v = rng.uniform(0.5, 2, n).astype(np.float32)
    shape = {"row": (n,), "row2": (n, 1), "col": (n,), "col2": (1, n)}[form]
    return _f32(v.reshape(shape)), v.astype(np.float64).reshape((-1, 1) if axis == "row" else (1, -1))


@pytest.mark.parametrize("sb_form", SB_FORMS)
@pytest.mark.parametrize("sa_form", SA_FORMS)
def test_fp8_scale_forms(sm90, rng, sa_form, sb_form):
    M, N, K = 130, 48, 64
    ac, bc = _codes(rng, (M, K), "e4m3"), _codes(rng, (N, K), "e4m3")
    sa, sav = _scale(rng, sa_form, M, "row")
    sb, sbv = _scale(rng, sb_form, N, "col")
    out = ops.matmul_fp8(_dev(ac, "e4m3"), _dev(bc, "e4m3"), sa, sb, out_dtype="f32", config=SMALL)
    want = (ops.fp8_values(ac, "e4m3") @ ops.fp8_values(bc, "e4m3").T) * sav * sbv
    assert rel_err(host(out), want) < fp8_tol(sm90, "f32")


@pytest.mark.parametrize("bias", [None, "f32"])
@pytest.mark.parametrize("out_dtype", ["bf16", "f16", "f32"])
@pytest.mark.parametrize("pair", [("e4m3", "e4m3"), ("e5m2", "e4m3")])
def test_fp8_out_dtypes_and_bias(sm90, rng, pair, out_dtype, bias):
    M, N, K = 150, 70, 144
    ac, bc = _codes(rng, (M, K), pair[0]), _codes(rng, (N, K), pair[1])
    bv = rng.standard_normal(N).astype(np.float32) * 50 if bias else None
    out = ops.matmul_fp8(_dev(ac, pair[0]), _dev(bc, pair[1]), _f32([0.5]), _f32([0.25]), out_dtype=out_dtype,
                         bias=None if bv is None else _f32(bv), config=SMALL)
    assert out.scalar_type.name == out_dtype and out.shape == (M, N)
    want = ops.reference_matmul_fp8(_dev(ac, pair[0]), _dev(bc, pair[1]), 0.5, 0.25, bv)
    assert rel_err(host(out), want) < fp8_tol(sm90, out_dtype)


def test_fp8_default_config(sm90, rng):
    """config='auto': the heuristic's tiling (128 x 128 here: few tiles), any M (one row, one padded tile)."""
    for M in (1, 260):
        ac, bc = _codes(rng, (M, 32), "e4m3", True), _codes(rng, (24, 32), "e4m3", True)
        out = ops.matmul_fp8(_dev(ac, "e4m3"), _dev(bc, "e4m3"), 1.0, 1.0, out_dtype="f32")
        np.testing.assert_array_equal(host(out), ops.fp8_values(ac, "e4m3") @ ops.fp8_values(bc, "e4m3").T)


def test_fp8_torch_tensors(sm90, rng):
    """torch float8 tensors (CPU ones in the simulator), a per-tensor scale tensor, an f16 bias widened."""
    torch = pytest.importorskip("torch")
    device = "cuda" if sm90.name == "cuda" else "cpu"
    ac, bc = _codes(rng, (140, 64), "e4m3"), _codes(rng, (40, 64), "e5m2")
    a = torch.from_numpy(ac).view(torch.float8_e4m3fn).to(device)
    b = torch.from_numpy(bc).view(torch.float8_e5m2).to(device)
    sa, sb = torch.tensor(0.5, device=device), torch.rand(40, device=device) + 0.5
    bias = torch.randn(40, device=device).half()
    out = ops.matmul_fp8(a, b, sa, sb, bias=bias, config=SMALL)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.bfloat16 and out.device.type == device
    assert rel_err(host(out), ops.reference_matmul_fp8(a, b, sa, sb, bias)) < TOL["bf16"]


def test_fp8_values_decoder():
    """The float64 decoder: the formats' landmarks, and every code as torch converts it."""
    e4, e5 = ops.fp8_values(CODES, "e4m3"), ops.fp8_values(CODES, "e5m2")
    assert (e4[0x7E], e4[0x01], e4[0x08], e4[0xC0]) == (448.0, 2.0**-9, 2.0**-6, -2.0)
    assert np.isnan(e4[0x7F]) and np.isnan(e4[0xFF]) and np.isfinite(e4[0x78])      # no infinities
    assert (e5[0x7B], e5[0x01], e5[0x7C], e5[0xFC]) == (57344.0, 2.0**-16, np.inf, -np.inf)
    assert np.isnan(e5[0x7D])
    torch = pytest.importorskip("torch")
    for mine, dt in ((e4, torch.float8_e4m3fn), (e5, torch.float8_e5m2)):
        np.testing.assert_array_equal(mine, torch.from_numpy(CODES).view(dt).double().numpy())


# -- errors: before anything is allocated or launched ------------------------------------------------
def _ok(M=128, N=32, K=64):
    return _dev(np.zeros((M, K), np.uint8) + 0x38, "e4m3"), _dev(np.zeros((N, K), np.uint8) + 0x38, "e4m3")


ERRORS = [
    (lambda a, b: dict(a=_dev(np.ones((128, 64), np.float16), "f16")), r"'a' has dtype f16; allowed: e4m3, e5m2"),
    (lambda a, b: dict(b=_dev(np.ones((32, 64), np.uint8), "u8")), r"'b' has dtype u8; allowed: e4m3, e5m2"),
    (lambda a, b: dict(b=_ok(K=48)[1]), r"K=64 and 48 differ"),
    (lambda a, b: dict(a=_dev(np.ones(64, np.uint8), "e4m3")), r"'a' must be a matrix \[M, K\]"),
    (lambda a, b: dict(a=_ok(K=40)[0], b=_ok(K=40)[1]), r"K=40 must be a multiple of 16"),
    (lambda a, b: dict(b_layout="kn"), r"b_layout must be 'nk'.*got 'kn'"),
    (lambda a, b: dict(scale_a=_f32(np.ones(129))), r"'scale_a' has shape \(129,\).*\[M=128\] or \[128, 1\]"),
    (lambda a, b: dict(scale_b=_f32(np.ones((32, 1)))), r"'scale_b' has shape \(32, 1\).*\[N=32\] or \[1, 32\]"),
    (lambda a, b: dict(scale_a=_dev(np.ones(128, np.float16), "f16")), r"'scale_a' has dtype f16; allowed: f32"),
    (lambda a, b: dict(scale_b=None), r"'scale_b' is required"),
    (lambda a, b: dict(scale_a=float("nan")), r"scale_a must be a Python float, finite"),
    (lambda a, b: dict(scale_a=np.ones(128, np.float32)), r"mixes host numpy arrays with device arrays"),
    (lambda a, b: dict(bias=_f32(np.ones(31))), r"'bias' has 31 elements; it must have N=32"),
    (lambda a, b: dict(out_dtype="i8"), r"out_dtype must be f32, f16 or bf16, got 'i8'"),
    (lambda a, b: dict(config=ops.GemmConfig()), r"config must be a kaiodsl.ops.Sm90Config"),
    (lambda a, b: dict(config=Sm90Config(block_n=40)), r"block_n must be a multiple of 16"),
    (lambda a, b: dict(config=Sm90Config(stages=7, block_n=256)), r"shared memory"),
]


@pytest.mark.parametrize("case,match", ERRORS, ids=[str(i) for i in range(len(ERRORS))])
def test_fp8_errors(sm90, no_launch, case, match):
    a, b = _ok()
    kw = dict(a=a, b=b, scale_a=1.0, scale_b=1.0)
    kw.update(case(a, b))
    with pytest.raises(kaiodsl.ArgumentError, match=match):
        ops.matmul_fp8(kw.pop("a"), kw.pop("b"), kw.pop("scale_a"), kw.pop("scale_b"), **kw)


def test_fp8_misaligned_rows(sm90, no_launch):
    torch = pytest.importorskip("torch")
    flat = torch.zeros(128 * 64 + 16, dtype=torch.uint8).view(torch.float8_e4m3fn)
    a = flat[1:1 + 128 * 64].view(128, 64)
    b = torch.zeros(32, 64, dtype=torch.uint8).view(torch.float8_e4m3fn)
    with pytest.raises(kaiodsl.ArgumentError, match=r"'a' data is 1-byte aligned; TMA needs 16-byte"):
        ops.matmul_fp8(a, b, 1.0, 1.0)


def test_fp8_refused_off_sm90(backend, monkeypatch, no_launch):
    monkeypatch.setenv("KAIODSL_ARCH", "sm_89")
    a, b = _ok()
    with pytest.raises(kaiodsl.ArgumentError, match=r"sm_90a kernel.*current target is sm_89"):
        ops.matmul_fp8(a, b, 1.0, 1.0)


# -- the GPU: against torch._scaled_mm at large shapes ---------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("M,N,K", [(4096, 4096, 4096), (1000, 1500, 1024), (257, 6144, 4096), (8192, 8192, 8192)])
def test_fp8_gpu_against_scaled_mm(sm90, torch_cuda, M, N, K):
    torch = torch_cuda
    if sm90.name != "cuda":
        pytest.skip("large shapes run on the GPU only")
    a = (torch.randn(M, K, device="cuda") * 4).to(torch.float8_e4m3fn)
    b = (torch.randn(N, K, device="cuda") * 4).to(torch.float8_e4m3fn)
    sa, sb = torch.tensor(0.5, device="cuda"), torch.tensor(0.125, device="cuda")
    bias = torch.randn(N, device="cuda", dtype=torch.bfloat16)
    want = (a.double() @ b.double().T) * 0.5 * 0.125 + bias.double()
    # torch._scaled_mm needs N a multiple of 16; elsewhere the bound is bf16's rounding alone
    theirs = torch._scaled_mm(a, b.t(), scale_a=sa, scale_b=sb, bias=bias, out_dtype=torch.bfloat16) \
        if N % 16 == 0 else None
    for cfg in ("auto", Sm90Config(), Sm90Config(block_n=128, stages=6)):
        ours = ops.matmul_fp8(a, b, sa, sb, bias=bias, out_dtype="bf16", config=cfg)
        err = float((ours.double() - want).norm() / want.norm())
        ref_err = float((theirs.double() - want).norm() / want.norm()) if theirs is not None else 0.0
        assert err < max(2 * ref_err, 4e-3), (cfg, err, ref_err)       # bf16 rounding of the output
    rows, cols = torch.rand(M, 1, device="cuda") + 0.5, torch.rand(1, N, device="cuda") + 0.5
    ours = ops.matmul_fp8(a, b, rows, cols, out_dtype="f32")
    want = (a.double() @ b.double().T) * rows.double() * cols.double()
    assert float((ours.double() - want).norm() / want.norm()) < fp8_tol(sm90, "f32")     # fp8 accumulation
    assert torch.equal(ours, ops.matmul_fp8(a, b, rows, cols, out_dtype="f32"))      # deterministic
