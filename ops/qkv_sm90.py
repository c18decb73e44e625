"""Fused QKV on sm_90a: ``qkv_project`` (f16/bf16 weights) as one launch of the Hopper GEMM, and
``qkv_project_int8`` / ``qkv_project_int4`` as one launch of the dequantizing GEMM (ops/gemm_sm90_w4.py).

The kernel is ops/gemm_sm90.py's (persistent, warp-specialised TMA producer, wgmma consumers) with
three ``Segments``: the output tiles walk q's column tiles, then k's, then v's; the producer loads B
from the projection's own tensor map at the local column, and the consumers' epilogue adds the
projection's bias, rotates q and k in registers (``tiles.rope``: a wgmma accumulator row holds whole
heads, so rotate_half's partner D / 2 columns on is in the same lane) and stores row-major or
head-major with the projection's head count. x is read once per row tile for all three.

It needs each projection's N to be a multiple of block_n (no tile straddles two projections), with
a rope block_n a multiple of head_dim and head_dim of 16 (rotate_half) or 8 (interleaved), and
16-byte aligned rows (TMA); ``pick`` says which tiling fits or why none does (then ops/qkv_kernels.py runs).

int8/int4 weights (``pick_quant``, ``QuantWeights``): the same three segments on gemm_sm90_w4's kernel,
whose producer warpgroup dequantizes the tile's projection's weights (with its scales and zero points,
bounded by its N) into the swizzled B tile; int8's per-channel scales are an epilogue ColScale.
"""

from dataclasses import dataclass

from kaiodsl import Ptr, f32, i32, tiles
from kaiodsl.errors import ArgumentError
from kaiodsl.tiles.rope import Rope

from . import gemm_sm90
from . import gemm_sm90_w4 as w4
from .gemm_sm90 import NARROW, Sm90Config
from .gemm_sm90_segments import Segment, Segments, launch_segments
from .gemm_sm90_w4_swap import W4SwapConfig, launch_w4_swap_segments, swap_config


# 16 < M <= 64 (past the decode streams, short of two m64 row blocks): one consumer warpgroup on 64-row
# tiles. The H200 sweep (scripts/qkv_midm_sweep.py, against three cuBLAS f16 matmuls): f16 64 x 128 in a
# 6-slot ring 1.34x / 1.47x at M 32 / 64 for Llama-3-8B and 1.17x / 1.22x at the 70B-like shape, where
# the mma.sync kernel's 128-column blocks (48 for 8B's 6144 columns) ran at 0.64-0.66x. int8/int4
# weights: MID_QUANT (64 x 64 in 8 slots) measured 1.17-1.31x at 8B (96 tiles) before the W4 GEMM's TMA
# staging ring; after it 0.68x / 0.88x (int8 / int4, M 64) whatever the staging depth, against 0.84x /
# 0.98x for the mma.sync kernels (qkv_config), so the heuristic no longer picks it (config= still takes it).
MID_M = (16, 64)
MID = Sm90Config(64, 128, 6, 1, store="direct")
MID_QUANT = w4.W4Config(64, 64, 8, 1)


def _misfit(cfg, Nq: int, Nkv: int, D: int, style: str) -> str:
    """Why a segmented kernel cannot run tiling ``cfg`` (an Sm90Config or W4Config) for these projections
    ('' when it can)."""
    bn = cfg.block_n
    if Nq % bn or Nkv % bn:
        return f"N_q={Nq} and N_kv={Nkv} must be multiples of block_n={bn}"
    if style and not Rope(style, D).fits_lane(bn):
        return (f"rope_style={style!r} needs block_n={bn} a multiple of head_dim={D} (whole heads a tile) and "
                f"head_dim a multiple of {16 if style == 'rotate_half' else 8}")
    return ""


