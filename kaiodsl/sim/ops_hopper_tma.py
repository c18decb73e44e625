"""TMA tensor copies (PTX ISA 9.7.9.25.5.2 cp.async.bulk.tensor) through a tensor map.

The map is the 128 bytes kaiodsl.TensorMap passes (runtime/tensormap.py's simulator layout), read
from the address the instruction names: a by-value parameter (cvta.param) or global memory. A load
gathers the box when issued (traversal strides, out-of-bounds elements filled with zero or NaN),
lays it out in shared memory as the box, innermost dimension fastest, with the map's swizzle
applied to the shared address exactly as wgmma reads it (ops_wgmma.smem_matrix), and lands on
its mbarrier like a bulk copy: the whole box's bytes count as transaction bytes. A store reads the
box from shared memory (through the async proxy: a generic write needs fence.proxy.async first)
and writes the elements inside the tensor when issued.
"""

from __future__ import annotations

import numpy as np

from ..errors import ArgumentError
from .memory import PARAM_WIN, WIN_SIZE
from .ops_hopper import _async_read, _bar_keys, _event
from .ops_mem import address, read, write
from .registry import at, threads

_NAN = {2: 0x7FFF, 4: 0x7FFFFFFF, 8: 0x7FFF_FFFF_FFFF_FFFF}  # canonical quiet NaN per element width
_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def map_spec(m, addr: int, t: int):
    """The TensorMapSpec at generic address ``addr`` (a parameter or global memory), checked."""
    from ..runtime.tensormap import TensorMapSpec

    if addr % 64:
        m.fail("cp.async.bulk.tensor: the tensor map must be 64-byte aligned", t, addr)
    if PARAM_WIN <= addr < PARAM_WIN + WIN_SIZE:
        off = addr - PARAM_WIN
        if off + 128 > m.param_bytes.size:
            m.fail("cp.async.bulk.tensor: the tensor map address is outside the kernel parameters", t, addr, "param")
        raw = m.param_bytes[off:off + 128]
    else:
        raw = read(m, "global", np.uint64(addr) + np.arange(0, 128, 8, dtype=np.uint64), 8,
                   np.full(16, t)).astype(np.uint64).view(np.uint8)
    spec = TensorMapSpec.from_sim_bytes(raw)
    if spec is None:
        m.fail("cp.async.bulk.tensor: these 128 bytes are not a tensor map (pass a kaiodsl.TensorMap)", t, addr)
    try:
        spec.validate()
    except ArgumentError as e:
        m.fail(f"cp.async.bulk.tensor: the tensor map breaks the driver's rules: {e}", t, addr)
    if spec.interleave:
        m.fail("cp.async.bulk.tensor: interleaved tensor maps are not simulated", t, addr)
    return spec


