"""How the frontend names Python constructs and values in messages to users.

Messages never show an IR value id, a memory address or a private class name: ``describe``
is the one place a value becomes words, for the visitor, the Builder and the builtins.
"""

from __future__ import annotations

import inspect

from ..ir.node import Node
from ..types import PtrType, TupleType, Type

_NODE_NAMES = {
    "Lambda": "lambda", "With": "'with'", "Try": "'try'", "Raise": "'raise'", "Global": "'global'",
    "Nonlocal": "'nonlocal'", "Delete": "'del'", "FunctionDef": "a nested function definition",
    "ClassDef": "a class definition", "Import": "'import'", "ImportFrom": "'import'",
    "Dict": "a dict literal", "Set": "a set literal", "DictComp": "a dict comprehension",
    "SetComp": "a set comprehension", "GeneratorExp": "a generator expression", "Await": "'await'",
    "Yield": "'yield'", "YieldFrom": "'yield from'", "Starred": "'*' unpacking",
    "AsyncFor": "'async for'", "AsyncWith": "'async with'", "Match": "'match'", "Attribute": "an attribute",
    "TryStar": "'try'"}

# What to write instead of each unsupported construct.
_INSTEAD = {
    "Lambda": "define the function with @kaiodsl.func",
    "FunctionDef": "define it at module level with @kaiodsl.func",
    "ClassDef": "define it outside the kernel",
    "Import": "import at module level", "ImportFrom": "import at module level",
    "Dict": "use a tuple or a list (index it with compile-time constants)",
    "DictComp": "use a list comprehension over kaiodsl.static_range",
    "Set": "use a tuple", "SetComp": "use a list comprehension over kaiodsl.static_range",
    "GeneratorExp": "use a list comprehension over kaiodsl.static_range, e.g. "
                    "[f(i) for i in kaiodsl.static_range(4)], and add its elements in a loop",
    "Raise": "use a compile-time assert for compile-time checks",
    "Try": "check conditions with if", "TryStar": "check conditions with if",
    "With": "call the operations directly",
    "Global": "pass the value as a kernel argument or read the global without assigning it",
    "Nonlocal": "return the value instead",
    "Delete": "leave the name unused",
}


def describe_node(node) -> str:
    """A Python syntax node as a user would call it: 'with', a dict literal, ..."""
    return _NODE_NAMES.get(type(node).__name__, f"'{type(node).__name__}'")


def instead(node) -> str:
    """'; <what to write instead>' for an unsupported syntax node, or ''."""
    hint = _INSTEAD.get(type(node).__name__)
    return f"; {hint}" if hint else ""


def describe(v) -> str:
    """A value as a user knows it: ``a run-time f32 value``, ``kaiodsl.thread_idx``, ``'abc'``."""
    hook = getattr(type(v), "__kaio_describe__", None)
    if hook is not None:
        return hook(v)
    if isinstance(v, Node):
        t = v.type
        if isinstance(t, PtrType):
            return f"a pointer ({t})"
        if isinstance(t, TupleType):
            return f"a register tuple of {len(t.elems)} values ({t})"
        if v.op == "const":
            return f"the constant {v.attrs['value']!r} ({t})"
        return f"a run-time {t} value"
    if isinstance(v, Type):
        return f"the type {v}"
    if v is None or isinstance(v, (bool, int, float, complex)):
        return repr(v)
    if isinstance(v, (str, bytes)):
        r = repr(v)
        return r if len(r) <= 40 else r[:37] + "..."
    if isinstance(v, (list, tuple)):
        kind = "list" if isinstance(v, list) else "tuple"
        return f"a {kind} of {len(v)} value{'s' if len(v) != 1 else ''}"
    if inspect.ismodule(v):
        return f"the module {v.__name__}"
    if isinstance(v, type):
        return f"the class {v.__name__.lstrip('_')}"
    exported = _exported_name(v)
    if exported is not None:
        return exported
    name = getattr(v, "__name__", None)
    if callable(v) and isinstance(name, str):
        return f"the function {name.lstrip('_')}"
    return f"a {type(v).__name__.lstrip('_')} object"


def _exported_name(v):
    """``kaiodsl.fast`` for an object the package exports under a public name, else None."""
    import kaiodsl

    for name, obj in vars(kaiodsl).items():
        if obj is v and not name.startswith("_"):
            return f"kaiodsl.{name}"
    return None
