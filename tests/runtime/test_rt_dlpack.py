"""DeviceArray.__dlpack__: the simulator delegates to numpy; the CUDA capsule is built with ctypes.

The capsule machinery is backend-independent, so it is checked on the CPU too: a
capsule over a numpy buffer, consumed by ``np.from_dlpack``, must read the same
memory, keep its owner alive while the consumer holds it, and free everything after.
"""

import gc

import numpy as np
import pytest

import kaiodsl.types as T
from kaiodsl.runtime import Stream, dlpack, to_device, zeros


class CpuExport:
    """An array-like whose __dlpack__ is ``dlpack.make_capsule`` over host memory."""

    def __init__(self, host, st=None):
        self.host = host
        self.st = st or T.SCALARS[{"float32": "f32", "int16": "i16", "uint8": "u8"}[host.dtype.name]]

    def __dlpack__(self, stream=None, **_):
        return dlpack.make_capsule(self, self.host.ctypes.data, self.host.shape, self.st, (dlpack.DL_CPU, 0))

    def __dlpack_device__(self):
        return (dlpack.DL_CPU, 0)


@pytest.mark.parametrize("dtype, shape", [(np.float32, (3, 5)), (np.int16, (7,)), (np.uint8, (2, 3, 4)),
                                          (np.float32, ())])
def test_capsule_round_trips_through_numpy(dtype, shape):
    host = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
    before = len(dlpack._LIVE)
    out = np.from_dlpack(CpuExport(host))  # the exporter object itself is dropped here
    assert out.shape == shape and out.dtype == host.dtype
    assert np.shares_memory(out, host) and np.array_equal(out, host)
    assert len(dlpack._LIVE) == before + 1  # the owner lives while numpy holds the tensor
    del out
    gc.collect()
    assert len(dlpack._LIVE) == before  # numpy called our deleter


def test_unconsumed_capsule_frees_itself():
    before = len(dlpack._LIVE)
    cap = CpuExport(np.zeros(4, np.float32)).__dlpack__()
    t = dlpack.read_capsule(cap)
    assert t.ndim == 1 and t.shape[0] == 4 and t.dtype.code == dlpack.DL_FLOAT and t.dtype.bits == 32
    assert t.strides is not None and not t.strides  # NULL: compact row-major
    assert len(dlpack._LIVE) == before + 1
    del cap, t
    gc.collect()
    assert len(dlpack._LIVE) == before  # the capsule destructor deleted it


@pytest.mark.parametrize("name, code, bits", [
    ("f32", dlpack.DL_FLOAT, 32), ("f16", dlpack.DL_FLOAT, 16), ("bf16", dlpack.DL_BFLOAT, 16),
    ("i8", dlpack.DL_INT, 8), ("u64", dlpack.DL_UINT, 64), ("bool", dlpack.DL_BOOL, 8),
    ("f16x2", dlpack.DL_UINT, 32), ("e4m3", dlpack.DL_UINT, 8)])
def test_dtype_codes(name, code, bits):
    assert dlpack.dtype_of(T.SCALARS[name]) == (code, bits)


@pytest.mark.parametrize("dtype", ["f32", "i32", "bf16"])
def test_sim_device_array_exports_its_numpy_buffer(fake_sim, dtype):
    a = to_device(np.arange(12, dtype=np.float32).reshape(3, 4), dtype)
    assert a.__dlpack_device__() == (dlpack.DL_CPU, 0)
    out = np.from_dlpack(a)
    assert np.shares_memory(out, a._sim_buffer) and np.array_equal(out, a._sim_buffer)


@pytest.mark.gpu
def test_cuda_device_array_capsule(cuda):
    a = to_device(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert a.__dlpack_device__() == (dlpack.DL_CUDA, a.device)
    cap = a.__dlpack__(stream=1)
    t = dlpack.read_capsule(cap)
    assert t.data == a.ptr and t.device.device_type == dlpack.DL_CUDA and t.ndim == 2
    assert (t.shape[0], t.shape[1]) == (2, 3) and (t.dtype.code, t.dtype.bits) == (dlpack.DL_FLOAT, 32)
    with pytest.raises(BufferError, match="zero-copy"):
        a.__dlpack__(copy=True)
    s = Stream()  # a consumer stream of its own: made to wait for the legacy stream (an event)
    assert dlpack.read_capsule(a.__dlpack__(stream=s.handle)).data == a.ptr
    s.synchronize()


@pytest.mark.gpu
def test_cuda_device_array_into_torch(cuda):
    torch = pytest.importorskip("torch")
    a = to_device(np.arange(1000, dtype=np.float32))
    t = torch.from_dlpack(a)
    assert t.device.type == "cuda" and t.data_ptr() == a.ptr
    del a
    gc.collect()  # the tensor keeps the DeviceArray's memory alive
    assert torch.equal(t.cpu(), torch.arange(1000, dtype=torch.float32))
    b = zeros(8, "bf16")
    assert torch.from_dlpack(b).dtype == torch.bfloat16