def pick(M: int, K: int, Nq: int, Nkv: int, D: int, style: str, rows_aligned: bool):
    """(the Sm90Config the heuristic takes, '') or (None, why not): sm_90a, M past the decode sizes (MID at
    16 < M <= 64),
    16-byte aligned rows, and the gemm heuristic's tiling (128 columns with a rope, or when the
    heuristic's do not divide the projections) fitting them."""
    from kaiodsl.compiler import default_arch

    mid = default_arch() == "sm_90a" and MID_M[0] < M <= MID_M[1]
    if not (mid or gemm_sm90.wants_sm90(M, Nq + 2 * Nkv, K, "nk")):
        return None, f"the target is {default_arch()}" if default_arch() != "sm_90a" else f"M={M} <= {MID_M[0]}"
    if not rows_aligned:
        return None, "x or a weight has rows off 16-byte boundaries (TMA)"
    why = ""
    first = MID if mid else gemm_sm90.sm90_config(M, Nq + 2 * Nkv, K, gemm_sm90.sm_count())
    if style and not mid:   # a rope epilogue beside 256-column accumulators spills (168 registers a thread)
        first = NARROW
    for cfg in (first,) if mid else dict.fromkeys((first, NARROW)):
        why = _misfit(cfg, Nq, Nkv, D, style)
        if not why:
            return cfg, ""
    return None, why


def checked(op: str, config: Sm90Config, K: int, Nq: int, Nkv: int, D: int, style: str, rows_aligned: bool):
    """A given Sm90Config after gemm_sm90's checks and the segments' (ArgumentError naming the rule)."""
    cfg = gemm_sm90.checked_config(op, config, K, "nk", rows_aligned, 2, lambda: config)
    why = _misfit(cfg, Nq, Nkv, D, style)
    if cfg.split_k != 1 or cfg.store == "tma":
        why = ("the segmented kernel stores q, k and v directly and does not split K (store='auto' or "
               "'direct', split_k=1)")
    if why:
        raise ArgumentError(f"{op}(): config {cfg}: {why}; use config=None")
    return cfg


def two_d(x, M: int, K: int):
    """x as [M, hidden] for its tensor map (a view: numpy and torch reshape; None if it cannot)."""
    if len(x.shape) == 2:
        return x
    return x.reshape(M, K) if hasattr(x, "reshape") else None


