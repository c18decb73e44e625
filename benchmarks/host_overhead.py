"""Host time per eager op call: what kaiodsl's Python layer costs between the call and the launch.

An op whose kernel is shorter than its host path starves the GPU in eager mode (CUDA graphs hide it).
This times ``calls`` back-to-back calls without synchronising (the launch queue absorbs them, so the
wall time is the host's), against the PyTorch counterpart timed the same way, and with ``--profile``
prints the functions the first op spends its host time in (cProfile, cumulative).

    python benchmarks/host_overhead.py [--profile] [--calls 200]
    python benchmarks/host_overhead.py --fake [--profile]   # no GPU: a fake driver (fake_cuda.py)

``--fake`` runs the same Python path against a fake H200 with CPU tensors standing in for device
tensors (nothing is computed); its reference column is ``torch.empty`` of the output (the allocation
every op call makes, which costs more on the CPU than from PyTorch's CUDA caching allocator), and it
also times the pieces of the path (TensorMap construction and encoding, operand inspection, the
config choice) one by one.
"""

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import time

OUT = os.path.join(os.path.dirname(__file__), "results", "host_overhead.json")


def host_us(fn, calls: int, sync, repeats: int = 7) -> float:
    """Median over ``repeats`` of the wall time per call of ``calls`` calls, the GPU drained before each."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls * 1e6)
    sync()
    return statistics.median(times)


def cases(torch, dev, fake: bool = False):
    from kaiodsl import ops

    h = torch.float16
    a = torch.randn(4096, 4096, device=dev, dtype=h)
    w = torch.randn(4096, 4096, device=dev, dtype=h)
    x1 = torch.randn(1, 4096, device=dev, dtype=h)
    q = torch.randn(4, 32, 1024, 128, device=dev, dtype=h)
    lin = torch.nn.functional.linear
    sdpa = torch.nn.functional.scaled_dot_product_attention
    if fake:  # the reference: the output allocation alone (the CPU cannot run torch's kernels meaningfully)
        lin = lambda x, w: torch.empty(x.shape[0], w.shape[0], dtype=h)  # noqa: E731
        sdpa = lambda q, k, v: torch.empty(q.shape, dtype=h)  # noqa: E731
    return {
        "matmul 4096^3 (sm_90a kernel)": (lambda: ops.matmul(a, w, b_layout="nk"), lambda: lin(a, w)),
        "matmul M=1 N=K=4096 (decode)": (lambda: ops.matmul(x1, w, b_layout="nk"), lambda: lin(x1, w)),
        "attention B=4 H=32 S=1024 D=128": (lambda: ops.attention(q, q, q), lambda: sdpa(q, q, q)),
    }


def pieces(torch) -> dict:
    """Microseconds per call of the pieces of the sm_90a matmul's host path (CPU tensors, fake driver)."""
    import timeit

    from kaiodsl import TensorMap, ops
    from kaiodsl.compiler import default_arch
    from kaiodsl.ops._common import inspect_array

    a = torch.randn(4096, 4096, dtype=torch.float16)
    x1 = torch.randn(1, 4096, dtype=torch.float16)
    tm = TensorMap(a, (128, 64), swizzle=128, l2_promotion=256)
    ptr = a.data_ptr()
    items = {
        "TensorMap(a, box, swizzle=128, l2_promotion=256)": lambda: TensorMap(a, (128, 64), swizzle=128,
                                                                                l2_promotion=256),
        "TensorMap.device_bytes(address) (cached)": lambda: tm.device_bytes(ptr),
        "inspect_array(torch tensor)": lambda: inspect_array("a", a, "matmul"),
        "matmul_choice(4096, 4096, 4096)": lambda: ops.matmul_choice(4096, 4096, 4096, "f16", "nk"),
        "matmul_choice(1, 4096, 4096) (decode)": lambda: ops.matmul_choice(1, 4096, 4096, "f16", "nk"),
        "default_arch()": default_arch,
        "ops.matmul(x1, w) M=1 (decode)": lambda: ops.matmul(x1, a, b_layout="nk"),
    }
    out = {}
    print(f"\n{'piece':<52}{'us/call':>10}")
    for name, fn in items.items():
        fn()
        n = 2000
        us = min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6
        out[name] = round(us, 2)
        print(f"{name:<52}{us:>10.2f}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--fake", action="store_true", help="no GPU: time the host path against a fake driver")
    args = ap.parse_args()
    import torch

    import kaiodsl.runtime as rt

    if args.fake:
        sys.path.insert(0, os.path.dirname(__file__))
        import fake_cuda

        fake_cuda.install()
        dev, sync = torch.device("cpu"), lambda: None
    elif not torch.cuda.is_available():
        print("host_overhead.py needs a CUDA GPU (or --fake)")
        return 1
    else:
        rt.set_backend("cuda")
        dev, sync = torch.device("cuda"), torch.cuda.synchronize
    rows = {}
    ref = "empty() us" if args.fake else "torch us"
    print(f"{'op':<36}{'kaiodsl us':>12}{ref:>12}{'ratio':>8}")
    for name, (ours, theirs) in cases(torch, dev, args.fake).items():
        k, t = host_us(ours, args.calls, sync), host_us(theirs, args.calls, sync)
        rows[name] = {"kaiodsl_us": round(k, 2), "torch_us": round(t, 2), "ratio": round(k / t, 2)}
        print(f"{name:<36}{k:>12.1f}{t:>12.1f}{k / t:>8.2f}")
    if args.fake:
        rows["pieces"] = pieces(torch)
    if args.profile:
        for name, (ours, _) in cases(torch, dev, args.fake).items():
            ours()
            sync()
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(args.calls):
                ours()
            prof.disable()
            sync()
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(18)
            print(f"\n== {name}: {args.calls} calls, by own time ==")
            print("\n".join(line for line in s.getvalue().splitlines() if line.strip())[:4000])
    doc = {"device": "fake H200 (CPU)" if args.fake else torch.cuda.get_device_name(), "torch": torch.__version__, "calls": args.calls,
           "what": "host wall time per eager call, no synchronisation inside the timed loop", "rows": rows}
    out = OUT.replace(".json", "_fake.json") if args.fake else OUT
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(doc, f, indent=2)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
