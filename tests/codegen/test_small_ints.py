"""8- and 16-bit integer operations wrap as numpy does, however the result is observed (issue 10 item 4).

8-bit values live in 16-bit registers, so a result whose upper bits were not re-extended would
show only where something reads the whole register: a comparison, bool_(), a division, a
shift, a same-width cast, popc. Each op's result is therefore observed five ways (stored,
bool_, compared with a loaded value, widened to i32, popc), for random and edge operands, and
compared with Python-int arithmetic wrapped to the type.
"""

import numpy as np
import pytest

import kaiodsl
from kaiodsl import Const, Ptr, bool_, i8, i16, i32, i64, u8, u16, u32, u64

SMALL = [i8, u8, i16, u16]
BACKENDS = ["sim", pytest.param("cuda", marks=pytest.mark.gpu)]
INTS = [i8, u8, i16, u16, i32, u32, i64, u64]
BINARY = ["add", "sub", "mul", "floordiv", "mod", "and", "or", "xor", "shl", "shr", "min", "max"]
UNARY = ["neg", "invert", "abs", "pos"]
N = 128


def _wrap(v: int, t) -> int:
    lo, hi = t.int_range
    v &= (1 << t.bits) - 1
    return v - (1 << t.bits) if v > hi else v


_PY = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
       "floordiv": lambda a, b: a // b, "mod": lambda a, b: a % b, "and": lambda a, b: a & b,
       "or": lambda a, b: a | b, "xor": lambda a, b: a ^ b, "shl": lambda a, b: a << b,
       "shr": lambda a, b: a >> b, "min": min, "max": max, "neg": lambda a, b: -a,
       "invert": lambda a, b: ~a, "abs": lambda a, b: abs(a), "pos": lambda a, b: a}


def _kernel(T):
    @kaiodsl.kernel
    def k(a: Ptr[T], b: Ptr[T], s: Ptr[u32], c: Ptr[T], o: Ptr[T], ob: Ptr[bool_], olt: Ptr[bool_],
          ow: Ptr[i32], op: Ptr[i32], OP: Const[str]):
        i = kaiodsl.thread_idx.x
        x, y = a[i], b[i]
        if OP == "add":
            r = x + y
        elif OP == "sub":
            r = x - y
        elif OP == "mul":
            r = x * y
        elif OP == "floordiv":
            r = x // y
        elif OP == "mod":
            r = x % y
        elif OP == "and":
            r = x & y
        elif OP == "or":
            r = x | y
        elif OP == "xor":
            r = x ^ y
        elif OP == "shl":
            r = x << s[i]
        elif OP == "shr":
            r = x >> s[i]
        elif OP == "min":
            r = min(x, y)
        elif OP == "max":
            r = max(x, y)
        elif OP == "neg":
            r = -x
        elif OP == "invert":
            r = ~x
        elif OP == "abs":
            r = abs(x)
        else:
            r = +x
        o[i] = r
        ob[i] = kaiodsl.bool_(r)
        olt[i] = r < c[i]
        ow[i] = kaiodsl.i32(r)
        op[i] = kaiodsl.popc(r)
    return k


KERNELS = {t.name: _kernel(t) for t in SMALL}


