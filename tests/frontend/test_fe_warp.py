"""Barriers, warp shuffles and votes, atomics (returning old values), fences and inline PTX."""

import numpy as np
import pytest

import kaiodsl
from kaiodsl import Ptr, f16x2, f32, f64, i32, i64, u32, u64
from kit import poison, random

W = 64  # two warps


@kaiodsl.kernel
def _shuffles(x: Ptr[f32], d: Ptr[f64], o: Ptr[f32], od: Ptr[f64]):
    i = kaiodsl.thread_idx.x
    v = x[i]
    o[4 * i] = kaiodsl.shfl_idx(v, 3)
    o[4 * i + 1] = kaiodsl.shfl_up(v, 2)
    o[4 * i + 2] = kaiodsl.shfl_down(v, 5)
    o[4 * i + 3] = kaiodsl.shfl_xor(v, 6)
    od[2 * i] = kaiodsl.shfl_xor(d[i], 1)            # 64-bit values move as two halves
    od[2 * i + 1] = kaiodsl.shfl_idx(d[i], (i + 7) % 32)


def test_shuffles(backend, rng):
    x = random(rng, W, np.float32, -1, 1)
    d = rng.uniform(-1e10, 1e10, W)
    o, od = poison(4 * W, np.float32), poison(2 * W, np.float64)
    _shuffles[1, W](x, d, o, od)
    lane = np.arange(W) % 32
    base = np.arange(W) - lane
    np.testing.assert_array_equal(o[0::4], x[base + 3])
    np.testing.assert_array_equal(o[1::4], x[base + np.where(lane >= 2, lane - 2, lane)])
    np.testing.assert_array_equal(o[2::4], x[base + np.where(lane + 5 < 32, lane + 5, lane)])
    np.testing.assert_array_equal(o[3::4], x[base + (lane ^ 6)])
    np.testing.assert_array_equal(od[0::2], d[base + (lane ^ 1)])
    np.testing.assert_array_equal(od[1::2], d[base + (lane + 7) % 32])


@kaiodsl.kernel
def _votes(x: Ptr[i32], o: Ptr[u32]):
    i = kaiodsl.thread_idx.x
    v = x[i]
    o[3 * i] = kaiodsl.vote_ballot(v > 0)
    o[3 * i + 1] = kaiodsl.u32(kaiodsl.vote_any(v > 90))
    o[3 * i + 2] = kaiodsl.u32(kaiodsl.vote_all(v > -1000))
    kaiodsl.syncwarp()


def test_votes(backend, rng):
    x = random(rng, W, np.int32, -100, 100)
    x[40] = 95
    x[:32] = np.minimum(x[:32], 80)
    o = poison(3 * W, np.uint32)
    _votes[1, W](x, o)
    for w in range(2):
        xs = x[32 * w:32 * w + 32]
        ballot = sum(1 << k for k in range(32) if xs[k] > 0)
        got = o.reshape(W, 3)[32 * w:32 * w + 32]
        assert (got[:, 0] == ballot).all()
        assert (got[:, 1] == int((xs > 90).any())).all()
        assert (got[:, 2] == 1).all()


@kaiodsl.kernel
def _atomics(g: Ptr[i32], gu: Ptr[u32], g64: Ptr[u64], gf: Ptr[f32], old: Ptr[i32], oldf: Ptr[f32],
             cas_old: Ptr[i32]):
    i = kaiodsl.thread_idx.x
    old[4 * i] = kaiodsl.atomic_add(g, 0, i + 1)
    old[4 * i + 1] = kaiodsl.atomic_min(g, 1, 100 - i)
    old[4 * i + 2] = kaiodsl.atomic_max(g, 2, i * 3)
    old[4 * i + 3] = kaiodsl.atomic_exch(g, 3 + i, -i)
    oldf[i] = kaiodsl.atomic_add(gf, 0, 0.5)
    kaiodsl.atomic_add(gu, 0, kaiodsl.u32(i))          # result unused: red
    kaiodsl.atomic_max(gu, 1, kaiodsl.u32(i) * 7)
    kaiodsl.atomic_or(gu, 2, kaiodsl.u32(1) << kaiodsl.u32(i % 32))
    kaiodsl.atomic_add(g64, 0, kaiodsl.u64(1) << 33)
    cas_old[i] = kaiodsl.atomic_cas(g, 3 + W, i, i + 1)  # a chain 0 -> 1 -> 2 ... in any order


def test_atomics_global_return_old_values(backend, rng):
    g = np.zeros(3 + 2 * W, np.int32)
    g[:3] = [0, 1000, -5]
    g[3:3 + W] = random(rng, W, np.int32, 1000, 2000)
    g[3 + W] = 0
    init = g.copy()
    gu, g64, gf = np.zeros(3, np.uint32), np.zeros(1, np.uint64), np.zeros(1, np.float32)
    old, oldf, cas_old = poison(4 * W, np.int32), poison(W, np.float32), poison(W, np.int32)
    _atomics[1, W](g, gu, g64, gf, old, oldf, cas_old)
    i = np.arange(W)
    assert g[0] == (i + 1).sum() and g[1] == 100 - (W - 1) and g[2] == 3 * (W - 1)
    np.testing.assert_array_equal(g[3:3 + W], -i)
    old = old.reshape(W, 4)
    # the adds happened in some serial order (not necessarily lane order: the H100 picks its own):
    # sorted by the old value each thread saw, each old value is the previous one plus that thread's addend
    order = np.argsort(old[:, 0])
    seen, addend = old[order, 0].astype(np.int64), (i + 1)[order]
    assert seen[0] == 0 and np.array_equal(seen[1:], seen[:-1] + addend[:-1])
    np.testing.assert_array_equal(old[:, 3], init[3:3 + W])
    assert old[:, 1].max() == 1000 and old[:, 2].min() == -5
    np.testing.assert_array_equal(np.sort(oldf), 0.5 * i)
    assert gf[0] == 0.5 * W
    assert gu[0] == i.sum() and gu[1] == 7 * (W - 1) and gu[2] == 0xFFFFFFFF
    assert g64[0] == W << 33
    # compare-and-swap: exactly the threads that saw their own index succeeded, forming a chain
    assert g[3 + W] >= 1 and np.sum(cas_old == i) == g[3 + W]
    ptx = _atomics.ptx()
    assert "red.global.add.u32" in ptx and "atom.global.add.s32" in ptx and "atom.global.cas.b32" in ptx


