"""The CUDA backend's packing and checks against a fake driver (no GPU needed).

The fake cuLaunchKernel reads the parameters back through the void** address,
so this checks exactly the bytes a real launch would hand the driver. Every test
runs twice: with the Python launch tier alone, and with the native tier in front
of it (its cuLaunchKernel is a C callback into the same fake).
"""

import ctypes
import struct
import sys

import numpy as np
import pytest

from kaiodsl.errors import ArgumentError, CudaError, LaunchError
from kaiodsl.runtime import cuda_backend as CB
from kaiodsl.runtime import fastpath, native
from kaiodsl.runtime import driver as D
from kaiodsl.runtime.arrays import DeviceArray
from kaiodsl.runtime.ptx_kernel import PtxKernel
from kaiodsl.runtime import set_backend

import ptx_samples as S

ATTRS = {"max_threads_per_block": 1024, "max_block_x": 1024, "max_block_y": 1024, "max_block_z": 64,
         "max_grid_x": 2**31 - 1, "max_grid_y": 65535, "max_grid_z": 65535,
         "max_shared_per_block": 49152, "max_shared_optin": 232448, "max_regs_per_block": 65536,
         "cc_major": 9, "cc_minor": 0}


_LAUNCH_PROTO = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, *[ctypes.c_uint] * 7, ctypes.c_void_p,
                                 ctypes.c_void_p, ctypes.c_void_p)


class FakeDriver:
    def __init__(self, sizes):
        self.sizes, self.launches, self.set_attr = sizes, [], []
        self.native_launches, self.error = 0, 0
        self.native_entry = _LAUNCH_PROTO(self._native_launch)  # what the native tier calls

    def cuLaunchKernel(self, fn, gx, gy, gz, bx, by, bz, smem, stream, argv, extra):
        if self.error:
            return (self.error,)
        ptrs = (ctypes.c_void_p * len(self.sizes)).from_address(argv)
        vals = [ctypes.string_at(p, n) for p, n in zip(ptrs, self.sizes)]
        self.launches.append(((gx, gy, gz), (bx, by, bz), smem, stream, vals))
        return (0,)

    def _native_launch(self, fn, gx, gy, gz, bx, by, bz, smem, stream, argv, extra):
        assert fn == FN_HANDLE and extra is None
        if self.error:
            return self.error
        self.native_launches += 1
        return self.cuLaunchKernel(fn, gx, gy, gz, bx, by, bz, smem, stream or 0, argv, extra)[0]

    def cuFuncSetAttribute(self, fn, attr, value):
        self.set_attr.append(value)
        return (0,)

    # The thread's current context is the top of a stack, as the driver keeps it; a context is an int
    # CTX_BASE + ordinal (None: the single-device fixture's Device has none).
    def _stack(self):
        return self.__dict__.setdefault("ctx_stack", [])

    def cuCtxGetCurrent(self):
        st = self._stack()
        return (0, st[-1] if st else None)

    def cuCtxGetDevice(self):
        return (0, self._stack()[-1] - CTX_BASE)

    def cuCtxPushCurrent(self, ctx):
        self._stack().append(ctx)
        return (0,)

    def cuCtxPopCurrent(self):
        return (0, self._stack().pop())

    def cuCtxSetCurrent(self, ctx):
        st = self._stack()
        st[-1:] = [ctx]
        return (0,)

    CUstream = int

    class CUfunction_attribute:
        CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8


FN_HANDLE = 0xF00D  # the fake CUfunction
CTX_BASE = 0xC0     # fake contexts: CTX_BASE + device ordinal


@pytest.fixture(params=["python", "native"])
def fake_cuda(monkeypatch, request):
    fake = FakeDriver([8, 8, 4, 4])
    fake.tier = request.param
    if fake.tier == "native":
        assert native.unavailable_reason() is None, native.unavailable_reason()
        address = ctypes.cast(fake.native_entry, ctypes.c_void_p).value
        assert native.native(address) is not None, native.why_not()
    else:
        address = None
    monkeypatch.setattr(D, "launch_kernel_address", lambda: address)
    monkeypatch.setattr(D, "_drv", fake)
    monkeypatch.setattr(fastpath, "_CUSTREAMS", {})
    dev = D.Device(0, None, None, dict(ATTRS), "sm_90a")
    k = PtxKernel(S.SCALE, S.SCALE_PARAMS)
    compiled = k.specialize({}, "sm_90a")
    dev.modules[compiled.key] = D.Module(None, FN_HANDLE, "scale", num_regs=128, max_threads=512,
                                         static_shared=1024)
    backend = object.__new__(CB.CudaBackend)
    backend.device, backend.arch, backend.single_gpu, backend._prepared = dev, "sm_90a", True, {}
    set_backend(backend)
    monkeypatch.setattr(DeviceArray, "__init__", _fake_array_init)
    return fake, k


