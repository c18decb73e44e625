"""Check the IR's invariants; runs after every pass in the tests."""

from __future__ import annotations

from ..types import PtrType, ScalarType, TupleType, bool_, void
from .node import Function
from .ops import OPS, TERMINATORS
from .printer import format_node


class VerifyError(AssertionError):
    """The IR broke an invariant: a compiler bug, never a user error."""


def _fail(node, msg: str):
    raise VerifyError(f"{msg}\n  at: {format_node(node)}" + (f"  ({node.loc.short})" if node.loc else ""))


def verify(fn: Function) -> None:
    blocks = set(fn.blocks)
    defined: set = set(fn.params)
    for b in fn.blocks:
        defined.update(b.args)
        defined.update(b.body)
    preds = fn.predecessors()
    for b in fn.blocks:
        if b.term is None or b.term.op not in TERMINATORS:
            raise VerifyError(f"block ^{b.name} has no terminator")
        for n in b.body:
            if n.op in TERMINATORS:
                _fail(n, "terminator in the middle of a block")
        for n in [*b.body, b.term]:
            spec = OPS.get(n.op)
            if spec is None:
                _fail(n, f"unknown op {n.op!r}")
            lo, hi = spec.arity
            if len(n.operands) < lo or (hi is not None and len(n.operands) > hi):
                _fail(n, f"{n.op} takes {lo}..{hi} operands, has {len(n.operands)}")
            for o in n.operands:
                if o not in defined:
                    _fail(n, f"operand %{o.id} ({o.op}) is not defined in this function")
            _check_types(n)
        t = b.term
        if t.op == "br":
            target = t.attrs["target"]
            if target not in blocks:
                _fail(t, f"branch to a block outside the function: ^{target.name}")
            if len(t.operands) != len(target.args):
                _fail(t, f"^{target.name} takes {len(target.args)} arguments, got {len(t.operands)}")
            for o, a in zip(t.operands, target.args):
                if o.type != a.type:
                    _fail(t, f"argument type {o.type} does not match ^{target.name}'s {a.type}")
        elif t.op == "cbr":
            if t.operands[0].type != bool_:
                _fail(t, "cbr condition must be bool")
            for s in (t.attrs["true"], t.attrs["false"]):
                if s.args:
                    _fail(t, f"cbr target ^{s.name} must not take arguments (split the edge)")
    for b in fn.blocks[1:]:
        if not preds[b]:
            raise VerifyError(f"block ^{b.name} is unreachable (DCE should remove it)")
    from ..codegen.features import check_async_uses
    check_async_uses(fn)  # a user error (CompileError at the user's line), not an invariant


def _check_types(n) -> None:
    op, ops = n.op, n.operands
    if op in ("add", "sub", "mul", "div", "rem", "min", "max", "and", "or", "xor"):
        if ops[0].type != ops[1].type or n.type != ops[0].type:
            _fail(n, f"{op} needs equal operand and result types, got {ops[0].type}, {ops[1].type} -> {n.type}")
    elif op == "cmp":
        if ops[0].type != ops[1].type or n.type != bool_:
            _fail(n, "cmp needs equal operand types and a bool result")
    elif op == "select":
        if ops[0].type != bool_ or ops[1].type != ops[2].type or n.type != ops[1].type:
            _fail(n, "select needs (bool, T, T) -> T")
    elif op == "ptradd":
        if not isinstance(ops[0].type, PtrType) or n.type != ops[0].type:
            _fail(n, "ptradd needs a pointer operand and result")
        if not (isinstance(ops[1].type, ScalarType) and ops[1].type.is_int):
            _fail(n, "ptradd index must be an integer")
    elif op == "ld":
        if not isinstance(ops[0].type, PtrType):
            _fail(n, "ld address must be a pointer")
    elif op == "st":
        if not isinstance(ops[0].type, PtrType) or ops[1].type == void:
            _fail(n, "st needs a pointer and a value")
    elif op == "extract":
        if not isinstance(ops[0].type, TupleType) or n.type != ops[0].type.elems[n.attrs["index"]]:
            _fail(n, "extract needs a tuple and the element's type")
    elif op == "tuple":
        if not isinstance(n.type, TupleType) or tuple(o.type for o in ops) != n.type.elems:
            _fail(n, "tuple type must list its operands' types")
    elif op in ("inst", "inst_pure", "inst_read"):  # against its form (ptx_templates/instructions.txt)
        from ..codegen.features import check_node
        why = check_node(n)
        if why:
            _fail(n, why)
