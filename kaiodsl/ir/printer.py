"""Print the IR as text: one line per node, blocks as labels.

Values are numbered per function, in printing order (parameters first), so a kernel
prints the same text whatever else this process compiled before it.
"""

from __future__ import annotations

from .node import Block, Function, Node


class _Names:
    """Node -> its number in this function: %1, %2, ... in order of first appearance."""

    def __init__(self):
        self.ids: dict = {}

    def __call__(self, n: Node) -> str:
        k = self.ids.get(n)
        if k is None:
            k = self.ids[n] = len(self.ids) + 1
        return f"%{k}"


def _fmt_attr(v) -> str:
    if isinstance(v, Block):
        return f"^{v.name}"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt_attr(x) for x in v) + "]"
    return str(v)


def format_node(n: Node, name=None) -> str:
    """One node; ``name`` numbers values (default: the node's process-wide id, for a lone node
    shown by the verifier)."""
    name = name or (lambda v: f"%{v.id}")
    ops = ", ".join(name(o) for o in n.operands)
    attrs = " ".join(f"{k}={_fmt_attr(v)}" for k, v in n.attrs.items() if k not in ("target", "true", "false"))
    if n.op == "br":
        args = f"({ops})" if ops else ""
        return f"br ^{n.attrs['target'].name}{args}"
    if n.op == "cbr":
        return f"cbr {ops}, ^{n.attrs['true'].name}, ^{n.attrs['false'].name}"
    text = n.op + (f" {ops}" if ops else "") + (f" {{{attrs}}}" if attrs else "")
    if str(n.type) == "void":
        return text
    return f"{name(n)}: {n.type} = {text}"


def format_function(fn: Function) -> str:
    name = _Names()
    params = ", ".join(f"{name(p)}: {p.type} {p.attrs['name']}" for p in fn.params)
    lines = [f"kernel {fn.name}({params})"]
    for decl in fn.shared:
        size = "dynamic" if decl.size is None else f"{decl.size} bytes"
        lines.append(f"  shared {decl.name}: {size}, align {decl.align}")
    for b in fn.blocks:
        args = ", ".join(f"{name(a)}: {a.type}" for a in b.args)
        lines.append(f"^{b.name}" + (f"({args})" if args else "") + ":")
        for n in b.body:
            lines.append("  " + format_node(n, name))
        if b.term is not None:
            lines.append("  " + format_node(b.term, name))
    return "\n".join(lines) + "\n"
