"""W4A16: the packed layout (pack/unpack, GPTQ conversion) and matmul_int4 against the
float64 product with the reference-dequantized weights."""

import numpy as np
import pytest

import kaiodsl
import kaiodsl.runtime
from kaiodsl import ops

from opkit import bf16_values, check_close, make

K_UNIT = 128     # pack_int4 takes K in multiples of this (see ops/int4_pack.py)


def _q(rng, N, K):
    return rng.integers(0, 16, (N, K), dtype=np.uint8)


@pytest.mark.parametrize("N,K", [(8, K_UNIT), (24, 2 * K_UNIT), (40, 3 * K_UNIT)])
def test_pack_unpack_round_trip(rng, N, K):
    q = _q(rng, N, K)
    w = ops.pack_int4(q)
    assert w.dtype == np.int32 and w.size * 8 == N * K and w.flags.c_contiguous
    assert np.array_equal(ops.unpack_int4(w), q)


def test_pack_int4_is_a_bijection_on_nibbles(rng):
    """Each weight lands in exactly one nibble: changing one q changes one nibble of one word."""
    q = _q(rng, 16, K_UNIT)
    w0 = ops.pack_int4(q).view(np.uint32)
    q[5, 77] ^= 0xF
    diff = ops.pack_int4(q).view(np.uint32) ^ w0
    assert np.count_nonzero(diff) == 1 and bin(int(diff[diff != 0][0])).count("1") == 4


def _to_gptq(q, scales, zeros, group_size):
    """GPTQ tensors for known q [N, K], scales [N, G], zeros [N, G] (stored as zero - 1)."""
    N, K = q.shape
    qw = np.zeros((K // 8, N), np.uint32)
    for i in range(8):
        qw |= q.T[i::8].astype(np.uint32) << np.uint32(4 * i)
    qz = None
    if zeros is not None:
        stored = ((zeros.astype(np.int64) - 1) & 0xF).astype(np.uint32).T     # [G, N]
        qz = np.zeros((K // group_size, N // 8), np.uint32)
        for i in range(8):
            qz |= stored[:, i::8] << np.uint32(4 * i)
        qz = qz.view(np.int32)
    return qw.view(np.int32), np.ascontiguousarray(scales.T), qz


@pytest.mark.parametrize("with_zeros", [False, True], ids=["sym", "zp"])
def test_from_gptq(backend, rng, with_zeros):
    N, K, gs = 24, 2 * K_UNIT, 64
    q = _q(rng, N, K)
    scales = (rng.uniform(0.5, 1.5, (N, K // gs)) * 1e-2).astype(np.float16)
    zeros = rng.integers(0, 16, (N, K // gs), dtype=np.uint8) if with_zeros else None
    wp, s, z = ops.from_gptq(*_to_gptq(q, scales, zeros, gs), group_size=gs)
    assert np.array_equal(ops.unpack_int4(wp), q)
    assert np.array_equal(s, scales) and s.flags.c_contiguous
    assert (z is None) == (zeros is None)
    if zeros is not None:
        assert np.array_equal(z, zeros) and z.dtype == np.uint8
    a = rng.standard_normal((3, K)).astype(np.float16)
    out = ops.matmul_int4(a, wp, s, zeros=z, group_size=gs)
    check_close(out, ops.reference_matmul_int4(a, q, scales, zeros, gs), "f16")


def test_quantize_int4_dequantize(rng):
    w = rng.standard_normal((16, K_UNIT)).astype(np.float32)
    for sym in (True, False):
        q, s, z = ops.quantize_int4(w, 32, symmetric=sym)
        assert q.max() <= 15 and (z is None) == sym
        err = np.abs(ops.dequantize(q, s, z, 32, np.float32) - w).max()
        assert err <= 0.51 * s.max()


# group size x zero points x activation dtype, and decode (M <= 8) / batched (M > 8) kernels
CASES = [(M, N, K, gs) for gs in (32, 64, 128) for (M, N, K) in [(1, 8, K_UNIT), (5, 24, 2 * K_UNIT),
                                                                   (37, 40, 2 * K_UNIT)]]


@pytest.mark.parametrize("with_zeros", [False, True], ids=["sym", "zp"])
@pytest.mark.parametrize("M,N,K,gs", CASES, ids=[f"{m}x{n}x{k}-g{g}" for m, n, k, g in CASES])
def test_matmul_int4_f16(backend, rng, M, N, K, gs, with_zeros):
    q = _q(rng, N, K)
    scales = (rng.uniform(0.5, 1.5, (N, K // gs)) * 1e-1).astype(np.float16)
    zeros = rng.integers(0, 16, (N, K // gs), dtype=np.uint8) if with_zeros else None
    a = rng.standard_normal((M, K)).astype(np.float16)
    out = ops.matmul_int4(a, ops.pack_int4(q), scales, zeros=zeros, group_size=gs)
    assert out.dtype == np.float16 and out.shape == (M, N)
    check_close(out, ops.reference_matmul_int4(a, q, scales, zeros, gs), "f16")


@pytest.mark.parametrize("with_zeros", [False, True], ids=["sym", "zp"])
@pytest.mark.parametrize("M,gs", [(1, 32), (5, 64), (37, 128)])
def test_matmul_int4_bf16(backend, rng, M, gs, with_zeros):
    N, K = 24, 2 * K_UNIT
    dev = kaiodsl.runtime.to_device
    q = _q(rng, N, K)
    sv = bf16_values(rng.uniform(0.5, 1.5, (N, K // gs)) * 1e-1)
    zeros = rng.integers(0, 16, (N, K // gs), dtype=np.uint8) if with_zeros else None
    a, av = make(rng.standard_normal((M, K)), "bf16")
    out = ops.matmul_int4(a, dev(ops.pack_int4(q).view(np.uint32)), dev(sv, kaiodsl.bf16),
                          zeros=None if zeros is None else dev(zeros), group_size=gs)
    # the kernel rounds each dequantized weight to bf16; the reference keeps it in f32 (< 1 bf16 ulp)
    check_close(out, ops.reference_matmul_int4(av, q, sv, zeros, gs), "bf16")


def test_matmul_int4_empty(backend, rng):
    q = _q(rng, 8, K_UNIT)
    out = ops.matmul_int4(np.ones((0, K_UNIT), np.float16), ops.pack_int4(q),
                          np.ones((8, 1), np.float16), group_size=128)
    assert out.shape == (0, 8)


def test_matmul_int4_i32_device_array(rng):
    kaiodsl.runtime.set_backend("sim")
    dev = kaiodsl.runtime.to_device
    q = _q(rng, 8, K_UNIT)
    a = rng.standard_normal((2, K_UNIT)).astype(np.float16)
    s = np.full((8, 1), 0.1, np.float16)
    out = ops.matmul_int4(dev(a), dev(ops.pack_int4(q)), dev(s), group_size=128)
    check_close(out, ops.reference_matmul_int4(a, q, s, None, 128), "f16")
