"""GEMM benchmarks: kaiodsl.ops against PyTorch (cuBLAS), side by side in one process.

CUDA events around each call, warm-up first, median of the timed repeats, fresh
random inputs (never zeros). Writes a table to stdout, JSON to
benchmarks/results/gemm.json and a PNG plot of TFLOPS by shape.

    python benchmarks/bench_gemm.py [--quick] [--only f16,bf16,int8,fp8,int4,decode] [--squares 4096,8192]
        [--decode-configs "1,8,2,2;1,8,1,2"]   (extra DecodeConfigs n_tiles,k_split,nw,unroll to time)

``--squares`` times only those M = N = K (no LLM shapes); ``--shapes 128x4096x4096,...`` only those shapes.
``--sm90-variants "store=direct;store=tma;split_k=4"`` also times, per f16/bf16 shape that runs the
sm_90a kernel, its chosen Sm90Config with those fields replaced (one row each, op ``..._sm90var``). int8 runs against ``torch._int_mm`` (the f32
output of ``ops.matmul_int8`` against its int32 one), fp8 (``ops.matmul_fp8``, e4m3, per-tensor scales,
bf16 out) against ``torch._scaled_mm`` with the same scales and output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kaiodsl.runtime.timing import timed, timed_eager  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
import triton_peer  # noqa: E402

SQUARES = [1024, 2048, 4096, 8192]
LLM_M = [1, 16, 128, 2048, 8192]
LLM_NK = [(4096, 4096), (11008, 4096), (4096, 11008), (14336, 4096)]
DECODE = [(m, n, k) for m in (1, 16) for n, k in ((4096, 4096), (14336, 4096))]


def rel_err(out, ref) -> float:
    import torch

    out, ref = out.float(), ref.float()
    return float(torch.linalg.norm(out - ref) / torch.linalg.norm(ref))


def bench_float(dtype_name: str, shapes, results: list, variants=()) -> None:
    import torch

    import kaiodsl.ops as ops

    dt = {"f16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
    for M, N, K in shapes:
        a = torch.randn(M, K, device="cuda", dtype=dt)
        b = torch.randn(N, K, device="cuda", dtype=dt)  # nn.Linear layout [N, K]
        ref = torch.matmul(a, b.t())
        cfg = ops.matmul_config(M, N, K, dtype_name, b_layout="nk")
        out = ops.matmul(a, b, b_layout="nk", out_dtype=dtype_name)
        err = rel_err(out, ref)
        t_k = timed(lambda: ops.matmul(a, b, b_layout="nk", out_dtype=dtype_name))
        t_t = timed(lambda: torch.matmul(a, b.t()))
        peer = {}
        if M == N == K and M >= 1024 and triton_peer.matmul(a, b) is not None:   # the Python-DSL peer, same timing
            t_p = timed(lambda: triton_peer.matmul(a, b))
            peer = {"triton_ms": t_p, "triton_tflops": 2.0 * M * N * K / t_p / 1e9, "vs_triton": t_p / t_k}
        _record(results, f"matmul_{dtype_name}", M, N, K, t_k, t_t, err, config=str(cfg), **peer)
        if variants and type(cfg).__name__ == "Sm90Config":
            bench_sm90_variants(dtype_name, a, b, ref, cfg, variants, t_t, results)


def bench_sm90_variants(dtype_name: str, a, b, ref, base, variants, t_t: float, results: list) -> None:
    """The sm_90a kernel with ``base`` changed by each of ``variants`` (dicts of Sm90Config fields)."""
    from dataclasses import replace

    import kaiodsl.ops as ops

    M, K = a.shape
    N = b.shape[0]
    for v in variants:
        cfg = replace(base, **v)
        out = ops.matmul(a, b, b_layout="nk", out_dtype=dtype_name, config=cfg)
        t_k = timed(lambda: ops.matmul(a, b, b_layout="nk", out_dtype=dtype_name, config=cfg))
        _record(results, f"matmul_{dtype_name}_sm90var", M, N, K, t_k, t_t, rel_err(out, ref), config=str(cfg))


def _variants(text: str) -> list:
    """``"store=direct;split_k=4,store=tma"`` -> [{"store": "direct"}, {"split_k": 4, "store": "tma"}]."""
    out = []
    for item in filter(None, (x.strip() for x in text.split(";"))):
        fields = dict(kv.split("=") for kv in item.split(","))
        out.append({k: int(v) if v.isdigit() else v for k, v in fields.items()})
    return out


def bench_decode(dtype_name: str, shapes, extra: list, results: list) -> None:
    """M <= 16, b [N, K]: the default (decode) config, each of ``extra`` and the tiled kernel, against
    torch.matmul(a, b.t()); then b [K, N] (the tiled kernel) against torch.matmul(a, b)."""
    import torch

    import kaiodsl.ops as ops
    from kaiodsl.ops.matmul import tiled_config

    dt = {"f16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
    for M, N, K in shapes:
        a = torch.randn(M, K, device="cuda", dtype=dt)
        b = torch.randn(N, K, device="cuda", dtype=dt)
        b_kn = b.t().contiguous()
        t_t = timed(lambda: torch.matmul(a, b.t()))
        t_kn = timed(lambda: torch.matmul(a, b_kn))
        ref = torch.matmul(a, b.t())
        runs = [(ops.matmul_config(M, N, K, dtype_name, "nk"), "nk", b, t_t)]
        runs += [(c, "nk", b, t_t) for c in extra] + [(tiled_config(M, N, K), "nk", b, t_t)]
        runs += [(ops.matmul_config(M, N, K, dtype_name, "kn"), "kn", b_kn, t_kn)]
        for cfg, lay, w, t_ref in runs:
            out = ops.matmul(a, w, b_layout=lay, config=cfg)
            err = rel_err(out, ref)
            t_k = timed(lambda: ops.matmul(a, w, b_layout=lay, config=cfg))
            _record(results, f"matmul_{dtype_name}_decode_{lay}", M, N, K, t_k, t_ref, err, config=str(cfg),
                    kaiodsl_gbps=2.0 * N * K / t_k / 1e6)


def _int8_config(M: int, N: int, K: int) -> str:
    """What ops.matmul_int8 runs for b [N, K] with config='auto' (as its own choice does)."""
    import kaiodsl.ops as ops
    from kaiodsl.ops import gemm_sm90

    if gemm_sm90.wants_sm90(M, N, K, "nk") and K % 16 == 0:
        return "sm90 " + str(gemm_sm90.sm90_config(M, N, K, gemm_sm90.sm_count(), "s32"))
    return str(ops.int8_config(M, N, K))


def bench_int8(shapes, results: list) -> None:
    import torch

    import kaiodsl.ops as ops

    for M, N, K in shapes:
        a = torch.randint(-127, 128, (M, K), device="cuda", dtype=torch.int8)
        b = torch.randint(-127, 128, (N, K), device="cuda", dtype=torch.int8)
        ref = torch._int_mm(a, b.t()).float() if M > 16 else (a.float() @ b.float().t())
        out = ops.matmul_int8(a, b, 1.0)
        err = rel_err(out, ref)
        t_k = timed(lambda: ops.matmul_int8(a, b, 1.0))
        t_t = timed(lambda: torch._int_mm(a, b.t())) if M > 16 else float("nan")
        row = _record(results, "matmul_int8", M, N, K, t_k, t_t, err, config=_int8_config(M, N, K),
                      torch_op="torch._int_mm")
        if "sm90" in row["config"] and M == N == K:    # the mma.sync kernel too (sm_80/sm_89's)
            cfg = ops.int8_config(M, N, K)
            err = rel_err(ops.matmul_int8(a, b, 1.0, config=cfg), ref)
            t_s = timed(lambda: ops.matmul_int8(a, b, 1.0, config=cfg))
            _record(results, "matmul_int8_mma_sync", M, N, K, t_s, t_t, err, config=str(cfg), torch_op="torch._int_mm")


def bench_fp8(shapes, results: list) -> None:
    """e4m3 a [M, K] x b [N, K] with per-tensor f32 scales (device tensors) into bf16."""
    import torch

    import kaiodsl.ops as ops
    from kaiodsl.ops import gemm_sm90

    for M, N, K in shapes:
        a = torch.randn(M, K, device="cuda").to(torch.float8_e4m3fn)
        b = torch.randn(N, K, device="cuda").to(torch.float8_e4m3fn)
        sa = torch.tensor(0.5, device="cuda")
        sb = torch.tensor(0.25, device="cuda")
        ref = torch._scaled_mm(a, b.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)
        out = ops.matmul_fp8(a, b, sa, sb, out_dtype="bf16")
        err = rel_err(out, ref)
        t_k = timed(lambda: ops.matmul_fp8(a, b, sa, sb, out_dtype="bf16"))
        t_t = timed(lambda: torch._scaled_mm(a, b.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16))
        _record(results, "matmul_fp8", M, N, K, t_k, t_t, err,
                config=str(gemm_sm90.sm90_config(M, N, K, gemm_sm90.sm_count())), torch_op="torch._scaled_mm")


def bench_int4(shapes, results: list) -> None:
    import torch

    import kaiodsl.ops as ops
    from kaiodsl.ops.int4_pack import pack_int4

    for M, N, K in shapes:
        g = 128
        q = np.random.randint(0, 16, (N, K), dtype=np.uint8)
        scales = (np.random.rand(N, K // g).astype(np.float32) * 0.02 + 0.001).astype(np.float16)
        wp = torch.from_numpy(pack_int4(q)).cuda()
        sc = torch.from_numpy(scales).cuda()
        a = torch.randn(M, K, device="cuda", dtype=torch.float16)
        w = torch.from_numpy(((q.astype(np.float32) - 8) * np.repeat(scales.astype(np.float32), g, 1))
                             .astype(np.float16)).cuda()
        ref = torch.matmul(a, w.t())
        out = ops.matmul_int4(a, wp, sc, group_size=g)
        err = rel_err(out, ref)
        t_k = timed(lambda: ops.matmul_int4(a, wp, sc, group_size=g))
        t_t = timed(lambda: torch.matmul(a, w.t()))
        e_k = timed_eager(lambda: ops.matmul_int4(a, wp, sc, group_size=g))
        e_t = timed_eager(lambda: torch.matmul(a, w.t()))
        _record(results, "matmul_int4", M, N, K, t_k, t_t, err, group_size=g,
                torch_op="torch.matmul f16 (dequantized weights)", kaiodsl_eager_ms=e_k, torch_eager_ms=e_t,
                weight_GBps=(N * K / 2 + M * K * 2 + M * N * 2) / t_k / 1e6)


def _record(results: list, op: str, M: int, N: int, K: int, t_k: float, t_t: float, err: float, **extra) -> dict:
    """One result row (times in ms, TFLOP/s of 2MNK, ratio = torch / kaiodsl time) appended and printed."""
    flops = 2.0 * M * N * K
    row = {"op": op, "M": M, "N": N, "K": K, "kaiodsl_ms": t_k, "torch_ms": t_t, "kaiodsl_tflops": flops / t_k / 1e9,
           "torch_tflops": flops / t_t / 1e9, "ratio": t_t / t_k, "rel_err": err, **extra}
    results.append(row)
    _row(row)
    return row


def _row(r: dict) -> None:
    print(f"{r['op']:<14} {r['M']:>6} {r['N']:>6} {r['K']:>6}  kaiodsl {r['kaiodsl_ms']:8.3f} ms "
          f"{r['kaiodsl_tflops']:7.1f} T/s   torch {r['torch_ms']:8.3f} ms {r['torch_tflops']:7.1f} T/s   "
          f"ratio {r['ratio']:5.2f}   err {r['rel_err']:.1e}" + (f"   {r['config']}" if "config" in r else "")
          + (f"   triton {r['triton_tflops']:6.1f} T/s ({r['vs_triton']:.2f}x)" if "triton_ms" in r else ""),
          flush=True)


def plot(results: list, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    ops_ = sorted({r["op"] for r in results})
    fig, axes = plt.subplots(len(ops_), 1, figsize=(12, 3.2 * len(ops_)), squeeze=False)
    for ax, op in zip(axes[:, 0], ops_):
        rows = [r for r in results if r["op"] == op]
        labels = [f"{r['M']}x{r['N']}x{r['K']}" + (f" {r['config']}" if "decode" in op else "") for r in rows]
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [r["kaiodsl_tflops"] for r in rows], 0.4, label="kaiodsl")
        ax.bar(x + 0.2, [r["torch_tflops"] for r in rows], 0.4, label=rows[0].get("torch_op", "torch.matmul"))
        ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("TFLOP/s")
        ax.set_title(op)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="f16,bf16,int8,fp8,int4,decode")
    ap.add_argument("--squares", default="", help="only these square sizes, e.g. '4096,8192' (no LLM shapes)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gemm.json"))
    ap.add_argument("--decode-configs", default="", help="extra DecodeConfigs for the decode rows, "
                    "'n_tiles,k_split,nw,unroll;...'")
    ap.add_argument("--shapes", default="", help="only these shapes, e.g. '128x4096x4096,2048x14336x4096'")
    ap.add_argument("--sm90-variants", default="", help="Sm90Config field changes to time beside the chosen "
                    "config, e.g. 'store=direct;store=tma;split_k=4'")
    args = ap.parse_args()
    import torch

    only = set(args.only.split(","))
    squares = [(s, s, s) for s in (SQUARES[2:] if args.quick else SQUARES)]
    llm = [(2048, 4096, 4096), (2048, 14336, 4096)] if args.quick else [(m, n, k) for m in LLM_M for n, k in LLM_NK]
    if args.squares:
        squares, llm = [(int(s), int(s), int(s)) for s in args.squares.split(",")], []
    if args.shapes:
        squares, llm = [], [tuple(int(x) for x in sh.split("x")) for sh in args.shapes.split(",")]
    variants = _variants(args.sm90_variants)
    results: list = []
    t0 = time.time()
    for name in ("f16", "bf16"):
        if name in only:
            bench_float(name, squares + llm, results, variants)
    if "decode" in only or args.decode_configs:
        from kaiodsl.ops import DecodeConfig

        extra = [DecodeConfig(*map(int, c.split(","))) for c in args.decode_configs.split(";") if c.strip()]
        for name in ("f16", "bf16"):
            bench_decode(name, DECODE, extra, results)
    if "int8" in only:
        bench_int8(squares[:1] + [(m, n, k) for m, n, k in llm if m > 16] if args.quick else
                   squares + [(m, n, k) for m, n, k in llm if m > 16], results)
    if "fp8" in only:
        bench_fp8(squares[:1] + [(m, n, k) for m, n, k in llm if m > 16] if args.quick else
                  squares + [(m, n, k) for m, n, k in llm if m > 16], results)
    if "int4" in only:
        bench_int4([(1, 8192, 8192), (16, 8192, 8192), (1, 4096, 4096), (16, 4096, 11008),
                    (2048, 4096, 4096), (2048, 14336, 4096)], results)     # M = 2048: the sm_90a W4 kernel
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "host": platform.node(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": round(time.time() - t0, 1)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
