"""The dequantizing producer of ops/gemm_sm90_w4.py: raw weights staged in shared memory by TMA, then
dequantized by the producer warpgroup into the swizzled f16/bf16 B tile of a ring slot.

**Staging ring** (``W4Config.staging`` slots after the (A, B) ring, ``64 x block_n`` bytes each, its own
full / empty mbarriers): producer thread 0 keeps ``staging - 1`` chunks of raw weights in flight ahead
of the one being dequantized, walking the same (tile, chunk) sequence as everyone else (across tiles:
the stream does not drain at a tile's end). A chunk is

* **int4**: 128 k of the block's ``block_n / 8`` 8-row tiles of the ``pack_int4`` words, one TMA box
  ``(block_n / 8, 128)`` of the words seen as [N / 8, K] (``rows_view``; 512 bytes a row tile, no
  swizzle), i.e. two 64-k B stages. The box's inner rows are the row tiles' whole 512 bytes: with the
  packed array's own [.., 32, 4] shape they would be 16-byte rows, which TMA moves one request each;
* **int8**: 64 k of ``block_n`` rows of the [N, K] bytes, one 2-D box ``(block_n, 64)``: one B stage.

TMA zero-fills past N (and int8's K), so the reads need no masks. The 128 producer threads wait on
the chunk's full barrier, read their words from shared memory (short scoreboard instead of the
dependent global loads that left the tensor pipe half idle) and arrive on its empty barrier once the
chunk's last read is done; then they dequantize and store exactly as before.

**Scales / zero points**: plain loads issued a B stage ahead into registers (a few per thread), so
their latency hides behind the previous stage's dequantization too.

Piece layout (which thread dequantizes which 16-byte chunks), the magic-number conversions and the
stores are those of the module doc of gemm_sm90_w4.
"""

from dataclasses import dataclass

import kaiodsl
from kaiodsl import bf16x2, f16, f16x2, i64, tiles, u16, u32
from kaiodsl.tiles.dequant import MAGIC, int4_pair, int8_quad
from kaiodsl.tiles.layouts import B128, SmemTile, chunk_ptr

ROW_BYTES = 128            # bytes of K a stage row: one 128-byte swizzle atom (64 f16)
BK = 64                    # K elements a B stage
PRODUCERS = 128            # producer threads (warpgroup 0), all of which dequantize B
CHUNK_BYTES_A_ROW = 64     # staged weight bytes a B row a chunk (int4: 128 k of nibbles; int8: 64 k of bytes)


