"""Arrays a launch accepts: kaiodsl's own ``DeviceArray``, and what other libraries hand us.

* ``DeviceArray``: device memory owned by kaiodsl (freed when the object is
  collected), or under the simulator a numpy array exposed as ``_sim_buffer``.
* ``DeviceArray`` exports itself through ``__cuda_array_interface__`` and
  ``__dlpack__`` (zero-copy; under the simulator, the numpy buffer's ``__dlpack__``).
* Foreign device arrays pass zero-copy: PyTorch tensors (``data_ptr()``),
  anything with ``__cuda_array_interface__`` (v2/v3, e.g. CuPy, Numba), or
  ``__dlpack__`` (parsed with ctypes; the capsule is not consumed).
* numpy arrays are host memory: the CUDA backend copies them in before the
  launch and, for writable pointer parameters, back out after it (synchronously).
"""

from __future__ import annotations

import weakref

import numpy as np

from ..errors import ArgumentError
from ..types import SCALARS, ScalarType
from . import args as _args
from . import dlpack


def _as_scalar_type(dtype) -> ScalarType:
    """kaiodsl.f32 / 'f32' / np.float32 / 'float32' / ml_dtypes.bfloat16 -> ScalarType."""
    if isinstance(dtype, ScalarType):
        return dtype
    if isinstance(dtype, str) and dtype in SCALARS:
        return SCALARS[dtype]
    try:
        st = _args.scalar_type_of_numpy(dtype)
    except TypeError:
        st = None
    if st is None:
        raise ArgumentError(f"unsupported array dtype {dtype!r}: use a kaiodsl scalar type "
                            f"({', '.join(SCALARS)}) or a numpy dtype")
    return st


def _shape(shape) -> tuple:
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ArgumentError(f"array shape {shape} has a negative extent")
    return shape


class DeviceArray:
    """A C-contiguous array in device memory (or, under the simulator, in a numpy buffer).

    ``dtype`` is the numpy dtype of the storage (bf16 is stored as uint16 raw
    bits); ``scalar_type`` is the kaiodsl element type launches check against.
    """

    def __init__(self, shape, dtype, *, _fill=None):
        from . import backend as _backend

        self.shape = _shape(shape)
        self.scalar_type = _as_scalar_type(dtype)
        self.dtype = self.scalar_type.np_dtype
        self.size = int(np.prod(self.shape, dtype=np.int64))
        self.nbytes = self.size * self.dtype.itemsize
        dev = getattr(_backend.current(), "device", None)  # a driver.Device, or None (simulator)
        self._dev = dev
        if dev is None:
            self.device = None
            self.ptr = 0
            self._sim_buffer = np.zeros(self.shape, self.dtype) if _fill is None \
                else np.ascontiguousarray(_fill, self.dtype).reshape(self.shape).copy()
            return
        from . import driver

        self.device = dev.ordinal
        self.ptr = driver.mem_alloc(dev, self.nbytes)
        weakref.finalize(self, driver.mem_free, self.ptr)
        if _fill is not None:
            host = np.ascontiguousarray(_fill, self.dtype)
            driver.copy_htod(self.ptr, host.ctypes.data, self.nbytes)

    # -- array protocol -------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def strides(self) -> tuple:
        """Byte strides, C order."""
        out, step = [], self.dtype.itemsize
        for s in reversed(self.shape):
            out.append(step)
            step *= s
        return tuple(reversed(out))

    @property
    def __cuda_array_interface__(self) -> dict:
        if self._dev is None:
            raise AttributeError("a simulator DeviceArray has no __cuda_array_interface__")
        # No 'stream' entry: our writers order on the legacy default stream or a blocking
        # Stream, which legacy-default consumers already wait for.
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, False),
                "strides": None, "version": 3}

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """A DLPack capsule over this memory, zero-copy; it keeps the array alive until deleted.

        ``stream``: the consumer's stream (an int; None, 1 and 2 order with our writes
        already, -1 asks for no ordering); any other stream waits for the legacy default
        stream, where our writes are ordered.
        """
        if self._dev is None:
            extra = {k: v for k, v in (("max_version", max_version), ("dl_device", dl_device),
                                       ("copy", copy)) if v is not None}  # numpy < 2.1 takes none
            return self._sim_buffer.__dlpack__(stream=stream, **extra)
        if copy:
            raise BufferError("DeviceArray.__dlpack__(copy=True): the export is zero-copy; "
                              "copy on the consumer's side instead")
        here = self.__dlpack_device__()
        if dl_device is not None and tuple(int(x) for x in dl_device) != here:
            raise BufferError(f"DeviceArray.__dlpack__: the array is on DLPack device {here}, "
                              f"not {tuple(dl_device)}; copy it there first")
        if stream not in (None, -1, 1, 2):
            from . import driver

            driver.stream_wait_legacy(self._dev, int(stream))
        return dlpack.make_capsule(self, self.ptr, self.shape, self.scalar_type, here)

    def __dlpack_device__(self) -> tuple:
        if self._dev is None:
            return tuple(self._sim_buffer.__dlpack_device__())
        return (dlpack.DL_CUDA, self.device)

    def numpy(self) -> np.ndarray:
        """A host copy (waits for the legacy default stream, hence for blocking streams)."""
        if self._dev is None:
            return self._sim_buffer.copy()
        from . import driver

        out = np.empty(self.shape, self.dtype)
        if self.nbytes:
            driver.copy_dtoh(out.ctypes.data, self.ptr, self.nbytes)
        return out

    def copy_from(self, host) -> "DeviceArray":
        """Overwrite the contents from a host array of the same size."""
        host = np.ascontiguousarray(host, self.dtype)
        if host.size != self.size:
            raise ArgumentError(f"copy_from: {host.size} elements into an array of {self.size}")
        if self._dev is None:
            self._sim_buffer[...] = host.reshape(self.shape)
        else:
            from . import driver

            driver.copy_htod(self.ptr, host.ctypes.data, self.nbytes)
        return self

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 0

    def __repr__(self) -> str:
        where = "sim" if self._dev is None else f"cuda:{self.device}"
        return f"DeviceArray(shape={self.shape}, dtype={self.scalar_type}, device={where})"


