"""Integer, bit, float and conversion semantics against numpy references (bit-exact)."""

import numpy as np
import pytest

from simkit import elementwise as ew

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

I32 = np.array([0, 1, -1, 7, -7, 2**31 - 1, -2**31, 123456789, -98765, 3], np.int32)
J32 = np.array([3, 1, 2, -2, 2, 1, -1, 1000, 0, 0], np.int32)


def test_int_wraparound_and_sat():
    assert np.array_equal(ew("add.s32 {o}, {a}, {b};", [I32, J32], np.int32), I32 + J32)
    assert np.array_equal(ew("sub.s32 {o}, {a}, {b};", [I32, J32], np.int32), I32 - J32)
    assert np.array_equal(ew("mul.lo.s32 {o}, {a}, {b};", [I32, J32], np.int32), I32 * J32)
    sat = np.clip(I32.astype(np.int64) + J32, -2**31, 2**31 - 1).astype(np.int32)
    assert np.array_equal(ew("add.sat.s32 {o}, {a}, {b};", [I32, J32], np.int32), sat)


def test_mul_hi_wide():
    hi = ((I32.astype(np.int64) * J32) >> 32).astype(np.int32)
    assert np.array_equal(ew("mul.hi.s32 {o}, {a}, {b};", [I32, J32], np.int32), hi)
    wide = I32.astype(np.int64) * J32
    assert np.array_equal(ew("mul.wide.s32 {o}, {a}, {b};", [I32, J32], np.int64), wide)
    a = np.array([2**64 - 1, 2**63, 12345678901234567, 3], np.uint64)
    b = np.array([2**64 - 1, 2, 98765432109876543, 5], np.uint64)
    ref = np.array([(int(x) * int(y)) >> 64 for x, y in zip(a, b)], np.uint64)
    assert np.array_equal(ew("mul.hi.u64 {o}, {a}, {b};", [a, b], np.uint64), ref)
    sa, sb = a.view(np.int64), b.view(np.int64)
    ref = np.array([((int(x) * int(y)) >> 64) & (2**64 - 1) for x, y in zip(sa, sb)], np.uint64)
    assert np.array_equal(ew("mul.hi.s64 {o}, {a}, {b};", [sa, sb], np.uint64), ref)


def test_div_rem_truncate_and_by_zero():
    q = ew("div.s32 {o}, {a}, {b};", [I32, J32], np.int32)
    r = ew("rem.s32 {o}, {a}, {b};", [I32, J32], np.int32)
    for x, y, qq, rr in zip(I32.tolist(), J32.tolist(), q.tolist(), r.tolist()):
        if y == 0:
            assert qq == -1 and rr == -1  # all ones for both, as the H100 returns (test_edge_vs_gpu.py)
        elif x == -2**31 and y == -1:
            assert qq == -2**31 and rr == 0
        else:
            assert qq == int(x / y) and rr == x - int(x / y) * y
    u = I32.view(np.uint32)
    assert ew("div.u32 {o}, {a}, {b};", [u, J32.view(np.uint32)], np.uint32)[-1] == 0xFFFFFFFF


def _div_ref(x, y, w, signed, rem):
    """PTX div/rem on w-bit ints with Python ints: truncating, INT_MIN / -1 wraps, x/0 all ones."""
    if y == 0:
        return (1 << w) - 1
    q = abs(x) // abs(y) * (1 if (x < 0) == (y < 0) else -1) if signed else x // y
    return (x - q * y if rem else q) & ((1 << w) - 1)


@pytest.mark.parametrize("typ", ["s16", "s32", "s64", "u16", "u32", "u64"])
def test_div_rem_exact_at_every_width(typ, rng):
    """Issue 10, item 7: np.abs(INT64_MIN) overflowed; every pair of corner values, bit-exact."""
    w, signed = int(typ[1:]), typ[0] == "s"
    dt = np.dtype(f"{'i' if signed else 'u'}{w // 8}")
    lo, hi = np.iinfo(dt).min, np.iinfo(dt).max
    corners = [lo, lo + 1, -1, 0, 1, 2, -2, 3, 7, -7, hi - 1, hi] if signed else [0, 1, 2, 3, 7, hi - 1, hi]
    corners += rng.integers(lo, hi, 6, dtype=dt, endpoint=True).tolist()
    a = np.array([x for x in corners for _ in corners], dt)
    b = np.array([y for _ in corners for y in corners], dt)
    ut = np.dtype(f"u{w // 8}")
    for rem in (False, True):
        got = ew(f"{'rem' if rem else 'div'}.{typ} {{o}}, {{a}}, {{b}};", [a, b], dt).view(ut)
        want = np.array([_div_ref(int(x), int(y), w, signed, rem) for x, y in zip(a, b)], ut)
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, [(int(a[i]), int(b[i]), int(got[i]), int(want[i])) for i in bad[:5]]


