"""``python -m kaiodsl tune``: measure configs on this GPU and merge the winners into its table.

    python -m kaiodsl tune [--op matmul] [--dtype f16[,bf16]] [--layout nk[,kn]]
                           [--shapes 4096x4096x4096,1x4096x4096 | --preset llm]
                           [--out PATH] [--reps N] [--budget-seconds S] [--max-candidates N]
                           [--backend cuda|sim]

Shapes are MxNxK. The table goes to ``--out`` (default: the shipped table of this device,
``kaiodsl/tuning/tables/<device>.json``, which in a checkout is the file to commit); entries of
other shapes already there are kept. Without a CUDA GPU it stops with exit code 2, unless
``--backend sim`` runs the same machinery in the simulator (tiny shapes only; for tests).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..errors import ArgumentError, NoDeviceError
from . import registry, table
from .tuner import Settings, Tuner

# Llama-3-8B's projections (N, K): q/o (4096, 4096), fused qkv (6144, 4096), gate/up (14336, 4096),
# down (4096, 14336), lm head (128256, 4096); M from decode (1) to prefill (8192 tokens)
LLAMA3_8B_NK = ((4096, 4096), (6144, 4096), (14336, 4096), (4096, 14336), (128256, 4096))
PRESETS = {
    "llm": [(m, n, k) for m in (1, 16, 128, 2048, 8192) for n, k in LLAMA3_8B_NK],
    "square": [(s, s, s) for s in (1024, 2048, 4096, 8192)],
}
SIM_OUT = "kaiodsl-tune-simulator.json"


def add_parser(sub) -> None:
    """The ``tune`` subcommand of kaiodsl.cli."""
    t = sub.add_parser("tune", help="time tile configs on this GPU and write its tuning table",
                       description=__doc__.split("\n\n")[0])
    t.add_argument("--op", default="matmul", help="the tunable op (default matmul)")
    t.add_argument("--dtype", default=None, help="dtype(s), comma-separated (default: the op's first, f16)")
    t.add_argument("--layout", default=None, help="b layout(s), comma-separated (default: the op's first, nk)")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--shapes", default=None, help="MxNxK,MxNxK,... (e.g. 4096x4096x4096,1x4096x4096)")
    g.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="llm: Llama-3-8B projections at M = 1, 16, 128, 2048, 8192; square: 1024..8192 cubes")
    t.add_argument("--out", default=None, help="the table file to merge into (default: this device's shipped table)")
    t.add_argument("--reps", type=int, default=10, help="calls per timing sample (default 10)")
    t.add_argument("--warmup", type=int, default=3, help="calls before timing (default 3)")
    t.add_argument("--budget-seconds", type=float, default=0.0,
                   help="stop trying candidates after this many seconds (default: no limit)")
    t.add_argument("--max-candidates", type=int, default=0, help="only the first N configs of each shape")
    t.add_argument("--backend", choices=("cuda", "sim"), default="cuda",
                   help="cuda (default) or sim: the simulator, for tests at tiny shapes")
    t.set_defaults(run=cmd_tune)


def parse_shapes(text: str) -> list:
    shapes = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        try:
            shape = tuple(int(p) for p in parts)
        except ValueError:
            shape = ()
        if len(shape) != 3 or min(shape) < 1:
            raise ArgumentError(f"--shapes takes MxNxK items of positive ints (4096x4096x4096), got {item!r}")
        shapes.append(shape)
    return shapes


def _require_gpu() -> str:
    """Switch to the CUDA backend and return the device's name; NoDeviceError where there is none."""
    from ..runtime import backend as rt_backend

    if not rt_backend.gpu_available():
        raise NoDeviceError("tuning times kernels on a CUDA GPU, and no CUDA driver or device was found here; "
                            "run it on the GPU machine, or pass --backend sim to run the tuner in the simulator "
                            "(tiny shapes; its timings mean nothing)")
    try:
        import torch
    except ImportError:
        raise NoDeviceError("tuning on the GPU needs PyTorch with CUDA (inputs, CUDA events and graphs): "
                            "pip install 'kaiodsl[torch]'") from None
    if not torch.cuda.is_available():
        raise NoDeviceError("tuning on the GPU needs PyTorch built with CUDA; this torch sees no GPU")
    rt_backend.set_backend("cuda")
    return rt_backend.current().device_name


