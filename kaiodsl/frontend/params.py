"""Parameters: annotations of kernels and @funcs, Const values, binding a @func's call arguments."""

from __future__ import annotations

import inspect

from ..errors import CompileError
from ..ir.node import Node
from ..types import ConstType, InvalidType, PtrType, ScalarType, bool_, f32, i32
from .describe import describe

_PY_ANNOTATIONS = {int: i32, float: f32, bool: bool_}


def resolve_annotation(ann, globals_, where: str, loc=None):
    """A parameter annotation as a kaiodsl type (strings from ``from __future__ import annotations``
    are evaluated in the function's globals; int/float/bool mean i32/f32/bool)."""
    if isinstance(ann, str):
        try:
            ann = eval(ann, globals_)
        except Exception as e:
            raise CompileError(f"cannot resolve the annotation {ann!r} of {where}: {type(e).__name__}: {e}",
                               loc) from None
    return _PY_ANNOTATIONS.get(ann, ann)


def check_const_value(kernel_name: str, name: str, ann: ConstType, value, loc=None):
    """A Const parameter's value must match its annotation; the error points at the parameter."""
    inner = ann.inner
    if inner in (int, float, bool) and (not isinstance(value, inner)
                                        or (inner is int and isinstance(value, bool))):
        raise CompileError(f"{kernel_name}: Const parameter '{name}' must be {inner.__name__}, got "
                           f"{describe(value)} ({type(value).__name__}); pass {name}=<{inner.__name__}> "
                           f"to .compile()/.ptx() or as the launch argument", loc)
    return value


def bind_func_args(fx, func, args, kwargs, node) -> tuple[dict, set]:
    """(environment, Const names) for inlining ``func`` (a @kaiodsl.func) with these arguments."""
    sig = inspect.signature(func.fn)
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as e:
        fx.error(f"{func.__name__}(): {e}", node)
    bound.apply_defaults()
    g = func.globals()
    b = fx.b
    env, const_names = {}, set()
    for name, value in bound.arguments.items():
        ann = sig.parameters[name].annotation
        if ann is not inspect.Parameter.empty:
            ann = resolve_annotation(ann, g, f"parameter '{name}' of {func.__name__}", fx.src.loc(node))
            if isinstance(ann, InvalidType):
                fx.error(f"parameter '{name}' of {func.__name__} has annotation {ann.text}, which is not a "
                         f"type: {ann.reason}", node)
            if isinstance(ann, ScalarType):
                value = b.coerce(value, ann, f"argument '{name}' of {func.__name__}()")
            elif isinstance(ann, PtrType):
                if not (isinstance(value, Node) and value.type == ann):
                    fx.error(f"argument '{name}' of {func.__name__}() must be {ann}, got {describe(value)}", node)
            elif isinstance(ann, ConstType):
                const_names.add(name)
                if isinstance(value, Node):
                    fx.error(f"argument '{name}' of {func.__name__}() is Const: it needs a compile-time "
                             f"value, got {describe(value)}", node)
        env[name] = value
    return env, const_names
