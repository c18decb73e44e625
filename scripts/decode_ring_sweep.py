"""The int4 decode stream with its weights through the cp.async ring (DecodeConfig(ring=)) against the
register stream and f16 cuBLAS, on the GPU (the lead's timing run; not a test). Same process, CUDA-graph
replay, median.

    python scripts/decode_ring_sweep.py
"""

import sys

import torch

import kaiodsl.runtime
from kaiodsl import ops
from kaiodsl.ops import DecodeConfig
from kaiodsl.runtime.timing import timed

LLAMA8B = (4096, 32, 8, 128)


def main() -> int:
    kaiodsl.runtime.set_backend("cuda")
    torch.manual_seed(0)
    N = K = 8192
    q = torch.randint(0, 16, (N, K), dtype=torch.uint8)
    w = torch.from_numpy(ops.pack_int4(q.numpy())).cuda()
    s = (torch.rand(N, K // 128) * 0.1 + 0.05).half().cuda()
    w16 = ((q.float() - 8) * s.float().cpu().repeat_interleave(128, 1)).half().cuda()
    for M, cfgs in ((1, [None, DecodeConfig(1, 8, 4, 2, ring=3), DecodeConfig(1, 8, 4, 2, ring=4),
                         DecodeConfig(2, 4, 2, 2, ring=4)]),
                    (16, [None, DecodeConfig(2, 4, 2, 2, ring=3), DecodeConfig(2, 4, 2, 2, ring=4),
                          DecodeConfig(2, 4, 2, 2, ring=6), DecodeConfig(4, 4, 2, 2, ring=4),
                          DecodeConfig(1, 8, 4, 2, ring=4)])):
        a = torch.randn(M, K, device="cuda", dtype=torch.float16)
        t_ref = timed(lambda: a @ w16.T)
        ref = ops.matmul_int4(a, w, s, group_size=128)
        print(f"matmul_int4 M {M:2} N=K={N}: cuBLAS f16 {t_ref * 1e3:6.1f} us", flush=True)
        for cfg in cfgs:
            try:
                out = ops.matmul_int4(a, w, s, group_size=128, config=cfg)
                same = bool(torch.equal(out, ref)) if cfg is None or cfg.ring == 0 else \
                    float((out.float() - ref.float()).abs().max())
                t = timed(lambda: ops.matmul_int4(a, w, s, group_size=128, config=cfg))
                print(f"    {str(cfg or 'default'):<14} {t * 1e3:6.1f} us  {t_ref / t:5.2f}x cuBLAS  "
                      f"{N * K / 2 / t / 1e6:6.0f} GB/s of weights  (max diff to default {same})", flush=True)
            except Exception as e:            # a config that does not fit: say so, go on
                print(f"    {cfg}: {type(e).__name__}: {str(e)[:120]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
