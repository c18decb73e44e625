"""Cluster launches (cuLaunchKernelEx): distributed shared memory across a cluster of 2, TMA multicast,
and programmatic dependent launch. The simulator runs PDL launches (one after another) and refuses
clusters with a SimError naming the launch (it does not run clusters yet); the GPU runs all of them."""

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
    if hopper.name == "sim":
        with pytest.raises(K.SimError, match=r"does not run thread block clusters yet \(cluster=\(2, 1, 1\)\)"):
            dsmem_exchange[4, 64](out, cluster=(2, 1, 1))
        return
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
    if hopper.name == "sim":
        with pytest.raises(K.SimError, match="does not run thread block clusters yet"):
            tma_multicast[4, 128](tm, out, cluster=2)
        return
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
