"""Compile errors: each user mistake is a kaiodsl.CompileError at the right file, line and column, with a
helpful message, and a traceback without compiler-internal frames.

Each case marks its offending line with a ``# !<case>`` comment; ``anchor`` is the text the caret must
start under on that line.
"""

import pathlib
import re
import traceback
from types import SimpleNamespace

import numpy as np
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


# -- messages that used to leak internals (issue 10, item 17) -----------------------------------------
@kaiodsl.func
def mixed_returns(a, n):
    if n > 0:
        return a
    return n  # !e_mixed_returns


@case("kaiodsl.shfl_down(x[0])", r"^kaiodsl\.shfl_down\(\) takes 2 to 4 arguments \(1 given\); missing 'lane'; "
      r"call it as kaiodsl\.shfl_down\(value, lane, mask=0xFFFFFFFF, width=32\)$")
@kaiodsl.kernel
def e_shfl_arity(x: Ptr[f32]):
    x[0] = kaiodsl.shfl_down(x[0])  # !e_shfl_arity


@case("kaiodsl.exp(x[0], x[1])", r"^kaiodsl\.exp\(\) takes 1 argument \(2 given\); call it as kaiodsl\.exp\(x\)$")
@kaiodsl.kernel
def e_exp_arity(x: Ptr[f32]):
    x[0] = kaiodsl.exp(x[0], x[1])  # !e_exp_arity


@case("kaiodsl.exp(x)", r"^exp\(\) needs a number, got a pointer \(Ptr\[f32\]\)$")
@kaiodsl.kernel
def e_exp_pointer(x: Ptr[f32]):
    x[0] = kaiodsl.exp(x)  # !e_exp_pointer


@case("x[0] = kaiodsl.block_dim", r"kaiodsl\.block_dim \(read one field: \.x, \.y or \.z\) cannot be used as f32")
@kaiodsl.kernel
def e_store_dim3(x: Ptr[f32]):
    x[0] = kaiodsl.block_dim  # !e_store_dim3


@case("h * 70000.0", r"the constant 70000\.0 is out of range for f16 \(largest finite f16 is 65504\)")
@kaiodsl.kernel
def e_f16_literal_overflow(x: Ptr[f16]):
    h = x[0]
    x[1] = h * 70000.0  # !e_f16_literal_overflow


@case("y = n", r"'y' is f32 where it is assigned at line \d+ and i32 at line \d+; .*cast one assignment "
      r"\(e\.g\. y = kaiodsl\.f32\(\.\.\.\)\)")
@kaiodsl.kernel
def e_branch_types(x: Ptr[f32], n: i32):
    if n > 0:
        y = x[0]
    else:
        y = n  # !e_branch_types
    x[1] = y


@case("return n", r"this @kaiodsl\.func returns f32 \(line \d+\) and i32 \(line \d+\); every return must give "
      r"the same type")
@kaiodsl.kernel
def e_mixed_returns(x: Ptr[f32], n: i32):
    x[0] = mixed_returns(x[0], n)


@case("x[0] if n > 0 else x", r"the two sides of this conditional expression have types f32 and Ptr\[f32\]")
@kaiodsl.kernel
def e_ifexp_types(x: Ptr[f32], n: i32):
    y = x[0] if n > 0 else x  # !e_ifexp_types
    x[1] = y


@case("lst.append(x[0])", r"cannot change in place with \.append\(\) on run-time values; write `lst = lst \+ \[x\]`")
@kaiodsl.kernel
def e_list_append(x: Ptr[f32]):
    lst = []
    lst.append(x[0])  # !e_list_append
    x[1] = lst[0]


@case("(x[i] for i in range(4))", r"a generator expression is not supported.*use a list comprehension over "
      r"kaiodsl\.static_range")
@kaiodsl.kernel
def e_generator(x: Ptr[f32]):
    x[4] = sum(x[i] for i in range(4))  # !e_generator


@case("np.exp(x[0])", r"^numpy\.exp runs in Python at compile time and cannot take run-time values; use kaiodsl\.exp")
@kaiodsl.kernel
def e_numpy_exp(x: Ptr[f32]):
    x[1] = np.exp(x[0])  # !e_numpy_exp


@case("round(x[0])", r"Python's round\(\) .*use kaiodsl\.round_even.*builtins that take run-time values in a "
      r"kernel: abs, bool, enumerate, float, int, isinstance, len, list, max, min, reversed, tuple, zip")
