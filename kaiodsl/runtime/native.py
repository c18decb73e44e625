"""The native launch tier: one machine-code function, JIT-compiled once per process with llvmlite.

A cached launch with four torch tensors spent most of its time in Python: the
interpreter running the generated launch function (fastpath.py) and the
cuda.bindings wrapper around cuLaunchKernel. This tier does the same work as a
C function the interpreter calls directly (METH_FASTCALL, no Python frame): for
each argument it checks the exact type, reads dtype/device/data_ptr through the
CPython C API, writes the parameter slot, fetches PyTorch's current stream and
calls the driver's cuLaunchKernel itself.

It handles the common case only and never raises: it returns ``None`` when it
launched and ``NotImplemented`` when it did nothing (an argument or stream it
does not handle, a block or smem not yet checked for this kernel, any failed C
API call, any driver error). The caller then takes the Python tier, which
handles everything and reports every error, so errors and results read the same
whichever tier ran. The GIL stays held through cuLaunchKernel, so the
kernel's parameter buffer is never written by two threads at once.

Per PreparedLaunch there is a descriptor (a ctypes array of u64, layout in ``H_*``
and ``P_*`` below) and a builtin-function object whose ``self`` is that array, so
the function keeps it alive; the machine code is shared. Python objects the code
compares against (dtype objects, types, method names) are referenced by address
and kept alive by the array (its ``keep`` attribute).
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import sysconfig
import threading

from ..ptx_templates import resource

# Descriptor header (u64 indices).
H_FN, H_ARGV, H_BUF, H_N = 0, 1, 2, 3
H_TENSOR_TYPE, H_DA_TYPE, H_ORD, H_ORD_OBJ, H_STREAM_FN = 4, 5, 6, 7, 8
H_LAST_BLOCK, H_LAST_SMEM, H_BX, H_BY, H_BZ, H_SINGLE_GPU = 9, 10, 11, 12, 13, 14
# How to read a tensor's dtype / is_cuda: (function, argument) called as f(tensor, argument);
# torch's own C getter and its closure, or PyObject_GetAttr and the attribute name. And
# torch's data_ptr C function (METH_NOARGS), 0 for a method call by name.
H_DT_GET, H_DT_ARG, H_CU_GET, H_CU_ARG, H_DP_FN = 16, 17, 18, 19, 20
HEADER = 24
# Per parameter i: 4 u64 at HEADER + 4*i = kind, torch dtype object | lo, DeviceArray scalar type | hi.
P_KIND, P_A, P_B = 0, 1, 2
PTR, INT, U64, F32, F64 = 1, 2, 3, 4, 5  # parameter kinds; 0 = not handled (no native launcher)


METH_FASTCALL = 0x80

_IR_FILE = resource("native_launch.ll", "kaiodsl.runtime")

_C_API = {  # IR name -> CPython C-API symbol
    "TupleSize": "PyTuple_Size", "TupleGetItem": "PyTuple_GetItem",
    "GetAttr": "PyObject_GetAttr", "VectorcallMethod": "PyObject_VectorcallMethod",
    "Vectorcall": "PyObject_Vectorcall", "AsLongLong": "PyLong_AsLongLong",
    "AsUnsignedLongLong": "PyLong_AsUnsignedLongLong", "AsDouble": "PyFloat_AsDouble",
    "ErrOccurred": "PyErr_Occurred", "ErrClear": "PyErr_Clear", "IncRef": "Py_IncRef",
    "DecRef": "Py_DecRef",
}
_NAMES = {n: sys.intern(n) for n in ("dtype", "is_cuda", "get_device", "data_ptr", "scalar_type", "device",
                                      "ptr")}
METH_NOARGS = 0x4


class _MethodDef(ctypes.Structure):
    _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", ctypes.c_void_p),
                ("ml_flags", ctypes.c_int), ("ml_doc", ctypes.c_char_p)]


class _Native:
    """The compiled code, its method definition and the objects its addresses point at."""

    def __init__(self, launch_kernel: int):
        import llvmlite.binding as llvm

        _init_llvm(llvm)
        consts = {f"S_{n}": id(s) for n, s in _NAMES.items()}
        api = ctypes.pythonapi
        consts.update({k: ctypes.cast(getattr(api, sym), ctypes.c_void_p).value for k, sym in _C_API.items()})
        consts.update({"TupleType": id(tuple), "LongType": id(int), "FloatType": id(float),
                       "None": id(None), "NotImplemented": id(NotImplemented), "True": id(True),
                       "LaunchKernel": launch_kernel, "PTR": PTR, "INT": INT, "U64": U64, "F32": F32,
                       "F64": F64, "HEADER": HEADER, "P_A": P_A, "P_B": P_B})
        consts.update({k: v for k, v in globals().items() if k.startswith("H_")})
        with _IR_FILE.open() as f:
            ir = f.read()
        ir = re.sub(r"@(\w+)@", lambda m: str(consts[m.group(1)]), ir)  # a KeyError names a missing one
        self.ir = ir
        target = llvm.Target.from_default_triple().create_target_machine(opt=2)
        mod = llvm.parse_assembly(ir)
        mod.verify()
        self.engine = llvm.create_mcjit_compiler(mod, target)
        self.engine.finalize_object()
        self.address = self.engine.get_function_address("kaio_launch")
        self.method = _MethodDef(b"kaiodsl_native_launch", self.address, METH_FASTCALL,
                                 b"kaiodsl native launch (see kaiodsl/runtime/native.py)")
        new = api.PyCFunction_NewEx
        new.restype = ctypes.py_object
        new.argtypes = [ctypes.c_void_p, ctypes.py_object, ctypes.py_object]
        self._new = new

    def function(self, words):
        """A builtin function running the native launch on a descriptor (Descriptor.words)."""
        return self._new(ctypes.addressof(self.method), words, None)


_lock = threading.Lock()
_natives: dict = {}  # cuLaunchKernel address -> _Native
_why_not: str | None = None


def _init_llvm(llvm) -> None:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()


def unavailable_reason() -> str | None:
    """Why the native tier cannot run in this process, or None if it can."""
    if os.environ.get("KAIODSL_NATIVE_LAUNCH", "1") == "0":
        return "disabled by KAIODSL_NATIVE_LAUNCH=0"
    if sys.implementation.name != "cpython":
        return f"needs CPython, running {sys.implementation.name}"
    if sysconfig.get_config_var("Py_GIL_DISABLED") or hasattr(sys, "getobjects"):
        return "needs a standard CPython build (free-threaded or trace-refs builds have another object layout)"
    # The code reads an object's type at offset 8 (PyObject = refcount, type) and a ctypes
    # array's buffer pointer at offset 16: check this build lays them out so.
    probe, words = 12345678901234567890, _words(1)
    if ctypes.c_void_p.from_address(id(probe) + 8).value != id(int) or \
            ctypes.c_void_p.from_address(id(words) + 16).value != ctypes.addressof(words):
        return "this CPython's object layout differs from the one the native code reads"
    for sym in _C_API.values():
        if not hasattr(ctypes.pythonapi, sym):
            return f"this CPython does not export {sym}"
    try:
        import llvmlite  # noqa: F401
    except ImportError:
        return "llvmlite is not installed"
    return None


def native(launch_kernel: int) -> _Native | None:
    """The process's native launcher calling the cuLaunchKernel at that address (built on first use)."""
    global _why_not
    n = _natives.get(launch_kernel)
    if n is not None or _why_not is not None:
        return n
    with _lock:
        n = _natives.get(launch_kernel)
        if n is None and _why_not is None:
            _why_not = unavailable_reason()
            if _why_not is None:
                try:
                    n = _natives[launch_kernel] = _Native(launch_kernel)
                except Exception as e:  # an llvmlite it cannot use: the Python tier works alone
                    _why_not = f"JIT failed: {type(e).__name__}: {e}"
    return n


