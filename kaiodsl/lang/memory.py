"""Memory: shared arrays (static and dynamic), local arrays in registers, vector and cached loads/stores."""

from __future__ import annotations

from ..frontend.builder import Builder, PyConst
from ..frontend.describe import describe
from ..frontend.values import Builtin, SharedArray, builtin
from ..ir.node import Node, SharedDecl
from ..types import PtrType, ScalarType, TupleType, u32

_LOAD_CACHE = {"", "nc", "ca", "cg", "cs", "lu", "cv"}
_STORE_CACHE = {"", "wb", "cg", "cs", "wt"}


def _shape(b: Builder, shape) -> tuple:
    shape = (shape,) if isinstance(shape, (int, Node)) else tuple(shape)
    if any(isinstance(s, Node) for s in shape):
        b.error("an array's shape must be compile-time ints, but it has a run-time value; "
                "make the size a Const parameter or a constant")
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        b.error(f"an array's shape must be positive compile-time ints, got {describe(shape)}")
    return shape


@builtin
def shared_array(b: Builder, dtype, shape, align: int = 16, name: str = "smem"):
    """A static shared-memory array of ``dtype`` and ``shape`` (row-major), ``align``-byte aligned."""
    if not isinstance(dtype, ScalarType) or dtype.is_bool:
        b.error(f"shared_array(): dtype must be a kaiodsl scalar type, got {describe(dtype)}")
    if align not in (4, 8, 16, 32, 64, 128, 256, 512, 1024):
        b.error(f"shared_array(): align must be a power of two from 4 to 1024, got {align}")
    shape = _shape(b, shape)
    size = dtype.nbytes
    for s in shape:
        size *= s
    if size > 227 * 1024:
        b.error(f"shared_array(): {size} bytes is more than the 227 KB a block can have")
    sym = b.declare_shared(name, size, align)
    base = b.emit("shared_base", PtrType(dtype, "shared"), (), {"symbol": sym})
    return SharedArray(base, dtype, shape)


