"""Tensor-parallel decode: tokens/s of a Llama model patched with ``kaiodsl.torch.patch(tp=...)`` at TP=1
and TP=2 (batches 1 and 16), and where a TP=2 rank's GPU time goes: NCCL all-reduce kernels against
kaiodsl's kernels (and torch's own: embeddings, norms, rotary, elementwise), from the profiler.

Random weights (no download): hidden 2048, 16 layers, 16 heads, 4 KV heads (GQA), f16. Greedy
``generate`` with the KV cache, every run decoding the same count; tokens/s = batch x new tokens /
wall time (synchronized, after a warm-up), the median of REPEATS. Writes
benchmarks/results/bench_tp.json (and $OUT/ if set).

    python benchmarks/bench_tp.py [--new-tokens 64] [--prompt 32] [--batches 1,16] [--linear float]
    torchrun --nproc-per-node 2 benchmarks/bench_tp.py ...        # the same, ranks from torchrun

Needs 2 CUDA GPUs. ``--dry-run`` runs the same code on the CPU instead: gloo, CPU tensors (the
simulator), a tiny model, 2 new tokens, wall-clock timing of the all-reduces; it writes
bench_tp_dry.json and checks only that the path works (its figures mean nothing).
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPEATS = 3
CONFIG = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=16, num_attention_heads=16,
              num_key_value_heads=4, vocab_size=32000, max_position_embeddings=4096)
DRY = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=1, num_attention_heads=4,
           num_key_value_heads=2, vocab_size=128, max_position_embeddings=64)


def make_model(cfg: dict, device):
    import torch
    import transformers

    torch.manual_seed(0)                    # every rank builds the same weights
    c = transformers.LlamaConfig(**cfg, attn_implementation="sdpa")
    return transformers.LlamaForCausalLM(c).to(device=device, dtype=torch.float16).eval()


def sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def generate(model, ids, new_tokens: int):
    return model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                          use_cache=True, pad_token_id=0)


def tokens_per_s(model, ids, new_tokens: int, repeats: int) -> float:
    import torch

    with torch.no_grad():
        generate(model, ids, new_tokens)                      # warm-up: kernels compiled and loaded
        times = []
        for _ in range(repeats):
            sync(ids.device)
            t0 = time.perf_counter()
            generate(model, ids, new_tokens)
            sync(ids.device)
            times.append(time.perf_counter() - t0)
    return ids.shape[0] * new_tokens / statistics.median(times)


def gpu_breakdown(model, ids, new_tokens: int) -> dict:
    """Milliseconds of GPU time per kind of kernel over one generate: NCCL, kaiodsl, torch."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        generate(model, ids, new_tokens)
        sync(ids.device)
    out = {"all_reduce_ms": 0.0, "kaiodsl_ms": 0.0, "torch_ms": 0.0}
    for e in prof.key_averages():
        us = getattr(e, "self_device_time_total", None)
        if us is None:
            us = getattr(e, "self_cuda_time_total", 0)
        if not us or str(getattr(e, "device_type", "")).endswith("CPU"):
            continue
        name = e.key
        kind = "all_reduce_ms" if "nccl" in name.lower() else \
            "torch_ms" if ("at::" in name or name.startswith("void ") or "cutlass" in name or "Memcpy" in name
                           or "Memset" in name) else "kaiodsl_ms"
        out[kind] += us / 1e3
    return {k: round(v, 3) for k, v in out.items()}


def wall_breakdown(model, ids, new_tokens: int) -> dict:
    """The CPU (dry-run) stand-in: wall milliseconds inside all-reduce against the rest of one generate."""
    import torch

    from kaiodsl.torch import parallel

    spent = [0.0]
    real = parallel.dist.all_reduce

    def timed(*a, **kw):
        t0 = time.perf_counter()
        try:
            return real(*a, **kw)
        finally:
            spent[0] += time.perf_counter() - t0

    parallel.dist.all_reduce = timed
    try:
        with torch.no_grad():
            t0 = time.perf_counter()
            generate(model, ids, new_tokens)
            total = time.perf_counter() - t0
    finally:
        parallel.dist.all_reduce = real
    return {"all_reduce_ms": round(spent[0] * 1e3, 3), "rest_ms": round((total - spent[0]) * 1e3, 3)}


