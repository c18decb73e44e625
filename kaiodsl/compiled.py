"""What a specialized kernel is after compilation: the contract between compiler, runtime and simulator."""

from __future__ import annotations

from dataclasses import dataclass, field

from .types import SCALARS, PtrType, ScalarType, Type


@dataclass(frozen=True)
class ParamInfo:
    """One runtime parameter of a kernel, in PTX parameter order (Const parameters are not here).

    ``type`` is a ScalarType for scalars and a PtrType for pointers; ``writable``
    says whether the kernel may store or atomically update through a pointer
    (numpy arguments are copied back only for writable pointers).
    """

    name: str
    type: Type
    writable: bool = False

    @property
    def is_pointer(self) -> bool:
        return isinstance(self.type, PtrType)

    @property
    def dtype(self) -> ScalarType:
        """The scalar type of the value, or of the pointee for pointers."""
        return self.type.elem if isinstance(self.type, PtrType) else self.type

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype.name, "pointer": self.is_pointer,
                "space": self.type.space if self.is_pointer else None, "writable": self.writable}

    @staticmethod
    def from_json(d: dict) -> "ParamInfo":
        elem = SCALARS[d["dtype"]]
        t = PtrType(elem, d["space"]) if d["pointer"] else elem
        return ParamInfo(d["name"], t, d["writable"])


@dataclass
class CompiledKernel:
    """A kernel specialized for its Const values and a target arch.

    ``ptx`` is the one text that the GPU JIT, nvJitLink and the simulator all consume.
    ``key`` is the specialization's cache key (hash of source, callees, signature,
    consts, target, options and kaiodsl version; never of the output).
    Resource figures (registers, spills, ...) come from nvJitLink on first access.
    """

    name: str
    ptx: str
    arch: str
    params: tuple
    key: str
    static_shared_bytes: int = 0
    uses_dynamic_shared: bool = False
    required_block: tuple | None = None
    ir_text: str = ""
    source_file: str = ""
    _link: object = field(default=None, repr=False)

    # -- resources: nvJitLink on the CPU -------------------------------------------------
    def _linked(self):
        if self._link is None:
            from .toolchain.nvjitlink import link_ptx

            self._link = link_ptx(self.ptx, self.arch, self.name)
        return self._link

    @property
    def cubin(self) -> bytes:
        return self._linked().cubin

    @property
    def registers(self) -> int:
        return self._linked().registers

    @property
    def spills(self) -> int:
        """Spill stores + spill loads, in bytes."""
        return self._linked().spill_stores + self._linked().spill_loads

    @property
    def shared_bytes(self) -> int:
        return self._linked().shared_bytes

    @property
    def local_bytes(self) -> int:
        return self._linked().local_bytes

    @property
    def info_log(self) -> str:
        return self._linked().info_log

    def stats(self) -> dict:
        return {"kernel": self.name, "arch": self.arch, "registers": self.registers,
                "spills": self.spills, "shared_bytes": self.shared_bytes,
                "local_bytes": self.local_bytes}

    # -- disk-cache payload --------------------------------------------------------------
    def to_payload(self) -> dict:
        return {"name": self.name, "ptx": self.ptx, "arch": self.arch, "key": self.key,
                "params": [p.to_json() for p in self.params],
                "static_shared_bytes": self.static_shared_bytes,
                "uses_dynamic_shared": self.uses_dynamic_shared,
                "required_block": list(self.required_block) if self.required_block else None,
                "ir_text": self.ir_text, "source_file": self.source_file}

    @staticmethod
    def from_payload(d: dict) -> "CompiledKernel":
        return CompiledKernel(
            name=d["name"], ptx=d["ptx"], arch=d["arch"], key=d["key"],
            params=tuple(ParamInfo.from_json(p) for p in d["params"]),
            static_shared_bytes=d["static_shared_bytes"], uses_dynamic_shared=d["uses_dynamic_shared"],
            required_block=tuple(d["required_block"]) if d["required_block"] else None,
            ir_text=d.get("ir_text", ""), source_file=d.get("source_file", ""))
