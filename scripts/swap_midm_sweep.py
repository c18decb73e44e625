"""The swap-AB kernel (ops/gemm_sm90_w4_swap.py) past the decode sizes: its heuristic tiling
(``swap_config``) with and without ``overlap`` (two fragment register sets, a slot of wgmma work in
flight) for matmul_w8a16 / matmul_int4 at M = 32 .. 2048, and the fused int8 / int4 QKV projections at
M = 32 / 64 against their mma.sync kernels; f16 cuBLAS (three matmuls for QKV) in the same process. The
weights rotated over >= 3x the L2 up to M = 128 (kaiodsl.runtime.timing), CUDA graph replay, median.

    python3 scripts/swap_midm_sweep.py
"""

import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bench_gemm import rel_err  # noqa: E402
from bench_qkv import gemm_weights  # noqa: E402
from kaiodsl import ops  # noqa: E402
from kaiodsl.ops import qkv as qmod  # noqa: E402
from kaiodsl.ops.gemm_sm90_w4_swap import swap_config  # noqa: E402
from kaiodsl.runtime.timing import cold_copies, timed_rotating  # noqa: E402

GS = 128


def rot(ts, M):
    return cold_copies(ts) if M <= 128 else [list(ts)]


def gemms():
    for N, K in ((4096, 4096), (8192, 8192), (14336, 4096)):
        w16, q8, s8, p4, s4, w8f, w4f = gemm_weights(torch, N, K, GS)
        for M in (32, 64, 128, 2048):
            x = torch.randn(M, K, device="cuda", dtype=torch.float16)
            t_c = timed_rotating([lambda w=w: x @ w.T for w, in rot([w16], M)])
            for kind, cs, wf in (("int8", rot([q8, s8], M), w8f), ("int4", rot([p4, s4], M), w4f)):
                if kind == "int8":
                    op = lambda q, s, cfg=None: ops.matmul_w8a16(x, q, s, config=cfg)      # noqa: E731
                else:
                    op = lambda q, s, cfg=None: ops.matmul_int4(x, q, s, group_size=GS, config=cfg)  # noqa: E731
                base = swap_config(M, N, K, 132, kind)
                line = f"{kind} {N}x{K} M={M}: cuBLAS {t_c * 1e3:6.1f} us"
                for cfg in (base, dataclasses.replace(base, overlap=True)):
                    t = timed_rotating([lambda q=q, s=s, cfg=cfg: op(q, s, cfg) for q, s in cs])
                    err = rel_err(op(*cs[0], cfg), x @ wf.T)
                    line += f"; {cfg} {t * 1e3:6.1f} us {t_c / t:.2f}x (err {err:.0e})"
                print(line, flush=True)


def qkvs():
    for name, (hidden, H, Hkv, D) in (("llama3-8b", (4096, 32, 8, 128)), ("70b-like", (8192, 64, 8, 128))):
        Nq, Nkv = H * D, Hkv * D
        ns = (Nq, Nkv, Nkv)
        w16 = [(torch.randn(n, hidden, device="cuda") * 0.02).half() for n in ns]
        q8 = [torch.randint(-128, 128, (n, hidden), device="cuda", dtype=torch.int8) for n in ns]
        s8 = [(torch.rand(n, device="cuda") * 1e-3 + 1e-4).half() for n in ns]
        rng = np.random.default_rng(hidden)
        q4 = [rng.integers(0, 16, (n, hidden), dtype=np.uint8) for n in ns]
        p4 = [torch.tensor(ops.pack_int4(q), device="cuda") for q in q4]
        s4 = [torch.tensor((rng.uniform(0.5, 1.5, (n, hidden // GS)) * 1e-3).astype(np.float16), device="cuda")
              for n in ns]
        for M in (32, 64):
            x = torch.randn(M, hidden, device="cuda", dtype=torch.float16)
            t_c = timed_rotating([lambda w=w: [x @ t.T for t in w] for w in rot(w16, M)])
            for kind, ts in (("int8", q8 + s8), ("int4", p4 + s4)):
                fn = ops.qkv_project_int8 if kind == "int8" else ops.qkv_project_int4
                mma = qmod.qkv_config(kind, M, hidden, "", Nq + 2 * Nkv)
                base = swap_config(M, Nq + 2 * Nkv, hidden, 132, kind)
                line = f"qkv_{kind} {name} M={M}: 3x cuBLAS {t_c * 1e3:6.1f} us"
                for cfg in (mma, base, dataclasses.replace(base, overlap=True)):
                    t = timed_rotating([lambda t_=t_, cfg=cfg: fn(x, *t_, config=cfg) for t_ in rot(ts, M)])
                    line += f"; {cfg} {t * 1e3:6.1f} us {t_c / t:.2f}x"
                print(line, flush=True)


if __name__ == "__main__":
    gemms()
    qkvs()
