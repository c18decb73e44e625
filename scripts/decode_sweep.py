"""Attention decode (Sq = 1, GQA 32/8, D 128, f16) against the number of KV splits, for choosing
ops.attention's split heuristic (not a test): ms and GB/s of K/V read for each Sk and split count,
CUDA-graph replay, median; the heuristic's own choice last ("auto")."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import kaiodsl.runtime  # noqa: E402
from kaiodsl import ops  # noqa: E402
from kaiodsl.runtime.timing import timed  # noqa: E402

kaiodsl.runtime.set_backend("cuda")
for B, sk in ((1, 8192), (1, 32768), (1, 131072), (8, 8192), (4, 32768)):
    q = torch.randn(B, 32, 1, 128, device="cuda", dtype=torch.float16)
    k, v = (torch.randn(B, 8, sk, 128, device="cuda", dtype=torch.float16) for _ in range(2))
    nbytes = 2 * k.numel() * 2
    line = []
    for ns in (4, 8, 16, 24, 32, 48, 64, 96, 132, None):
        t = timed(lambda: ops.attention(q, k, v, num_splits=ns))
        line.append(f"{ns or 'auto'}:{nbytes / t / 1e6:.0f}")
    print(f"B {B} Sk {sk:6d} GB/s by splits  " + "  ".join(line), flush=True)
