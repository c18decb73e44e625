"""Compile errors: each user mistake is a kaiodsl.CompileError at the right file, line and column, with a
helpful message, and a traceback without compiler-internal frames.

Each case marks its offending line with a ``# !<case>`` comment; ``anchor`` is the text the caret must
start under on that line.
"""

import pathlib
import re
import traceback
from types import SimpleNamespace

import pytest

import kaiodsl
from kaiodsl import Const, Ptr, f16, f32, f64, i32, u32

THIS = pathlib.Path(__file__).resolve()
LINES = THIS.read_text().splitlines()
CASES = []


def case(anchor: str, match: str, arch: str = "sm_80", **consts):
    def deco(k):
        CASES.append(pytest.param(k, anchor, match, arch, consts, id=k.__name__))
        return k
    return deco


def helper(v):  # plain Python: compile time only
    return v + 1


@kaiodsl.func
def two_args(a, b):
    return a + b


@kaiodsl.kernel
def other_kernel(x: Ptr[f32]):
    x[0] = 1.0


# -- unsupported syntax --------------------------------------------------------------------------------
@case("lambda", r"lambda is not supported")
@kaiodsl.kernel
def e_lambda(x: Ptr[f32]):
    f = lambda v: v * 2  # !e_lambda  # noqa: E731
    x[0] = f(1.0)


@case("with", r"'with' is not supported")
@kaiodsl.kernel
def e_with(x: Ptr[f32]):
    with open("f"):  # !e_with
        x[0] = 1.0


@case("try", r"'try' is not supported")
@kaiodsl.kernel
def e_try(x: Ptr[f32]):
    try:  # !e_try
        x[0] = 1.0
    except Exception:
        pass


@case("{1: 2}", r"a dict literal is not supported")
@kaiodsl.kernel
def e_dict(x: Ptr[f32]):
    d = {1: 2}  # !e_dict
    x[0] = d


@case("def inner", r"a nested function definition is not supported")
@kaiodsl.kernel
def e_nested_def(x: Ptr[f32]):
    def inner():  # !e_nested_def
        return 1
    x[0] = 1.0


@case("class", r"a class definition is not supported")
@kaiodsl.kernel
def e_class(x: Ptr[f32]):
    class C:  # !e_class
        pass
    x[0] = 1.0


@case("global", r"'global' is not supported")
@kaiodsl.kernel
def e_global(x: Ptr[f32]):
    global LINES  # !e_global
    x[0] = 1.0


@case("del", r"'del' is not supported")
@kaiodsl.kernel
def e_del(x: Ptr[f32]):
    v = 1.0
    del v  # !e_del
    x[0] = 1.0


@case("raise", r"'raise' is not supported")
@kaiodsl.kernel
def e_raise(x: Ptr[f32]):
    raise ValueError("no")  # !e_raise


@case("{1, 2}", r"a set literal is not supported")
@kaiodsl.kernel
def e_set(x: Ptr[f32]):
    s = {1, 2}  # !e_set
    x[0] = 1.0


@case("for", r"for \.\.\. else is not supported")
@kaiodsl.kernel
def e_for_else(x: Ptr[f32], n: i32):
    for i in range(n):  # !e_for_else
        x[i] = 1.0
    else:
        x[0] = 2.0


# -- types ---------------------------------------------------------------------------------------------
@case("h[i] = x[i]", r"stored value .*has type f32, expected f16; cast it explicitly")
@kaiodsl.kernel
def e_store_type(x: Ptr[f32], h: Ptr[f16]):
    i = kaiodsl.thread_idx.x
    h[i] = x[i]  # !e_store_type


@case("a[i] + u[i]", r"i32 and u32 do not mix implicitly; cast one side")
@kaiodsl.kernel
def e_signed_unsigned(a: Ptr[i32], u: Ptr[u32]):
    i = kaiodsl.thread_idx.x
    a[i] = a[i] + u[i]  # !e_signed_unsigned


@case("x[i] << 2", r"shift needs an integer, got f32")
@kaiodsl.kernel
def e_shift_float(x: Ptr[f32]):
    i = kaiodsl.thread_idx.x
    x[i] = x[i] << 2  # !e_shift_float


@case("x[f]", r"pointer index must be an integer, got f32")
@kaiodsl.kernel
def e_float_index(x: Ptr[f32], f: f32):
    x[f] = 1.0  # !e_float_index


@case("x[i] ** n", r"'\*\*' on run-time values needs a small constant integer exponent")
@kaiodsl.kernel
def e_dynamic_pow(x: Ptr[f32], n: i32):
    i = kaiodsl.thread_idx.x
    x[i] = x[i] ** n  # !e_dynamic_pow


