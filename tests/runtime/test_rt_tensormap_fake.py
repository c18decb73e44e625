"""TensorMap parameters reach cuLaunchKernel as their exact 128 bytes, 64-byte aligned, between
ordinary 8-byte slots (fake driver, both launch tiers: the native tier declines these kernels)."""

import ctypes
import struct

import numpy as np
import pytest

import kaiodsl as K
from kaiodsl.errors import ArgumentError
from kaiodsl.runtime import cuda_backend as CB
from kaiodsl.runtime import driver as D
from kaiodsl.runtime import fastpath, native, set_backend
from kaiodsl.runtime.arrays import DeviceArray
from kaiodsl.runtime.ptx_kernel import PtxKernel
from kaiodsl.runtime.tensormap import TensorMapSpec

from test_rt_cuda_fake import ATTRS, FN_HANDLE, FakeDriver, _fake_array_init

PTX = """.version 8.0
.target sm_90a
.address_size 64
.visible .entry tk(.param .u32 tk_param_0, .param .align 64 .b8 tk_param_1[128], .param .u64 tk_param_2,
                   .param .align 64 .b8 tk_param_3[128])
{ ret; }
"""
PARAMS = ["n: i32", "a: TensorMap", "x: Ptr[f32]", "b: TensorMap"]


class AlignedFake(FakeDriver):
    """Also records each parameter's address modulo 64."""

    def cuLaunchKernel(self, fn, gx, gy, gz, bx, by, bz, smem, stream, argv, extra):
        ptrs = (ctypes.c_void_p * len(self.sizes)).from_address(argv)
        self.align = [p % 64 for p in ptrs]
        return super().cuLaunchKernel(fn, gx, gy, gz, bx, by, bz, smem, stream, argv, extra)


@pytest.fixture(params=["python", "native"])
def fake(monkeypatch, request):
    fake = AlignedFake([4, 128, 8, 128])
    address = None
    if request.param == "native":
        assert native.unavailable_reason() is None, native.unavailable_reason()
        address = ctypes.cast(fake.native_entry, ctypes.c_void_p).value
    monkeypatch.setattr(D, "launch_kernel_address", lambda: address)
    monkeypatch.setattr(D, "_drv", fake)
    monkeypatch.setattr(fastpath, "_CUSTREAMS", {})
    # The driver's encoding is opaque: stand in a 128-byte function of the spec (the simulator's layout).
    monkeypatch.setattr(TensorMapSpec, "encode", lambda self: self.validate().sim_bytes())
    dev = D.Device(0, None, None, dict(ATTRS), "sm_90a")
    k = PtxKernel(PTX, PARAMS)
    compiled = k.specialize({}, "sm_90a")
    dev.modules[compiled.key] = D.Module(None, FN_HANDLE, "tk", num_regs=32, max_threads=1024, static_shared=0)
    backend = object.__new__(CB.CudaBackend)
    backend.device, backend.arch, backend.single_gpu, backend._prepared = dev, "sm_90a", True, {}
    set_backend(backend)
    monkeypatch.setattr(DeviceArray, "__init__", _fake_array_init)
    return fake, k


def test_layout_aligns_tensor_maps_to_64():
    fmt, offsets = CB.param_layout(PtxKernel(PTX, PARAMS).params)
    assert offsets == [0, 64, 192, 256] and struct.calcsize(fmt) == 384


@pytest.mark.parametrize("shape,box,swizzle", [((64, 128), (64, 64), 128), ((8, 16, 32), (2, 4, 16), 0)])
def test_exact_bytes_reach_the_driver(fake, shape, box, swizzle):
    fake, k = fake
    arrays = [DeviceArray(4096, "f16"), DeviceArray(8192, "f16")]
    for a in arrays:
        a.shape = shape
    x = DeviceArray(16, "f32")
    ta, tb = K.TensorMap(arrays[0], box, swizzle=swizzle), K.TensorMap(arrays[1], box, swizzle=swizzle)
    for _ in range(3):  # first launch (general path), then the fast path
        k[2, 128](-5, ta, x, tb)
        _, _, _, _, vals = fake.launches[-1]
        assert vals[0] == struct.pack("<i", -5) and vals[2] == struct.pack("<Q", x.ptr)
        for raw, a in zip((vals[1], vals[3]), arrays):
            spec = TensorMapSpec.from_sim_bytes(raw)
            assert spec.address == a.ptr and spec.dims == tuple(reversed(shape)) and spec.box == tuple(reversed(box))
            assert raw == ta.spec(a.ptr).sim_bytes() if a is arrays[0] else raw == tb.spec(a.ptr).sim_bytes()
        assert fake.align[1] == 0 and fake.align[3] == 0
    assert fake.native_launches == 0