@builtin
def dynamic_shared(b: Builder, dtype, shape=None, offset: int = 0, align: int = 16):
    """The dynamic shared memory given at launch (``smem=`` bytes), viewed as ``dtype`` from ``offset`` bytes.

    ``shape`` (compile-time) allows multi-dimensional indexing; without it the view is 1-D.
    ``align``: the window's alignment in bytes (the largest any call asks for; 1024 for tiles that
    a 128-byte-swizzled TMA box or wgmma descriptor reads).
    """
    if not isinstance(dtype, ScalarType):
        b.error(f"dynamic_shared(): dtype must be a kaiodsl scalar type, got {describe(dtype)}")
    if align not in (16, 32, 64, 128, 256, 512, 1024):
        b.error(f"dynamic_shared(): align must be a power of two from 16 to 1024, got {describe(align)}")
    decl = next((d for d in b.fn.shared if d.size is None), None)
    if decl is None:
        b.fn.shared.append(SharedDecl("kaio_dyn_smem", None, align))
    elif decl.align < align:
        decl.align = align
    base = b.emit("shared_base", PtrType(dtype, "shared"), (), {"symbol": "kaio_dyn_smem"})
    if offset:
        if offset % dtype.nbytes:
            b.error(f"dynamic_shared(): offset {offset} is not a multiple of {dtype}'s {dtype.nbytes} bytes")
        base = b.ptradd(base, offset // dtype.nbytes)
    return SharedArray(base, dtype, _shape(b, shape) if shape is not None else (None,))


def _element_ptr(b: Builder, arr: SharedArray, idx) -> tuple:
    """(pointer, remaining shape) for a full or partial index."""
    idx = idx if isinstance(idx, tuple) else (idx,)
    if len(idx) > len(arr.shape):
        b.error(f"{len(idx)} indices for a {len(arr.shape)}-D shared array")
    flat = 0
    for k, (i, stride) in enumerate(zip(idx, arr.strides)):
        dim = arr.shape[k]
        if isinstance(i, int) and dim is not None and not -dim <= i < dim:
            b.error(f"index {i} is out of range for dimension {k} of size {dim}")
        if isinstance(i, PyConst) and isinstance(flat, PyConst):
            flat = flat + i * stride
        else:
            term = b.binary("mul", i, stride) if stride != 1 else i
            flat = b.binary("add", flat, term) if not (isinstance(flat, int) and flat == 0) else term
    return b.ptradd(arr.base, flat), arr.shape[len(idx):], arr.strides[len(idx):]


def _getitem(self: SharedArray, fx, idx):
    p, rest, strides = _element_ptr(fx.b, self, idx)
    if rest:
        return SharedArray(p, self.elem, rest, strides)
    return fx.b.load(p)


def _setitem(self: SharedArray, fx, idx, value):
    p, rest, _ = _element_ptr(fx.b, self, idx)
    if rest:
        fx.b.error("assign to an element: give one index per dimension")
    fx.b.store(p, value)


def _getattr(self: SharedArray, fx, name):
    if name == "shape":
        return self.shape
    if name == "dtype":
        return self.elem
    if name == "ptr":
        arr = self
        return Builtin("SharedArray.ptr", lambda b, *idx: _element_ptr(b, arr, tuple(idx))[0] if idx else arr.base)
    fx.error(f"a shared array has no attribute '{name}' (it has shape, dtype, ptr)")


SharedArray.__kaio_getitem__ = _getitem
SharedArray.__kaio_setitem__ = _setitem
SharedArray.__kaio_getattr__ = _getattr


@builtin
def local_array(b: Builder, dtype, shape, fill=0):
    """An array in registers: a list of ``dtype`` values, indexed with compile-time constants only."""
    if not isinstance(dtype, ScalarType):
        b.error(f"local_array(): dtype must be a kaiodsl scalar type, got {describe(dtype)}")
    shape = _shape(b, shape)

    def make(dims):
        if not dims:
            return b.coerce(fill, dtype, "local_array fill")
        return [make(dims[1:]) for _ in range(dims[0])]

    return make(shape)


def _ptr_arg(b: Builder, p, index, what):
    if isinstance(p, SharedArray):
        p = p.base
    if not (isinstance(p, Node) and isinstance(p.type, PtrType)):
        b.error(f"{what}(): the first argument must be a pointer or shared array, got {describe(p)}")
    return b.ptradd(p, index) if not (isinstance(index, int) and index == 0) else p


def _check_vec(b: Builder, p: Node, vec: int, what: str):
    """Any vector of at most 16 bytes: vec up to 16 for 8-bit types, 8 for 16-bit, 4 for 32-bit, 2 for 64-bit."""
    nbytes = p.type.elem.nbytes
    if vec not in (1, 2, 4, 8, 16):
        b.error(f"{what}(): vec must be 1, 2, 4, 8 or 16, got {vec}")
    if vec > 1 and p.type.elem.is_bool:
        b.error(f"{what}(): vector accesses of bool are not supported; load u8 values and compare")
    if vec * nbytes > 16:
        b.error(f"{what}(): {vec} x {p.type.elem} is {vec * nbytes} bytes; vector accesses are at most 16 bytes "
                f"(vec <= {16 // nbytes} for {p.type.elem})")


@builtin
def load(b: Builder, ptr, index=0, *, vec: int = 1, cache: str = "", mask=None, other=0):
    """Load ``ptr[index]`` -- or ``vec`` consecutive elements as a tuple (the address must be aligned to
    the vector's size). cache: '' | 'nc' (read-only path) | 'ca' | 'cg' | 'cs' | 'lu' | 'cv'.
    mask: where False, nothing is read and ``other`` is returned."""
    p = _ptr_arg(b, ptr, index, "load")
    _check_vec(b, p, vec, "load")
    if cache not in _LOAD_CACHE:
        b.error(f"load(): cache must be one of {sorted(_LOAD_CACHE)}, got {describe(cache)}")
    if cache == "nc" and p.type.space != "global":
        b.error("load(): cache='nc' is for global memory only")
    return b.load(p, cache=cache, vec=vec, mask=mask, other=other)


@builtin
def store(b: Builder, ptr, index, value, *, vec: int = 1, cache: str = "", mask=None):
    """Store ``value`` at ``ptr[index]``; with vec > 1, ``value`` is a tuple of that many elements."""
    p = _ptr_arg(b, ptr, index, "store")
    _check_vec(b, p, vec, "store")
    if cache not in _STORE_CACHE:
        b.error(f"store(): cache must be one of {sorted(_STORE_CACHE)}, got {describe(cache)}")
    if vec > 1:
        vals = value
        if isinstance(value, Node) and isinstance(value.type, TupleType):
            vals = [b.extract(value, i) for i in range(len(value.type))]
        if not isinstance(vals, (list, tuple)) or len(vals) != vec:
            b.error(f"store(): vec={vec} needs a tuple of {vec} values")
        value = b.make_tuple([b.coerce(v, p.type.elem, "stored value") for v in vals])
    b.store(p, value, cache=cache, vec=vec, mask=mask)


@builtin
def shared_address(b: Builder, ptr):
    """The 32-bit shared-window address of a shared pointer or array, as u32."""
    if isinstance(ptr, SharedArray):
        ptr = ptr.base
    if not (isinstance(ptr, Node) and isinstance(ptr.type, PtrType) and ptr.type.space == "shared"):
        b.error("shared_address() needs a shared pointer or shared array")
    return b.emit("bitcast", u32, (ptr,))

