"""What every level of the GEMM tutorial shares: the argument checks and the numpy check of ``run``.

Every level computes ``C[M, N] = A[M, K] @ B[N, K]^T`` with A and B f16 and C f32: B is K-major,
the nn.Linear weight layout (and the one the Hopper level's TMA boxes read). Arrays may be numpy
(copied in and out by the launch), torch tensors or kaiodsl DeviceArrays; the output is allocated
like ``a`` unless ``out`` is given. This module has no ``run``: the demo does not treat it as an
example, the levels import it (the demo puts this folder on sys.path).
"""

from __future__ import annotations

import numpy as np

from kaiodsl import f16, f32
from kaiodsl.errors import ArgumentError
from kaiodsl.ops._common import (inspect_array, new_like, require_contiguous, require_dtype,
                                 require_i32_sizes, require_rank, same_kind)

QUICK = (40, 24, 136)       # simulator: M and N not tile multiples, K a few k tiles with a ragged last one
FULL = (1000, 1016, 1032)   # GPU: a few hundred blocks, every edge still ragged
TOL = 1e-5                  # relative norm: f32 accumulation of exact f16 products


# The tile library keeps offsets inside a tile 32-bit (a row below 256 times K): the tensor-core levels
# take K below this; kaiodsl.ops.matmul switches to its 64-bit ("wide") kernels instead.
TILE_K_LIMIT = 2**31 // 256


def check_args(op: str, a, b, out, k_multiple: int = 1, k_limit: int | None = None):
    """(M, N, K, out) for ``a`` [M, K] and ``b`` [N, K]; ``out`` (None: a new [M, N] f32 array like ``a``).
    Raises ArgumentError naming the argument and its value before anything is allocated."""
    az, bz = inspect_array("a", a, op), inspect_array("b", b, op)
    require_rank(az, 2, op, "a matrix [M, K]")
    require_rank(bz, 2, op, "a matrix [N, K] (K-major, like an nn.Linear weight)")
    require_dtype(az, (f16,), op)
    require_dtype(bz, (f16,), op)
    same_kind(op, az, bz)
    require_contiguous(az, op)
    require_contiguous(bz, op)
    (M, K), (N, Kb) = az.shape, bz.shape
    if Kb != K:
        raise ArgumentError(f"{op}(): 'a' is [M, K] = {az.shape} and 'b' is [N, K] = {bz.shape}: "
                            f"K={K} and {Kb} differ")
    for name, v in (("M", M), ("N", N), ("K", K)):
        if v < 1:
            raise ArgumentError(f"{op}(): {name}={v} must be at least 1")
    if K % k_multiple:
        raise ArgumentError(f"{op}(): K={K} must be a multiple of {k_multiple} (rows of a and b start on "
                            f"16-byte boundaries for the 16-byte copies)")
    if k_limit is not None and K >= k_limit:
        raise ArgumentError(f"{op}(): K={K} must be below {k_limit} (32-bit offsets inside a tile); "
                            f"kaiodsl.ops.matmul handles larger K")
    require_i32_sizes(op, M=M, N=N, K=K)
    if out is None:
        return M, N, K, new_like(az, (M, N), f32)
    oz = inspect_array("out", out, op)
    require_dtype(oz, (f32,), op)
    if tuple(oz.shape) != (M, N):
        raise ArgumentError(f"{op}(): 'out' has shape {oz.shape}; it must be [M, N] = ({M}, {N})")
    require_contiguous(oz, op)
    same_kind(op, az, oz)
    return M, N, K, out


def check_level(gemm, quick: bool) -> str:
    """Run ``gemm`` on fresh random f16 data (a NaN-poisoned output) and compare with float64 numpy."""
    M, N, K = QUICK if quick else FULL
    rng = np.random.default_rng()
    a = rng.standard_normal((M, K)).astype(np.float16)
    b = rng.standard_normal((N, K)).astype(np.float16)
    c = np.full((M, N), np.nan, np.float32)          # any element the kernel skips stays NaN
    gemm(a, b, out=c)
    want = a.astype(np.float64) @ b.astype(np.float64).T
    assert np.all(np.isfinite(c)), f"{np.isnan(c).sum()} of {c.size} outputs were not written"
    err = float(np.linalg.norm(c - want) / np.linalg.norm(want))
    assert err <= TOL, f"relative error {err:.2e} > {TOL:.0e} at {M}x{N}x{K}"
    return f"{M}x{N}x{K} (ragged edges): relative error {err:.1e}"
