"""Thin, checked wrappers over the CUDA driver API (cuda.bindings.driver).

Every call that returns a CUresult goes through ``check``: anything but
CUDA_SUCCESS becomes ``kaiodsl.CudaError`` with the driver's error name and
message and, where known, the kernel's name. Devices own their primary context
and a table of loaded modules (one per specialization key).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from dataclasses import dataclass, field

from ..errors import CudaError
from ..limits import check_launch

_drv = None  # cuda.bindings.driver, imported on first use (import kaiodsl never needs a driver)


def drv():
    global _drv
    if _drv is None:
        from cuda.bindings import driver

        _drv = driver
    return _drv


_launch_address = None


def launch_kernel_address() -> int | None:
    """The address of the driver's cuLaunchKernel, for the native launch tier (None if not found).

    The same entry point cuda.bindings calls: the per-thread-default-stream variant when
    CUDA_PYTHON_CUDA_PER_THREAD_DEFAULT_STREAM is set, as cuda.bindings does.
    """
    global _launch_address
    if _launch_address is None:
        name = "cuLaunchKernel_ptsz" if os.environ.get("CUDA_PYTHON_CUDA_PER_THREAD_DEFAULT_STREAM", "0") != "0" \
            else "cuLaunchKernel"
        try:
            lib = ctypes.CDLL("libcuda.so.1")
            _launch_address = ctypes.cast(getattr(lib, name), ctypes.c_void_p).value or 0
        except (OSError, AttributeError):
            _launch_address = 0
    return _launch_address or None


def error_text(err) -> tuple[str, str]:
    d = drv()
    try:
        e1, name = d.cuGetErrorName(err)
        e2, msg = d.cuGetErrorString(err)
        return (name.decode() if e1 == 0 and name else str(err),
                msg.decode() if e2 == 0 and msg else "")
    except Exception:  # the driver cannot even describe it
        return str(err), ""


def raise_error(err, what: str, kernel: str | None = None, log: str = ""):
    name, msg = error_text(err)
    where = f" (kernel '{kernel}')" if kernel else ""
    text = f"{what} failed{where}: {name}: {msg}"
    if log:
        text += "\n" + log
    raise CudaError(text, code=int(err), name=name, kernel=kernel)


def check(result, what: str, kernel: str | None = None):
    """Unpack a cuda.bindings result tuple, raising CudaError on failure."""
    err = result[0]
    if err != 0:
        raise_error(err, what, kernel)
    return result[1] if len(result) == 2 else result[1:]


_init_lock = threading.Lock()
_initialized = False


def init() -> int:
    """cuInit once; returns the device count."""
    global _initialized
    d = drv()
    with _init_lock:
        if not _initialized:
            check(d.cuInit(0), "cuInit")
            _initialized = True
    return check(d.cuDeviceGetCount(), "cuDeviceGetCount")


# Device attributes the launch checks need: our name -> CUdevice_attribute member.
_ATTRS = {
    "max_threads_per_block": "CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK",
    "max_block_x": "CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X",
    "max_block_y": "CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y",
    "max_block_z": "CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z",
    "max_grid_x": "CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X",
    "max_grid_y": "CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y",
    "max_grid_z": "CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z",
    "max_shared_per_block": "CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK",
    "max_shared_optin": "CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN",
    "max_regs_per_block": "CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK",
    "sm_count": "CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT",
    "cc_major": "CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR",
    "cc_minor": "CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR",
}

DEFAULT_SHARED_LIMIT = 48 * 1024  # above this a kernel must opt in (CUDA C Programming Guide, shared memory)


@dataclass
class Module:
    """One loaded specialization on one device."""

    module: object
    function: object
    kernel: str
    num_regs: int
    max_threads: int      # cuFuncGetAttribute MAX_THREADS_PER_BLOCK (registers and .maxntid bound it)
    static_shared: int
    jit_log: str = ""
    dyn_shared_optin: int = 0  # the dynamic-shared limit set so far (0: default 48 KB rules)


@dataclass
class Device:
    """A GPU, its primary context, its limits and the modules loaded on it."""

    ordinal: int
    handle: object
    context: object
    attrs: dict
    arch: str
    name: str = ""        # cuDeviceGetName, e.g. "NVIDIA H200": the key of the tuning tables
    modules: dict = field(default_factory=dict)  # specialization key -> Module
    lock: threading.Lock = field(default_factory=threading.Lock)

    def make_current(self) -> None:
        check(drv().cuCtxSetCurrent(self.context), "cuCtxSetCurrent")

    @contextlib.contextmanager
    def activated(self):
        """This device's context current inside the block, the caller's restored after: kaiodsl's work on
        one GPU never changes the thread's current device (torch.cuda.current_device()) under it."""
        d = drv()
        check(d.cuCtxPushCurrent(self.context), "cuCtxPushCurrent")
        try:
            yield
        finally:
            d.cuCtxPopCurrent()

    # -- modules ------------------------------------------------------------------------
    def module(self, compiled) -> Module:
        m = self.modules.get(compiled.key)
        if m is None:
            with self.lock:
                m = self.modules.get(compiled.key)
                if m is None:
                    m = self.modules[compiled.key] = load_module(self, compiled)
        return m

    # -- launch limits ------------------------------------------------------------------
    def check_launch(self, m: Module, compiled, grid, block, smem: int) -> None:
        """Raise LaunchError with the limit and the value for any configuration the device refuses."""
        check_launch(m.kernel, self.attrs, grid, block, m.static_shared, smem, compiled.required_block,
                     m.num_regs, m.max_threads)

    def opt_in_shared(self, m: Module, smem: int) -> None:
        """cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES) when static + dynamic passes 48 KB."""
        if smem <= m.dyn_shared_optin or m.static_shared + smem <= DEFAULT_SHARED_LIMIT:
            return
        d = drv()
        attr = d.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        check(d.cuFuncSetAttribute(m.function, attr, smem), "cuFuncSetAttribute(MAX_DYNAMIC_SHARED)",
              m.kernel)
        m.dyn_shared_optin = smem


