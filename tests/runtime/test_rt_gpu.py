"""The CUDA backend on a real GPU: load, launch, array kinds, streams, limits, errors."""

import numpy as np
import pytest

import kaiodsl.types as T
from kaiodsl.errors import ArgumentError, CudaError, LaunchError
from kaiodsl.runtime import Stream, synchronize, to_device, zeros
from kaiodsl.runtime.ptx_kernel import PtxKernel

import ptx_samples as S

pytestmark = pytest.mark.gpu
N = 1000


def scale():
    return PtxKernel(S.SCALE, S.SCALE_PARAMS)


def grid(n=N, b=128):
    return ((n + b - 1) // b, b)


def test_backend_reports_device_arch(cuda):
    assert cuda.name == "cuda" and cuda.arch.startswith("sm_")


def test_numpy_in_and_out(cuda):
    x = np.arange(N, dtype=np.float32)
    y = np.zeros(N, np.float32)
    scale()[grid()](x, y, 2.5, N)
    np.testing.assert_array_equal(y, 2.5 * x)  # writable numpy param copied back


def test_numpy_non_contiguous_out(cuda):
    x = np.arange(N, dtype=np.float32)
    y = np.zeros(2 * N, np.float32)[::2]
    scale()[grid()](x, y, 2.0, N)
    np.testing.assert_array_equal(y, 2 * x)


def test_device_array(cuda):
    x = to_device(np.arange(N, dtype=np.float32))
    y = zeros(N)
    k = scale()
    for _ in range(3):
        k[grid()](x, y, 3.0, N)
    assert k.specialize_calls == 1
    np.testing.assert_array_equal(y.numpy(), 3 * np.arange(N))
    assert y.__cuda_array_interface__["data"][0] == y.ptr


def test_torch_tensors_and_stream(cuda):
    torch = pytest.importorskip("torch")
    x = torch.arange(N, dtype=torch.float32, device="cuda")
    y = torch.zeros(N, device="cuda")
    k = scale()
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):  # the launch goes to torch's current stream
        k[grid()](x, y, 2.0, N)
        k[grid()](x, y, 4.0, N)
    s.synchronize()
    assert torch.equal(y, 4 * x)
    y.zero_()
    k[grid()](x, y, 5.0, N, stream=s)  # an explicit torch stream
    s.synchronize()
    assert torch.equal(y, 5 * x)
    with pytest.raises(ArgumentError, match="'x' expects dtype f32"):
        k[grid()](x.half(), y, 1.0, N)
    with pytest.raises(ArgumentError, match="cpu"):
        k[grid()](x.cpu(), y, 1.0, N)


def test_torch_bf16(cuda):
    torch = pytest.importorskip("torch")
    x = torch.randn(N, device="cuda").bfloat16()
    y = torch.zeros(N, device="cuda", dtype=torch.bfloat16)
    PtxKernel(S.COPY16, S.COPY16_PARAMS)[grid()](x, y, N)
    torch.cuda.synchronize()
    assert torch.equal(x, y)
    bits = x.view(torch.int16).cpu().numpy().view(np.uint16)
    out = np.zeros(N, np.uint16)  # numpy raw bits for Ptr[bf16]
    PtxKernel(S.COPY16, S.COPY16_PARAMS)[grid()](bits, out, N)
    np.testing.assert_array_equal(bits, out)


def test_cupy_arrays_and_stream(cuda):
    cp = pytest.importorskip("cupy")
    x = cp.arange(N, dtype=cp.float32)
    y = cp.zeros(N, dtype=cp.float32)
    s = cp.cuda.Stream()
    scale()[grid()](x, y, 2.0, N, stream=s)
    s.synchronize()
    assert bool((y == 2 * x).all())


def test_cai_and_dlpack_only_objects(cuda):
    torch = pytest.importorskip("torch")

    class CAIOnly:
        def __init__(self, t):
            self.t = t
            self.__cuda_array_interface__ = t.__cuda_array_interface__

    class DLPackOnly:
        def __init__(self, t):
            self.t = t

        def __dlpack__(self, stream=None):
            return self.t.__dlpack__(stream=stream)

        def __dlpack_device__(self):
            return self.t.__dlpack_device__()

    x = torch.arange(N, dtype=torch.float32, device="cuda")
    y = torch.zeros(N, device="cuda")
    k = scale()
    k[grid()](CAIOnly(x), DLPackOnly(y), 6.0, N)
    torch.cuda.synchronize()
    assert torch.equal(y, 6 * x)


