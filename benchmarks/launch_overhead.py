"""Host-side cost of launching a cached EMPTY kernel with four pointer arguments.

Compares, in one process on one GPU:
  kaiodsl      ``k[1, 32](a, b, c, d)``, k an @kaiodsl.kernel, with torch tensors
  kaiodsl-bound  ``L = k[1, 32]; L(a, b, c, d)``
  kaiodsl-python-tier  ``k[1, 32](a, b, c, d)`` with the native tier switched off
  kaiodsl-PtxKernel  ``p[1, 32](a, b, c, d)``, the same kernel as a PtxKernel
  kaiodsl-DeviceArray  ``k[1, 32]`` with four kaiodsl DeviceArrays
  bare         cuda.bindings ``cuLaunchKernel`` with pre-packed args (void** address)
  bare-tuple   the same with kernelParams=((ptrs), (c_void_p,)*4) (the bindings pack them)
  triton       an empty ``@triton.jit`` kernel, ``k[(1,)](a, b, c, d)``
  cupy         ``cupy.RawKernel`` over the same PTX's C++ twin, cupy arrays

Host cost per launch: each method runs BLOCKS timed blocks of N launches, the methods
taking turns block by block (so drift hits them alike), the stream synchronized after
each block outside the timer. N is kept well under the driver's launch queue depth, so
a launch never waits for the GPU to retire earlier ones: the figure is the CPU time of
a launch, which is what launch overhead means. Each figure is the median over blocks;
the table also gives the spread (25th to 75th percentile). The process is pinned to
one CPU. A second table gives the sustained rate over 10000 back-to-back launches,
where the GPU's own rate for empty kernels can be the limit.
Writes benchmarks/results/launch_overhead.json.

A third table (``custom_op_overhead``) is the PyTorch layer's cost on a real op (a 16x128x128
f16 matmul): ``kaiodsl.ops.matmul`` called directly, ``kaiodsl.torch.matmul`` (its fast path
when no gradient is wanted), ``torch.ops.kaiodsl.matmul`` (the dispatcher), the same with a
weight that requires grad (the autograd node), and ``F.linear`` (cuBLAS) for scale.
``python benchmarks/launch_overhead.py --custom-op`` runs that table alone (on the CPU too,
through the simulator, with KAIO_BENCH_N / KAIO_BENCH_BLOCKS small: a smoke run, not a figure).

(No ``from __future__ import annotations`` here: the kernel below is defined in a
function, and string annotations would be resolved in this module's globals.)
"""

import ctypes
import json
import os
import platform
import statistics
import sys
import time

N = int(os.environ.get("KAIO_BENCH_N", 256))
BLOCKS = int(os.environ.get("KAIO_BENCH_BLOCKS", 60))
SUSTAINED_N = 10000
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "launch_overhead.json")

EMPTY4_PTX = """.version 7.0
.target sm_80
.address_size 64

.visible .entry empty4(
	.param .u64 empty4_param_0,
	.param .u64 empty4_param_1,
	.param .u64 empty4_param_2,
	.param .u64 empty4_param_3
)
{
	ret;
}
"""
EMPTY4_CU = 'extern "C" __global__ void empty4(float* a, float* b, float* c, float* d) {}'


def timeit(fn, sync) -> float:
    """Median microseconds per call of fn()."""
    return measure({"": (fn, sync)})[0][""]


def measure(methods: dict, n: int = N, blocks: int = BLOCKS) -> tuple[dict, dict]:
    """(name -> median us per call, name -> (p25, p75)); the methods take turns block by block."""
    for fn, sync in methods.values():
        for _ in range(200):
            fn()
        sync()
    per = {name: [] for name in methods}
    for _ in range(blocks):
        for name, (fn, sync) in methods.items():
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            per[name].append((time.perf_counter() - t0) / n * 1e6)
            sync()
    med = {name: statistics.median(v) for name, v in per.items()}
    spread = {}
    for name, v in per.items():
        q = statistics.quantiles(v, n=4) if len(v) > 1 else [v[0]] * 3
        spread[name] = (q[0], q[2])
    return med, spread


def our_kernel():
    """A real @kaiodsl.kernel when the frontend exists, else the same kernel as hand-written PTX."""
    try:
        import kaiodsl
        from kaiodsl.types import Ptr, f32

        @kaiodsl.kernel
        def empty4(a: Ptr[f32], b: Ptr[f32], c: Ptr[f32], d: Ptr[f32]):
            pass

        return empty4, "@kaiodsl.kernel"
    except Exception as e:  # no frontend yet (or it cannot compile this): hand-written PTX
        from kaiodsl.runtime.ptx_kernel import PtxKernel

        return (PtxKernel(EMPTY4_PTX, ["a: Ptr[f32]", "b: Ptr[f32]", "c: Ptr[f32]", "d: Ptr[f32]"]),
                f"PtxKernel (frontend unavailable: {type(e).__name__}: {e})"[:300])