@case("for", r"'acc' changes type in the loop: it enters as i32 and becomes f32; cast it")
@kaiodsl.kernel
def e_carried_type_change(x: Ptr[f32], n: i32):
    acc = kaiodsl.i32(0)
    for i in range(n):  # !e_carried_type_change
        acc = acc + x[i]
    x[0] = kaiodsl.f32(acc)


@case("kaiodsl.exp(d)", r"exp\(\) is not available for f64")
@kaiodsl.kernel
def e_f64_exp(x: Ptr[f64]):
    d = x[0]
    x[1] = kaiodsl.exp(d)  # !e_f64_exp


@case("kaiodsl.atomic_min(x, 0, 1.0)", r"atomic_min\(\) on f32 is not supported")
@kaiodsl.kernel
def e_atomic_type(x: Ptr[f32]):
    kaiodsl.atomic_min(x, 0, 1.0)  # !e_atomic_type


# -- names ---------------------------------------------------------------------------------------------
@case("undefined_thing", r"name 'undefined_thing' is not defined")
@kaiodsl.kernel
def e_undefined(x: Ptr[f32]):
    x[0] = undefined_thing  # !e_undefined  # noqa: F821


@case("y", r"'y' may be undefined here: it is assigned on only some of the paths")
@kaiodsl.kernel
def e_some_paths(x: Ptr[f32]):
    if x[0] > 0.0:
        y = 1.0
    x[1] = y  # !e_some_paths


@case("N", r"cannot assign to 'N': it is a Const parameter", N=4)
@kaiodsl.kernel
def e_assign_const(x: Ptr[f32], N: Const[int]):
    N = 5  # !e_assign_const
    x[0] = 1.0


# -- calls ---------------------------------------------------------------------------------------------
@case("kaiodsl.sqrt(x[0], x[1])", r"sqrt\(\).*(positional argument|takes)")
@kaiodsl.kernel
def e_builtin_arity(x: Ptr[f32]):
    x[0] = kaiodsl.sqrt(x[0], x[1])  # !e_builtin_arity


@case("two_args(x[0])", r"two_args\(\): missing a required argument: 'b'")
@kaiodsl.kernel
def e_func_arity(x: Ptr[f32]):
    x[0] = two_args(x[0])  # !e_func_arity


@case("helper(x[0])", r"'helper' is plain Python.*decorate it with @kaiodsl.func")
@kaiodsl.kernel
def e_helper_runtime(x: Ptr[f32]):
    x[1] = helper(x[0])  # !e_helper_runtime


@case("other_kernel(x)", r"cannot call kernel 'other_kernel' from device code; make it a @kaiodsl.func")
@kaiodsl.kernel
def e_call_kernel(x: Ptr[f32]):
    other_kernel(x)  # !e_call_kernel


@case("print(x[0])", r"print\(\) is not supported")
@kaiodsl.kernel
def e_print(x: Ptr[f32]):
    print(x[0])  # !e_print


# -- compile-time values --------------------------------------------------------------------------------
@case("kaiodsl.static_range(n)", r"static_range\(\) needs compile-time integer bounds.*use range\(\)")
@kaiodsl.kernel
def e_static_range_dynamic(x: Ptr[f32], n: i32):
    for i in kaiodsl.static_range(n):  # !e_static_range_dynamic
        x[i] = 1.0


@case("kaiodsl.shared_array(f32, n)", r"shape must be compile-time ints.*Const parameter")
@kaiodsl.kernel
def e_shared_dynamic(x: Ptr[f32], n: i32):
    s = kaiodsl.shared_array(f32, n)  # !e_shared_dynamic
    x[0] = s[0]


@case("acc[i]", r"local array .*must be indexed with compile-time constants")
@kaiodsl.kernel
def e_local_dynamic_index(x: Ptr[f32]):
    acc = kaiodsl.local_array(f32, 4)
    i = kaiodsl.thread_idx.x
    x[0] = acc[i]  # !e_local_dynamic_index


@case("break", r"break/continue in an unrolled loop .* must not be under a run-time condition")
@kaiodsl.kernel
def e_dynamic_break_static(x: Ptr[f32]):
    for k in kaiodsl.static_range(4):
        if x[k] > 0.0:
            break  # !e_dynamic_break_static
        x[k] = 1.0


@case("while", r"while \.\.\. else is not supported")
@kaiodsl.kernel
def e_while_else(x: Ptr[f32], n: i32):
    while n > 0:  # !e_while_else
        n -= 1
    else:
        x[0] = 1.0


@case("return x[0]", r"a kernel cannot return a value; store results through a pointer")
@kaiodsl.kernel
def e_return_value(x: Ptr[f32]):
    return x[0]  # !e_return_value