def why_not() -> str | None:
    """After a first attempt: why there is no native launcher (None when there is one)."""
    return _why_not


def kind_of(param) -> int:
    """The native kind of a kernel parameter, 0 when the native code does not handle it."""
    if param.is_pointer:
        return PTR
    if getattr(param, "is_tensormap", False):
        return 0  # 128 bytes by value: the Python tier packs them
    t = param.dtype
    if t.is_int:
        return U64 if t.name == "u64" else INT  # u64's top half is beyond a signed 64-bit compare
    return {"f32": F32, "f64": F64}.get(t.name, 0)


_ENTRIES: dict = {}


def c_entries(tensor_type) -> tuple:
    """(dtype (getter, closure), is_cuda (getter, closure), data_ptr function) of a tensor type,
    each None unless that attribute is a C descriptor (torch.Tensor's come from its C base).
    """
    if tensor_type not in _ENTRIES:
        _ENTRIES[tensor_type] = (c_getter(tensor_type, "dtype"), c_getter(tensor_type, "is_cuda"),
                                 c_noargs(tensor_type, "data_ptr"))
    return _ENTRIES[tensor_type]


# PyGetSetDescrObject and PyMethodDescrObject keep their PyGetSetDef / PyMethodDef pointer
# after the common descriptor header (object header, d_type, d_name, d_qualname). Each def
# is checked by its C name (and flags) before use: a layout this code does not know gives None.
_DESCR_DEF = 40