_KEEP = []


def native_with_stub_driver(prepared, n_params=None):
    """The native tier over the same descriptor, but calling a cuLaunchKernel that returns at once."""
    import llvmlite.binding as llvm

    from kaiodsl.runtime import native

    native._init_llvm(llvm)
    ir = ("define i32 @stub(i64 %f, i32 %a, i32 %b, i32 %c, i32 %d, i32 %e, i32 %g, i32 %h, i64 %s, "
          "i64 %p, i64 %x) {\n  ret i32 0\n}\n")
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(ir),
                                        llvm.Target.from_default_triple().create_target_machine())
    engine.finalize_object()
    nat = native.native(engine.get_function_address("stub"))
    words = native._words(len(prepared.desc.words))
    words[:] = prepared.desc.words[:]
    words.keep = prepared.desc.keep
    if n_params is not None:
        words[native.H_N] = n_params
    _KEEP.append(engine)
    return nat.function(words)


def main():
    import torch
    from cuda.bindings import driver as cu

    import kaiodsl.runtime as rt

    cpu = None
    if hasattr(os, "sched_setaffinity"):  # one CPU: no migrations in the middle of a timed block
        cpu = sorted(os.sched_getaffinity(0))[-1]
        os.sched_setaffinity(0, {cpu})
    rt.set_backend("cuda")
    dev = torch.device("cuda")
    a, b, c, d = (torch.zeros(16, device=dev) for _ in range(4))
    sync = torch.cuda.synchronize
    results, notes, methods = {}, {}, {}

    k, kind = our_kernel()
    try:
        k[1, 32](a, b, c, d)
    except Exception as e:  # the frontend exists but cannot build this yet
        from kaiodsl.runtime.ptx_kernel import PtxKernel

        kind = f"PtxKernel (frontend kernel failed: {type(e).__name__}: {e})"[:300]
        k = PtxKernel(EMPTY4_PTX, ["a: Ptr[f32]", "b: Ptr[f32]", "c: Ptr[f32]", "d: Ptr[f32]"])
        k[1, 32](a, b, c, d)
    notes["kaiodsl_kernel"] = kind
    methods["kaiodsl"] = (lambda: k[1, 32](a, b, c, d), sync)
    bound = k[1, 32]
    methods["kaiodsl-bound"] = (lambda: bound(a, b, c, d), sync)
    from kaiodsl.runtime.ptx_kernel import PtxKernel

    pk = PtxKernel(EMPTY4_PTX, ["a: Ptr[f32]", "b: Ptr[f32]", "c: Ptr[f32]", "d: Ptr[f32]"])
    pk[1, 32](a, b, c, d)
    methods["kaiodsl-PtxKernel"] = (lambda: pk[1, 32](a, b, c, d), sync)
    da = [rt.zeros(16) for _ in range(4)]
    d0, d1, d2, d3 = da
    methods["kaiodsl-DeviceArray"] = (lambda: k[1, 32](d0, d1, d2, d3), sync)

    # The same CUfunction, launched bare.
    prepared = next(v for v in k._launch_cache.values())[1].prepared  # (first tier, Python tier)
    fn = prepared.fn
    ptrs = [t.data_ptr() for t in (a, b, c, d)]
    slots = (ctypes.c_uint64 * 4)(*ptrs)
    argv = (ctypes.c_void_p * 4)(*[ctypes.addressof(slots) + 8 * i for i in range(4)])
    addr = ctypes.addressof(argv)
    launch = cu.cuLaunchKernel
    methods["bare"] = (lambda: launch(fn, 1, 1, 1, 32, 1, 1, 0, 0, addr, 0), sync)
    tup = (tuple(ptrs), (ctypes.c_void_p,) * 4)
    methods["bare-tuple"] = (lambda: launch(fn, 1, 1, 1, 32, 1, 1, 0, 0, tup, 0), sync)
    stream0 = cu.CUstream(0)
    methods["bare-CUstream"] = (lambda: launch(fn, 1, 1, 1, 32, 1, 1, 0, stream0, addr, 0), sync)
    # Diagnostics: the driver entry through ctypes, parameters as void** or as one buffer (extra).
    cl = ctypes.CDLL("libcuda.so.1").cuLaunchKernel
    cl.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 7 + [ctypes.c_void_p] * 3
    cl.restype = ctypes.c_int
    fnh, size = ctypes.c_void_p(int(fn)), ctypes.c_size_t(32)
    extra = (ctypes.c_void_p * 5)(1, ctypes.addressof(slots), 2, ctypes.addressof(size), 0)
    methods["ctypes-kernelParams"] = (lambda: cl(fnh, 1, 1, 1, 32, 1, 1, 0, None, addr, None), sync)
    methods["ctypes-extra"] = (lambda: cl(fnh, 1, 1, 1, 32, 1, 1, 0, None, None, extra), sync)

    try:
        import triton

        @triton.jit
        def empty4_triton(a, b, c, d):
            pass

        empty4_triton[(1,)](a, b, c, d)
        methods["triton"] = (lambda: empty4_triton[(1,)](a, b, c, d), sync)
        notes["triton"] = triton.__version__
    except Exception as e:
        notes["triton"] = f"failed: {type(e).__name__}: {e}"[:300]

    try:
        import cupy as cp

        ca, cb, cc, cd = (cp.zeros(16, cp.float32) for _ in range(4))
        try:
            raw = cp.RawKernel(EMPTY4_CU, "empty4")
            raw((1,), (32,), (ca, cb, cc, cd))
            notes["cupy"] = f"{cp.__version__} RawKernel (NVRTC)"
        except Exception:
            path = "/tmp/empty4.ptx"
            with open(path, "w") as f:
                f.write(EMPTY4_PTX)
            raw = cp.RawModule(path=path).get_function("empty4")
            notes["cupy"] = f"{cp.__version__} RawModule(PTX).get_function"
        raw((1,), (32,), (ca, cb, cc, cd))
        methods["cupy"] = (lambda: raw((1,), (32,), (ca, cb, cc, cd)), cp.cuda.Device().synchronize)
    except Exception as e:
        notes["cupy"] = f"failed: {type(e).__name__}: {e}"[:300]

    # Pieces of our fast path, for whoever tunes it.
    get = torch._C._cuda_getCurrentRawStream
    from kaiodsl.runtime.launch import Launcher

    memo = bound._memo
    entry, python_tier, grid3, block3, targs = memo[1], memo[2], bound.grid, bound.block, (a, b, c, d)
    from kaiodsl.runtime import native

    notes["native_tier"] = ("on" if prepared.native is not None else f"off: {native.why_not()}")
    found = native.c_entries(torch.Tensor)
    notes["native_torch_entries"] = ", ".join(f"{n}: {'C' if e else 'generic'}"
                                              for n, e in zip(("dtype", "is_cuda", "data_ptr"), found))
    try:
        import llvmlite

        notes["llvmlite"] = llvmlite.__version__
    except ImportError:
        notes["llvmlite"] = "not installed"
    k2, _ = our_kernel()  # the same kernel, its launcher held to the Python tier
    k2[1, 32](a, b, c, d)
    m2 = k2[1, 32]._memo
    k2[1, 32]._memo = (m2[0], m2[2], m2[2])
    methods["kaiodsl-python-tier"] = (lambda: k2[1, 32](a, b, c, d), sync)
    med, spread = measure(methods)
    results.update(med)
    sustained_names = ("kaiodsl", "bare", "triton", "cupy")
    sustained, _ = measure({k_: v for k_, v in methods.items() if k_ in sustained_names},
                           n=SUSTAINED_N, blocks=5)
    f32 = torch.float32
    stub_call = native_with_stub_driver(prepared)
    stub0 = native_with_stub_driver(prepared, 0)
    assert stub_call(grid3, block3, targs, 0, None) is None and stub0(grid3, block3, (), 0, 0) is None
    das = (d0, d1, d2, d3)
    parts = {
        "native tier, stub driver (our own cost)": timeit(lambda: stub_call(grid3, block3, targs, 0, None), sync),
        "  the same, stream=0 given": timeit(lambda: stub_call(grid3, block3, targs, 0, 0), sync),
        "  the same, DeviceArrays, stream=0": timeit(lambda: stub_call(grid3, block3, das, 0, 0), sync),
        "  no parameters, stream=0": timeit(lambda: stub0(grid3, block3, (), 0, 0), sync),
        "empty lambda": timeit(lambda: None, lambda: None),
        "first tier (native) called directly": timeit(lambda: entry(grid3, block3, targs, 0, None), sync),
        "Python tier called directly": timeit(lambda: python_tier(grid3, block3, targs, 0, None), sync),
        "torch data_ptr()": timeit(lambda: a.data_ptr(), lambda: None),
        "torch get_device()": timeit(lambda: a.get_device(), lambda: None),
        "torch dtype check": timeit(lambda: a.dtype is f32, lambda: None),
        "torch is_cuda": timeit(lambda: a.is_cuda, lambda: None),
        "torch raw stream": timeit(lambda: get(0), lambda: None),
        "struct pack_into": timeit(lambda: prepared.pack_into(prepared.buf, 0, *ptrs), lambda: None),
        "k[1, 32] only": timeit(lambda: k[1, 32], lambda: None),
        "Launcher(k, 1, 32) only": timeit(lambda: Launcher(k, 1, 32), lambda: None),
        "PtxKernel[1, 32] only": timeit(lambda: pk[1, 32], lambda: None),
    }

    bare = results["bare"]
    print("\ngoal: kaiodsl <= 1.3x bare, and faster than triton and cupy")
    print(f"host cost per launch, empty kernel, 4 pointer args; {BLOCKS} blocks of {N} launches "
          f"(median, 25th-75th percentile), pinned to CPU {cpu}")
    print(f"{'method':<22}{'us/launch':>10}{'p25':>8}{'p75':>8}{'x bare':>8}")
    for name, us in results.items():
        lo, hi = spread[name]
        print(f"{name:<22}{us:>10.3f}{lo:>8.3f}{hi:>8.3f}{us / bare:>8.2f}")
    print(f"\nsustained: 5 blocks of {SUSTAINED_N} launches (the GPU's rate for empty kernels can bound it)")
    for name, us in sustained.items():
        print(f"{name:<22}{us:>10.3f}{us / sustained['bare']:>8.2f}")
    print("\nfast-path pieces (us/call):")
    for name, us in parts.items():
        print(f"  {name:<36}{us:>8.3f}")
    for name, note in notes.items():
        print(f"  {name}: {note}")

    custom = custom_op_overhead(dev, sync)

    gpu = torch.cuda.get_device_name(0)
    doc = {"custom_op_us_per_call": custom, "benchmark": "launch_overhead", "gpu": gpu, "python": platform.python_version(),
           "torch": torch.__version__, "launches_per_block": N, "blocks": BLOCKS, "pinned_cpu": cpu,
           "us_per_launch": {k_: round(v, 3) for k_, v in results.items()},
           "p25_p75_us": {k_: [round(x, 3) for x in v] for k_, v in spread.items()},
           "ratio_vs_bare": {k_: round(v / bare, 3) for k_, v in results.items()},
           "sustained_us_per_launch": {k_: round(v, 3) for k_, v in sustained.items()},
           "fast_path_pieces_us": {k_: round(v, 3) for k_, v in parts.items()}, "notes": notes}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=2)
    out_dir = os.environ.get("OUT")
    if out_dir:
        with open(os.path.join(out_dir, "launch_overhead.json"), "w") as f:
            json.dump(doc, f, indent=2)
    print(f"\nwrote {OUT}")


