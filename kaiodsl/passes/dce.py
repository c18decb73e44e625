"""Dead-code elimination: unreachable blocks, unused values, unused and trivial block arguments."""

from __future__ import annotations

from ..ir.node import Function
from ..ir.ops import REMOVABLE
from .util import make_const, replace_uses, reverse_postorder, use_counts


def remove_unreachable(fn: Function) -> None:
    live = set(reverse_postorder(fn))
    fn.blocks = [b for b in fn.blocks if b in live]


def dce(fn: Function) -> None:
    remove_unreachable(fn)
    changed = True
    while changed:
        changed = False
        counts = use_counts(fn)
        for b in fn.blocks:
            keep = [n for n in b.body if n.op not in REMOVABLE or counts.get(n, 0) > 0]
            if len(keep) != len(b.body):
                b.body = keep
                changed = True
        if _drop_unused_args(fn, counts):
            changed = True


def _drop_unused_args(fn: Function, counts: dict) -> bool:
    """Remove block arguments nobody reads (except the branches feeding them back to themselves)."""
    preds = fn.predecessors()
    dropped = False
    for b in fn.blocks[1:]:
        if not b.args:
            continue
        for k in reversed(range(len(b.args))):
            a = b.args[k]
            self_feeds = sum(1 for p in preds[b] if p.term.op == "br" and p.term.operands[k] is a)
            if counts.get(a, 0) - self_feeds > 0:
                continue
            del b.args[k]
            for p in preds[b]:
                ops = list(p.term.operands)
                del ops[k]
                p.term.operands = tuple(ops)
            dropped = True
        for i, a in enumerate(b.args):
            a.attrs["index"] = i
    return dropped


def simplify_block_args(fn: Function) -> None:
    """Replace a block argument that receives one value on every edge (ignoring itself) by that value."""
    changed = True
    while changed:
        changed = False
        preds = fn.predecessors()
        mapping = {}
        for b in fn.blocks[1:]:
            if not b.args or not preds[b]:
                continue
            for k in reversed(range(len(b.args))):
                a = b.args[k]
                incoming = [p.term.operands[k] for p in preds[b]]
                others = [v for v in incoming if v is not a and mapping.get(v) is not a]
                if not others:
                    continue
                first = others[0]
                if all(v is first for v in others):
                    repl = first
                elif all(v.op == "const" and v.type == first.type and v.attrs["value"] == first.attrs["value"]
                         and type(v.attrs["value"]) is type(first.attrs["value"]) for v in others):
                    repl = make_const(a.type, first.attrs["value"], b, a.loc)
                    b.body.insert(0, repl)
                else:
                    continue
                mapping[a] = repl
                del b.args[k]
                for p in preds[b]:
                    ops = list(p.term.operands)
                    del ops[k]
                    p.term.operands = tuple(ops)
                changed = True
            for i, a in enumerate(b.args):
                a.attrs["index"] = i
        replace_uses(fn, mapping)
