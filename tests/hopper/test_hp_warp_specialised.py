"""Producer/consumer kernels across warps on mbarriers, on both backends: a warp-specialised TMA /
bulk-copy ring (the producer's wait loop sits at lower PCs than the consumers' code, so the
simulator must park failed waits instead of spinning at the lowest PC), a genuine deadlock of the
same shape, a lone test_wait that fails and falls through, and flag handoffs (in one CTA and across
a cluster) where the waiting warp's code comes first."""

import numpy as np
import pytest

import kaiodsl as K
from kaiodsl import Const, Ptr, u32, u64

from hopkit import ready_barrier

ROWS, COLS = 8, 32  # one tile: 8 x 32 u32 = 1 KiB, one element per consumer thread
TILE = ROWS * COLS


@K.kernel(block_size=384)
def ws_ring(src: Ptr[u32], tm: K.TensorMap, out: Ptr[u32], sums: Ptr[u32], NT: Const, S: Const,
            LOAD: Const, ARRIVE: Const, BUG: Const):
    """Warpgroup 0 produces NT tiles into a ring of S stages (one elected thread issues the copies),
    warpgroups 1 and 2 consume them: out[tile] = 3 * tile + its index, sums = per-element sums."""
    ring = K.shared_array(u32, (S * TILE,), align=1024)
    full = K.shared_array(u64, (S,), align=8)
    empty = K.shared_array(u64, (S,), align=8)
    t = K.thread_idx.x
    if t == 0:
        for s in K.static_range(S):
            K.mbarrier_init(full.ptr(s), 1)
            K.mbarrier_init(empty.ptr(s), 256 if ARRIVE == "thread" else 8)  # consumer threads or warps
        K.fence_mbarrier_init()
    K.syncthreads()
    if t < 128:  # producer warpgroup
        K.setmaxnreg(40, False)
        if t < 32:
            if K.elect_sync():
                for it in range(NT):
                    s = it % S
                    # a stage's first use needs no release: parity 1 of phase 0 counts as completed
                    K.mbarrier_wait(empty.ptr(s), ((it // S) & 1) ^ 1)
                    K.mbarrier_arrive_expect_tx(full.ptr(s), TILE * 4)
                    if LOAD == "tma":
                        K.tma_load(ring.ptr(s * TILE), tm, (it * ROWS, 0), full.ptr(s))
                    else:
                        K.bulk_load(ring.ptr(s * TILE), src + K.i64(it) * TILE, TILE * 4, full.ptr(s))
    else:  # two consumer warpgroups, one element of each tile per thread
        K.setmaxnreg(232, True)
        c = t - 128
        acc = u32(0)
        for it in range(NT):
            s = it % S
            K.mbarrier_wait(full.ptr(s), (it // S) & 1)
            v = ring[s * TILE + c]
            out[K.i64(it) * TILE + c] = v * 3 + K.unsigned(it)
            acc = acc + v
            if BUG != "no_release":
                if ARRIVE == "thread":
                    K.mbarrier_arrive(empty.ptr(s))
                else:
                    K.syncwarp()  # the whole warp has read the stage before its lane 0 releases it
                    if c % 32 == 0:
                        K.mbarrier_arrive(empty.ptr(s))
        sums[c] = acc
    K.syncthreads()
    if t == 0:
        for s in K.static_range(S):
            K.mbarrier_inval(full.ptr(s))
            K.mbarrier_inval(empty.ptr(s))


def _run_ring(a, nt, stages, load, arrive, bug="none"):
    out = np.full(nt * TILE, 0xDEADBEEF, np.uint32)
    sums = np.full(256, 0xDEADBEEF, np.uint32)
    tm = K.TensorMap(a, (ROWS, COLS))
    ws_ring[1, 384](a.reshape(-1), tm, out, sums, NT=nt, S=stages, LOAD=load, ARRIVE=arrive, BUG=bug)
    return out, sums


@pytest.mark.parametrize("load,arrive,stages", [("tma", "thread", 3), ("bulk", "warp", 3), ("tma", "warp", 2),
                                                ("bulk", "thread", 4)])
def test_warp_specialised_ring(hopper, rng, load, arrive, stages):
    nt = 12  # many more tiles than stages: every stage is refilled after its consumers release it
    a = rng.integers(0, 2**32, (nt * ROWS, COLS), dtype=np.uint32)
    out, sums = _run_ring(a, nt, stages, load, arrive)
    tiles = a.reshape(nt, TILE).astype(np.uint64)
    want = (tiles * 3 + np.arange(nt)[:, None]) % 2**32
    np.testing.assert_array_equal(out, want.reshape(-1).astype(np.uint32))
    np.testing.assert_array_equal(sums, (tiles.sum(0) % 2**32).astype(np.uint32))


def test_ring_whose_consumers_never_release_is_a_deadlock(sim90, rng):
    a = rng.integers(0, 2**32, (12 * ROWS, COLS), dtype=np.uint32)
    # 3 stages of 1 KiB, then full[3] at 0xc00 and empty[3] at 0xc18: the producer waits on empty[0]
    msg = (r"deadlock: mbarrier at shared offset 0xc18 of block \(0, 0, 0\) never completes phase 0, which the "
           r"waits need: 256 of 256 arrivals and 0 transaction bytes still missing; waiting threads include "
           r"\[\(0, 0, 0\)\]")
    with pytest.raises(K.SimError, match=msg) as e:
        _run_ring(a, 12, 3, "tma", "thread", bug="no_release")
    assert "test_hp_warp_specialised.py" in str(e.value)


@K.kernel(block_size=64)
def lone_test_wait(out: Ptr[u32]):
    """test_wait does not block: before anyone arrives, phase 0 is not complete (and parity 1, the
    phase before it, counts as completed); after the arrival and a wait it is."""
    bar = ready_barrier()
    t = K.thread_idx.x
    out[3 * t] = K.u32(K.mbarrier_test_wait(bar, 0))
    out[3 * t + 1] = K.u32(K.mbarrier_test_wait(bar, 1))
    K.syncthreads()
    if t == 0:
        K.mbarrier_arrive(bar)
    K.mbarrier_wait(bar, 0)
    out[3 * t + 2] = K.u32(K.mbarrier_test_wait(bar, 0))


def test_failed_test_wait_falls_through(hopper):
    out = np.full(3 * 64, 7, np.uint32)
    lone_test_wait[1, 64](out)
    np.testing.assert_array_equal(out, np.tile(np.array([0, 1, 1], np.uint32), 64))


@K.kernel(block_size=64)
def handoff(src: Ptr[u32], buf: Ptr[u32], out: Ptr[u32], ROUNDS: Const):
    """Warp 0 (lower PCs) waits for warp 1 to fill ``buf`` each round; warp 1 waits for warp 0 to
    have read it: two mbarriers of 32 arrivals, one per lane."""
    bar = K.shared_array(u64, (2,), align=8)  # [0]: buf filled, [1]: buf read
    t = K.thread_idx.x
    lane = t % 32
    if t == 0:
        K.mbarrier_init(bar.ptr(0), 32)
        K.mbarrier_init(bar.ptr(1), 32)
        K.fence_mbarrier_init()
    K.syncthreads()
    if t < 32:
        for r in range(ROUNDS):
            K.mbarrier_wait(bar.ptr(0), r & 1)
            out[K.i64(r) * 32 + lane] = buf[lane] + K.unsigned(r)
            K.mbarrier_arrive(bar.ptr(1))
    else:
        for r in range(ROUNDS):
            K.mbarrier_wait(bar.ptr(1), (r & 1) ^ 1)
            buf[lane] = src[K.i64(r) * 32 + lane] * 5
            K.mbarrier_arrive(bar.ptr(0))


def test_cross_warp_handoff(hopper, rng):
    rounds = 5
    src = rng.integers(0, 2**32, rounds * 32, dtype=np.uint32)
    buf = rng.integers(0, 2**32, 32, dtype=np.uint32)
    out = np.full(rounds * 32, 0xDEADBEEF, np.uint32)
    handoff[1, 64](src, buf, out, ROUNDS=rounds)
    want = (src.astype(np.uint64) * 5 + np.repeat(np.arange(rounds), 32)) % 2**32
    np.testing.assert_array_equal(out, want.astype(np.uint32))


@K.kernel(block_size=32)
def cluster_handoff(src: Ptr[u32], out: Ptr[u32], ROUNDS: Const):
    """The handoff across a cluster of 2: CTA rank 0 (whose code comes first) waits on its own barrier
    until rank 1 has filled rank 1's shared array and arrived remotely; rank 0 reads it through
    distributed shared memory and arrives remotely on rank 1's barrier to free it."""
    s = K.shared_array(u32, (32,), align=16)
    bar = K.shared_array(u64, (1,), align=8)  # rank 0: s filled; rank 1: s read
    t = K.thread_idx.x
    rank = K.cluster_ctarank()
    if t == 0:
        K.mbarrier_init(bar, 32)
        K.fence_mbarrier_init()
    K.cluster_sync()  # both barriers are initialised before anyone arrives remotely
    base = K.i64(K.block_idx.x // 2) * 32 * ROUNDS
    peer = K.mapa(bar, rank ^ 1)
    if rank == 0:
        for r in range(ROUNDS):
            K.mbarrier_wait(bar, r & 1)
            out[base + K.i64(r) * 32 + t] = K.load_cluster(K.mapa(s.ptr(t), 1), u32) + K.unsigned(r)
            K.mbarrier_arrive_cluster(peer)
    else:
        for r in range(ROUNDS):
            K.mbarrier_wait(bar, (r & 1) ^ 1)
            s[t] = src[base + K.i64(r) * 32 + t] * 7
            K.mbarrier_arrive_cluster(peer)
    K.cluster_sync()  # rank 1's shared memory outlives rank 0's reads


def test_cluster_remote_arrive_handoff(hopper, rng):
    rounds = 3
    src = rng.integers(0, 2**32, 2 * rounds * 32, dtype=np.uint32)
    out = np.full(src.size, 0xDEADBEEF, np.uint32)
    cluster_handoff[4, 32](src, out, ROUNDS=rounds, cluster=2)
    want = (src.astype(np.uint64) * 7 + np.tile(np.repeat(np.arange(rounds), 32), 2)) % 2**32
    np.testing.assert_array_equal(out, want.astype(np.uint32))
