"""Tune the f16/bf16 GEMM's tile configs on this GPU: a thin wrapper over ``python -m kaiodsl tune``
(kaiodsl/tuning), which times the candidates, checks each against the default config and merges
the winners into this device's table (kaiodsl/tuning/tables/<device>.json).

    python benchmarks/tune_gemm.py [--shape 4096,4096,4096] [--dtype f16] [--layout nk] [tune options]
    python benchmarks/tune_gemm.py --preset llm
"""

import sys

from kaiodsl.cli import main


def args_for_tune(argv: list) -> list:
    """This script's old ``--shape M,N,K`` becomes ``--shapes MxNxK``; everything else passes through."""
    out, it = ["tune", "--op", "matmul"], iter(argv)
    for a in it:
        if a == "--shape" or a.startswith("--shape="):
            value = a.partition("=")[2] or next(it, "")
            out += ["--shapes", value.replace(",", "x")]
        else:
            out.append(a)
    return out


if __name__ == "__main__":
    sys.exit(main(args_for_tune(sys.argv[1:])))
