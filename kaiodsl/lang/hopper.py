"""Hopper (sm_90) builtins: mbarriers, proxy fences, bulk copies, warp specialisation, clusters, PDL.

Every builtin emits a form of ptx_templates/instructions.txt, so the arch gate (``>=sm_90`` or
``sm_90a`` only), the lowest .version and the node's effects come from the table. docs/hopper.md
shows them at work; wgmma lives in lang/wgmma.py.
"""

from __future__ import annotations

from ..arch import at_least
from ..frontend.builder import Builder
from ..frontend.describe import describe
from ..frontend.values import SharedArray, builtin
from ..ir.node import Node
from ..types import PtrType, ScalarType, TupleType, bool_, u32, u64


def _smem(b: Builder, p, what: str, cluster: bool = False) -> Node:
    """A shared address: a shared pointer/array, or (``cluster``) a u32 from ``mapa``."""
    if isinstance(p, SharedArray):
        p = p.base
    if isinstance(p, Node) and isinstance(p.type, PtrType) and p.type.space == "shared":
        return p
    if cluster and isinstance(p, Node) and p.type == u32:
        return p
    allowed = "a shared pointer or array" + (", or a u32 address from mapa()" if cluster else "")
    b.error(f"{what}(): the address must be {allowed}, got {describe(p)}"[:200])


def _gmem(b: Builder, p, what: str) -> Node:
    if isinstance(p, Node) and ((isinstance(p.type, PtrType) and p.type.space == "global") or p.type == u64):
        return p
    b.error(f"{what}(): the address must be a global pointer, got {describe(p)}"[:200])


def _u32(b: Builder, v, what: str) -> Node:
    if isinstance(v, Node):
        if not (isinstance(v.type, ScalarType) and v.type.is_int and v.type.bits == 32):
            b.error(f"{what} must be a 32-bit integer, got {v.type}")
        return v if v.type == u32 else b.bitcast(v, u32)
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32:
        return b.const(u32, v)
    b.error(f"{what} must be a 32-bit unsigned integer, got {describe(v)}")


# -- mbarrier (PTX ISA 9.7.13.15) ---------------------------------------------------------------------
@builtin
def mbarrier_init(b: Builder, bar, count):
    """Initialise the 8-byte mbarrier at ``bar`` (a shared u64) for ``count`` arrivals per phase, phase 0."""
    if isinstance(count, int) and not 1 <= count < 2**20:
        b.error(f"mbarrier_init(): count must be 1..2^20-1 (PTX ISA mbarrier), got {count}")
    b.emit("inst", operands=(_smem(b, bar, "mbarrier_init"), _u32(b, count, "mbarrier_init() count")),
           attrs={"form": "mbarrier.init"})


@builtin
def mbarrier_inval(b: Builder, bar):
    """Invalidate an mbarrier so its memory can be reused (mbarrier.inval)."""
    b.emit("inst", operands=(_smem(b, bar, "mbarrier_inval"),), attrs={"form": "mbarrier.inval"})


@builtin
def fence_mbarrier_init(b: Builder):
    """Make mbarrier_init visible to the other CTAs of the cluster and to the async proxy (TMA)."""
    b.emit("inst", attrs={"form": "fence.mbarrier_init"})


@builtin
def mbarrier_arrive(b: Builder, bar, count=None):
    """Arrive (``count`` times, default once) on the barrier; returns the phase state (u64)."""
    p = _smem(b, bar, "mbarrier_arrive")
    if count is None:
        return b.emit("inst", u64, (p,), {"form": "mbarrier.arrive"})
    return b.emit("inst", u64, (p, _u32(b, count, "mbarrier_arrive() count")), {"form": "mbarrier.arrive.count"})


@builtin
def mbarrier_arrive_expect_tx(b: Builder, bar, tx_bytes):
    """Arrive once and expect ``tx_bytes`` more bytes of async copies on this phase (sm_90)."""
    return b.emit("inst", u64, (_smem(b, bar, "mbarrier_arrive_expect_tx"),
                                _u32(b, tx_bytes, "mbarrier_arrive_expect_tx() tx_bytes")),
                  {"form": "mbarrier.arrive.expect_tx"})


