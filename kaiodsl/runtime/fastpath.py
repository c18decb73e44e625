"""The per-signature launch function: generated Python with no loops, lists or dicts.

A cached launch must cost little more than cuLaunchKernel itself (measured in
benchmarks/launch_overhead.py). A generic loop over the parameters spends most
of that budget on indexing and list building, so, as Triton does for its
launcher, we generate one small function per (specialization, device) with the
parameters unrolled:

    def launch(grid, block, args, smem, stream):
        a0, a1, a2, a3 = args
        <per pointer: torch tensor -> data_ptr() | DeviceArray -> .ptr | else: GENERAL(...)>
        <per TensorMap: over a torch tensor or DeviceArray on this device -> its 128 driver bytes
         at that address (encoded once per address) | else: GENERAL(...)>
        PACK(BUF, 0, a0, a1, a2, a3)          # struct.pack_into into the parameter slots
        <stream handle -> cached CUstream>
        <launch checks when block (by identity: dims are interned) or smem change>
        err = LAUNCH(FN, *grid, *block, smem, stream, ARGV, 0)[0]

Anything the fast path does not handle, and every failure, calls GENERAL (the
PreparedLaunch's full-validation path), so errors read the same either way.
"""

from __future__ import annotations

import sys

from .arrays import DeviceArray
from .streams import stream_handle
from .tensormap import TensorMap

_CUSTREAMS: dict = {}  # raw handle -> cuda.bindings CUstream (passing the object skips a conversion)


def custream(h: int):
    s = _CUSTREAMS.get(h)
    if s is None:
        from .driver import drv

        if len(_CUSTREAMS) > 256:  # streams come and go; keep the table small
            _CUSTREAMS.clear()
        s = _CUSTREAMS[h] = drv().CUstream(h)
    return s


class _NoTorch:  # stands in for torch.Tensor until the program imports torch
    pass


_POINTER = """\
    t = type(a{i})
    if t is TT:
        if a{i}.dtype is not TD{i} or {not_here}:
            return GENERAL(grid, block, args, smem, stream)
        a{i} = a{i}.data_ptr()
        saw_torch = True
    elif t is DA and a{i}.scalar_type is ST{i} and a{i}.device == ORD:
        a{i} = a{i}.ptr
    else:
        return GENERAL(grid, block, args, smem, stream)
"""

_TENSORMAP = """\
    if type(a{i}) is not TM:
        return GENERAL(grid, block, args, smem, stream)
    x = a{i}.array
    t = type(x)
    if t is TT:
        if {not_here}:
            return GENERAL(grid, block, args, smem, stream)
        a{i} = a{i}.device_bytes(x.data_ptr())
        saw_torch = True
    elif t is DA and x.device == ORD:
        a{i} = a{i}.device_bytes(x.ptr)
    else:
        return GENERAL(grid, block, args, smem, stream)
"""

_TEMPLATE = """\
def launch(grid, block, args, smem, stream):
    try:
        {unpack} = args
    except ValueError:
        return GENERAL(grid, block, args, smem, stream)
    saw_torch = False
{pointers}{bf16}    try:
        PACK(BUF, 0, {names})
    except Exception:
        return GENERAL(grid, block, args, smem, stream)
    if stream is None:
        if saw_torch:
            h = TORCH_STREAM(ORD)
            cs = CUSTREAMS.get(h) or CUSTREAM(h)
        else:
            cs = CS0
    else:
        h = stream if type(stream) is int else STREAM_HANDLE(stream)
        cs = CUSTREAMS.get(h) or CUSTREAM(h)
    if block is not LAST[0] or smem != LAST[1]:
        CONFIGURE(grid, block, smem)
    err = LAUNCH(FN, grid[0], grid[1], grid[2], block[0], block[1], block[2], smem, cs, ARGV, 0)[0]
    if err:
        FAILED(err, grid, block, smem, cs)
"""


def build(prep) -> callable:
    """The launch function for a PreparedLaunch (see cuda_backend.PreparedLaunch)."""
    n = prep.n
    names = [f"a{i}" for i in range(n)]
    not_here = "not {x}.is_cuda" if prep.backend.single_gpu else "{x}.get_device() != ORD"
    pointers = "".join(_POINTER.format(i=i, not_here=not_here.format(x=f"a{i}")) for i in prep.ptr_idx)
    bf16 = "".join(f"    a{i} = BF16(a{i})\n" for i in prep.bf16_idx)
    bf16 += "".join(_TENSORMAP.format(i=i, not_here=not_here.format(x="x")) for i in prep.tmap_idx)
    if n == 0:
        src = _TEMPLATE.replace("    try:\n        {unpack} = args\n    except ValueError:\n",
                                "    if args:\n")
        src = src.format(unpack="", pointers="", bf16="", names="").replace("PACK(BUF, 0, )", "pass")
    else:
        src = _TEMPLATE.format(unpack=", ".join(names) + ("," if n == 1 else ""),
                               pointers=pointers, bf16=bf16, names=", ".join(names))
    ns = {
        "GENERAL": prep.general, "PACK": prep.pack_into, "BUF": prep.buf, "ARGV": prep.argv_addr,
        "FN": prep.fn, "ORD": prep.ordinal, "LAUNCH": prep.launch, "CONFIGURE": prep.configure,
        "FAILED": prep.failed, "LAST": prep.last, "DA": DeviceArray, "TT": _NoTorch,
        "TORCH_STREAM": torch_stream, "STREAM_HANDLE": stream_handle, "CUSTREAMS": _CUSTREAMS,
        "CUSTREAM": custream, "CS0": custream(0), "BF16": prep.bf16_scalar,
        "TM": TensorMap,
    }
    for i in prep.ptr_idx:
        ns[f"ST{i}"] = prep.elem[i]
        ns[f"TD{i}"] = None
    exec(compile(src, f"<kaiodsl launch {prep.name}>", "exec"), ns)
    fn = ns["launch"]
    fn.source, fn.namespace, fn.prepared = src, ns, prep
    refresh_torch(fn, prep)
    return fn


def refresh_torch(fn, prep) -> None:
    """Once the program has imported torch, let the fast path (and the native tier) recognize its tensors."""
    torch = sys.modules.get("torch")
    ns = fn.namespace
    if torch is None or ns["TT"] is not _NoTorch:
        return
    dtypes = torch_dtypes(torch, prep)
    for i, dt in dtypes.items():
        ns[f"TD{i}"] = dt
    ns["TT"] = torch.Tensor
    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    ns["TORCH_STREAM"] = raw or torch_stream
    if prep.desc is not None:
        prep.desc.set_torch(torch.Tensor, raw, dtypes)


def torch_dtypes(torch, prep) -> dict:
    """Pointer parameter index -> the torch dtype matching its element type (None if torch has none)."""
    from .args import TORCH_NAMES

    by_name = {ours: getattr(torch, theirs, None) for theirs, ours in TORCH_NAMES.items()}
    return {i: by_name.get(prep.elem[i].name) for i in prep.ptr_idx}


_raw_stream = None


def torch_stream(device: int) -> int:
    """PyTorch's current stream on a device, as a raw handle."""
    global _raw_stream
    if _raw_stream is None:
        torch = sys.modules["torch"]
        # What Triton uses: returns the handle without building a torch Stream object.
        _raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None) or \
            (lambda d: torch.cuda.current_stream(d).cuda_stream)
    return _raw_stream(device)
