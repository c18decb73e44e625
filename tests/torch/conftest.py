"""PyTorch-layer fixtures: ``device`` follows the ``backend`` fixture (sim: CPU tensors run in the
simulator; cuda: CUDA tensors on the GPU), so each test runs in CI and on the GPU."""

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture
def device(backend):
    return "cpu" if backend.name == "sim" else "cuda"


@pytest.fixture
def gen(request):
    import zlib

    return torch.Generator().manual_seed(zlib.crc32(request.node.name.encode()))