@case("assert N > 4", r"compile-time assertion failed: N must exceed 4", N=2)
@kaiodsl.kernel
def e_static_assert(x: Ptr[f32], N: Const[int]):
    assert N > 4, "N must exceed 4"  # !e_static_assert
    x[0] = 1.0


@case("kaiodsl.tanh(x[0])", r"tanh needs sm_75 or newer; this kernel is compiled for sm_70", arch="sm_70")
@kaiodsl.kernel
def e_arch_gate(x: Ptr[f32]):
    x[0] = kaiodsl.tanh(x[0])  # !e_arch_gate


@case("kaiodsl.load(x, 0, vec=4)", r"4 x f64 is 32 bytes; vector accesses are at most 16 bytes")
@kaiodsl.kernel
def e_vector_too_wide(x: Ptr[f64]):
    v = kaiodsl.load(x, 0, vec=4)  # !e_vector_too_wide
    x[0] = v[0]


@case("a, b", r"cannot unpack 3 values into 2 names")
@kaiodsl.kernel
def e_unpack(x: Ptr[f32]):
    a, b = 1.0, 2.0, 3.0  # !e_unpack
    x[0] = a + b


@case("i in (1, 2)", r"'in' is not supported on run-time values")
@kaiodsl.kernel
def e_in_runtime(x: Ptr[f32]):
    i = kaiodsl.thread_idx.x
    if i in (1, 2):  # !e_in_runtime
        x[i] = 1.0


@case("x + x", r"pointer - pointer|'add' does not apply|does not combine|not supported")
@kaiodsl.kernel
def e_ptr_plus_ptr(x: Ptr[f32]):
    y = x + x  # !e_ptr_plus_ptr
    y[0] = 1.0


def _expected(k, anchor):
    marker = f"# !{k.__name__}"
    (idx,) = [n for n, l in enumerate(LINES) if marker in l]
    col = LINES[idx].index(anchor)
    return idx + 1, col


@pytest.mark.parametrize("kernel,anchor,match,arch,consts", CASES)
def test_compile_error_location_and_message(kernel, anchor, match, arch, consts):
    line, col = _expected(kernel, anchor)
    with pytest.raises(kaiodsl.CompileError) as info:
        kernel.compile(arch=arch, **consts)
    e = info.value
    assert re.search(match, e.message), e.message
    assert e.loc is not None
    assert pathlib.Path(e.loc.file).resolve() == THIS
    assert (e.loc.line, e.loc.col) == (line, col), str(e)
    rendered = str(e)
    assert f"line {line}, col {col + 1}" in rendered
    caret_line = rendered.splitlines()[2]
    src_line = rendered.splitlines()[1]
    assert src_line[caret_line.index("^"):].startswith(anchor), rendered
    # no compiler internals in the traceback: the test's frame and kaiodsl's API entry only
    frames = traceback.extract_tb(e.__traceback__)
    assert [f.name for f in frames] == ["test_compile_error_location_and_message", "compile"], frames


def test_there_are_at_least_25_distinct_mistakes():
    assert len(CASES) >= 25


def test_missing_annotation_is_reported_at_decoration():
    with pytest.raises(kaiodsl.CompileError) as info:
        @kaiodsl.kernel
        def k(x: Ptr[f32], n):  # !missing_annotation
            x[0] = 1.0
    e = info.value
    line, col = _expected(SimpleNamespace(__name__="missing_annotation"), "n)")
    assert (e.loc.line, e.loc.col) == (line, col)
    assert "kernel parameter 'n' needs a type annotation" in e.message
    frames = traceback.extract_tb(e.__traceback__)
    assert [f.name for f in frames] == ["test_missing_annotation_is_reported_at_decoration", "kernel"]


def test_error_inside_func_points_into_the_func():
    @kaiodsl.func
    def bad(v):
        return v << 1  # !bad_in_func

    @kaiodsl.kernel
    def k(x: Ptr[f32]):
        x[0] = bad(x[0])

    with pytest.raises(kaiodsl.CompileError) as info:
        k.compile()
    line, col = _expected(SimpleNamespace(__name__="bad_in_func"), "v << 1")
    assert (info.value.loc.line, info.value.loc.col) == (line, col)
    assert info.value.loc.func == "bad"


def test_ptx_and_ir_entries_are_clean_too():
    with pytest.raises(kaiodsl.CompileError) as info:
        e_lambda.ptx()
    names = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert names == ["test_ptx_and_ir_entries_are_clean_too", "ptx"]
    with pytest.raises(kaiodsl.CompileError) as info:
        e_lambda.ir(optimized=False)
    names = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert names == ["test_ptx_and_ir_entries_are_clean_too", "ir"]
