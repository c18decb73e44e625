"""Tensor cores: every mma shape/dtype against numpy, ldmatrix/stmatrix, and a cp.async GEMM."""

import time

import numpy as np
import pytest

from kaiodsl.sim import run_ptx
from kaiodsl.sim.numeric import FP8_VALUES
from mma_gemm import gemm_ptx
from simkit import kernel, load_ptrs

L = np.arange(32)
G, T = L >> 2, L & 3


# Fragment layouts written out per shape as the PTX ISA tables give them (row, col of element i).
def a_rc(kind, i):
    if kind == "k16":  # f16/bf16 m16n8k16
        return G + 8 * (i in (2, 3, 6, 7)), T * 2 + (i & 1) + 8 * (i >= 4)
    if kind == "k8":  # f16/bf16 m16n8k8
        return G + 8 * (i >= 2), T * 2 + (i & 1)
    if kind == "tf32":  # m16n8k8 tf32
        return G + 8 * (i in (1, 3)), T + 4 * (i >= 2)
    if kind == "b8":  # 8-bit m16n8k32
        return G + 8 * (4 <= i < 8 or i >= 12), T * 4 + (i & 3) + 16 * (i >= 8)
    if kind == "b4":  # 4-bit m16n8k64
        return G + 8 * (8 <= i < 16 or i >= 24), T * 8 + (i & 7) + 32 * (i >= 16)


def b_rc(kind, i):
    k = {"k16": T * 2 + (i & 1) + 8 * (i >= 2), "k8": T * 2 + i, "tf32": T + 4 * i,
         "b8": T * 4 + (i & 3) + 16 * (i >= 4), "b4": T * 8 + (i & 7) + 32 * (i >= 8)}[kind]
    return k, G


def c_rc(i):
    return G + 8 * (i >= 2), T * 2 + (i & 1)


# (ptx types, layout kind, K, element bits, values generator, decoded value)
def _halfvals(n, rng):
    return (rng.permutation(n) - n / 2).astype(np.float64) / 16


CASES = {
    "f32.f16.f16.f32 k16": ("m16n8k16", "f32.f16.f16.f32", "k16", 16, 16),
    "f32.bf16.bf16.f32 k16": ("m16n8k16", "f32.bf16.bf16.f32", "k16", 16, 16),
    "f16.f16.f16.f16 k16": ("m16n8k16", "f16.f16.f16.f16", "k16", 16, 16),
    "f32.f16.f16.f32 k8": ("m16n8k8", "f32.f16.f16.f32", "k8", 8, 16),
    "f32.bf16.bf16.f32 k8": ("m16n8k8", "f32.bf16.bf16.f32", "k8", 8, 16),
    "f32.tf32.tf32.f32 k8": ("m16n8k8", "f32.tf32.tf32.f32", "tf32", 8, 32),
    "s32.s8.s8.s32 k32": ("m16n8k32", "s32.s8.s8.s32", "b8", 32, 8),
    "s32.u8.s8.s32 k32": ("m16n8k32", "s32.u8.s8.s32", "b8", 32, 8),
    "s32.u8.u8.s32 satfinite": ("m16n8k32", "satfinite.s32.u8.u8.s32", "b8", 32, 8),
    "f32.e4m3.e4m3.f32 k32": ("m16n8k32", "f32.e4m3.e4m3.f32", "b8", 32, 8),
    "f32.e5m2.e4m3.f32 k32": ("m16n8k32", "f32.e5m2.e4m3.f32", "b8", 32, 8),
    "s32.s4.s4.s32 k64": ("m16n8k64", "s32.s4.s4.s32", "b4", 64, 4),
}


def _encode(vals_kind, rng, shape):
    """Distinct-ish values and their bit encodings for one operand."""
    n = int(np.prod(shape))
    if vals_kind in ("f16", "bf16", "tf32"):
        v = _halfvals(n, rng).reshape(shape)
        if vals_kind == "f16":
            return v, v.astype(np.float16).view(np.uint16).astype(np.uint32)
        f = v.astype(np.float32).view(np.uint32)
        return v, (f >> 16) if vals_kind == "bf16" else f
    if vals_kind in ("e4m3", "e5m2"):
        table = FP8_VALUES[vals_kind]
        ok = np.flatnonzero(np.isfinite(table) & (np.abs(table) < 64))
        codes = rng.choice(ok, size=shape).astype(np.uint32)
        return table[codes].astype(np.float64), codes
    lo, hi = {"s8": (-128, 128), "u8": (0, 256), "s4": (-8, 8), "u4": (0, 16)}[vals_kind]
    v = rng.integers(lo, hi, size=shape)
    bits = int(vals_kind[1])
    return v, (v & ((1 << bits) - 1)).astype(np.uint32)