def box_elements(spec, coords):
    """(global byte offsets, inside-the-tensor mask) of the box's elements in shared-memory order."""
    axes = []
    for i in reversed(range(spec.rank)):  # outermost first: C order, innermost fastest
        n = -(-spec.box[i] // spec.element_strides[i])
        axes.append(int(coords[i]) + np.arange(n, dtype=np.int64) * spec.element_strides[i])
    grids = np.meshgrid(*axes, indexing="ij")
    strides = (spec.elem_bytes,) + tuple(spec.strides)
    off = np.zeros(grids[0].shape, np.int64)
    inside = np.ones(grids[0].shape, bool)
    for g, i in zip(grids, reversed(range(spec.rank))):
        inside &= (g >= 0) & (g < spec.dims[i])
        off += g * strides[i]
    return off.reshape(-1), inside.reshape(-1)


def smem_offsets(spec, dst: int, n: int):
    """Shared byte offsets of the box's n elements at ``dst``: dense, then the map's swizzle (16-byte
    chunks XOR the 128-byte row within the atom: PTX ISA 9.7.15.5.1, the same as wgmma's)."""
    eb = spec.elem_bytes
    o = dst + np.arange(n, dtype=np.int64) * eb
    if spec.swizzle:
        o = o ^ (((o >> 7) & (spec.swizzle // 16 - 1)) << 4)
    return (o[:, None] + np.arange(eb)).reshape(-1)


def _cluster_block(m, t: int, rank: int):
    """The batch block of CTA ``rank`` in thread t's cluster (a launch without clusters: rank 0 only)."""
    from .ops_cluster import setup

    if not hasattr(m, "cluster_peer"):
        setup(m, getattr(m, "cluster", None) or (1, 1, 1))
    return m.cluster_peer(t, rank)


def _check_box(m, spec, rank, dst, t, what, coords=()):
    if rank != spec.rank:
        m.fail(f"{what}: a {rank}-D copy through a rank-{spec.rank} tensor map (use {spec.rank} coordinates)", t)
    if any(int(c) < 0 for c in coords):
        # tile-mode boxes may run past a tensor's end (zero fill / clipped stores), not start before it:
        # on the H200 a negative coordinate ends the kernel with an illegal instruction
        m.fail(f"{what}: tensor coordinates {[int(c) for c in coords]} (innermost first) include a negative one; "
               f"a box must start inside the tensor or past its end (it may run past the end: those elements "
               f"are filled on loads and skipped on stores)", t)
    if coords and (int(coords[0]) * spec.elem_bytes) % 16:
        # the H200 ends the kernel with an illegal instruction for a box whose row starts off a 16-byte
        # boundary (f32 x = 10: 40 bytes; x = 4 and 8 run; scripts/tma_probe.py, 2026-12-02)
        m.fail(f"{what}: the innermost coordinate {int(coords[0])} starts the box {int(coords[0]) * spec.elem_bytes} "
               f"bytes into a row; it must be a multiple of 16 bytes ({max(1, 16 // spec.elem_bytes)} elements "
               f"of this map)", t)
    align = 128 if spec.swizzle else 16
    if dst % align:
        m.fail(f"{what}: the shared address must be {align}-byte aligned"
               + (f" (the map swizzles {spec.swizzle} bytes)" if spec.swizzle else ""), t, dst, "shared")


def tensor_copy(m, ins, mods):
    ops = ins.operands
    T = m.T
    rank = int(next(x for x in mods if x.endswith("d") and x[:-1].isdigit())[:-1])
    load = mods[4].startswith("shared")  # cp.async.bulk.tensor.Nd.<dst>.<src>
    taddr = ops[1] if load else ops[0]
    _, base, coord_ops = taddr
    map_a = address(m, ("addr", base, 0))
    coords = [m.getter(c, "s32") for c in coord_ops]
    if load:
        dst_a, bar_a = address(m, ops[0]), address(m, ops[2])
        mask_get = m.getter(ops[3], "u16") if "multicast" in ins.opcode else None

        def f(mask):
            ti = threads(mask, T)
            dst, maps = at(dst_a(), ti), at(map_a(), ti)
            cs = [at(c(), ti).astype(np.int32) for c in coords]
            keys, ba = _bar_keys(m, bar_a, ti, "cp.async.bulk.tensor")  # flat keys of the issuer's barriers
            masks = at(mask_get(), ti) if mask_get is not None else None
            for j, t in enumerate(ti):
                t = int(t)
                spec = map_spec(m, int(maps[j]), t)
                _check_box(m, spec, rank, int(dst[j]), t, "cp.async.bulk.tensor", [c[j] for c in cs])
                off, inside = box_elements(spec, [c[j] for c in cs])
                eb = spec.elem_bytes
                fill = _NAN.get(eb, 0) if spec.oob_fill == "nan" else 0
                vals = np.full(off.size, fill, _UINT[eb])
                if inside.any():
                    sel = np.flatnonzero(inside)
                    vals[sel] = read(m, "global", np.uint64(spec.address) + off[sel].astype(np.uint64), eb,
                                     np.full(sel.size, t))
                lin = smem_offsets(spec, int(dst[j]), off.size)
                if int(lin.max()) >= m.shared_size:
                    m.fail(f"cp.async.bulk.tensor: the {off.size * eb}-byte box does not fit in shared memory "
                           f"at this address", t, int(dst[j]), "shared")
                data = vals.view(np.uint8)
                ranks = [r for r in range(16) if int(masks[j]) >> r & 1] if masks is not None else [None]
                for r in ranks:
                    blk = int(keys[j]) // m.shared.pad if r is None else _cluster_block(m, t, r)
                    key = blk * m.shared.pad + int(ba[j])
                    if r is not None and key not in m.mbarriers:
                        m.fail(f"cp.async.bulk.tensor multicast: CTA rank {r} has no initialised mbarrier at "
                               f"shared offset {int(ba[j]):#x}", t)
                    m.bulk_pending.append((key, blk * m.shared.pad + lin, data.copy(), t, ins))
            _event(m)  # a waiter parked on this barrier must poll again to land the copy
        return f
    src_a = address(m, ops[1])

    def store(mask):
        ti = threads(mask, T)
        src, maps = at(src_a(), ti), at(map_a(), ti)
        cs = [at(c(), ti).astype(np.int32) for c in coords]
        for j, t in enumerate(ti):
            t = int(t)
            spec = map_spec(m, int(maps[j]), t)
            _check_box(m, spec, rank, int(src[j]), t, "cp.async.bulk.tensor store", [c[j] for c in cs])
            off, inside = box_elements(spec, [c[j] for c in cs])
            eb = spec.elem_bytes
            lin = smem_offsets(spec, int(src[j]), off.size)
            if int(lin.max()) >= m.shared_size:
                m.fail("cp.async.bulk.tensor store: the box reaches past shared memory", t, int(src[j]), "shared")
            flat = int(m.blk[t]) * m.shared.pad + lin
            _async_read(m, flat, "cp.async.bulk.tensor store")
            vals = m.shared.b8[flat].copy().view(_UINT[eb])
            sel = np.flatnonzero(inside)
            if sel.size:
                write(m, "global", np.uint64(spec.address) + off[sel].astype(np.uint64), eb, vals[sel],
                      np.full(sel.size, t))
    return store
