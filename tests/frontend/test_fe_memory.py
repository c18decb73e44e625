"""Memory: pointer arithmetic, vector and masked loads/stores, cache hints, shared and local arrays."""

import numpy as np
import pytest

import kaiodsl
from kaiodsl import Const, Ptr, f16, f32, f64, i8, i32, i64, u8, u16, u32, u64
from kit import poison, random

N = 32


@kaiodsl.kernel
def _ptr_arith(x: Ptr[f32], o: Ptr[f32], n: i32):
    i = kaiodsl.thread_idx.x
    p = x + 2            # pointer + int
    q = p + i            # pointer + run-time int
    r = 1 + q            # int + pointer
    s = r - 1
    o[i] = s[0] + q[n - n] + (x + kaiodsl.i64(3))[i - 1] + x[kaiodsl.u8(i)]


def test_pointer_arithmetic(backend, rng):
    x = random(rng, N + 4, np.float32, -1, 1)
    o = poison(N, np.float32)
    _ptr_arith[1, N](x, o, 5)
    i = np.arange(N)
    np.testing.assert_array_equal(o, ((x[i + 2] + x[i + 2]) + x[i + 2]) + x[i])


VEC_CASES = [(f32, np.float32, 4), (f32, np.float32, 2), (i32, np.int32, 4), (u16, np.uint16, 4),
             (f16, np.float16, 2), (f64, np.float64, 2), (i64, np.int64, 2), (u8, np.uint8, 4)]


@pytest.mark.parametrize("T,npt,V", VEC_CASES, ids=str)
def test_vector_load_store(backend, rng, T, npt, V):
    @kaiodsl.kernel
    def k(x: Ptr[T], o: Ptr[T]):
        i = kaiodsl.thread_idx.x
        v = kaiodsl.load(x, i * V, vec=V, cache="nc")
        w = [v[V - 1 - j] for j in kaiodsl.static_range(V)]   # reversed
        kaiodsl.store(o, i * V, tuple(w), vec=V)

    x = random(rng, N * V, npt)
    o = poison(N * V, npt)
    k[1, N](x, o)
    np.testing.assert_array_equal(o, x.reshape(N, V)[:, ::-1].reshape(-1))
    ptx = k.ptx()
    assert f"ld.global.nc.v{V}" in ptx and f"st.global.v{V}" in ptx


@kaiodsl.kernel
def _masked(x: Ptr[f32], o: Ptr[f32], n: i32):
    i = kaiodsl.thread_idx.x
    a = kaiodsl.load(x, i, mask=i < n, other=-1.0)
    v = kaiodsl.load(x, i * 2, vec=2, mask=i * 2 < n, other=5.0)
    o[3 * i] = a
    o[3 * i + 1] = v[0]
    kaiodsl.store(o, 3 * i + 2, v[1], mask=i % 2 == 0)


def test_masked_loads_with_default(backend, rng):
    n = 20
    x = random(rng, n, np.float32, -1, 1)
    o = poison(3 * N, np.float32)
    _masked[1, N](x, o, n)
    xi = np.concatenate([x, np.full(2 * N, np.nan, np.float32)])
    i = np.arange(N)
    np.testing.assert_array_equal(o[0::3], np.where(i < n, xi[i], -1))
    np.testing.assert_array_equal(o[1::3], np.where(2 * i < n, xi[2 * i], 5))
    even = i % 2 == 0
    np.testing.assert_array_equal(o[2::3][even], np.where(2 * i < n, xi[2 * i + 1], 5)[even])
    assert np.isnan(o[2::3][~even]).all()


@pytest.mark.parametrize("cache", ["", "nc", "ca", "cg", "cs", "lu", "cv"])
def test_load_cache_hints(backend, rng, cache):
    @kaiodsl.kernel
    def k(x: Ptr[i32], o: Ptr[i32]):
        i = kaiodsl.thread_idx.x
        kaiodsl.store(o, i, kaiodsl.load(x, i, cache=cache) + 1, cache="cs" if cache else "")

    x = random(rng, N, np.int32)
    o = poison(N, np.int32)
    k[1, N](x, o)
    np.testing.assert_array_equal(o, x + 1)
    if cache:
        assert f"ld.global.{cache}.s32" in k.ptx() and "st.global.cs.s32" in k.ptx()


@kaiodsl.kernel(block_size=(8, 4))
def _shared2d(x: Ptr[f32], o: Ptr[f32]):
    tile = kaiodsl.shared_array(f32, (4, 9))           # multi-dimensional, padded
    cnt = kaiodsl.shared_array(i32, (2, 2, 2))
    tx, ty = kaiodsl.thread_idx.x, kaiodsl.thread_idx.y
    tile[ty, tx] = x[ty * 8 + tx]
    if tx < 2 and ty < 2:
        cnt[ty, tx, 1] = ty * 10 + tx
    kaiodsl.syncthreads()
    row = tile[3 - ty]                                   # a row view
    o[ty * 8 + tx] = row[7 - tx] + kaiodsl.f32(cnt[ty % 2, tx % 2, 1])


def test_shared_multidim(backend, rng):
    x = random(rng, 32, np.float32, -1, 1)
    o = poison(32, np.float32)
    _shared2d[1, (8, 4)](x, o)
    X = x.reshape(4, 8)
    ty, tx = np.mgrid[0:4, 0:8]
    np.testing.assert_array_equal(o.reshape(4, 8), X[3 - ty, 7 - tx] + ((ty % 2) * 10 + tx % 2).astype(np.float32))


@kaiodsl.kernel
def _dynamic(x: Ptr[f32], o: Ptr[f32], n: i32):
    buf = kaiodsl.dynamic_shared(f32)
    ibuf = kaiodsl.dynamic_shared(i32, offset=256)
    i = kaiodsl.thread_idx.x
    buf[i] = x[i]
    ibuf[i] = i * 3
    kaiodsl.syncthreads()
    o[i] = buf[n - 1 - i] + kaiodsl.f32(ibuf[n - 1 - i])


def test_dynamic_shared(backend, rng):
    x = random(rng, N, np.float32, -1, 1)
    o = poison(N, np.float32)
    _dynamic[1, N](x, o, N, smem=512)
    np.testing.assert_array_equal(o, x[::-1] + (3 * np.arange(N)[::-1]).astype(np.float32))
    assert ".extern .shared .align 16 .b8 kaio_dyn_smem[];" in _dynamic.ptx()


@kaiodsl.kernel
def _local(x: Ptr[i32], o: Ptr[i32]):
    i = kaiodsl.thread_idx.x
    acc = kaiodsl.local_array(i32, 4)
    grid = [[0, 0], [0, 0]]
    for k in kaiodsl.static_range(4):
        acc[k] = x[i * 4 + k] * (k + 1)
    for r in range(3):                    # a run-time loop carrying the whole list
        for k in kaiodsl.static_range(4):
            acc[k] += r
    grid[1][0] = acc[0] + acc[3]
    o[i] = acc[0] + acc[1] + acc[2] + acc[3] + grid[1][0] + grid[0][1]


def test_local_arrays_in_registers(backend, rng):
    x = random(rng, 4 * N, np.int32, -100, 100)
    o = poison(N, np.int32)
    _local[1, N](x, o)
    a = x.reshape(N, 4) * np.arange(1, 5) + 3
    np.testing.assert_array_equal(o, a.sum(1) + a[:, 0] + a[:, 3])
    assert ".local" not in _local.ptx()
