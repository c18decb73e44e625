"""The GEMM's gradient: ``matmul_backward(grad, a, b, *, b_layout="kn") -> (da, db)``.

Both products run through the forward kernels (``kaiodsl.ops.matmul``), no new PTX; each
output is in the input dtype (f32 accumulation inside the kernel). With ``y = a @ b``:

=========  ============================  ==========================================
b_layout   da                            db
=========  ============================  ==========================================
``"kn"``   ``grad @ b^T``: matmul(grad,  ``a^T @ grad``: matmul(a^T, grad, "kn")
           b, "nk") -- b [K, N] *is*     -- copies a (transposed)
           the [N', K'] operand, no copy
``"nk"``   ``grad @ w``: matmul(grad, w, ``grad^T @ a``: matmul(grad^T, a, "kn")
           "kn") -- no copy              -- copies grad (transposed)
=========  ============================  ==========================================

The weight gradient reduces over M, and the forward kernel's 16-byte copies want the reduction
length to be a multiple of 8 (any other K takes its slower element path), so that operand pair is zero-padded to ``M8 = max(8, ceil8(M))`` rows
(the padding copy is fused into the transpose copy; the other operand is copied only
when ``M % 8``). For ``"nk"`` with ``N % 8`` (allowed in the forward), ``da`` reduces over N
and ``grad`` and ``w`` are zero-padded to a multiple of 8 as well. Zero rows add nothing.
M = 0 or N = 0 launch nothing: one gradient is empty, the other all zeros. Nothing is copied when
M and N are multiples of 8 except the one transposed operand.

Copies use the input's framework: torch (``.t()`` + ``torch.zeros``), numpy, or for a
``kaiodsl.DeviceArray`` a round trip through host memory (slow on a GPU: prefer torch
tensors there). The one copy of an [M, K] or [M, N] operand is the price of not having a
transposed-A GEMM; it is O(MK) against the O(MNK) products.
"""

from __future__ import annotations

import numpy as np

from kaiodsl import bf16, f16
from kaiodsl.errors import ArgumentError

from ._common import copy_2d as _copy
from ._common import (inspect_array, require_choice, require_contiguous, require_dtype, require_i32_sizes,
                      require_rank, same_kind, zeros_like)
from .matmul import matmul

OP = "matmul_backward"


def _ceil8(n: int) -> int:
    return max(8, (n + 7) // 8 * 8)


def _validate(grad, a, b, b_layout: str, pipeline: str):
    gz, az, bz = (inspect_array("grad", grad, OP), inspect_array("a", a, OP), inspect_array("b", b, OP))
    require_choice(OP, "b_layout", b_layout, ("kn", "nk"), " ('kn': b is [K, N]; 'nk': b is [N, K], the "
                   "nn.Linear weight)")
    require_choice(OP, "pipeline", pipeline, ("auto", "sync", "async"))
    require_rank(az, 2, OP, "a matrix [M, K]")
    require_rank(bz, 2, OP, "a matrix [K, N]" if b_layout == "kn" else "a matrix [N, K]")
    require_rank(gz, 2, OP, "a matrix [M, N]")
    require_dtype(az, (f16, bf16), OP)
    require_dtype(bz, (az.dtype,), OP)
    require_dtype(gz, (az.dtype,), OP)
    same_kind(OP, az, bz, gz)
    M, K = az.shape
    Kb, N = bz.shape if b_layout == "kn" else bz.shape[::-1]
    if Kb != K:
        raise ArgumentError(f"{OP}(): 'a' is [M, K] = {az.shape} but 'b' (b_layout={b_layout!r}) is {bz.shape}: "
                            f"K={K} and {Kb} differ")
    if gz.shape != (M, N):
        raise ArgumentError(f"{OP}(): 'grad' must be [M, N] = {(M, N)} (the forward output's shape), "
                            f"got {gz.shape}")
    for z in (az, bz, gz):
        require_contiguous(z, OP)
    require_i32_sizes(OP, M=_ceil8(M), N=_ceil8(N), K=K)     # M, N as padded (see the module docstring)
    for z in (gz, az, bz):
        if z.kind == "cuda":
            raise ArgumentError(f"{OP}(): needs torch tensors, kaiodsl.DeviceArrays or numpy arrays to make its "
                                f"transposed copies; got a __cuda_array_interface__ object for '{z.name}'")
    return az.dtype, gz.kind, az.kind, bz.kind, M, N, K


def matmul_backward(grad, a, b, *, b_layout: str = "kn", pipeline: str = "auto"):
    """Gradients of ``y = a @ b`` (``b_layout="kn"``, b [K, N]) or ``y = a @ b^T`` (``"nk"``,
    b [N, K]): returns ``(da [M, K], db)`` with db shaped like b, in the input dtype."""
    dt, gk, ak, bk, M, N, K = _validate(grad, a, b, b_layout, pipeline)
    if M == 0 or N == 0:      # one gradient reduces over nothing (zeros), the other is empty: no launch
        like = inspect_array("a", a, OP)
        return zeros_like(like, (M, K), dt), zeros_like(like, tuple(b.shape), dt)
    M8 = _ceil8(M)
    N8 = N if N % 8 == 0 else _ceil8(N)
    if b_layout == "kn":
        da = matmul(_copy(grad, gk, False, M, N8), _copy(b, bk, False, K, N8), b_layout="nk",
                    out_dtype=dt, pipeline=pipeline)
        db = matmul(_copy(a, ak, True, K, M8), _copy(grad, gk, False, M8, N), b_layout="kn",
                    out_dtype=dt, pipeline=pipeline)
        return da, db
    da = matmul(_copy(grad, gk, False, M, N8), _copy(b, bk, False, N8, K), b_layout="kn", out_dtype=dt,
                pipeline=pipeline)
    db = matmul(_copy(grad, gk, True, N, M8), _copy(a, ak, False, M8, K), b_layout="kn", out_dtype=dt,
                pipeline=pipeline)
    return da, db


def reference_matmul_backward(grad, a, b, b_layout: str = "kn"):
    """float64 numpy reference: (da, db) for ``y = a @ b`` ("kn") or ``y = a @ b^T`` ("nk")."""
    g, a64, b64 = (np.asarray(x, np.float64) for x in (grad, a, b))
    if b_layout == "kn":
        return g @ b64.T, a64.T @ g
    return g @ b64, g.T @ a64
