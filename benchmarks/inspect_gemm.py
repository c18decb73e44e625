"""Dump the SASS opcode mix of a GEMM kernel (needs cuobjdump, i.e. the GPU machine), and run it
once for a profiler: ``ncu ... python benchmarks/inspect_gemm.py --run``.

    python benchmarks/inspect_gemm.py [--config 128,128,32,2,2,4] [--run]
    python benchmarks/inspect_gemm.py --sm90 [--config 128,256,4,2,8] [--run]   # the Hopper kernel
"""

import argparse
import collections
import re
import subprocess
import sys
import tempfile
from pathlib import Path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="128,128,32,2,2,4")
    ap.add_argument("--run", action="store_true")
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--sm90", action="store_true", help="the sm_90a kernel; --config block_m,block_n,stages,"
                                                         "consumers,group_m")
    args = ap.parse_args()
    import kaiodsl.ops as ops
    from kaiodsl import tiles
    from kaiodsl.ops.gemm_sm90 import Sm90Config, sm90_gemm_kernel
    from kaiodsl.ops.matmul import gemm_kernel

    if args.sm90:
        fields = [int(x) for x in (args.config if args.config != "128,128,32,2,2,4" else "128,256,4,2,8").split(",")]
        cfg = Sm90Config(*fields)
    else:
        bm, bn, bk, wm, wn, st = (int(x) for x in args.config.split(","))
        cfg = ops.GemmConfig(block_m=bm, block_n=bn, block_k=bk, warps_m=wm, warps_n=wn, stages=st)
    if args.run:
        import torch

        n = args.size
        a = torch.randn(n, n, device="cuda", dtype=torch.float16)
        b = torch.randn(n, n, device="cuda", dtype=torch.float16)
        for _ in range(2):
            ops.matmul(a, b, b_layout="nk", config=cfg)
        torch.cuda.synchronize()
        return
    if args.sm90:
        c = sm90_gemm_kernel("f16", cfg, tiles.Epilogue((), kaiodsl_f16()), ()).compile(arch="sm_90a")
    else:
        c = gemm_kernel("f16", "f16", True, cfg, False).compile(arch="sm_90a")
    path = Path(tempfile.mkdtemp()) / "gemm.cubin"
    path.write_bytes(c.cubin)
    sass = subprocess.run(["cuobjdump", "-sass", str(path)], capture_output=True, text=True).stdout
    lines = sass.splitlines()
    ops_all = collections.Counter()
    for ln in lines:
        m = re.match(r"\s+/\*[0-9a-f]{4}\*/\s+(@!?U?P\w+\s+)?([A-Z0-9_]+)", ln)
        if m:
            ops_all[m.group(2)] += 1
    print(f"{cfg}: {c.registers} registers, {len(lines)} SASS lines")
    print("whole kernel:", ", ".join(f"{k} {v}" for k, v in ops_all.most_common(25)))
    Path(sys.argv[0]).with_name("gemm_sass.txt").write_text(sass) if False else None
    out = Path(tempfile.gettempdir()) / "gemm.sass"
    out.write_text(sass)
    print("sass written to", out)


def kaiodsl_f16():
    from kaiodsl import f16
    return f16


if __name__ == "__main__":
    main()
