"""W4A16 decode sweep (not a test): ops.matmul_int4 at M in {1, 4, 16}, N = K in {4096, 8192} (and
14336 x 4096), and the fused qkv_project_int4 at Llama-3-8B (hidden 4096, H 32, H_kv 8, D 128) at
M in {1, 16}, under the old configs, the heuristic's and candidate DecodeConfigs (staged A, prefetch,
K split over blocks), against f16 torch.matmul (cuBLAS) in the same process. Times are device time (kaiodsl.runtime.timing.timed: CUDA
graph replay, median); each line prints us, the ratio cuBLAS / ours (> 1: faster) and the weights'
effective GB/s. Each side's operands are cloned to >= 3x the L2 and the timed calls rotate through
them (kaiodsl.runtime.timing.cold_copies; one buffer would be timed out of the L2). Every candidate is checked against the first one's output (split-K sums in another
order: relative difference, not bits).

    python scripts/decode_int4_sweep.py            # everything (~2 min on an H200)
    python scripts/decode_int4_sweep.py --quick    # the N = K = 8192, M = 16 case and the QKV ones
    python scripts/decode_int4_sweep.py --late     # the defaults against late_scale variants (M 1, 4, 16)
"""

import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import importlib  # noqa: E402

import torch  # noqa: E402

import kaiodsl.runtime  # noqa: E402
from kaiodsl import ops  # noqa: E402
from kaiodsl.ops import DecodeConfig as D  # noqa: E402
from kaiodsl.runtime.timing import cold_copies, timed_rotating  # noqa: E402

kaiodsl.runtime.set_backend("cuda")
m4 = importlib.import_module("kaiodsl.ops.matmul_int4")
SMS = torch.cuda.get_device_properties(0).multi_processor_count
GS = 128