def _fragments(bits_mat, rc, nelem, ebits):
    """Pack matrix bits into per-lane registers [32, nregs] using element coordinates rc(i)."""
    per = 32 // ebits
    regs = np.zeros((32, nelem // per), np.uint64)
    for i in range(nelem):
        r, c = rc(i)
        regs[:, i // per] |= bits_mat[r, c].astype(np.uint64) << np.uint64((i % per) * ebits)
    return regs.astype(np.uint32)


@pytest.mark.parametrize("case", list(CASES))
def test_mma_against_numpy(case):
    shape, types, kind, K, ebits = CASES[case]
    tys = types.split(".")[-4:]
    rng = np.random.default_rng(abs(hash(case)) % 2**32)
    av, ab = _encode(tys[1], rng, (16, K))
    bv, bb = _encode(tys[2], rng, (K, 8))
    na, nb = 16 * K // 32 // (32 // ebits), K * 8 // 32 // (32 // ebits)
    A = _fragments(ab, lambda i: a_rc(kind, i), na * (32 // ebits), ebits)
    B = _fragments(bb, lambda i: b_rc(kind, i), nb * (32 // ebits), ebits)
    if tys[3] == "s32":
        cv = rng.integers(-1000, 1000, (16, 8))
        if "satfinite" in types:
            cv[0, 0], cv[15, 7] = 2**31 - 5, -2**31 + 5
        C = np.stack([cv[c_rc(i)] for i in range(4)], 1).astype(np.int64).astype(np.uint32)
    elif tys[3] == "f16":
        cv = _halfvals(128, rng).reshape(16, 8)
        h = np.stack([cv[c_rc(i)] for i in range(4)], 1).astype(np.float16).view(np.uint16).astype(np.uint32)
        C = h[:, 0::2] | (h[:, 1::2] << 16)
    else:
        cv = _halfvals(128, rng).reshape(16, 8)
        C = np.stack([cv[c_rc(i)] for i in range(4)], 1).astype(np.float32).view(np.uint32)
    nc = C.shape[1]
    regs = lambda base, n: ", ".join(f"%r{base + j}" for j in range(n))  # noqa: E731
    body = load_ptrs(5) + "\tmov.u32 %r1, %tid.x;\n"
    for p, base, n in ((0, 10, na), (1, 20, nb), (2, 30, nc)):
        body += f"\tmul.wide.u32 %rd10, %r1, {4 * n};\n\tadd.s64 %rd11, %rd{p}, %rd10;\n"
        body += "".join(f"\tld.global.b32 %r{base + j}, [%rd11+{4 * j}];\n" for j in range(n))
    body += (f"\tmma.sync.aligned.{shape}.row.col.{types} {{{regs(40, nc)}}}, {{{regs(10, na)}}}, "
             f"{{{regs(20, nb)}}}, {{{regs(30, nc)}}};\n")
    body += f"\tmul.wide.u32 %rd10, %r1, {4 * nc};\n\tadd.s64 %rd11, %rd3, %rd10;\n"
    body += "".join(f"\tst.global.b32 [%rd11+{4 * j}], %r{40 + j};\n" for j in range(nc)) + "\tret;"
    D = np.zeros((32, nc), np.uint32)
    run_ptx(kernel(body, params=("u64",) * 5), "k", 1, 32, [A, B, C, D, np.zeros(1)])
    ref = av.astype(np.float64) @ bv.astype(np.float64) + cv
    if tys[0] == "s32":
        if "satfinite" in types:
            ref = np.clip(ref, -2**31, 2**31 - 1)
        got = np.zeros((16, 8), np.int64)
        for i in range(4):
            got[c_rc(i)] = D[:, i].view(np.int32)
        assert np.array_equal(got, ref.astype(np.int64))
        return
    got = np.zeros((16, 8))
    if tys[0] == "f16":
        h = np.stack([D & 0xFFFF, D >> 16], -1).reshape(32, 4).astype(np.uint16).view(np.float16)
        for i in range(4):
            got[c_rc(i)] = h[:, i]
        np.testing.assert_allclose(got, ref, rtol=2e-3, atol=1e-2)
        return
    for i in range(4):
        got[c_rc(i)] = D[:, i].view(np.float32)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


def _ldmatrix_ptx(x, trans, store):
    n = int(x[1])
    regs = ", ".join(f"%r{20 + i}" for i in range(n))
    body = load_ptrs(3) + """
	mov.u32 %r1, %tid.x;
	mov.u32 %r2, buf;
	mul.wide.u32 %rd10, %r1, 16;
	add.s64 %rd11, %rd0, %rd10;
	shl.b32 %r3, %r1, 4;
	add.s32 %r4, %r2, %r3;
	ld.global.v4.u32 {%r10, %r11, %r12, %r13}, [%rd11];
	st.shared.v4.u32 [%r4], {%r10, %r11, %r12, %r13};
	bar.sync 0;
	// lane provides the address of row perm[lane]: rows of each 8x8 matrix in reverse order
	and.b32 %r5, %r1, 7;
	sub.s32 %r5, 7, %r5;
	and.b32 %r6, %r1, 24;
	add.s32 %r5, %r5, %r6;
	shl.b32 %r5, %r5, 4;
	add.s32 %r5, %r2, %r5;
"""
    t = ".trans" if trans else ""
    body += f"\tldmatrix.sync.aligned.m8n8.{x}{t}.shared.b16 {{{regs}}}, [%r5];\n"
    if store:
        body += (f"\tbar.sync 0;\n\tadd.s32 %r7, %r5, 512;\n"
                 f"\tstmatrix.sync.aligned.m8n8.{x}{t}.shared.b16 [%r7], {{{regs}}};\n\tbar.sync 0;\n"
                 "\tld.shared.v4.u32 {%r10, %r11, %r12, %r13}, [%r4+512];\n"
                 "\tadd.s64 %rd12, %rd2, %rd10;\n\tst.global.v4.u32 [%rd12], {%r10, %r11, %r12, %r13};\n")
    body += f"\tmul.wide.u32 %rd13, %r1, {4 * n};\n\tadd.s64 %rd14, %rd1, %rd13;\n"
    body += "".join(f"\tst.global.u32 [%rd14+{4 * i}], %r{20 + i};\n" for i in range(n)) + "\tret;"
    return kernel(body, params=("u64",) * 3, decls="\t.shared .align 16 .b8 buf[1024];\n")


@pytest.mark.parametrize("x", ["x1", "x2", "x4"])
@pytest.mark.parametrize("trans", [False, True])
def test_ldmatrix_and_stmatrix_roundtrip(x, trans):
    n = int(x[1])
    src = np.arange(32 * 8, dtype=np.uint16) * 7 + 1  # 4 matrices of 8x8 distinct b16
    out = np.zeros((32, n), np.uint32)
    back = np.zeros(32 * 8, np.uint16)
    run_ptx(_ldmatrix_ptx(x, trans, True), "k", 1, 32, [src, out, back])
    mats = src.reshape(4, 8, 8)[:, ::-1, :]  # lanes gave rows in reverse order
    for i in range(n):
        m = mats[i].T if trans else mats[i]
        want = m[G, 2 * T].astype(np.uint32) | (m[G, 2 * T + 1].astype(np.uint32) << 16)
        assert np.array_equal(out[:, i], want), (x, trans, i)
    assert np.array_equal(back.reshape(4, 8, 8)[:n], src.reshape(4, 8, 8)[:n])


@pytest.mark.parametrize("size", [64, 128])
def test_cp_async_ldmatrix_mma_gemm(size):
    M = N = K = size
    rng = np.random.default_rng(size)
    A = rng.standard_normal((M, K)).astype(np.float16)
    B = rng.standard_normal((K, N)).astype(np.float16)
    C = np.zeros((M, N), np.float32)
    t0 = time.perf_counter()
    run_ptx(gemm_ptx(M, N, K), "gemm", (N // 32, M // 32), 128, [A, np.ascontiguousarray(B.T), C])
    elapsed = time.perf_counter() - t0
    np.testing.assert_allclose(C, A.astype(np.float64) @ B.astype(np.float64), rtol=1e-5, atol=1e-4)
    assert elapsed < 5.0


def test_gemm_256():
    M = N = K = 256
    rng = np.random.default_rng(1)
    A = rng.standard_normal((M, K)).astype(np.float16)
    B = rng.standard_normal((K, N)).astype(np.float16)
    C = np.zeros((M, N), np.float32)
    run_ptx(gemm_ptx(M, N, K), "gemm", (N // 32, M // 32), 128, [A, np.ascontiguousarray(B.T), C])
    np.testing.assert_allclose(C, A.astype(np.float64) @ B.astype(np.float64), rtol=1e-5, atol=1e-4)
