"""Cluster launches (cuLaunchKernelEx) on both backends: cluster special registers and distributed
shared memory across clusters of 2 and 4, TMA multicast, remote mbarrier arrives, and programmatic
dependent launch (the simulator runs the two grids one after another: a valid PDL order)."""

import numpy as np
import pytest

import kaiodsl as K
from kaiodsl import Ptr, i32, u16, u32, u64


@K.kernel(block_size=64)
def dsmem_exchange(out: Ptr[u32]):
    s = K.shared_array(u32, (64,), align=16)
    t = K.thread_idx.x
    rank = K.cluster_ctarank()
    s[t] = rank * 1000 + K.unsigned(t)
    K.cluster_sync()
    peer = K.mapa(s.ptr(t), rank ^ 1)
    g = K.block_idx.x * 64 + t
    out[g] = K.load_cluster(peer, u32) + (K.cluster_size() << 16) + (K.cluster_idx("x") << 24)
    K.cluster_sync()  # the peer's shared memory must outlive our reads


def test_dsmem_exchange(hopper):
    out = np.zeros(4 * 64, np.uint32)
    dsmem_exchange[4, 64](out, cluster=(2, 1, 1))
    blk = np.repeat(np.arange(4), 64)
    t = np.tile(np.arange(64), 4)
    np.testing.assert_array_equal(out, ((blk % 2) ^ 1) * 1000 + t + (2 << 16) + ((blk // 2) << 24))


@K.kernel(block_size=128)
def tma_multicast(tm: K.TensorMap, out: Ptr[u32]):
    s = K.shared_array(u32, (1024,), align=1024)
    bar = K.shared_array(u64, (1,), align=8)
    t = K.thread_idx.x
    rank = K.cluster_ctarank()
    if t == 0:
        K.mbarrier_init(bar, 1)
        K.fence_mbarrier_init()
        K.mbarrier_arrive_expect_tx(bar, 4096)
    K.cluster_sync()  # both barriers are initialised before rank 0 multicasts into them
    if t == 0 and rank == 0:
        K.tma_load(s, tm, (K.cluster_idx("x") * 32, 0), bar, multicast=u16(3))
    K.mbarrier_wait(bar, 0)
    for i in range(t, 1024, 128):
        out[K.block_idx.x * 1024 + i] = s[i]
    K.cluster_sync()


def test_tma_multicast_cluster_of_two(hopper, rng):
    a = rng.integers(0, 2**32, (64, 32), dtype=np.uint32)
    out = np.zeros(4 * 1024, np.uint32)
    tm = K.TensorMap(a, (32, 32), swizzle=128)
    tma_multicast[4, 128](tm, out, cluster=2)
    o = np.arange(4096)
    for blk in range(4):
        box = a[32 * (blk // 2):32 * (blk // 2) + 32].view(np.uint8).reshape(-1)
        smem = np.empty_like(box)
        smem[o ^ (((o >> 7) & 7) << 4)] = box
        np.testing.assert_array_equal(out[blk * 1024:(blk + 1) * 1024], smem.view(np.uint32))


@K.kernel(block_size=128)
def pdl_first(x: Ptr[i32], n: i32):
    i = K.block_idx.x * 128 + K.thread_idx.x
    if i < n:
        x[i] = x[i] * 3 + 1
    K.griddep_launch_dependents()


@K.kernel(block_size=128)
def pdl_second(x: Ptr[i32], y: Ptr[i32], n: i32):
    K.griddep_wait()  # the first grid's writes are visible after this
    i = K.block_idx.x * 128 + K.thread_idx.x
    if i < n:
        y[i] = x[i] - 7


def test_pdl_launch(hopper, rng):
    n = 1000
    host = rng.integers(-2**20, 2**20, n).astype(np.int32)
    x, y = K.to_device(host), K.to_device(np.full(n, -1, np.int32))
    pdl_first[8, 128](x, n)
    pdl_second[8, 128](x, y, n, pdl=True)
    np.testing.assert_array_equal(y.numpy(), host * 3 + 1 - 7)


@K.kernel(block_size=32)
def cluster_ring(out: Ptr[u32]):
    bar = K.shared_array(u64, (1,), align=8)
    t = K.thread_idx.x
    rank = K.cluster_ctarank()
    n = K.cluster_size()
    if t == 0:
        K.mbarrier_init(bar, 1)
        K.fence_mbarrier_init()
    K.cluster_sync()  # every barrier is initialised before anyone arrives remotely
    if t == 0:
        K.mbarrier_arrive_cluster(K.mapa(bar, (rank + 1) % n))  # complete the next CTA's phase 0
    K.mbarrier_wait(bar, 0)
    b = (K.block_idx.y * K.grid_dim.x + K.block_idx.x) * 8
    if t == 0:
        out[b] = rank
        out[b + 1] = n
        out[b + 2] = K.cluster_ctaid("x")
        out[b + 3] = K.cluster_ctaid("y")
        out[b + 4] = K.cluster_dim("y")
        out[b + 5] = K.cluster_idx("x")
        out[b + 6] = K.cluster_idx("y")
        out[b + 7] = K.cluster_count("x")
    K.cluster_sync()


@pytest.mark.parametrize("grid,cluster", [((4, 2), (2, 2)), ((8, 1), (4, 1)), ((2, 3), (1, 1))])
def test_cluster_registers_and_remote_arrive(hopper, grid, cluster):
    out = np.full(grid[0] * grid[1] * 8, 0xDEAD, np.uint32)
    cluster_ring[grid, 32](out, cluster=cluster)
    by, bx = np.meshgrid(np.arange(grid[1]), np.arange(grid[0]), indexing="ij")
    cx, cy = bx % cluster[0], by % cluster[1]
    want = np.stack([cx + cy * cluster[0], np.full_like(bx, cluster[0] * cluster[1]), cx, cy,
                     np.full_like(bx, cluster[1]), bx // cluster[0], by // cluster[1],
                     np.full_like(bx, grid[0] // cluster[0])], -1)
    np.testing.assert_array_equal(out.reshape(grid[1], grid[0], 8), want)


def test_cluster_wait_without_every_arrival_is_a_deadlock(sim90):
    out = np.zeros(64, np.uint32)
    with pytest.raises(K.SimError, match="barrier.cluster.wait never completes"):
        partial_cluster_barrier[2, 32](out, cluster=2)


@K.kernel(block_size=32)
def partial_cluster_barrier(out: Ptr[u32]):
    if K.cluster_ctarank() == 0:
        K.cluster_arrive()  # rank 1 never arrives: its threads exit
        K.cluster_wait()
    out[K.block_idx.x * 32 + K.thread_idx.x] = 1
