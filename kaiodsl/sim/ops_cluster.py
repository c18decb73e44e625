"""Thread block clusters (PTX ISA 9.7.13.x barrier.cluster, 9.7.9.x mapa, 10.x cluster special registers).

The CTAs of one cluster are always simulated in the same batch (api.execute orders blocks by cluster),
so they run in lockstep and share the batch's shared memory: distributed shared memory is the other
CTA's segment. A shared::cluster address names its CTA in the bits above 24 (rank + 1; 0 is the
issuing CTA itself, so a shared::cta address is also a valid shared::cluster one) and the shared
offset below: ``mapa`` builds it, ld/st.shared::cluster, remote mbarrier arrives and TMA multicast
decode it. ``barrier.cluster.wait`` releases a thread once every thread of its cluster has made as
many ``barrier.cluster.arrive`` as it has.
"""

from __future__ import annotations

import numpy as np

from .ops_mem import address
from .registry import RULES, at, rule, threads

RANK_SHIFT = 24  # shared memory per CTA is far below 16 MiB
CLUSTER_WAIT = 16  # the executor's wait id for barrier.cluster.wait (CTA barriers are 0..15)


def order_blocks(grid, cluster) -> list:
    """Linear block ids, cluster by cluster, rank order inside each (rank = x + y cx + z cx cy)."""
    gx, gy, gz = grid
    cx, cy, cz = cluster
    ids = np.arange(gx * gy * gz)
    x, y, z = ids % gx, (ids // gx) % gy, ids // (gx * gy)
    cl = (x // cx) + (y // cy) * (gx // cx) + (z // cz) * (gx // cx) * (gy // cy)
    rank = (x % cx) + (y % cy) * cx + (z % cz) * cx * cy
    return [int(i) for i in ids[np.lexsort((rank, cl))]]


def setup(m, cluster) -> None:
    """Cluster coordinates of the machine's blocks (a batch holds whole clusters)."""
    m.cluster = tuple(cluster)
    cx, cy, cz = m.cluster
    cta = [np.asarray(c) for c in _block_ctaids(m)]
    m.cluster_ctaid = (cta[0] % cx, cta[1] % cy, cta[2] % cz)
    m.clusterid = (cta[0] // cx, cta[1] // cy, cta[2] // cz)
    m.cluster_rank = m.cluster_ctaid[0] + m.cluster_ctaid[1] * cx + m.cluster_ctaid[2] * cx * cy
    size = cx * cy * cz
    m.cluster_first = np.arange(m.nb) - m.cluster_rank  # batch block of rank 0 of each block's cluster
    m.cluster_size = size
    m.carr = np.zeros(m.T, np.int64)
    m.cwant = np.zeros(m.T, np.int64)

    def peer(t, rank):
        if not 0 <= rank < size:
            m.fail(f"CTA rank {rank} is not in this cluster of {size} CTAs", int(t))
        return int(m.cluster_first[m.blk[t]] + rank)
    m.cluster_peer = peer


def _block_ctaids(m):
    gx, gy, _ = m.grid
    b = np.asarray(m.block_ids)
    return b % gx, (b // gx) % gy, b // (gx * gy)


def special(m, base: str, k: int):
    """Cluster special registers (per thread), or None for a name that is not one."""
    c = getattr(m, "cluster", None) or (1, 1, 1)
    if not hasattr(m, "cluster_rank"):
        setup(m, c)
    per_blk = {"cluster_ctarank": lambda: m.cluster_rank, "cluster_ctaid": lambda: m.cluster_ctaid[k],
               "clusterid": lambda: m.clusterid[k]}
    if base in per_blk:
        return np.asarray(per_blk[base]())[m.blk].astype(np.uint32)
    if base == "cluster_nctarank":
        return np.uint32(c[0] * c[1] * c[2])
    if base == "cluster_nctaid":
        return np.uint32(c[k])
    if base == "nclusterid":
        return np.uint32(m.grid[k] // c[k])
    if base == "is_explicit_cluster":
        return np.bool_(c != (1, 1, 1))
    return None


def split(m, ti, a):
    """(batch block, shared offset) of shared::cluster addresses ``a`` of threads ``ti``."""
    a = np.asarray(a).astype(np.int64)
    rank = a >> RANK_SHIFT
    off = a & ((1 << RANK_SHIFT) - 1)
    blk = m.blk[ti].astype(np.int64)
    remote = rank > 0
    if remote.any():
        if not hasattr(m, "cluster_rank"):
            setup(m, getattr(m, "cluster", None) or (1, 1, 1))
        r = rank - 1
        bad = remote & (r >= m.cluster_size)
        if bad.any():
            i = int(np.argmax(bad))
            m.fail(f"shared::cluster address names CTA rank {int(r[i])}, outside this cluster of "
                   f"{m.cluster_size} CTAs", int(ti[i]), int(a[i]), "shared")
        blk = np.where(remote, m.cluster_first[blk] + r, blk)
    return blk, off


@rule("mapa")
def _mapa(m, ins, mods):
    put = m.setter(ins.operands[0], "u32")
    src, rank = m.getter(ins.operands[1], "u32"), m.getter(ins.operands[2], "u32")
    T = m.T

    def f(mask):
        ti = threads(mask, T)
        if not hasattr(m, "cluster_rank"):
            setup(m, getattr(m, "cluster", None) or (1, 1, 1))
        a, r = at(src(), ti).astype(np.int64), at(rank(), ti).astype(np.int64)
        bad = r >= m.cluster_size
        if bad.any():
            i = int(np.argmax(bad))
            m.fail(f"mapa: CTA rank {int(r[i])} is not in this cluster of {m.cluster_size} CTAs", int(ti[i]))
        out = np.zeros(T, np.uint32)
        out[ti] = (((r + 1) << RANK_SHIFT) | (a & ((1 << RANK_SHIFT) - 1))).astype(np.uint32)
        put(out, mask)
    return f


_BASE_LD, _BASE_ST = RULES["ld"], RULES["st"]
_TYPES = {"u32": np.uint32, "s32": np.int32, "f32": np.float32, "b32": np.uint32,
          "u64": np.uint64, "s64": np.int64, "f64": np.float64, "b64": np.uint64}


def _flat(m, ti, addr_get, size, what):
    blk, off = split(m, ti, at(addr_get(), ti))
    if (off % size).any() or (off + size > m.shared_size).any():
        i = int(np.argmax((off % size != 0) | (off + size > m.shared_size)))
        m.fail(f"{what}: misaligned or out-of-bounds shared::cluster access of {size} bytes", int(ti[i]),
               int(off[i]), "shared")
    return (blk * m.shared.pad + off)[:, None] + np.arange(size)


@rule("ld")
def _ld(m, ins, mods):
    if "shared::cluster" not in mods:
        return _BASE_LD(m, ins, mods)
    typ = mods[-1]
    dt = _TYPES[typ]
    put, addr = m.setter(ins.operands[0], typ), address(m, ins.operands[1])
    T = m.T

    def f(mask):
        ti = threads(mask, T)
        flat = _flat(m, ti, addr, np.dtype(dt).itemsize, ins.opcode)
        if m.shadow is not None:
            m.shadow.read(flat[:, 0], flat.shape[1], ti)
        out = np.zeros(T, dt)
        out[ti] = m.shared.b8[flat].copy().view(dt).reshape(-1)
        put(out, mask)
    return f


@rule("st")
def _st(m, ins, mods):
    if "shared::cluster" not in mods:
        return _BASE_ST(m, ins, mods)
    typ = mods[-1]
    dt = _TYPES[typ]
    addr, val = address(m, ins.operands[0]), m.getter(ins.operands[1], typ)
    T = m.T

    def f(mask):
        ti = threads(mask, T)
        flat = _flat(m, ti, addr, np.dtype(dt).itemsize, ins.opcode)
        data = np.ascontiguousarray(at(val(), ti).astype(dt)).view(np.uint8).reshape(flat.shape)
        if m.shadow is not None:
            m.shadow.write(flat[:, 0], flat.shape[1], ti, data=data)
        m.shared.b8[flat] = data
    return f


def barrier(m, is_wait: bool, arrivers, waiting, wait_id, relaxed: bool = False) -> None:
    """barrier.cluster.arrive / .wait for the threads ``arrivers`` (the executor's BAR entry); an
    arrive releases (unless .relaxed) and a wait acquires the shared accesses of the phase."""
    if not hasattr(m, "cluster_rank"):
        setup(m, getattr(m, "cluster", None) or (1, 1, 1))
    ti = np.flatnonzero(arrivers)
    if not is_wait:
        m.carr[ti] += 1
        if m.shadow is not None and ti.size:
            m.shadow.cluster_arrive(ti, relaxed)
    else:
        never = m.carr[ti] == 0
        if never.any():
            m.fail("barrier.cluster.wait with no barrier.cluster.arrive before it in this thread",
                   int(ti[np.argmax(never)]))
        waiting[ti] = True
        wait_id[ti] = CLUSTER_WAIT
        m.cwant[ti] = m.carr[ti]
    # a cluster's phase n is complete when each of its threads has arrived n times
    cl = (m.cluster_first[m.blk]).astype(np.int64)
    arr = np.where(m.exists, m.carr, np.iinfo(np.int64).max)
    done = np.full(m.nb, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(done, cl, arr)
    rel = waiting & (wait_id == CLUSTER_WAIT) & (done[cl] >= m.cwant)
    if rel.any():
        waiting[rel] = False
        if m.shadow is not None:
            m.shadow.cluster_release(np.flatnonzero(rel))
