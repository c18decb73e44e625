"""Host time per eager op call: what kaiodsl's Python layer costs between the call and the launch.

An op whose kernel is shorter than its host path starves the GPU in eager mode (CUDA graphs hide it).
This times ``calls`` back-to-back calls without synchronising (the launch queue absorbs them, so the
wall time is the host's), against the PyTorch counterpart timed the same way, and with ``--profile``
prints the functions the first op spends its host time in (cProfile, cumulative).

    python benchmarks/host_overhead.py [--profile] [--calls 200]
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


def cases(torch, dev):
    from kaiodsl import ops

    h = torch.float16
    a = torch.randn(4096, 4096, device=dev, dtype=h)
    w = torch.randn(4096, 4096, device=dev, dtype=h)
    x1 = torch.randn(1, 4096, device=dev, dtype=h)
    q = torch.randn(4, 32, 1024, 128, device=dev, dtype=h)
    lin = torch.nn.functional.linear
    sdpa = torch.nn.functional.scaled_dot_product_attention
    return {
        "matmul 4096^3 (sm_90a kernel)": (lambda: ops.matmul(a, w, b_layout="nk"), lambda: lin(a, w)),
        "matmul M=1 N=K=4096 (decode)": (lambda: ops.matmul(x1, w, b_layout="nk"), lambda: lin(x1, w)),
        "attention B=4 H=32 S=1024 D=128": (lambda: ops.attention(q, q, q), lambda: sdpa(q, q, q)),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    import torch

    import kaiodsl.runtime as rt

    if not torch.cuda.is_available():
        print("host_overhead.py needs a CUDA GPU")
        return 1
    rt.set_backend("cuda")
    sync = torch.cuda.synchronize
    rows = {}
    print(f"{'op':<36}{'kaiodsl us':>12}{'torch us':>10}{'ratio':>8}")
    for name, (ours, theirs) in cases(torch, torch.device("cuda")).items():
        k, t = host_us(ours, args.calls, sync), host_us(theirs, args.calls, sync)
        rows[name] = {"kaiodsl_us": round(k, 2), "torch_us": round(t, 2), "ratio": round(k / t, 2)}
        print(f"{name:<36}{k:>12.1f}{t:>10.1f}{k / t:>8.2f}")
    if args.profile:
        for name, (ours, _) in cases(torch, torch.device("cuda")).items():
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
    doc = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "calls": args.calls,
           "what": "host wall time per eager call, no synchronisation inside the timed loop", "rows": rows}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=2)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
