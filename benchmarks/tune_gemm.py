"""Try GEMM tile configurations at one shape on the GPU; prints TFLOPS, the ratio to torch.matmul
and the relative error of each. Used to pick the table in ops/matmul.py (results in benchmarks/results).

    python benchmarks/tune_gemm.py [--shape 4096,4096,4096] [--dtype f16] [--layout nk]
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_gemm import rel_err, timed  # noqa: E402

CANDIDATES = [
    dict(block_m=128, block_n=128, block_k=32, warps_m=2, warps_n=2, stages=4),
    dict(block_m=128, block_n=128, block_k=32, warps_m=2, warps_n=2, stages=5),
    dict(block_m=128, block_n=128, block_k=32, warps_m=2, warps_n=2, stages=6),
    dict(block_m=128, block_n=128, block_k=64, warps_m=2, warps_n=2, stages=4),
    dict(block_m=128, block_n=256, block_k=64, warps_m=2, warps_n=4, stages=3),
    dict(block_m=256, block_n=128, block_k=64, warps_m=4, warps_n=2, stages=3),
    dict(block_m=128, block_n=64, block_k=32, warps_m=2, warps_n=1, stages=4),
    dict(block_m=64, block_n=128, block_k=32, warps_m=1, warps_n=2, stages=4),
]
SMALL = [
    dict(block_m=16, block_n=64, block_k=64, warps_m=1, warps_n=2, stages=4),
    dict(block_m=32, block_n=64, block_k=64, warps_m=1, warps_n=2, stages=4),
    dict(block_m=16, block_n=128, block_k=64, warps_m=1, warps_n=4, stages=4),
    dict(block_m=64, block_n=64, block_k=32, warps_m=2, warps_n=2, stages=4),
    dict(block_m=64, block_n=128, block_k=32, warps_m=2, warps_n=2, stages=4),
    dict(block_m=32, block_n=128, block_k=64, warps_m=2, warps_n=4, stages=4),
]
# int8: block_k counts bytes-sized elements (64 -> the same 64-byte rows as f16's 32).
CANDIDATES_INT8 = [dict(c, block_k=c["block_k"] * 2) for c in CANDIDATES]


def main():
    import torch

    import kaiodsl
    import kaiodsl.ops as ops

    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="4096,4096,4096")
    ap.add_argument("--dtype", default="f16")
    ap.add_argument("--layout", default="nk")
    ap.add_argument("--out", default=None)
    ap.add_argument("--kind", default="float", choices=["float", "int8"])
    ap.add_argument("--small", action="store_true", help="the small-M candidate tiles")
    args = ap.parse_args()
    M, N, K = (int(x) for x in args.shape.split(","))
    if args.kind == "int8":
        return tune_int8(M, N, K, args)
    dt = {"f16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    a = torch.randn(M, K, device="cuda", dtype=dt)
    b = torch.randn(N, K, device="cuda", dtype=dt) if args.layout == "nk" else torch.randn(K, N, device="cuda", dtype=dt)
    ref = torch.matmul(a, b.t() if args.layout == "nk" else b)
    t_ref = timed(lambda: torch.matmul(a, b.t() if args.layout == "nk" else b))
    flops = 2.0 * M * N * K
    print(f"torch.matmul {M}x{N}x{K} {args.dtype}: {t_ref:.3f} ms {flops / t_ref / 1e9:.1f} TFLOP/s", flush=True)
    rows = []
    for c in (SMALL if args.small else CANDIDATES):
        cfg = ops.GemmConfig(**c)
        try:
            out = ops.matmul(a, b, b_layout=args.layout, config=cfg, out_dtype=args.dtype)
            err = rel_err(out, ref)
            t = timed(lambda: ops.matmul(a, b, b_layout=args.layout, config=cfg, out_dtype=args.dtype))
            k = ops.matmul_kernel_for(a, b, args.layout, cfg, args.dtype)
            regs = k.registers
            row = dict(config=str(cfg), ms=t, tflops=flops / t / 1e9, ratio=t_ref / t, err=err, regs=regs)
        except kaiodsl.KaioError as e:
            row = dict(config=str(cfg), error=str(e)[:300])
        rows.append(row)
        print(row, flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"shape": [M, N, K], "dtype": args.dtype, "torch_ms": t_ref,
                                              "results": rows}, indent=1))


def tune_int8(M, N, K, args):
    import torch

    import kaiodsl
    import kaiodsl.ops as ops

    a = torch.randint(-127, 128, (M, K), device="cuda", dtype=torch.int8)
    b = torch.randint(-127, 128, (N, K), device="cuda", dtype=torch.int8)
    ref = torch._int_mm(a, b.t()).float()
    t_ref = timed(lambda: torch._int_mm(a, b.t()))
    flops = 2.0 * M * N * K
    print(f"torch._int_mm {M}x{N}x{K}: {t_ref:.3f} ms {flops / t_ref / 1e9:.1f} TOP/s", flush=True)
    rows = []
    for c in CANDIDATES_INT8:
        cfg = ops.GemmConfig(**c)
        try:
            out = ops.matmul_int8(a, b, 1.0, config=cfg)
            err = rel_err(out, ref)
            t = timed(lambda: ops.matmul_int8(a, b, 1.0, config=cfg))
            row = dict(config=str(cfg), ms=t, tops=flops / t / 1e9, ratio=t_ref / t, err=err)
        except kaiodsl.KaioError as e:
            row = dict(config=str(cfg), error=str(e)[:300])
        rows.append(row)
        print(row, flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"shape": [M, N, K], "kind": "int8", "torch_ms": t_ref,
                                              "results": rows}, indent=1))


if __name__ == "__main__":
    main()
