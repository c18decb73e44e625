"""Control flow, Const parameters, compile-time evaluation, plain helpers, @kaiodsl.func inlining."""

import numpy as np
import pytest

import kaiodsl
from kaiodsl import Const, Ptr, f32, i32, i64, u32
from kit import assert_close, poison, random

N = 32


@kaiodsl.kernel
def _if_chain(x: Ptr[i32], o: Ptr[i32]):
    i = kaiodsl.thread_idx.x
    v = x[i]
    if v < -5:
        r = 1
    elif v < 0:
        r = 2
    elif v == 0:
        r = 3
    else:
        r = v * 10
        if r > 40:
            r = r - 1
    o[i] = r


def test_if_elif_else(backend, rng):
    x = random(rng, N, np.int32, -10, 10)
    x[:3] = [0, -5, 5]
    o = poison(N, np.int32)
    _if_chain[1, N](x, o)
    want = np.select([x < -5, x < 0, x == 0], [1, 2, 3], default=x * 10)
    want = np.where((x > 0) & (want > 40), want - 1, want)
    np.testing.assert_array_equal(o, want)


@kaiodsl.kernel
def _ranges(a: i32, b: i32, step: i32, o: Ptr[i32]):
    i = kaiodsl.thread_idx.x
    s = 0            # loop-carried value starting as a Python constant
    cnt = 0
    for k in range(a + i, b, step):   # dynamic bounds and a dynamic (possibly negative) step
        s += k
        cnt += 1
    t = 0
    for k in range(b, a, -3):         # constant negative step
        t += k * 2
    u = 0
    for k in range(i):                # one argument
        u += 1
    o[4 * i] = s
    o[4 * i + 1] = cnt
    o[4 * i + 2] = t
    o[4 * i + 3] = u


@pytest.mark.parametrize("a,b,step", [(0, 20, 3), (25, -7, -4), (3, 3, 1), (5, 2, 1), (-10, 10, 7)])
def test_dynamic_range(backend, a, b, step):
    o = poison(4 * N, np.int32)
    _ranges[1, N](a, b, step, o)
    for i in range(N):
        ks = list(range(a + i, b, step))
        assert list(o[4 * i:4 * i + 4]) == [sum(ks), len(ks), sum(2 * k for k in range(b, a, -3)), i]


@kaiodsl.kernel
def _loops(x: Ptr[i32], n: i32, o: Ptr[i32]):
    i = kaiodsl.thread_idx.x
    # while with break / continue
    k = 0
    acc = 0
    while k < n:
        k += 1
        if x[k - 1] % 3 == 0:
            continue
        if x[k - 1] > 90:
            break
        acc += x[k - 1]
    # nested loops with a break in the inner one
    tot = 0
    for r in range(4):
        for c in range(n):
            if c > r + i:
                break
            tot += r * c
    # static_range: unrolled, the index is a Python int
    st = 0
    for j in kaiodsl.static_range(1, 6, 2):
        st += x[j] * j
    for j in kaiodsl.static_range(10):
        if j == 4:
            break      # a compile-time break
        if j % 2 == 1:
            continue
        st += j
    o[3 * i] = acc
    o[3 * i + 1] = tot
    o[3 * i + 2] = st


def test_while_break_continue_nested_static(backend, rng):
    n = 16
    x = random(rng, n, np.int32, 0, 100)
    o = poison(3 * N, np.int32)
    _loops[1, N](x, n, o)
    acc = 0
    for v in x:
        if v % 3 == 0:
            continue
        if v > 90:
            break
        acc += int(v)
    for i in range(N):
        tot = sum(r * c for r in range(4) for c in range(n) if c <= r + i)
        st = sum(int(x[j]) * j for j in (1, 3, 5)) + 0 + 2
        assert list(o[3 * i:3 * i + 3]) == [acc, tot, st]


@kaiodsl.kernel
def _early_return(x: Ptr[f32], o: Ptr[f32], n: i32):
    i = kaiodsl.thread_idx.x
    if i >= n:
        return
    v = x[i]
    if v < 0.0:
        o[i] = 0.0
        return
    o[i] = v * 2.0


def test_early_return(backend, rng):
    n = 20
    x = random(rng, N, np.float32, -1, 1)
    o = poison(N, np.float32)
    o[n:] = 7.0
    _early_return[1, N](x, o, n)
    np.testing.assert_array_equal(o[:n], np.where(x[:n] < 0, 0, x[:n] * 2))
    np.testing.assert_array_equal(o[n:], 7.0)


