"""One error hierarchy for everything kaiodsl raises at its users."""

from __future__ import annotations


class KaioError(Exception):
    """Base class of every error kaiodsl raises on purpose."""


class CompileError(KaioError):
    """A mistake in kernel source, reported at the user's file:line:col with a caret.

    ``loc`` is a ``SourceLoc`` (or None when no source position applies).
    """

    def __init__(self, message: str, loc=None):
        self.message = message
        self.loc = loc
        super().__init__(self._render())

    def _render(self) -> str:
        if self.loc is None:
            return self.message
        return f"{self.loc.render()}\n{self.message}"


class ArgumentError(KaioError, TypeError):
    """A launch or op argument has the wrong dtype, shape, layout, device or value.

    Raised before anything is launched or written; the message names the
    argument, its value and what is allowed.
    """


class LaunchError(KaioError):
    """A launch configuration the device cannot run (block size, shared memory, registers)."""


class CudaError(KaioError):
    """A CUDA driver call failed; carries the driver's error name and message."""

    def __init__(self, message: str, *, code=None, name: str | None = None, kernel: str | None = None):
        self.code = code
        self.name = name
        self.kernel = kernel
        super().__init__(message)


class NoDeviceError(KaioError):
    """The operation measures or runs on a CUDA GPU and none was found (the CLI exits with 2)."""

    exit_code = 2


class LinkError(KaioError):
    """nvJitLink rejected PTX that kaiodsl generated (a codegen bug): shows the log and the PTX lines."""


class SimError(KaioError):
    """The simulator found a bug in the kernel: out-of-bounds access, race, divergent barrier, ...

    Carries the PTX line, the Python source line it came from, the block, thread and address.
    """

    def __init__(self, message: str, *, ptx_line=None, source=None, block=None, thread=None, address=None):
        self.ptx_line = ptx_line
        self.source = source
        self.block = block
        self.thread = thread
        self.address = address
        super().__init__(message)


class KaioWarning(UserWarning):
    """Base class of every warning kaiodsl issues; shown at the user's line."""


class IndexOverflowWarning(KaioWarning):
    """A 32-bit product that can wrap feeds a global address (docs/language.md, '64-bit indexing').

    Silence one kernel's by computing the index in 64 bits; all of them with
    ``warnings.filterwarnings("ignore", category=kaiodsl.IndexOverflowWarning)``.
    """