def auto_splits(cfg: D, N: int, K: int) -> D:
    """The heuristic's split rule applied to another tiling (~2 blocks an SM, each warp >= 1 step)."""
    tiles = -(-N // cfg.block_n)
    return replace(cfg, splits=max(1, min(round(2 * SMS / tiles), (K // 128) // (cfg.k_split * cfg.unroll), 16)))


LATE = "--late" in sys.argv


def late_candidates(M: int, base: D) -> list:
    """``base``, its late_scale twin, and tilings around it: more loads in flight, weights and A
    prefetched a step ahead (prefetch_a), with and without late_scale."""
    out = [("auto", base)]
    more = [D(1, 8, 4, 2), D(1, 8, 4, 4), D(2, 4, 4, 2), D(1, 8, 4, 1, prefetch=True, prefetch_a=True),
            D(1, 8, 4, 2, prefetch=True, prefetch_a=True), D(1, 8, 2, 2, prefetch=True, prefetch_a=True),
            D(2, 4, 2, 2, prefetch=True, prefetch_a=True)] if M <= 8 else \
        [D(2, 4, 2, 2), D(2, 4, 2, 4), D(1, 8, 2, 2), D(1, 8, 4, 2), D(4, 4, 2, 2), D(2, 4, 2, 1, prefetch=True, prefetch_a=True),
         D(2, 4, 2, 2, prefetch=True, prefetch_a=True), D(1, 8, 2, 1, prefetch=True, prefetch_a=True),
         D(2, 4, 1, 2, prefetch=True, prefetch_a=True), D(2, 2, 2, 2, prefetch=True, prefetch_a=True)]
    for c in [base] + more:
        for late in (False, True):
            c2 = replace(c, late_scale=late)
            if c2 not in [x for _, x in out]:
                out.append((str(c2), c2))
    return out


def candidates(M: int, N: int, K: int) -> list:
    """(label, config) pairs: the default, the staged split candidate, then the alternatives."""
    if LATE:
        return late_candidates(M, m4.int4_decode_config(M, N, K, SMS))
    out = [("auto", m4.int4_decode_config(M, N, K, SMS)), ("staged", m4.staged_decode_config(M, N, K, SMS))]
    for base in (D(4, 2, 4, 1, 1, True, True), D(4, 2, 4, 2, 1, True), D(4, 2, 4, 2, 1, True, True),
                 D(8, 1, 4, 2, 1, True), D(8, 1, 4, 1, 1, True, True), D(4, 4, 4, 1, 1, True, True),
                 D(2, 4, 4, 1, 1, True, True), D(4, 2, 2, 2, 1, True, True), D(4, 2, 4, 1, 1, False, True),
                 D(4, 2, 4, 2, 1, False, False), D(1, 8, 4, 2, 1, False, True), D(2, 4, 2, 2, 1, True, True)):
        c = auto_splits(base, N, K)
        out.append((str(c), c))
        for f in (0.5, 2):            # the split count either side of the rule
            s = max(1, min(int(c.splits * f), 32))
            if s != c.splits and base.stage_a and base.prefetch and base.unroll == 1 and base.n_tiles == 4:
                out.append((str(replace(c, splits=s)), replace(c, splits=s)))
    seen, uniq = set(), []
    for label, c in out:
        if c not in seen:
            seen.add(c)
            uniq.append((label, c))
    return uniq


def int4_weights(N: int, K: int, gen):
    q = torch.randint(0, 16, (N, K), generator=gen, dtype=torch.uint8).numpy()
    wp = torch.from_numpy(ops.pack_int4(q)).cuda()
    s = (torch.rand(N, K // GS, generator=gen) * 1e-2 + 5e-3).half().cuda()
    return wp, s


def rel(a, b) -> float:
    a, b = a.float(), b.float()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def sweep_matmul(M: int, N: int, K: int, gen):
    wp, s = int4_weights(N, K, gen)
    a = torch.randn(M, K, generator=gen).half().cuda()
    w16 = torch.randn(N, K, generator=gen).half().cuda()
    t_c = timed_rotating([lambda w=w: a @ w.T for w, in cold_copies([w16])])
    sets = cold_copies([wp, s])
    wbytes = N * K // 2 + s.numel() * 2
    ref = None
    print(f"matmul_int4 M {M:2d} N {N:5d} K {K:5d}: cuBLAS f16 {t_c * 1e3:7.1f} us", flush=True)
    for label, cfg in candidates(M, N, K):
        try:
            out = ops.matmul_int4(a, wp, s, group_size=GS, config=cfg)
            ref = out if ref is None else ref
            t = timed_rotating([lambda p=p, q=q: ops.matmul_int4(a, p, q, group_size=GS, config=cfg) for p, q in sets])
        except Exception as e:                      # a candidate the arch refuses (shared memory, ...)
            print(f"    {label:24s} skipped: {type(e).__name__}: {str(e)[:100]}")
            continue
        print(f"    {label:24s} {t * 1e3:7.1f} us  {t_c / t:5.2f}x  {wbytes / t / 1e6:6.0f} GB/s  "
              f"(diff {rel(out, ref):.1e})", flush=True)


def sweep_qkv(M: int, gen, shape=(4096, 32, 8, 128)):
    hidden, H, Hkv, Dh = shape
    Nq, Nkv = H * Dh, Hkv * Dh
    ws = [int4_weights(n, hidden, gen) for n in (Nq, Nkv, Nkv)]
    x = torch.randn(M, hidden, generator=gen).half().cuda()
    w16 = [torch.randn(n, hidden, generator=gen).half().cuda() for n in (Nq, Nkv, Nkv)]
    t_c = timed_rotating([lambda c=c: [x @ w.T for w in c] for c in cold_copies(w16)])
    args = (x, *(w for w, _ in ws), *(s for _, s in ws))
    sets = cold_copies(args[1:])
    print(f"qkv_project_int4 hidden {hidden} H {H}/{Hkv} M {M:2d}: three cuBLAS f16 {t_c * 1e3:7.1f} us", flush=True)
    old = D(2, 4, 2, 2) if M > 8 else D(1, 8, 4, 2)       # ops.qkv.qkv_config's decode shapes
    cands = [("old/auto", None), ("old", old)]
    if LATE:
        cands = [("default", None)] + late_candidates(M, old)[1:]
    for c in () if LATE else (D(2, 4, 2, 2, 1, True), D(2, 4, 2, 2, 1, False, True), D(2, 4, 2, 2, 1, True, True),
              D(2, 4, 2, 1, 1, True, True), D(1, 8, 4, 1, 1, True, True), D(1, 8, 2, 2, 1, False, True)):
        cands.append((str(c), c))
    for base in () if LATE else (D(4, 2, 4, 1, 1, True, True), D(4, 2, 4, 2, 1, True),
                                  D(8, 1, 4, 1, 1, True, True), D(2, 4, 4, 1, 1, True, True),
                                  D(4, 2, 4, 1, 1, False, True)):
        c = auto_splits(base, Nq + 2 * Nkv, hidden)       # K split over blocks: the last block's epilogue
        cands.append((str(c), c))
    ref = None
    for label, cfg in cands:
        try:
            out = ops.qkv_project_int4(*args, group_size=GS, config=cfg)
            ref = out[0] if ref is None else ref
            t = timed_rotating([lambda c=c: ops.qkv_project_int4(x, *c, group_size=GS, config=cfg) for c in sets])
        except Exception as e:
            print(f"    {label:24s} skipped: {type(e).__name__}: {str(e)[:100]}")
            continue
        print(f"    {label:24s} {t * 1e3:7.1f} us  {t_c / t:5.2f}x  (diff {rel(out[0], ref):.1e})", flush=True)


def main():
    quick = "--quick" in sys.argv
    gen = torch.Generator().manual_seed(0)
    shapes = [(M, 8192, 8192) for M in (1, 16)] + [(16, 4096, 4096), (16, 14336, 4096)] if LATE else \
        [(16, 8192, 8192)] if quick else [(M, n, n) for n in (4096, 8192) for M in (1, 4, 16)] + \
        [(16, 14336, 4096), (16, 4096, 14336)]
    for M, N, K in shapes:
        sweep_matmul(M, N, K, gen)
    for M in (1, 4, 16) if LATE else (1, 16):
        sweep_qkv(M, gen)
    if LATE:
        for M in (1, 16):
            sweep_qkv(M, gen, (8192, 64, 8, 128))          # the 70B-like shape
    print(f"({SMS} SMs; 'auto' is matmul_int4's default, int4_decode_config; 'staged' staged_decode_config)")


if __name__ == "__main__":
    main()
