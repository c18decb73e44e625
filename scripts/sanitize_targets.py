"""One small launch of every example and op, for compute-sanitizer (memcheck, racecheck)."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))


def examples():
    for path in sorted((ROOT / "examples").glob("*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        if hasattr(mod, "run"):
            print(path.stem, mod.run(quick=True), flush=True)


def ops():
    try:
        import kaiodsl.ops.checks as checks
    except ImportError as e:
        print("ops: not available:", e)
        return
    for name, fn in checks.SANITIZE.items():
        print(name, fn(), flush=True)


if __name__ == "__main__":
    import kaiodsl

    kaiodsl.set_backend("cuda")
    examples()
    ops()
