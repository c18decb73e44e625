"""Helpers for the PyTorch-layer tests: fresh random tensors and float64 comparisons."""

import torch


def randn(gen, shape, dtype, device, scale=1.0, requires_grad=False):
    t = (torch.randn(shape, generator=gen, dtype=torch.float32) * scale).to(device=device, dtype=dtype)
    return t.requires_grad_(requires_grad)


def randint8(gen, shape, device):
    return torch.randint(-127, 128, shape, generator=gen, dtype=torch.int8).to(device)


def rel(x, ref) -> float:
    x, ref = x.detach().double().cpu(), ref.detach().double().cpu()
    return float((x - ref).norm() / ref.norm().clamp(min=1e-30))
