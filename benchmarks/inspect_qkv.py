"""Registers, spills and shared memory of every W8A16 / W4A16 / QKV kernel config on sm_90a
(nvJitLink on the CPU: no GPU needed).

    python benchmarks/inspect_qkv.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def kernels():
    import importlib

    from kaiodsl import f16
    from kaiodsl.ops import matmul_int4_tiled as i4t
    from kaiodsl.ops import qkv

    w8 = importlib.import_module("kaiodsl.ops.matmul_w8a16")      # the module (ops.matmul_w8a16 is the op)
    from kaiodsl.ops.matmul import block_gemm
    from kaiodsl.ops.qkv_kernels import QkvPlan, qkv_kernel
    from kaiodsl.ops.decode_gemm import DecodeConfig, DecodeGemm
    from kaiodsl.ops.w8_gemm import W8Gemm

    for gs in (0, 128):
        yield (f"matmul_w8a16 decode {w8.DECODE} g{gs}",
               w8.w8a16_decode_kernel("f16", "f16", w8.DECODE, gs, False, True), w8.DECODE.smem_bytes())
    for cfg in (w8.SMALL_M, w8.LARGE_M):
        for gs in (0, 128):
            yield f"matmul_w8a16 {cfg} g{gs}", w8.w8a16_kernel("f16", "f16", cfg, gs, False), cfg.smem_bytes()
    for cfg in (i4t.PREFILL, i4t.PREFILL_LARGE):
        yield f"matmul_int4 tiled {cfg}", i4t.int4_tiled_kernel("f16", 128, True, cfg), cfg.smem_bytes()
    for kind, table in (("f16", qkv.F16_CONFIGS), ("int8", qkv.W8_CONFIGS), ("int4", qkv.I4_CONFIGS)):
        for cfg in table:
            if isinstance(cfg, DecodeConfig):
                G, smem = DecodeGemm(cfg, f16, kind, 128 if kind == "int4" else 0, kind == "int4"), cfg.smem_bytes(128)
            elif kind == "f16":
                G, smem = block_gemm(cfg, f16, True, "f16"), cfg.smem_bytes(2)
            elif kind == "int8":
                G, smem = W8Gemm(cfg, f16), cfg.smem_bytes()
            else:
                G, smem = i4t.Int4Gemm(cfg, f16, 128, True), cfg.smem_bytes()
            for rope in ("", "rotate_half"):
                plan = QkvPlan(kind, G, f16, rope != "", 128 if rope else 0, rope, False, False, cfg.block_m,
                               cfg.block_n, cfg.threads)
                yield (f"qkv {kind} {cfg} {'bhsd+' + rope if rope else 'mn'}", qkv_kernel(plan),
                       max(smem, cfg.block_m * cfg.block_n * 4) if rope else smem)
    from kaiodsl.ops import gemm_sm90, qkv_sm90

    for cfg, bhsd, rope in ((gemm_sm90.DEFAULT, False, ""), (gemm_sm90.DEFAULT, True, ""),
                            (gemm_sm90.NARROW, True, "rotate_half"), (gemm_sm90.NARROW, True, "interleaved")):
        segs, types = qkv_sm90.segments(4096, 1024, f16, True, bhsd, 1024, 128, rope, bool(rope))
        yield (f"qkv f16 sm_90a {cfg} bias {'bhsd' if bhsd else 'mn'}{'+' + rope if rope else ''}",
               gemm_sm90.sm90_gemm_kernel("f16", cfg, segs, types), cfg.smem_bytes())
    yield "matmul_int4 decode (ops/matmul_int4.py)", importlib.import_module("kaiodsl.ops.matmul_int4").int4_kernel(
        "f16", 128, True, True, 2, 4, 2, 2), 0


def main() -> int:
    print(f"{'kernel config':<58} {'regs':>5} {'spills':>7} {'smem':>7}")
    for name, k, smem in kernels():
        c = k.compile(arch="sm_90a")
        print(f"{name:<58} {c.registers:>5} {c.spills:>7} {smem:>7}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