@kaiodsl.kernel
def _shared_atomics(x: Ptr[i32], hist: Ptr[i32], old: Ptr[i32], sf: Ptr[f32]):
    h = kaiodsl.shared_array(i32, 8)
    f = kaiodsl.shared_array(f32, 1)
    i = kaiodsl.thread_idx.x
    if i < 8:
        h[i] = 0
    if i == 0:
        f[0] = 0.0
    kaiodsl.syncthreads()
    old[i] = kaiodsl.atomic_add(h, x[i], 1)
    kaiodsl.atomic_add(f, 0, 0.25)
    kaiodsl.syncthreads()
    if i < 8:
        hist[i] = h[i]
    if i == 0:
        sf[0] = f[0]


def test_atomics_shared(backend, rng):
    x = random(rng, W, np.int32, 0, 7)
    hist, old, sf = poison(8, np.int32), poison(W, np.int32), poison(1, np.float32)
    _shared_atomics[1, W](x, hist, old, sf)
    np.testing.assert_array_equal(hist, np.bincount(x, minlength=8))
    for b in range(8):  # each bin's old values are 0..count-1
        np.testing.assert_array_equal(np.sort(old[x == b]), np.arange((x == b).sum()))
    assert sf[0] == 0.25 * W
    assert "atom.shared.add.s32" in _shared_atomics.ptx()


@kaiodsl.kernel
def _half2_atomic(acc: Ptr[f16x2], v: Ptr[f16x2]):
    i = kaiodsl.thread_idx.x
    kaiodsl.atomic_add(acc, i % 2, v[i])


def test_atomic_f16x2_add(backend, rng):
    vals = rng.integers(-8, 8, (W, 2)).astype(np.float16)  # small ints: exact in any order
    acc = np.zeros((2, 2), np.float16)
    accb, vb = acc.view(np.uint32).reshape(-1).copy(), vals.view(np.uint32).reshape(-1).copy()
    _half2_atomic[1, W](accb, vb)
    got = accb.view(np.float16).reshape(2, 2)
    np.testing.assert_array_equal(got[0], vals[0::2].astype(np.float32).sum(0))
    np.testing.assert_array_equal(got[1], vals[1::2].astype(np.float32).sum(0))
    assert "red.global.add.noftz.f16x2" in _half2_atomic.ptx()


@kaiodsl.kernel(block_size=128)
def _named_barriers(x: Ptr[i32], o: Ptr[i32]):
    s = kaiodsl.shared_array(i32, 128)
    i = kaiodsl.thread_idx.x
    s[i] = x[i] * 2
    kaiodsl.fence("cta")
    if i < 64:
        kaiodsl.barrier(1, 64)       # the first two warps sync among themselves
        o[i] = s[63 - i]
    else:
        kaiodsl.barrier(2, 64)
        o[i] = s[191 - i]
    kaiodsl.barrier()
    kaiodsl.fence()
    kaiodsl.fence("sys")


def test_named_barriers_and_fences(backend, rng):
    x = random(rng, 128, np.int32)
    o = poison(128, np.int32)
    _named_barriers[1, 128](x, o)
    np.testing.assert_array_equal(o, np.r_[2 * x[:64][::-1], 2 * x[64:][::-1]])
    ptx = _named_barriers.ptx()
    for s in ("bar.sync 1, 64;", "bar.sync 2, 64;", "bar.sync 0;", "membar.cta;", "membar.gl;", "membar.sys;"):
        assert s in ptx


@kaiodsl.kernel
def _inline_asm(a: Ptr[u32], b: Ptr[u32], o: Ptr[u32]):
    i = kaiodsl.thread_idx.x
    hi = kaiodsl.asm("mul.hi.u32 {out}, {0}, {1};", u32, a[i], b[i])
    lo, hi2 = kaiodsl.asm("mul.lo.u32 {out0}, {0}, {1};\nmul.hi.u32 {out1}, {0}, {1};", (u32, u32), a[i], b[i])
    o[3 * i] = hi
    o[3 * i + 1] = lo
    o[3 * i + 2] = hi2


def test_inline_ptx(backend, rng):
    a = rng.integers(0, 2**32, W, dtype=np.uint64).astype(np.uint32)
    b = rng.integers(0, 2**32, W, dtype=np.uint64).astype(np.uint32)
    o = poison(3 * W, np.uint32)
    _inline_asm[1, W](a, b, o)
    p = a.astype(np.uint64) * b.astype(np.uint64)
    np.testing.assert_array_equal(o[0::3], (p >> 32).astype(np.uint32))
    np.testing.assert_array_equal(o[1::3], (p & 0xFFFFFFFF).astype(np.uint32))
    np.testing.assert_array_equal(o[2::3], (p >> 32).astype(np.uint32))
