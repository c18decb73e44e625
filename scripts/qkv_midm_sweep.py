"""The fused QKV projections at 16 < M <= 64 under candidate configs, against three cuBLAS f16 matmuls
(the lead's tuning run on the GPU; not a test). The default heuristic sends these M to the mma.sync
kernel with 128-column blocks: 48 blocks for Llama-3-8B's 6144 columns on 132 SMs.

    python scripts/qkv_midm_sweep.py

Prints one line per (shape, kind, M, config): time, ratio against cuBLAS, relative error against the
default config's output.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

import kaiodsl.runtime  # noqa: E402
from bench_gemm import rel_err  # noqa: E402
from bench_qkv import SHAPES, _weights  # noqa: E402
from kaiodsl import ops  # noqa: E402
from kaiodsl.ops.gemm_sm90 import Sm90Config  # noqa: E402
from kaiodsl.ops.gemm_sm90_w4 import W4Config  # noqa: E402
from kaiodsl.ops.matmul import GemmConfig  # noqa: E402
from kaiodsl.ops.matmul_int4_tiled import Int4Config  # noqa: E402
from kaiodsl.ops.w8_gemm import W8Config  # noqa: E402
from kaiodsl.runtime.timing import timed  # noqa: E402

CANDIDATES = {
    "f16": [Sm90Config(64, 128, 6, 1, store="direct"), Sm90Config(64, 64, 8, 1, store="direct"),
            Sm90Config(128, 64, 6, 2, store="direct"), GemmConfig(64, 64, 32, 2, 2, 4), GemmConfig(32, 64, 32, 2, 2, 4),
            GemmConfig(64, 32, 64, 4, 1, 4)],
    "int8": [W4Config(64, 64, 8, 1), W4Config(64, 64, 8, 1, staging=4), W4Config(64, 64, 8, 1, staging=8),
             W4Config(64, 64, 6, 1, staging=12), W4Config(64, 128, 4, 1, staging=6), W8Config(64, 64, 64, 2, 2, 4)],
    "int4": [W4Config(64, 64, 8, 1), W4Config(64, 64, 8, 1, staging=4), W4Config(64, 64, 8, 1, staging=8),
             W4Config(64, 64, 6, 1, staging=12), W4Config(64, 128, 4, 1, staging=6), Int4Config(32, 4, 2, 3)],
}


def main() -> int:
    kaiodsl.runtime.set_backend("cuda")
    torch.manual_seed(0)
    op = {"f16": ops.qkv_project, "int8": ops.qkv_project_int8, "int4": ops.qkv_project_int4}
    for sname, (K, H, Hkv, D) in SHAPES.items():
        Ns = (H * D, Hkv * D, Hkv * D)
        for kind, cands in CANDIDATES.items():
            args, kw, _, w16 = _weights(torch, kind, Ns, K)
            for M in (32, 64):
                x = torch.randn(M, K, device="cuda", dtype=torch.float16)
                t_c = timed(lambda: [x @ w.T for w in w16])
                ref = op[kind](x, *args, **kw)
                t_d = timed(lambda: op[kind](x, *args, **kw))
                print(f"{sname:<10} {kind:<5} M={M:<3} default            {t_d * 1e3:7.1f} us  {t_c / t_d:5.2f}x cuBLAS "
                      f"({t_c * 1e3:.1f} us)", flush=True)
                for cfg in cands:
                    try:
                        got = op[kind](x, *args, config=cfg, **kw)
                        err = max(rel_err(o, r) for o, r in zip(got, ref))
                        t = timed(lambda: op[kind](x, *args, config=cfg, **kw))
                        print(f"{sname:<10} {kind:<5} M={M:<3} {str(cfg):<18} {t * 1e3:7.1f} us  {t_c / t:5.2f}x cuBLAS  "
                              f"err {err:.1e}", flush=True)
                    except Exception as e:       # a config this op or shape refuses
                        print(f"{sname:<10} {kind:<5} M={M:<3} {str(cfg):<18} refused: {str(e).splitlines()[0][:120]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
