"""One small launch of every example and op, for compute-sanitizer (memcheck, racecheck).

    python scripts/sanitize_targets.py           # every example and op
    python scripts/sanitize_targets.py decode    # the M <= 16 weight streams: every DecodeConfig path
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))


def examples():
    for path in sorted((ROOT / "examples").glob("*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        if hasattr(mod, "run"):
            print(path.stem, mod.run(quick=True), flush=True)


def ops():
    import torch

    import kaiodsl.ops as ops

    dev = "cuda"
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(67, 96, generator=g).half().to(dev)
    b = torch.randn(72, 96, generator=g).half().to(dev)
    for pipe in ("sync", "async"):
        ops.matmul(a, b, b_layout="nk", pipeline=pipe, bias=torch.randn(72).to(dev))
        ops.matmul(a.bfloat16(), b.t().contiguous().bfloat16(), b_layout="kn", pipeline=pipe)
    print("matmul ok", flush=True)
    if torch.cuda.get_device_capability() >= (9, 0):     # the sm_90a kernel: ragged tiles, bias, a wrapping ring
        from kaiodsl.ops import Sm90Config
        a9 = torch.randn(300, 200, generator=g).half().to(dev)
        b9 = torch.randn(136, 200, generator=g).half().to(dev)
        for cfg in (Sm90Config(), Sm90Config(block_m=128, block_n=64, stages=2), "auto"):
            ops.matmul(a9, b9, b_layout="nk", bias=torch.randn(136).to(dev), config=cfg)
        print("matmul sm90 ok", flush=True)
    a8 = torch.randint(-127, 128, (67, 96), generator=g, dtype=torch.int8).to(dev)
    b8 = torch.randint(-127, 128, (72, 96), generator=g, dtype=torch.int8).to(dev)
    ops.matmul_int8(a8, b8, 0.5)
    ops.matmul_w8a8(a8, b8, torch.rand(67).to(dev), torch.rand(72).to(dev), bias=torch.randn(72).to(dev))
    xq, s = ops.quantize_per_token(a)
    print("int8 ok", flush=True)
    q = np.random.randint(0, 16, (72, 256), dtype=np.uint8)
    wp = torch.from_numpy(ops.pack_int4(q)).to(dev)
    sc = (torch.rand(72, 2) * 0.01).half().to(dev)
    for m in (1, 13):
        ops.matmul_int4(torch.randn(m, 256).half().to(dev), wp, sc, group_size=128)
    print("int4 ok", flush=True)
    da, db = ops.matmul_backward(torch.randn(67, 72).half().to(dev), a, b.t().contiguous())
    torch.cuda.synchronize()
    print("backward ok", flush=True)
    for m in (5, 40):  # decode and tiled paths
        ops.matmul_int4(torch.randn(m, 256).half().to(dev), wp, sc, group_size=128)
        ops.matmul_w8a16(torch.randn(m, 96).half().to(dev), b8, torch.rand(72).half().to(dev))
        ops.qkv_project(torch.randn(m, 96).half().to(dev), b, b[:24].contiguous(), b[:24].contiguous())
    torch.cuda.synchronize()
    print("w8a16 / int4 tiled / qkv ok", flush=True)
    q_, k_, v_ = (torch.randn(2, h, 70, 64, generator=g).half().to(dev) for h in (4, 2, 2))
    o, lse = ops.attention(q_, k_, v_, causal="bottom_right", return_lse=True)
    ops.attention_backward(torch.randn_like(o), q_, k_, v_, o, lse, causal="bottom_right")
    ops.attention(q_[:, :, :1].contiguous(), k_, v_)  # decode
    torch.cuda.synchronize()
    print("attention ok", flush=True)


def decode():
    """The decode main loop's paths at ragged and whole-step (decode_exact) shapes: the heuristic's configs,
    late_scale, prefetch (past the range's end) with prefetch_a, a split K, the ring; int4 with zero points,
    int8, f16, and the fused int4 / int8 QKV at M 1 and 13."""
    import torch

    import kaiodsl.ops as ops
    from kaiodsl.ops import DecodeConfig as D

    dev = "cuda"
    cfgs = (None, D(2, 4, 2, 2, late_scale=True), D(2, 4, 4, 2, late_scale=True), D(1, 8, 2, 2), D(1, 8, 4, 2),
            D(2, 4, 2, 2, prefetch=True, prefetch_a=True), D(1, 2, 2, 2, 3, prefetch=True, prefetch_a=True, late_scale=True),
            D(2, 2, 2, 2, ring=3, late_scale=True))
    for N, K in ((72, 1024), (40, 640)):                 # whole steps / a ragged K tail, ragged N
        q = np.random.randint(0, 16, (N, K), dtype=np.uint8)
        wp = torch.from_numpy(ops.pack_int4(q)).to(dev)
        sc = (torch.rand(N, K // 64) * 0.01).half().to(dev)
        zp = torch.randint(0, 16, (N, K // 64), dtype=torch.uint8).to(dev)
        for m in (1, 13):
            x = torch.randn(m, K).half().to(dev)
            for cfg in cfgs:
                ops.matmul_int4(x, wp, sc, zeros=zp, group_size=64, config=cfg)
            w8 = torch.randint(-127, 128, (N, K), dtype=torch.int8).to(dev)
            for cfg in (None, D(2, 4, 2, 2, prefetch=True, prefetch_a=True)):
                ops.matmul_w8a16(x, w8, torch.rand(N).half().to(dev), config=cfg)
                ops.matmul(x, torch.randn(N, K).half().to(dev), b_layout="nk", config=cfg)
    print("decode GEMMs ok", flush=True)
    hidden, Nq, Nkv = 512, 256, 64
    for m in (1, 13):
        x = torch.randn(m, hidden).half().to(dev)
        qs = [np.random.randint(0, 16, (n, hidden), dtype=np.uint8) for n in (Nq, Nkv, Nkv)]
        ws = [torch.from_numpy(ops.pack_int4(q)).to(dev) for q in qs]
        ss = [(torch.rand(n, hidden // 128) * 0.01).half().to(dev) for n in (Nq, Nkv, Nkv)]
        ops.qkv_project_int4(x, *ws, *ss, group_size=128)
        w8 = [torch.randint(-127, 128, (n, hidden), dtype=torch.int8).to(dev) for n in (Nq, Nkv, Nkv)]
        ops.qkv_project_int8(x, *w8, *(torch.rand(n).half().to(dev) for n in (Nq, Nkv, Nkv)))
    torch.cuda.synchronize()
    print("decode QKV ok", flush=True)


if __name__ == "__main__":
    import kaiodsl

    kaiodsl.set_backend("cuda")
    if sys.argv[1:] == ["decode"]:
        decode()
    else:
        examples()
        ops()
