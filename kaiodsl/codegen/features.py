"""Instruction forms (ptx_templates/instructions.txt) and the PTX ISA versions kernels need.

The table is parametric: one record with a ``for`` grid becomes one ``Form`` per combination when
it loads. The frontend gates forms on ``Form.arch``, the IR verifier checks ``inst`` nodes against
``Form.signature``/``Form.effects`` (``check_node``), codegen renders ``Form.template``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import lru_cache

from ..ptx_templates import read_text

from ..arch import ARCH_MIN_PTX, Arch, ArchPred, arch_pred

__all__ = ["ARCH_MIN_PTX", "Form", "forms", "form", "family", "ptx_version_for", "check_node", "op_for"]

# The IR op an effect class becomes (kaiodsl/ir/ops.py): pure ops may be merged and removed,
# read ops removed when unused, everything else stays where it is, in order.
_EFFECT_OP = {"pure": "inst_pure", "read": "inst_read"}
_KINDS = {"r", "t", "p", "s", "g", "m"}


@dataclass(frozen=True)
class Form:
    name: str
    family: str
    arch: ArchPred
    min_ptx: str
    effects: tuple                  # e.g. ("write", "async:cp.async")
    inputs: tuple                   # operand kinds, e.g. ("s", "g", "r"); a trailing '?' is optional
    output: str | None              # result kind or None
    template: str
    params: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def op(self) -> str:
        """The IR op of this form's nodes: inst_pure, inst_read or inst."""
        return _EFFECT_OP.get(self.effects[0], "inst")

    def _tagged(self, tag: str):
        for e in self.effects:
            if e.startswith(tag + ":"):
                return e.split(":", 1)[1]
        return None

    @property
    def async_group(self) -> str | None:
        """The async group the form issues into (its results are pending until a wait of the group)."""
        return self._tagged("async")

    @property
    def waits(self) -> str | None:
        return self._tagged("wait")

    @property
    def commits(self) -> str | None:
        return self._tagged("commit")

    @property
    def tie(self) -> int | None:
        """The operand whose registers hold the result (in-place accumulation)."""
        t = self._tagged("tie")
        return None if t is None else int(t)

    @property
    def after_copy(self) -> str | None:
        """The form codegen emits after copying a tied operand into the result's registers."""
        return self._tagged("fence")

    @property
    def writes_global(self) -> bool:
        return "write.global" in self.effects

    @property
    def mnemonic(self) -> str:
        """What an error calls the form: the opcode, or the special register a mov reads."""
        words = self.template.split()
        if words[0].startswith("mov.") and words[-1].startswith("%"):
            return words[-1].rstrip(";")
        return words[0].rstrip(";")

    def allows(self, arch) -> bool:
        return self.arch.allows(arch)


def _values(spec: str) -> list:
    """'8..256:8' -> ['8', '16', ...]; 'a,b' -> ['a', 'b']; '' and ',x' keep the empty value."""
    if ".." in spec:
        lo, rest = spec.split("..")
        hi, step = rest.split(":") if ":" in rest else (rest, "1")
        return [str(v) for v in range(int(lo), int(hi) + 1, int(step))]
    return [v.strip() for v in spec.split(",")]


def _grid(line: str) -> list:
    """'for a=1,2; b=x' -> [{'a': '1', 'b': 'x'}, {'a': '2', 'b': 'x'}]."""
    axes = []
    for part in line[len("for"):].split(";"):
        key, _, spec = part.strip().partition("=")
        axes.append((key.strip(), _values(spec)))
    keys = [k for k, _ in axes]
    return [dict(zip(keys, combo)) for combo in itertools.product(*(v for _, v in axes))]


def _subst(text: str, params: dict) -> str:
    for k, v in params.items():
        text = text.replace(f"<{k}>", v)
    return text


def _signature(sig: str) -> tuple:
    ins, _, out = sig.partition("->")
    inputs = tuple(k.strip() for k in ins.split(",") if k.strip())
    output = out.strip() or None
    for k in (*inputs, *([output] if output else [])):
        if k.rstrip("?") not in _KINDS:
            raise ValueError(f"unknown operand kind {k!r} in signature {sig!r}")
    return inputs, output


def parse_table(text: str) -> dict:
    """The instruction table's text -> {form name: Form}, every grid expanded."""
    out: dict = {}
    fam = ""
    pending = None  # the record a 'for' line expands

    def add(rec, params):
        name, arch, ptx, effects, sig, template = rec
        name, template = _subst(name, params), _subst(template, params)
        if "<" in name.replace("<<", ""):
            raise ValueError(f"form {name!r}: a grid parameter is not given")
        inputs, output = _signature(_subst(sig, params))
        if name in out:
            raise ValueError(f"form {name!r} is defined twice")
        out[name] = Form(name, fam, arch_pred(arch), ptx, tuple(effects.split()), inputs, output,
                         template, params)

    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("for "):
            if pending is None:
                raise ValueError(f"'for' line without a record: {line!r}")
            for params in _grid(line):
                add(pending, params)
            pending = None
            continue
        if pending is not None:
            add(pending, {})
            pending = None
        if line.startswith("family "):
            fam = line.split()[1]
            continue
        parts = [p.strip() for p in line.split("|", 5)]
        if len(parts) != 6:
            raise ValueError(f"instruction record needs 6 fields: {line!r}")
        pending = parts
    if pending is not None:
        add(pending, {})
    return out


@lru_cache(maxsize=None)
def forms() -> dict:
    return parse_table(read_text("instructions.txt"))


