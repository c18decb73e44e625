"""The one compile route: kernel + Const values + target + options -> CompiledKernel.

``compile()`` is what ``.ptx()``, ``.ir()``, ``.compile()``, launches and the CLI all call.
It looks in the memory cache (one explicit object, ``MEMORY``), then the disk cache, and
only then runs the pipeline: frontend (``build_ir``) -> passes -> codegen. The frontend
receives everything it may depend on in one frozen ``CompileContext``; inlined
``@kaiodsl.func`` bodies get the same context.

Debugging: ``KAIODSL_DUMP=ir,passes,ptx`` (any subset, or ``all``) prints the IR after
the frontend, the IR after each pass and the PTX to stderr, or writes one file per stage
into ``KAIODSL_DUMP_DIR``; a dumped compile skips the cache lookups so the dump always
appears. The CLI's ``--dump`` does the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import __version__
from .compiled import CompiledKernel, ParamInfo
from .errors import CompileError, KaioError
from .fingerprint import Dependencies, compiler_fingerprint
from .ir.node import Function
from .types import ConstType, TensorMapType

DEFAULT_ARCH = "sm_80"
DUMP_STAGES = ("ir", "passes", "ptx")


@dataclass(frozen=True)
class CompileOptions:
    """How to compile. ``line_info`` changes the PTX (it is in the cache key); ``dump`` (a subset
    of DUMP_STAGES) and ``dump_dir`` only show what happens."""

    line_info: bool = False
    dump: frozenset = frozenset()
    dump_dir: str | None = None

    def key(self) -> dict:
        return {"line_info": self.line_info}


@dataclass(frozen=True)
class CompileContext:
    """Everything the frontend may read while it builds one specialization; passed down whole,
    into every inlined @kaiodsl.func too."""

    kernel: str                    # the kernel's Python name, for messages
    arch: str                      # "sm_80", "sm_90a", ...
    block: tuple | None            # the (x, y, z) block the kernel is compiled for, or None
    consts: tuple = ()             # (name, value) of each Const parameter
    options: CompileOptions = field(default_factory=CompileOptions)

    def const(self, name: str):
        return dict(self.consts)[name]


def parse_dump(spec: str | None) -> frozenset:
    """``"ir,passes"`` -> frozenset({"ir", "passes"}); ``all`` for every stage."""
    items = {s.strip().lower() for s in (spec or "").replace(" ", ",").split(",") if s.strip()}
    if items & {"all", "1"}:
        return frozenset(DUMP_STAGES)
    bad = items - set(DUMP_STAGES)
    if bad:
        raise KaioError(f"KAIODSL_DUMP / --dump: unknown stage(s) {', '.join(sorted(bad))}; "
                        f"use any of {', '.join(DUMP_STAGES)} or all")
    return frozenset(items)


def options_for(kernel, options: CompileOptions | None = None) -> CompileOptions:
    """The kernel's own options (from its decorator), with the dump the environment asks for."""
    if options is not None:
        return options
    base = kernel.options
    env = os.environ.get("KAIODSL_DUMP")
    if env:
        base = replace(base, dump=parse_dump(env), dump_dir=os.environ.get("KAIODSL_DUMP_DIR") or None)
    return base


def default_arch() -> str:
    """The current backend's target: KAIODSL_ARCH, else the device's arch, else sm_80. Read on every
    call (tests and users change the variable and the backend at any time): one environment read
    and, once a backend is chosen, its ``arch``."""
    env = os.environ.get("KAIODSL_ARCH")
    if env:
        return env
    backend = _runtime_backend()
    if backend is None:
        return DEFAULT_ARCH
    chosen = backend.STATE.backend
    if chosen is not None:
        return chosen.arch if chosen.name == "cuda" else DEFAULT_ARCH
    if os.environ.get("KAIODSL_BACKEND", "auto") in ("auto", "cuda") and backend.gpu_available():
        return backend.current().arch
    return DEFAULT_ARCH


_BACKEND_MODULE = []


def _runtime_backend():
    """kaiodsl.runtime.backend, imported on first use (None where the runtime cannot be imported)."""
    if not _BACKEND_MODULE:
        try:
            from .runtime import backend
        except ImportError:
            return None
        _BACKEND_MODULE.append(backend)
    return _BACKEND_MODULE[0]


