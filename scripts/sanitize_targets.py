"""One small launch of every example and op, for compute-sanitizer (memcheck, racecheck)."""

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


if __name__ == "__main__":
    import kaiodsl

    kaiodsl.set_backend("cuda")
    examples()
    ops()
