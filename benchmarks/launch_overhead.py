"""Host-side cost of launching a cached EMPTY kernel with four pointer arguments.

Compares, in one process on one GPU:
  kaiodsl      ``k[1, 32](a, b, c, d)``, k an @kaiodsl.kernel, with torch tensors
  kaiodsl-bound  ``L = k[1, 32]; L(a, b, c, d)``
  kaiodsl-PtxKernel  ``p[1, 32](a, b, c, d)``, the same kernel as a PtxKernel
  kaiodsl-DeviceArray  ``k[1, 32]`` with four kaiodsl DeviceArrays
  bare         cuda.bindings ``cuLaunchKernel`` with pre-packed args (void** address)
  bare-tuple   the same with kernelParams=((ptrs), (c_void_p,)*4) (the bindings pack them)
  triton       an empty ``@triton.jit`` kernel, ``k[(1,)](a, b, c, d)``
  cupy         ``cupy.RawKernel`` over the same PTX's C++ twin, cupy arrays

Each figure is the median over REPEATS of (time of N launches) / N, host time
only (the stream is synchronized after each timed loop, outside the timer).
Writes benchmarks/results/launch_overhead.json.

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

N = int(os.environ.get("KAIO_BENCH_N", 10000))
REPEATS = int(os.environ.get("KAIO_BENCH_REPEATS", 7))
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
    """Median microseconds per call of fn() over REPEATS loops of N calls."""
    for _ in range(200):
        fn()
    sync()
    per = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        for _ in range(N):
            fn()
        per.append((time.perf_counter() - t0) / N * 1e6)
        sync()
    return statistics.median(per)


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


def main():
    import torch
    from cuda.bindings import driver as cu

    import kaiodsl.runtime as rt

    rt.set_backend("cuda")
    dev = torch.device("cuda")
    a, b, c, d = (torch.zeros(16, device=dev) for _ in range(4))
    sync = torch.cuda.synchronize
    results, notes = {}, {}

    k, kind = our_kernel()
    try:
        k[1, 32](a, b, c, d)
    except Exception as e:  # the frontend exists but cannot build this yet
        from kaiodsl.runtime.ptx_kernel import PtxKernel

        kind = f"PtxKernel (frontend kernel failed: {type(e).__name__}: {e})"[:300]
        k = PtxKernel(EMPTY4_PTX, ["a: Ptr[f32]", "b: Ptr[f32]", "c: Ptr[f32]", "d: Ptr[f32]"])
        k[1, 32](a, b, c, d)
    notes["kaiodsl_kernel"] = kind
    results["kaiodsl"] = timeit(lambda: k[1, 32](a, b, c, d), sync)
    bound = k[1, 32]
    results["kaiodsl-bound"] = timeit(lambda: bound(a, b, c, d), sync)
    from kaiodsl.runtime.ptx_kernel import PtxKernel

    pk = PtxKernel(EMPTY4_PTX, ["a: Ptr[f32]", "b: Ptr[f32]", "c: Ptr[f32]", "d: Ptr[f32]"])
    pk[1, 32](a, b, c, d)
    results["kaiodsl-PtxKernel"] = timeit(lambda: pk[1, 32](a, b, c, d), sync)
    da = [rt.zeros(16) for _ in range(4)]
    d0, d1, d2, d3 = da
    results["kaiodsl-DeviceArray"] = timeit(lambda: k[1, 32](d0, d1, d2, d3), sync)

    # The same CUfunction, launched bare.
    prepared = next(v for v in k._launch_cache.values()).prepared
    fn = prepared.fn
    ptrs = [t.data_ptr() for t in (a, b, c, d)]
    slots = (ctypes.c_uint64 * 4)(*ptrs)
    argv = (ctypes.c_void_p * 4)(*[ctypes.addressof(slots) + 8 * i for i in range(4)])
    addr = ctypes.addressof(argv)
    launch = cu.cuLaunchKernel
    results["bare"] = timeit(lambda: launch(fn, 1, 1, 1, 32, 1, 1, 0, 0, addr, 0), sync)
    tup = (tuple(ptrs), (ctypes.c_void_p,) * 4)
    results["bare-tuple"] = timeit(lambda: launch(fn, 1, 1, 1, 32, 1, 1, 0, 0, tup, 0), sync)
    stream0 = cu.CUstream(0)
    results["bare-CUstream"] = timeit(lambda: launch(fn, 1, 1, 1, 32, 1, 1, 0, stream0, addr, 0), sync)

    try:
        import triton

        @triton.jit
        def empty4_triton(a, b, c, d):
            pass

        empty4_triton[(1,)](a, b, c, d)
        results["triton"] = timeit(lambda: empty4_triton[(1,)](a, b, c, d), sync)
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
        results["cupy"] = timeit(lambda: raw((1,), (32,), (ca, cb, cc, cd)), cp.cuda.Device().synchronize)
    except Exception as e:
        notes["cupy"] = f"failed: {type(e).__name__}: {e}"[:300]

    # Pieces of our fast path, for whoever tunes it.
    get = torch._C._cuda_getCurrentRawStream
    from kaiodsl.runtime.launch import Launcher

    entry, grid3, block3, targs = bound._memo[1], bound.grid, bound.block, (a, b, c, d)
    f32 = torch.float32
    parts = {
        "empty lambda": timeit(lambda: None, lambda: None),
        "generated launch fn": timeit(lambda: entry(grid3, block3, targs, 0, None), sync),
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
    table = [(name, us, us / bare) for name, us in results.items()]
    print(f"\ngoal: kaiodsl <= 1.3x bare")
    print(f"launch overhead, empty kernel, 4 pointer args; N={N}, median of {REPEATS}")
    print(f"{'method':<20}{'us/launch':>11}{'x bare':>9}")
    for name, us, ratio in table:
        print(f"{name:<20}{us:>11.3f}{ratio:>9.2f}")
    print("\nfast-path pieces (us/call):")
    for name, us in parts.items():
        print(f"  {name:<22}{us:>8.3f}")
    for name, note in notes.items():
        print(f"  {name}: {note}")

    gpu = torch.cuda.get_device_name(0)
    doc = {"benchmark": "launch_overhead", "gpu": gpu, "python": platform.python_version(),
           "torch": torch.__version__, "n_launches": N, "repeats": REPEATS,
           "us_per_launch": {k_: round(v, 3) for k_, v in results.items()},
           "ratio_vs_bare": {k_: round(v / bare, 3) for k_, v in results.items()},
           "fast_path_pieces_us": {k_: round(v, 3) for k_, v in parts.items()}, "notes": notes}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=2)
    out_dir = os.environ.get("OUT")
    if out_dir:
        with open(os.path.join(out_dir, "launch_overhead.json"), "w") as f:
            json.dump(doc, f, indent=2)
    print(f"\nwrote {OUT}")


if __name__ == "__main__":
    sys.exit(main())
