"""CUDA streams: our ``Stream``, and the raw handle of any stream a caller passes.

``launch(..., stream=s)`` accepts None (the legacy default stream, or PyTorch's
current stream when torch tensors are among the arguments), a ``kaiodsl.Stream``,
an int handle, a ``cuda.bindings`` CUstream, or any object with the
``__cuda_stream__`` protocol, a ``cuda_stream`` attribute (torch.cuda.Stream)
or a ``ptr`` attribute (cupy.cuda.Stream).
"""

from __future__ import annotations

import weakref

from ..errors import ArgumentError


class Stream:
    """A CUDA stream of our own (created on the current backend's device; a stand-in under the simulator).

    Created with the default flag, so the legacy default stream still orders
    against it (plain copies and ``DeviceArray.numpy()`` see its results).
    """

    def __init__(self):
        from . import backend as _backend

        self._device = getattr(_backend.current(), "device", None)
        self.handle = 0
        if self._device is not None:
            from . import driver

            d = driver.drv()
            with self._device.activated():
                s = driver.check(d.cuStreamCreate(0), "cuStreamCreate")  # 0: CU_STREAM_DEFAULT (blocking)
            self._cu = s
            self.handle = int(s)
            weakref.finalize(self, _destroy, s)

    @property
    def cuda_stream(self) -> int:
        return self.handle

    def __cuda_stream__(self):
        return (0, self.handle)  # (protocol version, handle): the cuda.core stream protocol

    def synchronize(self) -> None:
        if self._device is not None:
            from . import driver

            driver.check(driver.drv().cuStreamSynchronize(self._cu), "cuStreamSynchronize")

    def __int__(self) -> int:
        return self.handle

    def __repr__(self) -> str:
        return f"kaiodsl.Stream(handle=0x{self.handle:x})"


def _destroy(s) -> None:
    try:
        from . import driver

        driver.drv().cuStreamDestroy(s)
    except Exception:  # interpreter shutdown: the context may be gone
        pass


def stream_handle(stream) -> int:
    """The raw CUstream handle (an int) of anything the launch API accepts as a stream."""
    if stream is None:
        return 0
    if type(stream) is int:
        return stream
    if isinstance(stream, Stream):
        return stream.handle
    proto = getattr(stream, "__cuda_stream__", None)
    if proto is not None:
        v = proto() if callable(proto) else proto
        return int(v[1])
    for attr in ("cuda_stream", "ptr", "handle"):
        v = getattr(stream, attr, None)
        if isinstance(v, int):
            return v
    try:
        return int(stream)  # cuda.bindings CUstream, numpy ints
    except (TypeError, ValueError):
        raise ArgumentError(f"stream= takes a kaiodsl.Stream, a torch/cupy stream, a CUstream or an "
                            f"int handle; got {type(stream).__name__}") from None