def test_wrong_argument_for_a_tensor_map(fake):
    fake, k = fake
    x = DeviceArray(16, "f32")
    with pytest.raises(ArgumentError, match="argument 'a' expects a kaiodsl.TensorMap"):
        k[1, 32](1, x, x, x)
    assert fake.launches == []


def test_tensor_map_rules_before_launch():
    with pytest.raises(ArgumentError, match=r"box=\(64, 4\)"):
        K.TensorMap(np.zeros((64, 64), np.float16), (64, 4))
    with pytest.raises(ArgumentError, match="TensorMap array"):
        K.TensorMap([1, 2, 3], (1,))


@pytest.fixture
def torch_as_cuda(monkeypatch):
    """CPU torch tensors stand in for CUDA tensors of device 0 (the fake driver reads only their addresses)."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    monkeypatch.setattr(torch.Tensor, "get_device", lambda self: 0)
    monkeypatch.setattr(torch._C, "_cuda_getCurrentRawStream", lambda device: 0, raising=False)
    return torch


def test_torch_tensor_maps_take_the_fast_path(fake, torch_as_cuda, monkeypatch):
    """TensorMaps over torch tensors are packed by the generated launch function (never the general
    path), with the bytes of the map at each tensor's own address."""
    from kaiodsl.runtime import args as rt_args

    fake, k = fake
    torch = torch_as_cuda
    general = []
    check = rt_args.check_tensormap
    monkeypatch.setattr(rt_args, "check_tensormap", lambda *a: general.append(a) or check(*a))
    x = DeviceArray(16, "f32")
    for _ in range(2):  # fresh tensors: new addresses, the same checked spec
        a, b = torch.randn(64, 128).half(), torch.randn(64, 128).half()
        ta, tb = K.TensorMap(a, (64, 64), swizzle=128), K.TensorMap(b, (64, 64), swizzle=128)
        assert ta._base is tb._base                       # one checked spec for one view
        for _ in range(2):
            k[2, 128](7, ta, x, tb)
            vals = fake.launches[-1][4]
            assert vals[1] == ta.spec(a.data_ptr()).sim_bytes() and vals[3] == tb.spec(b.data_ptr()).sim_bytes()
            assert TensorMapSpec.from_sim_bytes(vals[3]).address == b.data_ptr()
    assert general == [] and fake.native_launches == 0


def test_torch_tensor_map_errors(fake, torch_as_cuda):
    """The memoised construction still refuses every bad map, and a misaligned address is refused at launch."""
    fake, k = fake
    torch = torch_as_cuda
    t = torch.zeros(64, 64, dtype=torch.float16)
    for _ in range(2):
        with pytest.raises(ArgumentError, match=r"box=\(64, 4\)"):
            K.TensorMap(t, (64, 4))
    with pytest.raises(ArgumentError, match="not a kaiodsl element type"):
        K.TensorMap(torch.zeros(8, 8, dtype=torch.complex64), (8, 8), dtype="f32")
    odd = torch.zeros(64 * 64 + 1, dtype=torch.float16)[1:].view(64, 64)   # 2 bytes past an aligned start
    tm, ok = K.TensorMap(odd, (64, 64)), K.TensorMap(t, (64, 64))
    x = DeviceArray(16, "f32")
    for _ in range(2):
        with pytest.raises(ArgumentError, match="address=.*16-byte aligned"):
            k[1, 32](1, tm, x, ok)
    assert fake.launches == []
