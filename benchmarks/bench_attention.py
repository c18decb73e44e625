"""Attention benchmarks: kaiodsl.ops.attention / attention_backward against torch SDPA's FLASH_ATTENTION
(FlashAttention-2) and CUDNN_ATTENTION backends, side by side in one process (not a test).

CUDA-graph replay between events (bench_gemm.timed: warm-up, median of 5 replays), fresh random
inputs. Forward and backward in TFLOPS (4 B H Sq Sk D forward, 2.5x that backward, halved when causal),
decode (Sq = 1) in GB/s of K/V read against the device's measured copy bandwidth (a D2D copy of the
same size). On sm_90a the default forward is the Hopper kernel (ops/attention_sm90.py) for D 64/128;
its rows also time the sm_80 mma.sync kernel (``kaiodsl_sm80_tflops``). Writes a table to stdout, benchmarks/results/attention[_quick].json and a PNG per plot.
``--fp8``: only the e4m3 forward (ops/attention_sm90_fp8.py, V^T prep included, and the prep alone)
against kaiodsl's own f16 forward on the same shapes, into benchmarks/results/attention_fp8.json.

    python benchmarks/bench_attention.py [--quick] [--no-backward] [--sweep] [--fp8] [--hopper]
"""

import argparse
import json
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from kaiodsl.runtime.timing import timed  # noqa: E402

SEQS = [512, 1024, 2048, 4096, 8192, 16384]
DECODE_SK = [1024, 4096, 8192, 32768, 131072]
TOKENS = 16384          # B * S held constant, as FlashAttention's benchmarks do


def _backends(torch):
    from torch.nn.attention import SDPBackend

    return {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}


def _try(fn):
    try:
        return timed(fn)
    except Exception as e:       # a backend that does not run this shape
        print(f"    ({type(e).__name__}: {str(e).splitlines()[0][:100]})", flush=True)
        return None


