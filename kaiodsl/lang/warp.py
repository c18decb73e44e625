"""Warp shuffles and votes (the .sync forms, with an explicit member mask)."""

from __future__ import annotations

from ..frontend.builder import Builder
from ..frontend.values import builtin
from ..ir.node import Node
from ..types import ScalarType, bool_, i32, u32

FULL = 0xFFFFFFFF
# c operand of shfl.sync: the clamp lane in bits 0-4, the segment mask in bits 8-12 (PTX ISA, shfl.sync).
_CLAMP = {"idx": 0x1F, "up": 0x0, "down": 0x1F, "bfly": 0x1F}


def _shfl(mode: str):
    def impl(b: Builder, value, lane, mask=FULL, width: int = 32):
        if width not in (1, 2, 4, 8, 16, 32):
            b.error(f"shuffle width must be a power of two up to 32, got {width}")
        v = b.value(value)
        if not isinstance(v.type, ScalarType) or v.type.bits not in (32, 64):
            b.error(f"shuffles move 32- or 64-bit values; got {v.type} (widen it first)")
        clamp = _CLAMP[mode] if mode != "up" else 0
        seg = ((32 - width) << 8)
        c = (clamp & (width - 1 if mode != "up" else 0)) | seg if width < 32 else clamp
        args = [b.coerce(lane, u32, "lane") if not isinstance(lane, Node) else b.convert(lane, u32),
                b.const(u32, c), b.coerce(mask, u32, "mask")]
        if v.type.bits == 64:  # two 32-bit halves
            from ..types import TupleType
            w = b.bitcast(v, ScalarType("u64", 64, "uint"))
            halves = b.emit("inst_pure", TupleType((u32, u32)), (w,), {"form": "unpack.b64"})
            lo = b.emit("shfl", u32, (b.extract(halves, 0), *args), {"mode": mode})
            hi = b.emit("shfl", u32, (b.extract(halves, 1), *args), {"mode": mode})
            packed = b.emit("inst_pure", ScalarType("u64", 64, "uint"), (lo, hi), {"form": "pack.b64"})
            return b.bitcast(packed, v.type)
        raw = b.bitcast(v, u32)
        return b.bitcast(b.emit("shfl", u32, (raw, *args), {"mode": mode}), v.type)

    impl.__doc__ = f"shfl.sync.{mode}: read ``value`` from another lane of the warp."
    return impl


shfl_idx = builtin(_shfl("idx"), name="shfl_idx")
shfl_up = builtin(_shfl("up"), name="shfl_up")
shfl_down = builtin(_shfl("down"), name="shfl_down")
shfl_xor = builtin(_shfl("bfly"), name="shfl_xor")


def _vote(mode: str, result):
    def impl(b: Builder, pred, mask=FULL):
        p = b.truth(pred)
        if isinstance(p, bool):
            p = b.const(bool_, p)
        return b.emit("vote", result, (p, b.coerce(mask, u32, "mask")), {"mode": mode})

    return impl


vote_any = builtin(_vote("any", bool_), name="vote_any")
vote_all = builtin(_vote("all", bool_), name="vote_all")
vote_uni = builtin(_vote("uni", bool_), name="vote_uni")
vote_ballot = builtin(_vote("ballot", u32), name="vote_ballot")


@builtin
def activemask(b: Builder):
    """Mask of the lanes executing this instruction together."""
    return b.emit("activemask", u32)


@builtin
def popc(b: Builder, x):
    """Number of set bits (popc), as i32."""
    return b.bitcast(b.emit("popc", u32, (b.value(x),)), i32)
