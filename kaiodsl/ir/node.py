"""The IR: one small node type, blocks with arguments, and a function of blocks.

A ``Node`` is an op, a type, its operands and its attributes -- nothing more.
Nodes are SSA values; a node whose type is a TupleType is a register tuple
(an mma fragment, an ldmatrix result, a vector load). Control flow is a CFG of
``Block``s whose arguments play the role of phi nodes; structured Python
control flow is laid out in source order so that PTX reads like the source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..types import Type, void


@dataclass(frozen=True)
class SourceLoc:
    """A position in the user's Python source, for errors and PTX comments."""

    file: str
    line: int
    col: int = 0
    end_col: int | None = None
    text: str = ""
    func: str = ""

    def render(self) -> str:
        head = f'  File "{self.file}", line {self.line}, col {self.col + 1}'
        if self.func:
            head += f", in {self.func}"
        if not self.text:
            return head
        stripped = self.text.lstrip()
        indent = len(self.text) - len(stripped)
        width = max(1, (self.end_col or self.col + 1) - self.col)
        caret = " " * (4 + self.col - indent) + "^" + "~" * (width - 1)
        return f"{head}\n    {stripped}\n{caret}"

    @property
    def short(self) -> str:
        return f"{self.file}:{self.line}"


class Node:
    """One SSA value (or effect): ``op``, ``type``, ``operands``, ``attrs``, ``loc``."""

    __slots__ = ("op", "type", "operands", "attrs", "loc", "id", "block")

    _counter = 0

    def __init__(self, op: str, type: Type = void, operands: tuple = (), attrs: dict | None = None,
                 loc: SourceLoc | None = None):
        self.op = op
        self.type = type
        self.operands = tuple(operands)
        self.attrs = attrs or {}
        self.loc = loc
        Node._counter += 1
        self.id = Node._counter
        self.block = None

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    def __repr__(self) -> str:
        return f"%{self.id}:{self.op}"


@dataclass(eq=False)
class Block:
    """A basic block: arguments (``blockarg`` nodes), a body, and one terminator."""

    name: str
    args: list = field(default_factory=list)
    body: list = field(default_factory=list)
    term: Node | None = None

    def successors(self) -> list:
        if self.term is None:
            return []
        return [t for t in (self.term.attr("target"), self.term.attr("true"), self.term.attr("false")) if t]

    def __repr__(self) -> str:
        return f"^{self.name}"


@dataclass(frozen=True)
class SharedDecl:
    """A static shared-memory array (or the dynamic window when ``size`` is None)."""

    name: str
    size: int | None
    align: int


@dataclass(eq=False)
class Function:
    """A kernel after the frontend: parameters, blocks (entry first), shared declarations."""

    name: str
    params: list
    blocks: list
    shared: list = field(default_factory=list)
    required_block: tuple | None = None
    source_file: str = ""
    source_line: int = 0    # the kernel function's first line in source_file
    features: set = field(default_factory=set)  # e.g. {"mma", "cp.async"}, for .version/.target gates

    @property
    def entry(self) -> Block:
        return self.blocks[0]

    def nodes(self):
        """Every node in block order: arguments, body, terminator."""
        for b in self.blocks:
            yield from b.args
            yield from b.body
            if b.term is not None:
                yield b.term

    def predecessors(self) -> dict:
        preds = {b: [] for b in self.blocks}
        for b in self.blocks:
            for s in b.successors():
                preds[s].append(b)
        return preds