def bench_forward_backward(torch, ops, dtype, D, S, causal, hq, hkv, backward, results, sm80=True):
    dt = getattr(torch, dtype)
    B = max(1, TOKENS // S)
    q = torch.randn(B, hq, S, D, device="cuda", dtype=dt)
    k, v = (torch.randn(B, hkv, S, D, device="cuda", dtype=dt) for _ in range(2))
    flops = 4.0 * B * hq * S * S * D * (0.5 if causal else 1.0)
    row = {"kind": "fwd", "dtype": dtype, "D": D, "S": S, "B": B, "H": hq, "Hkv": hkv, "causal": causal}
    t = _try(lambda: ops.attention(q, k, v, causal=causal))
    row["kaiodsl_tflops"] = flops / t / 1e9 if t else None
    row["kernel"] = _kernel_of(ops, q, k)
    if row["kernel"] == "sm90" and sm80:     # the mma.sync kernel too, for the before/after on Hopper
        from kaiodsl.ops.attention_fwd import fwd_config
        cfg = fwd_config(D, S)
        t80 = _try(lambda: ops.attention(q, k, v, causal=causal, config=cfg))
        row["kaiodsl_sm80_tflops"] = flops / t80 / 1e9 if t80 else None
    # torch SDPA backends need equal heads: K/V expanded once, outside the timed region (favours torch)
    g = hq // hkv
    ke, ve = (x.repeat_interleave(g, 1).contiguous() for x in (k, v)) if g > 1 else (k, v)
    from torch.nn.attention import sdpa_kernel
    for name, be in _backends(torch).items():
        def run(be=be):
            with sdpa_kernel(be):
                return torch.nn.functional.scaled_dot_product_attention(q, ke, ve, is_causal=causal)
        tt = _try(run)
        row[f"{name}_tflops"] = flops / tt / 1e9 if tt else None
    _ratios(row)
    results.append(row)
    _print(row)
    if not backward:
        return
    do = torch.randn_like(q)
    o, lse = ops.attention(q, k, v, causal=causal, return_lse=True)
    brow = dict(row, kind="bwd")
    t = _try(lambda: ops.attention_backward(do, q, k, v, o, lse, causal=causal))
    brow["kaiodsl_tflops"] = 2.5 * flops / t / 1e9 if t else None
    for name, be in _backends(torch).items():
        qg, kg, vg = (x.detach().clone().requires_grad_() for x in (q, ke, ve))
        try:
            with sdpa_kernel(be):
                out = torch.nn.functional.scaled_dot_product_attention(qg, kg, vg, is_causal=causal)
        except Exception:
            brow[f"{name}_tflops"] = None
            continue

        def run(out=out, qg=qg, kg=kg, vg=vg):
            return torch.autograd.grad(out, (qg, kg, vg), do, retain_graph=True)
        tt = _try(run)
        brow[f"{name}_tflops"] = 2.5 * flops / tt / 1e9 if tt else None
    _ratios(brow)
    results.append(brow)
    _print(brow)


def _kernel_of(ops, q, k) -> str:
    """Which forward kernel ops.attention runs for these operands by default ("sm90" or "sm80")."""
    from kaiodsl.ops.attention_sm90 import wants_sm90
    ok = q.is_contiguous() and k.is_contiguous()
    return "sm90" if ok and wants_sm90(q.shape[3], q.shape[2], {"torch.float16": "f16"}.get(str(q.dtype), "bf16")) \
        else "sm80"


def bench_decode(torch, ops, dtype, D, Sk, hq, hkv, copy_gbs, results):
    dt = getattr(torch, dtype)
    B = 1
    q = torch.randn(B, hq, 1, D, device="cuda", dtype=dt)
    k, v = (torch.randn(B, hkv, Sk, D, device="cuda", dtype=dt) for _ in range(2))
    nbytes = 2 * k.numel() * k.element_size()
    t = _try(lambda: ops.attention(q, k, v))
    row = {"kind": "decode", "dtype": dtype, "D": D, "Sq": 1, "Sk": Sk, "H": hq, "Hkv": hkv,
           "kaiodsl_gbs": nbytes / t / 1e6 if t else None, "copy_gbs": copy_gbs}
    row["fraction_of_copy"] = row["kaiodsl_gbs"] / copy_gbs if t else None
    g = hq // hkv
    ke, ve = (x.repeat_interleave(g, 1).contiguous() for x in (k, v)) if g > 1 else (k, v)
    from torch.nn.attention import sdpa_kernel
    for name, be in _backends(torch).items():
        def run(be=be):
            with sdpa_kernel(be):
                return torch.nn.functional.scaled_dot_product_attention(q, ke, ve)
        tt = _try(run)
        row[f"{name}_gbs"] = nbytes * g / tt / 1e6 if tt else None     # torch reads the expanded K/V
    results.append(row)
    _print(row)


def copy_bandwidth(torch) -> float:
    """GB/s of a 1 GiB device-to-device copy (read + write counted): the faster of the copy
    (in a CUDA graph, a memcpy node that the copy engines run) and an elementwise kernel that copies."""
    a = torch.empty(1 << 29, device="cuda", dtype=torch.float16)
    b = torch.empty_like(a)
    t = min(timed(lambda: b.copy_(a)), timed(lambda: torch.mul(a, 1, out=b)))
    return 2 * a.numel() * 2 / t / 1e6


def _key(r) -> tuple:
    return tuple(r.get(k) for k in ("kind", "dtype", "D", "S", "Sk", "causal", "H", "Hkv"))


def _ratios(row):
    for name in ("flash", "cudnn"):
        k, o = row.get("kaiodsl_tflops"), row.get(f"{name}_tflops")
        row[f"ratio_vs_{name}"] = k / o if k and o else None


def _f(x, w=8, p=1):
    return f"{x:{w}.{p}f}" if isinstance(x, float) else f"{'-':>{w}}"


def _print(r):
    if r["kind"] == "decode":
        print(f"decode {r['dtype']:8} D{r['D']:<4} Sk {r['Sk']:>6} H {r['H']}/{r['Hkv']}  "
              f"kaiodsl {_f(r['kaiodsl_gbs'])} GB/s "
              f"({_f(r['fraction_of_copy'], 5, 2)} of copy {r['copy_gbs']:.0f})  flash {_f(r.get('flash_gbs'))}  "
              f"cudnn {_f(r.get('cudnn_gbs'))}", flush=True)
        return
    sm80 = f" (sm80 {_f(r['kaiodsl_sm80_tflops'])})" if "kaiodsl_sm80_tflops" in r else ""
    print(f"{r['kind']:6} {r['dtype']:8} D{r['D']:<4} S {r['S']:>6} B {r['B']:>3} H {r['H']}/{r['Hkv']} "
          f"{'causal' if r['causal'] else 'full  '}  kaiodsl {_f(r['kaiodsl_tflops'])}{sm80}  flash {_f(r['flash_tflops'])}"
          f"  cudnn {_f(r['cudnn_tflops'])} TFLOPS  x{_f(r['ratio_vs_flash'], 5, 2)} vs FA2  "
          f"x{_f(r['ratio_vs_cudnn'], 5, 2)} vs cuDNN", flush=True)


def plot(results, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib missing: no plot)")
        return
    groups = sorted({(r["kind"], r["dtype"], r["D"], r["causal"], r["Hkv"] != r["H"]) for r in results
                     if r["kind"] != "decode"})
    fig, axes = plt.subplots(len(groups) + 1, 1, figsize=(9, 3.0 * (len(groups) + 1)), squeeze=False)
    for ax, (kind, dtype, D, causal, gqa) in zip(axes[:, 0], groups):
        rows = [r for r in results if r["kind"] != "decode" and
                (r["kind"], r["dtype"], r["D"], r["causal"], r["Hkv"] != r["H"]) == (kind, dtype, D, causal, gqa)]
        for key, label in (("kaiodsl_tflops", "kaiodsl"), ("kaiodsl_sm80_tflops", "kaiodsl sm_80 kernel"),
                           ("flash_tflops", "SDPA flash"),
                           ("cudnn_tflops", "SDPA cuDNN")):
            pts = [(r["S"], r[key]) for r in rows if r.get(key)]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_title(f"{kind} {dtype} D={D} {'causal' if causal else 'full'}{' GQA' if gqa else ''}")
        ax.set_ylabel("TFLOPS")
        ax.legend(fontsize=7)
    ax = axes[-1, 0]
    dec = [r for r in results if r["kind"] == "decode"]
    for dtype in sorted({r["dtype"] for r in dec}):
        pts = [(r["Sk"], r["kaiodsl_gbs"]) for r in dec if r["dtype"] == dtype and r["kaiodsl_gbs"]]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=f"kaiodsl {dtype}")
    if dec:
        ax.axhline(dec[0]["copy_gbs"], ls="--", color="gray", label="copy bandwidth")
    ax.set_xscale("log", base=2)
    ax.set_title("decode Sq=1, GB/s of K/V")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def sweep(torch, ops, results) -> None:
    """Forward tile configs at D 64/128, S 2048/4096/8192 (the bench's token count), f16 (the lead's
    tuning run: --sweep); on sm_90a the Hopper kernel's key tiles and schedules first."""
    from kaiodsl.ops.attention_fwd import FwdConfig

    from kaiodsl.compiler import default_arch
    from kaiodsl.ops.attention_sm90 import Sm90AttnConfig

    C = Sm90AttnConfig
    sm90 = [C(160, 2, pingpong=True), C(160, 2, pingpong=True, dynamic=True), C(160, 2, pingpong=True, persistent=False),
            C(128, 2, pingpong=True), C(128, 2, pingpong=True, dynamic=True), C(128, 2, pingpong=True, persistent=False),
            C(192, 2, pingpong=True, dynamic=True)] if default_arch() == "sm_90a" else []
    sm80 = [FwdConfig(128, 64, 8, 2), FwdConfig(128, 64, 8, 3), FwdConfig(128, 32, 8, 3), FwdConfig(128, 64, 8, 2,
            False), FwdConfig(64, 64, 4, 2), FwdConfig(64, 64, 4, 3), FwdConfig(128, 128, 8, 2, False)]
    cfgs = sm90 or sm80
    for D in (64, 128):
        for S in (2048, 4096, 8192):
            B, H = TOKENS // S, 16
            q, k, v = (torch.randn(B, H, S, D, device="cuda", dtype=torch.float16) for _ in range(3))
            for causal in (False, True):
                flops = 4.0 * B * H * S * S * D * (0.5 if causal else 1.0)
                for cfg in cfgs:
                    t = _try(lambda: ops.attention(q, k, v, causal=causal, config=cfg))
                    tf = flops / t / 1e9 if t else None
                    results.append({"kind": "sweep", "D": D, "S": S, "B": B, "causal": causal, "config": str(cfg),
                                    "kaiodsl_tflops": tf})
                    print(f"sweep D{D} S{S} {'causal' if causal else 'full  '} {str(cfg):18} {_f(tf)} TFLOPS",
                          flush=True)


