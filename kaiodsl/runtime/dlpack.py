"""DLPack (dlpack.h) in ctypes: reading another library's capsule, and making one over our memory.

A capsule we make holds a ``DLManagedTensor`` whose storage, shape array and
owner (the DeviceArray) stay in ``_LIVE`` until the tensor is deleted: by the
consumer through ``deleter`` once it has renamed the capsule "used_dltensor",
or by the capsule's destructor when nobody consumed it. The same protocol as
the DLPack Python specification's reference implementation (and TVM's ctypes FFI).
"""

from __future__ import annotations

import ctypes

from ..types import ScalarType

DL_CPU, DL_CUDA, DL_CUDA_HOST, DL_CUDA_MANAGED = 1, 2, 3, 13  # DLDeviceType
DL_INT, DL_UINT, DL_FLOAT, DL_BFLOAT, DL_BOOL = 0, 1, 2, 4, 6  # DLDataTypeCode


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


_DELETER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)  # void (*deleter)(DLManagedTensor*)


class DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", _DELETER)]


# The Python C API, typed with c_void_p for the capsule so that the destructor, which
# runs while the capsule is being freed, never makes a new reference to it.
_api = ctypes.pythonapi
_capsule_new = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)(
    ("PyCapsule_New", _api))
_capsule_valid = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p)(("PyCapsule_IsValid", _api))
_capsule_ptr_raw = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", _api))
_capsule_ptr = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", _api))

_NAME = b"dltensor"  # a module constant: the capsule keeps a pointer to these bytes
_LIVE: dict = {}     # address of a DLManagedTensor we made -> (it, shape array, owner)


@_DELETER
def _delete(addr):
    _LIVE.pop(addr, None)


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _capsule_destructor(capsule):
    if _capsule_valid(capsule, _NAME):  # still "dltensor": never consumed, so it is ours to delete
        _LIVE.pop(_capsule_ptr_raw(capsule, _NAME), None)


_DESTRUCTOR_ADDR = ctypes.cast(_capsule_destructor, ctypes.c_void_p).value


def dtype_of(st: ScalarType) -> tuple[int, int]:
    """(DLDataTypeCode, bits) of an element type; types DLPack lacks go as their raw bits."""
    if st.name == "bf16":
        return DL_BFLOAT, 16
    dt = st.np_dtype  # f16x2/bf16x2 -> uint32, e4m3/e5m2 -> uint8: the storage
    return {"f": DL_FLOAT, "i": DL_INT, "u": DL_UINT, "b": DL_BOOL}[dt.kind], dt.itemsize * 8


def make_capsule(owner, ptr: int, shape: tuple, st: ScalarType, device: tuple[int, int]):
    """A "dltensor" capsule over ``ptr`` (C-contiguous ``shape`` of ``st``) that keeps ``owner`` alive."""
    code, bits = dtype_of(st)
    m = DLManagedTensor()
    dims = (ctypes.c_int64 * max(1, len(shape)))(*shape)
    t = m.dl_tensor
    t.data = ptr or None
    t.device = DLDevice(*device)
    t.ndim = len(shape)
    t.dtype = DLDataType(code, bits, 1)
    t.shape = ctypes.cast(dims, ctypes.POINTER(ctypes.c_int64))
    t.strides = None  # NULL: compact row-major
    t.byte_offset = 0
    m.deleter = _delete
    addr = ctypes.addressof(m)
    _LIVE[addr] = (m, dims, owner)
    return _capsule_new(addr, _NAME, _DESTRUCTOR_ADDR)


def read_capsule(capsule) -> DLTensor:
    """The DLTensor inside an unconsumed "dltensor" capsule (the capsule must outlive it)."""
    return DLTensor.from_address(_capsule_ptr(capsule, _NAME))
