"""64-bit offsets in every op kernel (issue 10 item 1), checked on the generated PTX: the simulator
cannot allocate 2^31 elements, so this is the CPU-tier guard; tests/ops/test_large_gpu.py runs the
shapes on the GPU. For each kernel and each leading-dimension parameter (K, N):

* it is widened (``cvt.s64.s32`` or ``mul.wide.s32``): block index x K, row x N, k0 x N are 64-bit;
* no 32-bit multiply takes it together with a value derived from the block index (%ctaid), which is
  the product that passes 2^31 on a big operand (products inside one tile stay 32-bit on purpose).
"""

import importlib
import re

import pytest

mm = importlib.import_module("kaiodsl.ops.matmul")
m8 = importlib.import_module("kaiodsl.ops.matmul_int8")
m4 = importlib.import_module("kaiodsl.ops.matmul_int4")
qz = importlib.import_module("kaiodsl.ops.quantize")


def _kernels():
    for name in ("SYNC", "ASYNC_LARGE", "ASYNC_SMALL_M", "ASYNC_TINY_M"):
        for kmaj in (True, False):
            for wide in (False, True):
                yield (f"matmul-{name}-{'nk' if kmaj else 'kn'}{'-wide' if wide else ''}",
                       mm.gemm_kernel("f16", "f16", kmaj, getattr(mm, name), True, wide), ("K", "N"))
    for M in (16, 512, 4096):
        yield f"int8-M{M}", m8.int8_kernel("f32", m8.int8_config(M, 4096, 4096), False, False, False), ("K", "N")
        yield f"w8a8-M{M}", m8.int8_kernel("bf16", m8.int8_config(M, 4096, 4096), True, True, True), ("K", "N")
    yield "int4-m8", m4.int4_kernel("f16", 128, False, False, 1, 8, 2, 4, "i32"), ("K", "N")
    yield "int4-zp", m4.int4_kernel("bf16", 64, True, True, 2, 4, 2, 2, "u32"), ("K", "N")
    for dt in ("f16", "bf16"):
        yield f"quantize-{dt}", qz.KERNELS[dt], ("K",)


KERNELS = list(_kernels())
_INST = re.compile(r"^\s*(?:@!?%p\d+\s+)?([a-z][\w.]*)\s+(.*?);")


def _params(ptx):
    """{name: register} of the i32 parameters (the comments carry the Python names)."""
    idx = {m.group(1): m.group(2) for m in re.finditer(r"\.param \.s32 (\w+),?\s*// (\w+): i32", ptx)}
    return {idx[p]: r for r, p in re.findall(r"ld\.param\.s32 (%r\d+), \[(\w+)\]", ptx) if p in idx}


def _ctaid_tainted(ptx):
    tainted = set()
    for line in ptx.splitlines():
        m = _INST.match(line)
        if not m:
            continue
        ops = [o.strip() for o in m.group(2).replace("{", "").replace("}", "").split(",")]
        if not ops or not ops[0].startswith("%"):
            continue
        if any("%ctaid" in o or o in tainted for o in ops[1:]):
            tainted.add(ops[0])
    return tainted


def offsets_problems(ptx, names):
    regs = _params(ptx)
    tainted = _ctaid_tainted(ptx)
    problems = []
    for name in names:
        r = regs[name]
        widened = (re.search(rf"cvt\.s64\.s32 %rd\d+, {r};", ptx)
                   or re.search(rf"mul\.wide\.s32 %rd\d+, (%r\d+, {r}|{r}, %r\d+);", ptx))
        if not widened:
            problems.append(f"{name} ({r}) never enters 64-bit arithmetic")
        for a, b in re.findall(r"mul\.lo\.s32 %r\d+, (%r\d+), (%r\d+);", ptx):
            if r in (a, b) and (a in tainted or b in tainted):
                problems.append(f"32-bit product of {name} with a block-index value: mul.lo.s32 {a}, {b}")
    return problems


@pytest.mark.parametrize("label,kernel,names", KERNELS, ids=[k[0] for k in KERNELS])
def test_op_kernels_use_64_bit_offsets(label, kernel, names):
    assert offsets_problems(kernel.ptx(), names) == []


def test_the_check_catches_32_bit_offsets():
    """A kernel with row * N in 32 bits fails the check; its 64-bit twin passes."""
    import kaiodsl
    from kaiodsl import Ptr, f32, i32, i64

    @kaiodsl.kernel(block_size=32)
    def narrow(x: Ptr[f32], N: i32):
        x[kaiodsl.block_idx.x * N + kaiodsl.thread_idx.x] = 1.0

    @kaiodsl.kernel(block_size=32)
    def wide(x: Ptr[f32], N: i32):
        x[i64(kaiodsl.block_idx.x) * N + kaiodsl.thread_idx.x] = 1.0

    assert offsets_problems(narrow.ptx(), ("N",)) and offsets_problems(wide.ptx(), ("N",)) == []


@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
def test_wide_gemm_variants_assemble(arch):
    """The ``wide`` variants (leading dimensions >= 2^31 / 256) assemble; spills are reported, not hidden."""
    for name in ("ASYNC_LARGE", "ASYNC_TINY_M"):
        c = mm.gemm_kernel("f16", "f16", True, getattr(mm, name), False, True).compile(arch=arch)
        assert c.registers <= 255
    assert mm.needs_wide(16, 4096, 2**31 // 256) and not mm.needs_wide(2**20, 128256, 16384)


@pytest.mark.parametrize("b_kmajor", [True, False], ids=["nk", "kn"])
@pytest.mark.parametrize("cfg", ["SYNC", "ASYNC_SMALL_M"])
def test_wide_gemm_variant_computes_the_product(backend, rng, b_kmajor, cfg):
    """The wide variant (64-bit offsets inside tiles) at a small ragged shape, launched as matmul does."""
    import numpy as np

    cfg = getattr(mm, cfg)
    M, N, K = 70, 72, 80
    a = rng.integers(-8, 8, (M, K)).astype(np.float16) / 8
    b = rng.integers(-8, 8, (N, K) if b_kmajor else (K, N)).astype(np.float16) / 8
    bias = rng.standard_normal(N).astype(np.float32)
    c = np.full((M, N), np.nan, np.float32)
    k = mm.gemm_kernel("f16", "f32", b_kmajor, cfg, True, True)
    grid = -(-M // cfg.block_m) * -(-N // cfg.block_n)
    k[grid, cfg.threads](a, b, c, bias, M, N, K, smem=cfg.smem_bytes(2))
    want = a.astype(np.float64) @ (b.T if b_kmajor else b).astype(np.float64) + bias
    np.testing.assert_allclose(c, want, rtol=1e-6, atol=1e-5)
