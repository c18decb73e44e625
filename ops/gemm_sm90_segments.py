"""Segments of the Hopper GEMM (ops/gemm_sm90.py): up to three B operands and outputs in one launch.

A ``Segments`` list in place of the kernel's Epilogue (and so in its cache key) makes the output tile
space segment 0's column tiles, then segment 1's, ... (the launch's N is the sum of the widths, each
a multiple of block_n so that no tile straddles two). The kernel differs in two call sites only: the
producer loads a tile's B box from its segment's tensor map at the local column
(``load_segment_b``), and the consumers store through the segment's own epilogue, rope and output
(``store_segments``). The fused QKV projection (ops/qkv_sm90.py) is three segments: q, k, v.
The dequantizing W4A16/W8A16 kernel (ops/gemm_sm90_w4.py) takes the same segments: its producer
reads the weights, scales and zero points of the tile's segment (``segment_of``), its consumers
store through ``store_segments``.
"""

from dataclasses import dataclass, replace

import kaiodsl
from kaiodsl import TensorMap, tiles
from kaiodsl.errors import ArgumentError
from kaiodsl.tiles import rope as trope

from .gemm_sm90 import ELEM_BYTES, Sm90Config, sm90_gemm_kernel, sm_count


MAX_SEGMENTS = 3           # B maps and outputs a segmented kernel takes
MAX_SEGMENT_ARGS = 6       # run-time epilogue operands it takes (shared by the segments through indices)


@dataclass(frozen=True)
class Segment:
    """One output of a segmented launch: ``width`` columns of the tile space (a multiple of block_n,
    so no tile straddles two segments), B rows from the segment's own map at the local column, and
    the store through its own ``epilogue`` (element ops, out type, store policy) with the launch's
    run-time operands at indices ``args``; ``rope`` (a tiles.rope.Rope, its operands at
    ``rope_args``) rotates the tile's values between the element ops and the store."""

    width: int
    epilogue: tiles.Epilogue
    args: tuple = ()
    rope: object = None
    rope_args: tuple = ()


@dataclass(frozen=True)
class Segments:
    """The compile-time segment list (part of the kernel's cache key): the output tiles walk segment
    0's column tiles, then segment 1's, ... (the launch's N is the sum of the widths)."""

    parts: tuple

    @property
    def width(self) -> int:
        return sum(p.width for p in self.parts)

    @property
    def out(self):
        return self.parts[0].epilogue.out

    @property
    def outs(self) -> tuple:
        return tuple(p.epilogue.out for p in self.parts)

    @property
    def tag(self) -> str:
        """The kernel name's part for the segments: their widths, ops, stores and rope."""
        def one(p):
            ops = "".join(op.kind[0] for op in p.epilogue.ops)
            rope = f"r{p.rope.style[0]}{p.rope.head_dim}" if p.rope else ""
            return f"{p.width}{p.epilogue.store.kind[0]}{ops}{rope}"
        return "_seg_" + "_".join(one(p) for p in self.parts)

    def checked(self, cfg, nargs: int, max_args: int = MAX_SEGMENT_ARGS) -> tuple:
        """The parts, after checking that a kernel of tiling ``cfg`` (its block_n) with ``max_args`` operand
        slots can run them with ``nargs`` operands."""
        bad = [p.width for p in self.parts if p.width <= 0 or p.width % cfg.block_n]
        if not 1 <= len(self.parts) <= MAX_SEGMENTS or bad or nargs > max_args:
            raise ArgumentError(f"Segments: 1..{MAX_SEGMENTS} segments whose widths are multiples of block_n="
                                f"{cfg.block_n} and at most {max_args} operands; got widths "
                                f"{[p.width for p in self.parts]}, {nargs} operands")
        for p in self.parts:
            if p.rope and not p.rope.fits_lane(cfg.block_n):
                raise ArgumentError(f"Segments: {p.rope} cannot rotate a {cfg.block_n}-column wgmma tile in "
                                    f"registers (rotate_half: block_n a multiple of head_dim, head_dim of 16)")
            if any(not 0 <= a < nargs for a in p.args + p.rope_args):
                raise ArgumentError(f"Segments: operand indices {p.args + p.rope_args} out of range for {nargs}")
        return self.parts


@kaiodsl.func
def _tma_b(CL: kaiodsl.Const[int], dst, tb, col, k0, bar):
    if CL == 1:
        kaiodsl.tma_load(dst, tb, (col, k0), bar)
    else:
        kaiodsl.tma_load(dst, tb, (col, k0), bar, multicast=kaiodsl.u16(3))


@kaiodsl.func
def load_segment_b(SEGS: kaiodsl.Const, CL: kaiodsl.Const[int], dst, tbs, col, k0, bar):
    """B's box at column ``col`` of the tile space: from the map of the segment holding it, at col's
    column inside that segment."""
    lo = 0
    for s in kaiodsl.static_range(len(SEGS)):
        if col >= lo and col < lo + SEGS[s].width:
            _tma_b(CL, dst, tbs[s], col - lo, k0, bar)
        lo = lo + SEGS[s].width


