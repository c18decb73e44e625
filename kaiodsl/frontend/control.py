"""Structured control flow -> CFG with block arguments (SSA), for the visitor.

Python variables are an environment of values (IR nodes, Python constants,
lists of them, ...). Where paths meet, every variable whose value differs
becomes block arguments of the meeting block: one argument per leaf node.
Loops carry the variables their bodies assign; when a carried variable starts
as a weakly typed Python constant, the body is visited once in a dry run to
learn the type it ends with.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from ..errors import CompileError
from ..ir.node import Block, Node
from ..types import bool_, f32, i32
from .builder import PyConst, default_type
from .values import Undefined

_LEAF = "leaf"
RET = "$ret"  # the environment slot an inlined function's return value travels in
VAL = "$val"  # ... the value of a branching conditional expression
BOOL = "$bool"  # ... and of a short-circuiting and/or


def flatten(v):
    """(structure, leaves) of a value; leaves are nodes and Python constants."""
    if isinstance(v, Node) or (isinstance(v, PyConst)):
        return _LEAF, [v]
    if isinstance(v, (list, tuple)):
        structs, leaves = [], []
        for x in v:
            s, l = flatten(x)
            structs.append(s)
            leaves += l
        return (type(v).__name__, tuple(structs)), leaves
    return ("obj", id(v)), []


def rebuild(struct, leaves, original):
    it = iter(leaves)

    def go(s, orig):
        if s == _LEAF:
            return next(it)
        kind, parts = s
        if kind == "obj":
            return orig
        items = [go(p, o) for p, o in zip(parts, orig)]
        return items if kind == "list" else tuple(items)

    return go(struct, original)


def _same(a, b) -> bool:
    if isinstance(a, Node) or isinstance(b, Node):
        return a is b
    if isinstance(a, PyConst) and isinstance(b, PyConst):
        return type(a) is type(b) and a == b
    return a is b


def leaf_type(leaves: list, what: str, loc):
    """The one type a leaf position takes across paths."""
    types = {l.type for l in leaves if isinstance(l, Node)}
    if len(types) > 1:
        raise CompileError(f"{what} has different types on different paths: "
                           f"{', '.join(sorted(map(str, types)))}; cast it explicitly so they agree", loc)
    if types:
        return types.pop()
    consts = [l for l in leaves if isinstance(l, PyConst)]
    if any(isinstance(c, float) for c in consts):
        return f32
    if all(isinstance(c, bool) for c in consts):
        return bool_
    return max((default_type(c) for c in consts), key=lambda t: t.bits, default=i32)


def assigned_names(stmts) -> list:
    """Names a statement list may (re)bind, in first-seen order; subscript targets bind their root."""
    seen: dict = {}

    def target(t):
        if isinstance(t, ast.Name):
            seen.setdefault(t.id, None)
        elif isinstance(t, (ast.Tuple, ast.List)):
            for e in t.elts:
                target(e)
        elif isinstance(t, ast.Starred):
            target(t.value)
        elif isinstance(t, (ast.Subscript, ast.Attribute)):
            target(t.value)

    class V(ast.NodeVisitor):
        def visit_Assign(self, n):
            for t in n.targets:
                target(t)
            self.generic_visit(n)

        def visit_AugAssign(self, n):
            target(n.target)
            self.generic_visit(n)

        def visit_AnnAssign(self, n):
            target(n.target)
            self.generic_visit(n)

        def visit_For(self, n):
            target(n.target)
            self.generic_visit(n)

        def visit_NamedExpr(self, n):
            target(n.target)
            self.generic_visit(n)

        def visit_FunctionDef(self, n):  # own scope
            pass

        visit_Lambda = visit_ListComp = visit_GeneratorExp = visit_DictComp = visit_SetComp = visit_FunctionDef

    for s in stmts:
        V().visit(s)
    return list(seen)


@dataclass
class LoopCtx:
    """Where break/continue go, and what they carry."""

    carried: list
    structs: dict
    originals: dict
    types: list
    latch: Block | None = None
    exit: Block | None = None
    static: bool = False
    depth: int = 0               # dynamic-if depth at loop entry (static loops)
    records: list | None = None  # dry run: envs seen at break/continue/fallthrough
    exit_ends: list = field(default_factory=list)


class ControlFlow:
    """Mixin of the visitor: merges, if, loops. Expects ``self.b``, ``self.env``, ``self.eval``."""

    # -- merging paths ---------------------------------------------------------------------
    def merge(self, ends: list, hint: str = "merge"):
        """Join open (block, env) ends into one block; returns None when no path continues."""
        b = self.b
        if not ends:
            b.block = None
            return
        if len(ends) == 1:
            b.block, self.env = ends[0]
            return
        names = list(dict.fromkeys(n for _, env in ends for n in env))
        join = b.new_block(hint)
        new_env, per_end = {}, [[] for _ in ends]
        for name in names:
            vals = [env.get(name, _MISSING) for _, env in ends]
            if any(v is _MISSING or isinstance(v, Undefined) for v in vals):
                new_env[name] = Undefined(name, "it is assigned on only some of the paths that reach here")
                continue
            if all(_same(vals[0], v) for v in vals[1:]):
                new_env[name] = vals[0]
                continue
            flat = [flatten(v) for v in vals]
            if any(f[0] != flat[0][0] for f in flat):
                self.error(f"'{name}' holds values of different shapes on different paths")
            leaves_out = []
            for pos in range(len(flat[0][1])):
                column = [f[1][pos] for f in flat]
                if all(_same(column[0], c) for c in column[1:]):
                    leaves_out.append(column[0])
                    continue
                if len({c.type for c in column if isinstance(c, Node)}) > 1:
                    self.merge_type_error(name, column)
                t = leaf_type(column, f"'{name}'", b.loc)
                arg = Node("blockarg", t, (), {"index": len(join.args)}, b.loc)
                arg.block = join
                join.args.append(arg)
                leaves_out.append(arg)
                for k, c in enumerate(column):
                    per_end[k].append((c, t))
            new_env[name] = rebuild(flat[0][0], leaves_out, vals[0])
        for (blk, _), args in zip(ends, per_end):
            b.block = blk
            b.br(join, [b.coerce(c, t, "merged value") for c, t in args])
        b.block = join
        self.env = new_env

    def merge_type_error(self, name: str, column: list):
        """Paths meet with values of different types: name the variable and both assignments."""
        nodes = [c for c in column if isinstance(c, Node)]
        first = nodes[0]
        other = next(c for c in nodes if c.type != first.type)

        def where(v):
            hit = self.assigned_at.get((name, id(v)))
            return hit[1] if hit is not None and hit[0] is v else v.loc

        la, lb = where(first), where(other)
        at = lambda loc: f"line {loc.line}" if loc is not None else "another path"  # noqa: E731
        if name == RET:
            self.error(f"this @kaiodsl.func returns {first.type} ({at(la)}) and {other.type} ({at(lb)}); every "
                       f"return must give the same type: cast one (e.g. return kaiodsl.{first.type}(...))", lb)
        if name == VAL:
            self.error(f"the two sides of this conditional expression have types {first.type} and {other.type}; "
                       f"cast one side (e.g. kaiodsl.{first.type}(...))")
        self.error(f"'{name}' is {first.type} where it is assigned at {at(la)} and {other.type} at {at(lb)}; a "
                   f"variable must have one type where the paths meet: cast one assignment "
                   f"(e.g. {name} = kaiodsl.{first.type}(...))", lb)

    # -- if ----------------------------------------------------------------------------------
    def visit_If(self, node: ast.If):
        cond = self.b.truth(self.eval(node.test))
        if isinstance(cond, bool):
            self.visit_body(node.body if cond else node.orelse)
            return
        b = self.b
        then_b, else_b = b.new_block("then"), b.new_block("else")
        b.cbr(cond, then_b, else_b)
        env0, ends = self.env, []
        self.if_depth += 1
        for blk, body in ((then_b, node.body), (else_b, node.orelse)):
            self.env, b.block = dict(env0), blk
            self.visit_body(body)
            if b.block is not None:
                ends.append((b.block, self.env))
        self.if_depth -= 1
        self.merge(ends, "endif")

    # -- loops ---------------------------------------------------------------------------------
    def visit_While(self, node: ast.While):
        if node.orelse:
            self.error("while ... else is not supported", node)
        first = self.b.truth(self.eval(node.test))
        if first is False:
            return
        self.dynamic_loop(node, induction=None)

    def dynamic_loop(self, node, induction):
        """A loop that runs at run time. induction: (name, start, stop, step) for ``range`` loops."""
        b = self.b
        iname = induction[0] if induction else None
        carried = [n for n in assigned_names(node.body)
                   if n in self.env and not isinstance(self.env[n], Undefined) and n != iname]
        for n in carried:
            self.check_assignable(n, node)
        originals = {n: self.env[n] for n in carried}
        structs, leaves = {}, []
        for n in carried:
            s, l = flatten(originals[n])
            structs[n] = s
            leaves += l
        itype = None
        if induction:
            _, start, stop, step = induction
            start_n, stop_n = b.unify(start, stop, "range bounds")
            itype = start_n.type
            if not itype.is_int:
                self.error(f"range() bounds must be integers, got {itype}", node)
            induction = (iname, start_n, stop_n, b.coerce(step, itype, "range step")
                         if not isinstance(step, int) else step)
        types = self._infer_loop_types(node, carried, structs, leaves, induction, itype)
        ctx = LoopCtx(carried, structs, originals, types)
        ctx.latch, ctx.exit = Block("latch"), Block("endloop")
        # entry -> header
        header = b.new_block("loop")
        init = [b.coerce(l, t, "loop-carried value") for l, t in zip(leaves, types)]
        iarg = None
        if induction:
            iarg = Node("blockarg", itype, (), {"index": 0}, b.loc)
            iarg.block = header
            header.args.append(iarg)
            init = [induction[1]] + init
        hargs = self._add_args(header, types)
        b.br(header, init)
        b.block = header
        env_entry = self.env
        self.env = dict(env_entry)
        self._bind_carried(ctx, hargs)
        if induction:
            self.env[iname] = iarg
            cond = self._range_cond(iarg, induction[2], induction[3])
        else:
            cond = b.truth(self.eval(node.test))
        body_b = b.new_block("body")
        exit_pre = Block(f"loopexit{b._labels}")
        if cond is True:
            b.br(body_b)
        else:
            b.cbr(cond, body_b, exit_pre)
        b.block = body_b
        self.loops.append(ctx)
        self.visit_body(node.body)
        self.loops.pop()
        if b.block is not None:
            self.jump_loop(ctx, ctx.latch)
        # latch: step the induction variable and go around
        b._labels += 1
        ctx.latch.name = f"latch{b._labels}"
        latch_args = self._add_args(ctx.latch, types)
        b.fn.blocks.append(ctx.latch)
        b.block = ctx.latch
        nxt = [b.binary("add", iarg, induction[3])] if induction else []
        b.br(header, nxt + latch_args)
        if cond is not True:
            b.fn.blocks.append(exit_pre)
            b.block = exit_pre
            b.br(ctx.exit, hargs)
        b._labels += 1
        ctx.exit.name = f"endloop{b._labels}"
        exit_args = self._add_args(ctx.exit, types)
        b.fn.blocks.append(ctx.exit)
        b.block = ctx.exit
        self.env = dict(env_entry)
        self._bind_carried(ctx, exit_args)
        for n in assigned_names(node.body):
            if n not in carried:
                self.env[n] = Undefined(n, "it is assigned inside a run-time loop and is not defined after it")
        if iname:
            self.env[iname] = Undefined(iname, "the variable of a run-time loop is not defined after the loop")

    def _range_cond(self, i, stop, step):
        b = self.b
        if isinstance(step, int):
            if step == 0:
                self.error("range() step must not be zero")
            return b.compare("lt" if step > 0 else "gt", i, stop)
        up = b.compare("lt", i, stop)
        down = b.compare("gt", i, stop)
        pos = b.compare("gt", step, 0)
        return b.select(pos, up, down)

    def _add_args(self, blk: Block, types) -> list:
        out = []
        for t in types:
            a = Node("blockarg", t, (), {"index": len(blk.args)}, self.b.loc)
            a.block = blk
            blk.args.append(a)
            out.append(a)
        return out

    def _bind_carried(self, ctx: LoopCtx, leaves):
        pos = 0
        for n in ctx.carried:
            _, l = flatten(ctx.originals[n])
            self.env[n] = rebuild(ctx.structs[n], leaves[pos:pos + len(l)], ctx.originals[n])
            pos += len(l)

    def jump_loop(self, ctx: LoopCtx, target: Block):
        """Leave the current block for the loop's latch or exit, carrying the loop's variables."""
        b = self.b
        if ctx.records is not None:
            ctx.records.append(dict(self.env))
            b.block = None
            return
        leaves = []
        for n in ctx.carried:
            v = self.env.get(n)
            if isinstance(v, Undefined) or v is None:
                self.error(f"'{n}' is not defined on every path through the loop")
            s, l = flatten(v)
            if s != ctx.structs[n]:
                self.error(f"'{n}' changes shape inside the loop (it must keep the same structure)")
            for x, t in zip(l, ctx.types[len(leaves):]):
                if isinstance(x, Node) and x.type != t:
                    self.error(f"'{n}' changes type in the loop: it enters as {t} and becomes {x.type}; "
                               f"cast it explicitly (e.g. {n} = kaiodsl.{t}(...)) or give it the wider type "
                               f"before the loop")
            leaves += l
        args = [b.coerce(l, t, "loop-carried value") for l, t in zip(leaves, ctx.types)]
        b.br(target, args)

    def _infer_loop_types(self, node, carried, structs, leaves, induction, itype):
        """Types of the carried leaves; a dry run of the body when a leaf is a weak constant."""
        if all(isinstance(l, Node) for l in leaves):
            return [l.type for l in leaves]
        b = self.b
        saved = (len(b.fn.blocks), len(b.fn.shared), set(b.shared_names), b.block, self.env, b._labels)
        ctx = LoopCtx(carried, structs, {n: self.env[n] for n in carried}, [], records=[])
        scratch = Block("dryrun")
        b.block = scratch
        self.env = dict(self.env)
        if induction:
            ph = Node("blockarg", itype, (), {"index": 0})
            self.env[induction[0]] = ph
        self.loops.append(ctx)
        try:
            if not induction:
                self.eval(node.test)
            self.visit_body(node.body)
        finally:
            self.loops.pop()
        if b.block is not None:
            ctx.records.append(dict(self.env))
        del b.fn.blocks[saved[0]:]
        del b.fn.shared[saved[1]:]
        b.shared_names = saved[2]
        b.block, self.env, b._labels = saved[3], saved[4], saved[5]
        columns = [[l] for l in leaves]
        for env in ctx.records:
            pos = 0
            for n in carried:
                v = env.get(n)
                if v is None or isinstance(v, Undefined):
                    self.error(f"'{n}' is not defined on every path through the loop", node)
                s, l = flatten(v)
                if s != structs[n]:
                    self.error(f"'{n}' changes shape inside the loop (it must keep the same structure)", node)
                for k, x in enumerate(l):
                    columns[pos + k].append(x)
                pos += len(l)
        return [leaf_type(col, "a loop-carried variable", b.loc) for col in columns]

    def static_loop(self, node, values):
        """Unroll ``for x in <compile-time iterable>``: the body is visited once per value."""
        ctx = LoopCtx([], {}, {}, [], static=True, depth=self.if_depth)
        self.loops.append(ctx)
        try:
            for v in values:
                if self.b.block is None:
                    break
                self.assign_target(node.target, v)
                try:
                    self.visit_body(node.body)
                except _StaticContinue:
                    continue
                except _StaticBreak:
                    break
        finally:
            self.loops.pop()
        if node.orelse:
            self.error("for ... else is not supported", node)

    def visit_Break(self, node):
        ctx = self._loop(node, "break")
        if ctx.static:
            self._static_jump(ctx, node, _StaticBreak)
        self.jump_loop(ctx, ctx.exit)

    def visit_Continue(self, node):
        ctx = self._loop(node, "continue")
        if ctx.static:
            self._static_jump(ctx, node, _StaticContinue)
        self.jump_loop(ctx, ctx.latch)

    def _loop(self, node, what):
        if not self.loops:
            self.error(f"'{what}' outside a loop", node)
        return self.loops[-1]

    def _static_jump(self, ctx, node, exc):
        if self.if_depth != ctx.depth:
            self.error("break/continue in an unrolled loop (static_range or a compile-time iterable) "
                       "must not be under a run-time condition; use a run-time range() loop", node)
        raise exc()


class _StaticBreak(Exception):
    pass


class _StaticContinue(Exception):
    pass


class _Missing:
    pass


_MISSING = _Missing()
