"""``python -m kaiodsl demo``: compile the examples, show PTX and resource usage, run and check them.

The examples are the package kaiodsl.examples (the checkout's examples/ folder, package data of the
wheel), so the demo runs from any directory after any install. Every module there with a ``run``
function is one example (see examples/__init__.py). Runs on the GPU when there is one and in the
simulator when not (smaller sizes there).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from importlib import resources
from pathlib import Path

from . import ptx_templates

SHOW_PTX_OF = "saxpy"  # the one kernel whose PTX the demo prints


def example_files(folder: Path) -> list[Path]:
    """The example modules under ``folder``: top level first, then subfolders, each sorted by name."""
    files = [p for p in folder.rglob("*.py")
             if not any(part.startswith("_") for part in p.relative_to(folder).parts)]
    return sorted(files, key=lambda p: (len(p.relative_to(folder).parts), p.relative_to(folder).parts))


def load_example(path: Path, folder: Path):
    """Import an example by path, its folder on sys.path (for its siblings), registered in sys.modules."""
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    rel = path.relative_to(folder).with_suffix("")
    name = "kaiodsl_example_" + "_".join(rel.parts)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def main(quick: bool = False, only=None, folder: Path | None = None) -> int:
    """Run every example (or those whose file stem is in ``only``); 1 when any failed, else 0."""
    if folder is None:
        try:
            examples = ptx_templates.resource(package="kaiodsl.examples")
        except ModuleNotFoundError:
            raise SystemExit("kaiodsl demo: the package kaiodsl.examples is not installed; reinstall kaiodsl "
                             "(in a checkout: pip install -e .)") from None
        with resources.as_file(examples) as path:
            return main(quick, only, Path(path))
    from . import runtime
    from .cli import format_stats
    from .frontend.decorator import Kernel

    be = runtime.current()
    on_gpu = be.name == "cuda"
    quick = quick or not on_gpu
    where = f"GPU ({getattr(be, 'device_name', be.arch)}, {be.arch})" if on_gpu else f"CPU simulator ({be.arch})"
    print(f"kaiodsl demo -- running on the {where}\n")
    passed = failed = skipped = 0
    for path in example_files(folder):
        if only is not None and path.stem not in only:
            continue
        try:
            mod = load_example(path, folder)
        except Exception as e:
            print(f"== {path.relative_to(folder)}\n   FAILED to import: {type(e).__name__}: {e}\n")
            failed += 1
            continue
        if not callable(getattr(mod, "run", None)):
            continue  # a helper module the examples import
        print(f"== {path.relative_to(folder)}")
        archs = getattr(mod, "DEMO_ARCHS", None)
        reason = getattr(mod, "DEMO_SKIP", None)
        if reason is None and archs is not None and be.arch not in archs:
            reason = f"runs on {', '.join(archs)}, this is {be.arch}"
        if reason:
            print(f"   skipped: {reason}\n")
            skipped += 1
            continue
        try:
            consts = getattr(mod, "DEMO_CONSTS", {})
            for k in (v for v in vars(mod).values() if isinstance(v, Kernel)):
                compiled = k.compile(arch=be.arch, **consts.get(k.__name__, {}))
                print("   " + format_stats(compiled)[3:])
                if k.__name__ == SHOW_PTX_OF:
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
    if passed + failed + skipped == 0:
        print(f"demo: no example found in {folder}" + (f" named {', '.join(only)}" if only else ""))
        return 1
    print(f"demo: {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0
