"""Every op rejects bad arguments with kaiodsl.ArgumentError before it allocates or launches
(the no_launch fixture turns either into an AssertionError), and the message names the
argument and its value."""

import re

import numpy as np
import pytest

import kaiodsl
import kaiodsl.runtime
from kaiodsl import ops

F16 = np.float16


def z(shape, dt=F16):
    """Fresh non-zero inputs (validation must not depend on values)."""
    return np.full(shape, 1, dt)


def i8(shape):
    return np.full(shape, 3, np.int8)


def dev(x, dt=None):
    return kaiodsl.runtime.to_device(x, dt)


class huge:  # noqa: N801
    """A C-contiguous [rows, K] device array that exists only as its __cuda_array_interface__ (no memory:
    validation must refuse it before anything reads it)."""

    def __init__(self, rows, dt=F16, K=2**31 + 16):
        self.__cuda_array_interface__ = {"shape": (rows, K), "typestr": np.dtype(dt).str, "data": (0, False),
                                         "strides": None, "version": 3}


A, B_KN, B_NK = (16, 32), (32, 24), (24, 32)
DEC = ops.DecodeConfig(n_tiles=1, k_split=2, nw=1, unroll=1)
W4 = lambda: ops.pack_int4(np.full((16, 128), 7, np.uint8))    # noqa: E731  N=16, K=128
S4 = lambda g=128, dt=F16: np.full((16, 128 // g), 0.1, dt)      # noqa: E731

CASES = {
    # -- matmul -----------------------------------------------------------------------------------
    "mm-a-dtype": (lambda: ops.matmul(z(A, np.float32), z(B_KN)), ["'a'", "f32", "allowed: f16, bf16"]),
    "mm-b-dtype": (lambda: ops.matmul(z(A), z(B_KN, np.float32)), ["'b'", "f32", "allowed: f16"]),
    "mm-int-dtype": (lambda: ops.matmul(i8(A), i8(B_KN)), ["'a'", "i8"]),
    "mm-a-rank": (lambda: ops.matmul(z((2,) + A), z(B_KN)), ["'a'", "(2, 16, 32)"]),
    "mm-b-rank": (lambda: ops.matmul(z(A), z((32,))), ["'b'", "(32,)"]),
    "mm-K": (lambda: ops.matmul(z(A), z((40, 24))), ["K=32", "40", "(40, 24)"]),
    "mm-K-nk": (lambda: ops.matmul(z(A), z((24, 40)), b_layout="nk"), ["K=32", "40", "b_layout='nk'"]),
    "mm-noncontig": (lambda: ops.matmul(z((16, 64))[:, ::2], z(B_KN)), ["'a'", "contiguous", "(16, 32)",
                                                                         "(64, 2)"]),
    "mm-noncontig-b": (lambda: ops.matmul(z(A), z((24, 64))[:, ::2], b_layout="nk"), ["'b'", "contiguous"]),
    "mm-K0": (lambda: ops.matmul(z((16, 0)), z((0, 24))), ["K=0", "nothing to compute"]),
    "mm-K0-nk": (lambda: ops.matmul(z((1, 0)), z((24, 0)), b_layout="nk"), ["K=0"]),
    "mm-decode-kn": (lambda: ops.matmul(z((1, 32)), z(B_KN), config=DEC), ["DecodeConfig", "b is [K, N]",
                                                                           "GemmConfig"]),
    "mm-decode-M": (lambda: ops.matmul(z((17, 32)), z(B_NK), b_layout="nk", config=DEC), ["DecodeConfig",
                                                                                          "M=17"]),
    "mm-decode-K": (lambda: ops.matmul(z((1, 20)), z((24, 20)), b_layout="nk", config=DEC), ["K=20",
                                                                                            "multiple of 32"]),
    "mm-decode-pipeline": (lambda: ops.matmul(z((1, 32)), z(B_NK), b_layout="nk", config=DEC, pipeline="sync"),
                           ["DecodeConfig", "pipeline='sync'"]),
    "mm-decode-warps": (lambda: ops.matmul(z((1, 32)), z(B_NK), b_layout="nk",
                                           config=ops.DecodeConfig(n_tiles=8, k_split=8)), ["64 warps", "32"]),
    "mm-decode-field": (lambda: ops.matmul(z((1, 32)), z(B_NK), b_layout="nk",
                                           config=ops.DecodeConfig(nw=0)), ["nw must be a positive int", "0"]),
    "i8-decode-config": (lambda: ops.matmul_int8(i8(A), i8(B_NK), config=DEC), ["config", "GemmConfig",
                                                                               "DecodeConfig"]),
    "mm-out": (lambda: ops.matmul(z(A), z(B_KN), out_dtype="f64"), ["out_dtype", "'f64'"]),
    "mm-out-int": (lambda: ops.matmul(z(A), z(B_KN), out_dtype=kaiodsl.i32), ["out_dtype", "i32"]),
    "mm-pipeline": (lambda: ops.matmul(z(A), z(B_KN), pipeline="fast"), ["pipeline", "'fast'"]),
    "mm-layout": (lambda: ops.matmul(z(A), z(B_KN), b_layout="tn"), ["b_layout", "'tn'"]),
    "mm-bias-len": (lambda: ops.matmul(z(A), z(B_KN), bias=z(23, np.float32)), ["'bias'", "23", "N=24"]),
    "mm-bias-rank": (lambda: ops.matmul(z(A), z(B_KN), bias=z((1, 24), np.float32)), ["'bias'", "(1, 24)"]),
    "mm-bias-dtype": (lambda: ops.matmul(z(A), z(B_KN), bias=i8(24)), ["'bias'", "i8"]),
    "mm-mix": (lambda: ops.matmul(z(A), dev(z(B_KN))), ["mixes", "'a' (numpy)", "'b' (device)"]),
    "mm-mix-bias": (lambda: ops.matmul(z(A), z(B_KN), bias=dev(z(24, np.float32))), ["'bias' (device)"]),
    "mm-none": (lambda: ops.matmul(None, z(B_KN)), ["'a' is required", "None"]),
    "mm-none-b": (lambda: ops.matmul(z(A), None), ["'b' is required"]),
    "mm-list": (lambda: ops.matmul([[1.0]], z(B_KN)), ["'a'", "list"]),
    "mm-config": (lambda: ops.matmul(z(A), z(B_KN), config=ops.GemmConfig(block_m=24)), ["GemmConfig",
                                                                                         "24"]),
    "mm-config-str": (lambda: ops.matmul(z(A), z(B_KN), config="fast"), ["config", "GemmConfig", "'fast'"]),
    "mm-config-dict": (lambda: ops.matmul(z(A), z(B_KN), config={"block_m": 64}), ["config", "dict",
                                                                                   "'block_m': 64"]),
    "mm-config-swizzle": (lambda: ops.matmul(z(A), z(B_KN), config=ops.GemmConfig(
        block_m=144, block_n=144, block_k=32, warps_m=1, warps_n=9, stages=2)), ["block_n=144", "[K, N]",
                                                                                 "multiple of 128"]),
    "mm-config-threads": (lambda: ops.matmul(z(A), z(B_KN), config=ops.GemmConfig(
        block_m=256, block_n=256, block_k=32, warps_m=8, warps_n=8)), ["warps_m=8", "1024"]),
    "mm-config-smem": (lambda: ops.matmul(z(A), z(B_KN), config=ops.GemmConfig(stages=8, block_k=64)),
                       ["config", "s8", "262144 bytes of shared memory", "sm_90a"]),
    "mm-layout-array": (lambda: ops.matmul(z(A), z(B_KN), b_layout=np.array(["kn"])), ["b_layout", "array"]),
    "mm-K-huge": (lambda: ops.matmul(huge(1), huge(8), b_layout="nk"), ["K=2147483664", "i32", "2**31 - 1"]),
    "i8-K-huge": (lambda: ops.matmul_int8(huge(1, np.int8), huge(8, np.int8)), ["K=2147483664", "i32"]),
    # -- matmul_int8 --------------------------------------------------------------------------------
    "i8-dtype": (lambda: ops.matmul_int8(z(A), i8((24, 32))), ["'a'", "f16", "allowed: i8"]),
    "i8-b-dtype": (lambda: ops.matmul_int8(i8(A), np.full((24, 32), 1, np.uint8)), ["'b'", "u8"]),
    "i8-rank": (lambda: ops.matmul_int8(i8((16, 32, 1)), i8((24, 32))), ["'a'", "(16, 32, 1)"]),
    "i8-K": (lambda: ops.matmul_int8(i8(A), i8((24, 48))), ["K=32", "48"]),
    "i8-noncontig": (lambda: ops.matmul_int8(i8((32, 32))[::2], i8((24, 32))), ["'a'", "contiguous"]),
    "i8-scale": (lambda: ops.matmul_int8(i8(A), i8((24, 32)), "2"), ["scale", "'2'"]),
    "i8-scale-arr": (lambda: ops.matmul_int8(i8(A), i8((24, 32)), np.ones(16, np.float32)), ["scale",
                                                                                              "array"]),
    "i8-mix": (lambda: ops.matmul_int8(dev(i8(A)), i8((24, 32))), ["mixes", "'b' (numpy)"]),
    "i8-none": (lambda: ops.matmul_int8(i8(A), None), ["'b' is required"]),
    "i8-config": (lambda: ops.matmul_int8(i8(A), i8((24, 32)), config=ops.GemmConfig(block_k=48)),
                  ["GemmConfig"]),
    "i8-config-str": (lambda: ops.matmul_int8(i8(A), i8((24, 32)), config="s"), ["config", "'s'"]),
    "i8-scale-huge": (lambda: ops.matmul_int8(i8(A), i8((24, 32)), 10**400), ["scale", "f32 range", "1000"]),
    "i8-scale-nan": (lambda: ops.matmul_int8(i8(A), i8((24, 32)), float("nan")), ["scale", "finite", "nan"]),
    "i8-scale-bool": (lambda: ops.matmul_int8(i8(A), i8((24, 32)), True), ["scale", "True"]),
    "i8-K0": (lambda: ops.matmul_int8(i8((4, 0)), i8((8, 0))), ["K=0"]),
    "i8-layout": (lambda: ops.matmul_int8(i8(A), i8((24, 32)), b_layout="auto"), ["b_layout", "'auto'", "'nk'",
                                                                                  "'kn'"]),
    "i8-kn-K": (lambda: ops.matmul_int8(i8(A), i8((24, 32)), b_layout="kn"), ["[K, N]", "(24, 32)",
                                                                              "K=32 and 24 differ"]),
    # -- matmul_w8a8 -------------------------------------------------------------------------------
    "w8-out": (lambda: ops.matmul_w8a8(i8(A), i8((24, 32)), 0.1, z(24, np.float32), out_dtype="f8"),
               ["out_dtype", "'f8'"]),
    "w8-act-shape": (lambda: ops.matmul_w8a8(i8(A), i8((24, 32)), z(15, np.float32), z(24, np.float32)),
                     ["act_scale", "M=16", "(15,)"]),
    "w8-act-dtype": (lambda: ops.matmul_w8a8(i8(A), i8((24, 32)), z(16), z(24, np.float32)),
                     ["'act_scale'", "f16", "allowed: f32"]),
    "w8-act-noncontig": (lambda: ops.matmul_w8a8(i8(A), i8((24, 32)), z(32, np.float32)[::2],
                                                 z(24, np.float32)), ["'act_scale'", "contiguous"]),
    "w8-act-none": (lambda: ops.matmul_w8a8(i8(A), i8((24, 32)), None, z(24, np.float32)),
                    ["'act_scale' is required"]),
    "w8-act-mix": (lambda: ops.matmul_w8a8(i8(A), i8((24, 32)), dev(z(16, np.float32)), z(24, np.float32)),
                   ["mixes", "'act_scale' (device)"]),
    "w8-ws-shape": (lambda: ops.matmul_w8a8(i8(A), i8((24, 32)), 0.1, z((24, 1), np.float32)),
                    ["weight_scale", "N=24", "(24, 1)"]),
    "w8-ws-none": (lambda: ops.matmul_w8a8(i8(A), i8((24, 32)), 0.1, None), ["'weight_scale' is required"]),
    "w8-ws-noncontig": (lambda: ops.matmul_w8a8(i8(A), i8((24, 32)), 0.1, z(48, np.float32)[::2]),
                        ["'weight_scale'", "contiguous"]),
    "w8-bias": (lambda: ops.matmul_w8a8(i8(A), i8((24, 32)), 0.1, z(24, np.float32), bias=z(25, np.float32)),
                ["'bias'", "25", "N=24"]),
    "w8-aq-dtype": (lambda: ops.matmul_w8a8(z(A), i8((24, 32)), 0.1, z(24, np.float32)), ["'a_q'", "f16"]),
    "w8-act-nan": (lambda: ops.matmul_w8a8(i8(A), i8((24, 32)), float("inf"), z(24, np.float32)),
                   ["act_scale", "inf"]),
    "w8-layout": (lambda: ops.matmul_w8a8(i8(A), i8((24, 32)), 0.1, z(24, np.float32), b_layout="tn"),
                  ["b_layout", "'tn'"]),
    "w8-kn-ws": (lambda: ops.matmul_w8a8(i8(A), i8((32, 24)), 0.1, z(32, np.float32), b_layout="kn"),
                 ["weight_scale", "N=24", "(32,)"]),
    "w8-K": (lambda: ops.matmul_w8a8(i8(A), i8((24, 16)), 0.1, z(24, np.float32)), ["a_q", "w_q", "K=32",
                                                                                     "16"]),
    # -- quantize_per_token -----------------------------------------------------------------------
    "qt-dtype": (lambda: ops.quantize_per_token(z(A, np.float32)), ["'x'", "f32", "allowed: f16, bf16"]),
    "qt-rank": (lambda: ops.quantize_per_token(z(32)), ["'x'", "(32,)"]),
    "qt-noncontig": (lambda: ops.quantize_per_token(z((16, 64))[:, 1::2]), ["'x'", "contiguous"]),
    "qt-none": (lambda: ops.quantize_per_token(None), ["'x' is required"]),
    "qt-u16": (lambda: ops.quantize_per_token(np.ones(A, np.uint16)), ["'x'", "numpy has no bfloat16"]),
    # -- matmul_int4 -------------------------------------------------------------------------------
    "i4-group": (lambda: ops.matmul_int4(z((2, 128)), W4(), S4(), group_size=48), ["group_size", "48"]),
    "i4-a-dtype": (lambda: ops.matmul_int4(z((2, 128), np.float32), W4(), S4()), ["'a'", "f32"]),
    "i4-a-rank": (lambda: ops.matmul_int4(z(128), W4(), S4()), ["'a'", "(128,)"]),
    "i4-w-dtype": (lambda: ops.matmul_int4(z((2, 128)), W4().astype(np.int64), S4()), ["'w_packed'", "i64"]),
    "i4-w-shape": (lambda: ops.matmul_int4(z((2, 128)), W4().reshape(2, -1), S4()), ["'w_packed'",
                                                                                     "pack_int4"]),
    "i4-K": (lambda: ops.matmul_int4(z((2, 256)), W4(), S4()), ["'w_packed'", "K=128", "K=256"]),
    "i4-scales-shape": (lambda: ops.matmul_int4(z((2, 128)), W4(), S4(64)), ["'scales'", "(16, 1)", "(16, 2)"]),
    "i4-scales-dtype": (lambda: ops.matmul_int4(z((2, 128)), W4(), S4(128, np.float32)), ["'scales'", "f32"]),
    "i4-zeros-shape": (lambda: ops.matmul_int4(z((2, 128)), W4(), S4(), zeros=np.full((16, 2), 8, np.uint8)),
                       ["'zeros'", "(16, 2)"]),
    "i4-zeros-dtype": (lambda: ops.matmul_int4(z((2, 128)), W4(), S4(), zeros=np.full((16, 1), 8, np.int32)),
                       ["'zeros'", "i32"]),
    "i4-noncontig": (lambda: ops.matmul_int4(z((4, 128))[::2], W4(), S4()), ["'a'", "contiguous"]),
    "i4-mix": (lambda: ops.matmul_int4(z((2, 128)), dev(W4().view(np.uint32)), S4()), ["mixes",
                                                                                     "'w_packed' (device)"]),
    "i4-none": (lambda: ops.matmul_int4(z((2, 128)), W4(), None), ["'scales' is required"]),
    "i4-par-zero": (lambda: ops.matmul_int4(z((2, 128)), W4(), S4(), parallelism=(0, 1, 1, 1)),
                    ["parallelism", "(0, 1, 1, 1)", "positive ints"]),
    "i4-par-str": (lambda: ops.matmul_int4(z((2, 128)), W4(), S4(), parallelism="x"), ["parallelism", "'x'"]),
    "i4-par-threads": (lambda: ops.matmul_int4(z((2, 128)), W4(), S4(), parallelism=(8, 8, 1, 1)),
                       ["parallelism", "2048 threads"]),
    "i4-par-smem": (lambda: ops.matmul_int4(z((2, 128)), W4(), S4(), parallelism=(4, 8, 1, 4)),
                    ["parallelism", "65536 bytes"]),
    "i4-group-str": (lambda: ops.matmul_int4(z((2, 128)), W4(), S4(), group_size="128"), ["group_size",
                                                                                         "'128'"]),
    "i4-K0": (lambda: ops.matmul_int4(z((2, 0)), np.ones((2, 0, 32, 4), np.int32), S4(128)[:, :0].copy()),
              ["K=0"]),
    # -- matmul_backward ---------------------------------------------------------------------------
    "bw-grad-shape": (lambda: ops.matmul_backward(z((16, 23)), z(A), z(B_KN)), ["'grad'", "(16, 24)",
                                                                                "(16, 23)"]),
    "bw-dtype": (lambda: ops.matmul_backward(z((16, 24), np.float32), z(A), z(B_KN)), ["'grad'", "f32"]),
    "bw-a-dtype": (lambda: ops.matmul_backward(z((16, 24)), i8(A), z(B_KN)), ["'a'", "i8"]),
    "bw-layout": (lambda: ops.matmul_backward(z((16, 24)), z(A), z(B_KN), b_layout="auto"), ["b_layout",
                                                                                            "'auto'"]),
    "bw-K": (lambda: ops.matmul_backward(z((16, 24)), z(A), z((40, 24))), ["K=32", "40"]),
    "bw-rank": (lambda: ops.matmul_backward(z((16, 24)), z(A), z((32, 24, 1))), ["'b'", "(32, 24, 1)"]),
    "bw-noncontig": (lambda: ops.matmul_backward(z((16, 48))[:, ::2], z(A), z(B_KN)), ["'grad'",
                                                                                       "contiguous"]),
    "bw-mix": (lambda: ops.matmul_backward(z((16, 24)), z(A), dev(z(B_KN))), ["mixes", "'b' (device)"]),
    "bw-none": (lambda: ops.matmul_backward(None, z(A), z(B_KN)), ["'grad' is required"]),
    "bw-pipeline": (lambda: ops.matmul_backward(z((16, 24)), z(A), z(B_KN), pipeline="x"), ["matmul_backward",
                                                                                          "pipeline", "'x'"]),
    # -- aliases -----------------------------------------------------------------------------------
    "tc-layout": (lambda: ops.matmul_tc(z(A), z(B_NK)), ["matmul_tc", "K=32", "24"]),
    "tc-dtype": (lambda: ops.matmul_tc_bf16(z(A), z(B_KN)), ["matmul_tc_bf16", "'a'", "f16"]),
    "tc-none": (lambda: ops.matmul_tc_async(None, z(B_KN)), ["'a' is required"]),
    "kernel-for-config": (lambda: ops.matmul_kernel_for(z(A), z(B_KN), "kn", {"block_m": 64}), ["config",
                                                                                             "'block_m'"]),
    "kernel-for-layout": (lambda: ops.matmul_kernel_for(z(A), z(B_KN), "tn", ops.GemmConfig()), ["b_layout"]),
    "kernel-for-tiling": (lambda: ops.matmul_kernel_for(z(A), z(B_KN), "kn", ops.GemmConfig(block_k=48)),
                          ["config", "block_k=48"]),
    "tc-config": (lambda: ops.matmul_tc(z(A), z(B_KN), config="x"), ["matmul_tc", "config", "'x'"]),
    "kaio-i8-layout": (lambda: ops.KAIO_NAMES["matmul_int8"](i8(A), i8((24, 32))), ["matmul_int8 (KAIO)",
                                                                                  "K=32 and 24 differ"]),
    # -- quantize_per_token: sizes --------------------------------------------------------------------
    "qt-list": (lambda: ops.quantize_per_token([[1.0]]), ["'x'", "list"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_rejects_before_launch(no_launch, case):
    call, expect = CASES[case]
    with pytest.raises(kaiodsl.ArgumentError) as info:
        call()
    msg = str(info.value)
    for s in expect:
        assert s in msg, f"{s!r} not in the message: {msg}"


def test_no_launch_guard_works(no_launch):
    """The guard itself: a valid call does hit it."""
    with pytest.raises(AssertionError, match="allocated|launched"):
        ops.matmul(z(A), z(B_KN))


def _gptq(K=256, N=16, G=2):
    return np.zeros((K // 8, N), np.int32), np.ones((G, N), F16)


# host-side helpers of the int4 format: (call, strings the message must hold)
HELPERS = {
    "pack-16": (lambda: ops.pack_int4(np.full((8, 128), 16, np.uint8)), ["'q'", "0..15", "16"]),
    "pack-neg": (lambda: ops.pack_int4(np.full((8, 128), -1)), ["'q'", "-1"]),
    "pack-nan": (lambda: ops.pack_int4(np.full((8, 128), np.nan)), ["'q'", "integer", "float64"]),
    "pack-float": (lambda: ops.pack_int4(np.full((8, 128), 3.5)), ["'q'", "float64"]),
    "pack-K100": (lambda: ops.pack_int4(np.ones((8, 100), np.uint8)), ["K=100", "128"]),
    "pack-rank1": (lambda: ops.pack_int4(np.ones(8, np.uint8)), ["'q'", "(8,)"]),
    "pack-str": (lambda: ops.pack_int4("abc"), ["'q'", "<U3"]),
    "pack-none": (lambda: ops.pack_int4(None), ["'q' is required"]),
    "pack-ragged": (lambda: ops.pack_int4([[1, 2], [3]]), ["'q'", "list"]),
    "unpack-i64": (lambda: ops.unpack_int4(np.ones((1, 1, 32, 4), np.int64)), ["'w_packed'", "int64",
                                                                               "two words"]),
    "unpack-rank": (lambda: ops.unpack_int4(np.ones(8, np.int32)), ["'w_packed'", "(8,)"]),
    "unpack-str": (lambda: ops.unpack_int4("x"), ["'w_packed'", "<U1"]),
    "unpack-float": (lambda: ops.unpack_int4(np.ones((1, 1, 32, 4), np.float32)), ["'w_packed'", "float32"]),
    "qi4-nan": (lambda: ops.quantize_int4(np.where(np.eye(8, 128) > 0, np.nan, 1.0)), ["'w'", "non-finite",
                                                                                       "nan", "(0, 0)"]),
    "qi4-inf": (lambda: ops.quantize_int4(np.full((8, 128), np.inf), 32, False), ["'w'", "1024 non-finite"]),
    "qi4-f32-overflow": (lambda: ops.quantize_int4(np.full((8, 128), 1e300)), ["'w (as float32)'", "inf"]),
    "qi4-rank": (lambda: ops.quantize_int4(np.ones(128)), ["'w'", "(128,)"]),
    "qi4-group": (lambda: ops.quantize_int4(np.ones((8, 100)), 32), ["K=100", "group_size=32"]),
    "qi4-group0": (lambda: ops.quantize_int4(np.ones((8, 128)), 0), ["group_size", "32, 64 or 128", "0"]),
    "qi4-sym": (lambda: ops.quantize_int4(np.ones((8, 128)), 32, "yes"), ["symmetric", "'yes'"]),
    "qi4-complex": (lambda: ops.quantize_int4(np.ones((8, 128), np.complex64)), ["'w'", "complex64"]),
    "gptq-i64": (lambda: ops.from_gptq(np.zeros((32, 16), np.int64), np.ones((2, 16), F16)),
                 ["'qweight'", "int64", "int32 or uint32"]),
    "gptq-list": (lambda: ops.from_gptq([[0] * 16] * 32, np.ones((2, 16), F16)), ["'qweight'", "int64"]),
    "gptq-scales": (lambda: ops.from_gptq(_gptq()[0], np.ones((3, 3), F16)), ["'scales'", "(2, 16)", "(3, 3)"]),
    "gptq-group": (lambda: ops.from_gptq(*_gptq(), group_size=64), ["'scales'", "group_size=64", "(4, 16)"]),
    "gptq-group-bad": (lambda: ops.from_gptq(*_gptq(), group_size=100), ["group_size", "100"]),
    "gptq-qzeros": (lambda: ops.from_gptq(*_gptq(), np.zeros((5, 5), np.int32)), ["'qzeros'", "(2, 2)",
                                                                                  "(5, 5)"]),
    "gptq-qzeros-i64": (lambda: ops.from_gptq(*_gptq(), np.zeros((2, 2), np.int64)), ["'qzeros'", "int64"]),
    "gptq-scales-int": (lambda: ops.from_gptq(_gptq()[0], np.ones((2, 16), np.int32)), ["'scales'", "int32"]),
    "gptq-N": (lambda: ops.from_gptq(np.zeros((32, 12), np.int32), np.ones((2, 12), F16)), ["'qweight'",
                                                                                         "N=12"]),
    "gptq-rank": (lambda: ops.from_gptq(np.zeros(32, np.int32), np.ones((2, 16), F16)), ["'qweight'", "(32,)"]),
    "deq-shape": (lambda: ops.dequantize(np.ones((8, 128), np.uint8), np.ones((8, 2), np.float32)),
                  ["'scales'", "(8, 1)", "(8, 2)"]),
}


@pytest.mark.parametrize("case", list(HELPERS))
def test_int4_helpers_reject(case):
    call, expect = HELPERS[case]
    with pytest.raises(kaiodsl.ArgumentError) as info:
        call()
    msg = str(info.value)
    for s in expect:
        assert s in msg, f"{s!r} not in the message: {msg}"


def test_from_gptq_uses_group_size():
    """group_size sets the scales' and zeros' group count (it was ignored: any [G, N] was taken)."""
    qw, _ = _gptq(K=256, N=16)
    wp, s, z = ops.from_gptq(qw, np.ones((8, 16), F16), np.zeros((8, 2), np.int32), group_size=32)
    assert s.shape == (16, 8) and z.shape == (16, 8)
    assert wp.shape == (2, 2, 32, 4)


@pytest.mark.parametrize("field", ["block_m", "block_n", "block_k", "warps_m", "warps_n", "stages", "group_m"])
@pytest.mark.parametrize("value", [0, -1, 2.0, True, "8", None])
def test_gemm_config_fields(field, value):
    with pytest.raises(kaiodsl.ArgumentError, match=rf"GemmConfig: {field} must be a positive int, got "
                                                      rf"{re.escape(repr(value))}"):
        ops.GemmConfig(**{field: value})


def test_matmul_kernel_for_compiles_a_valid_config():
    k = ops.matmul_kernel_for(z(A), z(B_KN), "kn", ops.GemmConfig(block_m=64, block_n=64, warps_m=2, warps_n=2))
    assert "mma.sync" in k.ptx
