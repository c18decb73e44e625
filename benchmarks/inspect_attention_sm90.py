"""Registers, spills and wgmma serialisation (ptxas C7513) of the sm_90a attention forward, from the
ptxas on PATH (what the driver's JIT does is what matters on the GPU; nvJitLink's figures are printed
beside it), and one run for a profiler: ``ncu ... python benchmarks/inspect_attention_sm90.py --run``.

    python benchmarks/inspect_attention_sm90.py [--d 128] [--config 128,2,1,0] [--causal] [--run]

``--config bn,stages,overlap,pingpong``. Not a test.
"""

import argparse
import os
import subprocess
import tempfile
from pathlib import Path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--config", default="128,2,1,0")
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--dtype", default="f16")
    ap.add_argument("--run", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("KAIODSL_ARCH", "sm_90a")
    import kaiodsl
    from kaiodsl.ops.attention_sm90 import Sm90AttnConfig, sm90_attention_kernel

    bn, st, ov, pp = (int(x) for x in args.config.split(","))
    cfg = Sm90AttnConfig(bn=bn, stages=st, overlap=bool(ov), pingpong=bool(pp))
    if args.run:
        import torch

        from kaiodsl import ops
        kaiodsl.runtime.set_backend("cuda")
        dt = getattr(torch, {"f16": "float16", "bf16": "bfloat16"}[args.dtype])
        q, k, v = (torch.randn(4, 16, 4096, args.d, device="cuda", dtype=dt) for _ in range(3))
        for _ in range(2):
            ops.attention(q, k, v, causal=args.causal, config=cfg)
        torch.cuda.synchronize()
        return
    ck = kaiodsl.compiler.compile(sm90_attention_kernel(args.d, args.dtype, cfg, args.causal), target="sm_90a")
    path = Path(tempfile.mkdtemp()) / "attn.ptx"
    path.write_text(ck.ptx)
    r = subprocess.run(["ptxas", "-arch=sm_90a", "-v", str(path), "-o", str(path.with_suffix(".cubin"))],
                       capture_output=True, text=True)
    print(f"{ck.name}: ptxas")
    print(r.stderr.strip())
    print(f"nvJitLink: {ck.registers} registers, {ck.spills} spill bytes")


if __name__ == "__main__":
    main()
