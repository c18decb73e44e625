"""Full unrolling of small run-time ``range()`` loops whose bounds and step are constants.

The frontend lays out every ``for i in range(start, stop, step)`` loop in one shape
(kaiodsl/frontend/control.py, ``dynamic_loop``)::

    pre:     ... br header(start, init...)
    header(i, c...):  p = cmp i, stop ; cbr p, body, exitpre
    body:    ... br latch(c'...)                (one block: no inner control flow)
    latch(c'...):  i2 = add i, step ; br header(i2, c'...)
    exitpre: br endloop(c...)

When start, stop and step are constants, the trip count is at most MAX_TRIP and the
copies stay under MAX_NODES, the body and latch are cloned into ``pre`` once per
iteration with ``i`` a constant, the carried values are threaded through the copies,
and ``pre`` jumps straight to ``endloop``. ``endloop`` is then merged into ``pre``
when nothing else reaches it, so an enclosing loop can become one block and unroll
in turn (the pass repeats until nothing changes).
"""

from __future__ import annotations

from ..ir.node import Block, Function, Node
from ..types import ScalarType
from .constfold import _CMP, _wrap

MAX_TRIP = 16      # iterations
MAX_NODES = 256    # non-constant nodes the unrolled copies may add


def unroll_loops(fn: Function) -> None:
    changed = True
    while changed:
        changed = False
        preds = fn.predecessors()
        for header in list(fn.blocks[1:]):
            loop = _match(header, preds)
            if loop is not None and _unroll(fn, loop):
                changed = True
                break


class _Loop:
    __slots__ = ("pre", "header", "body", "latch", "exitpre", "ivar", "values")

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)


def _const(n: Node):
    return n.attrs["value"] if n.op == "const" else None


def _match(header: Block, preds: dict):
    """The loop whose header this is, in the canonical shape with a constant trip count; else None."""
    t = header.term
    if t is None or t.op != "cbr" or not header.args or len(preds[header]) != 2:
        return None
    cond = t.operands[0]
    body, exitpre = t.attrs["true"], t.attrs["false"]
    if body is exitpre or any(len(preds[b]) != 1 for b in (body, exitpre)):
        return None
    if cond.op != "cmp" or cond.block is not header or cond.attrs["pred"] not in ("lt", "gt"):
        return None
    if any(n is not cond and n.op != "const" for n in header.body):
        return None
    ivar, stop = cond.operands
    if ivar not in header.args or _const(stop) is None:
        return None
    k = header.args.index(ivar)
    bt = body.term
    if body.args or bt is None or bt.op != "br":
        return None
    latch = bt.attrs["target"]
    if latch is header or len(preds[latch]) != 1 or latch.term is None or latch.term.op != "br" \
            or latch.term.attrs["target"] is not header:
        return None
    pre = [p for p in preds[header] if p is not latch]
    if len(pre) != 1 or pre[0].term.op != "br":
        return None
    pre = pre[0]
    nxt = latch.term.operands[k]
    if nxt.op != "add" or nxt.block is not latch or nxt.operands[0] is not ivar or _const(nxt.operands[1]) is None:
        return None
    if exitpre.args or exitpre.term is None or exitpre.term.op != "br" \
            or any(n.op != "const" for n in exitpre.body):
        return None
    start, step, stopv = _const(pre.term.operands[k]), _const(nxt.operands[1]), _const(stop)
    if start is None or not isinstance(ivar.type, ScalarType) or not ivar.type.is_int or step == 0:
        return None
    values, v = [], start
    while _CMP[cond.attrs["pred"]](v, stopv):
        values.append(v)
        if len(values) > MAX_TRIP:
            return None
        v = _wrap(v + step, ivar.type)
    size = sum(1 for n in (*body.body, *latch.body) if n.op != "const")
    if size * len(values) > MAX_NODES:
        return None
    return _Loop(pre=pre, header=header, body=body, latch=latch, exitpre=exitpre, ivar=ivar, values=values)


def _clone_into(block: Block, nodes, mapping: dict) -> None:
    for n in nodes:
        c = Node(n.op, n.type, tuple(mapping.get(o, o) for o in n.operands), dict(n.attrs), n.loc)
        c.block = block
        block.body.append(c)
        mapping[n] = c


def _unroll(fn: Function, loop: _Loop) -> bool:
    pre, header, body, latch, exitpre = loop.pre, loop.header, loop.body, loop.latch, loop.exitpre
    current = list(pre.term.operands)
    loc = pre.term.loc
    for v in loop.values:
        i = Node("const", loop.ivar.type, (), {"value": v}, loop.ivar.loc)
        i.block = pre
        pre.body.append(i)
        mapping = dict(zip(header.args, current))
        mapping[loop.ivar] = i
        _clone_into(pre, header.body, mapping)
        _clone_into(pre, body.body, mapping)
        mapping.update(zip(latch.args, (mapping.get(o, o) for o in body.term.operands)))
        _clone_into(pre, latch.body, mapping)
        current = [mapping.get(o, o) for o in latch.term.operands]
    mapping = dict(zip(header.args, current))
    _clone_into(pre, header.body, mapping)
    _clone_into(pre, exitpre.body, mapping)
    endloop = exitpre.term.attrs["target"]
    term = Node("br", exitpre.term.type, tuple(mapping.get(o, o) for o in exitpre.term.operands),
                {"target": endloop}, loc)
    term.block = pre
    pre.term = term
    dead = {header, body, latch, exitpre}
    fn.blocks = [b for b in fn.blocks if b not in dead]
    _merge_into(fn, pre, endloop)
    return True


def _merge_into(fn: Function, a: Block, b: Block) -> None:
    """Append ``b`` to ``a`` when ``a`` is its only predecessor (``a`` ends with ``br b``)."""
    if b is fn.entry or a.term.attrs.get("target") is not b or len(fn.predecessors()[b]) != 1:
        return
    mapping = dict(zip(b.args, a.term.operands))
    for n in b.body:
        n.block = a
        if mapping:
            n.operands = tuple(mapping.get(o, o) for o in n.operands)
    a.body.extend(b.body)
    a.term = b.term
    a.term.block = a
    if mapping:
        a.term.operands = tuple(mapping.get(o, o) for o in a.term.operands)
        for n in fn.nodes():  # values of b's arguments may be read further on
            if any(o in mapping for o in n.operands):
                n.operands = tuple(mapping.get(o, o) for o in n.operands)
    fn.blocks = [x for x in fn.blocks if x is not b]