@pytest.mark.parametrize("op,ref", [
    ("shl.b32", lambda a, s: np.where(s >= 32, 0, a.astype(np.uint64) << np.minimum(s, 31)) & 0xFFFFFFFF),
    ("shr.u32", lambda a, s: np.where(s >= 32, 0, a >> np.minimum(s, 31))),
    ("shr.s32", lambda a, s: (a.view(np.int32) >> np.minimum(s, 31).astype(np.int32)).view(np.uint32)),
])
def test_shifts_clamp(op, ref):
    a = np.array([0x80000001, 0xFFFFFFFF, 0x12345678, 5, 0x80000000, 1], np.uint32)
    s = np.array([0, 31, 32, 33, 200, 2**31], np.uint32)
    out = ew(f"{op} {{o}}, {{a}}, {{b}};", [a, s], np.uint32)
    assert np.array_equal(out, ref(a, s.astype(np.uint64)).astype(np.uint32))


def test_bit_ops():
    a = np.array([0, 1, 0xF0F0F0F0, 0xFFFFFFFF, 0x80000000, 0x00010000], np.uint32)
    pop = np.array([bin(int(x)).count("1") for x in a], np.uint32)
    assert np.array_equal(ew("popc.b32 {o}, {a};", [a], np.uint32), pop)
    clz = np.array([32 - int(x).bit_length() for x in a], np.uint32)
    assert np.array_equal(ew("clz.b32 {o}, {a};", [a], np.uint32), clz)
    brev = np.array([int(f"{int(x):032b}"[::-1], 2) for x in a], np.uint32)
    assert np.array_equal(ew("brev.b32 {o}, {a};", [a], np.uint32), brev)
    b = np.array([0x0F0F0F0F] * 6, np.uint32)
    c = np.array([0x33333333] * 6, np.uint32)
    # immLut 0x96 = a ^ b ^ c, 0xE8 = majority
    assert np.array_equal(ew("lop3.b32 {o}, {a}, {b}, {c}, 0x96;", [a, b, c], np.uint32), a ^ b ^ c)
    assert np.array_equal(ew("lop3.b32 {o}, {a}, {b}, {c}, 0xE8;", [a, b, c], np.uint32),
                          (a & b) | (a & c) | (b & c))


def test_bfe_bfi():
    a = np.array([0xF0F0ABCD, 0x80000000, 0x12345678, 0xFFFFFFFF], np.uint32)
    pos = np.array([4, 28, 0, 40], np.uint32)
    ln = np.array([8, 8, 32, 4], np.uint32)

    def ref_u(x, p, n):
        if n == 0 or p >= 32:
            return 0
        return (int(x) >> p) & ((1 << min(n, 32 - p)) - 1)

    want = np.array([ref_u(*v) for v in zip(a, pos, ln)], np.uint32)
    assert np.array_equal(ew("bfe.u32 {o}, {a}, {b}, {c};", [a, pos, ln], np.uint32), want)
    got = ew("bfe.s32 {o}, {a}, {b}, {c};", [a, pos, ln], np.int32)
    assert got.tolist() == [-68, -8, 0x12345678, -1]
    ins = ew("bfi.b32 {o}, {a}, {b}, 8, 8;", [np.full(4, 0xAB, np.uint32), a], np.uint32)
    assert np.array_equal(ins, (a & ~np.uint32(0xFF00)) | np.uint32(0xAB00))


def test_prmt_default_and_modes():
    a = np.full(4, 0x33221100, np.uint32)
    b = np.full(4, 0xF7665544, np.uint32)
    sel = np.array([0x3210, 0x7654, 0x0000F, 0xFFF0], np.uint32)  # f -> sign of byte 7 is set
    got = ew("prmt.b32 {o}, {a}, {b}, {c};", [a, b, sel], np.uint32)
    assert got.tolist() == [0x33221100, 0xF7665544, 0x000000FF, 0xFFFFFF00]
    got = ew("prmt.b32.rc8 {o}, {a}, {b}, {c};", [a, b, np.array([0, 1, 2, 3], np.uint32)], np.uint32)
    assert got.tolist() == [0x00000000, 0x11111111, 0x22222222, 0x33333333]