# -- the caches -------------------------------------------------------------------------
class MemoryCache:
    """Specializations compiled in this process: kernel -> {(consts, arch, options): CompiledKernel}.
    Held weakly, so a kernel made by a factory and dropped takes its entries with it."""

    def __init__(self):
        self._by_kernel = weakref.WeakKeyDictionary()
        self.lock = threading.RLock()

    def get(self, kernel, key):
        table = self._by_kernel.get(kernel)
        return None if table is None else table.get(key)

    def put(self, kernel, key, compiled) -> None:
        with self.lock:
            self._by_kernel.setdefault(kernel, {})[key] = compiled

    def clear(self) -> None:
        with self.lock:
            self._by_kernel.clear()


MEMORY = MemoryCache()


def _disk_cache():
    try:
        from .runtime.cache import default_cache
    except ImportError:
        return None
    return default_cache()


def const_repr(consts: dict) -> tuple:
    return tuple(sorted((k, f"{type(v).__name__}:{v!r}") for k, v in consts.items()))


def cache_key(kernel, consts: dict, arch: str, options: CompileOptions) -> str | None:
    """Hash of source + callees + everything they read + signature + Const values + target +
    options + kaiodsl version + the compiler's own fingerprint; None when some dependency has
    no stable fingerprint (then the disk cache is not used)."""
    d = Dependencies()
    d.compilable(kernel)
    for k in sorted(consts):  # Const values and block_size (maybe a callable) by content, not repr
        d.add(f"const {k}", consts[k])
    d.add("block_size", kernel.block_size)
    deps = d.digest()
    if deps is None:
        return None
    payload = json.dumps({"deps": deps, "name": kernel.entry_name, "sig": [(n, str(a)) for n, a, _ in kernel.params],
                          "arch": arch, "opts": options.key(),
                          "version": __version__, "compiler": compiler_fingerprint()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


# -- the route --------------------------------------------------------------------------
def compile(kernel, consts: dict | None = None, target: str | None = None,
            options: CompileOptions | None = None) -> CompiledKernel:
    """The CompiledKernel of ``kernel`` for these Const values on ``target`` (an arch such as
    "sm_90a"; default: the current backend's). Memory cache, then disk cache, then compile."""
    arch = target or default_arch()
    consts = kernel.check_consts(dict(consts or {}))
    options = options_for(kernel, options)
    mkey = (const_repr(consts), arch, options.line_info)
    if not options.dump:
        hit = MEMORY.get(kernel, mkey)
        if hit is not None:
            return hit
    with MEMORY.lock:
        if not options.dump:
            hit = MEMORY.get(kernel, mkey)
            if hit is not None:
                return hit
        key = cache_key(kernel, consts, arch, options)
        disk = _disk_cache() if key is not None else None
        compiled = None
        if disk is not None and not options.dump:
            compiled = _from_disk(disk, key)
        if compiled is None:
            compiled = _compile(kernel, consts, arch, options, key)
            if disk is not None:
                disk.store(key, compiled.to_payload())
        if disk is not None:
            compiled.on_link = _store_cubin(disk, key)
        MEMORY.put(kernel, mkey, compiled)
        return compiled


def _from_disk(disk, key: str) -> CompiledKernel | None:
    """A disk entry, or None; an entry whose payload is malformed is evicted (a rebuild follows)."""
    payload = disk.load(key)
    if payload is None:
        return None
    try:
        return CompiledKernel.from_payload(payload)
    except (KeyError, TypeError, ValueError, AttributeError, KaioError):
        disk.evict(key)
        return None


def _store_cubin(disk, key: str):
    def store(compiled: CompiledKernel) -> None:
        disk.store(key, compiled.to_payload(), cubin=compiled.link_result.cubin)
    return store


def make_context(kernel, consts: dict, arch: str, options: CompileOptions) -> CompileContext:
    return CompileContext(kernel=kernel.__name__, arch=arch, block=required_block(kernel.block_size, consts),
                          consts=tuple(sorted(consts.items())), options=options)


def _compile(kernel, consts: dict, arch: str, options: CompileOptions, key: str | None) -> CompiledKernel:
    from .codegen.ptx import emit_module
    from .ir.printer import format_function
    from .passes import run_pipeline

    ctx = make_context(kernel, consts, arch, options)
    dump = Dumper(ctx, key or "uncached") if options.dump else None
    fn = build_ir(kernel, ctx)
    if dump:
        dump.stage("ir", "00-ir", format_function(fn))
    after = None
    if dump and "passes" in options.dump:
        step = iter(range(1, 100))
        after = lambda name, f: dump.stage("passes", f"{next(step):02d}-{name}", format_function(f))  # noqa: E731
    run_pipeline(fn, after_pass=after)
    ptx = emit_module(fn, arch, line_info=options.line_info)
    if dump:
        dump.stage("ptx", "ptx", ptx)
    if key is None:  # not disk-cached; the runtime still needs one identity per distinct module
        key = "uncached-" + hashlib.sha256(f"{arch}\n{ptx}".encode()).hexdigest()[:24]
    params = tuple(ParamInfo(p.attrs["name"], p.type, p.attrs.get("writable", False)) for p in fn.params)
    static = sum(d.size for d in fn.shared if d.size is not None)
    return CompiledKernel(name=fn.name, ptx=ptx, arch=arch, params=params, key=key, static_shared_bytes=static,
                          uses_dynamic_shared=any(d.size is None for d in fn.shared),
                          required_block=fn.required_block, ir_text=format_function(fn),
                          source_file=kernel.source.file)


def build_ir(kernel, ctx: CompileContext) -> Function:
    """The frontend alone: the kernel's IR for ``ctx``, before any pass."""
    from .frontend.builder import Builder
    from .frontend.visitor import Visitor

    src = kernel.source
    fn = Function(kernel.entry_name, [], [], source_file=src.file, source_line=src.first_line)
    b = Builder(fn, ctx.arch)
    b.block = b.new_block("entry")
    b.block.name = "entry"
    env = {}
    consts = dict(ctx.consts)
    k = 0
    for name, ann, _ in kernel.params:
        if isinstance(ann, ConstType):
            env[name] = consts[name]
            continue
        p = b.emit("param", ann, (), {"index": k, "name": name}, kernel.param_loc(name))
        if isinstance(ann, TensorMapType):
            fn.features.add("7.7")  # cvta.param (PTX ISA 9.7.9.20) takes the by-value map's address
        fn.params.append(p)
        env[name] = p
        k += 1
    fn.required_block = ctx.block
    v = Visitor(ctx, b, src, env, kernel.globals(), kernel.const_names)
    try:
        v.visit_body(src.tree.body)
    except RecursionError:
        raise CompileError("kernel too deeply nested to compile", src.loc(src.tree)) from None
    if b.block is not None:
        b.terminate("ret")
    return fn


def required_block(bs, consts: dict) -> tuple | None:
    """The decorator's block_size (int, tuple, a Const's name, or a callable of the Consts) -> (x, y, z)."""
    if bs is None:
        return None
    if callable(bs):
        bs = bs(**consts)
    elif isinstance(bs, str):
        bs = consts[bs]
    elif isinstance(bs, tuple):
        bs = tuple(consts[x] if isinstance(x, str) else x for x in bs)
    bs = (bs,) if isinstance(bs, int) else tuple(bs)
    return tuple(bs) + (1,) * (3 - len(bs))


# -- dumps ------------------------------------------------------------------------------
class Dumper:
    """Writes each requested stage to stderr, or to ``<dump_dir>/<kernel>.<key8>/<step>.txt``."""

    def __init__(self, ctx: CompileContext, key: str):
        self.ctx = ctx
        self.stages = ctx.options.dump
        self.dir = None
        if ctx.options.dump_dir:
            self.dir = Path(ctx.options.dump_dir) / f"{ctx.kernel}.{ctx.arch}.{key[:8]}"
            self.dir.mkdir(parents=True, exist_ok=True)

    def stage(self, kind: str, name: str, text: str) -> None:
        if kind not in self.stages:
            return
        if self.dir is not None:
            (self.dir / f"{name}.{'ptx' if kind == 'ptx' else 'txt'}").write_text(text)
            return
        title = f"after pass {name[3:]}" if kind == "passes" else name.split("-")[-1]
        sys.stderr.write(f"// ===== kaiodsl dump: {self.ctx.kernel} ({self.ctx.arch}) {title} =====\n{text}")
        if not text.endswith("\n"):
            sys.stderr.write("\n")

