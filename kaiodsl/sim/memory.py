"""State spaces with byte addressing: global buffers, per-block shared, per-thread local, params.

All accesses are vectorized: `ti` are batch thread indices of the executing threads,
`addr` their addresses (one per thread). Bounds and alignment are checked here;
the shared-memory race/uninit/cp.async checks live in check.py.
"""

from __future__ import annotations

import numpy as np

from .numeric import UINT

GLOBAL_BASE = 0x1000_0000_0000
GLOBAL_GAP = 1 << 16  # unmapped bytes between buffers, so running off one array is caught
# Generic-address windows for cvta (PTX ISA 6.4 "Generic addressing").
SHARED_WIN = 0x7000_0000_0000
LOCAL_WIN = 0x7800_0000_0000
PARAM_WIN = 0x6800_0000_0000  # cvta.param: kernel parameters (a by-value tensor map's address)
WIN_SIZE = 1 << 40


class GlobalMem:
    """Numpy buffers mapped at distinct 64-bit addresses; writes go to the buffers in place."""

    def __init__(self):
        self.bases: list[int] = []
        self.bytes: list[np.ndarray] = []
        self.names: list[str] = []
        self._next = GLOBAL_BASE
        self._views: dict = {}

    def map(self, arr: np.ndarray, name: str) -> int:
        b8 = arr.reshape(-1).view(np.uint8) if arr.size else np.zeros(0, np.uint8)
        base = self._next
        self.bases.append(base)
        self.bytes.append(b8)
        self.names.append(name)
        self._next = base + ((b8.size + 255) // 256) * 256 + GLOBAL_GAP
        self._base_arr = np.array(self.bases, dtype=np.uint64)
        self._end_arr = self._base_arr + np.array([b.size for b in self.bytes], dtype=np.uint64)
        return base

    def view(self, k: int, size: int) -> np.ndarray | None:
        key = (k, size)
        v = self._views.get(key)
        if v is None:
            b8 = self.bytes[k]
            if b8.size % size:
                return None
            v = self._views[key] = b8.view(UINT[size * 8])
        return v

    def locate(self, addr: np.ndarray, size: int):
        """Buffer index per address, or -1 where [addr, addr+size) is not inside one buffer."""
        if not self.bases:
            return np.full(addr.shape, -1)
        a = addr.astype(np.uint64)
        k = np.searchsorted(self._base_arr, a, side="right") - 1
        kk = np.maximum(k, 0)
        ok = (k >= 0) & (a + np.uint64(size) <= self._end_arr[kk])
        return np.where(ok, k, -1)


def gather(b8: np.ndarray, view: np.ndarray | None, off: np.ndarray, size: int) -> np.ndarray:
    if view is not None:
        return view[off // size]
    idx = off[:, None] + np.arange(size)
    return b8[idx].copy().view(UINT[size * 8]).reshape(-1)


def scatter(b8: np.ndarray, view: np.ndarray | None, off: np.ndarray, size: int, vals) -> None:
    vals = np.asarray(vals).astype(UINT[size * 8], copy=False)
    if view is not None:
        view[off // size] = vals
        return
    idx = off[:, None] + np.arange(size)
    b8[idx] = np.broadcast_to(vals, off.shape).reshape(-1, 1).view(np.uint8).reshape(idx.shape)


class FlatSpace:
    """Shared (one segment per block) or local (one per thread) memory as one flat byte array."""

    def __init__(self, nseg: int, seg_bytes: int, name: str):
        self.seg = seg_bytes
        self.pad = max(16, (seg_bytes + 15) // 16 * 16)
        self.b8 = np.zeros(nseg * self.pad, dtype=np.uint8)
        self.name = name
        self._views = {s: self.b8.view(UINT[s * 8]) for s in (1, 2, 4, 8)}

    def flat(self, seg: np.ndarray, addr: np.ndarray) -> np.ndarray:
        return seg.astype(np.int64) * self.pad + addr.astype(np.int64)

    def read(self, flat: np.ndarray, size: int) -> np.ndarray:
        return self._views[size][flat // size]

    def write(self, flat: np.ndarray, size: int, vals) -> None:
        self._views[size][flat // size] = np.asarray(vals).astype(UINT[size * 8], copy=False)