def _fake_array_init(self, shape, dtype, *, _fill=None):
    from kaiodsl.runtime.arrays import _as_scalar_type
    self.shape, self.scalar_type = (shape,), _as_scalar_type(dtype)
    self.dtype, self.device, self.ptr, self._dev = self.scalar_type.np_dtype, 0, 0xABC000 + shape, True


def test_fast_path_packs_pointers_and_scalars(fake_cuda):
    fake, k = fake_cuda
    x, y = DeviceArray(8, "f32"), DeviceArray(16, "f32")
    k[(2, 3), 128](x, y, 1.5, -7)
    grid, block, smem, stream, vals = fake.launches[-1]
    assert grid == (2, 3, 1) and block == (128, 1, 1) and smem == 0 and stream == 0
    assert struct.unpack("<Q", vals[0])[0] == x.ptr and struct.unpack("<Q", vals[1])[0] == y.ptr
    assert struct.unpack("<f", vals[2])[0] == 1.5 and struct.unpack("<i", vals[3])[0] == -7
    k[1, 128](x, y, 2.0, 9, stream=77)
    assert fake.launches[-1][3] == 77


def test_tiers_launch_the_same_bytes(fake_cuda):
    """Repeats go to the native tier (when it is on) and hand the driver what the Python tier would."""
    fake, k = fake_cuda
    x, y = DeviceArray(8, "f32"), DeviceArray(16, "f32")
    cases = [(1.5, -7), (-0.0, 2**31 - 1), (float("inf"), -(2**31)), (3.4e38, 0), (1e-45, 1)]
    for a, n in cases:
        for _ in range(2):  # the first launch of a block checks it (Python tier)
            k[(5, 6, 7), (32, 2)](x, y, a, n, stream=9)
        grid, block, smem, stream, vals = fake.launches[-1]
        assert (grid, block, smem, stream) == ((5, 6, 7), (32, 2, 1), 0, 9)
        assert vals == [struct.pack("<Q", x.ptr), struct.pack("<Q", y.ptr), struct.pack("<f", a),
                        struct.pack("<i", n)]
    assert fake.native_launches == (2 * len(cases) - 1 if fake.tier == "native" else 0)


def test_native_tier_declines_what_it_does_not_convert(fake_cuda):
    """numpy scalars, bools, ints for f32 and a stream object: the Python tier launches them."""
    fake, k = fake_cuda
    x, y = DeviceArray(8, "f32"), DeviceArray(16, "f32")
    k[1, 32](x, y, 1.0, 3)
    before = fake.native_launches
    for a, n, stream in [(np.float32(2.5), 3, None), (2.5, np.int32(3), None), (2, 3, None),
                         (2.5, True, None), (2.5, 3, Stream0())]:
        k[1, 32](x, y, a, n, stream=stream)
        vals = fake.launches[-1][4]
        assert struct.unpack("<f", vals[2])[0] == float(a) and struct.unpack("<i", vals[3])[0] == int(n)
    assert fake.native_launches == before


class Stream0:
    handle = 0


def test_driver_error_from_either_tier(fake_cuda):
    fake, k = fake_cuda
    x, y = DeviceArray(8, "f32"), DeviceArray(16, "f32")
    k[1, 32](x, y, 1.0, 3)
    fake.error = 999
    with pytest.raises(CudaError, match="cuLaunchKernel"):
        k[1, 32](x, y, 1.0, 3)
    fake.error = 0
    k[1, 32](x, y, 1.0, 3)


def test_fast_path_errors_are_explained(fake_cuda):
    fake, k = fake_cuda
    x, y = DeviceArray(8, "f32"), DeviceArray(16, "f32")
    with pytest.raises(ArgumentError, match="'n' .*out of range"):
        k[1, 128](x, y, 1.0, 2**40)
    with pytest.raises(ArgumentError, match="'a' .*expects a number"):
        k[1, 128](x, y, "1", 3)
    with pytest.raises(ArgumentError, match="'y' expects dtype f32"):
        k[1, 128](x, DeviceArray(8, "f16"), 1.0, 3)
    with pytest.raises(ArgumentError, match="takes 4 runtime"):
        k[1, 128](x, y, 1.0)
    assert fake.launches == []


