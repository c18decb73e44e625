"""Mark pointer parameters the kernel may write through (numpy arguments are copied back only for those)."""

from __future__ import annotations

from ..ir.node import Function
from ..types import PtrType


def mark_writable_params(fn: Function) -> None:
    writes = []
    incoming: dict = {}
    for b in fn.blocks:
        for n in b.body:
            if n.op in ("st", "atom") or (n.op == "inst" and n.attrs.get("writes_global")):
                writes.append(n.operands[0])
            elif n.op == "asm":  # inline PTX may write through any pointer it is given
                writes.extend(o for o in n.operands if isinstance(o.type, PtrType))
        if b.term is not None and b.term.op == "br":
            for a, v in zip(b.term.attrs["target"].args, b.term.operands):
                incoming.setdefault(a, []).append(v)
    memo: dict = {}

    def roots(n):
        """Parameters a pointer value may derive from."""
        if n in memo:
            return memo[n]
        memo[n] = set()
        if n.op == "param":
            r = {n}
        elif n.op == "blockarg":
            r = set().union(*(roots(v) for v in incoming.get(n, [])))
        else:
            r = set().union(*(roots(o) for o in n.operands if isinstance(o.type, PtrType)))
        memo[n] = r
        return r

    written = set().union(*(roots(w) for w in writes))
    for p in fn.params:
        p.attrs["writable"] = p in written
