"""Every exported kaiodsl builtin, called wrongly inside a kernel (wrong argument count, wrong kinds of
argument), fails with a CompileError that points at the call's line and shows no compiler internals:
no IR value ids, no memory addresses, no private names, no '<locals>' closures, no tracebacks.
"""

import importlib.util
import itertools
import pathlib
import re
import traceback

import pytest

import kaiodsl
from kaiodsl.frontend.values import Builtin

# Text that must never reach a user: closures, addresses, IR ids and env slots, node classes,
# private names, Python's own arity complaints about internal functions, traceback frames.
INTERNAL = re.compile(r"<locals>|0x[0-9a-f]{6,}|%\d+|\$\w+|\bNode\b|\b_[A-Za-z]\w*|Traceback|File \"|"
                      r"positional argument|\bimpl\(|object at")


def _builtins():
    out = {}
    for ns, prefix in ((kaiodsl, "kaiodsl."), (kaiodsl.fast, "kaiodsl.fast.")):
        for name in dir(ns):
            obj = getattr(ns, name)
            if isinstance(obj, Builtin) and not name.startswith("_"):
                out[prefix + name] = obj
    return out


BUILTINS = _builtins()
# Wrong kinds of argument, as kernel source: a pointer, a Dim3, Python values of the wrong kind,
# a builtin, a type, a 64-bit float, a register tuple.
WRONG = ["x", "kaiodsl.thread_idx", "'abc'", "[1, 2]", "None", "kaiodsl.exp", "kaiodsl.f32", "d", "(v, v)",
         "1.5", "-7", "n > 0"]