def _operands(t, rng):
    lo, hi = t.int_range
    edges = [lo, lo + 1, -1 if lo else 1, 0, 1, hi - 1, hi, hi // 2, lo // 2 if lo else hi // 2 + 1]
    a = np.array(edges * 2 + list(rng.integers(lo, hi + 1, N - 2 * len(edges))), t.np_dtype)
    b = np.array(edges[::-1] * 2 + list(rng.integers(lo, hi + 1, N - 2 * len(edges))), t.np_dtype)
    return a, rng.permutation(b)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("op", BINARY + UNARY)
@pytest.mark.parametrize("T", SMALL, ids=str)
def test_small_int_op_observed_every_way(backend, T, op, rng):
    a, b = _operands(T, rng)
    if op in ("floordiv", "mod"):
        b[b == 0] = 3
    s = rng.integers(0, 20, N).astype(np.uint32)
    c = rng.integers(*T.int_range, N, endpoint=True).astype(T.np_dtype)
    o, ow, op_ = (np.full(N, 0x5A, T.np_dtype), np.full(N, -7, np.int32), np.full(N, -7, np.int32))
    ob, olt = np.zeros(N, bool), np.zeros(N, bool)
    KERNELS[T.name][1, N](a, b, s, c, o, ob, olt, ow, op_, OP=op)
    want = np.array([_wrap(_PY[op](int(x), int(s[i]) if op in ("shl", "shr") else int(y)), T)
                     for i, (x, y) in enumerate(zip(a, b))], np.int64)
    got = {"stored": o.astype(np.int64), "bool_": ob, "lt": olt, "i32": ow.astype(np.int64), "popc": op_}
    exp = {"stored": want, "bool_": want != 0, "lt": want < c.astype(np.int64), "i32": want,
           "popc": np.array([bin(int(v) & ((1 << T.bits) - 1)).count("1") for v in want])}
    bad = [f"{k}: a={a[i]} b={b[i]} s={s[i]} c={c[i]}: got {got[k][i]}, expected {exp[k][i]}"
           for k in got for i in np.flatnonzero(got[k] != exp[k])[:3]]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("dst", INTS, ids=str)
@pytest.mark.parametrize("src", INTS, ids=str)
def test_int_casts_wrap_and_saturate(backend, src, dst, rng):
    """cast (wraps) and saturate_cast (clamps), each observed by a comparison and bool_."""

    @kaiodsl.kernel
    def k(a: Ptr[src], c: Ptr[dst], o: Ptr[dst], ob: Ptr[bool_], olt: Ptr[bool_], SAT: Const[bool]):
        i = kaiodsl.thread_idx.x
        r = kaiodsl.saturate_cast(a[i], dst) if SAT else kaiodsl.cast(a[i], dst)
        o[i] = r
        ob[i] = kaiodsl.bool_(r)
        olt[i] = r < c[i]

    lo, hi = src.int_range
    edges = [lo, hi, 0, 1, -1, 255, 256, -129, 128, 65535, -32769, 2 ** 31, 2 ** 32 - 1]
    a = np.array([_wrap(v, src) for v in edges] + list(rng.integers(lo, hi, 24, endpoint=True, dtype=src.np_dtype)),
                 src.np_dtype)
    c = rng.integers(*dst.int_range, len(a), endpoint=True, dtype=dst.np_dtype)
    for sat in (False, True):
        o, ob, olt = np.zeros(len(a), dst.np_dtype), np.zeros(len(a), bool), np.zeros(len(a), bool)
        k[1, len(a)](a, c, o, ob, olt, SAT=sat)
        dlo, dhi = dst.int_range
        want = [min(max(int(v), dlo), dhi) if sat else _wrap(int(v), dst) for v in a]
        assert [int(v) for v in o] == want, (sat, a, o)
        assert list(ob) == [w != 0 for w in want]
        assert list(olt) == [w < int(cc) for w, cc in zip(want, c)]


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("T", [i8, u8], ids=str)
def test_bitcast_between_8_bit_types_is_narrowed(backend, T):
    other = u8 if T == i8 else i8

    @kaiodsl.kernel
    def k(a: Ptr[T], ob: Ptr[bool_], olt: Ptr[bool_]):
        i = kaiodsl.thread_idx.x
        r = kaiodsl.bitcast(a[i], other)
        ob[i] = r == other(-1 if other == i8 else 255)
        olt[i] = r < other(0 if other == i8 else 200)

    a = np.array([-1 if T == i8 else 255, 5], T.np_dtype)
    ob, olt = np.zeros(2, bool), np.zeros(2, bool)
    k[1, 2](a, ob, olt)
    assert list(ob) == [True, False] and list(olt) == ([False, True] if other == u8 else [True, False])


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_bool_of_inverted_u8(backend):
    """The reported case: bool_(~u8(255)) is False."""

    @kaiodsl.kernel
    def k(a: Ptr[u8], o: Ptr[bool_]):
        o[0] = kaiodsl.bool_(~a[0])

    o = np.ones(1, bool)
    k[1, 1](np.array([255], np.uint8), o)
    assert not o[0]


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("T", [kaiodsl.f32, kaiodsl.f64, kaiodsl.f16], ids=str)
def test_float_floordiv_and_mod_by_literal_zero_are_ieee(backend, T):
    """x // 0 and x % 0 on floats compile (only integer division by a constant 0 is an error)."""

    @kaiodsl.kernel
    def k(a: Ptr[T], q: Ptr[T], r: Ptr[T]):
        i = kaiodsl.thread_idx.x
        q[i] = a[i] // 0
        r[i] = a[i] % 0.0

    a = np.array([1.5, -2.0, 0.0], T.np_dtype)
    q, r = np.zeros(3, T.np_dtype), np.zeros(3, T.np_dtype)
    k[1, 3](a, q, r)
    assert list(q[:2]) == [np.inf, -np.inf] and np.isnan(q[2]) and np.isnan(r).all()


def test_abs_of_unsigned_and_needless_saturation_emit_valid_forms():
    @kaiodsl.kernel
    def k(a: Ptr[u16], b: Ptr[i16], o: Ptr[u16], w: Ptr[i32]):
        i = kaiodsl.thread_idx.x
        o[i] = abs(a[i]) + (-a[i])
        w[i] = kaiodsl.saturate_cast(b[i], i32) + kaiodsl.saturate_cast(w[i], i32)

    ptx = k.ptx(arch="sm_80")
    assert "abs.u" not in ptx and "neg.u" not in ptx and "cvt.sat" not in ptx
    assert k.compile(arch="sm_80").cubin


def test_i16_neg_and_abs_are_computed_in_32_bits():
    """ptxas leaves neg/abs.s16 of -32768 as +32768 in its register (H200): kaiodsl widens, then truncates."""
    @kaiodsl.kernel
    def k(a: Ptr[i16], o: Ptr[i16]):
        i = kaiodsl.thread_idx.x
        o[i] = abs(a[i]) - (-a[i])

    ptx = k.ptx(arch="sm_80")
    assert "neg.s16" not in ptx and "abs.s16" not in ptx and "neg.s32" in ptx and "abs.s32" in ptx
    assert k.compile(arch="sm_80").cubin


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("dst", INTS, ids=str)
@pytest.mark.parametrize("src", [kaiodsl.f16, kaiodsl.f32, kaiodsl.f64], ids=str)
def test_float_to_int_truncates_saturates_and_extends(backend, src, dst):
    """float -> int truncates toward zero and saturates (NaN as the GPU gives it); the result, observed by a
    comparison and bool_, is extended in its register (cvt into an 8-bit type)."""
    @kaiodsl.kernel
    def k(a: Ptr[src], c: Ptr[dst], o: Ptr[dst], ob: Ptr[bool_], olt: Ptr[bool_]):
        i = kaiodsl.thread_idx.x
        r = kaiodsl.cast(a[i], dst)
        o[i] = r
        ob[i] = kaiodsl.bool_(r)
        olt[i] = r < c[i]

    lo, hi = dst.int_range
    vals = [0.0, -0.0, 1.7, -1.7, -128.9, 127.9, 255.5, 300.0, -300.0, 65504.0, -65504.0, np.inf, -np.inf, np.nan,
            1e10, -1e10, 3e38 if src != kaiodsl.f16 else 12.5]
    a = np.array(vals, src.np_dtype)
    c = np.array([lo, hi, 0, 1] * 5, dst.np_dtype)[:len(a)]
    o, ob, olt = np.zeros(len(a), dst.np_dtype), np.zeros(len(a), bool), np.zeros(len(a), bool)
    k[1, len(a)](a, c, o, ob, olt)
    def ref(v: float) -> int:
        if v != v:
            return _nan_want(src, dst)
        return lo if v <= lo else hi if v >= hi else int(v)  # int() truncates toward zero

    want = [ref(float(v)) for v in a]
    assert [int(v) for v in o] == want, (a, o)
    assert list(ob) == [w != 0 for w in want]
    assert list(olt) == [w < int(cc) for w, cc in zip(want, c)]


def _nan_want(src, dst) -> int:
    """The H200's cvt of NaN: the top bit alone from an f64 or into 64 bits, else 0 (the PTX ISA says 0)."""
    top = 1 << (dst.bits - 1)
    return (-top if dst.is_signed else top) if src == kaiodsl.f64 or dst.bits == 64 else 0


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("dst", INTS, ids=str)
@pytest.mark.parametrize("src", [kaiodsl.f16, kaiodsl.bf16, kaiodsl.f32, kaiodsl.f64, None], ids=str)
def test_float_to_int_of_constant_nan_folds_as_the_gpu_converts(backend, src, dst):
    """A folded cast of a NaN constant gives what cvt gives at run time (src None: a weak float, f32)."""
    @kaiodsl.kernel
    def k(o: Ptr[dst], X: Const[float]):
        o[0] = kaiodsl.cast(X if src is None else kaiodsl.cast(X, src), dst)

    o = np.full(1, 5, dst.np_dtype)
    k[1, 1](o, X=float("nan"))
    assert int(o[0]) == _nan_want(src or kaiodsl.f32, dst)