def test_float_minmax_nan():
    a = np.array([1.0, np.nan, np.nan, -0.0, 3.0], np.float32)
    b = np.array([np.nan, 2.0, np.nan, 5.0, -4.0], np.float32)
    mn = ew("min.f32 {o}, {a}, {b};", [a, b], np.float32)
    assert np.array_equal(mn, np.fmin(a, b), equal_nan=True)
    mx = ew("max.f32 {o}, {a}, {b};", [a, b], np.float32)
    assert np.array_equal(mx, np.fmax(a, b), equal_nan=True)


def test_setp_ordered_unordered_and_combine():
    a = np.array([1.0, np.nan, 2.0, 3.0], np.float32)
    b = np.array([1.0, 1.0, 3.0, np.nan], np.float32)
    body = "setp.{cmp}.f32 %p1, {{a}}, {{b}};\n\tselp.u32 {{o}}, 1, 0, %p1;"
    run = lambda cmp: ew(body.format(cmp=cmp), [a, b], np.uint32).tolist()  # noqa: E731
    assert run("eq") == [1, 0, 0, 0]
    assert run("ne") == [0, 0, 1, 0]
    assert run("neu") == [0, 1, 1, 1]
    assert run("ltu") == [0, 1, 1, 1]
    assert run("nan") == [0, 1, 0, 1]
    assert run("num") == [1, 0, 1, 0]
    comb = ("setp.gt.s32 %p2, {a}, 0;\n\tsetp.lt.and.s32 %p1|%p3, {a}, 10, %p2;\n"
            "\tselp.u32 %r60, 1, 0, %p1;\n\tselp.u32 %r61, 2, 0, %p3;\n\tor.b32 {o}, %r60, %r61;")
    x = np.array([-5, 0, 5, 10, 15], np.int32)
    assert ew(comb, [x], np.uint32).tolist() == [0, 0, 1, 2, 2]


def test_f16_rounding_ties_and_cvt():
    # halfway cases between f16 neighbours: ties go to even
    x = np.array([1 + 2**-11, 1 + 3 * 2**-11, 2049.0, 65520.0, -1e-8, 3.14159], np.float32)
    got = ew("cvt.rn.f16.f32 {o}, {a};", [x], np.uint16).view(np.float16)
    assert np.array_equal(got, x.astype(np.float16))
    rz = ew("cvt.rz.f16.f32 {o}, {a};", [x], np.uint16).view(np.float16)
    assert rz[1] == np.float16(1 + 2**-10) and rz[3] == np.float16(65504)


def _bf16_ref(x):
    from kaiodsl.types import bf16_bits
    return bf16_bits(x)


def test_bf16_conversion():
    x = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, -2.5e38, np.nan, 1e-40, 3.3e38], np.float32)
    got = ew("cvt.rn.bf16.f32 {o}, {a};", [x], np.uint16)
    assert np.array_equal(got, _bf16_ref(x))
    back = ew("cvt.f32.bf16 {o}, {a};", [got], np.float32)
    assert np.array_equal(back.view(np.uint32)[:4], got.astype(np.uint32)[:4] << 16)


def test_cvt_float_to_int_saturates():
    x = np.array([1.5, 2.5, -1.5, 3e9, -3e9, np.nan, -0.7, 255.9], np.float32)
    assert ew("cvt.rni.s32.f32 {o}, {a};", [x], np.int32).tolist() == \
        [2, 2, -2, 2**31 - 1, -2**31, 0, -1, 256]
    assert ew("cvt.rzi.s32.f32 {o}, {a};", [x], np.int32).tolist() == \
        [1, 2, -1, 2**31 - 1, -2**31, 0, 0, 255]
    assert ew("cvt.rmi.u8.f32 {o}, {a};", [x], np.uint8).tolist() == [1, 2, 0, 255, 0, 0, 0, 255]
    assert ew("cvt.rpi.s32.f32 {o}, {a};", [x[:3]], np.int32).tolist() == [2, 3, -1]