def form(name: str) -> Form:
    try:
        return forms()[name]
    except KeyError:
        raise KeyError(f"no instruction form {name!r} in ptx_templates/instructions.txt") from None


@lru_cache(maxsize=None)
def family(name: str) -> tuple:
    """Every form of a family, in table order."""
    return tuple(f for f in forms().values() if f.family == name)


def op_for(name: str) -> str:
    return form(name).op


def _v(s: str) -> tuple:
    return tuple(int(x) for x in s.split("."))


def ptx_version_for(arch: str, features) -> str:
    """The lowest .version that the arch and every used form allow."""
    best = Arch.parse(arch).min_ptx
    for f in features:
        need = forms()[f].min_ptx if f in forms() else f
        if _v(need) > _v(best):
            best = need
    return best


# -- the validator: an inst node against its form ------------------------------------------------
def _kind_ok(kind: str, t) -> bool:
    from ..types import PtrType, ScalarType, TensorMapType, TupleType

    if kind == "m":
        return isinstance(t, TensorMapType)
    if kind == "t":
        return isinstance(t, TupleType)
    if kind == "p":
        return isinstance(t, ScalarType) and t.is_bool
    if kind == "s":
        return (isinstance(t, PtrType) and t.space == "shared") or (isinstance(t, ScalarType) and t.name in ("u32", "i32"))
    if kind == "g":
        return (isinstance(t, PtrType) and t.space == "global") or (isinstance(t, ScalarType) and t.name in ("u64", "i64"))
    return not isinstance(t, TupleType)


def check_node(n) -> str | None:
    """Why an ``inst``/``inst_pure``/``inst_read`` node disagrees with its form, or None."""
    try:
        f = form(n.attrs["form"])
    except KeyError as e:
        return str(e)
    if n.op != f.op:
        return f"form {f.name} is {f.effects[0]}: its node must be {f.op}, not {n.op}"
    need = [k for k in f.inputs if not k.endswith("?")]
    if not len(need) <= len(n.operands) <= len(f.inputs):
        return f"form {f.name} takes {len(f.inputs)} operands ({','.join(f.inputs)}), got {len(n.operands)}"
    for i, (k, o) in enumerate(zip(f.inputs, n.operands)):
        if not _kind_ok(k.rstrip("?"), o.type):
            return f"form {f.name} operand {i} must be of kind {k}, got {o.type}"
    has_out = str(n.type) != "void"
    if f.output is None and has_out:
        return f"form {f.name} has no result, the node has type {n.type}"
    if f.output is not None and not f.output.endswith("?"):
        if not has_out or not _kind_ok(f.output, n.type):
            return f"form {f.name} result must be of kind {f.output}, the node has type {n.type}"
    return None


# -- async tokens: a result of an async form is pending until a wait of its group consumes it ------
def _inst_form(n):
    return forms().get(n.attrs.get("form")) if n.op in ("inst", "inst_pure", "inst_read") else None


def check_async_uses(fn) -> None:
    """Raise a CompileError at the first use of a pending async result (a wgmma accumulator before its
    ``wgmma_wait``). Pending values may only feed a wait or another async form of their group (the
    tied accumulator), or be carried by a loop; ``wait(n > 0)`` results stay pending."""
    from ..errors import CompileError

    pending: dict = {}  # node -> group
    incoming: dict = {}
    for b in fn.blocks:
        for n in b.body:
            f = _inst_form(n)
            if f is not None and f.async_group and str(n.type) != "void":
                pending[n] = f.async_group
            elif f is not None and f.waits and n.attrs.get("n", 0) > 0 and str(n.type) != "void":
                pending[n] = f.waits
        if b.term is not None and b.term.op == "br":
            for a, v in zip(b.term.attrs["target"].args, b.term.operands):
                incoming.setdefault(a, []).append(v)
    changed = True
    while changed:  # a loop-carried value is pending when any incoming value is
        changed = False
        for a, vals in incoming.items():
            if a not in pending:
                g = next((pending[v] for v in vals if v in pending), None)
                if g is not None:
                    pending[a] = g
                    changed = True
    for b in fn.blocks:
        for n in [*b.body, b.term]:
            if n is None or n.op == "br":
                continue
            f = _inst_form(n)
            for i, o in enumerate(n.operands):
                g = pending.get(o)
                if g is None:
                    continue
                if f is not None and (f.waits == g or (f.async_group == g and f.tie == i)):
                    continue
                raise CompileError(f"this reads a {g} result before the {g} wait that completes it; "
                                   f"wait first (e.g. acc = kaiodsl.{g}_wait(0, acc)) and use what it returns",
                                   n.loc)


# -- the simulator's gate: PTX for a target must not use a form the target lacks ---------------------
@lru_cache(maxsize=None)
def _gates() -> dict:
    """opcode -> the arch predicates of the forms spelled that way (mov templates are not gated)."""
    out: dict = {}
    for f in forms().values():
        word = f.template.split()[0].rstrip(";")
        if word.startswith(("mov.", "//")):
            continue
        out.setdefault(word, []).append(f.arch)
    return out


def target_refuses(target: str, opcode: str) -> str | None:
    """Why ``target`` has no instruction ``opcode`` (from the form table), or None."""
    preds = _gates().get(opcode)
    if not preds:
        return None
    try:
        Arch.parse(target)
    except Exception:  # a target the table does not know: nothing to say
        return None
    if any(p.allows(target) for p in preds):
        return None
    return f"{opcode} {preds[0].describe()}; this PTX is for {target} (ptxas refuses it)"