@dataclass(frozen=True)
class W4Dequant:
    """What the producer's dequantization is compiled for: the tiling (a gemm_sm90_w4.W4Config), the
    activation dtype, the weights' ``kind`` ("int4": pack_int4 words, group scales and zero points or 8;
    "int8": plain [N, K] int8 rows, group scales multiplied in, or ``group_size`` 0: exact integers, the
    per-channel scale in the epilogue) and the group size. The swap-AB kernel (ops/gemm_sm90_w4_swap.py)
    takes it with ``cfg`` a W4SwapConfig and reads only the fields, ``h2`` and ``magic``."""

    cfg: object
    dtype_name: str
    group_size: int
    has_zeros: bool = False
    kind: str = "int4"

    @property
    def b_tile(self) -> SmemTile:
        """A slot's B tile (after the A tile), as TMA would write it: 128-byte rows, B128 swizzle."""
        return SmemTile(self.cfg.block_n, BK, f16, 1, self.cfg.block_m * BK, B128)

    @property
    def h2(self):
        return {"f16": f16x2, "bf16": bf16x2}[self.dtype_name]

    @property
    def magic(self) -> tuple:
        """(bits in both halves, value) of the magic number (tiles.dequant.MAGIC)."""
        return MAGIC[self.dtype_name]

    @property
    def stage_threads(self) -> int:
        """Producer threads that dequantize one B stage (W4Config.stage_threads)."""
        return self.cfg.stage_threads

    @property
    def pieces(self) -> int:
        """Pieces of a B stage each of its threads loads and dequantizes (W4Config.units)."""
        return self.cfg.units

    @property
    def ring(self):
        """The (A, B) mbarrier ring: the empty barriers count every consumer thread."""
        return tiles.Ring(self.cfg.stages, kind="mbarrier", arrivals=128 * self.cfg.consumers)

    @property
    def staging(self):
        """The raw weights' ring: full = the issuing thread's expect_tx (the TMA box's bytes), empty = the
        128 readers (not used with ``warp_stages``: each warp refills its own slots)."""
        return tiles.Ring(self.cfg.staging, kind="mbarrier", arrivals=PRODUCERS)

    @property
    def chunk_stages(self) -> int:
        """B stages a staged chunk holds: 2 for int4 (128 k: one pack_int4 k tile), 1 for int8."""
        return 2 if self.kind == "int4" else 1

    @property
    def chunk_bytes(self) -> int:
        return CHUNK_BYTES_A_ROW * self.cfg.block_n

    @property
    def chunk_box(self) -> tuple:
        """The weights' TMA box (numpy order): int4 (row tiles, 128 words of [N / 8, K]), int8 (rows, 64 k)."""
        BN = self.cfg.block_n
        return (BN // 8, 128) if self.kind == "int4" else (BN, BK)

    @property
    def groups(self) -> int:
        """Groups a 64-k stage's word pair spans: 2 when groups are 32 wide (one a word), else 1."""
        return 2 if self.kind == "int4" and self.group_size == 32 else 1


# -- the staging ring: thread 0 issues, everyone reads ---------------------------------------------------
def rows_view(w, shape: tuple):
    """``w``'s memory seen with the C-order ``shape`` (the weights' tensor map's view): torch and numpy
    reshape (a view of contiguous memory); a kaiodsl DeviceArray, which has no reshape, through _Rows."""
    if tuple(w.shape) == tuple(shape):
        return w
    return w.reshape(shape) if hasattr(w, "reshape") else _Rows(w, shape)


class _Rows:
    """A DeviceArray's memory with another C-order shape, for a TensorMap: its simulator buffer
    reshaped, or its device pointer through __cuda_array_interface__ (it keeps ``base`` alive)."""

    def __init__(self, base, shape: tuple):
        self.base, self.shape, self.ndim = base, tuple(shape), len(shape)
        self.scalar_type, self.dtype = base.scalar_type, base.dtype
        if getattr(base, "_sim_buffer", None) is not None:
            self._sim_buffer = base._sim_buffer.reshape(shape)

    @property
    def __cuda_array_interface__(self) -> dict:
        cai = dict(self.base.__cuda_array_interface__)
        cai.update(shape=self.shape, strides=None)
        return cai



@kaiodsl.func
def _tma_chunk(D: kaiodsl.Const, dst, tw, col, c, bar):
    """Chunk c of the weights' rows from column ``col`` of the (segment's) output into ``dst``."""
    if D.kind == "int8":
        kaiodsl.tma_load(dst, tw, (col, c * BK), bar)
    else:
        kaiodsl.tma_load(dst, tw, (col // 8, c * 128), bar)


@kaiodsl.func
def issue_chunk(D: kaiodsl.Const, SEGS: kaiodsl.Const, SR: kaiodsl.Const, st, sbars, stg, tws, t, c, M, N):
    """Thread 0: acquire staging slot ``st``, announce its bytes and copy chunk c of tile t's weights
    into it (from the map of the tile's segment with SEGS)."""
    tiles.pipeline.acquire(SR, st, sbars)
    index, phase = st
    copy_chunk(D, SEGS, SR, index, sbars, stg, tws, t, c, M, N)


@kaiodsl.func
def copy_chunk(D: kaiodsl.Const, SEGS: kaiodsl.Const, SR: kaiodsl.Const, index, sbars, stg, tws, t, c, M, N):
    """One thread: announce staging slot ``index``'s bytes on its full barrier and copy chunk c of tile t's
    weights into it (the slot free: issue_chunk acquires it; with ``warp_stages`` its warp is its only
    reader)."""
    cfg = D.cfg
    m0, n0 = tiles.gemm.tile_coords_of(t, M, N, cfg.block_m, cfg.block_n, cfg.group_m)
    tiles.pipeline.commit(SR, (index, 0), sbars, D.chunk_bytes)
    dst = stg.ptr(index * (D.chunk_bytes // 4))
    if SEGS:
        lo = 0
        for s in kaiodsl.static_range(len(SEGS)):
            if n0 >= lo and n0 < lo + SEGS[s].width:
                _tma_chunk(D, dst, tws[s], n0 - lo, c, sbars.ptr(index))
            lo = lo + SEGS[s].width
    else:
        _tma_chunk(D, dst, tws, n0, c, sbars.ptr(index))


@kaiodsl.func
def next_chunk(t, c, chunks, step):
    """The (tile, chunk) after (t, c) in a persistent block's walk."""
    wrap = c + 1 == chunks
    return kaiodsl.where(wrap, t + step, t), kaiodsl.where(wrap, 0, c + 1)


@kaiodsl.func
def read_words(D: kaiodsl.Const, slot, h, tid):
    """This thread's share of B stage h (a constant or, with ``warp_stages``, run time) of the staged chunk
    at ``slot`` (u32 view): int4 2 words a piece (words 2h, 2h + 1 of the piece's lane), int8 the 16 bytes
    of the piece's row quarter."""
    out = []
    for r in kaiodsl.static_range(D.pieces):
        if D.kind == "int8":
            row, q = _piece8(D, tid, r)
            out = out + [kaiodsl.load(slot, 16 * row + 4 * q, vec=4)]
        else:
            i, lane, row = _piece(D, tid, r)
            out = out + [kaiodsl.load(slot, (32 * i + lane) * 4 + 2 * h, vec=2)]
    return out


# -- pieces ------------------------------------------------------------------------------------------------
@kaiodsl.func
def _piece(D: kaiodsl.Const, tid, r: kaiodsl.Const[int]):
    """(row tile, lane, row) of producer thread tid's piece r of a stage's B tile (row tile
    ``tid // 32 + 4 r`` of the warpgroup's; with ``warp_stages`` the warp's row tile r): lane l of 8-row
    tile i owns row 8 i + l // 4.
    Thread p of a warp takes packed lane ``4 g + p % 4`` with ``g = p // 8 + 4 ((p // 4) % 2)``: a 16-byte
    store phase (8 threads) then covers rows g and g + 4, whose swizzled chunks ``(4 ww + t) ^ g`` are 8
    different bank groups (with g, g + 1 they would be 4: a 2-way conflict). The warp reads one
    512-byte row tile."""
    p = tid % 32                             # the same for every r: a row tile a warp a round
    g = p // 8 + 4 * ((p // 4) % 2)
    i = r if D.cfg.warp_stages else tid // 32 + (PRODUCERS // 32) * r
    return i, 4 * g + p % 4, 8 * i + g


@kaiodsl.func
def _piece8(D: kaiodsl.Const, tid, r: kaiodsl.Const[int]):
    """(row, quarter) of thread tid's piece r (u = its stage threads' index + their count x r) of a stage's
    int8 B tile: 4 consecutive threads read a row's 64 bytes."""
    u = (tid % 32 if D.cfg.warp_stages else tid) + D.stage_threads * r
    return u // 4, u % 4


# -- scales and zero points: a stage ahead in registers --------------------------------------------------------
@kaiodsl.func
def group_raw(D: kaiodsl.Const, scales, zeros, kt, G, n0, N, tid):
    """The raw scales (and zero points) of the thread's pieces' groups in B stage kt (int4: one each, or
    for groups of 32 both groups' in one u32 / u16 load; grouped int8: one scale; per-channel int8:
    nothing), every load issued before any is used."""
    out = []
    for r in kaiodsl.static_range(D.pieces):
        if D.kind == "int8":
            row, q = _piece8(D, tid, r)
            if D.group_size:
                out = out + [kaiodsl.load(scales, i64(n0 + row) * G + kt // (D.group_size // BK), cache="nc",
                                          mask=n0 + row < N, other=0)]
            else:
                out = out + [0]
        elif D.groups == 2:       # groups 2kt, 2kt + 1 side by side (G is even): one u32 of scales, one u16 of zeros
            i, lane, row = _piece(D, tid, r)
            ok = n0 + row < N
            at = (i64(n0 + row) * G + kt + kt) // 2
            sc = kaiodsl.load(kaiodsl.ptr_cast(scales, u32), at, cache="nc", mask=ok, other=0)
            zp = kaiodsl.load(kaiodsl.ptr_cast(zeros, u16), at, cache="nc", mask=ok, other=0) if D.has_zeros else 0
            out = out + [(sc, zp)]
        else:
            i, lane, row = _piece(D, tid, r)
            ok = n0 + row < N
            at = i64(n0 + row) * G + kt // (D.group_size // BK)
            sc = kaiodsl.load(scales, at, cache="nc", mask=ok, other=0)
            zp = kaiodsl.load(zeros, at, cache="nc", mask=ok, other=0) if D.has_zeros else 0
            out = out + [(sc, zp)]
    return out


# -- dequantize and store into the ring slot's B tile --------------------------------------------------------
@kaiodsl.func
def store_b(D: kaiodsl.Const, smem, stage_off, words, groups, tid):
    """Dequantize read_words' words with group_raw's constants into the B tile at element offset
    ``stage_off`` of the ring, swizzled as TMA would have written it."""
    if D.kind == "int8":
        _store_b8(D, smem, stage_off, words, groups, tid)
    else:
        _store_b4(D, smem, stage_off, words, groups, tid)


@kaiodsl.func
def _store_b4(D: kaiodsl.Const, smem, stage_off, words, groups, tid):
    """``(q - zero) * scale`` (zero 8 without zero points; tiles.dequant.int4_pair): word ww of a piece
    is f16 chunk 4 ww + lane % 4 of its row."""
    H2 = D.h2
    MAGIC_BITS, MAGIC_F = D.magic
    for r in kaiodsl.static_range(D.pieces):
        i, lane, row = _piece(D, tid, r)
        sc, zp = groups[r]
        for ww in kaiodsl.static_range(2):
            if ww == 0 or D.groups == 2:
                if D.groups == 2:     # word ww's group: half ww of the scales' u32, byte ww of the zeros' u16
                    s2 = kaiodsl.bitcast(kaiodsl.prmt(sc, sc, kaiodsl.u32(0x3232 if ww else 0x1010)), H2)
                    zq = (kaiodsl.u32(zp) >> (8 * ww)) & 0xFF if D.has_zeros else 0
                else:
                    sb = kaiodsl.bitcast(sc, kaiodsl.u16)
                    s2 = kaiodsl.bitcast(kaiodsl.pack_b32(sb, sb), H2)
                    zq = zp
                zf = MAGIC_F + 8.0
                if D.has_zeros:
                    zf = MAGIC_F + kaiodsl.f32(zq)
                zz = kaiodsl.pack_half2(zf, zf, H2)
            h = [kaiodsl.bitcast(int4_pair(words[r][ww], j, zz, s2, MAGIC_BITS, H2), u32) for j in range(4)]
            dst = kaiodsl.ptr_cast(chunk_ptr(smem, D.b_tile, row, 4 * ww + lane % 4) + stage_off, u32)
            kaiodsl.store(dst, 0, (h[0], h[1], h[2], h[3]), vec=4)


@kaiodsl.func
def _store_b8(D: kaiodsl.Const, smem, stage_off, words, groups, tid):
    """int8 words to f16/bf16 (tiles.dequant.int8_quad: exact integers, or times the group scale
    rounded once) into chunks 2 q and 2 q + 1 of the piece's row."""
    H2 = D.h2
    IS_F16 = D.dtype_name == "f16"
    for r in kaiodsl.static_range(D.pieces):
        row, q = _piece8(D, tid, r)
        s = 0
        if D.group_size:
            if IS_F16:
                sb = kaiodsl.bitcast(groups[r], kaiodsl.u16)
                s = kaiodsl.bitcast(kaiodsl.pack_b32(sb, sb), H2)
            else:
                s = kaiodsl.f32(groups[r])
        for half in kaiodsl.static_range(2):
            lo0, hi0 = int8_quad(words[r][2 * half], s, D.group_size > 0, IS_F16, H2)
            lo1, hi1 = int8_quad(words[r][2 * half + 1], s, D.group_size > 0, IS_F16, H2)
            dst = kaiodsl.ptr_cast(chunk_ptr(smem, D.b_tile, row, 2 * q + half) + stage_off, u32)
            kaiodsl.store(dst, 0, (kaiodsl.bitcast(lo0, u32), kaiodsl.bitcast(hi0, u32), kaiodsl.bitcast(lo1, u32),
                                   kaiodsl.bitcast(hi1, u32)), vec=4)