@kaiodsl.kernel
def _carried_types(x: Ptr[f32], o: Ptr[f32], oi: Ptr[i64], n: i32):
    i = kaiodsl.thread_idx.x
    m = -float("inf")  # Python float -> f32 through the loop
    s = 0              # Python int meets i64: i64
    prod = 1.0
    for k in range(n):
        m = max(m, x[k] + kaiodsl.f32(i))
        s = s + kaiodsl.i64(k) * 1000000000
        prod *= 1.5
    o[2 * i] = m
    o[2 * i + 1] = prod
    oi[i] = s


def test_loop_carried_python_constants(backend, rng):
    n = 10
    x = random(rng, n, np.float32, -10, 10)
    o, oi = poison(2 * N, np.float32), poison(N, np.int64)
    _carried_types[1, N](x, o, oi, n)
    np.testing.assert_array_equal(o[::2], x.max() + np.arange(N, dtype=np.float32))
    np.testing.assert_array_equal(o[1::2], np.float32(1.5) ** n)
    np.testing.assert_array_equal(oi, sum(k * 10**9 for k in range(n)))


def _scale(v):        # plain Python: runs at compile time on constants
    return v * 3 + 1


def _table(n):
    return [k * k for k in range(n)]


@kaiodsl.kernel
def _consts(x: Ptr[i32], o: Ptr[i32], MODE: Const[str], K: Const[int], SCALE: Const = 2):
    i = kaiodsl.thread_idx.x
    w = _scale(K)                  # a helper on a constant
    sq = _table(4)                 # a helper building a list
    if MODE == "add":
        r = x[i] + w
    elif MODE == "mul":
        r = x[i] * w
    else:
        r = -x[i]
    o[i] = r * SCALE + sq[3] + (K if K > 2 else -K)


@pytest.mark.parametrize("mode,k", [("add", 1), ("mul", 4), ("neg", 3)])
def test_const_params_and_helpers(backend, rng, mode, k):
    x = random(rng, N, np.int32, -50, 50)
    o = poison(N, np.int32)
    _consts[1, N](x, o, MODE=mode, K=k, SCALE=2)  # TODO(runtime): launches ignore Const defaults
    assert _consts.ptx(MODE=mode, K=k) == _consts.ptx(MODE=mode, K=k, SCALE=2)
    w = 3 * k + 1
    r = {"add": x + w, "mul": x * w, "neg": -x}[mode]
    np.testing.assert_array_equal(o, r * 2 + 9 + (k if k > 2 else -k))


def test_const_if_drops_dead_branch():
    @kaiodsl.kernel
    def k(x: Ptr[f32], USE_SQRT: Const[bool]):
        i = kaiodsl.thread_idx.x
        if USE_SQRT:
            x[i] = kaiodsl.sqrt(x[i])
        else:
            x[i] = x[i] * 3.0
    on, off = k.ptx(USE_SQRT=True), k.ptx(USE_SQRT=False)
    assert "sqrt.rn.f32" in on and "mul.rn.f32" not in on
    assert "sqrt.rn.f32" not in off and "mul.rn.f32" in off
    assert "bra" not in on and "setp" not in on


@kaiodsl.func
def _clamp_sign(v: f32, lo: f32) -> f32:
    if v < lo:
        return lo           # several returns
    if v > 0.0:
        return v * 2.0
    return -v


@kaiodsl.func
def _axpy(a, x, y, N_: Const[int] = 1):
    return a * x + y + N_


@kaiodsl.kernel
def _funcs(x: Ptr[f32], o: Ptr[f32], oi: Ptr[i32]):
    i = kaiodsl.thread_idx.x
    o[i] = _clamp_sign(x[i], -0.5)
    oi[i] = _axpy(i, 3, 4, N_=10)   # untyped parameters take the caller's types


def test_func_inlining_multiple_returns(backend, rng):
    x = random(rng, N, np.float32, -1, 1)
    o, oi = poison(N, np.float32), poison(N, np.int32)
    _funcs[1, N](x, o, oi)
    want = np.where(x < -0.5, np.float32(-0.5), np.where(x > 0, x * 2, -x))
    np.testing.assert_array_equal(o, want)
    np.testing.assert_array_equal(oi, np.arange(N) * 3 + 14)
    assert not any(line.strip().startswith("call") for line in _funcs.ptx().splitlines())


