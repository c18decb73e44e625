"""``PtxKernel``: a kernel object over hand-written PTX (like CuPy's RawKernel).

It implements the same interface as ``@kaiodsl.kernel`` objects (``__name__``,
``arg_names``, ``const_names``, ``specialize``, ``kernel[grid, block](...)``),
so hand-written PTX runs through the one launch path on either backend. The
runtime's tests and the launch benchmark use it.
"""

from __future__ import annotations

import hashlib
import re

from ..compiled import CompiledKernel, ParamInfo
from ..errors import ArgumentError
from ..types import SCALARS, Ptr, tensormap
from .launch import Launcher


def param(spec: str) -> ParamInfo:
    """'x: Ptr[f32]', 'out: Ptr[f32] writable', 'n: i32' or 'tm: TensorMap' -> ParamInfo."""
    m = re.fullmatch(r"\s*(\w+)\s*:\s*(Ptr\[(\w+)\]|\w+)\s*(writable)?\s*", spec)
    if not m:
        raise ArgumentError(f"cannot read parameter spec {spec!r} (want 'name: Ptr[f32] [writable]')")
    name, t, elem, w = m.groups()
    typ = Ptr[SCALARS[elem]] if elem else tensormap if t == "TensorMap" else SCALARS[t]
    return ParamInfo(name, typ, bool(w))


class PtxKernel:
    """A PTX ``.entry`` with its parameter list; ``required_block`` is read from ``.reqntid``."""

    def __init__(self, ptx: str, params, name: str | None = None, *, uses_dynamic_shared=None):
        entries = re.findall(r"\.entry\s+(\w+)", ptx)
        if name is None:
            if len(entries) != 1:
                raise ArgumentError(f"PTX has entries {entries}: pass name=")
            name = entries[0]
        self.__name__ = name
        self.ptx = ptx
        self.params = tuple(param(p) if isinstance(p, str) else p for p in params)
        self.arg_names = tuple(p.name for p in self.params)
        self.const_names = frozenset()
        self.specialize_calls = 0  # for tests: the launch cache must make this stay at 1
        m = re.search(r"\.reqntid\s+(\d+)(?:\s*,\s*(\d+))?(?:\s*,\s*(\d+))?", ptx)
        self.required_block = tuple(int(x or 1) for x in m.groups()) if m else None
        self.uses_dynamic_shared = ("extern .shared" in ptx) if uses_dynamic_shared is None \
            else uses_dynamic_shared
        self.key = hashlib.sha256((ptx + repr([p.to_json() for p in self.params])).encode()).hexdigest()

    def specialize(self, consts: dict, arch: str) -> CompiledKernel:
        self.specialize_calls += 1
        return CompiledKernel(name=self.__name__, ptx=self.ptx, arch=arch, params=self.params,
                              key=f"ptx-{self.key[:32]}-{arch}", required_block=self.required_block,
                              uses_dynamic_shared=self.uses_dynamic_shared)

    def __getitem__(self, config) -> Launcher:
        try:
            return self._launchers[config]  # Launcher's own table, keyed by (grid, block) as written
        except (AttributeError, KeyError, TypeError):
            grid, block = config
            return Launcher(self, grid, block)

    def __repr__(self) -> str:
        return f"PtxKernel({self.__name__}, params={[str(p.type) for p in self.params]})"
