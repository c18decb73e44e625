"""kaiodsl.ops.matmul at every M, N, K (the tile copies' element path) and its decode kernel (M <= 16,
b [N, K]), against a float64 numpy reference, on every backend."""

import numpy as np
import pytest

import kaiodsl
from kaiodsl import ops
from kaiodsl.ops import matmul_decode
from kaiodsl.ops.matmul import ASYNC_TINY_M, row_granule

from opkit import check_close, make

DTYPES = ["f16", "bf16"]


def _case(rng, M, N, K, dtype, layout, bias):
    a, av = make(rng.standard_normal((M, K)), dtype)
    b, bv = make(rng.standard_normal((K, N) if layout == "kn" else (N, K)), dtype)
    biasv = rng.standard_normal(N).astype(np.float32) if bias else None
    bias_arg = biasv if biasv is None or dtype == "f16" else kaiodsl.runtime.to_device(biasv)   # bf16: on device
    return a, b, bias_arg, ops.reference_matmul(av, bv, layout, biasv)


# Rows of 2, 4 and 8 bytes' alignment (K or N odd, 2 mod 4, 4 mod 8), one-element rows, N below one tile.
RAGGED = [(37, 45, 50, "nk"), (37, 44, 50, "kn"), (37, 45, 7, "nk"), (37, 45, 7, "kn"), (5, 13, 1, "nk"),
          (5, 13, 1, "kn"), (9, 3, 50, "kn"), (3, 12, 12, "kn"), (20, 5, 90, "kn")]


