"""The sm_90a attention forward's work schedules (static persistent, dynamic persistent, one block a
unit) and key tiles against cuDNN, interleaved: every round times each config once (CUDA-graph
replay, a longer warm-up), and the table gives each config's median over the rounds, so clock and
power drift land on all of them alike (the lead's A/B run; not a test).

    python scripts/attn_schedule_ab.py [--rounds N]
"""

import argparse
import statistics
import sys

import torch

import kaiodsl.runtime
from kaiodsl import ops
from kaiodsl.ops.attention_sm90 import Sm90AttnConfig as C
from kaiodsl.runtime.timing import timed

TOKENS = 16384
SHAPES = [(128, S, 16, 16, c) for S in (2048, 4096, 8192) for c in (False, True)]
SHAPES += [(64, 4096, 32, 32, c) for c in (False, True)] + [(128, 4096, 32, 8, True)]
CONFIGS = [C(160, 2, pingpong=True), C(160, 2, pingpong=True, persistent=False),
           C(160, 2, pingpong=True, dynamic=True), C(192, 2, pingpong=True, dynamic=True),
           C(128, 2, pingpong=True, dynamic=True)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    kaiodsl.runtime.set_backend("cuda")
    from torch.nn.attention import SDPBackend, sdpa_kernel
    torch.manual_seed(0)
    for D, S, H, Hkv, causal in SHAPES:
        B = TOKENS // S
        q = torch.randn(B, H, S, D, device="cuda", dtype=torch.float16)
        k, v = (torch.randn(B, Hkv, S, D, device="cuda", dtype=torch.float16) for _ in range(2))
        ke, ve = (x.repeat_interleave(H // Hkv, 1).contiguous() for x in (k, v))
        flops = 4.0 * B * H * S * S * D * (0.5 if causal else 1.0)

        def cudnn():
            with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                return torch.nn.functional.scaled_dot_product_attention(q, ke, ve, is_causal=causal)
        fns = {"cudnn": cudnn}
        ref = ops.attention(q, k, v, causal=causal).float()
        for cfg in CONFIGS:
            out = ops.attention(q, k, v, causal=causal, config=cfg).float()
            err = float((out - ref).abs().max())
            assert err < 2e-2, (cfg, err)
            fns[str(cfg)] = lambda cfg=cfg: ops.attention(q, k, v, causal=causal, config=cfg)
        times = {n: [] for n in fns}
        for _ in range(args.rounds):
            for n, fn in fns.items():
                times[n].append(timed(fn, warmup=10, reps=20, samples=5))
        tf = {n: flops / statistics.median(t) / 1e9 for n, t in times.items()}
        row = "  ".join(f"{n} {v:5.0f} ({v / tf['cudnn']:4.2f})" for n, v in tf.items() if n != "cudnn")
        print(f"D{D} S{S:5} H{H}/{Hkv} {'causal' if causal else 'full  '} cudnn {tf['cudnn']:5.0f}  {row}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