def sweep_backward(torch, ops, results) -> None:
    """Backward tile configs (``BwdConfig``: mma.sync; ``Sm90BwdConfig``: the sm_90a kernels, the default
    there) at D 64/128, S 4096, f16, causal and not (--sweep-bwd)."""
    from dataclasses import replace

    from kaiodsl.ops import BwdConfig
    from kaiodsl.ops.attention_bwd_sm90 import sm90_bwd_config

    for D in (64, 128):
        base = sm90_bwd_config(D)
        cfgs = [None, replace(base, dq="ordered"), replace(base, dq="atomic"), replace(base, dq="kernel"),
                replace(base, dq="ordered", dq_slots=1), replace(base, dq="ordered", stages=3), BwdConfig()]
        B, H, S = 4, 16, 4096
        q, k, v, do = (torch.randn(B, H, S, D, device="cuda", dtype=torch.float16) for _ in range(4))
        for causal in (False, True):
            o, lse = ops.attention(q, k, v, causal=causal, return_lse=True)
            flops = 10.0 * B * H * S * S * D * (0.5 if causal else 1.0)
            for cfg in cfgs:
                t = _try(lambda: ops.attention_backward(do, q, k, v, o, lse, causal=causal, config=cfg))
                tf = flops / t / 1e9 if t else None
                results.append({"kind": "sweep_bwd", "D": D, "S": S, "causal": causal,
                                "config": str(cfg or "default"), "kaiodsl_tflops": tf})
                print(f"sweep-bwd D{D} {'causal' if causal else 'full  '} {str(cfg or 'default'):18} {_f(tf)} TFLOPS",
                      flush=True)


