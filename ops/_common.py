"""What every op shares: looking at array arguments, validating them, allocating outputs like them.

Ops accept PyTorch tensors, kaiodsl DeviceArrays and numpy arrays (copied in and out
by the launch). Outputs are allocated as the same kind as the first array argument.
Every check raises ``kaiodsl.ArgumentError`` naming the argument and its value,
before anything is launched or written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kaiodsl.errors import ArgumentError
from kaiodsl.runtime import args as _args
from kaiodsl.types import ScalarType


@dataclass(frozen=True)
class Arr:
    """An array argument as the op sees it."""

    name: str
    obj: object
    kind: str          # 'torch' | 'numpy' | 'device' | 'cuda' (any other __cuda_array_interface__ object)
    dtype: ScalarType
    shape: tuple
    strides: tuple     # in elements
    device: object     # torch device / DeviceArray device / None for host

    @property
    def contiguous(self) -> bool:
        if 0 in self.shape:                # no elements: any strides (numpy gives 0s) address none
            return True
        expect, acc = [], 1
        for s in reversed(self.shape):
            expect.append(acc)
            acc *= s
        return all(st == e for st, e, n in zip(self.strides, reversed(expect), self.shape) if n != 1)


_DTYPES: dict = {}   # numpy / torch dtype object -> kaiodsl ScalarType (dtype names are slow to compute)


def _dtype_of(dt, convert):
    st = _DTYPES.get(dt)
    if st is None and dt not in _DTYPES:
        st = _DTYPES[dt] = convert(dt)
    return st


def inspect_array(name: str, x, op: str) -> Arr:
    if x is None:
        raise ArgumentError(f"{op}(): '{name}' is required, got None")
    if isinstance(x, np.ndarray):
        st = _dtype_of(x.dtype, _args.scalar_type_of_numpy)
        if x.flags.c_contiguous:
            strides = _c_strides(x.shape)
        else:
            strides = tuple(s // x.itemsize for s in x.strides)
        return Arr(name, x, "numpy", st, x.shape, strides, None)
    mod = type(x).__module__
    if mod.startswith("torch") and hasattr(x, "data_ptr"):
        st = _dtype_of(x.dtype, _args.scalar_type_of_torch)
        shape = tuple(x.shape)
        strides = _c_strides(shape) if x.is_contiguous() else tuple(x.stride())
        return Arr(name, x, "torch", st, shape, strides, x.device)
    st = getattr(x, "scalar_type", None)
    if isinstance(st, ScalarType):  # kaiodsl.DeviceArray (C-contiguous by construction)
        return Arr(name, x, "device", st, tuple(x.shape), _c_strides(tuple(x.shape)), getattr(x, "device", None))
    cai = getattr(x, "__cuda_array_interface__", None)
    if cai is not None:
        st = _args.scalar_type_of_typestr(cai["typestr"])
        shape = tuple(cai["shape"])
        item = np.dtype(cai["typestr"]).itemsize
        strides = tuple(s // item for s in cai["strides"]) if cai.get("strides") else _c_strides(shape)
        return Arr(name, x, "cuda", st, shape, strides, None)
    raise ArgumentError(f"{op}(): '{name}' must be a torch tensor, kaiodsl.DeviceArray or numpy array, "
                        f"got {type(x).__name__}")


def _c_strides(shape: tuple) -> tuple:
    out, acc = [], 1
    for s in reversed(shape):
        out.append(acc)
        acc *= s
    return tuple(reversed(out))


def require_dtype(a: Arr, allowed, op: str) -> None:
    if a.dtype not in allowed:
        names = ", ".join(str(t) for t in allowed)
        extra = ""
        if a.kind == "numpy" and a.dtype is not None and a.dtype.name == "u16":
            extra = " (numpy has no bfloat16: pass a torch tensor or kaiodsl.runtime.to_device(x, kaiodsl.bf16))"
        raise ArgumentError(f"{op}(): '{a.name}' has dtype {a.dtype}; allowed: {names}{extra}")


def require_rank(a: Arr, rank: int, op: str, what: str) -> None:
    if len(a.shape) != rank:
        raise ArgumentError(f"{op}(): '{a.name}' must be {what} ({rank}-D), got shape {a.shape}")


def require_contiguous(a: Arr, op: str) -> None:
    if not a.contiguous:
        raise ArgumentError(f"{op}(): '{a.name}' must be contiguous (row-major), got shape {a.shape} "
                            f"with strides {a.strides}; call .contiguous() first")


def same_kind(op: str, *arrs: Arr) -> None:
    kinds = {a.kind for a in arrs if a is not None}
    host = {"numpy"} & kinds
    if host and len(kinds) > 1:
        names = ", ".join(f"'{a.name}' ({a.kind})" for a in arrs if a is not None)
        raise ArgumentError(f"{op}(): mixes host numpy arrays with device arrays: {names}")
    devices = {str(a.device) for a in arrs if a is not None and a.kind == "torch"}
    if len(devices) > 1:
        raise ArgumentError(f"{op}(): tensors are on different devices: {', '.join(sorted(devices))}")


def new_like(a: Arr, shape: tuple, dtype: ScalarType):
    """An output array of the same kind (and device) as ``a``."""
    if a.kind == "torch":
        import torch

        tdt = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32, "i32": torch.int32,
               "i8": torch.int8, "u8": torch.uint8}[dtype.name]
        return torch.empty(shape, dtype=tdt, device=a.device)
    if a.kind == "numpy":
        return np.empty(shape, dtype.np_dtype)
    from kaiodsl.runtime import empty

    return empty(shape, dtype)