@kaiodsl.kernel
def e_round_runtime(x: Ptr[f32]):
    x[1] = round(x[0])  # !e_round_runtime


@case("Ptr[Ptr[f32]]", r"Ptr\[Ptr\[f32\]\] is not a type: a pointer's element must be a scalar type")
@kaiodsl.kernel
def e_ptr_ptr_in_body(x: Ptr[f32]):
    p = kaiodsl.ptr_cast(x, Ptr[Ptr[f32]])  # !e_ptr_ptr_in_body
    p[0] = x


@case("helper(kaiodsl.i32(5))", r"compile-time call to the function helper failed: it was given the constant 5 "
      r"\(i32\), a kaiodsl value that plain Python cannot compute with")
@kaiodsl.kernel
def e_helper_typed_const(x: Ptr[f32]):
    x[0] = helper(kaiodsl.i32(5))  # !e_helper_typed_const


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


def test_branch_type_mismatch_names_both_assignment_lines():
    with pytest.raises(kaiodsl.CompileError) as info:
        e_branch_types.compile()
    then_line = next(n for n, l in enumerate(LINES, 1) if l.strip() == "y = x[0]" and "e_branch_types" in
                     LINES[n - 3])
    else_line, _ = _expected(e_branch_types, "y = n")
    assert f"assigned at line {then_line} and i32 at line {else_line}" in info.value.message


def test_mixed_returns_name_both_return_lines():
    with pytest.raises(kaiodsl.CompileError) as info:
        e_mixed_returns.compile()
    first = next(n for n, l in enumerate(LINES, 1) if l.strip() == "return a")
    second, _ = _expected(e_mixed_returns, "return n")
    assert f"returns f32 (line {first}) and i32 (line {second})" in info.value.message
    assert info.value.loc.func == "mixed_returns"


@pytest.mark.parametrize("annotation,reason", [
    ("Ptr[Ptr[f32]]", r"a pointer's element must be a scalar type; pass a table of addresses as Ptr\[u64\]"),
    ('Ptr[f32, "texture"]', r"the memory space must be 'global' \(the default\), 'shared' or 'local', got 'texture'"),
    ("Ptr[3]", r"write Ptr\[T\] with a kaiodsl scalar type T"),
])
def test_bad_pointer_annotation_is_a_compile_error_at_the_parameter(annotation, reason, tmp_path):
    import importlib.util
    path = tmp_path / "bad_annotation.py"
    path.write_text("import kaiodsl\nfrom kaiodsl import Ptr, f32\n\n\n@kaiodsl.kernel\n"
                    f"def k(x: {annotation}):\n    x[0] = 1.0\n")
    spec = importlib.util.spec_from_file_location("bad_annotation", path)
    with pytest.raises(kaiodsl.CompileError) as info:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    e = info.value
    assert re.search(r"kernel parameter 'x' has annotation .*" + reason, e.message), e.message
    assert (pathlib.Path(e.loc.file).resolve(), e.loc.line, e.loc.col) == (path.resolve(), 6, 6)
    package = pathlib.Path(kaiodsl.__file__).resolve().parent      # frames inside the package itself
    frames = [f for f in traceback.extract_tb(e.__traceback__)
              if pathlib.Path(f.filename).resolve().is_relative_to(package)]
    assert [f.name for f in frames] == ["kernel"], frames


def test_wrong_const_value_points_at_the_parameter():
    @kaiodsl.kernel
    def k(x: Ptr[f32], N: Const[int]):  # !wrong_const
        x[0] = 1.0

    with pytest.raises(kaiodsl.CompileError) as info:
        k.compile(N=1.5)
    line, col = _expected(SimpleNamespace(__name__="wrong_const"), "N: Const")
    assert info.value.loc is not None and (info.value.loc.line, info.value.loc.col) == (line, col)
    assert "Const parameter 'N' must be int, got 1.5" in info.value.message


def test_check_const_value_locates_the_parameter():
    from kaiodsl.frontend.params import check_const_value
    from kaiodsl.types import ConstType

    loc = e_assign_const.param_loc("N")
    with pytest.raises(kaiodsl.CompileError) as info:
        check_const_value("e_assign_const", "N", ConstType(int), 1.5, loc)
    assert info.value.loc == loc and "must be int, got 1.5 (float)" in info.value.message
    with pytest.raises(kaiodsl.CompileError):
        check_const_value("e_assign_const", "N", ConstType(int), True, loc)
    assert check_const_value("e_assign_const", "N", ConstType(int), 7, loc) == 7
