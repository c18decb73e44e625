"""DeviceArray under the simulator backend, and stream handles (no GPU needed)."""

import numpy as np
import pytest

import kaiodsl.types as T
from kaiodsl.errors import ArgumentError
from kaiodsl.runtime import DeviceArray, Stream, empty, to_device, zeros
from kaiodsl.runtime.args import array_scalar_type
from kaiodsl.runtime.ptx_kernel import PtxKernel
from kaiodsl.runtime.streams import stream_handle

import ptx_samples as S


def test_sim_device_array(fake_sim):
    a = to_device(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert a.shape == (2, 3) and a.dtype == np.float32 and a.scalar_type is T.f32
    assert a.strides == (12, 4) and a.nbytes == 24 and a.device is None and len(a) == 2
    assert isinstance(a._sim_buffer, np.ndarray) and a._sim_buffer.flags.c_contiguous
    np.testing.assert_array_equal(a.numpy(), np.arange(6).reshape(2, 3))
    assert not hasattr(a, "__cuda_array_interface__")
    assert array_scalar_type(a) is T.f32
    a.copy_from(np.zeros(6))
    assert a.numpy().sum() == 0
    with pytest.raises(ArgumentError):
        a.copy_from(np.zeros(5))


@pytest.mark.parametrize("make", [empty, zeros])
@pytest.mark.parametrize("dtype", ["f32", T.f16, np.int32, "bf16", "uint8"])
def test_empty_zeros(fake_sim, make, dtype):
    a = make((4, 5), dtype)
    assert a.shape == (4, 5) and a.numpy().sum() == 0


def test_bf16_arrays(fake_sim):
    a = to_device(np.array([1.0, -2.0], np.float32), T.bf16)
    assert a.scalar_type is T.bf16 and a.dtype == np.uint16
    assert a.numpy().tolist() == [0x3F80, 0xC000]
    b = to_device(np.array([0x3F80], np.uint16), "bf16")
    assert b.numpy().tolist() == [0x3F80]


def test_bad_dtype_and_shape(fake_sim):
    with pytest.raises(ArgumentError, match="unsupported array dtype"):
        empty(3, "complex64")
    with pytest.raises(ArgumentError, match="negative"):
        empty((2, -1))


def test_sim_launch_updates_buffer_in_place(fake_sim):
    k = PtxKernel(S.SCALE, S.SCALE_PARAMS)
    x, y = to_device(np.ones(8, np.float32)), zeros(8)
    k[1, 8](x, y, 2.0, 8)
    _, _, _, vals, _, _ = fake_sim.launches[-1]
    assert vals[1] is y  # the simulator gets the DeviceArray and writes y._sim_buffer
    with pytest.raises(ArgumentError, match="'y' expects dtype f32"):
        k[1, 8](x, zeros(8, "f16"), 2.0, 8)


def test_stream_handles(fake_sim):
    s = Stream()  # a stand-in under the simulator
    assert stream_handle(s) == 0 and s.__cuda_stream__() == (0, 0)
    s.synchronize()

    class TorchLike:
        cuda_stream = 0x1234

    class CupyLike:
        ptr = 0x99

    class Proto:
        def __cuda_stream__(self):
            return (0, 0x77)

    assert stream_handle(None) == 0 and stream_handle(5) == 5
    assert stream_handle(TorchLike()) == 0x1234 and stream_handle(CupyLike()) == 0x99
    assert stream_handle(Proto()) == 0x77 and stream_handle(np.uint64(8)) == 8
    with pytest.raises(ArgumentError, match="stream="):
        stream_handle("default")


def test_device_array_is_array_like():
    assert DeviceArray.__name__ == "DeviceArray"