def _calls(name: str, fn: Builtin):
    """(call source, what is wrong) for one builtin."""
    ps = list(fn.signature.parameters.values())
    pos = [p for p in ps if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    need = [p for p in pos if p.default is p.empty]
    variadic = any(p.kind is p.VAR_POSITIONAL for p in ps)
    if not variadic:
        yield f"{name}({', '.join(['v'] * (len(pos) + 1))})", "one argument too many"
    if need:
        yield f"{name}()", "no arguments"
    yield f"{name}(v, nonexistent_kw=1)", "an unknown keyword"
    n = max(len(need), 1)
    for kind in WRONG:
        yield f"{name}({', '.join([kind] * n)})", f"every argument {kind}"
        for i in range(1, n):
            args = ["v"] * n
            args[i] = kind
            yield f"{name}({', '.join(args)})", f"argument {i} {kind}"


EXTRA = [("kaiodsl.f32(v, v)", "a scalar type with two arguments"), ("kaiodsl.thread_idx.w", "a Dim3 field"),
         ("kaiodsl.thread_idx + 1", "arithmetic on a Dim3"), ("abs()", "abs()"), ("abs(x)", "abs of a pointer"),
         ("min(v)", "min of one value"), ("round(v)", "round on a run-time value"),
         ("kaiodsl.f16(v) * 70000.0", "an f16 literal out of range"), ("x + x", "pointer + pointer"),
         ("v[0]", "indexing a scalar"), ("x.nonexistent", "an attribute of a pointer"),
         ("tuple(v)", "tuple of a scalar"), ("zip(v, v)", "zip of scalars"), ("len(x)", "len of a pointer"),
         ("v(1)", "calling a value"), ("kaiodsl.Ptr[f32](1)", "calling a pointer type"), ("-x", "negating a pointer"),
         ("x ** 2", "a power of a pointer"), ("kaiodsl.fast.nothing(v)", "a missing fast builtin"),
         ("kaiodsl.static_range(4)(1)", "calling a static_range"), ("sum([v, v])", "sum on run-time values"),
         ("kaiodsl.shared_array(f32, 4) + 1", "arithmetic on a shared array"), ("range(v)", "range outside for"),
         ("kaiodsl.load(x, 0, vec=2) + 1", "arithmetic on a register tuple"), ("float(v, v)", "float of two")]


def _module(tmp_path, calls):
    """A module with one kernel per call; returns (module, {kernel name: (line, call, why)})."""
    lines = ["import kaiodsl", "from kaiodsl import Ptr, f32, f64, i32", ""]
    where = {}
    for k, (call, why) in enumerate(calls):
        lines += ["@kaiodsl.kernel", f"def k{k}(x: Ptr[f32], y: Ptr[f64], n: i32):", "    v = x[0]",
                  "    d = y[0]", f"    r = {call}", ""]
        where[f"k{k}"] = (len(lines) - 1, call, why)
    path = tmp_path / "user_kernels.py"
    path.write_text("\n".join(lines))
    spec = importlib.util.spec_from_file_location(f"user_kernels_{tmp_path.name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, where, path


def _check(mod, where, path, require_error: bool):
    bad = []
    for kname, (line, call, why) in where.items():
        k = getattr(mod, kname)
        try:
            k.ir(optimized=False)
            k.ptx()  # what the frontend accepts must also get through the passes and codegen
        except kaiodsl.CompileError as e:
            msg = e.message
            if INTERNAL.search(msg):
                bad.append(f"{call} ({why}): internal text {INTERNAL.search(msg).group()!r} in: {msg}")
            elif e.loc is None or e.loc.line != line or pathlib.Path(e.loc.file).resolve() != path.resolve():
                bad.append(f"{call} ({why}): points at {e.loc and (e.loc.file, e.loc.line)}, not line {line}")
            frames = [f.name for f in traceback.extract_tb(e.__traceback__)]
            if frames not in (["_check", "ir"], ["_check", "ptx"]):  # this helper and the API entry only
                bad.append(f"{call} ({why}): traceback shows compiler frames {frames}")
        except Exception as e:  # anything but a CompileError is a leak
            bad.append(f"{call} ({why}): raised {type(e).__name__}: {e}")
        else:
            if require_error:
                bad.append(f"{call} ({why}): compiled without an error")
    return bad


def test_every_exported_builtin_is_walked():
    assert len(BUILTINS) >= 70, sorted(BUILTINS)
    assert {"kaiodsl.exp", "kaiodsl.shfl_down", "kaiodsl.mma", "kaiodsl.load", "kaiodsl.fast.exp"} <= set(BUILTINS)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_wrong_calls_of_a_builtin_give_clean_errors(name, tmp_path):
    calls = list(_calls(name, BUILTINS[name]))
    mod, where, path = _module(tmp_path, calls)
    bad = _check(mod, where, path, require_error=False)
    # the argument-count mistakes must always be errors
    arity = {k: w for k, w in where.items() if w[2] in ("one argument too many", "no arguments",
                                                           "an unknown keyword")}
    bad += _check(mod, arity, path, require_error=True)
    assert not bad, "\n".join(bad)


def test_other_wrong_calls_give_clean_errors(tmp_path):
    mod, where, path = _module(tmp_path, EXTRA)
    bad = _check(mod, where, path, require_error=True)
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("call,want", [
    ("kaiodsl.exp(v, v)", "kaiodsl.exp() takes 1 argument (2 given); call it as kaiodsl.exp(x)"),
    ("kaiodsl.shfl_down(v)", "kaiodsl.shfl_down() takes 2 to 4 arguments (1 given); missing 'lane'"),
    ("kaiodsl.fma(v, v)", "kaiodsl.fma() takes 3 arguments (2 given)"),
    ("kaiodsl.load(x, 0, vec2=2)", "kaiodsl.load() has no argument named 'vec2'"),
])
def test_arity_messages_use_the_user_visible_signature(call, want, tmp_path):
    mod, where, path = _module(tmp_path, [(call, "")])
    with pytest.raises(kaiodsl.CompileError) as info:
        mod.k0.ir(optimized=False)
    assert want in info.value.message


def test_all_combinations_are_distinct_cases():
    calls = list(itertools.chain.from_iterable(_calls(n, b) for n, b in BUILTINS.items()))
    assert len(calls) == len(set(calls)) and len(calls) > 1000
