"""A def-before-use checker over emitted PTX: every register read must be written on every path to it.

Must-defined dataflow over the kernel's basic blocks (labels and branches split them; the
state meets by intersection at joins). A predicated write ``@%p mov %r1, ...`` defines %r1 only
under that guard; the complementary write ``@!%p`` completes it (masked loads are written so).
Only registers of the declared ``.reg ... %x<N>`` families are tracked, so special registers
(%tid.x, %laneid) and scoped names inside inline-PTX braces are ignored.
"""

from __future__ import annotations

import re

FULL = "full"
_NO_DEST = {"bar", "barrier", "bra", "ret", "exit", "trap", "membar", "fence", "prefetch", "griddepcontrol"}
_DECL = re.compile(r"\.reg\s+\.\w+\s+(%[A-Za-z_]+)<\d+>")


def _split_operands(text: str) -> list:
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def _instructions(ptx: str):
    """(index, label or None, guard, opcode, operands) for each instruction of the entry body."""
    body = ptx[ptx.index("{", ptx.index(".entry")) + 1:ptx.rindex("}")]
    prefixes = set(_DECL.findall(body))
    reg_re = re.compile(r"(%[A-Za-z_]+)(\d+)\b")
    items = []
    for raw in body.splitlines():
        line = raw.split("//")[0].strip()
        for stmt in line.split(";"):
            stmt = stmt.strip().strip("{}").strip()
            if not stmt or stmt.startswith("."):
                continue
            while stmt.startswith("$") and ":" in stmt:
                label, stmt = stmt.split(":", 1)
                items.append(("label", label.strip()))
                stmt = stmt.strip()
            if not stmt:
                continue
            guard = None
            if stmt.startswith("@"):
                g, stmt = stmt.split(None, 1)
                guard = (g.lstrip("@!"), g.startswith("@!"))
            parts = stmt.split(None, 1)
            op, operands = parts[0], _split_operands(parts[1]) if len(parts) > 1 else []
            items.append(("inst", guard, op, operands, stmt))
    return items, prefixes, reg_re


def _regs(text: str, prefixes, reg_re) -> list:
    return [m.group(0) for m in reg_re.finditer(text) if m.group(1) in prefixes]


def _meet(a: dict, b: dict) -> dict:
    out = {}
    for r in a.keys() & b.keys():
        x, y = a[r], b[r]
        out[r] = y if x == FULL else x if y == FULL else (x & y)
        if out[r] != FULL and not out[r]:
            del out[r]
    return out


def undefined_reads(ptx: str) -> list:
    """Every (statement, register) where the register may be read before any write on some path."""
    items, prefixes, reg_re = _instructions(ptx)
    blocks, labels, cur = [], {}, []
    for it in items:  # basic blocks: a label starts one, a branch or return ends one
        if it[0] == "label":
            if cur:
                blocks.append(cur)
            cur = []
            labels[it[1]] = len(blocks)
            continue
        cur.append(it)
        if it[2].split(".")[0] in ("bra", "ret", "exit"):
            blocks.append(cur)
            cur = []
    blocks.append(cur)
    succ = []
    for bi, blk in enumerate(blocks):
        s = []
        last = blk[-1] if blk else None
        base = last[2].split(".")[0] if last else None
        if base == "bra":
            s.append(labels[last[3][0]])
        if base not in ("bra", "ret", "exit") or last[1] is not None:
            if bi + 1 < len(blocks):
                s.append(bi + 1)
        succ.append(s)
    preds = {i: [] for i in range(len(blocks))}
    for i, s in enumerate(succ):
        for j in s:
            preds[j].append(i)

    def transfer(state: dict, blk, report=None) -> dict:
        state = {r: (v if v == FULL else set(v)) for r, v in state.items()}
        for _, guard, op, operands, stmt in blk:
            base = op.split(".")[0]
            dest_ops = []
            if operands and base not in _NO_DEST and not operands[0].startswith("["):
                dest_ops = [operands[0]]
            reads = [r for o in operands[len(dest_ops):] for r in _regs(o, prefixes, reg_re)]
            if guard is not None:
                reads += _regs(guard[0], prefixes, reg_re)
            for r in reads:
                have = state.get(r)
                ok = have == FULL or (guard is not None and have is not None and guard in have)
                if not ok and report is not None:
                    report.append((stmt, r))
            for r in (_regs(dest_ops[0], prefixes, reg_re) if dest_ops else []):  # setp's a|b: both
                if guard is None:
                    state[r] = FULL
                elif state.get(r) != FULL:
                    g = state.setdefault(r, set())
                    g.add(guard)
                    if (guard[0], not guard[1]) in g:
                        state[r] = FULL
        return state

    ins = {0: {}}
    work = list(range(len(blocks)))
    outs = {}
    while work:
        i = work.pop(0)
        ps = [outs[p] for p in preds[i] if p in outs]
        if i == 0:
            state = {}
        elif not ps:
            continue
        else:
            state = ps[0]
            for p in ps[1:]:
                state = _meet(state, p)
        ins[i] = state
        new = transfer(state, blocks[i])
        if outs.get(i) != new:
            outs[i] = new
            work += [j for j in succ[i] if j not in work]
    report: list = []
    for i, blk in enumerate(blocks):
        if i in ins:
            transfer(ins[i], blk, report)
    return report