@kaiodsl.func
def segment_of(SEGS: kaiodsl.Const, operands, col):
    """For the segment s holding column ``col`` of the tile space: ([operands[j][s] for each j], col's
    column inside s, s's width as an i32): e.g. the weight, scale and zero-point pointers a
    dequantizing producer reads, and the width that bounds its rows."""
    sel = [operands[j][0] for j in kaiodsl.static_range(len(operands))]
    local = col
    width = kaiodsl.i32(SEGS[0].width)
    lo = SEGS[0].width
    for s in kaiodsl.static_range(1, len(SEGS)):
        if col >= lo:
            sel = [operands[j][s] for j in kaiodsl.static_range(len(operands))]
            local = col - lo
            width = kaiodsl.i32(SEGS[s].width)
        lo = lo + SEGS[s].width
    return sel, local, width


@kaiodsl.func
def store_segments(SEGS: kaiodsl.Const, W: kaiodsl.Const, accs, outs, args, r0, n0, lane, M):
    """A consumer's accumulators (m tile i at rows r0 + 64 i, columns n0 of the tile space) through the
    segment holding n0: its element ops and store policy into its output; with a rope, one head at a
    time (values, rotation, stores), so only a head's values are live beside the accumulators."""
    lo = 0
    for s in kaiodsl.static_range(len(SEGS)):
        P = SEGS[s]
        if n0 >= lo and n0 < lo + P.width:
            pargs = []
            for a in kaiodsl.static_range(len(P.args)):
                pargs = pargs + [args[P.args[a]]]
            blocks = []
            for i in kaiodsl.static_range(W.m_tiles):
                blocks = blocks + [tiles.warpgroup.acc_tile(W, accs[i])]
            if P.rope:
                for i in kaiodsl.static_range(W.m_tiles):
                    _store_heads(P, W, blocks[i], pargs, args, outs[s], r0 + 64 * i, n0 - lo, lane, M)
            else:                 # the m64 blocks column by column (tiles.epilogue.store_blocks)
                tiles.epilogue.store_blocks(P.epilogue, W.acc_tile, blocks, outs[s], pargs, r0, 64, n0 - lo, lane, M,
                                            P.width)
        lo = lo + P.width


@kaiodsl.func
def _store_heads(P: kaiodsl.Const, W: kaiodsl.Const, tile, pargs, args, out, r0, c0, lane, M):
    """A rope segment's tile, one column group (rotate_half: with its partner D / 2 columns on) at a
    time: values, rotation, stores; the loads of one group's angles go between the stores of the last."""
    rargs = []
    for a in kaiodsl.static_range(len(P.rope_args)):
        rargs = rargs + [args[P.rope_args[a]]]
    D = P.rope.head_dim
    G1 = tiles.AccTile(1, 1, W.acc)
    prow = trope.row_positions(P.rope, G1, rargs, r0, lane, M)[0]
    half = P.rope.style == "rotate_half"
    for j in kaiodsl.static_range(W.n // 8):
        d0 = (8 * j) % D
        if not half or d0 < D // 2:
            js = [j, j + D // 16] if half else [j]
            vals = []
            for k in kaiodsl.static_range(len(js)):
                vals = vals + tiles.epilogue.tile_values(P.epilogue, G1, [[tile[0][js[k]]]], pargs, r0,
                                                         c0 + 8 * js[k], lane, M, P.width)[0]
            vals = trope.rotate_group(P.rope, vals, rargs, prow, d0, lane)
            for k in kaiodsl.static_range(len(js)):
                tiles.epilogue.store_values(P.epilogue, G1, [[vals[k]]], out, r0, c0 + 8 * js[k], lane, M, P.width)


def launch_segments(dtype_name: str, a, bs: tuple, outs: tuple, M: int, K: int, cfg: Sm90Config, E: Segments,
                    args: tuple, arg_types: tuple, dummy):
    """Run the segmented kernel on validated operands: a [M, K]; bs[s] [width_s, K] and outs[s] segment
    s's B and output (16-byte aligned rows); ``args`` the epilogues' run-time operands, ``dummy`` an f32
    array for the operand slots they leave unused."""
    eb = ELEM_BYTES[dtype_name]
    cfg = replace(cfg, store="direct")            # register stores through each segment's own policy
    BK = cfg.block_k(eb)
    ta = TensorMap(a, (cfg.block_m, BK), swizzle=128, l2_promotion=256)
    tbs = [TensorMap(b, (cfg.block_n // cfg.cluster, BK), swizzle=128, l2_promotion=256) for b in bs]
    pad = MAX_SEGMENTS - len(bs)
    tbs, outs = tbs + [tbs[0]] * pad, list(outs) + [outs[0]] * pad
    fill = [dummy] * (MAX_SEGMENT_ARGS - len(args))
    CL, N = cfg.cluster, E.width
    total = -(-M // (cfg.block_m * CL)) * (N // cfg.block_n)
    k = sm90_gemm_kernel(dtype_name, cfg, E, arg_types)
    grid = min(total, sm_count() // CL) * CL
    kw = dict(smem=cfg.smem_bytes()) | (dict(cluster=(CL, 1, 1)) if CL > 1 else {})
    k[grid, cfg.threads](ta, *tbs, *outs, *args, *fill, M, N, K, **kw)
    return outs[:len(bs)]