_devices: dict = {}
_devices_lock = threading.Lock()


def device(ordinal: int = 0) -> Device:
    """The Device for an ordinal: primary context retained and made current on first use."""
    dev = _devices.get(ordinal)
    if dev is not None:
        return dev
    with _devices_lock:
        if ordinal in _devices:
            return _devices[ordinal]
        count = init()
        if not 0 <= ordinal < count:
            raise CudaError(f"CUDA device {ordinal} does not exist ({count} device(s) present)")
        d = drv()
        handle = check(d.cuDeviceGet(ordinal), "cuDeviceGet")
        ctx = check(d.cuDevicePrimaryCtxRetain(handle), "cuDevicePrimaryCtxRetain")
        if current_ordinal() is None:  # a context already current (torch's device) stays current
            check(d.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
        attrs = {ours: check(d.cuDeviceGetAttribute(getattr(d.CUdevice_attribute, theirs), handle),
                             "cuDeviceGetAttribute")
                 for ours, theirs in _ATTRS.items()}
        arch = f"sm_{attrs['cc_major']}{attrs['cc_minor']}"
        if attrs["cc_major"] >= 9:  # Hopper: the 'a' target enables wgmma / setmaxnreg
            arch += "a"
        raw = check(d.cuDeviceGetName(256, handle), "cuDeviceGetName")
        name = bytes(raw).split(b"\0")[0].decode("ascii", "replace").strip()
        dev = _devices[ordinal] = Device(ordinal, handle, ctx, attrs, arch, name)
        return dev


def current_ordinal() -> int | None:
    """The device of the calling thread's current CUDA context (torch.cuda.set_device, a device guard,
    or ours), or None when none is current."""
    d = drv()
    ctx = check(d.cuCtxGetCurrent(), "cuCtxGetCurrent")
    if ctx is None or not int(ctx):
        return None
    return int(check(d.cuCtxGetDevice(), "cuCtxGetDevice"))


def load_module(dev: Device, compiled) -> Module:
    """cuModuleLoadDataEx on the PTX (in the device's context) with JIT logs captured; CudaError
    carries the error log."""
    with dev.activated():
        return _load_module(dev, compiled)


def _load_module(dev: Device, compiled) -> Module:
    d = drv()
    size = 1 << 16
    info, errlog = bytearray(size), bytearray(size)
    J = d.CUjit_option
    opts = [J.CU_JIT_INFO_LOG_BUFFER, J.CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES,
            J.CU_JIT_ERROR_LOG_BUFFER, J.CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, J.CU_JIT_LOG_VERBOSE]
    image = ctypes.create_string_buffer(compiled.ptx.encode())  # NUL-terminated, stays alive
    try:
        err, module = d.cuModuleLoadDataEx(ctypes.addressof(image), len(opts), opts,
                                           [info, size, errlog, size, 1])
    except TypeError:  # bindings that want bytes for char* options (the driver writes into them)
        info, errlog = b"\0" * size, b"\0" * size
        err, module = d.cuModuleLoadDataEx(ctypes.addressof(image), len(opts), opts,
                                           [info, size, errlog, size, 1])
    info_log, error_log = _cstr(info), _cstr(errlog)
    if err != 0:
        log = "JIT error log:\n" + (error_log or "(empty)")
        if info_log:
            log += "\nJIT info log:\n" + info_log
        raise_error(err, "loading PTX (cuModuleLoadDataEx)", compiled.name, log)
    fn = check(d.cuModuleGetFunction(module, compiled.name.encode()), "cuModuleGetFunction",
               compiled.name)
    A = d.CUfunction_attribute
    regs = check(d.cuFuncGetAttribute(A.CU_FUNC_ATTRIBUTE_NUM_REGS, fn), "cuFuncGetAttribute",
                 compiled.name)
    maxt = check(d.cuFuncGetAttribute(A.CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, fn),
                 "cuFuncGetAttribute", compiled.name)
    static = check(d.cuFuncGetAttribute(A.CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, fn),
                   "cuFuncGetAttribute", compiled.name)
    return Module(module, fn, compiled.name, regs, maxt, static, info_log)


def _cstr(buf) -> str:
    end = buf.find(b"\0")
    return bytes(buf[: end if end >= 0 else len(buf)]).decode(errors="replace").strip()


# -- memory --------------------------------------------------------------------------------
def mem_alloc(dev: Device, nbytes: int) -> int:
    with dev.activated():
        return int(check(drv().cuMemAlloc(max(1, nbytes)), f"cuMemAlloc({nbytes} bytes)"))


def mem_free(ptr: int) -> None:
    """Free device memory; used from finalizers, so it never raises (the context may be gone)."""
    try:
        drv().cuMemFree(ptr)
    except Exception:
        pass


def copy_htod(dst: int, src_ptr: int, nbytes: int, stream: int = 0) -> None:
    d = drv()
    if stream:
        check(d.cuMemcpyHtoDAsync(dst, src_ptr, nbytes, stream), "cuMemcpyHtoDAsync")
    else:
        check(d.cuMemcpyHtoD(dst, src_ptr, nbytes), "cuMemcpyHtoD")


def copy_dtoh(dst_ptr: int, src: int, nbytes: int, stream: int = 0) -> None:
    d = drv()
    if stream:
        check(d.cuMemcpyDtoHAsync(dst_ptr, src, nbytes, stream), "cuMemcpyDtoHAsync")
        check(d.cuStreamSynchronize(stream), "cuStreamSynchronize")
    else:
        check(d.cuMemcpyDtoH(dst_ptr, src, nbytes), "cuMemcpyDtoH")


def memset_zero(ptr: int, nbytes: int) -> None:
    check(drv().cuMemsetD8(ptr, 0, nbytes), "cuMemsetD8")


def pointer_device(ptr: int) -> int:
    """The ordinal of the device that owns a device pointer."""
    d = drv()
    return int(check(d.cuPointerGetAttribute(
        d.CUpointer_attribute.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, ptr), "cuPointerGetAttribute"))


def stream_wait_legacy(dev: Device, stream: int) -> None:
    """Make ``stream`` wait for the work queued so far on the legacy default stream (an event)."""
    d = drv()
    with dev.activated():
        flags = d.CUevent_flags.CU_EVENT_DISABLE_TIMING
        ev = check(d.cuEventCreate(flags), "cuEventCreate")
        try:
            check(d.cuEventRecord(ev, d.CUstream(1)), "cuEventRecord")  # 1: CU_STREAM_LEGACY
            check(d.cuStreamWaitEvent(d.CUstream(stream), ev, 0), "cuStreamWaitEvent")
        finally:
            d.cuEventDestroy(ev)  # released once the wait has been satisfied
