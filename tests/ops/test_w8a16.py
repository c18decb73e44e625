"""W8A16: matmul_w8a16 (int8 [N, K] weights, per-channel or per-group scales) against float64
products with the reference-dequantized weights; the dequantization itself bit for bit."""

import numpy as np
import pytest

import kaiodsl
import kaiodsl.runtime
from kaiodsl import ops
from kaiodsl.errors import ArgumentError
import importlib

w8mod = importlib.import_module("kaiodsl.ops.matmul_w8a16")     # the module (the package attribute is the function)

from opkit import bf16_values, check_close, host, make
from qkvkit import poison_outputs

dev = kaiodsl.runtime.to_device


@pytest.fixture
def poison(monkeypatch):
    poison_outputs(monkeypatch, w8mod)


def _inputs(rng, M, N, K, dt, gs):
    a, av = make(rng.standard_normal((M, K)), dt)
    q = rng.integers(-128, 128, (N, K), dtype=np.int8)
    shape = (N,) if gs is None else (N, K // gs)
    s = rng.uniform(0.5, 1.5, shape) * 1e-2
    if gs is None:
        sa, sv = s.astype(np.float32), s.astype(np.float32)
    elif dt == "f16":
        sa = s.astype(np.float16)
        sv = sa
    else:
        sv = bf16_values(s)
        sa = dev(sv, kaiodsl.bf16)
    if dt == "bf16":
        q, sa = dev(q), (dev(sa) if isinstance(sa, np.ndarray) else sa)
    return a, av, q, sa, sv


# decode (M <= 16) and tiled paths; ragged M and N; K multiples of 16 that are not of the k tile
CASES = [(1, 8, 64), (5, 40, 128), (16, 24, 144), (20, 72, 192), (70, 136, 256)]


@pytest.mark.parametrize("gs", [None, 64], ids=["pc", "g64"])
@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("M,N,K", CASES, ids=[f"{m}x{n}x{k}" for m, n, k in CASES])
def test_matmul_w8a16(backend, rng, poison, M, N, K, dt, gs):
    if gs and K % gs:
        K = (K // gs + 1) * gs
    a, av, q, sa, sv = _inputs(rng, M, N, K, dt, gs)
    out = ops.matmul_w8a16(a, q, sa, group_size=gs)
    qh = q if isinstance(q, np.ndarray) else q.numpy()
    check_close(out, ops.reference_matmul_w8a16(av, qh, sv, group_size=gs, bf16=dt == "bf16"), dt)


@pytest.mark.parametrize("out_dtype", ["f32", "f16", "bf16"])
def test_matmul_w8a16_bias_out_dtype(backend, rng, poison, out_dtype):
    M, N, K = 9, 24, 64
    a, av, q, sa, sv = _inputs(rng, M, N, K, "f16", None)
    bias = rng.standard_normal(N).astype(np.float32)
    out = ops.matmul_w8a16(a, q, sa.astype(np.float16), bias=bias, out_dtype=out_dtype)
    check_close(out, ops.reference_matmul_w8a16(av, q, sa.astype(np.float16), bias), out_dtype)


@pytest.mark.parametrize("gs", [None, 128], ids=["pc", "g128"])
@pytest.mark.parametrize("M", [3, 40])
def test_w8a16_dequant_is_exact(backend, rng, poison, M, gs):
    """a = rows of the identity: out[m, n] = W[n, m], bit for bit (f32 out: q * s in f32, per group
    q * s rounded once to f16, both exact against numpy)."""
    N, K = 24, 128
    q = rng.integers(-128, 128, (N, K), dtype=np.int8)
    q[0, :4] = [-128, 127, 0, -1]
    a = np.eye(M, K, dtype=np.float16)
    if gs is None:
        s = rng.uniform(0.5, 1.5, N).astype(np.float32)
        ref = (q.astype(np.float32) * s[:, None]).T[:M]
    else:
        s = rng.uniform(0.5, 1.5, (N, K // gs)).astype(np.float16)
        ref = (q.astype(np.float16) * np.repeat(s, gs, axis=1)).astype(np.float32).T[:M]
    out = host(ops.matmul_w8a16(a, q, s, group_size=gs, out_dtype="f32"))
    assert np.array_equal(out, ref)


def test_w8a16_f16_scales_are_widened(backend, rng, poison):
    M, N, K = 4, 16, 64
    a, av, q, _, _ = _inputs(rng, M, N, K, "f16", None)
    s16 = rng.uniform(0.5, 1.5, N).astype(np.float16)
    check_close(ops.matmul_w8a16(a, q, s16), ops.reference_matmul_w8a16(av, q, s16), "f16")


BAD = [
    (dict(a=np.zeros((4, 60), np.float16), w_q=np.zeros((8, 60), np.int8)), "K=60 must be a positive multiple of 16"),
    (dict(a=np.zeros((4, 64), np.float32)), "'a' has dtype f32"),
    (dict(w_q=np.zeros((8, 64), np.uint8)), "'w_q' has dtype u8"),
    (dict(w_q=np.zeros((8, 32), np.int8)), "K=64 and 32 differ"),
    (dict(scales=np.zeros(7, np.float32)), "'scales' has 7 elements"),
    (dict(scales=np.zeros((8, 1), np.float16), group_size=32), "group_size must be None"),
    (dict(scales=np.zeros((8, 2), np.float16), group_size=64), "must be [N, K // group_size] = (8, 1)"),
    (dict(scales=np.zeros((8, 1), np.float32), group_size=64), "'scales' has dtype f32"),
    (dict(bias=np.zeros(5, np.float32)), "'bias' has 5 elements"),
    (dict(out_dtype="i8"), "out_dtype must be f32, f16 or bf16, got 'i8'"),
]


@pytest.mark.parametrize("kw,msg", BAD, ids=[m[:24] for _, m in BAD])
def test_w8a16_validation(no_launch, monkeypatch, kw, msg):
    monkeypatch.setattr(w8mod, "new_like", lambda *a, **k: (_ for _ in ()).throw(AssertionError("allocated")))
    args = dict(a=np.zeros((4, 64), np.float16), w_q=np.zeros((8, 64), np.int8), scales=np.ones(8, np.float32))
    args.update(kw)
    extra = {k: args.pop(k) for k in ("bias", "group_size", "out_dtype") if k in args}
    with pytest.raises(ArgumentError) as e:
        ops.matmul_w8a16(args["a"], args["w_q"], args["scales"], **extra)
    assert msg in str(e.value)


@pytest.mark.gpu
@pytest.mark.parametrize("gs", [None, 128], ids=["pc", "g128"])
@pytest.mark.parametrize("M", [1, 4, 16, 64, 256, 2048, 8192])
def test_w8a16_llama_shapes_gpu(torch_cuda, M, gs):
    torch = torch_cuda
    N, K = 4096, 4096
    a = torch.randn(M, K, device="cuda", dtype=torch.float16)
    q = torch.randint(-128, 128, (N, K), device="cuda", dtype=torch.int8)
    shape = (N,) if gs is None else (N, K // gs)
    s = (torch.rand(shape, device="cuda") * 1e-2 + 1e-3).to(torch.float32 if gs is None else torch.float16)
    out = ops.matmul_w8a16(a, q, s, group_size=gs)
    ref = ops.reference_matmul_w8a16(a.cpu().numpy(), q.cpu().numpy(), s.cpu().numpy(), group_size=gs)
    check_close(out, ref, "f16")
    assert torch.equal(out, ops.matmul_w8a16(a, q, s, group_size=gs))          # deterministic


@pytest.mark.parametrize("cfg", [w8mod.DECODE, w8mod.SMALL_M, w8mod.LARGE_M, w8mod.W8Config(32, 32, 32, 2, 1, 2)],
                         ids=str)
@pytest.mark.parametrize("gs", [None, 64], ids=["pc", "g64"])
def test_w8a16_configs(backend, rng, poison, cfg, gs):
    """Every tiling (the heuristic's three and a small one) computes the same product, edges included."""
    if gs and gs % getattr(cfg, "block_k", 64):
        pytest.skip("group smaller than the k tile")
    M, N, K = 37, 136, 256
    a, av, q, sa, sv = _inputs(rng, M, N, K, "f16", gs)
    out = ops.matmul_w8a16(a, q, sa, group_size=gs, config=cfg)
    check_close(out, ops.reference_matmul_w8a16(av, q, sv, group_size=gs), "f16")
