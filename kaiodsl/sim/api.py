"""Public entry points: run_ptx (hand-written PTX) and SimBackend (the runtime's sim backend)."""

from __future__ import annotations

import os

import numpy as np

from ..errors import ArgumentError, SimError
from . import executor, ops_cluster, preflight
from .memory import GlobalMem
from .numeric import NP
from .order import CLOCK_ENTRIES, needs_clocks
from .parse import parse_ptx
from .state import Machine

MAX_BATCH_THREADS = 8192  # blocks simulated together: amortizes per-instruction Python cost


def _dim3(v, what):
    if isinstance(v, (int, np.integer)):
        v = (int(v),)
    v = tuple(int(x) for x in v) + (1,) * (3 - len(v))
    if len(v) != 3 or min(v) < 1:
        raise ArgumentError(f"{what} must be 1 to 3 positive ints, got {v}")
    return v


def _param_block(kernel, values):
    """Lay out .param space: (bytes, {name: (offset, size)})."""
    offs, off = {}, 0
    for p, _ in zip(kernel.params, values):
        off = (off + p.align - 1) // p.align * p.align
        offs[p.name] = (off, p.size)
        off += p.size
    buf = np.zeros(max(off, 8), dtype=np.uint8)
    for p, v in zip(kernel.params, values):
        o, size = offs[p.name]
        if isinstance(v, (bytes, bytearray)) or (isinstance(v, np.ndarray) and v.dtype == np.uint8
                                                  and p.type == "b8"):
            raw = np.frombuffer(bytes(v), np.uint8)[:size]
        else:
            t = p.type if p.type != "pred" else "u8"
            if t in ("f16", "f32", "f64"):
                raw = np.asarray(v, dtype=NP[t]).reshape(1).view(np.uint8)
            else:
                bits = 8 * size
                raw = np.asarray(int(v) & ((1 << bits) - 1), dtype=f"<u{size}").reshape(1).view(np.uint8)
        buf[o:o + raw.size] = raw
    return buf, offs


def _entry(module, entry):
    kernel = module.kernels.get(entry)
    if kernel is None:
        raise SimError(f"no .entry named {entry!r} in the PTX (entries: {sorted(module.kernels)})")
    return kernel


def prepare(ptx, module, entry, arch, grid, block, smem, generated, link=None):
    """Before anything is allocated: the kernel, its launch checked against the arch's limits,
    and the PTX assembled by nvJitLink as the GPU would (LinkError if ptxas rejects it)."""
    kernel = _entry(module, entry)
    grid, block = _dim3(grid, "grid"), _dim3(block, "block")
    if link is None:
        link = preflight.assemble(ptx, arch, entry, generated)
    preflight.check(kernel, arch, grid, block, smem, link)
    return kernel, grid, block, link