def bench_fp8(torch, ops, D, S, causal, results, config=None) -> None:
    """One --fp8 row: e4m3 q/k/v (per-tensor descales) and the f16 forward on the same values; with a
    ``config`` (an Sm90AttnConfig) the fp8 kernel alone with that tiling (the sweep rows)."""
    from kaiodsl.ops import attention_sm90_fp8 as fp8
    from kaiodsl.ops._common import inspect_array

    H = 32 if D == 64 else 16
    B = max(1, TOKENS // S)
    q16 = torch.randn(B, H, S, D, device="cuda", dtype=torch.float16)
    k16, v16 = (torch.randn(B, H, S, D, device="cuda", dtype=torch.float16) for _ in range(2))
    q8, k8, v8 = ((x * 4).to(torch.float8_e4m3fn) for x in (q16, k16, v16))
    flops = 4.0 * B * H * S * S * D * (0.5 if causal else 1.0)
    row = {"kind": "fwd_fp8" if config is None else "sweep_fp8", "D": D, "S": S, "B": B, "H": H, "Hkv": H,
           "causal": causal, "config": str(config or "default")}
    t8 = _try(lambda: ops.attention(q8, k8, v8, causal=causal, descale=(0.25, 0.25, 0.25), config=config))
    t16 = _try(lambda: ops.attention(q16, k16, v16, causal=causal)) if config is None else None
    vz = inspect_array("v", v8, "bench")
    tvt = _try(lambda: fp8.transpose_v(v8, vz, B * H, S, D))
    row["fp8_tflops"] = flops / t8 / 1e9 if t8 else None
    row["f16_tflops"] = flops / t16 / 1e9 if t16 else None
    row["vt_prep_us"] = tvt * 1e3 if tvt else None
    row["fp8_over_f16"] = row["fp8_tflops"] / row["f16_tflops"] if t8 and t16 else None
    results.append(row)
    print(f"fp8 D{D:<3} S{S:<6} {'causal' if causal else 'full  '} {row['config']:14} fp8 {_f(row['fp8_tflops'])} TFLOPS  f16 "
          f"{_f(row['f16_tflops'])}  x{_f(row['fp8_over_f16'], 5, 2)}  V^T prep {_f(row['vt_prep_us'])} us",
          flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="f16, D 128, S 1k/4k, one GQA and decode point (< 3 min)")
    ap.add_argument("--no-backward", action="store_true")
    ap.add_argument("--sweep", action="store_true", help="only the forward tile-config sweep (D 64/128, S 2k/4k/8k)")
    ap.add_argument("--sweep-bwd", action="store_true", help="only the backward tile-config sweep")
    ap.add_argument("--decode-only", action="store_true", help="only the full run's decode rows")
    ap.add_argument("--fp8", action="store_true", help="only the fp8 (e4m3) forward against the f16 forward "
                                                      "(D 128/64, S 1k..16k, causal and not), then tilings at S 4096")
    ap.add_argument("--hopper", action="store_true",
                    help="the sm_90a kernels' plan (fwd + bwd, f16 D 128/64, bf16, GQA 32/8; no mma.sync rows, no "
                         "decode) into benchmarks/results/attention_hopper.json (< 5 min)")
    ap.add_argument("--shard", default="0/1", metavar="K/N",
                    help="the full run's rows i with i %% N == K, merged into the JSON already there (the full "
                         "run in N device calls)")
    args = ap.parse_args()
    import torch

    import kaiodsl.runtime
    from kaiodsl import ops

    kaiodsl.runtime.set_backend("cuda")
    torch.manual_seed(0)
    results = []
    copy_gbs = copy_bandwidth(torch)
    print(f"device {torch.cuda.get_device_name()}: copy bandwidth {copy_gbs:.0f} GB/s", flush=True)
    if args.sweep or args.sweep_bwd:
        (sweep_backward if args.sweep_bwd else sweep)(torch, ops, results)
        out = ROOT / "benchmarks" / "results" / ("attention_sweep_bwd.json" if args.sweep_bwd else "attention_sweep.json")
        out.write_text(json.dumps({"results": results}, indent=1))
        return 0
    if args.fp8:
        for D in (128, 64):
            for S in SEQS[1:]:
                for causal in (False, True):
                    bench_fp8(torch, ops, D, S, causal, results)
        from kaiodsl.ops.attention_sm90 import Sm90AttnConfig as C
        for D, cfgs in ((128, [C(pingpong=True), C(bn=192), C(bn=192, pingpong=True), C(128, 3), C(overlap=False)]),
                        (64, [C(pingpong=True), C(bn=256), C(bn=256, pingpong=True), C(bn=192), C(128, 3)])):
            for causal in (False, True):
                for cfg in cfgs:
                    bench_fp8(torch, ops, D, 4096, causal, results, cfg)
        out = ROOT / "benchmarks" / "results" / "attention_fp8.json"
        meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
        out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
        print(f"wrote {out}")
        return 0
    if args.hopper:
        plan = [("float16", 128, S, c, 16, 16) for S in SEQS[1:] for c in (False, True)]
        plan += [("float16", 64, S, c, 32, 32) for S in (1024, 4096, 16384) for c in (False, True)]
        plan += [("bfloat16", 128, 4096, c, 16, 16) for c in (False, True)]
        plan += [("float16", 128, S, c, 32, 8) for S in (4096, 8192) for c in (False, True)]
        out = ROOT / "benchmarks" / "results" / "attention_hopper.json"
        meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "python": platform.python_version()}
        for p in plan:          # the JSON after every row: a run cut short keeps what it measured
            bench_forward_backward(torch, ops, *p, not args.no_backward, results, sm80=False)
            out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
        print(f"wrote {out}")
        plot(results, out.with_suffix(".png"))
        return 0
    if args.quick:
        plan = [("float16", 128, S, c, 32, 32) for S in (1024, 4096) for c in (False, True)]
        plan += [("float16", 128, 4096, True, 32, 8)]
        dec = [("float16", 128, sk, 32, 8) for sk in (8192, 131072)]
    else:
        plan = [(dt, D, S, c, 32 if D == 64 else 16, 32 if D == 64 else 16)
                for dt in ("float16", "bfloat16") for D in (64, 128) for S in SEQS for c in (False, True)]
        plan += [("float16", 128, S, c, 32, 8) for S in SEQS for c in (False, True)]
        dec = [(dt, 128, sk, 32, 8) for dt in ("float16", "bfloat16") for sk in DECODE_SK]
        dec += [("float16", 128, sk, 32, 32) for sk in DECODE_SK]
    shard, shards = (int(x) for x in args.shard.split("/"))
    rows = ([] if args.decode_only else [("fb", p) for p in plan]) + [("dec", d) for d in dec]
    for kind, p in rows[shard::shards]:
        if kind == "fb":
            bench_forward_backward(torch, ops, *p, not args.no_backward, results)
        else:
            bench_decode(torch, ops, *p, copy_gbs, results)
    out = ROOT / "benchmarks" / "results" / ("attention_quick.json" if args.quick else "attention.json")
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "python": platform.python_version(),
            "copy_gbs": copy_gbs}
    if (shards > 1 or args.decode_only) and out.exists():   # the other rows stay; this run's replace theirs
        mine = {_key(r) for r in results}
        results = [r for r in json.loads(out.read_text())["results"] if _key(r) not in mine] + results
        meta["shards"] = "several device calls (--shard / --decode-only)"
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"wrote {out}")
    plot(results, out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
