"""One launch of a kernel per name, for ncu (the goal-missing kernels' evidence):

    ncu --clock-control none --launch-skip 2 --launch-count 1 --section SpeedOfLight \\
        --metrics sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active,... \\
        python scripts/ncu_targets.py w4a16[_8k]|fp8|attn_bwd|attn_fwd80|attn_fwd90[c]|decode|int4_m16[_late]|qkv_int4_m1|qkv_int4_m2048[_tall]|f16
Each target runs its op three times (the first two warm up and are skipped)."""

import sys

import numpy as np
import torch

import kaiodsl.runtime
from kaiodsl import ops

kaiodsl.runtime.set_backend("cuda")
name = sys.argv[1]
if name in ("w4a16", "w4a16_8k"):     # matmul_int4 at M = 2048, N = K = 4096 (8192: _8k), the sm_90a swap-AB kernel
    M, N, K, gs = (2048, 8192, 8192, 128) if name == "w4a16_8k" else (2048, 4096, 4096, 128)
    q = np.random.randint(0, 16, (N, K), dtype=np.uint8)
    w = torch.from_numpy(ops.pack_int4(q)).cuda()
    s = torch.rand(N, K // gs, device="cuda", dtype=torch.float16) * 0.02
    a = torch.randn(M, K, device="cuda", dtype=torch.float16)
    run = lambda: ops.matmul_int4(a, w, s, group_size=gs)
elif name == "fp8":                   # matmul_fp8 at 4096^3, e4m3, per-tensor scales, bf16 out
    a = (torch.randn(4096, 4096, device="cuda") * 4).to(torch.float8_e4m3fn)
    b = (torch.randn(4096, 4096, device="cuda") * 4).to(torch.float8_e4m3fn)
    sa = torch.tensor(0.5, device="cuda")
    run = lambda: ops.matmul_fp8(a, b, sa, sa)
elif name == "attn_bwd":              # attention_backward, f16, B 4, H 16, S 4096, D 128 (the dK/dV and dQ kernels)
    q, k, v, do = (torch.randn(4, 16, 4096, 128, device="cuda", dtype=torch.float16) for _ in range(4))
    o, lse = ops.attention(q, k, v, return_lse=True)
    run = lambda: ops.attention_backward(do, q, k, v, o, lse)
elif name in ("int4_m16", "int4_m16_late", "qkv_int4_m1", "qkv_int4_m2048", "qkv_int4_m2048_tall"):
    # the int4 decode GEMV (M 16, N = K = 8192); the fused int4 QKV (Llama-3-8B, M 1; M 2048 at its
    # default tiling and at gemm_sm90_w4.TALL)
    gs = 128
    if name.startswith("int4_m16"):
        M, shapes = 16, [(8192, 8192)]
    else:
        M, shapes = (1 if name == "qkv_int4_m1" else 2048), [(4096, 4096), (1024, 4096), (1024, 4096)]
    packed = [torch.from_numpy(ops.pack_int4(np.random.randint(0, 16, (n, k), dtype=np.uint8))).cuda()
              for n, k in shapes]
    sc = [torch.rand(n, k // gs, device="cuda", dtype=torch.float16) * 0.02 for n, k in shapes]
    a = torch.randn(M, shapes[0][1], device="cuda", dtype=torch.float16)
    if name.startswith("int4_m16"):
        from dataclasses import replace
        from kaiodsl.ops.matmul_int4 import int4_decode_config
        late = replace(int4_decode_config(M, 8192, 8192), late_scale=True) if name.endswith("_late") else None
        run = lambda: ops.matmul_int4(a, packed[0], sc[0], group_size=gs, config=late)
    else:
        from kaiodsl.ops.gemm_sm90_w4 import TALL
        cfg = TALL if name.endswith("_tall") else None
        run = lambda: ops.qkv_project_int4(a, *packed, *sc, group_size=gs, config=cfg)
elif name == "attn_fwd80":            # the mma.sync (sm_80) attention forward, f16, B 4, H 16, S 4096, D 128
    from kaiodsl.ops.attention_fwd import fwd_config
    q, k, v = (torch.randn(4, 16, 4096, 128, device="cuda", dtype=torch.float16) for _ in range(3))
    run = lambda: ops.attention(q, k, v, config=fwd_config(128, 4096))
elif name in ("attn_fwd90", "attn_fwd90c"):   # the sm_90a attention forward, f16, B 4, H 16, S 4096, D 128 (c: causal)
    q, k, v = (torch.randn(4, 16, 4096, 128, device="cuda", dtype=torch.float16) for _ in range(3))
    run = lambda: ops.attention(q, k, v, causal=name.endswith("c"))
elif name == "decode":                # attention decode: Sq 1, Sk 32k, GQA 32/8, D 128 (split-KV + combine)
    q = torch.randn(1, 32, 1, 128, device="cuda", dtype=torch.float16)
    k, v = (torch.randn(1, 8, 32768, 128, device="cuda", dtype=torch.float16) for _ in range(2))
    run = lambda: ops.attention(q, k, v)
else:                                 # the f16 GEMM at 4096^3
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
    b = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
    run = lambda: ops.matmul(a, b, b_layout="nk")
for _ in range(3):
    run()
torch.cuda.synchronize()
print(name, "ok")
