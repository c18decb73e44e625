"""Every scalar type through loads, stores and arithmetic; promotion; typed literals; casts."""

import numpy as np
import pytest

import kaiodsl
from kaiodsl import Ptr, bf16, bool_, f16, f32, f64, i8, i16, i32, i64, u8, u16, u32, u64
from kit import assert_close, bf16_bits, bf16_to_f32, poison, random

N = 64
INTS = [(i8, np.int8), (u8, np.uint8), (i16, np.int16), (u16, np.uint16), (i32, np.int32),
        (u32, np.uint32), (i64, np.int64), (u64, np.uint64)]
FLOATS = [(f16, np.float16), (f32, np.float32), (f64, np.float64)]


def _copy_kernel(T):
    @kaiodsl.kernel
    def copy(src: Ptr[T], dst: Ptr[T], n: i32):
        i = kaiodsl.block_idx.x * kaiodsl.block_dim.x + kaiodsl.thread_idx.x
        if i < n:
            dst[i] = src[i]
    return copy


def _arith_kernel(T):
    @kaiodsl.kernel
    def arith(a: Ptr[T], b: Ptr[T], s: Ptr[T], d: Ptr[T], p: Ptr[T], mn: Ptr[T], mx: Ptr[T]):
        i = kaiodsl.thread_idx.x
        x, y = a[i], b[i]
        s[i] = x + y
        d[i] = x - y
        p[i] = x * y
        mn[i] = min(x, y)
        mx[i] = max(x, y)
    return arith


@pytest.mark.parametrize("T,npt", INTS + FLOATS + [(bool_, np.bool_)], ids=lambda v: str(v))
def test_load_store_every_type(backend, rng, T, npt):
    src = random(rng, N, npt)
    dst = poison(N, npt)
    _copy_kernel(T)[2, 32](src, dst, N)
    np.testing.assert_array_equal(dst, src)


def test_load_store_bf16(backend, rng):
    src = bf16_bits(rng.uniform(-10, 10, N))
    dst = np.full(N, 0xFFFF, np.uint16)
    _copy_kernel(bf16)[2, 32](src, dst, N)
    np.testing.assert_array_equal(dst, src)


