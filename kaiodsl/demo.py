"""``python -m kaiodsl demo``: compile the examples, show PTX and resource usage, run and check them.

Runs on the GPU when there is one and in the simulator when not (smaller sizes there).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

# (file, kernel, Const values) in the order the demo shows them.
EXAMPLES = [
    ("vector_add.py", "vector_add", {}),
    ("saxpy.py", "saxpy", {}),
    ("reduction.py", "block_sum", {"BLOCK": 256}),
    ("transpose.py", "transpose", {"TILE": 32, "ROWS": 8}),
    ("histogram.py", "histogram", {}),
    ("softmax.py", "softmax", {"BLOCK": 256}),
    ("mma_m16n8k16.py", None, {}),
    ("tc_matmul.py", None, {}),
]


def examples_dir() -> Path:
    for cand in (Path.cwd() / "examples", Path(__file__).resolve().parent.parent / "examples"):
        if (cand / "saxpy.py").is_file():
            return cand
    raise SystemExit("kaiodsl demo: cannot find the examples/ folder; run it from the kaiodsl checkout")


def _load(path: Path):
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(f"kaiodsl_example_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(quick: bool = False) -> int:
    from . import runtime
    from .cli import format_stats
    from .frontend.decorator import Kernel

    be = runtime.current()
    on_gpu = be.name == "cuda"
    quick = quick or not on_gpu
    where = f"GPU ({getattr(be, 'device_name', be.arch)}, {be.arch})" if on_gpu else f"CPU simulator ({be.arch})"
    print(f"kaiodsl demo -- running on the {where}\n")
    folder = examples_dir()
    passed = failed = 0
    shown_ptx = False
    for fname, kname, consts in EXAMPLES:
        path = folder / fname
        if not path.is_file():
            continue
        mod = _load(path)
        kernels = [v for v in vars(mod).values() if isinstance(v, Kernel)]
        main_k = getattr(mod, kname) if kname else (kernels[0] if kernels else None)
        print(f"== {fname}")
        try:
            extra = getattr(mod, "DEMO_CONSTS", {})
            for k in kernels:
                kc = consts if k is main_k else extra.get(k.__name__, {})
                compiled = k.compile(arch=be.arch, **kc)
                print("   " + format_stats(compiled)[3:])
                if not shown_ptx and fname == "saxpy.py":
                    shown_ptx = True
                    print("   PTX:")
                    print("\n".join("   | " + line for line in compiled.ptx.splitlines()))
            t = time.perf_counter()
            summary = mod.run(quick=quick)
            dt = time.perf_counter() - t
            print(f"   ran and checked against numpy: {summary}  [{dt * 1e3:.0f} ms]")
            passed += 1
        except Exception as e:  # report every example, then fail at the end
            print(f"   FAILED: {type(e).__name__}: {e}")
            failed += 1
        print()
    print(f"demo: {passed} passed, {failed} failed")
    return 1 if failed else 0
