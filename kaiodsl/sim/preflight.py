"""What the GPU refuses before a kernel runs is refused here too: PTX that ptxas rejects for the
simulated arch (nvJitLink, whenever it is importable) and launches past that arch's limits
(kaiodsl.limits: the same check and messages as the CUDA backend).
"""

from __future__ import annotations

import hashlib
import math

from ..errors import LinkError
from ..limits import arch_limits, check_launch, max_threads_for
from .state import shared_layout

_LINKED: dict = {}  # (sha256 of the PTX, arch) -> LinkResult: each text is assembled once per process
_MAX_LINKED = 1024
_AVAILABLE: list = []


def nvjitlink_available() -> bool:
    if not _AVAILABLE:
        try:
            from cuda.bindings import nvjitlink  # noqa: F401
            _AVAILABLE.append(True)
        except ImportError:
            _AVAILABLE.append(False)
    return _AVAILABLE[0]


def assemble(ptx: str, arch: str, name: str, generated: bool):
    """nvJitLink's LinkResult for the PTX (cached by its hash), or None without nvJitLink.

    generated: the PTX is kaiodsl's output (a rejection is a codegen bug, said so); otherwise
    the user's PTX, and the error says that a GPU would not load it."""
    if not nvjitlink_available():
        return None
    key = (hashlib.sha256(ptx.encode()).hexdigest(), arch)
    hit = _LINKED.get(key)
    if hit is None:
        from ..toolchain.nvjitlink import link_ptx
        try:
            hit = link_ptx(ptx, arch, name)
        except LinkError as e:
            if generated:
                raise
            text = str(e)
            log = text[text.find("--- nvJitLink log ---"):] if "--- nvJitLink log ---" in text else text
            raise LinkError(f"{name}: nvJitLink (ptxas) rejects this PTX for {arch}, so a GPU would "
                            f"not load it:\n{log}") from None
        if len(_LINKED) >= _MAX_LINKED:
            _LINKED.clear()
        _LINKED[key] = hit
    return hit


def check(kernel, arch: str, grid, block, smem: int, link) -> None:
    """LaunchError for a launch the GPU of this arch refuses (registers only when assembled)."""
    attrs = arch_limits(arch)
    maxntid = kernel.perf.get("maxntid")
    maxntid = math.prod(maxntid) if maxntid else None
    regs = link.registers if link is not None else None
    max_threads = max_threads_for(regs, attrs, maxntid) if regs is not None else maxntid
    req = kernel.perf.get("reqntid")
    req = tuple(req) + (1,) * (3 - len(req)) if req else None
    _, static = shared_layout(kernel)
    check_launch(kernel.name, attrs, grid, block, static, smem, req, regs, max_threads)