def execute(module, entry, grid, block, gmem, param_values, smem=0, check_uninit=None, cluster=None):
    """Run every block of the grid, in batches of blocks simulated together (whole clusters)."""
    kernel = _entry(module, entry)
    if len(param_values) != len(kernel.params):
        raise ArgumentError(f"{entry} takes {len(kernel.params)} parameters, got {len(param_values)}")
    grid, block = _dim3(grid, "grid"), _dim3(block, "block")
    _check_target(module, kernel)
    if check_uninit is None:
        check_uninit = os.environ.get("KAIODSL_SIM_CHECK_UNINIT", "") not in ("", "0")
    pbytes, poffs = _param_block(kernel, param_values)
    gvars = {}
    for v in module.globals:
        if v.space in ("global", "const"):
            arr = np.zeros(max(v.size, 1), np.uint8)
            gvars[v.name] = gmem.map(arr, v.name)
    nblocks = grid[0] * grid[1] * grid[2]
    tpad = (block[0] * block[1] * block[2] + 31) // 32 * 32
    csize = cluster[0] * cluster[1] * cluster[2] if cluster else 1
    per = max(1, min(nblocks, MAX_BATCH_THREADS // tpad)) // csize * csize or csize
    if needs_clocks(kernel):  # the race checker's vector clocks: threads x cluster threads per batch
        per = max(csize, min(per, CLOCK_ENTRIES // (tpad * tpad * csize)) // csize * csize)
    order = ops_cluster.order_blocks(grid, cluster) if cluster else list(range(nblocks))
    with np.errstate(all="ignore"):
        for start in range(0, nblocks, per):
            ids = order[start:start + per]
            m = Machine(kernel, grid, block, ids, gmem, pbytes, poffs, gvars, smem, check_uninit)
            if cluster:
                ops_cluster.setup(m, cluster)
            m.const_bytes = np.zeros(8, np.uint8)
            executor.run(m, executor.decode(m))


def _check_target(module, kernel) -> None:
    """Refuse what the GPU would: an instruction form the module's .target does not have."""
    from ..codegen.features import target_refuses

    for ins in kernel.instrs:
        why = target_refuses(module.target, ins.opcode) if module.target else None
        if why:
            raise SimError(f"{kernel.name}: {why}\n  PTX line {ins.line}: {ins.text}", ptx_line=ins.line,
                           source=ins.source)


def run_ptx(ptx: str, entry: str, grid, block, args, smem: int = 0, check_uninit: bool = False,
            cluster=None):
    """Simulate a hand-written PTX kernel for the arch of its `.target`.

    args follow the .param order: numpy arrays are copied into simulated global memory
    (their address is the parameter) and copied back after the run; scalars are
    converted to the parameter's type. As on a GPU, PTX that ptxas rejects is a LinkError
    and a launch past the arch's limits a LaunchError, before anything runs. ``cluster``:
    CTAs per cluster (x, y, z), a launch with clusters as cuLaunchKernelEx makes one.
    """
    module = parse_ptx(ptx)
    prepare(ptx, module, entry, module.target, grid, block, smem, generated=False)
    if cluster is not None:
        cluster, g = _dim3(cluster, "cluster"), _dim3(grid, "grid")
        if any(n % c for n, c in zip(g, cluster)):
            raise ArgumentError(f"cluster={cluster}: the grid {g} must be whole clusters along each axis")
        cluster = None if cluster == (1, 1, 1) else cluster
    gmem = GlobalMem()
    values, back = [], []
    for i, a in enumerate(args):
        if isinstance(a, np.ndarray):
            buf = np.ascontiguousarray(a).copy()
            values.append(gmem.map(buf, f"arg{i}"))
            back.append((a, buf))
        else:
            values.append(a)
    execute(module, entry, grid, block, gmem, values, smem, check_uninit or None, cluster)
    for a, buf in back:
        a[...] = buf.reshape(a.shape)


class SimBackend:
    """kaiodsl's simulator backend: runs CompiledKernel.ptx on the CPU with checks."""

    name = "sim"
    arch = "sm_90a"
    sm_count = 3   # a persistent kernel's grid here: few blocks, so each walks several tiles

    def __init__(self, check_uninit: bool | None = None):
        self.check_uninit = check_uninit

    def launch(self, compiled, grid, block, args, smem=0, stream=None, cluster=None):
        params = tuple(compiled.params)
        args = _validate(compiled.name, params, list(args))
        module = parse_ptx(compiled.ptx)
        # the kernel's own nvJitLink result when it has one (its resource figures reuse ours);
        # PTX from the user (PtxKernel: no IR) is not kaiodsl's codegen when ptxas rejects it
        _, _, _, link = prepare(compiled.ptx, module, compiled.name, compiled.arch, grid, block,
                                smem or 0, bool(compiled.ir_text), compiled.link_result)
        if compiled.link_result is None and link is not None:  # stored with the PTX in the disk cache
            compiled.link_result = link
            if compiled.on_link is not None:
                compiled.on_link(compiled)
        gmem = GlobalMem()
        values, back = [], []
        for p, a in zip(params, args):
            if p.is_pointer:
                a = _cpu_tensor_view(a)
                buf, copy_back = _pointer_arg(compiled.name, p, a)
                values.append(gmem.map(buf, p.name))
                if copy_back:
                    back.append((a, buf))
            elif getattr(p, "is_tensormap", False):  # the 128 bytes, with the array's simulated address
                buf, copy_back = _tensormap_array(compiled.name, p, a)
                values.append(a.spec(gmem.map(buf, p.name)).sim_bytes())
                if copy_back:
                    back.append((a.array, buf))  # a numpy array: TMA stores are copied back
            else:
                values.append(_scalar_arg(compiled.name, p, a))
        execute(module, compiled.name, grid, block, gmem, values, smem or 0, self.check_uninit,
                None if cluster in (None, (1, 1, 1)) else _dim3(cluster, "cluster"))
        for a, buf in back:
            a[...] = buf.reshape(a.shape)

    def launch_ex(self, compiled, grid, block, args, smem, stream, config):
        """Clusters run together (ops_cluster.py); PDL needs nothing (launches run one after another)."""
        self.launch(compiled, grid, block, args, smem, stream, config.cluster)

    def synchronize(self):
        pass


def _validate(kname, params, args):
    """The runtime's shared argument checks when present (one error wording for all backends)."""
    try:
        from ..runtime.args import validate_args
    except ImportError:
        if len(args) != len(params):
            raise ArgumentError(f"{kname} takes {len(params)} runtime arguments "
                                f"({', '.join(p.name for p in params)}), got {len(args)}") from None
        return args
    return validate_args(kname, params, args)


def _tensormap_array(kname, p, tm):
    """(the buffer a TensorMap's array is simulated in, whether to copy it back after the launch): a
    DeviceArray's or a CPU tensor's own memory (no copy), else a copy of the numpy array."""
    a = tm.array
    view = _cpu_tensor_view(a)
    buf = getattr(a, "_sim_buffer", view)
    if not isinstance(buf, np.ndarray):
        raise ArgumentError(f"{kname}: parameter '{p.name}': the TensorMap's array must be a numpy array, a "
                            f"CPU torch tensor or a simulator DeviceArray, got {type(a).__name__}")
    if not buf.flags.c_contiguous:
        raise ArgumentError(f"{kname}: parameter '{p.name}': the simulator maps a TensorMap's numpy array "
                            f"whole: pass a C-contiguous array (its strides are {buf.strides})")
    if hasattr(a, "_sim_buffer") or view is not a:
        return buf, False
    return buf.copy(), True


def _expected_dtypes(p):
    dt = np.dtype(p.dtype.np_dtype)
    return (dt,) if p.dtype.name != "bf16" else (dt, np.dtype(np.uint16))


def _cpu_tensor_view(a):
    """A CPU torch tensor as a numpy view of its memory (bf16 as its uint16 bits), else ``a``."""
    if not type(a).__module__.startswith("torch") or getattr(getattr(a, "device", None), "type", "") != "cpu":
        return a
    import torch                                        # already imported: the caller holds a tensor

    t = a.detach()
    if not t.is_contiguous() and t.numel() and min(t.stride()) >= 0:
        # a strided view (e.g. [B, S, H, D] storage seen as [B, H, S, D]): the kernel addresses it through
        # its strides from element 0, so the simulator gets the whole span of memory it may touch
        span = 1 + sum((n - 1) * st for n, st in zip(t.shape, t.stride()))
        t = t.as_strided((span,), (1,))
    if t.dtype == torch.bfloat16:                       # numpy has no bfloat16: its raw bits
        return t.view(torch.int16).numpy().view(np.uint16)
    if t.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):   # nor fp8: its bytes
        return t.view(torch.uint8).numpy()
    return t.numpy()


def _pointer_arg(kname, p, a):
    if hasattr(a, "_sim_buffer"):
        buf = a._sim_buffer
        _check_dtype(kname, p, buf)
        if not (buf.flags.c_contiguous and buf.flags.writeable):
            raise ArgumentError(f"{kname}: parameter '{p.name}': device buffer must be writable and "
                                f"C-contiguous")
        return buf, False
    if isinstance(a, np.ndarray):
        _check_dtype(kname, p, a)
        return np.ascontiguousarray(a).copy(), p.writable
    raise ArgumentError(f"{kname}: parameter '{p.name}' expects an array of {p.dtype} "
                        f"(numpy array or device array), got {type(a).__name__}")


def _check_dtype(kname, p, arr):
    if arr.dtype not in _expected_dtypes(p):
        raise ArgumentError(f"{kname}: parameter '{p.name}' expects dtype {p.dtype} "
                            f"({np.dtype(p.dtype.np_dtype)}), got {arr.dtype}")


def _scalar_arg(kname, p, a):
    if isinstance(a, np.ndarray) and a.ndim > 0 or hasattr(a, "_sim_buffer"):
        raise ArgumentError(f"{kname}: parameter '{p.name}' is a scalar {p.dtype}, got an array")
    t = p.dtype
    if isinstance(a, np.generic):
        a = a.item()
    if t.is_float:
        if not isinstance(a, (int, float, np.integer, np.floating)):
            raise ArgumentError(f"{kname}: parameter '{p.name}' expects {t}, got {type(a).__name__}")
        if t.name == "bf16":
            from .numeric import f32_to_bf16
            return int(a) if isinstance(a, int) else int(f32_to_bf16(np.float32(a)))
        return float(a)
    if isinstance(a, (float, np.floating)) or not isinstance(a, (int, np.integer, bool, np.bool_)):
        raise ArgumentError(f"{kname}: parameter '{p.name}' expects {t}, got {type(a).__name__} {a!r}")
    return int(a)
