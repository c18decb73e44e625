"""Per-device state of the CUDA backend against a fake two-GPU driver (no GPU needed).

What a tensor-parallel rank relies on: the backend's device is the thread's current one (torch's
``set_device(rank)``), creating it leaves torch's current device alone, each launch runs the
function loaded on its arrays' device in that device's context (the caller's restored after), the
prepared launches and loaded modules are kept per (specialization, device), and arrays of two
devices in one launch are refused. The fake's cuLaunchKernel refuses (INVALID_HANDLE, as the driver
does) a function whose context is not the current one."""

import struct
from types import SimpleNamespace

import pytest

from kaiodsl.errors import ArgumentError
from kaiodsl.runtime import cuda_backend as CB
from kaiodsl.runtime import driver as D
from kaiodsl.runtime import fastpath, set_backend
from kaiodsl.runtime.arrays import DeviceArray
from kaiodsl.runtime.ptx_kernel import PtxKernel

import ptx_samples as S
from test_rt_cuda_fake import ATTRS, CTX_BASE, FakeDriver

FN = {0: 0xF000, 1: 0xF001}  # the fake function loaded on each device


class TwoGpus(FakeDriver):
    """Two devices: primary contexts CTX_BASE + ordinal, launches checked against the current context."""

    def __init__(self):
        super().__init__([8, 8, 4, 4])
        self.launch_ctx = []          # (function, context current at the launch)
        self.CUdevice_attribute = SimpleNamespace(**{theirs: ours for ours, theirs in D._ATTRS.items()})

    def cuLaunchKernel(self, fn, *rest):
        current = self.cuCtxGetCurrent()[1]
        self.launch_ctx.append((fn, current))
        if current is None or FN[current - CTX_BASE] != fn:
            return (400,)             # CUDA_ERROR_INVALID_HANDLE: the function belongs to another context
        return super().cuLaunchKernel(fn, *rest)

    def cuInit(self, flags):
        return (0,)

    def cuDeviceGetCount(self):
        return (0, 2)

    def cuDeviceGet(self, ordinal):
        return (0, ordinal)

    def cuDevicePrimaryCtxRetain(self, handle):
        return (0, CTX_BASE + handle)

    def cuDeviceGetAttribute(self, attr, handle):
        return (0, {**ATTRS, "sm_count": 132}[attr])

    def cuDeviceGetName(self, n, handle):
        return (0, b"Fake H200\0")


@pytest.fixture
def two_gpus(monkeypatch):
    fake = TwoGpus()
    monkeypatch.setattr(D, "_drv", fake)
    monkeypatch.setattr(D, "_initialized", False)
    monkeypatch.setattr(D, "_devices", {})
    monkeypatch.setattr(D, "launch_kernel_address", lambda: None)   # the Python tier (its retry is the subject)
    monkeypatch.setattr(fastpath, "_CUSTREAMS", {})
    k = PtxKernel(S.SCALE, S.SCALE_PARAMS)
    compiled = k.specialize({}, "sm_90a")
    for ordinal in (0, 1):
        dev = D.device(ordinal)
        dev.modules[compiled.key] = D.Module(None, FN[ordinal], "scale", num_regs=32, max_threads=1024,
                                             static_shared=0)
    return fake, k, compiled


def _array(n: int, ordinal: int) -> DeviceArray:
    a = object.__new__(DeviceArray)
    a.shape, a.scalar_type = (n,), DeviceArray.__init__.__globals__["_as_scalar_type"]("f32")
    a.dtype, a.device, a.ptr, a._dev = a.scalar_type.np_dtype, ordinal, 0xA0000 + 0x1000 * ordinal + n, True
    return a


def _ptrs(fake):
    vals = fake.launches[-1][4]
    return struct.unpack("<Q", vals[0])[0], struct.unpack("<Q", vals[1])[0]


def test_devices_do_not_change_the_current_context(two_gpus):
    """driver.device(n) retains n's context; the thread's current one (here device 1's) stays."""
    fake, _, _ = two_gpus
    assert fake.cuCtxGetCurrent()[1] == CTX_BASE + 0          # none was current: the first device made its own
    fake.cuCtxSetCurrent(CTX_BASE + 1)                        # torch.cuda.set_device(1)
    D._devices.pop(0)
    D.device(0)
    assert D.current_ordinal() == 1


def test_backend_device_is_the_current_device(two_gpus):
    fake, _, _ = two_gpus
    fake.cuCtxSetCurrent(CTX_BASE + 1)
    b = CB.CudaBackend()
    assert b.device.ordinal == 1 and not b.single_gpu and b.device_name == "Fake H200"
    fake.cuCtxSetCurrent(CTX_BASE + 0)
    assert CB.CudaBackend().device.ordinal == 0 and CB.CudaBackend(1).device.ordinal == 1


def test_launch_runs_on_the_arrays_device_in_its_context(two_gpus):
    """Backend on device 0 (torch's current), arrays on device 1: device 1's function, launched with
    device 1's context pushed; device 0's context is current again afterwards."""
    fake, k, compiled = two_gpus
    fake.cuCtxSetCurrent(CTX_BASE + 0)
    backend = set_backend(CB.CudaBackend())
    x, y = _array(8, 1), _array(16, 1)
    for _ in range(2):
        k[1, 128](x, y, 1.0, 3)
        assert fake.launch_ctx[-1] == (FN[1], CTX_BASE + 1) and _ptrs(fake) == (x.ptr, y.ptr)
        assert D.current_ordinal() == 0
    a, b = _array(8, 0), _array(16, 0)
    k[1, 128](a, b, 1.0, 3)
    assert fake.launch_ctx[-1] == (FN[0], CTX_BASE + 0) and _ptrs(fake) == (a.ptr, b.ptr)
    prepared = backend._prepared
    assert set(prepared) == {(compiled.key, 0), (compiled.key, 1)}           # one per (specialization, device)
    assert prepared[compiled.key, 1].fn == FN[1] and prepared[compiled.key, 0].fn == FN[0]


def test_fast_path_on_another_current_device_launches_again_in_its_own(two_gpus):
    """The backend's own device (0) while torch made device 1 current: the driver refuses the first try;
    the same packed parameters go again with device 0's context pushed, and device 1 stays current."""
    fake, k, _ = two_gpus
    fake.cuCtxSetCurrent(CTX_BASE + 0)
    set_backend(CB.CudaBackend())
    x, y = _array(8, 0), _array(16, 0)
    k[1, 128](x, y, 1.0, 3)                    # prepares and checks the block in device 0's context
    fake.cuCtxSetCurrent(CTX_BASE + 1)
    n = len(fake.launches)
    k[1, 128](x, y, 2.0, 4)
    assert fake.launch_ctx[-2:] == [(FN[0], CTX_BASE + 1), (FN[0], CTX_BASE + 0)]
    assert len(fake.launches) == n + 1 and struct.unpack("<f", fake.launches[-1][4][2])[0] == 2.0
    assert D.current_ordinal() == 1


def test_arrays_on_two_devices_are_refused(two_gpus):
    fake, k, _ = two_gpus
    set_backend(CB.CudaBackend())
    with pytest.raises(ArgumentError, match=r"arrays on different devices \[0, 1\] in one launch"):
        k[1, 128](_array(8, 0), _array(16, 1), 1.0, 3)
    assert not fake.launches