def test_cvt_int_widths():
    x = np.array([-1, 300, -129, 127], np.int32)
    assert ew("cvt.s8.s32 {o}, {a};", [x], np.int16).tolist() == [-1, 44, 127, 127]  # 8-bit in a 16-bit reg
    assert ew("cvt.sat.s8.s32 {o}, {a};", [x], np.int16).tolist() == [-1, 127, -128, 127]
    assert ew("cvt.u64.s32 {o}, {a};", [x], np.int64).tolist() == [-1, 300, -129, 127]
    assert ew("cvt.u64.u32 {o}, {a};", [x], np.int64).tolist() == [2**32 - 1, 300, 2**32 - 129, 127]
    f = ew("cvt.rn.f32.s32 {o}, {a};", [np.array([16777217, -3, 0, 7], np.int32)], np.float32)
    assert f.tolist() == [16777216.0, -3.0, 0.0, 7.0]


def test_packed_half2():
    a = np.array([1.5, -2.0, 1e4, 0.1], np.float32)
    b = np.array([0.25, 3.0, 1e4, 0.2], np.float32)
    # cvt.rn.f16x2.f32 d, a, b: a goes to the UPPER half
    packed = ew("cvt.rn.f16x2.f32 {o}, {a}, {b};", [a, b], np.uint32)
    hi = (packed >> 16).astype(np.uint16).view(np.float16)
    lo = (packed & 0xFFFF).astype(np.uint16).view(np.float16)
    assert np.array_equal(hi, a.astype(np.float16)) and np.array_equal(lo, b.astype(np.float16))
    s = ew("add.rn.f16x2 {o}, {a}, {b};", [packed, packed], np.uint32)
    assert np.array_equal((s >> 16).astype(np.uint16).view(np.float16), (2 * a).astype(np.float16))
    f = ew("fma.rn.f16x2 {o}, {a}, {b}, {c};", [packed, packed, packed], np.uint32)
    lo16 = lo.astype(np.float32)
    assert np.array_equal((f & 0xFFFF).astype(np.uint16).view(np.float16),
                          (lo16 * lo16 + lo16).astype(np.float16))
    bf = ew("cvt.rn.bf16x2.f32 {o}, {a}, {b};", [a, b], np.uint32)
    assert np.array_equal((bf >> 16).astype(np.uint16), _bf16_ref(a))


def test_mov_pack_unpack():
    a = np.array([0x1111, 0xABCD], np.uint16)
    b = np.array([0x2222, 0x1234], np.uint16)
    assert ew("mov.b32 {o}, {{{a}, {b}}};", [a, b], np.uint32).tolist() == [0x22221111, 0x1234ABCD]
    x = np.array([0xAAAABBBB, 0x01020304], np.uint32)
    assert ew("mov.b32 {{%h1, %h2}}, {a};\n\tmov.b16 {o}, %h2;", [x], np.uint16).tolist() == [0xAAAA, 0x0102]
    y = np.array([1, 2], np.uint32)
    assert ew("mov.b64 {o}, {{{a}, {b}}};", [x, y], np.uint64).tolist() == [(1 << 32) | 0xAAAABBBB,
                                                                           (2 << 32) | 0x01020304]


def test_float_approx_and_rounding_modes():
    x = np.array([0.5, 2.0, 10.0, 1e-3], np.float32)
    for op, f in [("ex2.approx.f32", np.exp2), ("lg2.approx.f32", np.log2), ("sin.approx.f32", np.sin),
                  ("rsqrt.approx.f32", lambda v: 1 / np.sqrt(v)), ("tanh.approx.f32", np.tanh),
                  ("sqrt.rn.f32", np.sqrt), ("rcp.rn.f32", lambda v: 1 / v)]:
        np.testing.assert_allclose(ew(f"{op} {{o}}, {{a}};", [x], np.float32), f(x), rtol=1e-6)
    one, three = np.ones(2, np.float32), np.full(2, 3.0, np.float32)
    rz = ew("div.rz.f32 {o}, {a}, {b};", [one, three], np.float32)
    rp = ew("div.rp.f32 {o}, {a}, {b};", [one, three], np.float32)
    assert rz[0] < rp[0] and np.nextafter(rz[0], np.float32(1)) == rp[0]
    sat = ew("add.sat.f32 {o}, {a}, {b};", [np.array([0.5, -3, np.nan], np.float32),
                                            np.array([0.7, 1, 1], np.float32)], np.float32)
    assert sat.tolist() == [1.0, 0.0, 0.0]