@pytest.mark.parametrize("pipeline", ["sync", "async"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,N,K,layout", RAGGED, ids=[f"{m}x{n}x{k}-{lay}" for m, n, k, lay in RAGGED])
def test_ragged(backend, rng, M, N, K, layout, dtype, pipeline):
    bias = (M + N) % 2 == 1
    a, b, biasv, ref = _case(rng, M, N, K, dtype, layout, bias)
    out = "f32" if bias else dtype
    check_close(ops.matmul(a, b, b_layout=layout, pipeline=pipeline, bias=biasv, out_dtype=out), ref, out)


@pytest.mark.parametrize("layout", ["kn", "nk"])
def test_ragged_large_tiles(backend, rng, layout):
    """A 64x64 tile with 4 stages and several k tiles: the register-staged copies share the ring."""
    a, b, _, ref = _case(rng, 70, 67, 203, "f16", layout, False)
    cfg = ops.GemmConfig(block_m=64, block_n=64, block_k=32, warps_m=2, warps_n=2, stages=4)
    check_close(ops.matmul(a, b, b_layout=layout, config=cfg, out_dtype="f32"), ref, "f32")


def test_row_granule():
    assert [row_granule(k, 2) for k in (8, 16, 4, 12, 2, 6, 1, 7, 0)] == [0, 0, 8, 8, 4, 4, 2, 2, 0]
    assert row_granule(64, 2, ptr_align=2) == 2 and row_granule(64, 2, ptr_align=8) == 8
    assert row_granule(6, 2, ptr_align=16) == 4 and row_granule(3, 1) == 1


def test_misaligned_torch_view(backend, rng):
    """a and b start 2 bytes into their storage (contiguous flat-slice views): the 2-byte granule kernel."""
    torch = pytest.importorskip("torch")
    M, N, K = 5, 24, 64
    av = rng.standard_normal(M * K + 1).astype(np.float16)
    bv = rng.standard_normal(N * K + 3).astype(np.float16)
    dev = "cuda" if backend.name == "cuda" else "cpu"
    a = torch.from_numpy(av).to(dev)[1:].view(M, K)
    b = torch.from_numpy(bv).to(dev)[3:].view(N, K)
    ref = ops.reference_matmul(av[1:].reshape(M, K), bv[3:].reshape(N, K), "nk")
    assert ops.matmul_config(M, N, K, "f16", "nk").__class__ is ops.DecodeConfig   # aligned data would decode
    k = ops.matmul_kernel_for(a, b, "nk", ASYNC_TINY_M)
    assert k.name.endswith("_ga2_gb2")
    check_close(ops.matmul(a, b, b_layout="nk", out_dtype="f32"), ref, "f32")


# -- the decode kernel ---------------------------------------------------------------------------------
DECODE_CFGS = [ops.DecodeConfig(n_tiles=1, k_split=4, nw=2, unroll=2),
               ops.DecodeConfig(n_tiles=2, k_split=2, nw=1, unroll=3), None]


@pytest.mark.parametrize("cfg", DECODE_CFGS, ids=str)
@pytest.mark.parametrize("M", [1, 3, 16])
@pytest.mark.parametrize("dtype", DTYPES)
def test_decode(backend, rng, dtype, M, cfg):
    for N, K, bias, out in [(64, 512, False, None), (45, 256, True, "f32")]:   # 45: a ragged last n group
        a, b, biasv, ref = _case(rng, M, N, K, dtype, "nk", bias)
        check_close(ops.matmul(a, b, b_layout="nk", bias=biasv, out_dtype=out, config=cfg), ref, out or dtype)


def test_decode_kernel_is_used(backend, rng):
    a, b, _, ref = _case(rng, 2, 40, 96, "f16", "nk", False)
    cfg = ops.matmul_config(2, 40, 96, "f16", "nk")
    assert isinstance(cfg, ops.DecodeConfig)
    assert ops.matmul_kernel_for(a, b, "nk", cfg).name.startswith("gemm_decode_f16_f16_")
    check_close(ops.matmul(a, b, b_layout="nk"), ref, "f16")
    assert not isinstance(ops.matmul_config(2, 40, 96, "f16", "kn"), ops.DecodeConfig)
    assert not isinstance(ops.matmul_config(17, 40, 96, "f16", "nk"), ops.DecodeConfig)
    assert not isinstance(ops.matmul_config(2, 40, 100, "f16", "nk"), ops.DecodeConfig)


def test_decode_config_heuristic():
    """The measured point, and over the decode range: at most 32 warps a block, K split only while each
    warp streams >= 8 KB of weights, and at least ~12 warps an SM unless N is too small for it."""
    assert matmul_decode.decode_config(16, 4096, 4096) == ops.DecodeConfig(1, 8, 2, 2)
    for N in (1024, 2048, 4096, 11008, 14336, 128256):
        for K in (1024, 4096, 11008, 16384):
            c = matmul_decode.decode_config(1, N, K)
            assert c.threads <= 1024 and c.n_tiles == 1
            assert c.k_split == 1 or 8 * c.nw * (K // c.k_split) * 2 >= matmul_decode.MIN_WARP_BYTES
            warps = -(-N // c.block_n) * c.k_split
            assert warps >= matmul_decode.MIN_WARPS or c.unroll == 4, (N, K, c)


# -- int8: the same copy plan with 1-byte granules ------------------------------------------------------
I8_RAGGED = [(5, 13, 7, "nk"), (37, 45, 50, "nk"), (9, 20, 1, "kn"), (17, 24, 36, "nk"), (3, 8, 24, "kn")]


@pytest.mark.parametrize("M,N,K,layout", I8_RAGGED, ids=[f"{m}x{n}x{k}-{lay}" for m, n, k, lay in I8_RAGGED])
def test_int8_ragged(backend, rng, M, N, K, layout):
    """K not a multiple of 16 (rows aligned to 1, 2, 4 or 8 bytes): bit-exact int32 accumulation."""
    a = rng.integers(-127, 128, (M, K)).astype(np.int8)
    b = rng.integers(-127, 128, (N, K) if layout == "nk" else (K, N)).astype(np.int8)
    c = ops.matmul_int8(a, b, 1.0, b_layout=layout)
    assert np.array_equal(np.asarray(c, np.float64), ops.reference_matmul_int8(a, b, layout).astype(np.float64))


def test_element_path_avoids_the_128x128_tile():
    """The 128x128 tiles take ~254 registers a thread; the element copies' state would spill them."""
    from kaiodsl.ops.matmul import ASYNC_LARGE, ASYNC_SMALL_M, tiled_config

    assert tiled_config(4096, 4096, 4096) == ASYNC_LARGE
    assert tiled_config(4096, 4096, 4095, "auto", True) == ASYNC_SMALL_M
    assert ops.int8_config(4096, 4096, 4096).block_m == 128 and ops.int8_config(4096, 4096, 4095).block_m == 64
