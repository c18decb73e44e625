"""The dequantizing sm_90a GEMM (ops/gemm_sm90_w4.py: weights staged by TMA, dequantized by the producer
warpgroup) under its default and candidate W4Configs, against f16 cuBLAS in the same process (the lead's
tuning run on an H200; not a test).

    python scripts/w4_sweep.py            # everything
    python scripts/w4_sweep.py int4       # one part: int4, int8 or qkv
    python scripts/w4_sweep.py m2048 qkv  # only M = 2048
    python scripts/w4_sweep.py ahead ...  # only the producer variants: scale-prefetch depths (W4Config.ahead)
                                          # of the defaults, and warp_stages
    python scripts/w4_sweep.py ws ...     # only 256 x 128 with and without warp_stages
    python scripts/w4_sweep.py swap ...   # matmul_int4: the swap-AB kernel's tilings (ops/gemm_sm90_w4_swap.py)
                                          # against the shared-B kernel's 256 x 128

Prints one line per (op, shape, config): time, ratio against cuBLAS (x @ W16^T with the dequantized f16
weights; for QKV the three projections' matmuls), and the relative error against float64 with the
dequantized weights. Goals (the lead's): matmul_int4 at M = 2048 >= 0.8x, fused quantized QKV >= 0.9x.
"""

import dataclasses
import sys

import numpy as np
import torch

import kaiodsl.runtime
from kaiodsl import ops
from kaiodsl.ops.gemm_sm90_w4 import DEFAULT, NARROW, TALL, TALL_WS, W4Config
from kaiodsl.ops.gemm_sm90_w4_swap import W4SwapConfig
from kaiodsl.runtime.timing import timed

TALLS = [TALL, W4Config(block_m=256, block_n=128, stages=4, staging=4),
         W4Config(block_m=256, block_n=128, stages=3, staging=6), W4Config(block_m=256, block_n=96, stages=4, staging=4)]
MATMUL_CANDIDATES = [DEFAULT, W4Config(stages=3, staging=4), W4Config(stages=3, staging=3),
                     W4Config(block_n=192, stages=4, staging=4), NARROW, W4Config(block_n=128, stages=5, staging=6)] + TALLS
QKV_CANDIDATES = [DEFAULT, W4Config(stages=3, staging=4), NARROW, W4Config(block_n=128, stages=5, staging=6)] + TALLS
AHEADS = [TALL] + [dataclasses.replace(TALL, ahead=a) for a in (2, 3, 4)] + [dataclasses.replace(DEFAULT, ahead=2)] \
    + [TALL_WS, W4Config(block_m=128, block_n=128, stages=4, staging=4, warp_stages=True)]
SWAPS = [TALL, W4SwapConfig(), W4SwapConfig(stages=2), W4SwapConfig(block_m=192), W4SwapConfig(block_m=128, stages=5),
         W4SwapConfig(block_m=128, block_n=192, stages=4), W4SwapConfig(block_m=256, block_n=64, stages=3),
         W4SwapConfig(group_m=4), W4SwapConfig(group_m=16)]
MS, NKS = (512, 2048, 8192), (4096, 8192)
LLAMA8B = (4096, 32, 8, 128)          # hidden, H, H_kv, D


def rel_err(out, ref) -> float:
    return float(torch.linalg.norm(out.double() - ref) / torch.linalg.norm(ref))


def line(what, cfg, t, t_ref, err):
    print(f"{what:<34} {cfg:<26} {t * 1e3:8.1f} us  {t_ref / t:5.2f}x cuBLAS ({t_ref * 1e3:.1f} us)  err {err:.1e}",
          flush=True)


def sweep(what, run, x, w16s, want, cands):
    """Time ``run(config)`` for the default (None) and each candidate against cuBLAS on ``w16s``."""
    t_ref = timed(lambda: [x @ w.T for w in w16s])
    for cfg in [None] + cands:
        try:
            got = run(cfg)
            got = got if isinstance(got, (tuple, list)) else (got,)
            err = max(rel_err(g.reshape(r.shape), r) for g, r in zip(got, want))
            line(what, "default" if cfg is None else str(cfg), timed(lambda: run(cfg)), t_ref, err)
        except Exception as e:           # a config this shape or op refuses
            print(f"{what:<34} {str(cfg):<26} refused: {str(e).splitlines()[0][:120]}", flush=True)


