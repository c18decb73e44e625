"""The frontend: one AST visitor, one method per supported node; anything else is a CompileError.

The visit_* methods live in mixins along the seams a reader looks for them by:
statements.py (assignments, return, assert, for), expressions.py (names, operators, subscripts),
calls.py (builtins, @func inlining, Python builtins) and control.py (if, while, merging paths).
"""

from __future__ import annotations

import ast
import builtins as _py

from ..errors import CompileError, KaioError
from ..ir.node import SourceLoc
from .builder import Builder
from .calls import Calls
from .control import ControlFlow
from .describe import describe, describe_node, instead
from .expressions import Expressions
from .statements import Statements


class Source:
    """The user's function source: AST, file and line offsets, for locations."""

    def __init__(self, tree, file: str, first_line: int, lines: list, func: str, col_offset: int = 0):
        self.tree = tree
        self.file = file
        self.first_line = first_line
        self.lines = lines
        self.func = func
        self.col_offset = col_offset

    def loc(self, node) -> SourceLoc | None:
        if not hasattr(node, "lineno"):
            return None
        line = node.lineno + self.first_line - 1
        idx = node.lineno - 1
        text = self.lines[idx] if 0 <= idx < len(self.lines) else ""
        end = node.end_col_offset if getattr(node, "end_lineno", node.lineno) == node.lineno else None
        off = self.col_offset
        return SourceLoc(self.file, line, node.col_offset + off, (end + off) if end is not None else None,
                         text.rstrip("\n"), self.func)


class Visitor(Statements, Expressions, Calls, ControlFlow):
    """Turns one function body into IR through a Builder. Helper functions are inlined."""

    def __init__(self, ctx, b: Builder, source: Source, env: dict, globals_: dict, const_names=frozenset(),
                 funcs_depth: int = 0, returns: list | None = None):
        self.ctx = ctx  # the frozen compiler.CompileContext: arch, block, Const values, options
        self.b = b
        self.src = source
        self.env = env
        self.globals = globals_
        self.const_names = set(const_names)
        self.loops: list = []
        self.if_depth = 0
        self.returns = returns  # inlined function: (block, env-with-$ret) ends; None in a kernel
        self.funcs_depth = funcs_depth
        self.assigned_at: dict = {}  # (name, id(value)) -> (value, SourceLoc): for merge messages

    # -- plumbing ------------------------------------------------------------------------------
    def error(self, msg: str, node=None):
        """Raise a CompileError at ``node`` (an AST node or a SourceLoc), else at the current node."""
        loc = node if isinstance(node, SourceLoc) else self.src.loc(node) if node is not None else None
        raise CompileError(msg, loc or self.b.loc)

    def visit(self, node):
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            self.error(f"{describe_node(node)} is not supported in kaiodsl kernels{instead(node)}", node)
        prev = self.b.loc
        loc = self.src.loc(node)
        if loc is not None:
            self.b.loc = loc
        try:
            return method(node)
        except CompileError:
            raise
        except KaioError as e:
            raise CompileError(str(e), loc) from None
        finally:
            self.b.loc = prev

    def eval(self, node):
        return self.visit(node)

    def visit_body(self, stmts):
        for s in stmts:
            if self.b.block is None:
                return
            self.visit(s)

    # -- helpers ---------------------------------------------------------------------------------
    def annotation(self, node):
        return self.eval(node)

    def _resolves_to(self, func_node, obj) -> bool:
        if isinstance(func_node, ast.Name):
            if func_node.id in self.env:
                return False
            return self.globals.get(func_node.id, getattr(_py, func_node.id, None)) is obj
        return False

