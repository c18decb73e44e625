"""torch.compile over kaiodsl modules: no graph break (fullgraph), one compile for every new batch
and sequence length (dynamic shapes), CUDA graphs (reduce-overhead and torch.cuda.graph capture)."""

import pytest
import torch
from torch import nn

import kaiodsl.nn as knn
import kaiodsl.torch as kt
from kaiodsl import ops

from tkit import randn, rel


class Block(nn.Module):
    """Linear -> SiLU -> W8A8 -> W4A16 (+ residual): each kind of kaiodsl op in one graph."""

    def __init__(self, dtype, device):
        super().__init__()
        torch.manual_seed(0)
        fp = [nn.Linear(128, 128, bias=b).to(device, dtype) for b in (True, False, True)]
        self.up = knn.Linear.from_linear(fp[0])
        self.mid = knn.Int8Linear.from_linear(fp[1])
        self.down = knn.Int4Linear.from_linear(fp[2], group_size=64)

    def forward(self, x):
        h = torch.nn.functional.silu(self.up(x))
        return x + self.down(self.mid(h))


def _compile_backend(device):
    # inductor on the GPU; on the CPU aot_eager (AOT autograd + functionalization, no C++ build)
    return "inductor" if device == "cuda" else "aot_eager"


def test_fullgraph_forward_and_backward(backend, device, gen):
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    model = Block(torch.float16, device)
    counter = CompileCounterWithBackend(_compile_backend(device))
    compiled = torch.compile(model, fullgraph=True, backend=counter)
    x = randn(gen, (2, 3, 128), torch.float16, device, scale=0.5, requires_grad=True)
    y = compiled(x)
    y.float().square().sum().backward()
    gx, gw = x.grad.clone(), model.up.weight.grad.clone()
    x.grad = None
    model.zero_grad()
    y_eager = model(x)
    y_eager.float().square().sum().backward()
    assert counter.frame_count == 1                       # one graph: no graph break
    assert rel(y, y_eager) < 1e-3
    assert rel(gx, x.grad) < 1e-2 and rel(gw, model.up.weight.grad) < 1e-2


@pytest.mark.parametrize("how", ["dynamic=True", "mark_dynamic"])
def test_no_recompile_per_length(backend, device, gen, how):
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    model = Block(torch.float16, device)
    counter = CompileCounterWithBackend(_compile_backend(device))
    compiled = torch.compile(model, fullgraph=True, backend=counter, dynamic=True if how == "dynamic=True" else None)
    shapes = [(2, 3), (3, 5), (2, 9), (4, 6)]
    for i, (B, S) in enumerate(shapes):
        x = randn(gen, (B, S, 128), torch.float16, device, scale=0.5)
        if how == "mark_dynamic":
            torch._dynamo.mark_dynamic(x, 0)
            torch._dynamo.mark_dynamic(x, 1)
        with torch.no_grad():
            y = compiled(x)
            assert rel(y, model(x)) < 1e-3
    assert counter.frame_count == 1, f"{counter.frame_count} compiles for {len(shapes)} shapes"


def test_compiled_training_step_dynamic(backend, device, gen):
    """Backward graphs with symbolic M: the weight gradient's padding is an expression of M, not a guard."""
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    lin = knn.Linear(64, 24, dtype=torch.float16, device=device)
    counter = CompileCounterWithBackend(_compile_backend(device))
    step = torch.compile(lambda x: lin(x).float().square().mean(), fullgraph=True, backend=counter, dynamic=True)
    for M in (5, 8, 13):
        x = randn(gen, (M, 64), torch.float16, device)
        lin.weight.grad = None
        step(x).backward()
        g = lin.weight.grad.clone()
        lin.weight.grad = None
        lin(x).float().square().mean().backward()
        assert rel(g, lin.weight.grad) < 1e-2
    assert counter.frame_count == 1


@pytest.mark.gpu
def test_reduce_overhead_cuda_graphs(backend, gen):
    if backend.name != "cuda":
        pytest.skip("CUDA graphs need the GPU")
    torch._dynamo.reset()
    model = Block(torch.float16, "cuda")
    compiled = torch.compile(model, mode="reduce-overhead", fullgraph=True)
    with torch.no_grad():
        for _ in range(4):                                 # warm-up runs, then graph replays
            x = randn(gen, (2, 7, 128), torch.float16, "cuda", scale=0.5)
            assert rel(compiled(x), model(x)) < 1e-3


@pytest.mark.gpu
def test_cuda_graph_capture_and_current_stream(backend, gen):
    """The direct path launches on torch's current stream, so capture and side streams work."""
    if backend.name != "cuda":
        pytest.skip("CUDA graphs need the GPU")
    lin = knn.Linear(128, 64, dtype=torch.float16, device="cuda").requires_grad_(False)
    x = randn(gen, (16, 128), torch.float16, "cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        y_side = lin(x)
    torch.cuda.current_stream().wait_stream(side)
    assert rel(y_side, x.double() @ lin.weight.double().T + lin.bias.double()) < 2e-3
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = lin(x)
    x.copy_(randn(gen, (16, 128), torch.float16, "cuda"))
    graph.replay()
    torch.cuda.synchronize()
    assert rel(y, x.double() @ lin.weight.double().T + lin.bias.double()) < 2e-3