def custom_op_overhead(dev, sync, n: int = N, blocks: int = BLOCKS) -> dict:
    """us per call of one small matmul through each layer of kaiodsl's PyTorch integration."""
    import torch

    import kaiodsl.torch as kt
    from kaiodsl import ops

    a = torch.randn(16, 128, device=dev, dtype=torch.float16)
    w = torch.randn(128, 128, device=dev, dtype=torch.float16)
    wg = w.clone().requires_grad_()
    op = torch.ops.kaiodsl.matmul
    methods = {
        "kaiodsl.ops.matmul (direct)": (lambda: ops.matmul(a, w, b_layout="nk"), sync),
        "kaiodsl.torch.matmul (fast path)": (lambda: kt.matmul(a, w, b_layout="nk"), sync),
        "torch.ops.kaiodsl.matmul": (lambda: op(a, w, None, "nk", None), sync),
        "torch.ops.kaiodsl + autograd": (lambda: kt.matmul(a, wg, b_layout="nk"), sync),
        "F.linear (cuBLAS)": (lambda: torch.nn.functional.linear(a, w), sync),
    }
    med, spread = measure(methods, n, blocks)
    base = med["kaiodsl.ops.matmul (direct)"]
    print(f"\ncustom-op overhead: 16x128x128 f16 matmul, {blocks} blocks of {n} calls (median us/call)")
    print(f"{'path':<36}{'us/call':>9}{'p25':>8}{'p75':>8}{'- direct':>10}")
    for name, us in med.items():
        lo, hi = spread[name]
        print(f"{name:<36}{us:>9.3f}{lo:>8.3f}{hi:>8.3f}{us - base:>+10.3f}")
    print(f"dispatcher cost: {med['torch.ops.kaiodsl.matmul'] - base:+.3f} us/call over the direct call; "
          f"the fast path: {med['kaiodsl.torch.matmul (fast path)'] - base:+.3f} us")
    return {k: round(v, 3) for k, v in med.items()}


def custom_op_only() -> None:
    import torch

    if torch.cuda.is_available():
        custom_op_overhead(torch.device("cuda"), torch.cuda.synchronize)
    else:                        # the simulator: proves the section runs; its times are the simulator's
        custom_op_overhead(torch.device("cpu"), lambda: None, n=min(N, 2), blocks=min(BLOCKS, 2))


if __name__ == "__main__":
    if "--custom-op" in sys.argv[1:]:
        sys.exit(custom_op_only())
    sys.exit(main())
