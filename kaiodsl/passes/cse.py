"""Common-subexpression elimination of pure ops (index arithmetic above all), scoped by dominance."""

from __future__ import annotations

from ..ir.node import Function
from ..ir.ops import COMMUTATIVE, PURE
from .util import dominators, replace_uses

_NEVER = {"param", "blockarg"}


def _key(n):
    ids = [o.id for o in n.operands]
    if n.op in COMMUTATIVE:
        ids.sort()
    attrs = tuple(sorted((k, repr(v)) for k, v in n.attrs.items()))
    if n.op == "const":
        attrs = (("value", type(n.attrs["value"]).__name__, repr(n.attrs["value"])),)
    return (n.op, str(n.type), tuple(ids), attrs)


def cse(fn: Function) -> None:
    idom = dominators(fn)
    children: dict = {b: [] for b in fn.blocks}
    for b, d in idom.items():
        if b is not d:
            children[d].append(b)
    mapping: dict = {}

    def final(o):
        while o in mapping:
            o = mapping[o]
        return o

    # iterative walk of the dominator tree with a scoped table
    stack = [(fn.entry, {})]
    while stack:
        blk, table = stack.pop()
        table = dict(table)
        keep = []
        for n in blk.body:
            if any(o in mapping for o in n.operands):
                n.operands = tuple(final(o) for o in n.operands)
            if n.op in PURE and n.op not in _NEVER:
                k = _key(n)
                hit = table.get(k)
                if hit is not None:
                    mapping[n] = hit
                    continue
                table[k] = n
            keep.append(n)
        blk.body = keep
        for c in children[blk]:
            stack.append((c, table))
    replace_uses(fn, mapping)
