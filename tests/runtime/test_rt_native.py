"""The native launch tier on its own: every scalar kind against the Python tier's packing.

The driver entry is a C callback recording what it was handed; no GPU is needed. The
Python tier packs each scalar with cuda_backend.SLOT_FORMAT: the native tier must
write the same bytes the driver reads, or decline (NotImplemented) and write nothing
the Python tier would not overwrite.
"""

import ctypes
import struct
from types import SimpleNamespace

import pytest

from kaiodsl.runtime import cuda_backend as CB
from kaiodsl.runtime import native
from kaiodsl.types import SCALARS

PROTO = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, *[ctypes.c_uint] * 7, ctypes.c_void_p,
                         ctypes.c_void_p, ctypes.c_void_p)
BLOCK, GRID = (64, 2, 1), (3, 1, 2)


class Harness:
    def __init__(self, names, ordinal=0, single_gpu=True, error=0):
        self.params = [SimpleNamespace(name=f"p{i}", is_pointer=n == "ptr", dtype=SCALARS["f32" if n == "ptr" else n])
                       for i, n in enumerate(names)]
        self.n = len(names)
        self.buf = (ctypes.c_uint64 * max(1, self.n))()
        self.argv = (ctypes.c_void_p * max(1, self.n))(*[ctypes.addressof(self.buf) + 8 * i for i in range(self.n)])
        self.calls, self.error = [], error
        self.entry = PROTO(self._launch)
        nat = native.native(ctypes.cast(self.entry, ctypes.c_void_p).value)
        assert nat is not None, native.why_not()
        self.desc = native.Descriptor(fn=0x77, argv=ctypes.addressof(self.argv), buf=ctypes.addressof(self.buf),
                                      params=self.params, ordinal=ordinal, single_gpu=single_gpu,
                                      da_type=FakeArray, da_scalar_types=[p.dtype for p in self.params])
        self.desc.set_torch(FakeTensor, lambda dev: 0x5000 + dev, {i: F32 for i in range(self.n)})
        self.desc.set_config(BLOCK, 128)
        self.call = nat.function(self.desc.words)

    def _launch(self, fn, gx, gy, gz, bx, by, bz, smem, stream, argv, extra):
        self.calls.append((fn, (gx, gy, gz), (bx, by, bz), smem, stream or 0, argv, extra))
        return self.error

    def slot(self, i, size=8):
        return bytes(self.buf)[8 * i: 8 * i + size]


F32 = object()  # stands in for torch.float32


class FakeTensor:
    def __init__(self, ptr, dtype=F32, device=0):
        self.ptr, self.dtype, self.dev = ptr, dtype, device

    def data_ptr(self):
        return self.ptr

    @property
    def is_cuda(self):
        return self.dev >= 0

    def get_device(self):
        return self.dev


class FakeArray:  # stands in for kaiodsl.DeviceArray
    def __init__(self, ptr, scalar_type=SCALARS["f32"], device=0):
        self.ptr, self.scalar_type, self.device = ptr, scalar_type, device


@pytest.mark.parametrize("name", ["i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64"])
def test_integer_scalars(name):
    h = Harness([name])
    lo, hi = SCALARS[name].int_range
    size = SCALARS[name].bits // 8
    for v in [lo, hi, 0, -1 if lo < 0 else 1, lo - 1, hi + 1, 2**70]:
        r = h.call(GRID, BLOCK, (v,), 128, 0)
        if lo <= v <= hi:
            assert r is None
            assert h.slot(0, size) == struct.pack("<" + CB.SLOT_FORMAT[name], v)[:size], (name, v)
        else:
            assert r is NotImplemented, (name, v)
    for v in (True, 1.0, "1", None):
        assert h.call(GRID, BLOCK, (v,), 128, 0) is NotImplemented


@pytest.mark.parametrize("name", ["f32", "f64"])
def test_float_scalars(name):
    h = Harness([name])
    size = SCALARS[name].bits // 8
    for v in [0.0, -0.0, 1.5, -3.25e-3, 1e-45, 3.4028234e38, float("inf"), float("-inf"), 1e300, 5e-324]:
        try:
            want = struct.pack("<" + CB.SLOT_FORMAT[name], v)[:size]
        except OverflowError:
            want = None
        r = h.call(GRID, BLOCK, (v,), 128, 0)
        assert (r is NotImplemented) == (want is None), (name, v)
        if want is not None:
            assert h.slot(0, size) == want, (name, v)
    nan = h.call(GRID, BLOCK, (float("nan"),), 128, 0)
    assert nan is None and struct.unpack("<" + CB.SLOT_FORMAT[name], h.slot(0))[0] != 0  # a NaN
    for v in (1, True, "1.0"):
        assert h.call(GRID, BLOCK, (v,), 128, 0) is NotImplemented


