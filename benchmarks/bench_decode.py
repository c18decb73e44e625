"""Decode throughput of a Llama-architecture model: transformers' ``sdpa`` model against the same model
patched with ``kaiodsl.torch.patch`` (f16 linears, the W8A8 / W4A16 variants, and kaiodsl attention
when this install has ``kaiodsl.ops.attention``).

Random weights (no download): LlamaConfig with hidden 2048, 16 layers, 16 heads, 4 KV heads (GQA).
Greedy ``generate`` with the KV cache, ``min_new_tokens == max_new_tokens`` so every run decodes the
same count; tokens/s = batch x new tokens / wall time (CUDA-synchronized, after a warm-up run), the
median of REPEATS. Batches 1 and 16. Writes benchmarks/results/bench_decode.json (and $OUT/ if set).

    python benchmarks/bench_decode.py [--new-tokens 128] [--prompt 32] [--variants float,w8a8,w4a16]
"""

import argparse
import copy
import json
import os
import platform
import statistics
import time

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "bench_decode.json")
REPEATS = 3
CONFIG = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=16, num_attention_heads=16,
              num_key_value_heads=4, vocab_size=32000, max_position_embeddings=4096)


def tokens_per_s(model, ids, new_tokens: int) -> float:
    import torch

    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, use_cache=True,
              pad_token_id=0)
    with torch.no_grad():
        model.generate(ids, **kw)                          # warm-up: kernels compiled and loaded
        times = []
        for _ in range(REPEATS):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            model.generate(ids, **kw)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return ids.shape[0] * new_tokens / statistics.median(times)


def main() -> None:
    import torch
    import transformers

    import kaiodsl.torch as kt

    p = argparse.ArgumentParser()
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--batches", default="1,16")
    p.add_argument("--variants", default="float,w8a8,w4a16")
    args = p.parse_args()
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(**CONFIG, attn_implementation="sdpa")
    base = transformers.LlamaForCausalLM(cfg).to("cuda", torch.float16).eval()
    models = {"transformers sdpa": (base, None)}
    for v in args.variants.split(","):
        m = copy.deepcopy(base)
        report = kt.patch(m, linear=v, attention="auto")
        models[f"kaiodsl {v}"] = (m, report)
    rows = {}
    for B in (int(b) for b in args.batches.split(",")):
        ids = torch.randint(0, cfg.vocab_size, (B, args.prompt), device="cuda")
        for name, (m, _) in models.items():
            rows[f"{name} / batch {B}"] = tokens_per_s(m, ids, args.new_tokens)
            torch.cuda.empty_cache()
    print(f"\ndecode, Llama hidden 2048 x 16 layers (GQA 16/4), f16, prompt {args.prompt}, "
          f"{args.new_tokens} new tokens, {torch.cuda.get_device_name(0)}")
    print(f"{'model / batch':<40}{'tokens/s':>12}{'x sdpa':>8}")
    for key, tps in rows.items():
        ref = rows[f"transformers sdpa / batch {key.rsplit(' ', 1)[-1]}"]
        print(f"{key:<40}{tps:>12.1f}{tps / ref:>8.2f}")
    for name, (_, report) in models.items():
        if report is not None:
            print(f"{name}: {len(report.linear)} linears swapped, attention: {report.attention}")
    doc = {"benchmark": "bench_decode", "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "transformers": transformers.__version__, "python": platform.python_version(), "config": CONFIG,
           "prompt": args.prompt, "new_tokens": args.new_tokens, "repeats": REPEATS,
           "tokens_per_s": {k: round(v, 1) for k, v in rows.items()},
           "attention": {n: r.attention for n, (_, r) in models.items() if r is not None}}
    for path in [OUT] + ([os.path.join(os.environ["OUT"], "bench_decode.json")] if os.environ.get("OUT") else []):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(doc, f, indent=2)
    print(f"\nwrote {OUT}")


if __name__ == "__main__":
    main()