@builtin
def mbarrier_expect_tx(b: Builder, bar, tx_bytes):
    """Expect ``tx_bytes`` more bytes on the current phase without arriving (sm_90)."""
    b.emit("inst", operands=(_smem(b, bar, "mbarrier_expect_tx"), _u32(b, tx_bytes, "mbarrier_expect_tx() tx_bytes")),
           attrs={"form": "mbarrier.expect_tx"})


@builtin
def mbarrier_arrive_cluster(b: Builder, bar):
    """Arrive on an mbarrier of another CTA of the cluster: ``bar`` is a mapa() address (release.cluster)."""
    b.emit("inst", operands=(_smem(b, bar, "mbarrier_arrive_cluster", cluster=True),),
           attrs={"form": "mbarrier.arrive.remote"})


def _parity(b: Builder, parity) -> Node:
    if isinstance(parity, bool) or (isinstance(parity, int) and parity in (0, 1)):
        return b.const(u32, int(parity))
    return _u32(b, parity, "mbarrier wait parity")


@builtin
def mbarrier_test_wait(b: Builder, bar, parity):
    """True when the phase with ``parity`` (0 or 1) has completed; does not block (sm_80)."""
    return b.emit("inst", bool_, (_smem(b, bar, "mbarrier_test_wait"), _parity(b, parity)),
                  {"form": "mbarrier.test_wait.parity"})


@builtin
def mbarrier_try_wait(b: Builder, bar, parity):
    """Like test_wait, but may block for a while in hardware before answering (sm_90)."""
    return b.emit("inst", bool_, (_smem(b, bar, "mbarrier_try_wait"), _parity(b, parity)),
                  {"form": "mbarrier.try_wait.parity"})


@builtin
def mbarrier_wait(b: Builder, bar, parity):
    """Block until the phase with ``parity`` completes: a try_wait loop (test_wait before sm_90)."""
    p, par = _smem(b, bar, "mbarrier_wait"), _parity(b, parity)
    name = "mbarrier.try_wait.parity" if at_least(b.arch, 90) else "mbarrier.test_wait.parity"
    loop, done = b.new_block("mbwait"), b.new_block("mbdone")
    b.br(loop)
    b.block = loop
    ok = b.emit("inst", bool_, (p, par), {"form": name})
    b.cbr(ok, done, loop)
    b.block = done


@builtin
def fence_proxy_async(b: Builder, space: str = "shared"):
    """Order this thread's generic-proxy writes before later async-proxy (TMA, wgmma) accesses.

    space 'shared' (fence.proxy.async.shared::cta), 'global', or 'all' (fence.proxy.async)."""
    sp = {"shared": ".shared::cta", "global": ".global", "all": ""}.get(space)
    if sp is None:
        b.error(f"fence_proxy_async(): space must be 'shared', 'global' or 'all', got {describe(space)}")
    b.emit("inst", attrs={"form": f"fence.proxy.async{sp}"})


# -- bulk copies (PTX ISA 9.7.9.25.4-5) ---------------------------------------------------------------
def _nbytes(b: Builder, n, what: str) -> Node:
    if isinstance(n, int) and (n <= 0 or n % 16):
        b.error(f"{what}(): size must be a positive multiple of 16 bytes, got {n}")
    return _u32(b, n, f"{what}() size")


@builtin
def bulk_load(b: Builder, dst, src, size, bar):
    """Copy ``size`` bytes (a multiple of 16, both addresses 16-aligned) global -> shared; the bytes
    complete on mbarrier ``bar`` (expect them with mbarrier_arrive_expect_tx)."""
    b.emit("inst", operands=(_smem(b, dst, "bulk_load"), _gmem(b, src, "bulk_load"), _nbytes(b, size, "bulk_load"),
                             _smem(b, bar, "bulk_load")), attrs={"form": "cp.async.bulk.load"})


@builtin
def bulk_store(b: Builder, dst, src, size):
    """Copy ``size`` bytes shared -> global in this thread's bulk group (complete with bulk_wait)."""
    b.emit("inst", operands=(_gmem(b, dst, "bulk_store"), _smem(b, src, "bulk_store"), _nbytes(b, size, "bulk_store")),
           attrs={"form": "cp.async.bulk.store", "writes_global": True})


