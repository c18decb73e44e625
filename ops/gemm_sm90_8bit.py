"""The Hopper GEMM (ops/gemm_sm90.py) behind the 8-bit ops: ``matmul_int8`` / ``matmul_w8a8`` (s8
operands, s32 accumulation) and ``matmul_fp8`` (e4m3 / e5m2, f32 accumulation).

An op validates its own arguments, asks ``wants`` whether the Hopper kernel takes the product,
resolves the tiling with ``config`` (a given ``Sm90Config`` or the heuristic, checked for 1-byte
elements and the arch) and runs it with ``run``, giving its epilogue as *terms*: ``(tiles op,
run-time argument, kaiodsl type)`` triples in the order the epilogue applies them.

TMA loads whole rows of 128 bytes of K from 16-byte aligned rows: for 1-byte elements, K a multiple
of 16 and data pointers on 16-byte boundaries (``aligned``).
"""

from __future__ import annotations

from kaiodsl import tiles

from . import gemm_sm90
from ._common import data_alignment
from .gemm_sm90 import Sm90Config


def arch() -> str:
    from kaiodsl.compiler import default_arch
    return default_arch()


def aligned(K: int, *arrs) -> bool:
    """Whether every row of the 1-byte [*, K] operands ``arrs`` (ops._common.Arr) starts on 16 bytes."""
    return K % 16 == 0 and all(data_alignment(a) >= 16 for a in arrs)


def is_auto(config) -> bool:
    return config is None or (isinstance(config, str) and config == "auto")


def wants(config, M: int, N: int, K: int, layout: str, rows_aligned: bool) -> bool:
    """Whether the op runs the Hopper kernel: an Sm90Config was given, or ``config`` is automatic and
    ``gemm_sm90.wants_sm90`` takes the shape (sm_90a, b [N, K], M > 64) with 16-byte aligned rows."""
    if isinstance(config, Sm90Config):
        return True
    return is_auto(config) and rows_aligned and gemm_sm90.wants_sm90(M, N, K, layout)


def config(op: str, config, M: int, N: int, K: int, layout: str, rows_aligned: bool, acc: str = "s32") -> Sm90Config:
    """The tiling to run (``config`` itself, or the heuristic's for automatic, which splits K only for
    ``acc="f32"``: fp8), checked for 1-byte elements by ``gemm_sm90.checked_config``."""
    return gemm_sm90.checked_config(op, config, K, layout, rows_aligned, 1,
                                    lambda: gemm_sm90.sm90_config(M, N, K, gemm_sm90.sm_count(), acc))


def run(dtype_name: str, a, b, out, M: int, N: int, K: int, cfg: Sm90Config, out_t, terms):
    """``out = epilogue(a @ b^T)`` on validated operands; ``terms`` the epilogue's (op, argument, type)."""
    E = tiles.Epilogue(tuple(op for op, _, _ in terms), out_t)
    return gemm_sm90.launch(dtype_name, a, b, out, M, N, K, cfg, E, tuple(arg for _, arg, _ in terms),
                            tuple(t for _, _, t in terms))
