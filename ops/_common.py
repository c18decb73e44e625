"""What every op shares: looking at array arguments, validating them, allocating outputs like them.

Ops accept PyTorch tensors, kaiodsl DeviceArrays and numpy arrays (copied in and out
by the launch). Outputs are allocated as the same kind as the first array argument.
Every check raises ``kaiodsl.ArgumentError`` naming the argument and its value,
before anything is launched or written.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

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


_TORCH_VIEWS: dict = {}  # (torch dtype, sizes, strides) -> (ScalarType, shape, strides as Arr holds them)


def inspect_array(name: str, x, op: str) -> Arr:
    if x is None:
        raise ArgumentError(f"{op}(): '{name}' is required, got None")
    if type(x) is _args.torch_tensor_type():  # a plain tensor: what Arr holds is a function of its view
        key = (x.dtype, x.shape, x.stride())
        view = _TORCH_VIEWS.get(key)
        if view is None:
            st = _dtype_of(x.dtype, _args.scalar_type_of_torch)
            shape = tuple(x.shape)
            view = (st, shape, _c_strides(shape) if x.is_contiguous() else tuple(x.stride()))
            if len(_TORCH_VIEWS) >= 4096:
                _TORCH_VIEWS.clear()
            _TORCH_VIEWS[key] = view
        return Arr(name, x, "torch", view[0], view[1], view[2], x.device)
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
        got = a.dtype if a.dtype is not None else getattr(a.obj, "dtype", "?")   # e.g. complex64, object
        raise ArgumentError(f"{op}(): '{a.name}' has dtype {got}; allowed: {names}{extra}")


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

        return torch.empty(shape, dtype=_torch_dtype(torch, dtype.name), device=a.device)
    if a.kind == "numpy":
        return np.empty(shape, dtype.np_dtype)
    from kaiodsl.runtime import empty

    return empty(shape, dtype)


_TORCH_OUT: dict = {}  # kaiodsl name -> torch dtype of the outputs new_like makes


def _torch_dtype(torch, name: str):
    if not _TORCH_OUT:
        _TORCH_OUT.update(f16=torch.float16, bf16=torch.bfloat16, f32=torch.float32, i32=torch.int32,
                          i8=torch.int8, u8=torch.uint8)
    return _TORCH_OUT[name]


def zeros_like(a: Arr, shape: tuple, dtype: ScalarType):
    """``new_like`` filled with zeros (a defined result that no kernel computes, e.g. an empty row's scale)."""
    if a.kind == "torch":
        out = new_like(a, shape, dtype)
        out.zero_()
        return out
    if a.kind == "numpy":
        return np.zeros(shape, dtype.np_dtype)
    from kaiodsl.runtime import zeros

    return zeros(shape, dtype)


def copy_2d(x, kind: str, transpose: bool, rows: int, cols: int):
    """A contiguous [rows, cols] copy of ``x`` (or of ``x^T`` when ``transpose``), zero past the
    source's extent; ``x`` itself when that is already what it is (no copy). A DeviceArray
    round-trips through host memory (slow on a GPU: prefer torch tensors there)."""
    if not transpose and tuple(x.shape) == (rows, cols):
        return x
    if kind == "torch":
        import torch

        src = x.t() if transpose else x
        out = torch.zeros((rows, cols), dtype=x.dtype, device=x.device)
        out[:src.shape[0], :src.shape[1]] = src
        return out
    host = x if kind == "numpy" else x.numpy()       # a DeviceArray: raw bits (bf16 as uint16)
    src = host.T if transpose else host
    out = np.zeros((rows, cols), host.dtype)
    out[:src.shape[0], :src.shape[1]] = src
    if kind == "numpy":
        return out
    from kaiodsl.runtime import to_device

    return to_device(out, x.scalar_type)


# -- scalar arguments ---------------------------------------------------------------------------------
I32_MAX = 2**31 - 1
F32_MAX = float(np.finfo(np.float32).max)


def is_int(v) -> bool:
    """A Python or numpy integer, not a bool (True is an int to Python, never a size to us)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def is_real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def require_choice(op: str, name: str, value, choices: tuple, why: str = "") -> str:
    """``value`` is one of the strings ``choices`` (no == on arrays or other objects)."""
    if not (isinstance(value, str) and value in choices):
        allowed = ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}"
        raise ArgumentError(f"{op}(): {name} must be {allowed}{why}, got {value!r}")
    return value


def require_int(op: str, name: str, value, *, allowed: tuple = (), lo: int = None, hi: int = None) -> int:
    """``value`` is an int (Python or numpy, not bool) in ``allowed`` / [lo, hi]; returns it as a Python int."""
    ok = is_int(value)
    if ok:
        value = int(value)
        ok = (not allowed or value in allowed) and (lo is None or value >= lo) and (hi is None or value <= hi)
    if not ok:
        if allowed:
            want = ", ".join(str(c) for c in allowed[:-1]) + f" or {allowed[-1]}"
        else:
            want = ("an int" + (f" >= {lo}" if lo is not None else "") +
                    (f" and <= {hi}" if hi is not None else ""))
        raise ArgumentError(f"{op}(): {name} must be {want}, got {value!r}")
    return value


def require_f32_scalar(op: str, name: str, value, what: str = "a Python float") -> float:
    """A real number that the kernel's f32 scalar holds: finite and within the f32 range."""
    if is_real(value):
        try:
            v = float(value)
        except OverflowError:             # an int beyond every float
            v = float("inf")
        if np.isfinite(v) and abs(v) <= F32_MAX:
            return v
    raise ArgumentError(f"{op}(): {name} must be {what}, finite and within the f32 range "
                        f"(|x| <= {F32_MAX:.4g}), got {value!r}")


def require_positive_fields(cfg, skip: tuple = ()) -> None:
    """Every field of the config dataclass ``cfg`` but those named in ``skip`` (checked by the config
    itself) is a positive int (bool, an int subclass, is not): the ``__post_init__`` of the ops'
    tiling configs."""
    for f in fields(cfg):
        if f.name in skip:
            continue
        v = getattr(cfg, f.name)
        if not (type(v) is int and v >= 1):
            raise ArgumentError(f"{type(cfg).__name__}: {f.name} must be a positive int, got {v!r}")


def require_i32_sizes(op: str, **sizes) -> None:
    """The kernels take M, N, K as i32 arguments."""
    for name, v in sizes.items():
        if v > I32_MAX:
            raise ArgumentError(f"{op}(): {name}={v} is more than the kernels' i32 size arguments hold "
                                f"(at most 2**31 - 1)")


# Dynamic shared memory a block may opt into, by arch (CUDA C Programming Guide, "Compute Capabilities").
SMEM_LIMIT = {"sm_80": 163 * 1024, "sm_86": 99 * 1024, "sm_87": 163 * 1024, "sm_89": 99 * 1024,
              "sm_90": 227 * 1024, "sm_90a": 227 * 1024}


def require_smem(op: str, what: str, nbytes: int) -> None:
    """``nbytes`` of dynamic shared memory fit the current backend's arch (before anything is allocated)."""
    from kaiodsl.runtime import current

    arch = getattr(current(), "arch", None)
    limit = SMEM_LIMIT.get(arch, 227 * 1024)
    if nbytes > limit:
        raise ArgumentError(f"{op}(): {what} needs {nbytes} bytes of shared memory; a block on {arch} "
                            f"can have at most {limit}: use fewer stages or smaller tiles")


def data_alignment(a: Arr, cap: int = 16) -> int:
    """The largest power of two <= ``cap`` that divides the data address of ``a`` as the kernel will see
    it: a torch tensor's ``data_ptr()`` (a view may start anywhere in its storage) or a
    ``__cuda_array_interface__`` pointer; ``cap`` for numpy arrays (the launch copies them into fresh
    buffers) and DeviceArrays (allocated aligned)."""
    if a.kind == "torch":
        addr = a.obj.data_ptr()
    elif a.kind == "cuda":
        addr = a.obj.__cuda_array_interface__["data"][0]
    else:
        return cap
    return min(cap, addr & -addr) if addr else cap


TICKETS: dict = {}       # (array kind, device, backend, torch stream) -> zeroed i32 buffer, grown as needed


def tickets(like, n: int):
    """At least ``n`` i32 counters on ``like``'s device, zero between launches: one buffer per device,
    backend and (torch operands) PyTorch stream, which every kernel drawing tickets from it (the split
    decode GEMMs, the dynamic attention schedule) leaves zeroed, so no launch pays a memset. Launches
    on one stream run in order, so they never draw from a buffer at the same time; an op launched on
    another stream (torch.cuda.stream(s)) gets a buffer of its own (zeroed on that stream)."""
    from kaiodsl.runtime import current

    stream = 0
    if like.kind == "torch" and like.obj.is_cuda:
        from kaiodsl.runtime.fastpath import torch_stream

        stream = torch_stream(like.obj.device.index)
    key = (like.kind, str(like.device), id(current()), stream)
    buf = TICKETS.get(key)
    if buf is None or len(buf) < n:
        n = max(n, 4096)
        if like.kind == "torch":
            import torch

            buf = torch.zeros((n,), dtype=torch.int32, device=like.device)
        elif like.kind == "numpy":
            buf = np.zeros((n,), np.int32)
        else:
            from kaiodsl.runtime import zeros
            from kaiodsl.types import i32

            buf = zeros((n,), i32)
        TICKETS[key] = buf
    return buf
