"""TMA: tensor copies through a by-value ``kaiodsl.TensorMap`` parameter (PTX ISA 9.7.9.25.5.2).

Coordinates are given in numpy order (outermost first, like the TensorMap's shape and box) and
emitted innermost first, as the instruction takes them. A load lands in shared memory laid out as
the map's box (swizzled by the map's swizzle) and completes its bytes on an mbarrier; a store is
in this thread's bulk group (bulk_commit / bulk_wait). docs/hopper.md has an example.
"""

from __future__ import annotations

from ..frontend.builder import Builder
from ..frontend.describe import describe
from ..frontend.values import builtin
from ..ir.node import Node
from ..types import ScalarType, TensorMapType, i32, u16
from .hopper import _smem


def _tmap(b: Builder, tm, what: str) -> Node:
    if isinstance(tm, Node) and isinstance(tm.type, TensorMapType):
        return tm
    b.error(f"{what}(): the tensor map must be a kaiodsl.TensorMap kernel parameter, got {describe(tm)}")


def _coords(b: Builder, coords, what: str) -> Node:
    cs = list(coords) if isinstance(coords, (tuple, list)) else [coords]
    if not 1 <= len(cs) <= 5:
        b.error(f"{what}(): coordinates must be 1 to 5 values (one per tensor dimension), got {len(cs)}")
    out = []
    for i, c in enumerate(reversed(cs)):
        if isinstance(c, Node) and isinstance(c.type, ScalarType) and c.type.is_int and c.type.bits == 32:
            out.append(c if c.type == i32 else b.bitcast(c, i32))
        else:
            out.append(b.coerce(c, i32, f"{what}() coordinate {len(cs) - 1 - i}"))
    return b.make_tuple(out)


@builtin
def tma_load(b: Builder, dst, tmap, coords, bar, multicast=None):
    """Copy the box of ``tmap`` at ``coords`` into shared ``dst`` (128-byte aligned when swizzled);
    its bytes (the whole box, out-of-bounds fill included) complete on mbarrier ``bar``.

    ``multicast``: a u16 mask of cluster CTA ranks; each gets the box at the same shared offset and
    the bytes on its own barrier at ``bar``'s offset."""
    c = _coords(b, coords, "tma_load")
    ops = (_smem(b, dst, "tma_load"), _tmap(b, tmap, "tma_load"), c, _smem(b, bar, "tma_load"))
    name = f"cp.async.bulk.tensor.{len(c.type)}d.load"
    if multicast is not None:
        mask = multicast if isinstance(multicast, Node) and multicast.type == u16 else \
            b.coerce(multicast, u16, "tma_load() multicast mask")
        ops, name = ops + (mask,), name + ".multicast"
    b.emit("inst", operands=ops, attrs={"form": name})


@builtin
def tma_store(b: Builder, tmap, coords, src):
    """Copy shared ``src`` (laid out as the box) to the box of ``tmap`` at ``coords``; elements outside
    the tensor are not written. In this thread's bulk group: bulk_commit() then bulk_wait()."""
    c = _coords(b, coords, "tma_store")
    b.emit("inst", operands=(_tmap(b, tmap, "tma_store"), c, _smem(b, src, "tma_store")),
           attrs={"form": f"cp.async.bulk.tensor.{len(c.type)}d.store", "writes_global": True})


@builtin
def tma_prefetch(b: Builder, tmap):
    """Bring the tensor map itself into the cache before its first copy (prefetch.tensormap)."""
    b.emit("inst", operands=(_tmap(b, tmap, "tma_prefetch"),), attrs={"form": "prefetch.tensormap"})