def int4_weights(rng, N, K, gs, zeros):
    q = rng.integers(0, 16, (N, K), dtype=np.uint8)
    s = torch.from_numpy((rng.uniform(0.5, 1.5, (N, K // gs)) * 2e-3).astype(np.float16)).cuda()
    z = rng.integers(0, 16, (N, K // gs), dtype=np.uint8) if zeros else None
    w16 = torch.from_numpy(ops.dequantize(q, s.cpu().numpy(), z, gs, np.float16)).cuda()
    return torch.from_numpy(ops.pack_int4(q)).cuda(), s, (torch.from_numpy(z).cuda() if zeros else None), w16


def int8_weights(N, K, gs):
    q = torch.randint(-128, 128, (N, K), device="cuda", dtype=torch.int8)
    if gs is None:
        s = torch.rand(N, device="cuda") * 1e-3 + 1e-4
        return q, s, (q.double() * s.double()[:, None]).half()
    s = (torch.rand(N, K // gs, device="cuda") * 1e-3 + 1e-4).half()
    return q, s, (q.double() * s.double().repeat_interleave(gs, 1)).half()


def part_int4(rng):
    for NK in NKS:
        for gs, zeros in ((128, False),) if MS == (2048,) else ((128, False), (128, True), (32, True)):
            wp, s, z, w16 = int4_weights(rng, NK, NK, gs, zeros)
            for M in MS:
                x = torch.randn(M, NK, device="cuda", dtype=torch.float16)
                want = (x.double() @ w16.double().T,)
                sweep(f"int4 M={M} N=K={NK} g{gs}{'zp' if zeros else ''}",
                      lambda cfg: ops.matmul_int4(x, wp, s, zeros=z, group_size=gs, config=cfg), x, [w16], want,
                      MATMUL_CANDIDATES if M == 2048 or gs == 128 and not zeros else [])


def part_int8():
    for NK in NKS:
        for gs in (None, 128):
            q, s, w16 = int8_weights(NK, NK, gs)
            for M in MS:
                x = torch.randn(M, NK, device="cuda", dtype=torch.float16)
                want = (x.double() @ w16.double().T,)
                sweep(f"w8a16 M={M} N=K={NK} {'pc' if gs is None else f'g{gs}'}",
                      lambda cfg: ops.matmul_w8a16(x, q, s, group_size=gs, config=cfg), x, [w16], want,
                      MATMUL_CANDIDATES if M == 2048 else [])


def part_qkv(rng):
    hidden, H, Hkv, D = LLAMA8B
    Ns = (H * D, Hkv * D, Hkv * D)
    M = 2048
    x = torch.randn(M, hidden, device="cuda", dtype=torch.float16)
    for zeros in (False, True):
        ws = [int4_weights(rng, n, hidden, 128, zeros) for n in Ns]
        kw = dict(group_size=128, zeros=[w[2] for w in ws] if zeros else None)
        args = [w[0] for w in ws] + [w[1] for w in ws]
        w16s = [w[3] for w in ws]
        sweep(f"qkv_int4 llama3-8b M={M} g128{'zp' if zeros else ''}",
              lambda cfg: ops.qkv_project_int4(x, *args, config=cfg, **kw), x, w16s,
              [x.double() @ w.double().T for w in w16s], QKV_CANDIDATES)
    ws = [int8_weights(n, hidden, None) for n in Ns]
    args = [w[0] for w in ws] + [w[1] for w in ws]
    w16s = [w[2] for w in ws]
    sweep(f"qkv_int8 llama3-8b M={M} pc", lambda cfg: ops.qkv_project_int8(x, *args, config=cfg), x, w16s,
          [x.double() @ w.double().T for w in w16s], QKV_CANDIDATES)


def main(argv) -> int:
    kaiodsl.runtime.set_backend("cuda")
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    global MS, MATMUL_CANDIDATES, QKV_CANDIDATES
    if "ws" in argv:                # the default 256 x 128 producer against warp_stages only
        MATMUL_CANDIDATES = QKV_CANDIDATES = [TALL, TALL_WS]
        argv = [a for a in argv if a != "ws"]
    if "swap" in argv:
        MATMUL_CANDIDATES = SWAPS
        argv = [a for a in argv if a != "swap"]
    if "ahead" in argv:
        MATMUL_CANDIDATES = AHEADS
        QKV_CANDIDATES = [TALL, TALL_WS]
        argv = [a for a in argv if a != "ahead"]
    if "m2048" in argv:             # the prefill row count of the goals only
        MS = (2048,)
        argv = [a for a in argv if a != "m2048"]
    parts = argv or ["int4", "int8", "qkv"]
    if "int4" in parts:
        part_int4(rng)
    if "int8" in parts:
        part_int8()
    if "qkv" in parts:
        part_qkv(rng)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