def _summary(results) -> str:
    head = f"{'shape':<20} {'class':<24} {'default':<22} {'ms':>9} {'best':<22} {'ms':>9} {'x':>6} " \
           f"{'timed':>5} {'skip':>4} {'s':>6}"
    rows = [head, "-" * len(head)]
    for r in results:
        best = r.best
        rows.append(f"{'x'.join(map(str, r.shape)):<20} {table.shape_class(r.shape):<24} {str(r.default):<22} "
                    f"{_ms(r.default_ms)} {str(best.config) if best else '-':<22} {_ms(best.ms if best else None)} "
                    f"{(r.default_ms / best.ms) if best and r.default_ms else float('nan'):6.2f} "
                    f"{len(r.timed):>5} {len(r.skipped):>4} {r.seconds:6.1f}"
                    + ("" if r.complete else "  (budget ran out)"))
    return "\n".join(rows)


def _ms(v) -> str:
    return f"{v:9.4f}" if v is not None else f"{'-':>9}"


def cmd_tune(args) -> int:
    tunable = registry.get(args.op)
    dtypes = (args.dtype or tunable.dtypes[0]).split(",")
    layouts = (args.layout or tunable.layouts[0]).split(",")
    shapes = parse_shapes(args.shapes) if args.shapes else PRESETS[args.preset or "llm"]
    if args.backend == "sim":
        from ..runtime import set_backend

        set_backend("sim")
        device, out = "simulator", Path(args.out or SIM_OUT)
    else:
        device = _require_gpu()
        out = Path(args.out) if args.out else table.table_path(device)
    if out.exists():
        old = table.read_table(out)        # a broken file stops us before any measuring
        if old["device"] != device:
            raise ArgumentError(f"{out} holds the table of {old['device']!r}, not of this device {device!r}: "
                                f"pass another --out")
    else:
        old = table.empty_table(device)
    settings = Settings(args.backend, args.reps, args.warmup, args.budget_seconds, args.max_candidates)
    tuner = Tuner(tunable, settings, sys.stderr)
    t0, results = time.perf_counter(), []
    for dtype in dtypes:
        for layout in layouts:
            remaining = args.budget_seconds - (time.perf_counter() - t0) if args.budget_seconds else 0.0
            if args.budget_seconds and remaining <= 0:
                break
            tuner.s.budget_seconds = remaining
            print(f"tuning {tunable.name} {dtype} b_layout={layout} on {device} ({args.backend}): "
                  f"{len(shapes)} shape(s)", file=sys.stderr, flush=True)
            results += [(dtype, layout, r) for r in tuner.run(shapes, dtype, layout)]
    seconds = time.perf_counter() - t0
    entries = [e for _, _, r in results if (e := r.entry()) is not None]
    merged = table.merge(old, entries, device, time.strftime("%Y-%m-%d %H:%M:%S"), seconds)
    table.write_table(out, merged)
    for dtype, layout in dict.fromkeys((d, l) for d, l, _ in results):
        print(f"\n{tunable.name} {dtype} b_layout={layout} on {device}:")
        print(_summary([r for d, l, r in results if (d, l) == (dtype, layout)]))
    for _, _, r in results:
        for t in r.skipped:
            if not t.reason.startswith("screened out"):
                print(f"skipped {'x'.join(map(str, r.shape))} {t.config}: {t.reason}", file=sys.stderr)
    untouched = len(shapes) * len(dtypes) * len(layouts) - len(results)
    print(f"\nwrote {len(entries)} entries to {out} ({len(merged['entries'])} in the table)")
    per = ", ".join(f"{'x'.join(map(str, r.shape))} {r.seconds:.1f} s" for _, _, r in results)
    print(f"tuning took {seconds:.1f} s in total; per shape: {per or 'none'}"
          + (f"; {untouched} shape(s) not reached within --budget-seconds" if untouched else ""))
    return 0