def empty(shape, dtype="f32") -> DeviceArray:
    """Uninitialized device memory (zeros under the simulator)."""
    return DeviceArray(shape, dtype)


def zeros(shape, dtype="f32") -> DeviceArray:
    a = DeviceArray(shape, dtype)
    if a._dev is not None and a.nbytes:
        from . import driver

        driver.memset_zero(a.ptr, a.nbytes)
    return a


def to_device(host, dtype=None) -> DeviceArray:
    """Copy a numpy array (or anything np.asarray takes) to a new DeviceArray.

    ``dtype`` may name a kaiodsl type, e.g. ``to_device(bits_u16, kaiodsl.bf16)``.
    """
    host = np.asarray(host)
    st = _as_scalar_type(dtype if dtype is not None else host.dtype)
    if st.name == "bf16" and host.dtype.kind == "f" and host.dtype.name != "bfloat16":
        host = _args.floats_to_bf16_bits(host)  # values -> round-to-nearest-even bits
    elif st.name in _args.RAW_BITS and host.dtype.itemsize == st.np_dtype.itemsize:
        host = host.view(st.np_dtype)  # raw bits (or ml_dtypes bfloat16) kept bit-exact
    return DeviceArray(host.shape, st, _fill=host)


# -- foreign arrays: the device pointer behind an argument -----------------------------------
class Foreign:
    """What the launch needs from a device array of another library."""

    __slots__ = ("ptr", "device", "scalar_type", "keepalive", "stream")

    def __init__(self, ptr, device, scalar_type, keepalive=None, stream=None):
        self.ptr, self.device, self.scalar_type = ptr, device, scalar_type
        self.keepalive, self.stream = keepalive, stream


def foreign_array(obj, launch_stream: int) -> Foreign | None:
    """Pointer, device and dtype of a torch tensor / CAI / DLPack object; None for anything else.

    ``device`` is None when only the driver can tell (CAI pointers); ``stream`` is a
    CAI v3 producer stream the launch must wait for (None: nothing to wait for).
    """
    mod = type(obj).__module__
    if mod.startswith("torch") and hasattr(obj, "data_ptr"):
        dev = obj.get_device()
        if dev < 0:
            raise ArgumentError(f"a torch tensor on {obj.device} cannot be passed to a CUDA kernel; "
                                f"move it with .cuda() first")
        return Foreign(obj.data_ptr(), dev, _args.scalar_type_of_torch(obj.dtype))
    cai = getattr(obj, "__cuda_array_interface__", None)
    if cai is not None:
        s = cai.get("stream") if cai.get("version", 2) >= 3 else None
        # 1 and 2 are the legacy / per-thread default streams, which order with ours already.
        wait = s if s not in (None, 1, 2, launch_stream) else None
        return Foreign(int(cai["data"][0] or 0), None, _args.scalar_type_of_typestr(cai["typestr"]),
                       stream=wait)
    if hasattr(obj, "__dlpack__") and not isinstance(obj, np.ndarray):
        dev_type, dev_id = obj.__dlpack_device__() if hasattr(obj, "__dlpack_device__") else (0, 0)
        if int(dev_type) not in (dlpack.DL_CUDA, dlpack.DL_CUDA_MANAGED):
            raise ArgumentError(f"a {type(obj).__name__} on DLPack device type {int(dev_type)} is not "
                                f"CUDA memory; only CUDA arrays (or numpy, copied) can be passed")
        # The producer makes our stream wait for its work (1: the legacy default stream).
        capsule = obj.__dlpack__(stream=launch_stream or 1)
        t = dlpack.read_capsule(capsule)
        st = _args.scalar_type_of_dlpack(t.dtype.code, t.dtype.bits)
        return Foreign((t.data or 0) + t.byte_offset, int(dev_id), st, keepalive=capsule)
    return None
