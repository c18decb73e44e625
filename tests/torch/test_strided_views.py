"""Strided tensor views reach the kernels with their strides, on both backends: a [B, S, H, D] storage
viewed as [B, H, S, D] (what a transformers attention layer passes) and a tensor that requires grad."""

import pytest
import torch

import kaiodsl.torch as kt
from kaiodsl import ops

from tkit import randn, rel

BACKENDS = ["sim", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_attention_on_bshd_views(backend, device, gen, dtype):
    B, H, Hk, S, D = 2, 4, 2, 9, 32
    q, k, v = (randn(gen, (B, S, h, D), dtype, device).transpose(1, 2) for h in (H, Hk, Hk))
    assert not q.is_contiguous()
    g = H // Hk
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.double(), k.double().repeat_interleave(g, 1), v.double().repeat_interleave(g, 1), is_causal=True,
        scale=0.3)
    assert rel(ops.attention(q, k, v, causal="bottom_right", scale=0.3), ref) < 1e-2
    assert rel(kt.attention(q, k, v, causal="bottom_right", scale=0.3), ref) < 1e-2


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_op_on_tensors_that_require_grad(backend, device, gen):
    """The runtime reads a tensor's pointer without __cuda_array_interface__ (refused for such tensors)."""
    a = randn(gen, (16, 64), torch.float16, device, requires_grad=True)
    b = randn(gen, (64, 24), torch.float16, device, requires_grad=True)
    with torch.no_grad():
        out = ops.matmul(a, b, b_layout="kn")
    assert rel(out, a.double() @ b.double()) < 1e-2
