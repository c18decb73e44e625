"""A fake H200 for timing kaiodsl's host path on a machine without a GPU (host_overhead.py --fake).

Everything between an op call and cuLaunchKernel runs as it does on the GPU: the op's checks and
config choice, TensorMap construction and encoding (the simulator's 128 bytes stand in for the
driver's opaque ones), argument packing in both launch tiers. Only the driver is fake: kernels are
compiled (PTX) but not loaded, and cuLaunchKernel returns success (the native tier calls a C
callback into the same fake). CPU torch tensors stand in for CUDA tensors: ``install`` makes
``Tensor.is_cuda`` true and ``get_device()`` 0, and PyTorch's current stream the null stream. A
process that calls ``install`` computes nothing: use it for timing only.
"""

from __future__ import annotations

import ctypes

ATTRS = {"max_threads_per_block": 1024, "max_block_x": 1024, "max_block_y": 1024, "max_block_z": 64,
         "max_grid_x": 2**31 - 1, "max_grid_y": 65535, "max_grid_z": 65535,
         "max_shared_per_block": 49152, "max_shared_optin": 232448, "max_regs_per_block": 65536,
         "sm_count": 132, "cc_major": 9, "cc_minor": 0}
FN_HANDLE = 0xF00D
_PROTO = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, *[ctypes.c_uint] * 7, ctypes.c_void_p,
                          ctypes.c_void_p, ctypes.c_void_p)


class FakeDriver:
    """The few cuda.bindings calls a cached launch makes, all succeeding."""

    CUstream = int

    class CUfunction_attribute:
        CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8

    def __init__(self):
        self.launches = 0
        self.native_entry = _PROTO(self._native_launch)

    def cuLaunchKernel(self, *args):
        self.launches += 1
        return (0,)

    def _native_launch(self, *args):
        self.launches += 1
        return 0

    def cuFuncSetAttribute(self, fn, attr, value):
        return (0,)

    def cuCtxPushCurrent(self, ctx):
        return (0,)

    def cuCtxPopCurrent(self):
        return (0, None)

    def cuCtxGetCurrent(self):
        return (0, None)


def install(native_tier: bool = True):
    """Make the 'cuda' backend a fake H200 (sm_90a, 132 SMs, "NVIDIA H200": its tuning table applies)
    and CPU torch tensors pass as its device tensors. Returns the fake driver."""
    import torch

    from kaiodsl.runtime import cuda_backend as CB
    from kaiodsl.runtime import driver as D
    from kaiodsl.runtime import set_backend
    from kaiodsl.runtime.tensormap import TensorMapSpec

    fake = FakeDriver()
    address = ctypes.cast(fake.native_entry, ctypes.c_void_p).value if native_tier else None
    D._drv = fake
    D.launch_kernel_address = lambda: address
    D.Device.module = _fake_module
    TensorMapSpec.encode = lambda self: self.validate().sim_bytes()
    torch.Tensor.is_cuda = property(lambda self: True)
    torch.Tensor.get_device = lambda self: 0
    torch._C._cuda_getCurrentRawStream = lambda device: 0
    dev = D.Device(0, None, None, dict(ATTRS), "sm_90a", "NVIDIA H200")
    backend = object.__new__(CB.CudaBackend)
    backend.device, backend.arch, backend.single_gpu, backend._prepared = dev, "sm_90a", True, {}
    set_backend(backend)
    return fake


def _fake_module(self, compiled):
    from kaiodsl.runtime import driver as D

    m = self.modules.get(compiled.key)
    if m is None:
        m = self.modules[compiled.key] = D.Module(None, FN_HANDLE, compiled.name, num_regs=64, max_threads=1024,
                                                  static_shared=0)
    return m
