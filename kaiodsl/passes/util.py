"""Shared pass machinery: use lists, replacing uses, dominators."""

from __future__ import annotations

from ..ir.node import Function, Node


def replace_uses(fn: Function, mapping: dict) -> None:
    """Rewrite every operand through ``mapping`` (old node -> new node), following chains."""
    if not mapping:
        return

    def final(n):
        seen = 0
        while n in mapping and seen < 1000:
            n = mapping[n]
            seen += 1
        return n

    for n in fn.nodes():
        if any(o in mapping for o in n.operands):
            n.operands = tuple(final(o) for o in n.operands)


def use_counts(fn: Function) -> dict:
    counts: dict = {}
    for n in fn.nodes():
        for o in n.operands:
            counts[o] = counts.get(o, 0) + 1
    return counts


def reverse_postorder(fn: Function) -> list:
    seen, order = set(), []

    def go(b):
        stack = [(b, iter(b.successors()))]
        seen.add(b)
        while stack:
            blk, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                order.append(blk)
                stack.pop()
            elif nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, iter(nxt.successors())))

    go(fn.entry)
    return order[::-1]


def dominators(fn: Function) -> dict:
    """Immediate dominator of each reachable block (Cooper, Harvey & Kennedy's iterative algorithm)."""
    rpo = reverse_postorder(fn)
    index = {b: i for i, b in enumerate(rpo)}
    preds = fn.predecessors()
    idom = {fn.entry: fn.entry}

    def intersect(a, b):
        while a is not b:
            while index[a] > index[b]:
                a = idom[a]
            while index[b] > index[a]:
                b = idom[b]
        return a

    changed = True
    while changed:
        changed = False
        for b in rpo[1:]:
            ps = [p for p in preds[b] if p in idom]
            if not ps:
                continue
            new = ps[0]
            for p in ps[1:]:
                new = intersect(p, new)
            if idom.get(b) is not new:
                idom[b] = new
                changed = True
    return idom


def make_const(t, value, block, loc=None) -> Node:
    n = Node("const", t, (), {"value": value}, loc)
    n.block = block
    return n
