"""Measure the W4A16 decode kernel's parallelism options (n-tiles per block, K split over warps,
unrolled 16-byte loads) against f16 torch.matmul at one shape; CUDA-graph replay timing.

    python benchmarks/tune_int4.py [--shape 1,8192,8192]
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gemm import rel_err, timed  # noqa: E402

OPTIONS = [(4, 4, 2, 1), (2, 4, 2, 2), (2, 4, 2, 4), (1, 4, 2, 4), (4, 4, 2, 2), (2, 2, 2, 4), (1, 8, 2, 4), (2, 4, 1, 4)]


def main():
    import torch

    import kaiodsl.ops as ops

    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="1,8192,8192")
    args = ap.parse_args()
    M, N, K = (int(x) for x in args.shape.split(","))
    g = 128
    q = np.random.randint(0, 16, (N, K), dtype=np.uint8)
    scales = (np.random.rand(N, K // g) * 0.02 + 0.001).astype(np.float16)
    wp = torch.from_numpy(ops.pack_int4(q)).cuda()
    sc = torch.from_numpy(scales).cuda()
    a = torch.randn(M, K, device="cuda", dtype=torch.float16)
    w = torch.from_numpy(((q.astype(np.float32) - 8) * np.repeat(scales.astype(np.float32), g, 1))
                         .astype(np.float16)).cuda()
    ref = torch.matmul(a, w.t())
    t_ref = timed(lambda: torch.matmul(a, w.t()))
    print(f"torch.matmul f16 {M}x{N}x{K}: {t_ref * 1e3:.1f} us", flush=True)
    for opt in OPTIONS:
        out = ops.matmul_int4(a, wp, sc, group_size=g, parallelism=opt)
        t = timed(lambda: ops.matmul_int4(a, wp, sc, group_size=g, parallelism=opt))
        gbs = (N * K / 2 + M * K * 2 + M * N * 2 + N * K // g * 2) / t / 1e6
        print(f"n_tiles,k_split,unroll,nw={opt}: {t * 1e3:6.1f} us  {gbs:6.0f} GB/s  x{t_ref / t:.2f} vs f16  "
              f"err {rel_err(out, ref):.1e}", flush=True)


if __name__ == "__main__":
    main()
