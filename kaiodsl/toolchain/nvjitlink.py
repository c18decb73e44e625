"""PTX -> cubin on the CPU through nvJitLink (the nvidia-nvjitlink wheel), with resource usage.

Any PTX that nvJitLink rejects is a kaiodsl codegen bug: the LinkError shows the
log and the PTX lines it points at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import LinkError


@dataclass(frozen=True)
class LinkResult:
    cubin: bytes
    registers: int
    spill_stores: int
    spill_loads: int
    stack_bytes: int
    shared_bytes: int
    local_bytes: int
    info_log: str


def _api():
    try:
        from cuda.bindings import nvjitlink
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise LinkError(f"nvJitLink is not available ({e}); install the nvidia-nvjitlink wheel") from None
    _preload()
    return nvjitlink


_PRELOADED: list = []


def _preload() -> None:
    """Load libnvJitLink once where cuda-python's own search misses it: that search looks in
    ``site.getsitepackages()``, which leaves out wheels installed with ``pip --target`` and reached
    through PYTHONPATH (and everything under ``python -S``). The nvidia-nvjitlink wheel's library is
    then looked for under each ``sys.path`` entry; once loaded, cuda-python finds it by its soname."""
    if _PRELOADED:
        return
    _PRELOADED.append(None)
    try:
        from cuda.pathfinder import load_nvidia_dynamic_lib
        load_nvidia_dynamic_lib("nvJitLink")
        return
    except ImportError:      # an older cuda-python without pathfinder: it searches sys.path itself
        return
    except Exception:        # noqa: BLE001 - not found by its search: try sys.path below
        pass
    import ctypes
    import glob
    import os
    import sys
    for entry in sys.path:
        for pattern in ("nvidia/*/lib/libnvJitLink.so*", "nvidia/nvjitlink/lib/libnvJitLink.so*"):
            for lib in sorted(glob.glob(os.path.join(entry or ".", pattern)), reverse=True):
                try:
                    _PRELOADED.append(ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL))
                    return
                except OSError:
                    continue


def _log(nv, h, kind: str) -> str:
    size = getattr(nv, f"get_{kind}_log_size")(h)
    buf = bytearray(size)
    if size:
        getattr(nv, f"get_{kind}_log")(h, buf)
    return buf.rstrip(b"\0").decode(errors="replace")


def link_ptx(ptx: str, arch: str, name: str = "kernel") -> LinkResult:
    nv = _api()
    data = ptx.encode()
    h = nv.create(2, [f"-arch={arch}", "-verbose"])
    try:
        try:
            nv.add_data(h, nv.InputType.PTX, data, len(data), name)
            nv.complete(h)
        except Exception as e:
            raise LinkError(_explain(ptx, _log(nv, h, "error") or str(e), arch)) from None
        size = nv.get_linked_cubin_size(h)
        cubin = bytearray(size)
        nv.get_linked_cubin(h, cubin)
        info = _log(nv, h, "info")
    finally:
        nv.destroy(h)
    return _parse(bytes(cubin), info)


def _num(pattern: str, text: str) -> int:
    m = re.search(pattern, text)
    return int(m.group(1)) if m else 0


def _parse(cubin: bytes, info: str) -> LinkResult:
    return LinkResult(
        cubin=cubin,
        registers=_num(r"[Uu]sed (\d+) registers", info),
        spill_stores=_num(r"(\d+) bytes spill stores", info),
        spill_loads=_num(r"(\d+) bytes spill loads", info),
        stack_bytes=_num(r"(\d+) bytes stack frame", info),
        shared_bytes=_num(r"(\d+) bytes smem", info),
        local_bytes=_num(r"(\d+) bytes lmem", info),
        info_log=info,
    )


def _explain(ptx: str, log: str, arch: str) -> str:
    lines = ptx.splitlines()
    shown = []
    for m in re.finditer(r"line (\d+)", log):
        k = int(m.group(1))
        lo, hi = max(1, k - 2), min(len(lines), k + 2)
        shown.append("\n".join(f"{'>' if i == k else ' '}{i:5d}  {lines[i - 1]}" for i in range(lo, hi + 1)))
    where = "\n...\n".join(dict.fromkeys(shown)) or "(the log names no line)"
    return (f"nvJitLink rejected the PTX kaiodsl generated for {arch} -- this is a kaiodsl codegen bug, "
            f"please report it.\n--- nvJitLink log ---\n{log.strip()}\n--- PTX ---\n{where}")
