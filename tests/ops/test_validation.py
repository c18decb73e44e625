"""Every op rejects bad arguments with kaiodsl.ArgumentError before it allocates or launches
(the no_launch fixture turns either into an AssertionError), and the message names the
argument and its value."""

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


A, B_KN, B_NK = (16, 32), (32, 24), (24, 32)
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
    "mm-K8": (lambda: ops.matmul(z((16, 20)), z((20, 24))), ["K=20", "multiple of 8"]),
    "mm-N8-kn": (lambda: ops.matmul(z(A), z((32, 20))), ["N=20", "multiple of 8"]),
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
    # -- matmul_int8 --------------------------------------------------------------------------------
    "i8-dtype": (lambda: ops.matmul_int8(z(A), i8((24, 32))), ["'a'", "f16", "allowed: i8"]),
    "i8-b-dtype": (lambda: ops.matmul_int8(i8(A), np.full((24, 32), 1, np.uint8)), ["'b'", "u8"]),
    "i8-rank": (lambda: ops.matmul_int8(i8((16, 32, 1)), i8((24, 32))), ["'a'", "(16, 32, 1)"]),
    "i8-K": (lambda: ops.matmul_int8(i8(A), i8((24, 48))), ["K=32", "48"]),
    "i8-K16": (lambda: ops.matmul_int8(i8((16, 24)), i8((24, 24))), ["K=24", "multiple of 16"]),
    "i8-noncontig": (lambda: ops.matmul_int8(i8((32, 32))[::2], i8((24, 32))), ["'a'", "contiguous"]),
    "i8-scale": (lambda: ops.matmul_int8(i8(A), i8((24, 32)), "2"), ["scale", "'2'"]),
    "i8-scale-arr": (lambda: ops.matmul_int8(i8(A), i8((24, 32)), np.ones(16, np.float32)), ["scale",
                                                                                              "array"]),
    "i8-mix": (lambda: ops.matmul_int8(dev(i8(A)), i8((24, 32))), ["mixes", "'b' (numpy)"]),
    "i8-none": (lambda: ops.matmul_int8(i8(A), None), ["'b' is required"]),
    "i8-config": (lambda: ops.matmul_int8(i8(A), i8((24, 32)), config=ops.GemmConfig(block_k=48)),
                  ["GemmConfig"]),
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
    # -- matmul_backward ---------------------------------------------------------------------------
    "bw-grad-shape": (lambda: ops.matmul_backward(z((16, 23)), z(A), z(B_KN)), ["'grad'", "(16, 24)",
                                                                                "(16, 23)"]),
    "bw-dtype": (lambda: ops.matmul_backward(z((16, 24), np.float32), z(A), z(B_KN)), ["'grad'", "f32"]),
    "bw-a-dtype": (lambda: ops.matmul_backward(z((16, 24)), i8(A), z(B_KN)), ["'a'", "i8"]),
    "bw-layout": (lambda: ops.matmul_backward(z((16, 24)), z(A), z(B_KN), b_layout="auto"), ["b_layout",
                                                                                            "'auto'"]),
    "bw-K": (lambda: ops.matmul_backward(z((16, 24)), z(A), z((40, 24))), ["K=32", "40"]),
    "bw-K8": (lambda: ops.matmul_backward(z((16, 24)), z((16, 12)), z((12, 24))), ["K=12", "multiple of 8"]),
    "bw-N8": (lambda: ops.matmul_backward(z((16, 20)), z(A), z((32, 20))), ["N=20", "multiple of 8"]),
    "bw-rank": (lambda: ops.matmul_backward(z((16, 24)), z(A), z((32, 24, 1))), ["'b'", "(32, 24, 1)"]),
    "bw-noncontig": (lambda: ops.matmul_backward(z((16, 48))[:, ::2], z(A), z(B_KN)), ["'grad'",
                                                                                       "contiguous"]),
    "bw-mix": (lambda: ops.matmul_backward(z((16, 24)), z(A), dev(z(B_KN))), ["mixes", "'b' (device)"]),
    "bw-none": (lambda: ops.matmul_backward(None, z(A), z(B_KN)), ["'grad' is required"]),
    # -- aliases -----------------------------------------------------------------------------------
    "tc-layout": (lambda: ops.matmul_tc(z(A), z(B_NK)), ["matmul_tc", "K=32", "24"]),
    "tc-dtype": (lambda: ops.matmul_tc_bf16(z(A), z(B_KN)), ["matmul_tc_bf16", "'a'", "f16"]),
    "tc-none": (lambda: ops.matmul_tc_async(None, z(B_KN)), ["'a' is required"]),
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


@pytest.mark.parametrize("bad", [np.full((4, 16), 16, np.uint8), np.full((4, 16), -1), np.ones((8, 100)),
                                 np.ones(8)], ids=["16", "neg", "K100", "rank1"])
def test_pack_int4_rejects(bad):
    with pytest.raises(kaiodsl.ArgumentError, match=r"pack_int4\(\)"):
        ops.pack_int4(bad)


def test_matmul_k0_rejected_before_allocating(no_launch):
    with pytest.raises(kaiodsl.ArgumentError, match="K=0"):
        ops.matmul(z((4, 0)), z((0, 8)))
