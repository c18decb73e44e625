"""Command line: ``python -m kaiodsl ptx FILE.py:KERNEL [--arch sm_90a] [--const N=V ...] [--stats]
[--ir] [--dump ir,passes,ptx [--dump-dir DIR]]``, ``python -m kaiodsl demo`` and ``python -m kaiodsl tune
...`` (kaiodsl/tuning/cli.py). A kaiodsl error exits with 1, or with the error's ``exit_code`` (2: no GPU)."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
from pathlib import Path

from .errors import KaioError


def load_kernel(spec: str):
    """``path/to/file.py:name`` -> the kaiodsl Kernel object defined there."""
    from .frontend.decorator import Kernel

    path, sep, name = spec.rpartition(":")
    if not sep or not path or not name:
        raise KaioError(f"expected FILE.py:KERNEL, got {spec!r}")
    file = Path(path)
    if not file.is_file():
        raise KaioError(f"no such file: {path}")
    sys.path.insert(0, str(file.resolve().parent))
    mod_name = f"_kaiodsl_cli_{file.stem}"
    mod_spec = importlib.util.spec_from_file_location(mod_name, file)
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[mod_name] = module
    mod_spec.loader.exec_module(module)
    k = getattr(module, name, None)
    if not isinstance(k, Kernel):
        found = [n for n, v in vars(module).items() if isinstance(v, Kernel)]
        raise KaioError(f"{path} has no kernel named {name!r}; kernels there: {', '.join(found) or 'none'}")
    return k


def parse_consts(items) -> dict:
    """``["EDGE=False", "TILE=(64, 64)", "MODE=fast"]`` -> values: Python literals, else the text."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise KaioError(f"--const takes NAME=VALUE (e.g. EDGE=False), got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def format_stats(compiled) -> str:
    s = compiled.stats()
    return (f"// {s['kernel']} on {s['arch']}: {s['registers']} registers, {s['spills']} bytes spilled, "
            f"{s['shared_bytes']} bytes shared, {s['local_bytes']} bytes local")


def _cmd_ptx(args) -> int:
    from dataclasses import replace

    from .compiler import compile, options_for, parse_dump

    k = load_kernel(args.target)
    consts = parse_consts(args.const)
    options = options_for(k)
    if args.dump:
        options = replace(options, dump=parse_dump(args.dump), dump_dir=args.dump_dir)
    compiled = compile(k, consts, args.arch, options)
    if args.ir:
        print(compiled.ir_text)
    else:
        print(compiled.ptx, end="")
    if args.stats:
        print(format_stats(compiled))
    return 0


def _cmd_demo(args) -> int:
    from .demo import main as demo_main

    return demo_main(quick=args.quick)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m kaiodsl", description="kaiodsl command line")
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("ptx", help="print the PTX (or IR) of a kernel")
    q.add_argument("target", help="FILE.py:KERNEL")
    q.add_argument("--arch", default=None, help="sm_80, sm_89, sm_90a, ... (default: the device's, else sm_80)")
    q.add_argument("--const", action="append", metavar="NAME=VALUE", help="a Const parameter's value: a Python literal (True, 3, 2.5, 'a', (64, 64)), "
                   "else taken as a string; repeat for several")
    q.add_argument("--stats", action="store_true", help="registers, spills, shared and local memory (nvJitLink)")
    q.add_argument("--ir", action="store_true", help="print the optimized IR instead of PTX")
    q.add_argument("--dump", metavar="STAGES", help="also show the stages of the compile: any of ir, passes "
                   "(the IR after each pass), ptx, or all; to stderr unless --dump-dir is given")
    q.add_argument("--dump-dir", metavar="DIR", help="write the --dump stages as files into DIR")
    q.set_defaults(run=_cmd_ptx)
    d = sub.add_parser("demo", help="compile the examples, show PTX, run and check them")
    d.add_argument("--quick", action="store_true", help="smaller problem sizes")
    d.set_defaults(run=_cmd_demo)
    from .tuning.cli import add_parser as add_tune

    add_tune(sub)
    args = p.parse_args(argv)
    try:
        return args.run(args)
    except KaioError as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 1)


if __name__ == "__main__":
    sys.exit(main())
