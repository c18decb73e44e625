"""KAIO's attention names with KAIO's contracts: single head [S, D] (see docs/attention.md for the map).

* ``attention_tc(q, k, v)`` / ``attention_tc_causal``: f16 [Sq, D], [Sk, D] -> f32 [Sq, D]; the
  short-sequence op (Sk <= 384); the tensor-core flash forward with an f32 output.
* ``attention_flash(q, k, v)`` / ``attention_flash_causal``: f32 in and out, f32-accurate (the FMA
  kernels of ops/attention_f32.py), any length; ``return_lse=True`` also gives the f32 [Sq] LSE that
  ``attention_flash_backward`` rebuilds the softmax from. Causal is top-left (key j <= query i).
"""

import math

from kaiodsl import f16, f32
from kaiodsl.errors import ArgumentError

from ._common import inspect_array, new_like, require_contiguous, require_dtype, require_rank, same_kind
from .attention import HEAD_DIMS, attention
from .attention_f32 import WARPS, flash_f32_dkdv, flash_f32_dq, flash_f32_forward, rowdot_f32, smem_bytes

TC_MAX_SEQ_K = 384


def _single_head(op, dtype, q, k, v, more=()):
    zs = [inspect_array(n, x, op) for n, x in (("q", q), ("k", k), ("v", v)) + tuple(more)]
    for z in zs:
        require_rank(z, 2, op, "a single head [S, D]")
        require_dtype(z, (dtype,), op)
        require_contiguous(z, op)
    same_kind(op, *zs)
    qz, kz, vz = zs[:3]
    if kz.shape != vz.shape or kz.shape[1] != qz.shape[1]:
        raise ArgumentError(f"{op}(): q [Sq, D] = {qz.shape}, k and v [Sk, D] = {kz.shape}, {vz.shape}: D and "
                            f"k/v shapes must match")
    return zs


def _tc(op: str, causal: bool):
    def run(q, k, v):
        qz, kz, vz = _single_head(op, f16, q, k, v)
        if kz.shape[0] > TC_MAX_SEQ_K:
            raise ArgumentError(f"{op}(): seq_k={kz.shape[0]} is above this op's {TC_MAX_SEQ_K} (KAIO's short-"
                                f"sequence contract); use kaiodsl.ops.attention (any length) instead")
        if qz.shape[1] not in HEAD_DIMS:
            raise ArgumentError(f"{op}(): head dim D={qz.shape[1]} is not supported; allowed: "
                                f"{', '.join(map(str, HEAD_DIMS))}")
        Sq, D = qz.shape
        out = new_like(qz, (Sq, D), f32)
        four = [_4d(x) for x in (q, k, v, out)]
        try:
            attention(*four[:3], causal="top_left" if causal else False, out=four[3], out_dtype="f32")
        except ArgumentError as e:
            raise ArgumentError(f"{op}: {e}") from None
        return out

    run.__name__ = run.__qualname__ = op
    run.__doc__ = f"KAIO's ``{op}``: f16 q [Sq, D], k/v [Sk <= 384, D] -> f32 [Sq, D]" + (
        ", causal (top-left)." if causal else ".")
    return run


def _4d(x):
    return x.reshape((1, 1) + tuple(x.shape))


def _flash_check(op, q, k, v, more=()):
    zs = _single_head(op, f32, q, k, v, more)
    D = zs[0].shape[1]
    if D < 1 or D > 256 or D % 8:
        raise ArgumentError(f"{op}(): head dim D={D} must be a multiple of 8 up to 256")
    return zs


def _flash(op: str, causal: bool):
    def run(q, k, v, *, return_lse: bool = False):
        qz, kz, vz = _flash_check(op, q, k, v)
        (Sq, D), Sk = qz.shape, kz.shape[0]
        out = new_like(qz, (Sq, D), f32)
        lse = new_like(qz, (Sq,), f32)
        if Sq:
            flash_f32_forward(D, causal)[(Sq + WARPS - 1) // WARPS, 32 * WARPS](q, k, v, out, lse, Sq, Sk,
                                                                             1.0 / math.sqrt(D), 0,
                                                                             smem=smem_bytes(D, 1))
        return (out, lse) if return_lse else out

    run.__name__ = run.__qualname__ = op
    run.__doc__ = f"KAIO's ``{op}``: f32 single-head flash attention, f32-accurate" + (
        ", causal (top-left)." if causal else ".")
    return run


attention_tc = _tc("attention_tc", False)
attention_tc_causal = _tc("attention_tc_causal", True)
attention_flash = _flash("attention_flash", False)
attention_flash_causal = _flash("attention_flash_causal", True)


def attention_flash_backward(do, q, k, v, o, lse, *, causal: bool = False):
    """(dq, dk, dv) of attention_flash / attention_flash_causal (``causal=True``): the D-term, a dQ kernel and
    a dK/dV kernel, all f32 FMA."""
    op = "attention_flash_backward"
    qz, kz, vz, dz, oz = _flash_check(op, q, k, v, (("do", do), ("o", o)))
    if dz.shape != qz.shape or oz.shape != qz.shape:
        raise ArgumentError(f"{op}(): 'do' {dz.shape} and 'o' {oz.shape} must have q's shape {qz.shape}")
    lz = inspect_array("lse", lse, op)
    require_dtype(lz, (f32,), op)
    if tuple(lz.shape) != (qz.shape[0],):
        raise ArgumentError(f"{op}(): 'lse' must be f32 [Sq] = [{qz.shape[0]}] (attention_flash(..., "
                            f"return_lse=True)), got shape {lz.shape}")
    (Sq, D), Sk = qz.shape, kz.shape[0]
    dq, dk, dv = new_like(qz, (Sq, D), f32), new_like(qz, (Sk, D), f32), new_like(qz, (Sk, D), f32)
    dr = new_like(qz, (max(Sq, 1),), f32)
    sc = 1.0 / math.sqrt(D)
    if Sq:
        rowdot_f32(D)[(Sq + 3) // 4, 128](do, o, dr, Sq)
        flash_f32_dq(D, causal)[(Sq + WARPS - 1) // WARPS, 32 * WARPS](q, k, v, do, lse, dr, dq, Sq, Sk, sc, 0,
                                                                        smem=smem_bytes(D, 2))
    if Sk:
        flash_f32_dkdv(D, causal)[(Sk + WARPS - 1) // WARPS, 32 * WARPS](q, k, v, do, lse, dr, dk, dv, Sq, Sk, sc,
                                                                          0, smem=smem_bytes(D, 2))
    return dq, dk, dv


KAIO_ATTENTION = {"attention_tc": attention_tc, "attention_tc_causal": attention_tc_causal,
                  "attention_flash": attention_flash, "attention_flash_causal": attention_flash_causal,
                  "attention_flash_backward": attention_flash_backward}

__all__ = list(KAIO_ATTENTION) + ["KAIO_ATTENTION", "TC_MAX_SEQ_K"]