def test_launch_limits_and_shared_opt_in(fake_cuda):
    fake, k = fake_cuda
    x, y = DeviceArray(8, "f32"), DeviceArray(16, "f32")
    with pytest.raises(LaunchError, match="128 registers/thread x 1024 threads"):
        k[1, 1024](x, y, 1.0, 3)
    with pytest.raises(LaunchError, match="block.z=65"):
        k[1, (1, 1, 65)](x, y, 1.0, 3)
    with pytest.raises(LaunchError, match="grid.y=70000"):
        k[(1, 70000), 32](x, y, 1.0, 3)
    with pytest.raises(LaunchError, match="exceeds the device limit 232448"):
        k[1, 32](x, y, 1.0, 3, smem=232448)
    k[1, 32](x, y, 1.0, 3, smem=47 * 1024)  # 1 KB static + 47 KB: no opt-in needed
    assert fake.set_attr == []
    k[1, 32](x, y, 1.0, 3, smem=100 * 1024)
    k[1, 32](x, y, 1.0, 3, smem=80 * 1024)  # already opted in to more
    assert fake.set_attr == [100 * 1024]


def test_required_block(fake_cuda):
    fake, k = fake_cuda
    k.required_block = (64, 1, 1)  # as .reqntid 64 would set it
    x, y = DeviceArray(8, "f32"), DeviceArray(16, "f32")
    with pytest.raises(LaunchError, match=r"compiled for block \(64, 1, 1\)"):
        k[1, 32](x, y, 1.0, 3)
    k[1, 64](x, y, 1.0, 3)


def test_slot_formats_cover_every_scalar_type():
    from kaiodsl.types import SCALARS

    assert set(CB.SLOT_FORMAT) == set(SCALARS)
    for fmt in CB.SLOT_FORMAT.values():
        assert struct.calcsize("<" + fmt) == 8


class _FakeTorchModule:
    """Just enough of torch for the fast path: Tensor, dtypes, the raw current stream."""

    class dtype:
        def __init__(self, name):
            self.name = name

        def __str__(self):
            return f"torch.{self.name}"

    float32, float16, bfloat16 = dtype("float32"), dtype("float16"), dtype("bfloat16")

    class Tensor:
        def __init__(self, ptr, dtype, device=0):
            self.ptr, self.dtype, self.dev = ptr, dtype, device

        def data_ptr(self):
            return self.ptr

        def __dlpack__(self, stream=None):
            raise NotImplementedError

        def get_device(self):
            return self.dev

        @property
        def is_cuda(self):
            return self.dev >= 0

        @property
        def device(self):
            return "cpu" if self.dev < 0 else f"cuda:{self.dev}"

    Tensor.__module__ = "torch"

    class _C:
        @staticmethod
        def _cuda_getCurrentRawStream(device):
            return 0x5150


def test_torch_fast_path(fake_cuda, monkeypatch):
    fake, k = fake_cuda
    torch = _FakeTorchModule
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setattr(fastpath, "_raw_stream", None)
    x, y = torch.Tensor(0x1000, torch.float32), torch.Tensor(0x2000, torch.float32)
    for _ in range(3):  # first call: general path (learns torch); then the fast tiers
        k[1, 32](x, y, 1.0, 3)
        grid, block, smem, stream, vals = fake.launches[-1]
        assert stream == 0x5150  # torch's current stream
        assert struct.unpack("<Q", vals[0])[0] == 0x1000 and struct.unpack("<Q", vals[1])[0] == 0x2000
    assert fake.native_launches == (2 if fake.tier == "native" else 0)
    for _ in range(10):
        k[1, 32](x, y, 1.0, 3)
    refs = [sys.getrefcount(o) for o in (x, y, torch.float32, NotImplemented)]
    for _ in range(1000):
        k[1, 32](x, y, 1.0, 3)
    after = [sys.getrefcount(o) for o in (x, y, torch.float32, NotImplemented)]
    assert all(abs(a - b) < 50 for a, b in zip(after, refs)), (refs, after)  # no reference leaked or lost
    prepared = next(iter(k._launch_cache.values()))[1]  # (first tier, Python tier)
    assert prepared.namespace["TT"] is torch.Tensor and "data_ptr" in prepared.source
    with pytest.raises(ArgumentError, match="'y' expects dtype f32"):
        k[1, 32](x, torch.Tensor(0x2000, torch.float16), 1.0, 3)
    with pytest.raises(ArgumentError, match="cpu"):
        k[1, 32](x, torch.Tensor(0x2000, torch.float32, -1), 1.0, 3)


def test_generated_source_for_small_signatures(fake_cuda):
    fake, _ = fake_cuda
    for ptx, specs, args in [(S.MAXNTID, S.MAXNTID_PARAMS, lambda: (DeviceArray(4, "f32"),))]:
        k = PtxKernel(ptx, specs)
        backend = set_backend.__globals__["STATE"].backend
        compiled = k.specialize({}, "sm_90a")
        backend.device.modules[compiled.key] = D.Module(None, FN_HANDLE, k.__name__, 8, 128, 0)
        fake.sizes = [8]
        k[1, 32](*args())
        assert struct.unpack("<Q", fake.launches[-1][4][0])[0] == 0xABC004
        with pytest.raises(ArgumentError, match="takes 1 runtime"):
            k[1, 32]()
