"""Time every level of the GEMM tutorial on a CUDA GPU, beside torch.matmul (cuBLAS).

    python examples/gemm/bench.py [--quick] [--size 4096] [--update-readme]
    python examples/gemm/bench.py --readme-only      # rewrite the README table from the JSON

Square M = N = K problems (default 4096; --quick 2048), f16 inputs with B [N, K], fresh random data.
Timing is benchmarks/bench_gemm.py's ``timed`` (warm-up, then repeats replayed from a CUDA graph
between CUDA events, the median of several): one timing helper for the project. The scalar levels
1 and 2 are timed at most at SLOW_MAX^3 (they take tens of milliseconds a call); their row says
which size, and their fraction of cuBLAS is against cuBLAS at that size. cuBLAS writes f16, the
levels f32. Writes benchmarks/results/gemm_tutorial.json; --update-readme also rewrites the table in
examples/gemm/README.md between its two marker comments. Runs from a checkout (it imports
benchmarks/); this module has no ``run``, so the demo does not run it.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "gemm_tutorial.json"
README = HERE / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
PENDING = "pending (run examples/gemm/bench.py on the GPU)"
SLOW_MAX = 4096
LEVELS = {  # file stem -> what the level adds (the README table's second column)
    "01_naive": "one thread per output, f32 FMA from global memory",
    "02_smem_tiling": "shared-memory block tiles, 4x4 register tiles",
    "03_mma_ldmatrix": "mma.sync m16n8k16, ldmatrix from swizzled tiles",
    "04_cp_async_pipeline": "4-stage cp.async ring, grouped tile order",
    "05_hopper_ws": "TMA + mbarrier ring, wgmma, warp specialisation, persistent",
}
SLOW = ("01_naive", "02_smem_tiling")


def bench(size: int) -> list:
    """One row per level (and one for cuBLAS): TFLOPS, the fraction of cuBLAS, the relative error."""
    import torch

    sys.path.insert(0, str(ROOT))
    from benchmarks.bench_gemm import rel_err, timed

    from kaiodsl import demo

    cublas = {}

    def inputs(n):
        a = torch.randn(n, n, device="cuda", dtype=torch.float16)
        b = torch.randn(n, n, device="cuda", dtype=torch.float16)    # [N, K]
        return a, b

    def cublas_ms(n):
        if n not in cublas:
            a, b = inputs(n)
            cublas[n] = timed(lambda: torch.matmul(a, b.t()))
        return cublas[n]

    rows = [{"level": "cuBLAS", "what": "torch.matmul (f16 out)", "size": size, "ms": cublas_ms(size)}]
    for stem, what in LEVELS.items():
        n = min(size, SLOW_MAX) if stem in SLOW else size
        row = {"level": stem, "what": what, "size": n}
        rows.append(row)
        mod = demo.load_example(HERE / f"{stem}.py", HERE.parent)
        if getattr(mod, "DEMO_SKIP", None):
            row["note"] = mod.DEMO_SKIP
            continue
        try:
            a, b = inputs(n)
            out = torch.empty(n, n, device="cuda", dtype=torch.float32)
            mod.gemm(a, b, out=out)
            row["rel_err"] = rel_err(out, a.float() @ b.float().t())
            row["ms"] = timed(lambda: mod.gemm(a, b, out=out))
            row["cublas_ms"] = cublas_ms(n)
        except Exception as e:  # report the level and go on with the others
            row["note"] = f"{type(e).__name__}: {e}"
    for row in rows:
        if "ms" in row:
            row["tflops"] = 2.0 * row["size"] ** 3 / row["ms"] / 1e9
            row["fraction"] = row.get("cublas_ms", row["ms"]) / row["ms"]
        if "ms" in row:
            err = f"  err {row['rel_err']:.1e}" if "rel_err" in row else ""
            result = f"{row['ms']:9.3f} ms {row['tflops']:7.1f} TFLOPS  {row['fraction']:6.1%} of cuBLAS{err}"
        else:
            result = row["note"]
        print(f"{row['level']:<22} {row['size']:>6}^3  {result}", flush=True)
    return rows


def readme_table(data: dict | None) -> str:
    """The README's results table from the JSON ``data`` (None: every number pending)."""
    meta = (data or {}).get("meta", {})
    device = meta.get("device", "H200").replace("NVIDIA ", "")
    size = (data or {}).get("size", 4096)
    by_level = {r["level"]: r for r in (data or {}).get("results", [])}
    lines = [f"| level | what it adds | TFLOPS on {device} at {size}^3 | fraction of cuBLAS |",
             "|---|---|---|---|"]
    for stem, what in LEVELS.items():
        r = by_level.get(stem, {})
        if "tflops" in r:
            at = "" if r["size"] == size else f" (at {r['size']}^3)"
            tflops, frac = f"{r['tflops']:.1f}{at}", f"{r['fraction']:.1%}"
        elif "note" in r:                   # skipped or failed: say why
            tflops, frac = r["note"], "-"
        else:
            tflops = frac = PENDING
        lines.append(f"| [{stem}]({stem}.py) | {what} | {tflops} | {frac} |")
    if "cuBLAS" in by_level and "tflops" in by_level["cuBLAS"]:
        lines.append(f"| cuBLAS | torch.matmul, f16 out | {by_level['cuBLAS']['tflops']:.1f} | 100% |")
    return "\n".join(lines)


def update_readme(data: dict, readme: Path = README) -> None:
    """Replace the table between the START and END markers of ``readme``."""
    text = readme.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{readme_table(data)}\n{END}{tail}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2048^3 instead of 4096^3")
    ap.add_argument("--size", type=int, default=None, help="M = N = K (default 4096)")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--update-readme", action="store_true", help="rewrite the README table from the JSON")
    ap.add_argument("--readme-only", action="store_true", help="only rewrite the README table (no timing)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if not args.readme_only:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("bench.py: torch has no CUDA device; the tutorial benchmark runs on the GPU")
        size = args.size or (2048 if args.quick else 4096)
        t0 = time.time()
        rows = bench(size)
        meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "host": platform.node(),
                "date": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": round(time.time() - t0, 1)}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"meta": meta, "size": size, "results": rows}, indent=1))
        print(f"wrote {out}")
    if args.update_readme or args.readme_only:
        update_readme(json.loads(out.read_text()))
        print(f"rewrote the table in {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
