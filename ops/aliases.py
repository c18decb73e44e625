"""KAIO's op names on kaiodsl's ops (KAIO: the Rust PTX DSL this project learns from).

KAIO's matmuls take ``a`` [M, K] and ``b`` [K, N], both row-major, one input dtype per op;
these are kaiodsl's ops pinned to that contract: the tensor-core ones are ``matmul`` with
``b_layout="kn"``, ``out_dtype=f32`` and a fixed pipeline; ``matmul_int8`` is kaiodsl's
``matmul_int8`` with ``b_layout="kn"`` (b [K, N]: one transposed copy of b per call; kaiodsl's own
``matmul_int8`` defaults to b [N, K]). ``matmul_int4`` (W4A16) takes the packed weights of
``ops/int4_pack.py`` and is the same function.

| KAIO                 | kaiodsl                                                          |
| -------------------- | ---------------------------------------------------------------- |
| matmul_tc            | matmul(a, b, b_layout="kn", out_dtype=f32, pipeline="sync"), f16 |
| matmul_tc_bf16       | the same, bf16                                                   |
| matmul_tc_async      | the same with pipeline="async", f16                              |
| matmul_tc_bf16_async | pipeline="async", bf16                                           |
| matmul_int8          | matmul_int8(a, b, scale, b_layout="kn"): (a @ b) * scale, f32    |
| matmul_int4          | matmul_int4 (the same function)                                  |
| qkv_project_int8     | qkv_project_int8 pinned to f16 x, three f16 [M, N] outputs       |
| qkv_project_int4     | qkv_project_int4 pinned to f16 x, three f16 [M, N] outputs       |
"""

from kaiodsl import bf16, f16, f32
from kaiodsl.errors import ArgumentError

from ._common import inspect_array, require_dtype
from .matmul import matmul
from .matmul_int4 import matmul_int4
from . import qkv as _qkv
from .matmul_int8 import matmul_int8 as _matmul_int8


def _renamed(op: str, call):
    """Run ``call()``; an ArgumentError says which name the user called."""
    try:
        return call()
    except ArgumentError as e:
        raise ArgumentError(f"{op}: {e}") from None


def _tc(op: str, dtype, pipeline: str):
    def run(a, b, *, config=None):
        require_dtype(inspect_array("a", a, op), (dtype,), op)
        return _renamed(op, lambda: matmul(a, b, b_layout="kn", out_dtype=f32, pipeline=pipeline, config=config))

    run.__name__ = run.__qualname__ = op
    run.__doc__ = (f"KAIO's ``{op}``: {dtype} a [M, K] @ b [K, N] (row-major) -> f32 [M, N], "
                   f"{pipeline} pipeline (kaiodsl.ops.matmul).")
    return run


matmul_tc = _tc("matmul_tc", f16, "sync")
matmul_tc_bf16 = _tc("matmul_tc_bf16", bf16, "sync")
matmul_tc_async = _tc("matmul_tc_async", f16, "async")
matmul_tc_bf16_async = _tc("matmul_tc_bf16_async", bf16, "async")


def matmul_int8(a, b, scale=1.0, *, config=None):
    """KAIO's ``matmul_int8``: int8 a [M, K] @ int8 b [K, N] (row-major) * scale -> f32 [M, N], int32
    accumulation (kaiodsl.ops.matmul_int8 with b_layout="kn": one transposed copy of b)."""
    return _renamed("matmul_int8 (KAIO)", lambda: _matmul_int8(a, b, scale, b_layout="kn", config=config))


def _kaio_qkv(op: str, fn):
    def run(x, wq, wk, wv, sq, sk, sv, **kw):
        require_dtype(inspect_array("x", x, op), (f16,), op)
        if len(inspect_array("x", x, op).shape) != 2:
            raise ArgumentError(f"{op}: 'x' must be [M, K] (KAIO's contract)")
        extra = set(kw) - {"bias", "zeros", "group_size"}
        if extra:
            raise ArgumentError(f"{op}: KAIO's contract takes bias=, zeros=, group_size=; got {sorted(extra)} "
                                f"(kaiodsl.ops.{op} has layouts, rope and out dtypes)")
        try:
            return fn(x, wq, wk, wv, sq, sk, sv, **kw)
        except ArgumentError as e:
            raise ArgumentError(f"{op}: {e}") from None

    run.__name__ = run.__qualname__ = op
    run.__doc__ = f"KAIO's ``{op}``: f16 x [M, K] -> (q, k, v) f16 [M, N_q], [M, N_kv], [M, N_kv] (ops.{op})."
    return run


KAIO_NAMES = {"matmul_tc": matmul_tc, "matmul_tc_bf16": matmul_tc_bf16, "matmul_tc_async": matmul_tc_async,
              "matmul_tc_bf16_async": matmul_tc_bf16_async, "matmul_int8": matmul_int8,
              "matmul_int4": matmul_int4,
              "qkv_project_int8": _kaio_qkv("qkv_project_int8", _qkv.qkv_project_int8),
              "qkv_project_int4": _kaio_qkv("qkv_project_int4", _qkv.qkv_project_int4)}

# attention: KAIO's single-head names (ops/attention_kaio.py; the map is in docs/attention.md)
from .attention_kaio import KAIO_ATTENTION  # noqa: E402

KAIO_NAMES.update(KAIO_ATTENTION)

__all__ = list(KAIO_NAMES) + ["KAIO_NAMES"]