_REDUCE = {"add": ("f32", "u32", "s32", "u64"), "min": ("u32", "s32"), "max": ("u32", "s32"),
           "and": ("b32", "b64"), "or": ("b32", "b64"), "xor": ("b32", "b64")}
_REDUCE_TYPE = {"f32": "f32", "u32": "u32", "i32": "s32", "u64": "u64"}


@builtin
def bulk_reduce(b: Builder, dst, src, size, op: str = "add"):
    """``dst[i] op= src[i]`` for ``size`` bytes, shared -> global, in the bulk group (cp.reduce.async.bulk).

    The element type is the global pointer's; op add (f32 u32 i32 u64), min/max (u32 i32), and/or/xor."""
    g = _gmem(b, dst, "bulk_reduce")
    elem = g.type.elem if isinstance(g.type, PtrType) else u64
    t = _REDUCE_TYPE.get(elem.name)
    if op in ("and", "or", "xor") and elem.is_int:
        t = f"b{elem.bits}"
    if op not in _REDUCE or t not in _REDUCE[op]:
        b.error(f"bulk_reduce(): op {describe(op)} on {elem} is not a cp.reduce.async.bulk form; "
                f"allowed: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in _REDUCE.items()))
    b.emit("inst", operands=(g, _smem(b, src, "bulk_reduce"), _nbytes(b, size, "bulk_reduce")),
           attrs={"form": f"cp.reduce.async.bulk.{op}.{t}", "writes_global": True})


@builtin
def bulk_commit(b: Builder):
    """Close this thread's bulk group (the bulk stores/reductions issued since the last commit)."""
    b.emit("inst", attrs={"form": "cp.async.bulk.commit_group"})


@builtin
def bulk_wait(b: Builder, n: int = 0, read: bool = False):
    """Wait until at most ``n`` bulk groups are pending; ``read`` waits only until their sources were read."""
    if not (isinstance(n, int) and 0 <= n <= 63):
        b.error(f"bulk_wait(): n must be a compile-time int 0..63, got {describe(n)}")
    b.emit("inst", attrs={"form": f"cp.async.bulk.wait_group{'.read' if read else ''}", "n": n})


# -- warp specialisation and programmatic dependent launch ----------------------------------------------
@builtin
def setmaxnreg(b: Builder, n: int, inc: bool, pin_entry: bool = False):
    """Raise (``inc``) or lower this warpgroup's register budget to ``n`` (24..256, a multiple of 8; sm_90a).

    ``pin_entry``: the kernel also declares ``.maxnreg`` (65536 / threads of its block_size): ptxas
    ignores setmaxnreg (C7508) when it cannot fix the count at entry, as when the kernel's own count
    comes out lower than that."""
    if not (isinstance(n, int) and 24 <= n <= 256 and n % 8 == 0):
        b.error(f"setmaxnreg(): n must be a compile-time multiple of 8 in 24..256, got {describe(n)}")
    if not isinstance(pin_entry, bool):
        b.error(f"setmaxnreg(): pin_entry must be True or False, got {describe(pin_entry)}")
    b.emit("inst", attrs={"form": f"setmaxnreg.{'inc' if inc else 'dec'}", "n": n, "pin_entry": pin_entry})


@builtin
def elect_sync(b: Builder, mask=0xFFFFFFFF):
    """True in the lowest lane of ``mask``, false in the others; exactly the lanes of ``mask`` call it (elect.sync)."""
    pair = b.emit("inst", TupleType((u32, bool_)), (_u32(b, mask, "elect_sync() mask"),), {"form": "elect.sync"})
    return b.extract(pair, 1)


@builtin
def griddep_launch_dependents(b: Builder):
    """Let the next kernel launched with programmatic dependent launch start (griddepcontrol)."""
    b.emit("inst", attrs={"form": "griddepcontrol.launch_dependents"})


@builtin
def griddep_wait(b: Builder):
    """Wait until the grids this one depends on have completed and flushed their memory."""
    b.emit("inst", attrs={"form": "griddepcontrol.wait"})


# -- clusters and distributed shared memory -------------------------------------------------------------
def _dim(b: Builder, dim, what: str) -> str:
    if dim not in ("x", "y", "z"):
        b.error(f"{what}(): dim must be 'x', 'y' or 'z', got {describe(dim)}")
    return dim


@builtin
def cluster_ctarank(b: Builder):
    """This CTA's rank in its cluster (%cluster_ctarank)."""
    return b.emit("inst", u32, (), {"form": "sreg.cluster_ctarank"})


@builtin
def cluster_size(b: Builder):
    """The number of CTAs in the cluster (%cluster_nctarank)."""
    return b.emit("inst", u32, (), {"form": "sreg.cluster_nctarank"})


@builtin
def cluster_ctaid(b: Builder, dim="x"):
    """This CTA's position in its cluster along ``dim`` (%cluster_ctaid)."""
    return b.emit("inst", u32, (), {"form": f"sreg.cluster_ctaid.{_dim(b, dim, 'cluster_ctaid')}"})


@builtin
def cluster_dim(b: Builder, dim="x"):
    """The cluster's extent along ``dim`` in CTAs (%cluster_nctaid)."""
    return b.emit("inst", u32, (), {"form": f"sreg.cluster_nctaid.{_dim(b, dim, 'cluster_dim')}"})


@builtin
def cluster_idx(b: Builder, dim="x"):
    """The cluster's position in the grid along ``dim`` (%clusterid)."""
    return b.emit("inst", u32, (), {"form": f"sreg.clusterid.{_dim(b, dim, 'cluster_idx')}"})


@builtin
def cluster_count(b: Builder, dim="x"):
    """The number of clusters along ``dim`` (%nclusterid)."""
    return b.emit("inst", u32, (), {"form": f"sreg.nclusterid.{_dim(b, dim, 'cluster_count')}"})


@builtin
def mapa(b: Builder, ptr, rank):
    """The shared::cluster address (u32) of ``ptr``'s location in CTA ``rank`` of this cluster."""
    return b.emit("inst", u32, (_smem(b, ptr, "mapa"), _u32(b, rank, "mapa() rank")), {"form": "mapa.shared::cluster"})


_CLUSTER_TYPES = {"u32": "u32", "i32": "s32", "f32": "f32", "u64": "u64", "i64": "s64", "f64": "f64"}


@builtin
def load_cluster(b: Builder, addr, dtype):
    """Load a ``dtype`` from a shared::cluster address (from mapa): distributed shared memory."""
    t = _CLUSTER_TYPES.get(getattr(dtype, "name", None))
    if t is None:
        b.error(f"load_cluster(): dtype must be one of {', '.join(_CLUSTER_TYPES)}, got {describe(dtype)}")
    return b.emit("inst", dtype, (_smem(b, addr, "load_cluster", cluster=True),), {"form": f"ld.shared::cluster.{t}"})


@builtin
def store_cluster(b: Builder, addr, value):
    """Store ``value`` (32/64-bit int or float) at a shared::cluster address."""
    v = b.value(value)
    t = _CLUSTER_TYPES.get(v.type.name)
    if t is None:
        b.error(f"store_cluster(): value must be one of {', '.join(_CLUSTER_TYPES)}, got {v.type}")
    b.emit("inst", operands=(_smem(b, addr, "store_cluster", cluster=True), v), attrs={"form": f"st.shared::cluster.{t}"})


@builtin
def cluster_arrive(b: Builder, relaxed: bool = False):
    """Arrive at the cluster barrier (release semantics unless ``relaxed``); every thread must."""
    b.emit("inst", attrs={"form": "barrier.cluster.arrive" + (".relaxed" if relaxed else "")})


@builtin
def cluster_wait(b: Builder):
    """Wait for every thread of the cluster to arrive (acquire)."""
    b.emit("inst", attrs={"form": "barrier.cluster.wait"})


@builtin
def cluster_sync(b: Builder):
    """cluster_arrive() then cluster_wait(): a barrier over every thread of the cluster."""
    b.emit("inst", attrs={"form": "barrier.cluster.arrive"})
    b.emit("inst", attrs={"form": "barrier.cluster.wait"})
