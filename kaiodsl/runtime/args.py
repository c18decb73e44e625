"""Backend-independent launch-argument checks: pure functions, no driver needed.

The CUDA backend runs these on its slow path (first launch of a signature, and
to explain any failure of its fast path); the simulator runs them on every
launch. Every error is an ``ArgumentError`` naming the parameter, what it
expected and what it received.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from ..errors import ArgumentError
from ..types import FROM_NUMPY, SCALARS, ScalarType, bf16_bits

# Element types that may also be passed as raw bits of the same width
# (numpy has no bf16, fp8 or packed pairs).
RAW_BITS = {"bf16": "u16", "f16x2": "u32", "bf16x2": "u32", "e4m3": "u8", "e5m2": "u8"}

# torch dtype name (str(torch.float16) minus 'torch.') -> kaiodsl scalar name.
TORCH_NAMES = {
    "float16": "f16", "bfloat16": "bf16", "float32": "f32", "float64": "f64",
    "int8": "i8", "uint8": "u8", "int16": "i16", "uint16": "u16", "int32": "i32",
    "uint32": "u32", "int64": "i64", "uint64": "u64", "bool": "bool",
    "float8_e4m3fn": "e4m3", "float8_e5m2": "e5m2",
}

# DLPack type code (dlpack.h DLDataTypeCode) -> kaiodsl kind.
DLPACK_KINDS = {0: "int", 1: "uint", 2: "float", 4: "bfloat", 6: "bool"}

# numpy-side names that ml_dtypes (if installed) gives to its extension types.
_ML_DTYPES = {"bfloat16": "bf16", "float8_e4m3fn": "e4m3", "float8_e5m2": "e5m2"}

# Largest finite value per float type: a finite scalar beyond it is an error, not inf.
_FLOAT_MAX = {"f16": 65504.0, "bf16": 3.3895313892515355e38, "f32": 3.4028234663852886e38,
              "f64": math.inf}


# -- dtypes of array-likes ------------------------------------------------------------
def scalar_type_of_numpy(dtype) -> ScalarType | None:
    dtype = np.dtype(dtype)
    name = FROM_NUMPY.get(dtype.name) or _ML_DTYPES.get(dtype.name)
    return SCALARS[name] if isinstance(name, str) else name


_TORCH_DTYPES: dict = {}  # torch dtype -> ScalarType or None (str(dtype) costs more than the lookup)


def scalar_type_of_torch(dtype) -> ScalarType | None:
    try:
        return _TORCH_DTYPES[dtype]
    except KeyError:
        name = TORCH_NAMES.get(str(dtype).replace("torch.", ""))
        st = _TORCH_DTYPES[dtype] = SCALARS[name] if name else None
        return st


def torch_tensor_type():
    """``torch.Tensor`` once the program has imported torch, else None (kaiodsl never imports it itself):
    what the host path compares ``type(x)`` with to take its shortcuts for plain tensors."""
    torch = sys.modules.get("torch")
    return getattr(torch, "Tensor", None)


def scalar_type_of_typestr(typestr: str) -> ScalarType | None:
    """``__cuda_array_interface__`` typestr ('<f4', '|u1', '<V2' ...)."""
    try:
        return scalar_type_of_numpy(np.dtype(typestr))
    except TypeError:
        return None


def scalar_type_of_dlpack(code: int, bits: int) -> ScalarType | None:
    kind = DLPACK_KINDS.get(code)
    if kind == "bfloat" and bits == 16:
        return SCALARS["bf16"]
    if kind == "bool":
        return SCALARS["bool"]
    prefix = {"int": "i", "uint": "u", "float": "f"}.get(kind)
    return SCALARS.get(f"{prefix}{bits}") if prefix else None


def array_scalar_type(obj) -> ScalarType | None:
    """The kaiodsl element type of any array-like the runtime accepts, or None if it is not one."""
    if type(obj) is torch_tensor_type():  # first: a tensor's failed getattr below costs an exception each
        return scalar_type_of_torch(obj.dtype)
    st = getattr(obj, "scalar_type", None)  # kaiodsl.DeviceArray
    if isinstance(st, ScalarType):
        return st
    if isinstance(obj, np.ndarray):
        return scalar_type_of_numpy(obj.dtype)
    buf = getattr(obj, "_sim_buffer", None)
    if isinstance(buf, np.ndarray):
        return scalar_type_of_numpy(buf.dtype)
    if type(obj).__module__.startswith("torch") and hasattr(obj, "data_ptr"):
        return scalar_type_of_torch(obj.dtype)
    cai = getattr(obj, "__cuda_array_interface__", None)
    if cai is not None:
        return scalar_type_of_typestr(cai["typestr"])
    dtype = getattr(obj, "dtype", None)
    if dtype is not None and hasattr(obj, "__dlpack__"):
        try:
            return scalar_type_of_numpy(dtype)
        except TypeError:
            return None
    return None


def is_array_like(obj) -> bool:
    if type(obj) is torch_tensor_type():
        return True
    if type(obj).__module__.startswith("torch") and hasattr(obj, "data_ptr"):
        return True  # asking a tensor that requires grad for __cuda_array_interface__ raises RuntimeError
    return (isinstance(obj, np.ndarray) or hasattr(obj, "_sim_buffer")
            or hasattr(obj, "__cuda_array_interface__") or hasattr(obj, "__dlpack__"))


def dtype_matches(expected: ScalarType, received: ScalarType) -> bool:
    return received == expected or RAW_BITS.get(expected.name) == received.name


# -- the checks ------------------------------------------------------------------------
def check_count(kernel: str, params, args) -> None:
    if len(args) != len(params):
        names = ", ".join(p.name for p in params)
        raise ArgumentError(f"{kernel}() takes {len(params)} runtime argument(s) ({names}), "
                            f"got {len(args)}")


def check_pointer(kernel: str, param, value, received: ScalarType | None = None) -> None:
    """An array-like whose element type is the pointee type (or its raw bits).

    ``received`` is the element type when the caller already knows it (a DLPack capsule's).
    """
    expected = param.dtype
    if not is_array_like(value):
        raise ArgumentError(f"{kernel}(): argument '{param.name}' expects an array of {expected} "
                            f"(Ptr[{expected}]), got {type(value).__name__} {_short(value)}")
    received = received or array_scalar_type(value)
    if received is None or not dtype_matches(expected, received):
        raw = RAW_BITS.get(expected.name)
        also = f" (or {raw} raw bits)" if raw else ""
        got = received if received is not None else getattr(value, "dtype", "?")
        raise ArgumentError(f"{kernel}(): argument '{param.name}' expects dtype {expected}{also}, "
                            f"got an array of dtype {got}")


def check_tensormap(kernel: str, param, value) -> None:
    from .tensormap import TensorMap

    if not isinstance(value, TensorMap):
        raise ArgumentError(f"{kernel}(): argument '{param.name}' expects a kaiodsl.TensorMap "
                            f"(kaiodsl.TensorMap(array, box=...)), got {type(value).__name__} {_short(value)}")


class TensorMapArray:
    """A TensorMap's array seen as a writable pointer argument (the general launch path stages it)."""

    is_pointer, is_tensormap, writable = True, False, True

    def __init__(self, name: str, array):
        self.name, self.dtype = f"{name}.array", array_scalar_type(array)


def convert_scalar(kernel: str, param, value):
    """A Python/numpy scalar as the numpy value of the parameter's type, range-checked."""
    t: ScalarType = param.dtype
    where = f"{kernel}(): argument '{param.name}' ({t})"
    if is_array_like(value) and getattr(value, "ndim", 1) != 0:
        raise ArgumentError(f"{where} expects a scalar, got an array {_short(value)}")
    if isinstance(value, np.ndarray):
        value = value.item()
    if t.is_bool:
        if isinstance(value, (bool, np.bool_)) or (_is_int(value) and int(value) in (0, 1)):
            return np.bool_(bool(value))
        raise ArgumentError(f"{where} expects a bool, got {_short(value)}")
    if t.is_int or t.kind == "packed" or t.name in RAW_BITS:
        if t.name in RAW_BITS and not t.is_int and not _is_int(value):
            if t.name == "bf16" and _is_real(value):  # a float for a bf16 scalar: round it
                return np.uint16(float_to_bf16_bits(_float_in_range(where, t, value)))
            raise ArgumentError(f"{where} expects raw {RAW_BITS[t.name]} bits (an int), "
                                f"got {_short(value)}")
        if not _is_int(value):
            raise ArgumentError(f"{where} expects an int, got {type(value).__name__} {_short(value)}")
        v = int(value)
        lo, hi = t.int_range
        if not lo <= v <= hi:
            raise ArgumentError(f"{where}: {v} is out of range [{lo}, {hi}]")
        return np.array(v).astype(t.np_dtype)[()]
    if t.is_float:
        if not _is_real(value):
            raise ArgumentError(f"{where} expects a number, got {type(value).__name__} {_short(value)}")
        return t.np_dtype.type(_float_in_range(where, t, value))
    raise ArgumentError(f"{where}: scalar parameters of type {t} are not supported")


def validate_args(kernel: str, params, args) -> list:
    """Check every argument; return them with scalars converted to numpy values of their type.

    Arrays are returned unchanged (the simulator reads ``_sim_buffer`` / numpy data itself).
    """
    check_count(kernel, params, args)
    out = []
    for p, a in zip(params, args):
        if p.is_pointer:
            check_pointer(kernel, p, a)
            out.append(a)
        elif p.is_tensormap:
            check_tensormap(kernel, p, a)
            out.append(a)
        else:
            out.append(convert_scalar(kernel, p, a))
    return out


def host_array(value):
    """The numpy array behind a host-side argument (numpy, or ``_sim_buffer``), else None."""
    if isinstance(value, np.ndarray):
        return value
    buf = getattr(value, "_sim_buffer", None)
    return buf if isinstance(buf, np.ndarray) else None


# -- helpers ----------------------------------------------------------------------------
def float_to_bf16_bits(x: float) -> int:
    """Round-to-nearest-even f32 -> bf16, as the raw 16 bits (kaiodsl.types.bf16_bits)."""
    return int(bf16_bits(x))


def floats_to_bf16_bits(a) -> np.ndarray:
    """Vectorized float_to_bf16_bits: an array of floats -> uint16 bf16 bits."""
    return bf16_bits(np.ascontiguousarray(a, np.float32))


def _float_in_range(where: str, t: ScalarType, value) -> float:
    v = float(value)
    if math.isfinite(v) and abs(v) > _FLOAT_MAX[t.name]:
        raise ArgumentError(f"{where}: {v} does not fit in {t} (max {_FLOAT_MAX[t.name]:g})")
    return v


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer))  # bool is an int: True passes as 1


def _is_real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating))


def _short(v) -> str:
    shape = getattr(v, "shape", None)
    if shape is not None:
        return f"of shape {tuple(shape)}"
    r = repr(v)
    return r if len(r) < 40 else r[:37] + "..."
