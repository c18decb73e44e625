"""Fused QKV and weight-only GEMM benchmarks: kaiodsl.ops against cuBLAS (torch.matmul f16) in one process.

For the Llama-3-8B (hidden 4096, H 32, H_kv 8, D 128) and 70B-like (8192, 64, 8, 128) projections
at M in {1, 4, 16, 64, 2048}, each row times (CUDA-graph replay, warm-up, median; bench_gemm.timed):

* ``qkv_project{,_int8,_int4}``: one launch, against three torch.matmul f16 calls (cuBLAS, the
  PyTorch user's baseline) and three separate kaiodsl calls of the same quantization
  (matmul / matmul_w8a16 / matmul_int4);
* ``matmul_w8a16`` and ``matmul_int4`` alone on the q projection's shape and at N = K = 8192,
  against one f16 torch.matmul of the same shape.

Up to M = 64 every operand set (weights, scales, the f16 copies cuBLAS reads) is cloned until the
copies hold >= 3x the L2 cache, and the timed calls rotate through them (``rotating``): one projection
replayed over one buffer would measure the L2, which int4 / int8 weights of the 8B shape fit in and
its f16 weights barely do not, where a model's decode step streams every layer's weights from DRAM.
Each row records its ``sets``.

Writes a table to stdout, benchmarks/results/qkv.json (``--quick``: qkv_quick.json) and a PNG.

    python benchmarks/bench_qkv.py [--quick] [--only qkv,gemm]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_gemm import rel_err  # noqa: E402
from kaiodsl.runtime.timing import cold_copies, timed_rotating  # noqa: E402

ROTATE_MAX_M = 64        # past it the weights are reused across the rows of a tile; no rotation


def copies(tensors, M: int) -> list:
    """cold_copies of ``tensors`` (>= 3x the L2) up to ROTATE_MAX_M rows, else just [tensors]."""
    return cold_copies(tensors) if M <= ROTATE_MAX_M else [list(tensors)]


SHAPES = {"llama3-8b": (4096, 32, 8, 128), "70b-like": (8192, 64, 8, 128)}
MS = [1, 4, 16, 64, 2048]
QUICK_MS = [1, 16, 2048]


def _weights(torch, kind, Ns, K, gs=128):
    """(fused op args, kwargs, separate(args, x): the three separate kaiodsl calls on an args set, f16
    weights for cuBLAS)."""
    from kaiodsl import ops

    dev = "cuda"
    if kind == "f16":
        ws = [(torch.randn(n, K, device=dev) * 0.02).half() for n in Ns]
        return ws, {}, lambda a, x: [ops.matmul(x, w, b_layout="nk") for w in a], ws
    if kind == "int8":
        qs = [torch.randint(-128, 128, (n, K), device=dev, dtype=torch.int8) for n in Ns]
        ss = [torch.rand(n, device=dev) * 1e-3 + 1e-4 for n in Ns]
        return (qs + ss, {}, lambda a, x: [ops.matmul_w8a16(x, a[i], a[3 + i]) for i in range(3)],
                [(q.float() * s[:, None]).half() for q, s in zip(qs, ss)])
    rng = np.random.default_rng(K)
    qs = [rng.integers(0, 16, (n, K), dtype=np.uint8) for n in Ns]
    ss = [torch.tensor((rng.uniform(0.5, 1.5, (n, K // gs)) * 1e-3).astype(np.float16), device=dev) for n in Ns]
    ps = [torch.tensor(ops.pack_int4(q), device=dev) for q in qs]
    w16 = [torch.tensor(ops.dequantize(q, s.cpu().numpy(), None, gs, np.float16), device=dev) for q, s in zip(qs, ss)]
    return (ps + ss, dict(group_size=gs),
            lambda a, x: [ops.matmul_int4(x, a[i], a[3 + i], group_size=gs) for i in range(3)], w16)


def bench_qkv(torch, shapes, ms, results):
    from kaiodsl import ops
    from kaiodsl.ops import qkv

    op = {"f16": ops.qkv_project, "int8": ops.qkv_project_int8, "int4": ops.qkv_project_int4}
    for sname, (K, H, Hkv, D) in shapes.items():
        Ns = (H * D, Hkv * D, Hkv * D)
        for kind in ("f16", "int8", "int4"):
            args, kw, sep, w16 = _weights(torch, kind, Ns, K)
            name = op[kind].__name__
            for M in ms:
                x = torch.randn(M, K, device="cuda", dtype=torch.float16)
                sets, sets16 = copies(args, M), copies(w16, M)
                t_f = timed_rotating([lambda a=a: op[kind](x, *a, **kw) for a in sets])
                t_s = timed_rotating([lambda a=a: sep(a, x) for a in sets])
                t_c = timed_rotating([lambda w=w: [x @ t.T for t in w] for w in sets16])
                err = max(rel_err(o, r) for o, r in zip(op[kind](x, *args, **kw), [x @ w.T for w in w16]))
                n_sets = len(sets)
                del sets, sets16
                path = qkv.qkv_choice(kind, M, K, Ns[0], Ns[1]).source     # which kernel ran (sm_90a or mma.sync)
                r = {"op": name, "shape": sname, "M": M, "N": sum(Ns), "K": K, "kaiodsl_ms": t_f,
                     "separate_ms": t_s, "cublas_ms": t_c, "vs_cublas": t_c / t_f, "vs_separate": t_s / t_f,
                     "rel_err": err, "path": path, "sets": n_sets}
                results.append(r)
                print(f"{name:<18} {sname:<10} M={M:<5} fused {t_f * 1e3:8.1f} us  3x kaiodsl {t_s * 1e3:8.1f} us  "
                      f"3x cuBLAS {t_c * 1e3:8.1f} us  vs cuBLAS {r['vs_cublas']:5.2f}x  vs separate "
                      f"{r['vs_separate']:5.2f}x  err {err:.1e}  [{'sm_90a' if 'one sm_90a launch' in path else 'mma.sync'}]", flush=True)


def gemm_weights(torch, N: int, K: int, gs: int = 128, device: str = "cuda"):
    """One [N, K] weight four ways: (f16 w16, int8 q8 with per-channel f32 s8, pack_int4 p4 with group
    scales s4, and the f16 dequantized w8f / w4f the references multiply by)."""
    from kaiodsl import ops

    w16 = (torch.randn(N, K, device=device) * 0.02).half()
    q8 = torch.randint(-128, 128, (N, K), device=device, dtype=torch.int8)
    s8 = torch.rand(N, device=device) * 1e-3 + 1e-4
    rng = np.random.default_rng(N)
    q4 = rng.integers(0, 16, (N, K), dtype=np.uint8)
    s4 = torch.tensor((rng.uniform(0.5, 1.5, (N, K // gs)) * 1e-3).astype(np.float16), device=device)
    p4 = torch.tensor(ops.pack_int4(q4), device=device)
    w8f = (q8.float() * s8[:, None]).half()
    w4f = torch.tensor(ops.dequantize(q4, s4.cpu().numpy(), None, gs, np.float16), device=device)
    return w16, q8, s8, p4, s4, w8f, w4f


def bench_gemm(torch, ms, results):
    from kaiodsl import ops

    gs = 128
    for N, K in [(4096, 4096), (8192, 8192)]:
        w16, q8, s8, p4, s4, w8f, w4f = gemm_weights(torch, N, K, gs)
        for M in ms:
            x = torch.randn(M, K, device="cuda", dtype=torch.float16)
            t_c = timed_rotating([lambda w=w: x @ w.T for w, in copies([w16], M)])
            c8, c4 = copies([q8, s8], M), copies([p4, s4], M)
            cands = [("matmul_w8a16", [lambda q=q, s=s: ops.matmul_w8a16(x, q, s) for q, s in c8], w8f),
                     ("matmul_int4", [lambda p=p, s=s: ops.matmul_int4(x, p, s, group_size=gs) for p, s in c4], w4f)]
            if M == 16:      # the decode kernel's other (n tiles, K split, unroll, n8 per warp) choices at M = 16
                cands += [(f"matmul_int4[p={pp}]", [lambda p=p, s=s, pp=pp: ops.matmul_int4(x, p, s, group_size=gs,
                                                                                         parallelism=pp)
                                                     for p, s in c4], w4f)
                          for pp in ((1, 8, 2, 4), (1, 8, 2, 2), (2, 8, 2, 2), (4, 4, 2, 1))]
            for name, calls, wf in cands:
                t_k = timed_rotating(calls)
                err = rel_err(calls[0](), x @ wf.T)
                results.append({"op": name, "shape": f"{N}x{K}", "M": M, "N": N, "K": K, "kaiodsl_ms": t_k,
                                "cublas_ms": t_c, "vs_cublas": t_c / t_k, "rel_err": err, "sets": len(calls)})
                print(f"{name:<18} {N}x{K:<5} M={M:<5} kaiodsl {t_k * 1e3:8.1f} us  cuBLAS f16 {t_c * 1e3:8.1f} us  "
                      f"vs cuBLAS {t_c / t_k:5.2f}x  err {err:.1e}", flush=True)


def plot(results, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    groups = sorted({(r["op"], r["shape"]) for r in results})
    fig, axes = plt.subplots(len(groups), 1, figsize=(10, 2.6 * len(groups)), squeeze=False)
    for ax, (op, shape) in zip(axes[:, 0], groups):
        rows = [r for r in results if r["op"] == op and r["shape"] == shape]
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [r["vs_cublas"] for r in rows], 0.4, label="vs cuBLAS f16")
        if "vs_separate" in rows[0]:
            ax.bar(x + 0.2, [r["vs_separate"] for r in rows], 0.4, label="vs 3 separate kaiodsl")
        ax.axhline(1.0, color="k", lw=0.6)
        ax.set_xticks(x, [f"M={r['M']}" for r in rows], fontsize=7)
        ax.set_ylabel("speed-up")
        ax.set_title(f"{op} {shape}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="M in {1, 16, 2048}, the 8B shape for QKV (< 3 min)")
    ap.add_argument("--only", default="qkv,gemm")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import torch

    torch.manual_seed(0)
    only = set(args.only.split(","))
    ms = QUICK_MS if args.quick else MS
    shapes = {"llama3-8b": SHAPES["llama3-8b"]} if args.quick else SHAPES
    results: list = []
    t0 = time.time()
    if "qkv" in only:
        bench_qkv(torch, shapes, ms, results)
    if "gemm" in only:
        bench_gemm(torch, [16, 2048] if args.quick else [1, 16, 64, 2048], results)
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "host": platform.node(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": round(time.time() - t0, 1)}
    out = Path(args.out or ROOT / "benchmarks" / "results" / ("qkv_quick.json" if args.quick else "qkv.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out} ({meta['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
