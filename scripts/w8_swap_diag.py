"""GPU stress check of the swap-AB kernel (ops/gemm_sm90_w4_swap.py), int8 and int4 weights, through a
plain ``C = A W^T`` launch of its body: wrong-element counts against a float64 reference, run-to-run
equality over fresh seeds, and the kernel's time (CUDA events, median) beside f16 ``torch.matmul`` at
the same shape.

The kernel once kept a k slot of wgmma work in flight (``wgmma.wait_group 1``) while the next slot's
A fragment was built in the same registers, which the pending wgmma may still read (PTX ISA 9.7.15.7):
on the H200 int8 weights at 256 x 128 tiles then gave wrong elements now and then, different run to
run; int4 happened to pass. The run that found it (that variant and one releasing the ring two slots
back, both wrong for int8; the shipped ``wait_group 0``, right) is
benchmarks/results/logs/swap_fragment_race_2026-12-04.log; the simulator now reports the write.

    python3 scripts/w8_swap_diag.py [--reps N]
"""

import argparse
import sys
from functools import lru_cache

import torch

import kaiodsl
from kaiodsl import Ptr, TensorMap, f16, f32, i32, tiles, u8
from kaiodsl.ops import gemm_sm90_w4_swap as sw
from kaiodsl.ops.gemm_sm90_w4_stage import W4Dequant
from kaiodsl.ops import pack_int4
from kaiodsl.runtime.timing import timed_eager

@lru_cache(maxsize=None)
def kernel(kind, gs, cfg):
    D = W4Dequant(cfg, "f16", gs, False, kind)
    colscale = kind == "int8" and not gs
    E = tiles.Epilogue((tiles.ColScale(),) if colscale else (), f16)
    name = f"swapdiag_{kind}_g{gs}_{cfg}".replace("/", "_")

    @kaiodsl.kernel(block_size=cfg.threads, name=name)
    def kern(ta: kaiodsl.TensorMap, tw: kaiodsl.TensorMap, pcs: Ptr[f32], gsc: Ptr[f16], z: Ptr[u8], c: Ptr[f16],
             M: i32, N: i32, K: i32):
        args = (pcs,) if colscale else ()
        sw._body(D, E, ta, tw, gsc, z, c, args, M, N, K)

    return kern


def inputs(kind, M, N, K, gs, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    a = torch.randn(M, K, device="cuda", generator=g).half()
    pcs = torch.rand(N, device="cuda", generator=g) * 1e-3 + 1e-4
    if kind == "int8":
        q = torch.randint(-128, 128, (N, K), device="cuda", dtype=torch.int8, generator=g)
        wq, qv = q, q.double()
    else:
        q = torch.randint(0, 16, (N, K), device="cuda", dtype=torch.uint8, generator=g)
        wq, qv = torch.from_numpy(pack_int4(q.cpu().numpy())).cuda(), q.double() - 8
    if gs:
        gsc = (torch.rand(N, K // gs, device="cuda", generator=g) * 1e-3 + 1e-4).half()
        w = qv * gsc.double().repeat_interleave(gs, 1)
    else:
        gsc = a[:1]                       # unread
        w = qv * pcs.double()[:, None]
    z = torch.zeros(1, device="cuda", dtype=torch.uint8)
    return a, wq, pcs, gsc, z, a.double() @ w.T


def launcher(kind, gs, cfg, a, wq, pcs, gsc, z, M, N, K):
    c = torch.full((M, N), float("nan"), device="cuda", dtype=torch.float16)
    ta = TensorMap(a, (cfg.block_m, 64), swizzle=128, l2_promotion=256)
    tw = sw._weights_map(kind, cfg, wq)
    total = -(-M // cfg.block_m) * -(-N // cfg.block_n)
    k = kernel(kind, gs, cfg)

    def go():
        k[min(total, 132), cfg.threads](ta, tw, pcs, gsc, z, c, M, N, K, smem=cfg.smem_bytes(kind))
    return c, go


def case(kind, gs, cfg, M, N, K, seed):
    a, wq, pcs, gsc, z, want = inputs(kind, M, N, K, gs, seed)
    c, go = launcher(kind, gs, cfg, a, wq, pcs, gsc, z, M, N, K)
    go()
    torch.cuda.synchronize()
    got = c.double().clone()
    c.fill_(float("nan"))
    go()
    torch.cuda.synchronize()
    again = c.double()
    err = float((got - want).norm() / want.norm())
    bad = ((got - want).abs() > 0.05 * want.abs().mean()) | ~torch.isfinite(got)
    nb = int(bad.sum())
    line = (f"{kind} gs={gs} {cfg} M={M} N={N} K={K} seed={seed}: err={err:.3g} "
            f"bad={nb}/{M * N} same-twice={bool(torch.equal(got, again))}")
    if nb:
        m = bad.nonzero()[:, 0]
        line += f"; bad rows m%{cfg.block_m} in [{int((m % cfg.block_m).min())}, {int((m % cfg.block_m).max())}]"
    print(line, flush=True)
    return nb == 0 and err < 1e-2


def timing(kind, gs, cfg, M, N, K):
    a, wq, pcs, gsc, z, _ = inputs(kind, M, N, K, gs, 1)
    b = torch.randn(N, K, device="cuda").half()
    ref = timed_eager(lambda: torch.matmul(a, b.T), warmup=5, reps=30)
    _, go = launcher(kind, gs, cfg, a, wq, pcs, gsc, z, M, N, K)
    t = timed_eager(go, warmup=5, reps=30)
    print(f"{kind} gs={gs} {cfg} M={M} N={N} K={K}: f16 cuBLAS {ref:.3f} ms, kernel {t:.3f} ms ({ref / t:.2f}x)",
          flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    fails = 0
    shapes = ((2048, 14336, 4096), (2048, 4096, 4096), (8192, 6144, 4096))
    for r in range(args.reps):
        for kind, gs, cfg in (("int8", 0, sw.DEFAULT8), ("int8", 128, sw.DEFAULT8), ("int4", 128, sw.DEFAULT)):
            for M, N, K in shapes[:1] if r else shapes:
                fails += not case(kind, gs, cfg, M, N, K, seed=r)
    print(f"failing cases: {fails}", flush=True)
    for kind, gs, cfg in (("int8", 0, sw.DEFAULT8), ("int4", 128, sw.DEFAULT)):
        for M, N, K in ((2048, 14336, 4096), (2048, 4096, 4096), (8192, 4096, 4096)):
            timing(kind, gs, cfg, M, N, K)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
