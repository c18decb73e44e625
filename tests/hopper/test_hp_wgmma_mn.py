"""MN-major wgmma operands (imm-trans-a / imm-trans-b = 1, f16 and bf16) on both backends.

B is stored as a [K, N] row-major matrix (torch.matmul's layout) and A as A^T [K, 64], each as
column blocks of W bytes of N (or M) holding K rows (PTX ISA 9.7.15.5.1.2, MN-major), built either
by plain shared stores of the host-side image or by TMA loads of (BK, W/2)-element boxes side by
side. m64nNk16 chains over BK/16 k16 steps, so the descriptor start advances 16 rows of the tile
(16 W bytes) per step. Small-integer inputs: the product is exact on both backends.
"""

import numpy as np
import pytest

import kaiodsl as K
from kaiodsl import Const, Ptr, f32, u32

from hopper_layouts import k_step_offset, mn_k_step_offset, mn_tile_image, tile_image
from hopkit import ready_barrier

BK = 64  # four k16 steps; 128 bytes of K per K-major row, a whole number of blocks for every swizzle


@K.func
def _desc(tile, rows: Const[int], SWZ: Const[int], MN: Const[int], step: Const[int]):
    """The descriptor of k16 step ``step`` of a tile: MN-major (rows = its K rows) or K-major (rows = M/N)."""
    if MN:
        return K.wgmma_desc(tile.ptr(mn_k_step_offset(step, SWZ) // 4), SWZ, major="mn", rows=BK)
    return K.wgmma_desc(tile.ptr(k_step_offset(step, rows, SWZ) // 4), SWZ, rows=rows)


@K.func
def _store_acc(out, acc, t, N: Const[int]):
    w, lane = t // 32, t % 32
    for j in K.static_range(N // 2):  # the m64nN accumulator layout (PTX ISA 9.7.15.5.1)
        row = 16 * w + lane // 4 + 8 * ((j >> 1) & 1)
        col = 8 * (j // 4) + 2 * (lane % 4) + (j & 1)
        out[row * N + col] = acc[j]


@K.kernel(block_size=128)
def wg_mn(a_img: Ptr[u32], b_img: Ptr[u32], out: Ptr[f32], N: Const, AW: Const, BW: Const, SWZ: Const,
          DT: Const, A_MODE: Const, B_MN: Const):
    sa = K.shared_array(u32, (AW,), align=1024)
    sb = K.shared_array(u32, (BW,), align=1024)
    t = K.thread_idx.x
    for i in range(t, AW, 128):
        sa[i] = a_img[i]
    for i in range(t, BW, 128):
        sb[i] = b_img[i]
    K.fence_proxy_async()  # generic-proxy writes, then wgmma reads them through the async proxy
    K.syncthreads()
    acc = K.wgmma_zeros(N)
    K.wgmma_fence()
    for s in K.static_range(BK // 16):
        b = _desc(sb, N, SWZ, B_MN, s)
        if A_MODE == "regs":  # the A fragment from the row-major [64, BK] image (mma.m16n8k16 A layout)
            w, lane = t // 32, t % 32
            r0 = 16 * w + lane // 4
            q = s * 8 + lane % 4
            a = (a_img[r0 * (BK // 2) + q], a_img[(r0 + 8) * (BK // 2) + q],
                 a_img[r0 * (BK // 2) + 4 + q], a_img[(r0 + 8) * (BK // 2) + 4 + q])
            acc = K.wgmma(a, b, acc, dtype=DT, scale_d=s > 0, trans_b=B_MN)
        else:
            a = _desc(sa, 64, SWZ, A_MODE == "mn", s)
            acc = K.wgmma(a, b, acc, dtype=DT, scale_d=s > 0, trans_a=A_MODE == "mn", trans_b=B_MN)
    K.wgmma_commit()
    acc = K.wgmma_wait(0, acc)
    _store_acc(out, acc, t, N)


@K.kernel(block_size=128)
def wg_tma(ta: K.TensorMap, tb: K.TensorMap, out: Ptr[f32], N: Const, SWZ: Const, W: Const, AROWS: Const,
           NA: Const, NB: Const, DT: Const, A_MN: Const):
    sa = K.shared_array(u32, (64 * BK // 2,), align=1024)  # 64 x BK 16-bit elements
    sb = K.shared_array(u32, (NB * BK * W // 4,), align=1024)  # NB boxes of BK rows x W bytes
    bar = ready_barrier()
    t = K.thread_idx.x
    if t == 0:  # boxes side by side: box c holds M/N (or, K-major A, K) indices c W/2 .. c W/2 + W/2 - 1
        K.mbarrier_arrive_expect_tx(bar, 64 * BK * 2 + NB * BK * W)
        for c in K.static_range(NA):
            K.tma_load(sa.ptr(c * AROWS * W // 4), ta, (0, c * (W // 2)), bar)
        for c in K.static_range(NB):
            K.tma_load(sb.ptr(c * BK * W // 4), tb, (0, c * (W // 2)), bar)
    K.mbarrier_wait(bar, 0)
    acc = K.wgmma_zeros(N)
    K.wgmma_fence()
    for s in K.static_range(BK // 16):
        a = _desc(sa, 64, SWZ, A_MN, s)
        b = _desc(sb, N, SWZ, 1, s)
        acc = K.wgmma(a, b, acc, dtype=DT, scale_d=s > 0, trans_a=A_MN, trans_b=True)
    K.wgmma_commit()
    acc = K.wgmma_wait(0, acc)
    _store_acc(out, acc, t, N)


def _ints(rng, shape):
    return rng.integers(-4, 5, shape).astype(np.float64)


def _bits(x, dt):
    """16-bit storage of small integers: f16 as float16, bf16 as the high half of the f32 bits."""
    if dt == "f16":
        return x.astype(np.float16)
    return (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


def _blocks(n, swz):
    per = (swz or 16) // 2
    return -(-n // per) * per  # M/N padded to whole column blocks


SWIZZLES = [128, 64, 32, 0]
NS = [8, 64, 136, 256]
CASES = ([(swz, n, dt, "mn", 1) for swz in SWIZZLES for n in NS for dt in ("f16", "bf16")]  # A and B MN-major
         + [(swz, 64, "f16", "k", 1) for swz in SWIZZLES]  # K-major A, MN-major B
         + [(swz, n, "bf16", "mn", 0) for swz, n in zip(SWIZZLES, NS)]  # MN-major A, K-major B
         + [(128, 136, "f16", "regs", 1), (0, 24, "bf16", "regs", 1)])  # A from registers (rs form)


@pytest.mark.parametrize("swz,n,dt,a_mode,b_mn", CASES)
def test_wgmma_mn_major_from_shared_stores(hopper, rng, swz, n, dt, a_mode, b_mn):
    A = _ints(rng, (64, BK))
    B_full = _ints(rng, (BK, _blocks(n, swz)))  # [K, N] plus junk columns up to whole blocks: never read
    B = B_full[:, :n]
    if a_mode == "mn":
        a_img = mn_tile_image(_bits(A.T.copy(), dt), swz)  # A^T [K, M]: M-major
    elif a_mode == "k":
        a_img = tile_image(_bits(A, dt).view(np.uint8).reshape(64, 2 * BK), swz)
    else:
        a_img = _bits(A, dt).view(np.uint8).reshape(-1)  # row-major, read into the A fragment
    if b_mn:
        b_img = mn_tile_image(_bits(B_full, dt), swz)
    else:
        b_img = tile_image(_bits(B.T.copy(), dt).view(np.uint8).reshape(n, 2 * BK), swz)  # [N, K]
    a_img, b_img = a_img.view(np.uint32), b_img.view(np.uint32)
    out = np.full(64 * n, np.nan, np.float32)
    wg_mn[1, 128](a_img, b_img, out, N=n, AW=a_img.size, BW=b_img.size, SWZ=swz, DT=dt, A_MODE=a_mode,
                  B_MN=b_mn)
    np.testing.assert_array_equal(out.reshape(64, n), A @ B)  # small integers: exact on both backends


TMA_CASES = [(128, n, dt, a_mn) for n in NS for dt, a_mn in (("f16", 1), ("bf16", 0))] + [
    (64, 136, "f16", 1), (32, 64, "bf16", 1), (0, 256, "f16", 1), (64, 8, "bf16", 0)]


@pytest.mark.parametrize("swz,n,dt,a_mn", TMA_CASES)
def test_wgmma_mn_major_from_tma_boxes(hopper, rng, swz, n, dt, a_mn):
    """B [K, N] through TensorMap(b, box=(BK, W/2), swizzle=W), ceil(N / (W/2)) boxes side by side (the
    last one zero-filled past N); A as A^T [K, 64] the same way, or K-major [64, K] in (64, W/2) boxes."""
    w = swz or 16
    A, B = _ints(rng, (64, BK)), _ints(rng, (BK, n))
    a_src = _bits(A.T.copy(), dt) if a_mn else _bits(A, dt)
    b_src = _bits(B, dt)
    ta = K.TensorMap(a_src, (a_src.shape[0], w // 2), dtype=dt, swizzle=swz)
    tb = K.TensorMap(b_src, (BK, w // 2), dtype=dt, swizzle=swz)
    out = np.full(64 * n, np.nan, np.float32)
    wg_tma[1, 128](ta, tb, out, N=n, SWZ=swz, W=w, AROWS=a_src.shape[0], NA=a_src.shape[1] * 2 // w,
                   NB=_blocks(n, swz) * 2 // w, DT=dt, A_MN=a_mn)
    np.testing.assert_array_equal(out.reshape(64, n), A @ B)


def test_mn_major_descriptor_fields():
    """LBO/SBO of the TMA-box layout (PTX ISA 9.7.15.5.1.2): swizzled MN-major steps M/N blocks with LBO
    and 8 K rows with SBO; without swizzle the two swap; K-major keeps its own rule."""
    from kaiodsl.lang.wgmma import descriptor_fields

    def lbo_sbo(d):
        return ((d >> 16) & 0x3FFF) << 4, ((d >> 32) & 0x3FFF) << 4

    for swz in (128, 64, 32):
        assert lbo_sbo(descriptor_fields(swz, rows=48, major="mn")) == (48 * swz, 8 * swz)
    assert lbo_sbo(descriptor_fields(0, rows=48, major="mn")) == (128, 48 * 16)
    assert lbo_sbo(descriptor_fields(0, rows=48)) == (48 * 16, 128)  # K-major: unchanged
    assert lbo_sbo(descriptor_fields(128, rows=64, major="mn", lbo=4096, sbo=2048)) == (4096, 2048)
    assert descriptor_fields(64, rows=64, major="mn") >> 62 == 2


def test_mn_major_addresses_spot_check():
    """One element worked by hand: f16 B[k=9, n=70], swizzle 128, LBO 8192 (64 K rows x 128 B), SBO 1024:
    byte 140 of N is block 1 (+8192), byte 12 in it; K row 9 is group 1 (+1024), row 1 (+128); the row
    within the atom (bits 7-9 = 1) flips the 16-byte chunk bit 4: 9356 -> 9372."""
    from kaiodsl.lang.wgmma import descriptor_fields
    from kaiodsl.sim.wgmma_smem import operand_addresses

    lin = operand_addresses(descriptor_fields(128, rows=64, major="mn"), 136, 2, mn_major=True)
    assert lin[70, 2 * 9] == 9372 and lin[70, 2 * 9 + 1] == 9373
    flat = operand_addresses(descriptor_fields(0, rows=64, major="mn"), 16, 2, mn_major=True)
    assert flat[9, 2 * 10] == 64 * 16 + 128 + 2 * 16 + 2  # n-group 1 (SBO), k-group 1 (LBO), row 2, byte 2


@K.kernel(block_size=128)
def _bad_desc(out: Ptr[f32], WHAT: Const):
    s = K.shared_array(u32, (2048,), align=1024)
    if WHAT == "major":
        K.wgmma_desc(s, 128, major="m")
    elif WHAT == "rows":
        K.wgmma_desc(s, 128, major="mn")
    elif WHAT == "rows8":
        K.wgmma_desc(s, 0, major="mn", rows=12)


@pytest.mark.parametrize("what,msg", [("major", "major must be 'k' \\(K-major\\) or 'mn'"),
                                      ("rows", "major='mn' needs rows= \\(the tile's K rows"),
                                      ("rows8", "rows=12 must be a positive multiple of 8")])
def test_mn_major_descriptor_errors(what, msg):
    with pytest.raises(K.CompileError, match=msg) as e:
        _bad_desc.compile(arch="sm_90a", WHAT=what)
    assert "test_hp_wgmma_mn.py" in str(e.value)


@pytest.mark.parametrize("a_mode,tail", [("mn", ", 1, 1, 1, 1;"), ("k", ", 1, 1, 0, 1;"), ("regs", ", 1, 1, 1;")])
def test_mn_major_kernels_assemble_for_sm90a(a_mode, tail):
    """nvJitLink accepts the imm-trans operands (ss: scale-a, scale-b, trans-a, trans-b; rs: no trans-a)."""
    c = wg_mn.compile(arch="sm_90a", N=136, AW=2048, BW=6144, SWZ=128, DT="bf16", A_MODE=a_mode, B_MN=1)
    mma = [ln.strip() for ln in c.ptx.splitlines() if "wgmma.mma_async" in ln]
    assert len(mma) == BK // 16 and all(ln.endswith(tail) for ln in mma)
    assert c.cubin and c.spills == 0
