"""The sm_90a kernels under compute-sanitizer: one small launch each (ragged tiles, a ring that wraps,
several tiles per persistent block), so memcheck and racecheck cover TMA, mbarriers and wgmma."""

import sys

import torch

import kaiodsl.ops as ops
from kaiodsl.ops import Sm90Config

g = torch.Generator(device="cpu").manual_seed(0)
dev = "cuda"
a = torch.randn(300, 200, generator=g).half().to(dev)
b = torch.randn(136, 200, generator=g).half().to(dev)
for cfg in (Sm90Config(), Sm90Config(block_m=128, block_n=64, stages=2), Sm90Config(block_m=256, block_n=64)):
    out = ops.matmul(a, b, b_layout="nk", bias=torch.randn(136).to(dev), config=cfg, out_dtype="f32")
    want = a.double() @ b.double().T
for cfg in (Sm90Config(store="direct"), Sm90Config(block_m=128, block_n=128, split_k=2)):   # the other epilogues
    ops.matmul(a, b, b_layout="nk", config=cfg)
print("matmul sm90 ok", flush=True)
for name in sys.argv[1:]:          # further ops by name, each (q, k, v) attention-shaped where it applies
    if name == "attention":
        q = torch.randn(1, 4, 200, 128, generator=g).half().to(dev)
        k = torch.randn(1, 2, 200, 128, generator=g).half().to(dev)
        v = torch.randn(1, 2, 200, 128, generator=g).half().to(dev)
        ops.attention(q, k, v)                    # persistent: 8 units on the grid
        ops.attention(q, k, v, causal=True)       # one block a unit
        from kaiodsl.ops import Sm90AttnConfig
        ops.attention(q, k, v, config=Sm90AttnConfig(bn=64, stages=1, pingpong=True))   # a one-slot ring wraps
        print("attention ok", flush=True)
    if name == "attention_bwd":    # the sm_90a dK/dV (dQ added in key-block order, in any order, or by the dQ
        from kaiodsl.ops import Sm90BwdConfig      # kernel; dK and dV in one pass and in two), GQA 4/2, 3 key blocks
        for D in (64, 128):
            q = torch.randn(1, 4, 200, D, generator=g).half().to(dev)
            k, v = (torch.randn(1, 2, 300, D, generator=g).half().to(dev) for _ in range(2))
            o, lse = ops.attention(q, k, v, causal=True, return_lse=True)
            do = torch.randn_like(q)
            ops.attention_backward(do, q, k, v, o, lse, causal=True, config=Sm90BwdConfig(dq="ordered"))
            ops.attention_backward(do, q, k, v, o, lse, causal=True, config=Sm90BwdConfig(dq="atomic", dq_slots=1))
            ops.attention_backward(do, q, k, v, o, lse, config=Sm90BwdConfig(split=True, dq="kernel"))
        print("attention_backward sm90 ok", flush=True)
    if name == "attention_fp8":    # e4m3 forward (and its V^T prep), ragged keys, GQA
        q = (torch.randn(1, 4, 200, 128, generator=g) * 3).to(dev).to(torch.float8_e4m3fn)
        k, v = ((torch.randn(1, 2, 230, 128, generator=g) * 3).to(dev).to(torch.float8_e4m3fn) for _ in range(2))
        ops.attention(q, k, v, descale=(0.5, 0.5, 0.5))
        ops.attention(q, k, v, causal="bottom_right", descale=(0.5, 0.5, 0.5))
        print("attention fp8 ok", flush=True)
    if name in ("w4", "w4ws"):     # the dequantizing GEMM's default prefill tiling (256 x 128), int4 and int8;
        from kaiodsl.ops.gemm_sm90_w4 import TALL, TALL_WS      # w4ws: warp_stages (own staging slots), K 1024
        cfg, K = (TALL, 256) if name == "w4" else (TALL_WS, 1024)
        x = torch.randn(300, K, generator=g).half().to(dev)
        q4 = torch.randint(0, 16, (200, K), generator=g, dtype=torch.uint8).numpy()
        ops.matmul_int4(x, torch.from_numpy(ops.pack_int4(q4)).to(dev),
                        torch.rand(200, K // 128, generator=g).half().to(dev), group_size=128, config=cfg)
        q8 = torch.randint(-128, 128, (200, K), generator=g, dtype=torch.int8).to(dev)
        ops.matmul_w8a16(x, q8, torch.rand(200, generator=g).to(dev), config=cfg)
        print(f"{name}: w4 / w8 sm90 {cfg} ok", flush=True)
    if name == "swap":             # the swap-AB kernel (weights in wgmma's A registers): int4, int8 with a K tail,
        from kaiodsl.ops.gemm_sm90_w4_swap import DEFAULT, DEFAULT8    # and its segments in the quantized QKV ops
        x = torch.randn(300, 1040, generator=g).half().to(dev)
        q4 = torch.randint(0, 16, (200, 1024), generator=g, dtype=torch.uint8).numpy()
        ops.matmul_int4(x[:, :1024].contiguous(), torch.from_numpy(ops.pack_int4(q4)).to(dev),
                        torch.rand(200, 8, generator=g).half().to(dev), group_size=128, config=DEFAULT)
        q8 = torch.randint(-128, 128, (200, 1040), generator=g, dtype=torch.int8).to(dev)
        ops.matmul_w8a16(x, q8, torch.rand(200, generator=g).to(dev), config=DEFAULT8)
        xs = x[:, :512].contiguous()
        w8 = [torch.randint(-128, 128, (n, 512), generator=g, dtype=torch.int8).to(dev) for n in (256, 128, 128)]
        ops.qkv_project_int8(xs, *w8, *[torch.rand(n, generator=g).half().to(dev) for n in (256, 128, 128)])
        print("swap-AB int4 / int8 / qkv int8 ok", flush=True)
    if name == "qkv":              # the segmented kernel: three B maps and outputs in one launch
        x = torch.randn(300, 256, generator=g).half().to(dev)
        ws = [torch.randn(n, 256, generator=g).half().to(dev) for n in (256, 128, 128)]
        ops.qkv_project(x, *ws, config=Sm90Config(block_n=128))
        print("qkv sm90 ok", flush=True)
torch.cuda.synchronize()
