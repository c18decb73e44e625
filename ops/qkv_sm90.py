"""Fused QKV on sm_90a: ``qkv_project`` (f16/bf16 weights) as one launch of the Hopper GEMM.

The kernel is ops/gemm_sm90.py's (persistent, warp-specialised TMA producer, wgmma consumers) with
three ``Segments``: the output tiles walk q's column tiles, then k's, then v's; the producer loads B
from the projection's own tensor map at the local column, and the consumers' epilogue adds the
projection's bias, rotates q and k in registers (``tiles.rope``: a wgmma accumulator row holds whole
heads, so rotate_half's partner D / 2 columns on is in the same lane) and stores row-major or
head-major with the projection's head count. x is read once per row tile for all three.

It needs each projection's N to be a multiple of block_n (no tile straddles two projections), with
a rope block_n a multiple of head_dim and head_dim of 16 (rotate_half) or 8 (interleaved), and
16-byte aligned rows (TMA); ``pick`` says which tiling fits or why none does (then ops/qkv_kernels.py runs).
"""

from kaiodsl import Ptr, f32, i32, tiles
from kaiodsl.errors import ArgumentError
from kaiodsl.tiles.rope import Rope

from . import gemm_sm90
from .gemm_sm90 import NARROW, Sm90Config
from .gemm_sm90_segments import Segment, Segments, launch_segments


def _misfit(cfg: Sm90Config, Nq: int, Nkv: int, D: int, style: str) -> str:
    """Why the segmented kernel cannot run tiling ``cfg`` for these projections ('' when it can)."""
    bn = cfg.block_n
    if Nq % bn or Nkv % bn:
        return f"N_q={Nq} and N_kv={Nkv} must be multiples of block_n={bn}"
    if style and not Rope(style, D).fits_lane(bn):
        return (f"rope_style={style!r} needs block_n={bn} a multiple of head_dim={D} (whole heads a tile) and "
                f"head_dim a multiple of {16 if style == 'rotate_half' else 8}")
    return ""


def pick(M: int, K: int, Nq: int, Nkv: int, D: int, style: str, rows_aligned: bool):
    """(the Sm90Config the heuristic takes, '') or (None, why not): sm_90a, M past the decode sizes,
    16-byte aligned rows, and the gemm heuristic's tiling (128 columns with a rope, or when the
    heuristic's do not divide the projections) fitting them."""
    from kaiodsl.compiler import default_arch

    if not gemm_sm90.wants_sm90(M, Nq + 2 * Nkv, K, "nk"):
        return None, f"the target is {default_arch()}" if default_arch() != "sm_90a" else f"M={M} <= 64"
    if not rows_aligned:
        return None, "x or a weight has rows off 16-byte boundaries (TMA)"
    why = ""
    first = gemm_sm90.sm90_config(M, Nq + 2 * Nkv, K, gemm_sm90.sm_count())
    if style:           # a rope epilogue beside 256-column accumulators spills (168 registers a thread)
        first = NARROW
    for cfg in dict.fromkeys((first, NARROW)):
        why = _misfit(cfg, Nq, Nkv, D, style)
        if not why:
            return cfg, ""
    return None, why


def checked(op: str, config: Sm90Config, K: int, Nq: int, Nkv: int, D: int, style: str, rows_aligned: bool):
    """A given Sm90Config after gemm_sm90's checks and the segments' (ArgumentError naming the rule)."""
    cfg = gemm_sm90.checked_config(op, config, K, "nk", rows_aligned, 2, lambda: config)
    why = _misfit(cfg, Nq, Nkv, D, style)
    if cfg.split_k != 1 or cfg.store == "tma":
        why = (f"the segmented kernel stores q, k and v directly and does not split K (store='auto' or "
               f"'direct', split_k=1)")
    if why:
        raise ArgumentError(f"{op}(): config {cfg}: {why}; use config=None")
    return cfg


def two_d(x, M: int, K: int):
    """x as [M, hidden] for its tensor map (a view: numpy and torch reshape; None if it cannot)."""
    if len(x.shape) == 2:
        return x
    return x.reshape(M, K) if hasattr(x, "reshape") else None


def segments(Nq: int, Nkv: int, out_t, has_bias: bool, bhsd: bool, S: int, D: int, style: str,
             has_pos: bool) -> tuple:
    """(the Segments of q, k, v, the kaiodsl types of the launch's operands): biases bq, bk, bv
    (operands 0..2 when present), then rope's cos, sin and positions (or S) shared by q and k."""
    types = [Ptr[f32]] * 3 if has_bias else []
    ropes, rope_args = (None,) * 3, ()
    if style:
        r = Rope(style, D, has_pos)
        ropes, rope_args = (r, r, None), tuple(range(len(types), len(types) + 3))
        types += [Ptr[f32], Ptr[f32], Ptr[i32] if has_pos else i32]
    parts = []
    for n, width in enumerate((Nq, Nkv, Nkv)):
        store = tiles.HeadMajor(S, width // D, D) if bhsd else tiles.RowMajor()
        E = tiles.Epilogue((tiles.Bias(),) if has_bias else (), out_t, store)
        parts.append(Segment(width, E, (n,) if has_bias else (), ropes[n], rope_args if ropes[n] else ()))
    return Segments(tuple(parts)), tuple(types)


def launch(x2, ws, outs, M: int, K: int, Nq: int, Nkv: int, cfg: Sm90Config, dtype_name: str, out_t,
           biases, bhsd: bool, S: int, D: int, style: str, rope, positions, dummy):
    """The one launch: q, k, v through three segments (validated operands, allocated outputs)."""
    segs, types = segments(Nq, Nkv, out_t, biases is not None, bhsd, S, D, style, positions is not None)
    args = list(biases or ())
    if style:
        args += [rope[0], rope[1], positions if positions is not None else S]
    launch_segments(dtype_name, x2, tuple(ws), tuple(outs), M, K, cfg, segs, tuple(args), types, dummy)
    return tuple(outs)
