"""GPU tier for the attention ops (marked gpu; skipped without a device): torch tensors against
torch SDPA's math backend in float64, up to B*H = 64 and S = 16k, GQA 32/8, [B, S, H, D] views,
decode shapes with split-KV, gradients vs torch autograd, bitwise determinism.
Run on the H200 with ``pytest -m gpu tests/ops/test_attention_gpu.py``."""

import pytest

from kaiodsl import ops

pytestmark = pytest.mark.gpu


def _sdpa64(torch, q, k, v, causal, Sq, Sk):
    """torch SDPA (math backend) in float64, GQA by repeating K/V heads; bottom-right as an explicit mask."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    g = q.shape[1] // k.shape[1]
    q64, k64, v64 = q.double(), k.double().repeat_interleave(g, 1), v.double().repeat_interleave(g, 1)
    mask = None
    if causal == "bottom_right":
        i = torch.arange(Sq, device=q.device)[:, None]
        j = torch.arange(Sk, device=q.device)[None, :]
        mask = j <= i + (Sk - Sq)
    with sdpa_kernel(SDPBackend.MATH):
        return torch.nn.functional.scaled_dot_product_attention(q64, k64, v64, attn_mask=mask,
                                                                is_causal=causal in (True, "top_left"))


def _rel(torch, a, b):
    return (a.double() - b).norm().item() / b.norm().item()


SHAPES = [  # B, H, Hkv, Sq, Sk, D, causal
    (4, 16, 16, 1024, 1024, 128, False), (2, 32, 8, 2048, 2048, 128, True), (8, 8, 8, 4096, 4096, 64, False),
    (1, 8, 8, 16384, 16384, 64, True), (2, 4, 4, 1000, 3001, 96, "bottom_right"), (1, 4, 2, 777, 513, 256, True),
    (1, 64, 64, 512, 512, 32, False), (1, 4, 4, 16384, 16384, 128, False)]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("B,H,Hkv,Sq,Sk,D,causal", SHAPES)
def test_attention_vs_sdpa(torch_cuda, B, H, Hkv, Sq, Sk, D, causal, dtype):
    torch = torch_cuda
    dt = getattr(torch, dtype)
    q = torch.randn(B, H, Sq, D, device="cuda", dtype=dt)
    k, v = (torch.randn(B, Hkv, Sk, D, device="cuda", dtype=dt) for _ in range(2))
    out = torch.full_like(q, float("nan"))
    o, lse = ops.attention(q, k, v, causal=causal, return_lse=True, out=out)
    torch.cuda.synchronize()
    ref = _sdpa64(torch, q, k, v, causal, Sq, Sk)
    assert not torch.isnan(o).any()
    assert _rel(torch, o, ref) < (4e-3 if dtype == "float16" else 2e-2)
    assert lse.shape == (B, H, Sq) and lse.dtype == torch.float32


def test_attention_bshd_views_gpu(torch_cuda):
    torch = torch_cuda
    B, S, H, D = 2, 2000, 16, 128
    q, k, v = (torch.randn(B, S, H, D, device="cuda", dtype=torch.float16) for _ in range(3))
    o = ops.attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=True)
    ref = _sdpa64(torch, q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), True, S, S)
    assert _rel(torch, o, ref) < 4e-3


@pytest.mark.parametrize("B,H,Hkv,Sq,Sk,D", [(1, 32, 8, 1, 131072, 128), (8, 32, 8, 1, 8192, 128),
                                             (4, 16, 16, 16, 32768, 64), (2, 32, 32, 4, 4097, 128)])
def test_attention_decode_gpu(torch_cuda, B, H, Hkv, Sq, Sk, D):
    torch = torch_cuda
    q = torch.randn(B, H, Sq, D, device="cuda", dtype=torch.float16)
    k, v = (torch.randn(B, Hkv, Sk, D, device="cuda", dtype=torch.float16) for _ in range(2))
    o = ops.attention(q, k, v, causal="bottom_right")
    ref = _sdpa64(torch, q, k, v, "bottom_right", Sq, Sk)
    assert _rel(torch, o, ref) < 4e-3
    lens = torch.randint(0, Sk + 1, (B,), device="cuda", dtype=torch.int32)
    o2 = ops.attention(q, k, v, seqlens_k=lens)
    for b in range(B):
        n = int(lens[b])
        if n == 0:
            assert (o2[b] == 0).all()
        else:
            r = _sdpa64(torch, q[b:b + 1], k[b:b + 1, :, :n], v[b:b + 1, :, :n], False, Sq, n)
            assert _rel(torch, o2[b:b + 1], r) < 4e-3


@pytest.mark.parametrize("B,H,Hkv,S,D,causal", [(2, 8, 8, 1024, 128, False), (1, 32, 8, 2048, 128, True),
                                                (2, 4, 4, 777, 64, True), (1, 4, 4, 512, 256, False)])
def test_attention_backward_vs_autograd(torch_cuda, B, H, Hkv, S, D, causal):
    torch = torch_cuda
    q = torch.randn(B, H, S, D, device="cuda", dtype=torch.float16)
    k, v = (torch.randn(B, Hkv, S, D, device="cuda", dtype=torch.float16) for _ in range(2))
    do = torch.randn_like(q)
    o, lse = ops.attention(q, k, v, causal=causal, return_lse=True)
    dq, dk, dv = ops.attention_backward(do, q, k, v, o, lse, causal=causal)
    q64, k64, v64 = (x.double().requires_grad_() for x in (q, k, v))
    ref = _sdpa64(torch, q64, k64, v64, causal, S, S)
    ref.backward(do.double())
    for got, want in ((dq, q64.grad), (dk, k64.grad), (dv, v64.grad)):
        assert _rel(torch, got, want) < 1e-2


def test_attention_deterministic_gpu(torch_cuda):
    torch = torch_cuda
    q, k, v, do = (torch.randn(2, 16, 2048, 128, device="cuda", dtype=torch.float16) for _ in range(4))
    runs = []
    for _ in range(3):
        o, lse = ops.attention(q, k, v, causal=True, return_lse=True)
        runs.append((o, lse) + ops.attention_backward(do, q, k, v, o, lse, causal=True))
    for r in runs[1:]:
        for a, b in zip(runs[0], r):
            assert torch.equal(a, b)
    qd = torch.randn(1, 32, 1, 128, device="cuda", dtype=torch.float16)
    kd, vd = (torch.randn(1, 8, 65536, 128, device="cuda", dtype=torch.float16) for _ in range(2))
    a, b = ops.attention(qd, kd, vd), ops.attention(qd, kd, vd)
    assert torch.equal(a, b)


def test_attention_kaio_names_gpu(torch_cuda):
    torch = torch_cuda
    q, k, v = (torch.randn(300, 64, device="cuda", dtype=torch.float32) for _ in range(3))
    o, lse = ops.attention_flash_causal(q, k, v, return_lse=True)
    ref = _sdpa64(torch, q[None, None], k[None, None], v[None, None], True, 300, 300)[0, 0]
    assert _rel(torch, o, ref) < 1e-5
    o16 = ops.attention_tc(q.half(), k.half(), v.half())
    assert o16.dtype == torch.float32
    assert _rel(torch, o16, _sdpa64(torch, *(x.half()[None, None] for x in (q, k, v)), False, 300, 300)[0, 0]) < 4e-3