@pytest.mark.parametrize("T,npt", INTS, ids=lambda v: str(v))
def test_int_arith_wraps(backend, rng, T, npt):
    a, b = random(rng, N, npt, -10**6, 10**6), random(rng, N, npt, -10**6, 10**6)
    outs = [poison(N, npt) for _ in range(5)]
    _arith_kernel(T)[1, N](a, b, *outs)
    with np.errstate(over="ignore"):
        want = [a + b, a - b, a * b, np.minimum(a, b), np.maximum(a, b)]
    for g, w in zip(outs, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("T,npt,tol", [(f16, np.float16, 1e-3), (f32, np.float32, 1e-7), (f64, np.float64, 1e-15)],
                         ids=lambda v: str(v))
def test_float_arith(backend, rng, T, npt, tol):
    a, b = random(rng, N, npt, -8, 8), random(rng, N, npt, -8, 8)
    outs = [poison(N, npt) for _ in range(5)]
    _arith_kernel(T)[1, N](a, b, *outs)
    want = [a + b, a - b, a * b, np.minimum(a, b), np.maximum(a, b)]
    for g, w in zip(outs, want):
        np.testing.assert_array_equal(g, w)  # correctly rounded in the type itself


def test_bf16_arith(backend, rng):
    a = bf16_bits(rng.uniform(-8, 8, N))
    b = bf16_bits(rng.uniform(-8, 8, N))
    outs = [np.full(N, 0xFFFF, np.uint16) for _ in range(5)]
    _arith_kernel(bf16)[1, N](a, b, *outs)
    fa, fb = bf16_to_f32(a).astype(np.float64), bf16_to_f32(b).astype(np.float64)
    want = [fa + fb, fa - fb, fa * fb, np.minimum(fa, fb), np.maximum(fa, fb)]
    for g, w in zip(outs, want):
        np.testing.assert_array_equal(g, bf16_bits(w.astype(np.float32)))


@kaiodsl.kernel
def _promote_ok(a8: Ptr[i8], a32: Ptr[i32], u16p: Ptr[u16], h: Ptr[f16], bh: Ptr[bf16], x: Ptr[f32],
                o32: Ptr[i32], of: Ptr[f32], o64: Ptr[f64], oi64: Ptr[i64], a64: Ptr[i64]):
    i = kaiodsl.thread_idx.x
    o32[i] = a8[i] + a32[i]
    o32[i + 32] = u16p[i] + a32[i]
    of[i] = h[i] + bh[i]
    of[i + 32] = a32[i] + x[i]
    o64[i] = x[i] * kaiodsl.f64(2.5)
    oi64[i] = a32[i] + a64[i]
    oi64[i + 32] = a64[i] + 2**40


def test_promotion(backend, rng):
    n = 32
    a8 = random(rng, n, np.int8)
    a32 = random(rng, n, np.int32, -10**6, 10**6)
    u = random(rng, n, np.uint16, 0, 60000)
    h = random(rng, n, np.float16, -4, 4)
    bh = bf16_bits(rng.uniform(-4, 4, n))
    x = random(rng, n, np.float32, -4, 4)
    a64 = random(rng, n, np.int64, -10**12, 10**12)
    o32, of, o64, oi64 = poison(64, np.int32), poison(64, np.float32), poison(n, np.float64), poison(64, np.int64)
    _promote_ok[1, n](a8, a32, u, h, bh, x, o32, of, o64, oi64, a64)
    np.testing.assert_array_equal(o32[:n], a8.astype(np.int32) + a32)
    np.testing.assert_array_equal(o32[n:], u.astype(np.int32) + a32)
    np.testing.assert_array_equal(of[:n], h.astype(np.float32) + bf16_to_f32(bh))
    np.testing.assert_array_equal(of[n:], a32.astype(np.float32) + x)
    np.testing.assert_array_equal(o64, x.astype(np.float64) * 2.5)
    np.testing.assert_array_equal(oi64[:n], a32.astype(np.int64) + a64)
    np.testing.assert_array_equal(oi64[n:], a64 + 2**40)


@pytest.mark.parametrize("a,b,want", [
    (i8, i32, i32), (u8, u32, u32), (i16, u8, i16), (u32, i64, i64), (f16, bf16, f32), (f16, f32, f32),
    (f32, f64, f64), (i64, f16, f16), (u32, i32, None), (i32, u64, None), (bool_, i32, None), (i32, i32, i32)])
def test_promote_rule(a, b, want):
    from kaiodsl.types import promote
    assert promote(a, b) == want
    assert promote(b, a) == want


@kaiodsl.kernel
def _literals(o32: Ptr[i32], ou8: Ptr[u8], oh: Ptr[f16], of: Ptr[f32], od: Ptr[f64], ou64: Ptr[u64],
              x: Ptr[u8], h: Ptr[f16]):
    i = kaiodsl.thread_idx.x
    o32[i] = 7 * 6 + i             # weak int -> i32
    ou8[i] = x[i] + 200            # weak constant takes u8: wraps mod 256
    oh[i] = h[i] * 0.1             # weak float takes f16 (0.1 rounded to f16)
    of[i] = kaiodsl.f32(i) + 0.1   # weak float with f32 -> f32 0.1
    od[i] = kaiodsl.f64(0.1) + 0.2 # f64: the literal keeps f64 precision
    ou64[i] = kaiodsl.u64(1) << 40


def test_typed_and_weak_literals(backend, rng):
    n = 16
    x = random(rng, n, np.uint8, 0, 255)
    h = random(rng, n, np.float16, -4, 4)
    outs = [poison(n, t) for t in (np.int32, np.uint8, np.float16, np.float32, np.float64, np.uint64)]
    _literals[1, n](*outs, x, h)
    idx = np.arange(n)
    np.testing.assert_array_equal(outs[0], 42 + idx)
    np.testing.assert_array_equal(outs[1], (x.astype(np.int32) + 200).astype(np.uint8))
    np.testing.assert_array_equal(outs[2], h * np.float16(0.1))
    np.testing.assert_array_equal(outs[3], idx.astype(np.float32) + np.float32(0.1))
    np.testing.assert_array_equal(outs[4], np.full(n, 0.1 + 0.2))
    np.testing.assert_array_equal(outs[5], np.full(n, 1 << 40, np.uint64))


@kaiodsl.kernel
def _casts(x: Ptr[f32], d: Ptr[f64], h: Ptr[f16], bh: Ptr[u16], ti: Ptr[i32], tu8: Ptr[u8], si8: Ptr[i8],
           tr8: Ptr[i8], big: Ptr[i32], fi: Ptr[f32], dh: Ptr[f16]):
    i = kaiodsl.thread_idx.x
    v = x[i]
    h[i] = kaiodsl.f16(v)                            # round to nearest even
    bh[i] = kaiodsl.bitcast(kaiodsl.bf16(v), u16)    # round to nearest even
    ti[i] = kaiodsl.i32(v)                           # truncation toward zero, saturating, NaN -> 0
    tu8[i] = kaiodsl.u8(v)                           # saturates at 0 and 255
    si8[i] = kaiodsl.saturate_cast(big[i], i8)       # clamps
    tr8[i] = kaiodsl.truncate_cast(big[i], i8)       # keeps the low bits
    fi[i] = kaiodsl.f32(big[i])
    dh[i] = kaiodsl.f16(d[i])


def test_casts(backend, rng):
    n = 64
    x = rng.uniform(-300, 300, n).astype(np.float32)
    x[:8] = [np.nan, np.inf, -np.inf, 3e9, -3e9, 2.5, -2.5, 1.0009765625 + 2**-11]
    big = random(rng, n, np.int32, -100000, 100000)
    d = rng.uniform(-1000, 1000, n)
    outs = dict(h=poison(n, np.float16), bh=np.full(n, 0xFFFF, np.uint16), ti=poison(n, np.int32),
                tu8=poison(n, np.uint8), si8=poison(n, np.int8), tr8=poison(n, np.int8),
                fi=poison(n, np.float32), dh=poison(n, np.float16))
    _casts[1, n](x, d, outs["h"], outs["bh"], outs["ti"], outs["tu8"], outs["si8"], outs["tr8"], big,
                 outs["fi"], outs["dh"])
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(outs["h"], x.astype(np.float16))
    want_bh = bf16_bits(x)
    want_bh[0] = outs["bh"][0]  # NaN: any quiet NaN
    assert (outs["bh"][0] & 0x7F80) == 0x7F80 and outs["bh"][0] & 0x7F
    np.testing.assert_array_equal(outs["bh"], want_bh)
    with np.errstate(invalid="ignore"):
        want_ti = np.clip(np.trunc(np.nan_to_num(x.astype(np.float64), nan=0.0, posinf=3e9, neginf=-3e9)), -2**31, 2**31 - 1)
    np.testing.assert_array_equal(outs["ti"], want_ti.astype(np.int64).astype(np.int32))
    want_u8 = np.clip(np.trunc(np.nan_to_num(x, nan=0.0, posinf=300, neginf=-300)), 0, 255)
    np.testing.assert_array_equal(outs["tu8"], want_u8.astype(np.uint8))
    np.testing.assert_array_equal(outs["si8"], np.clip(big, -128, 127).astype(np.int8))
    np.testing.assert_array_equal(outs["tr8"], big.astype(np.int8))
    np.testing.assert_array_equal(outs["fi"], big.astype(np.float32))
    np.testing.assert_array_equal(outs["dh"], d.astype(np.float16))


@kaiodsl.kernel
def _bool_casts(x: Ptr[i32], f: Ptr[f32], ob: Ptr[bool_], oi: Ptr[i32], of: Ptr[f32], fb: Ptr[bool_]):
    i = kaiodsl.thread_idx.x
    b = kaiodsl.bool_(x[i])
    ob[i] = b
    oi[i] = kaiodsl.i32(b)
    of[i] = kaiodsl.f32(b)
    fb[i] = kaiodsl.bool_(f[i])


def test_bool_casts(backend, rng):
    n = 32
    x = random(rng, n, np.int32, -2, 2)
    f = random(rng, n, np.float32, -1, 1)
    f[::3] = 0.0
    f[1] = np.nan
    ob, oi, of, fb = poison(n, np.bool_), poison(n, np.int32), poison(n, np.float32), np.zeros(n, np.bool_)
    ob[:] = False
    _bool_casts[1, n](x, f, ob, oi, of, fb)
    np.testing.assert_array_equal(ob, x != 0)
    np.testing.assert_array_equal(oi, (x != 0).astype(np.int32))
    np.testing.assert_array_equal(of, (x != 0).astype(np.float32))
    np.testing.assert_array_equal(fb, f != 0)  # NaN is true, as in Python


def test_one_bf16_rounding_everywhere():
    """types.bf16_bits is the only f32 -> bf16 rounding: host arguments, arrays, typed constants,
    PTX immediates and the simulator's cvt.rn all give its bits (ties to even, NaN -> 0x7FFF)."""
    from kaiodsl.codegen.ptx import immediate
    from kaiodsl.ir.node import Node
    from kaiodsl.runtime import args as rt_args
    from kaiodsl.sim.numeric import f32_to_bf16
    from kaiodsl.types import bf16_bits as one

    x = np.array([1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -2.5, np.inf, -np.inf, np.nan, -np.nan, 3.4e38, 1e-40, -0.0],
                 np.float32)
    want = np.array([0x3F80, 0x3F80, 0x3F82, 0xC020, 0x7F80, 0xFF80, 0x7FFF, 0x7FFF, 0x7F80, 0x0001, 0x8000],
                    np.uint16)
    np.testing.assert_array_equal(one(x), want)
    np.testing.assert_array_equal(rt_args.floats_to_bf16_bits(x), want)
    np.testing.assert_array_equal(f32_to_bf16(x), want)
    assert [rt_args.float_to_bf16_bits(float(v)) for v in x] == list(want)
    assert [int(bf16(float(v)).numpy()) for v in x] == list(want)
    assert [int(immediate(Node("const", bf16, (), {"value": float(v)})), 16) for v in x] == list(want)
