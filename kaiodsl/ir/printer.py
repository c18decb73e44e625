"""Print the IR as text: one line per node, blocks as labels."""

from __future__ import annotations

from .node import Block, Function, Node


def _fmt_attr(v) -> str:
    if isinstance(v, Block):
        return f"^{v.name}"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt_attr(x) for x in v) + "]"
    return str(v)


def format_node(n: Node) -> str:
    ops = ", ".join(f"%{o.id}" for o in n.operands)
    attrs = " ".join(f"{k}={_fmt_attr(v)}" for k, v in n.attrs.items() if k not in ("target", "true", "false"))
    if n.op == "br":
        args = f"({ops})" if ops else ""
        return f"br ^{n.attrs['target'].name}{args}"
    if n.op == "cbr":
        return f"cbr {ops}, ^{n.attrs['true'].name}, ^{n.attrs['false'].name}"
    text = n.op + (f" {ops}" if ops else "") + (f" {{{attrs}}}" if attrs else "")
    if str(n.type) == "void":
        return text
    return f"%{n.id}: {n.type} = {text}"


def format_function(fn: Function) -> str:
    params = ", ".join(f"%{p.id}: {p.type} {p.attrs['name']}" for p in fn.params)
    lines = [f"kernel {fn.name}({params})"]
    for decl in fn.shared:
        size = "dynamic" if decl.size is None else f"{decl.size} bytes"
        lines.append(f"  shared {decl.name}: {size}, align {decl.align}")
    for b in fn.blocks:
        args = ", ".join(f"%{a.id}: {a.type}" for a in b.args)
        lines.append(f"^{b.name}" + (f"({args})" if args else "") + ":")
        for n in b.body:
            lines.append("  " + format_node(n))
        if b.term is not None:
            lines.append("  " + format_node(b.term))
    return "\n".join(lines) + "\n"
