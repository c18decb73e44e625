"""A first look at the sm_90a backward on a GPU, before the test tier: each way of making dQ (key block
after key block, unordered adds, the dQ kernel) at a few GQA shapes against float32 autograd of
torch's math SDPA, then one timing of each beside SDPA cuDNN (benchmarks/bench_attention.py's
graph-replay timer), and the default twice at the timed shapes (the same bits). Prints SMOKE OK when
every gradient is within 1e-2 (relative norm) and the reruns match.

    python scripts/attn_bwd_smoke.py
"""

import sys
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import kaiodsl.runtime  # noqa: E402
from kaiodsl import ops  # noqa: E402
from kaiodsl.ops.attention_bwd_sm90 import sm90_bwd_config  # noqa: E402
from kaiodsl.runtime.timing import timed  # noqa: E402


def reference(q, k, v, do, causal):
    g = q.shape[1] // k.shape[1]
    qf, kf, vf = (x.float().detach().requires_grad_() for x in (q, k, v))
    ke, ve = kf.repeat_interleave(g, 1), vf.repeat_interleave(g, 1)
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel(SDPBackend.MATH):
        out = torch.nn.functional.scaled_dot_product_attention(qf, ke, ve, is_causal=causal)
    return torch.autograd.grad(out, (qf, kf, vf), do.float())


def main() -> int:
    kaiodsl.runtime.set_backend("cuda")
    torch.manual_seed(0)
    print(torch.cuda.get_device_name(), flush=True)
    ok = True
    for D, causal, S in ((128, False, 1100), (128, True, 2048), (64, True, 1500), (64, False, 700)):
        q, do = (torch.randn(2, 8, S, D, device="cuda", dtype=torch.float16) for _ in range(2))
        k, v = (torch.randn(2, 2, S, D, device="cuda", dtype=torch.float16) for _ in range(2))
        o, lse = ops.attention(q, k, v, causal=causal, return_lse=True)
        want = reference(q, k, v, do, causal)
        base = sm90_bwd_config(D)
        for cfg in (replace(base, dq="ordered"), replace(base, dq="atomic"), replace(base, dq="kernel")):
            got = ops.attention_backward(do, q, k, v, o, lse, causal=causal, config=cfg)
            torch.cuda.synchronize()
            errs = [((g.float() - w).norm() / w.norm()).item() for g, w in zip(got, want)]
            good = all(e < 1e-2 for e in errs)
            ok &= good
            print(f"D{D} S{S} causal={causal} {cfg.dq_mode:8} dq/dk/dv rel err "
                  + " ".join(f"{e:.2e}" for e in errs) + ("" if good else "  BAD"), flush=True)
    if not ok:
        print("SMOKE FAILED")
        return 1
    from torch.nn.attention import SDPBackend, sdpa_kernel
    for D, causal in ((128, False), (128, True), (64, False)):
        B, H, S = 4, 16 if D == 128 else 32, 4096
        q, do = (torch.randn(B, H, S, D, device="cuda", dtype=torch.float16) for _ in range(2))
        k, v = (torch.randn(B, H, S, D, device="cuda", dtype=torch.float16) for _ in range(2))
        o, lse = ops.attention(q, k, v, causal=causal, return_lse=True)
        flops = 10.0 * B * H * S * S * D * (0.5 if causal else 1.0)
        base = sm90_bwd_config(D)
        line = []
        for cfg in (replace(base, dq="ordered"), replace(base, dq="atomic"), replace(base, dq="kernel")):
            t = timed(lambda: ops.attention_backward(do, q, k, v, o, lse, causal=causal, config=cfg))
            line.append(f"{cfg.dq_mode} {flops / t / 1e9:.0f}")
        qg, kg, vg = (x.detach().clone().requires_grad_() for x in (q, k, v))
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            out = torch.nn.functional.scaled_dot_product_attention(qg, kg, vg, is_causal=causal)
        t = timed(lambda: torch.autograd.grad(out, (qg, kg, vg), do, retain_graph=True))
        line.append(f"cudnn {flops / t / 1e9:.0f}")
        a = ops.attention_backward(do, q, k, v, o, lse, causal=causal)
        same = all(torch.equal(x, y) for x, y in zip(a, ops.attention_backward(do, q, k, v, o, lse, causal=causal)))
        ok &= same
        print(f"D{D} S{S} causal={causal} TFLOPS: " + ", ".join(line) + f"; default twice: "
              f"{'same bits' if same else 'DIFFERENT BITS'}", flush=True)
    if not ok:
        print("SMOKE FAILED")
        return 1
    print("SMOKE OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