def segments(Nq: int, Nkv: int, out_t, has_bias: bool, bhsd: bool, S: int, D: int, style: str,
             has_pos: bool, scaled: bool = False) -> tuple:
    """(the Segments of q, k, v, the kaiodsl types of the launch's operands): with ``scaled`` the int8
    weights' per-channel f32 scales sq, sk, sv (operands 0..2, an epilogue ColScale), then biases bq, bk,
    bv when present, then rope's cos, sin and positions (or S) shared by q and k."""
    types = [Ptr[f32]] * (3 * scaled + 3 * has_bias)
    ropes, rope_args = (None,) * 3, ()
    if style:
        r = Rope(style, D, has_pos)
        ropes, rope_args = (r, r, None), tuple(range(len(types), len(types) + 3))
        types += [Ptr[f32], Ptr[f32], Ptr[i32] if has_pos else i32]
    ops = ((tiles.ColScale(),) if scaled else ()) + ((tiles.Bias(),) if has_bias else ())
    parts = []
    for n, width in enumerate((Nq, Nkv, Nkv)):
        store = tiles.HeadMajor(S, width // D, D) if bhsd else tiles.RowMajor()
        args = ((n,) if scaled else ()) + ((3 * scaled + n,) if has_bias else ())
        parts.append(Segment(width, tiles.Epilogue(ops, out_t, store), args, ropes[n], rope_args if ropes[n] else ()))
    return Segments(tuple(parts)), tuple(types)


@dataclass(frozen=True)
class QuantWeights:
    """The int8/int4 weights' extras for the dequantizing kernel (ops/gemm_sm90_w4.py): ``kind`` "int8"
    (per-channel f32 ``scales``, an epilogue ColScale; ``group_size`` 0) or "int4" (``gscales`` the group
    scales in x's dtype, ``zeros`` the zero points when ``has_zeros``); the other slots hold placeholders.
    ``wdtype``: the weights' dtype name (int4: i32 or u32 words, int8: i8)."""

    kind: str
    group_size: int
    has_zeros: bool
    wdtype: str
    scales: tuple
    gscales: tuple
    zeros: tuple


def launch(x2, ws, outs, M: int, K: int, Nq: int, Nkv: int, cfg, dtype_name: str, out_t,
           biases, bhsd: bool, S: int, D: int, style: str, rope, positions, dummy, quant: QuantWeights = None):
    """The one launch: q, k, v through three segments (validated operands, allocated outputs) of the
    Hopper GEMM, or with ``quant`` (cfg a W4Config) of the dequantizing kernel."""
    scaled = quant is not None and quant.kind == "int8"
    segs, types = segments(Nq, Nkv, out_t, biases is not None, bhsd, S, D, style, positions is not None, scaled)
    args = list(quant.scales if scaled else ()) + list(biases or ())
    if style:
        args += [rope[0], rope[1], positions if positions is not None else S]
    if quant is None:
        launch_segments(dtype_name, x2, tuple(ws), tuple(outs), M, K, cfg, segs, tuple(args), types, dummy)
    elif isinstance(cfg, W4SwapConfig):
        launch_w4_swap_segments(dtype_name, quant.group_size, quant.has_zeros, quant.wdtype, cfg, x2, tuple(ws),
                                quant.gscales, quant.zeros, tuple(outs), M, K, segs, tuple(args), types, dummy,
                                quant.kind)
    else:
        Dq = w4.W4Dequant(cfg, dtype_name, quant.group_size, quant.has_zeros, quant.kind)
        w4.launch_w4_segments(Dq, quant.wdtype, x2, tuple(ws), quant.gscales, quant.zeros, tuple(outs), M, K, segs,
                              tuple(args), types, dummy)
    return tuple(outs)


# -- int8 / int4 weights: gemm_sm90_w4's dequantizing kernel with the same segments ----------------------
def pick_quant(kind: str, M: int, K: int, Nq: int, Nkv: int, D: int, style: str, align: int):
    """(the W4SwapConfig / W4Config the heuristic takes, '') or (None, why not) for int8/int4 weights: sm_90a
    past M = 16 (gemm_sm90_w4.use_sm90_w8 / use_sm90_w4; with a rope past M = 64), x (and int8 weights) on 16-byte boundaries (``align``: the
    power of two dividing their data, 0 when x cannot be viewed as [M, hidden]), and gemm_sm90_w4's tiling
    (without a rope gemm_sm90_w4_swap.swap_config's; else gemm_sm90_w4.w4_config's: 256 x 128 where those
    tiles fill the SMs; 128 x 128 with a rope, or when 256 columns do not divide the projections) fitting
    them."""
    from kaiodsl.compiler import default_arch

    N = Nq + 2 * Nkv
    sms = gemm_sm90.sm_count()
    if default_arch() == "sm_90a" and MID_M[0] < M <= MID_M[1] and style:
        return None, f"M={M} <= 64 with a rope: the mma.sync kernels measured faster than MID_QUANT's 64 x 64 tiles"
    # use_sm90_w4 at group 128 stands for all three group sizes qkv_project_int4 takes (the kernel runs each)
    if not (w4.use_sm90_w8(M, N, K) if kind == "int8" else w4.use_sm90_w4(M, N, K, 128)):
        return None, f"the target is {default_arch()}" if default_arch() != "sm_90a" else f"M={M} <= 64"
    if align < 16:
        return None, "x or an int8 weight is off 16-byte boundaries (TMA, 16-byte loads)"
    why = ""
    if not style:           # the swap-AB kernel (weights in wgmma's A registers): no rope epilogue
        cfg = swap_config(M, N, K, sms, kind)
        why = _misfit(cfg, Nq, Nkv, D, style)
        if not why:
            return cfg, ""
    first = w4.NARROW if style else w4.w4_config(M, N, K, sms, kind=kind)    # a rope spills at 256 columns and at 256 rows
    for cfg in dict.fromkeys((first, w4.NARROW)):
        why = _misfit(cfg, Nq, Nkv, D, style)
        if not why:
            return cfg, ""
    return None, why


def checked_quant(op: str, config, M: int, K: int, Nq: int, Nkv: int, D: int, style: str, align: int):
    """A given W4Config after gemm_sm90_w4's checks and the segments' (ArgumentError naming the rule)."""
    cfg = w4.sm90_w4_plan(op, M, Nq + 2 * Nkv, K, True, None, align, config)
    why = _misfit(cfg, Nq, Nkv, D, style)
    if isinstance(cfg, W4SwapConfig) and style:
        why = "the swap-AB kernel has no rope epilogue (a rotation pairs columns held by other warps there)"
    if why:
        raise ArgumentError(f"{op}(): config {cfg}: {why}; use config=None")
    return cfg