def _def_of(cls, name: str, kind: str):
    d = getattr(cls, name, None)
    if type(d).__name__ != kind:
        return None
    p = ctypes.c_void_p.from_address(id(d) + _DESCR_DEF).value
    if not p:
        return None
    cname = ctypes.c_void_p.from_address(p).value  # the def's first field: its name
    return p if cname and ctypes.string_at(cname) == name.encode() else None


def c_getter(cls, name: str):
    """(get, closure) of a C getset attribute of cls, called as get(obj, closure); else None."""
    gdef = _def_of(cls, name, "getset_descriptor")
    if gdef is None:
        return None
    get, closure = (ctypes.c_void_p.from_address(gdef + off).value for off in (8, 32))  # PyGetSetDef
    return (get, closure or 0) if get else None


def c_noargs(cls, name: str):
    """The C function of a METH_NOARGS method of cls, called as f(obj, NULL); else None."""
    mdef = _def_of(cls, name, "method_descriptor")
    if mdef is None or ctypes.c_int.from_address(mdef + 16).value != METH_NOARGS:  # PyMethodDef.ml_flags
        return None
    return ctypes.c_void_p.from_address(mdef + 8).value or None


_WORDS: dict = {}


def _words(n: int):
    """A zeroed ctypes u64 array of n words that takes attributes (its `keep`)."""
    cls = _WORDS.get(n)
    if cls is None:
        cls = _WORDS[n] = type("DescriptorWords", (ctypes.c_uint64 * n,), {})
    return cls()


class Descriptor:
    """The u64 array the native code reads for one prepared launch, and what it points at."""

    def __init__(self, *, fn: int, argv: int, buf: int, params, ordinal: int, single_gpu: bool,
                 da_type: type, da_scalar_types):
        n = len(params)
        self.n = n
        self.words = w = _words(HEADER + 4 * max(1, n))
        self.keep = w.keep = [ordinal, da_type]  # objects whose addresses are in the words
        w[H_FN], w[H_ARGV], w[H_BUF], w[H_N] = fn, argv, buf, n
        w[H_DA_TYPE], w[H_ORD], w[H_ORD_OBJ] = id(da_type), ordinal, id(ordinal)
        w[H_SINGLE_GPU] = 1 if single_gpu else 0
        get_attr = ctypes.cast(ctypes.pythonapi.PyObject_GetAttr, ctypes.c_void_p).value
        w[H_DT_GET], w[H_DT_ARG] = get_attr, id(_NAMES["dtype"])
        w[H_CU_GET], w[H_CU_ARG] = get_attr, id(_NAMES["is_cuda"])
        w[H_LAST_BLOCK] = 0  # no block checked yet: the first launch takes the Python tier
        w[H_LAST_SMEM] = (1 << 64) - 1
        self.kinds = []
        for i, p in enumerate(params):
            k = kind_of(p)
            self.kinds.append(k)
            base = HEADER + 4 * i
            w[base + P_KIND] = k
            if k == PTR:
                st = da_scalar_types[i]
                self.keep.append(st)
                w[base + P_B] = id(st)
            elif k == INT:
                lo, hi = p.dtype.int_range
                w[base + P_A], w[base + P_B] = lo & ((1 << 64) - 1), hi

    @property
    def usable(self) -> bool:
        return all(self.kinds)

    def set_torch(self, tensor_type, stream_fn, dtypes) -> None:
        """PyTorch is imported: recognize its tensors (dtypes[i]: the torch dtype for pointer i)."""
        w = self.words
        self.keep += [tensor_type, stream_fn, *dtypes.values()]
        for i, dt in dtypes.items():
            if self.kinds[i] == PTR:
                w[HEADER + 4 * i + P_A] = id(dt) if dt is not None else 0
        w[H_STREAM_FN] = id(stream_fn) if stream_fn is not None else 0
        dtype, is_cuda, data_ptr = c_entries(tensor_type)
        if dtype:
            w[H_DT_GET], w[H_DT_ARG] = dtype
        if is_cuda:
            w[H_CU_GET], w[H_CU_ARG] = is_cuda
        if data_ptr:
            w[H_DP_FN] = data_ptr
        w[H_TENSOR_TYPE] = id(tensor_type)

    def set_config(self, block: tuple, smem: int) -> None:
        """The block and smem just checked; the caller keeps `block` alive."""
        w = self.words
        w[H_BX], w[H_BY], w[H_BZ] = block
        w[H_LAST_SMEM] = smem & ((1 << 64) - 1)
        w[H_LAST_BLOCK] = id(block)
