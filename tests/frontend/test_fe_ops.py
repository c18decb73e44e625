"""Operators: // and % (Python floor semantics), shifts, bitwise, comparisons, and/or/not, if-expressions,
min/max/abs, and the math functions."""

import numpy as np
import pytest

import kaiodsl
from kaiodsl import Const, Ptr, bool_, f16, f32, f64, i8, i16, i32, i64, u8, u32, u64
from kit import assert_close, poison, random

N = 64
INT_TYPES = [(i8, np.int8), (i16, np.int16), (i32, np.int32), (i64, np.int64), (u8, np.uint8), (u32, np.uint32),
             (u64, np.uint64)]


def _divmod_kernel(T, D):
    @kaiodsl.kernel
    def k(a: Ptr[T], b: Ptr[T], q: Ptr[T], r: Ptr[T], q8: Ptr[T], r8: Ptr[T], qc: Ptr[T], rc: Ptr[T]):
        i = kaiodsl.thread_idx.x
        x, y = a[i], b[i]
        q[i] = x // y
        r[i] = x % y
        q8[i] = x // 8       # power of two: a shift / a mask
        r8[i] = x % 8
        qc[i] = x // D       # other constants
        rc[i] = x % D
    return k


@pytest.mark.parametrize("T,npt", INT_TYPES, ids=str)
def test_floordiv_mod_python_semantics(backend, rng, T, npt):
    signed = np.dtype(npt).kind == "i"
    D = -7 if signed else 7
    a = random(rng, N, npt, -120, 120)
    b = random(rng, N, npt, -12, 12, nonzero=True)
    if signed:
        a[:4] = [-9, 9, -9, 9]
        b[:4] = [4, -4, -4, 4]
    outs = [poison(N, npt) for _ in range(6)]
    _divmod_kernel(T, D)[1, N](a, b, *outs)
    A, B = a.astype(object), b.astype(object)  # exact Python ints
    want = [A // B, A % B, A // 8, A % 8, A // D, A % D]
    for g, w in zip(outs, want):
        np.testing.assert_array_equal(g.astype(object), w)


@kaiodsl.kernel
def _float_divmod(a: Ptr[f32], b: Ptr[f32], q: Ptr[f32], r: Ptr[f32], t: Ptr[f32]):
    i = kaiodsl.thread_idx.x
    q[i] = a[i] // b[i]
    r[i] = a[i] % b[i]
    t[i] = a[i] / b[i]


def test_float_floordiv_mod_and_exact_div(backend, rng):
    a = random(rng, N, np.float32, -100, 100)
    b = random(rng, N, np.float32, -10, 10)
    b[np.abs(b) < 0.5] = 1.5
    q, r, t = (poison(N, np.float32) for _ in range(3))
    _float_divmod[1, N](a, b, q, r, t)
    np.testing.assert_array_equal(t, a / b)  # div.rn: IEEE-exact
    np.testing.assert_array_equal(q, np.floor(a / b))
    assert_close(r, np.mod(a.astype(np.float64), b), rtol=1e-5)


def _shift_kernel(T):
    @kaiodsl.kernel
    def k(a: Ptr[T], s: Ptr[i32], l: Ptr[T], r: Ptr[T], lc: Ptr[T], rc: Ptr[T]):
        i = kaiodsl.thread_idx.x
        l[i] = a[i] << s[i]
        r[i] = a[i] >> s[i]
        lc[i] = a[i] << 3
        rc[i] = a[i] >> 2
    return k


@pytest.mark.parametrize("T,npt", INT_TYPES, ids=str)
def test_shifts_including_past_width(backend, rng, T, npt):
    bits = np.dtype(npt).itemsize * 8
    a = random(rng, N, npt, -10**9, 10**9)
    s = rng.integers(0, bits + 8, N).astype(np.int32)  # some amounts are >= the width
    s[:3] = [0, bits, bits + 5]
    outs = [poison(N, npt) for _ in range(4)]
    _shift_kernel(T)[1, N](a, s, *outs)
    mask = (1 << bits) - 1
    A = a.astype(object)

    def wrap(v):
        v &= mask
        return v - (1 << bits) if np.dtype(npt).kind == "i" and v >> (bits - 1) else v

    want_l = [wrap(int(x) << int(k)) for x, k in zip(A, s)]
    want_r = [int(x) >> int(k) for x, k in zip(A, s)]  # Python: sign fill for signed, zero for unsigned
    np.testing.assert_array_equal(outs[0].astype(object), want_l)
    np.testing.assert_array_equal(outs[1].astype(object), want_r)
    np.testing.assert_array_equal(outs[2].astype(object), [wrap(int(x) << 3) for x in A])
    np.testing.assert_array_equal(outs[3].astype(object), [int(x) >> 2 for x in A])


@kaiodsl.kernel
def _bitwise(a: Ptr[u32], b: Ptr[u32], o: Ptr[u32], ia: Ptr[i64], io: Ptr[i64]):
    i = kaiodsl.thread_idx.x
    x, y = a[i], b[i]
    o[5 * i] = x & y
    o[5 * i + 1] = x | y
    o[5 * i + 2] = x ^ y
    o[5 * i + 3] = ~x
    o[5 * i + 4] = (x & 0xFF00) | (y ^ 0xF)
    io[2 * i] = ~ia[i]
    io[2 * i + 1] = -ia[i]


def test_bitwise(backend, rng):
    a = rng.integers(0, 2**32, N, dtype=np.uint64).astype(np.uint32)
    b = rng.integers(0, 2**32, N, dtype=np.uint64).astype(np.uint32)
    ia = rng.integers(-2**62, 2**62, N)
    o, io = poison(5 * N, np.uint32), poison(2 * N, np.int64)
    _bitwise[1, N](a, b, o, ia, io)
    want = np.stack([a & b, a | b, a ^ b, ~a, (a & 0xFF00) | (b ^ 0xF)], 1).reshape(-1)
    np.testing.assert_array_equal(o, want)
    np.testing.assert_array_equal(io, np.stack([~ia, -ia], 1).reshape(-1))


@kaiodsl.kernel
def _compare(a: Ptr[f32], b: Ptr[f32], c: Ptr[f32], ia: Ptr[i32], ub: Ptr[u32], o: Ptr[i32]):
    i = kaiodsl.thread_idx.x
    x, y, z = a[i], b[i], c[i]
    bits = 0
    bits = bits | kaiodsl.i32(x < y)
    bits = bits | (kaiodsl.i32(x <= y) << 1)
    bits = bits | (kaiodsl.i32(x > y) << 2)
    bits = bits | (kaiodsl.i32(x >= y) << 3)
    bits = bits | (kaiodsl.i32(x == y) << 4)
    bits = bits | (kaiodsl.i32(x != y) << 5)
    bits = bits | (kaiodsl.i32(x < y < z) << 6)         # chained
    bits = bits | (kaiodsl.i32(0 <= ia[i] < 10) << 7)   # chained with constants
    bits = bits | (kaiodsl.i32(ub[i] > 5) << 8)         # unsigned compare
    o[i] = bits


def test_comparisons(backend, rng):
    a, b, c = (np.round(random(rng, N, np.float32, -3, 3)) for _ in range(3))
    a[0], b[1] = np.nan, np.nan  # NaN: only != is true
    ia = random(rng, N, np.int32, -20, 20)
    ub = rng.integers(0, 2**32, N, dtype=np.uint64).astype(np.uint32)
    ub[:4] = [0, 5, 6, 0xFFFFFFFF]
    o = poison(N, np.int32)
    _compare[1, N](a, b, c, ia, ub, o)
    with np.errstate(invalid="ignore"):
        parts = [a < b, a <= b, a > b, a >= b, a == b, a != b, (a < b) & (b < c), (0 <= ia) & (ia < 10), ub > 5]
    want = sum(p.astype(np.int32) << k for k, p in enumerate(parts))
    np.testing.assert_array_equal(o, want)


@kaiodsl.kernel
def _short_circuit(x: Ptr[i32], o: Ptr[i32], n: i32):
    i = kaiodsl.thread_idx.x
    # the right side must not run where the left decides: x[i] would be out of bounds
    a = i < n and x[i] > 0
    b = i >= n or x[i] > 0
    c = not (i < n and x[i] < 0)
    d = x[i] * 2 if i < n else -1
    o[i] = kaiodsl.i32(a) + 2 * kaiodsl.i32(b) + 4 * kaiodsl.i32(c) + 8 * d


def test_short_circuit_guards_loads(backend, rng):
    n = 20
    x = random(rng, n, np.int32, -5, 5)
    o = poison(32, np.int32)
    _short_circuit[1, 32](x, o, n)
    xi = np.concatenate([x, np.zeros(12, np.int32)])
    valid = np.arange(32) < n
    a = valid & (xi > 0)
    b = ~valid | (xi > 0)
    c = ~(valid & (xi < 0))
    d = np.where(valid, xi * 2, -1)
    np.testing.assert_array_equal(o, a + 2 * b + 4 * c + 8 * d)


@kaiodsl.kernel
def _values_of_and_or(x: Ptr[i32], o: Ptr[i32]):
    i = kaiodsl.thread_idx.x
    v = x[i]
    o[3 * i] = kaiodsl.i32(v > 0 and v < 3)
    o[3 * i + 1] = kaiodsl.i32(v < -3 or v > 3 or v == 0)
    o[3 * i + 2] = kaiodsl.i32(not v)


def test_and_or_not(backend, rng):
    x = random(rng, N, np.int32, -6, 6)
    o = poison(3 * N, np.int32)
    _values_of_and_or[1, N](x, o)
    want = np.stack([(x > 0) & (x < 3), (x < -3) | (x > 3) | (x == 0), x == 0], 1).reshape(-1).astype(np.int32)
    np.testing.assert_array_equal(o, want)


@kaiodsl.kernel
def _minmaxabs(a: Ptr[i32], b: Ptr[i32], f: Ptr[f32], g: Ptr[f32], oi: Ptr[i32], of: Ptr[f32], ou: Ptr[u8],
               u: Ptr[u8]):
    i = kaiodsl.thread_idx.x
    oi[4 * i] = min(a[i], b[i])
    oi[4 * i + 1] = max(a[i], b[i], 3)
    oi[4 * i + 2] = abs(a[i])
    oi[4 * i + 3] = min(a[i], 0) + max(1, 2)   # a compile-time max
    of[3 * i] = min(f[i], g[i])
    of[3 * i + 1] = max(f[i], g[i])
    of[3 * i + 2] = abs(f[i])
    ou[i] = max(u[i], 200)


def test_min_max_abs(backend, rng):
    a, b = random(rng, N, np.int32, -50, 50), random(rng, N, np.int32, -50, 50)
    f, g = random(rng, N, np.float32, -5, 5), random(rng, N, np.float32, -5, 5)
    u = random(rng, N, np.uint8, 0, 255)
    oi, of, ou = poison(4 * N, np.int32), poison(3 * N, np.float32), poison(N, np.uint8)
    _minmaxabs[1, N](a, b, f, g, oi, of, ou, u)
    want_i = np.stack([np.minimum(a, b), np.maximum(np.maximum(a, b), 3), np.abs(a), np.minimum(a, 0) + 2], 1)
    np.testing.assert_array_equal(oi, want_i.reshape(-1))
    np.testing.assert_array_equal(of, np.stack([np.minimum(f, g), np.maximum(f, g), np.abs(f)], 1).reshape(-1))
    np.testing.assert_array_equal(ou, np.maximum(u, 200))


@kaiodsl.kernel
def _pow_and_unary(x: Ptr[f32], k: Ptr[i32], o: Ptr[f32], oi: Ptr[i32]):
    i = kaiodsl.thread_idx.x
    o[2 * i] = x[i] ** 3
    o[2 * i + 1] = -x[i] + +x[i] * 2.0
    oi[i] = k[i] ** 2 - (-k[i])


def test_pow_small_exponent_and_unary(backend, rng):
    x = random(rng, N, np.float32, -3, 3)
    k = random(rng, N, np.int32, -100, 100)
    o, oi = poison(2 * N, np.float32), poison(N, np.int32)
    _pow_and_unary[1, N](x, k, o, oi)
    np.testing.assert_array_equal(o[::2], x * x * x)
    np.testing.assert_array_equal(o[1::2], -x + x * np.float32(2))
    np.testing.assert_array_equal(oi, k * k + k)


MATH = {
    "sqrt": (kaiodsl.sqrt, np.sqrt, (0.01, 100), 0.0),
    "rsqrt": (kaiodsl.rsqrt, lambda x: 1 / np.sqrt(x), (0.01, 100), 1e-6),
    "exp": (kaiodsl.exp, np.exp, (-20, 20), 1e-6),
    "exp2": (kaiodsl.exp2, np.exp2, (-20, 20), 1e-6),
    "log": (kaiodsl.log, np.log, (0.01, 1000), 1e-6),
    "log2": (kaiodsl.log2, np.log2, (0.01, 1000), 1e-6),
    "sin": (kaiodsl.sin, np.sin, (-50, 50), 1e-5),
    "cos": (kaiodsl.cos, np.cos, (-50, 50), 1e-5),
    "tanh": (kaiodsl.tanh, np.tanh, (-4, 4), 2e-3),
    "floor": (kaiodsl.floor, np.floor, (-100, 100), 0.0),
    "ceil": (kaiodsl.ceil, np.ceil, (-100, 100), 0.0),
    "trunc": (kaiodsl.trunc, np.trunc, (-100, 100), 0.0),
    "round_even": (kaiodsl.round_even, np.rint, (-100, 100), 0.0),
    "reciprocal": (kaiodsl.reciprocal, lambda x: 1 / x, (0.1, 100), 0.0),
    "fast.sqrt": (kaiodsl.fast.sqrt, np.sqrt, (0.01, 100), 1e-6),
    "fast.reciprocal": (kaiodsl.fast.reciprocal, lambda x: 1 / x, (0.1, 100), 1e-6),
    "fast.exp": (kaiodsl.fast.exp, np.exp, (-10, 10), 1e-5),
}


def _math_kernel(fn, T):
    @kaiodsl.kernel
    def k(x: Ptr[T], o: Ptr[T]):
        i = kaiodsl.thread_idx.x
        o[i] = fn(x[i])
    return k


@pytest.mark.parametrize("name", list(MATH))
def test_math_f32(backend, rng, name):
    fn, ref, (lo, hi), tol = MATH[name]
    x = rng.uniform(lo, hi, N).astype(np.float32)
    if name in ("floor", "ceil", "trunc", "round_even"):
        x[:4] = [2.5, -2.5, 3.5, -0.5]
    o = poison(N, np.float32)
    _math_kernel(fn, f32)[1, N](x, o)
    want = ref(x.astype(np.float64))
    if tol == 0.0:
        np.testing.assert_array_equal(o, want.astype(np.float32))
    else:
        assert_close(o, want, rtol=tol)


@pytest.mark.parametrize("name", ["exp", "sqrt", "sin", "tanh", "floor"])
@pytest.mark.parametrize("T,npt,tol", [(f16, np.float16, 2e-3), (f64, np.float64, 0.0)], ids=str)
def test_math_other_precisions(backend, rng, name, T, npt, tol):
    fn, ref, (lo, hi), _ = MATH[name]
    if T == f64 and name in ("exp", "sin", "tanh"):
        pytest.skip("transcendentals are f32/f16 only (a compile error for f64)")
    x = rng.uniform(lo / 4, hi / 4, N).astype(npt)
    o = poison(N, npt)
    _math_kernel(fn, T)[1, N](x, o)
    want = ref(x.astype(np.float64))
    if tol == 0.0:
        np.testing.assert_array_equal(o, want.astype(npt))
    else:
        assert_close(o, want, rtol=tol)


@kaiodsl.kernel
def _fma_div(a: Ptr[f32], b: Ptr[f32], c: Ptr[f32], o: Ptr[f32], ia: Ptr[i32], oi: Ptr[i32]):
    i = kaiodsl.thread_idx.x
    o[3 * i] = kaiodsl.fma(a[i], b[i], c[i])
    o[3 * i + 1] = a[i] * b[i] + c[i]       # never contracted: two roundings
    o[3 * i + 2] = kaiodsl.fast.div(a[i], b[i])
    oi[i] = kaiodsl.fma(ia[i], 3, 7)


def test_fma_is_fused_and_mul_add_is_not(backend, rng):
    a, b, c = (random(rng, N, np.float32, -10, 10) for _ in range(3))
    ia = random(rng, N, np.int32, -1000, 1000)
    o, oi = poison(3 * N, np.float32), poison(N, np.int32)
    _fma_div[1, N](a, b, c, o, ia, oi)
    fused = (a.astype(np.float64) * b + c).astype(np.float32)
    np.testing.assert_array_equal(o[::3], fused)
    np.testing.assert_array_equal(o[1::3], a * b + c)
    assert_close(o[2::3], a.astype(np.float64) / b, rtol=1e-6)
    np.testing.assert_array_equal(oi, ia * 3 + 7)
    ptx = _fma_div.ptx()
    assert "fma.rn.f32" in ptx and "mul.rn.f32" in ptx and "div.approx.f32" in ptx and "div.rn.f32" not in ptx