def measure(rank: int, world: int, args, tp) -> dict:
    """One rank: the patched model at ``tp`` (None: TP=1), tokens/s per batch and the time breakdown."""
    import torch

    import kaiodsl.torch as kt
    from kaiodsl.runtime import backend

    backend.set_backend("sim" if args.dry_run else "cuda")
    device = "cpu" if args.dry_run else f"cuda:{torch.cuda.current_device()}"
    cfg = DRY if args.dry_run else CONFIG
    model = make_model(cfg, device)
    report = kt.patch(model, linear=args.linear, tp=tp)
    rows, breakdown = {}, {}
    for B in args.batch_list:
        g = torch.Generator().manual_seed(B)
        ids = torch.randint(1, cfg["vocab_size"], (B, args.prompt), generator=g).to(device)
        rows[f"batch {B}"] = round(tokens_per_s(model, ids, args.new_tokens, args.repeats), 2)
        if tp is not None:
            breakdown[f"batch {B}"] = (wall_breakdown if args.dry_run else gpu_breakdown)(model, ids, args.new_tokens)
    return {"rank": rank, "tokens_per_s": rows, "breakdown": breakdown, "report": str(report)}


def tp2_rank(rank: int, world: int, args) -> dict:
    return measure(rank, world, args, "default")


def tp1(args) -> dict:
    return measure(0, 1, args, (0, 1))


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--batches", default="1,16")
    p.add_argument("--linear", default="float", choices=("float", "w8a16", "w4a16"))
    p.add_argument("--repeats", type=int, default=REPEATS)
    p.add_argument("--dry-run", action="store_true",
                   help="the CPU path: gloo, the simulator, a tiny model (checks the script, not speed)")
    args = p.parse_args(argv)
    if args.dry_run:
        args.new_tokens, args.prompt, args.repeats = min(args.new_tokens, 2), min(args.prompt, 8), 1
        if args.batches == "1,16":
            args.batches = "1,2"
    args.batch_list = [int(b) for b in args.batches.split(",")]
    return args


def require_gpus(n: int = 2) -> None:
    import torch

    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if found < n:
        sys.exit(f"bench_tp.py: needs {n} CUDA GPUs (TP=2 over NCCL); this host has {found}. "
                 f"Run with --dry-run for the CPU path (gloo + the simulator, tiny model).")


def main(argv=None) -> dict:
    args = parse(argv)
    import torch
    import torch.distributed as dist
    import transformers

    from kaiodsl.torch import parallel

    if not args.dry_run:
        require_gpus(2)
    comm = "gloo" if args.dry_run else "nccl"
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:          # under torchrun: this process is one rank
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        if world != 2:
            sys.exit(f"bench_tp.py: run it with 2 ranks (torchrun --nproc-per-node 2), got WORLD_SIZE={world}")
        if comm == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
        dist.init_process_group(comm)
        mine = tp2_rank(rank, world, args)
        ranks = [None, None]
        dist.all_gather_object(ranks, mine)
        one = tp1(args) if rank == 0 else None                     # TP=1 on rank 0 while rank 1 waits
        dist.barrier()
        dist.destroy_process_group()
        if rank:
            return {}
    else:
        ranks = parallel.spawn(tp2_rank, 2, args, backend=comm)
        one = tp1(args)
    doc = {"benchmark": "bench_tp", "dry_run": args.dry_run, "comm": comm,
           "gpu": torch.cuda.get_device_name(0) if comm == "nccl" else "cpu (simulator)",
           "torch": torch.__version__, "transformers": transformers.__version__,
           "python": platform.python_version(), "config": DRY if args.dry_run else CONFIG, "linear": args.linear,
           "prompt": args.prompt, "new_tokens": args.new_tokens, "repeats": args.repeats,
           "tokens_per_s": {"tp1": one["tokens_per_s"], "tp2": ranks[0]["tokens_per_s"]},
           "tp2_time_ms": {f"rank {r['rank']}": r["breakdown"] for r in ranks},
           "breakdown_source": "wall clock around all_reduce (CPU)" if args.dry_run else
           "torch.profiler CUDA kernel time: nccl* / kaiodsl (our kernel names) / torch (at::, cutlass, copies)"}
    print(f"\nTP decode, {doc['gpu']}, linear={args.linear}, prompt {args.prompt}, {args.new_tokens} new tokens")
    print(f"{'batch':<10}{'TP=1 tok/s':>14}{'TP=2 tok/s':>14}")
    for key in one["tokens_per_s"]:
        print(f"{key:<10}{one['tokens_per_s'][key]:>14.1f}{ranks[0]['tokens_per_s'][key]:>14.1f}")
    for r in ranks:
        print(f"rank {r['rank']}: {r['breakdown']}")
    name = "bench_tp_dry.json" if args.dry_run else "bench_tp.json"
    paths = [os.path.join(HERE, "results", name)] + ([os.path.join(os.environ["OUT"], name)]
                                                     if os.environ.get("OUT") else [])
    for path in paths:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(doc, f, indent=2)
    print(f"\nwrote {paths[0]}")
    return doc


if __name__ == "__main__":
    main()