@kaiodsl.kernel
def _special(o: Ptr[i32]):
    t = kaiodsl.thread_idx.x + kaiodsl.block_dim.x * (kaiodsl.thread_idx.y + kaiodsl.block_dim.y * kaiodsl.thread_idx.z)
    b = kaiodsl.block_idx.x + kaiodsl.grid_dim.x * kaiodsl.block_idx.y
    g = b * (kaiodsl.block_dim.x * kaiodsl.block_dim.y * kaiodsl.block_dim.z) + t
    o[6 * g] = kaiodsl.lane_id()
    o[6 * g + 1] = kaiodsl.warp_id()
    o[6 * g + 2] = t
    o[6 * g + 3] = b
    o[6 * g + 4] = kaiodsl.grid_dim.x * 100 + kaiodsl.grid_dim.y
    o[6 * g + 5] = kaiodsl.block_dim.x * 100 + kaiodsl.block_dim.y * 10 + kaiodsl.block_dim.z


def test_special_registers(backend):
    grid, block = (2, 3), (8, 4, 2)
    total = 6 * 64
    o = poison(6 * total, np.int32)
    _special[grid, block](o)
    o = o.reshape(total, 6)
    t = np.tile(np.arange(64), 6)
    np.testing.assert_array_equal(o[:, 0], t % 32)
    np.testing.assert_array_equal(o[:, 1], t // 32)
    np.testing.assert_array_equal(o[:, 2], t)
    np.testing.assert_array_equal(o[:, 3], np.repeat(np.arange(6), 64))
    np.testing.assert_array_equal(o[:, 4], 203)
    np.testing.assert_array_equal(o[:, 5], 842)


@kaiodsl.kernel(block_size="B")
def _block_size_const(o: Ptr[i32], B: Const[int]):
    i = kaiodsl.thread_idx.x
    o[i] = kaiodsl.block_dim.x * 2 + i


def test_block_size_makes_block_dim_constant(backend):
    o = poison(64, np.int32)
    _block_size_const[1, 64](o, B=64)
    np.testing.assert_array_equal(o, 128 + np.arange(64))
    ptx = _block_size_const.ptx(B=64)
    assert ".reqntid 64, 1, 1" in ptx and "%ntid" not in ptx


@kaiodsl.func
def _block_x_inner():
    return kaiodsl.block_dim.x * 3


@kaiodsl.func
def _block_x_outer(i):
    return _block_x_inner() + kaiodsl.block_dim.y * 1000 + i  # a func calling a func


@kaiodsl.kernel(block_size=("B", 2))
def _block_size_in_func(o: Ptr[i32], B: Const[int]):
    i = kaiodsl.thread_idx.x + kaiodsl.thread_idx.y * B
    o[i] = _block_x_outer(i)


@pytest.mark.parametrize("B", [32, 64])
def test_block_dim_x_inside_a_func_folds_like_in_the_kernel(backend, B):
    o = poison(2 * B, np.int32)
    _block_size_in_func[1, (B, 2)](o, B=B)
    np.testing.assert_array_equal(o, 3 * B + 2000 + np.arange(2 * B))
    ptx = _block_size_in_func.ptx(B=B)
    assert f".reqntid {B}, 2, 1" in ptx and "%ntid" not in ptx, ptx


@kaiodsl.kernel
def _ifexp_and_where(x: Ptr[f32], o: Ptr[f32]):
    i = kaiodsl.thread_idx.x
    v = x[i]
    o[3 * i] = v if v > 0.0 else -2.0 * v
    o[3 * i + 1] = kaiodsl.where(v > 0.5, 1.0, v)
    o[3 * i + 2] = x[i + 1] if i + 1 < 32 else 0.0  # a guarded load: branches, not selp


def test_conditional_expressions(backend, rng):
    x = random(rng, N, np.float32, -1, 1)
    o = poison(3 * N, np.float32)
    _ifexp_and_where[1, N](x, o)
    np.testing.assert_array_equal(o[::3], np.where(x > 0, x, -2 * x))
    np.testing.assert_array_equal(o[1::3], np.where(x > 0.5, 1.0, x))
    np.testing.assert_array_equal(o[2::3], np.append(x[1:], 0))
