"""args.py: dtype of array-likes, scalar conversion with range checks, argument counts."""

import numpy as np
import pytest

import kaiodsl.types as T
from kaiodsl.compiled import ParamInfo
from kaiodsl.errors import ArgumentError
from kaiodsl.runtime import args as A


def P(name, t, w=False):
    return ParamInfo(name, t, w)


@pytest.mark.parametrize("np_dtype, st", [
    ("float32", T.f32), ("float16", T.f16), ("float64", T.f64), ("int8", T.i8), ("uint8", T.u8),
    ("int32", T.i32), ("uint32", T.u32), ("int64", T.i64), ("uint16", T.u16), ("bool", T.bool_)])
def test_numpy_dtypes(np_dtype, st):
    assert A.array_scalar_type(np.zeros(2, np_dtype)) is st


def test_cai_and_dlpack_dtypes():
    class CAI:
        __cuda_array_interface__ = {"typestr": "<f2", "shape": (2,), "data": (0, False), "version": 2}

    assert A.array_scalar_type(CAI()) is T.f16
    assert A.scalar_type_of_dlpack(4, 16) is T.bf16
    assert A.scalar_type_of_dlpack(2, 32) is T.f32
    assert A.scalar_type_of_dlpack(1, 8) is T.u8
    assert A.scalar_type_of_torch("torch.bfloat16") is T.bf16


def test_wrong_dtype_names_parameter_and_both_dtypes():
    with pytest.raises(ArgumentError) as e:
        A.check_pointer("k", P("x", T.Ptr[T.f16]), np.zeros(4, np.float32))
    msg = str(e.value)
    assert "'x'" in msg and "f16" in msg and "f32" in msg


def test_bf16_accepts_raw_uint16_bits():
    A.check_pointer("k", P("x", T.Ptr[T.bf16]), np.zeros(4, np.uint16))
    with pytest.raises(ArgumentError, match="u16 raw bits"):
        A.check_pointer("k", P("x", T.Ptr[T.bf16]), np.zeros(4, np.float16))


def test_ml_dtypes_bfloat16_if_installed():
    ml = pytest.importorskip("ml_dtypes")
    A.check_pointer("k", P("x", T.Ptr[T.bf16]), np.zeros(4, ml.bfloat16))


def test_scalar_for_pointer_and_array_for_scalar():
    with pytest.raises(ArgumentError, match="expects an array of f32"):
        A.check_pointer("k", P("x", T.Ptr[T.f32]), 3.0)
    with pytest.raises(ArgumentError, match="expects a scalar"):
        A.convert_scalar("k", P("n", T.i32), np.zeros(3))


@pytest.mark.parametrize("t, value, out", [
    (T.i32, 7, np.int32(7)), (T.i32, -2**31, np.int32(-2**31)), (T.u32, 2**32 - 1, np.uint32(2**32 - 1)),
    (T.i64, 2**40, np.int64(2**40)), (T.i8, -128, np.int8(-128)), (T.u8, np.uint8(3), np.uint8(3)),
    (T.f32, 1.5, np.float32(1.5)), (T.f32, 2, np.float32(2)), (T.f16, 0.5, np.float16(0.5)),
    (T.f64, 1e300, np.float64(1e300)), (T.bool_, True, np.bool_(True)), (T.i32, True, np.int32(1)),
    (T.f32, float("inf"), np.float32("inf")),
])
def test_scalar_conversion(t, value, out):
    got = A.convert_scalar("k", P("v", t), value)
    assert got.dtype == out.dtype and (got == out or (np.isnan(got) and np.isnan(out)))


@pytest.mark.parametrize("t, value, match", [
    (T.i32, 2**40, "out of range"), (T.i32, 2**31, "out of range"), (T.u32, -1, "out of range"),
    (T.u8, 256, "out of range"), (T.i32, 1.5, "expects an int"), (T.f32, "x", "expects a number"),
    (T.f16, 1e6, "does not fit in f16"), (T.f32, 1e39, "does not fit in f32"),
    (T.bool_, 2, "expects a bool"),
])
def test_scalar_errors(t, value, match):
    with pytest.raises(ArgumentError, match=match) as e:
        A.convert_scalar("k", P("v", t), value)
    assert "'v'" in str(e.value)


def test_bf16_scalar_rounds_to_bits():
    assert A.convert_scalar("k", P("v", T.bf16), 1.0) == 0x3F80
    assert A.convert_scalar("k", P("v", T.bf16), 0x3F80) == 0x3F80  # raw bits pass as ints
    assert A.float_to_bf16_bits(1.00390625) == 0x3F80  # ties to even
    bits = A.floats_to_bf16_bits(np.array([1.0, -2.0, 3.140625], np.float32))
    assert bits.tolist() == [0x3F80, 0xC000, 0x4049]


def test_count_and_validate():
    params = (P("x", T.Ptr[T.f32]), P("n", T.i32))
    with pytest.raises(ArgumentError, match="takes 2 runtime argument"):
        A.check_count("k", params, (1,))
    x = np.zeros(3, np.float32)
    vals = A.validate_args("k", params, (x, 3))
    assert vals[0] is x and vals[1] == 3 and vals[1].dtype == np.int32


def test_sim_buffer_objects_are_arrays():
    class Buf:
        _sim_buffer = np.zeros(4, np.float16)

    A.check_pointer("k", P("x", T.Ptr[T.f16]), Buf())
    assert A.host_array(Buf()) is Buf._sim_buffer
