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
    ``cubin`` and the resource figures (registers, spills, ...) come from nvJitLink on
    first access, once: the disk cache stores them with the PTX (``on_link`` writes them
    back), so a warm process never assembles again.
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
    link_result: object = field(default=None, repr=False)   # toolchain.nvjitlink.LinkResult
    on_link: object = field(default=None, repr=False, compare=False)  # called once after a link

    # -- resources: nvJitLink on the CPU -------------------------------------------------
    def _linked(self):
        if self.link_result is None:
            from .toolchain.nvjitlink import link_ptx

            self.link_result = link_ptx(self.ptx, self.arch, self.name)
            if self.on_link is not None:
                self.on_link(self)
        return self.link_result

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
        """JSON-able fields; the cubin travels beside it (DiskCache.store(..., cubin=))."""
        link = None
        if self.link_result is not None:
            link = {k: getattr(self.link_result, k) for k in _LINK_FIELDS}
        return {"name": self.name, "ptx": self.ptx, "arch": self.arch, "key": self.key,
                "params": [p.to_json() for p in self.params],
                "static_shared_bytes": self.static_shared_bytes,
                "uses_dynamic_shared": self.uses_dynamic_shared,
                "required_block": list(self.required_block) if self.required_block else None,
                "ir_text": self.ir_text, "source_file": self.source_file, "link": link}

    @staticmethod
    def from_payload(d: dict) -> "CompiledKernel":
        """The kernel a payload describes; ValueError (or KeyError/TypeError) when it is malformed,
        so that the cache evicts it instead of handing on a broken kernel."""
        _check(d, {"name": str, "ptx": str, "arch": str, "key": str, "params": list,
                   "static_shared_bytes": int, "uses_dynamic_shared": bool})
        rb = d.get("required_block")
        if rb is not None and not (isinstance(rb, list) and len(rb) == 3 and all(_is_int(x) and x > 0 for x in rb)):
            raise ValueError(f"required_block {rb!r}")
        if not d["ptx"].strip() or ".entry" not in d["ptx"]:
            raise ValueError("no PTX entry")
        params = []
        for p in d["params"]:
            _check(p, {"name": str, "dtype": str, "pointer": bool, "writable": bool})
            if p["pointer"] and p.get("space") != "global":  # kernels take global pointers only
                raise ValueError(f"pointer parameter {p['name']!r} in space {p.get('space')!r}")
            params.append(ParamInfo.from_json(p))
        link = d.get("link")
        cubin = d.get("cubin")
        result = None
        if link is not None:
            from .toolchain.nvjitlink import LinkResult

            _check(link, {k: (str if k == "info_log" else int) for k in _LINK_FIELDS})
            if not isinstance(cubin, bytes) or not cubin:
                raise ValueError("resource figures without a cubin")
            result = LinkResult(cubin=cubin, **{k: link[k] for k in _LINK_FIELDS})
        return CompiledKernel(
            name=d["name"], ptx=d["ptx"], arch=d["arch"], key=d["key"], params=tuple(params),
            static_shared_bytes=d["static_shared_bytes"], uses_dynamic_shared=d["uses_dynamic_shared"],
            required_block=tuple(rb) if rb else None, ir_text=str(d.get("ir_text", "")),
            source_file=str(d.get("source_file", "")), link_result=result)


_LINK_FIELDS = ("registers", "spill_stores", "spill_loads", "stack_bytes", "shared_bytes", "local_bytes", "info_log")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check(d, fields: dict) -> None:
    if not isinstance(d, dict):
        raise TypeError(f"expected an object, got {type(d).__name__}")
    for k, t in fields.items():
        v = d[k]
        if not (_is_int(v) if t is int else isinstance(v, t)):
            raise TypeError(f"{k}: expected {t.__name__}, got {type(v).__name__}")