def test_launch_arguments_and_streams():
    h = Harness(["ptr", "ptr", "i32"])
    t, a = FakeTensor(0x1000), FakeArray(0x2000)
    assert h.call(GRID, BLOCK, (t, a, 7), 128, None) is None
    assert h.calls[-1][:6] == (0x77, GRID, BLOCK, 128, 0x5000, ctypes.addressof(h.argv))
    assert h.calls[-1][6] is None  # extra
    assert struct.unpack("<QQi", bytes(h.buf)[:20]) == (0x1000, 0x2000, 7)
    assert h.call(GRID, BLOCK, (a, a, 7), 128, None) is None and h.calls[-1][4] == 0  # no tensor: stream 0
    assert h.call(GRID, BLOCK, (t, a, 7), 128, 99) is None and h.calls[-1][4] == 99
    n = len(h.calls)
    for args, smem, stream, block, grid in [
        ((t, a, 7), 128, object(), BLOCK, GRID),           # a stream object: the Python tier resolves it
        ((t, a, 7), 128, -1, BLOCK, GRID),                  # a negative handle
        ((t, a, 7), 256, None, BLOCK, GRID),                # smem not yet checked
        ((t, a, 7), 128, None, (64, 2, 1, 0)[:3], GRID),    # an equal block, but not the checked object
        ((t, a, 7), 128, None, BLOCK, (0, 1, 1)),           # grid out of range
        ((t, a, 7), 128, None, BLOCK, (2**32, 1, 1)),
        ((t, a, 7), 128, None, BLOCK, [3, 1, 2]),           # not a tuple
        ((t, a), 128, None, BLOCK, GRID),                   # too few arguments
        ([t, a, 7], 128, None, BLOCK, GRID),                # not a tuple
        ((FakeTensor(1, object()), a, 7), 128, None, BLOCK, GRID),  # wrong dtype
        ((FakeTensor(1, F32, -1), a, 7), 128, None, BLOCK, GRID),   # a CPU tensor
        ((t, FakeArray(1, SCALARS["f16"]), 7), 128, None, BLOCK, GRID),
        ((t, FakeArray(1, SCALARS["f32"], None), 7), 128, None, BLOCK, GRID),  # a simulator array
        ((t, FakeArray(1, SCALARS["f32"], 1), 7), 128, None, BLOCK, GRID),     # another device
        ((t, 0x1000, 7), 128, None, BLOCK, GRID),           # a bare int for a pointer
    ]:
        if block is not BLOCK and block == BLOCK:
            block = tuple(list(block))  # a distinct object
        assert h.call(grid, block, args, smem, stream) is NotImplemented, (args, smem, stream, block, grid)
    assert len(h.calls) == n


def test_multi_gpu_reads_the_tensor_device():
    h = Harness(["ptr"], ordinal=1, single_gpu=False)
    assert h.call(GRID, BLOCK, (FakeTensor(0x10, F32, 1),), 128, None) is None
    assert h.calls[-1][4] == 0x5001  # the current stream of device 1
    assert h.call(GRID, BLOCK, (FakeTensor(0x10, F32, 0),), 128, None) is NotImplemented


def test_driver_error_declines():
    h = Harness(["i32"], error=700)
    assert h.call(GRID, BLOCK, (1,), 128, 0) is NotImplemented


def test_exceptions_inside_are_cleared():
    class Broken(FakeTensor):
        def data_ptr(self):
            raise RuntimeError("boom")

    h = Harness(["ptr"])
    h.desc.set_torch(Broken, None, {0: F32})
    assert h.call(GRID, BLOCK, (Broken(1),), 128, 0) is NotImplemented  # and no exception pending
    assert h.call(GRID, BLOCK, (Broken(1),), 128, None) is NotImplemented  # no stream function


def test_c_descriptor_entries_are_the_functions_python_calls():
    """The C-level getter / METH_NOARGS entries read from descriptors (what torch.Tensor's use)."""
    call = ctypes.CFUNCTYPE(ctypes.py_object, ctypes.py_object, ctypes.c_void_p)
    get, closure = native.c_getter(int, "real")
    assert call(get)(12345678901234567890, closure or None) == 12345678901234567890
    assert call(native.c_noargs(int, "bit_length"))(255, None) == 8
    assert call(native.c_noargs(float, "is_integer"))(2.0, None) is True
    assert native.c_getter(int, "bit_length") is None  # a method, not a getset
    assert native.c_noargs(int, "real") is None
    assert native.c_noargs(int, "to_bytes") is None  # takes arguments
    assert native.c_getter(FakeTensor, "is_cuda") is None  # a Python property
    assert native.c_entries(FakeTensor) == (None, None, None)