def test_kaiodsl_stream(cuda):
    s = Stream()
    assert s.handle != 0
    x = to_device(np.ones(N, np.float32))
    y = zeros(N)
    scale()[grid()](x, y, 7.0, N, stream=s)
    s.synchronize()
    assert (y.numpy() == 7).all()


def test_scalar_errors_on_fast_path(cuda):
    x, y = to_device(np.ones(N, np.float32)), zeros(N)
    k = scale()
    k[grid()](x, y, 1.0, N)
    with pytest.raises(ArgumentError, match="out of range"):
        k[grid()](x, y, 1.0, 2**40)
    with pytest.raises(ArgumentError, match="'y' expects dtype f32"):
        k[grid()](x, zeros(N, "f16"), 1.0, N)


def test_dynamic_shared_above_48k(cuda):
    k = PtxKernel(S.DSMEM, S.DSMEM_PARAMS)
    n = 100 * 1024 // 4
    out = zeros(n, "u32")
    k[1, 256](out, n, smem=n * 4)
    np.testing.assert_array_equal(out.numpy(), np.arange(n - 1, -1, -1, dtype=np.uint32))


def test_launch_limits(cuda):
    x = zeros(8)
    k = PtxKernel(S.DSMEM, S.DSMEM_PARAMS)
    with pytest.raises(LaunchError, match="1025"):
        k[1, 1025](zeros(8, "u32"), 8)
    with pytest.raises(LaunchError, match="block.z=65"):
        k[1, (1, 1, 65)](zeros(8, "u32"), 8)
    with pytest.raises(LaunchError, match="shared memory"):
        k[1, 32](zeros(8, "u32"), 8, smem=1 << 20)
    small = PtxKernel(S.MAXNTID, S.MAXNTID_PARAMS)
    small[1, 128](x)
    with pytest.raises(LaunchError, match="at most 128 threads"):
        small[1, 256](x)


def test_jit_error_log(cuda):
    with pytest.raises(CudaError) as e:
        PtxKernel(S.BAD, S.BAD_PARAMS)[1, 1](zeros(1))
    msg = str(e.value)
    assert "broken" in msg and "JIT error log" in msg and "frobnicate" in msg
    assert e.value.name and e.value.name.startswith("CUDA_ERROR")
    print(msg)


def test_synchronize(cuda):
    synchronize()


def test_frontend_kernel_on_gpu(cuda, tmp_path, monkeypatch):
    kaiodsl = pytest.importorskip("kaiodsl")
    if not hasattr(kaiodsl, "kernel"):
        pytest.skip("no frontend yet")
    monkeypatch.setenv("KAIODSL_CACHE_DIR", str(tmp_path))

    @kaiodsl.kernel
    def fscale(x: T.Ptr[T.f32], y: T.Ptr[T.f32], a: T.f32, n: T.i32):
        i = kaiodsl.block_idx.x * kaiodsl.block_dim.x + kaiodsl.thread_idx.x
        if i < n:
            y[i] = a * x[i]

    x = np.arange(N, dtype=np.float32)
    y = np.zeros(N, np.float32)
    fscale[grid()](x, y, 3.0, N)
    np.testing.assert_array_equal(y, 3 * x)
    dx, dy = to_device(x), zeros(N)
    fscale[grid()](dx, dy, 2.0, N)
    np.testing.assert_array_equal(dy.numpy(), 2 * x)


def test_native_tier_launches_fresh_arguments_each_time(cuda):
    """Repeated launches take the native tier; every launch sees its own pointers and scalars."""
    torch = pytest.importorskip("torch")
    from kaiodsl.runtime import native

    k = scale()
    rng = np.random.default_rng(7)
    outs = []
    for i in range(6):
        x = torch.from_numpy(rng.standard_normal(N).astype(np.float32)).cuda()
        y = torch.full((N,), float("nan"), device="cuda")
        a = float(rng.uniform(0.5, 2.0))
        k[grid()](x, y, a, N - i)
        outs.append((x.cpu().numpy(), y.cpu().numpy(), a, N - i))
    prepared = next(iter(k._launch_cache.values()))[1].prepared
    assert prepared.native is not None, native.why_not()
    for x, y, a, n in outs:
        np.testing.assert_array_equal(y[:n], np.float32(a) * x[:n])
        assert np.isnan(y[n:]).all()  # nothing written past n
    s = torch.cuda.Stream()
    x = torch.ones(N, device="cuda")
    y = torch.zeros(N, device="cuda")
    with torch.cuda.stream(s):  # the native tier asks torch for the current stream on every launch
        for _ in range(3):
            k[grid()](x, y, 4.0, N)
    s.synchronize()
    assert (y == 4).all()
