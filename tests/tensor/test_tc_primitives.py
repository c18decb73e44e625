"""ldmatrix / stmatrix / cp.async / packed conversions / prmt / lop3, and the arch gates."""

import numpy as np
import pytest

import kaiodsl
from kaiodsl import Const, Ptr, f16, f32, i32, u8, u16, u32

L = np.arange(32)


# -- ldmatrix / stmatrix -----------------------------------------------------------------------------
@kaiodsl.kernel(block_size=32)
def ldmatrix_kernel(src: Ptr[u16], out: Ptr[u32], X: Const[int], TRANS: Const[bool]):
    s = kaiodsl.shared_array(u16, (4 * 64,))
    lane = kaiodsl.lane_id()
    for i in kaiodsl.static_range(8):
        s[i * 32 + lane] = src[i * 32 + lane]
    kaiodsl.syncthreads()
    # lane l gives row (l % 8) of matrix l // 8; rows are 8 elements (16 bytes)
    regs = kaiodsl.ldmatrix(s.ptr(lane * 8), X, trans=TRANS)
    if X == 1:
        out[lane] = regs
    else:
        for r in kaiodsl.static_range(X):
            out[r * 32 + lane] = regs[r]


def ldmatrix_expected(mats: np.ndarray, trans: bool) -> np.ndarray:
    """[x, 8, 8] u16 matrices -> [x, 32] u32: lane l holds row l//4, cols 2(l%4), +1 (PTX ISA 9.7.9.26)."""
    g, t = L >> 2, L & 3
    m = mats.transpose(0, 2, 1) if trans else mats
    lo, hi = m[:, g, 2 * t].astype(np.uint32), m[:, g, 2 * t + 1].astype(np.uint32)
    return lo | (hi << 16)


@pytest.mark.parametrize("x", [1, 2, 4])
@pytest.mark.parametrize("trans", [False, True], ids=["n", "trans"])
def test_ldmatrix(backend, rng, x, trans):
    src = rng.permutation(4 * 64).astype(np.uint16)
    out = np.zeros(x * 32, np.uint32)
    ldmatrix_kernel[1, 32](src, out, X=x, TRANS=trans)
    want = ldmatrix_expected(src.reshape(4, 8, 8)[:x], trans)
    np.testing.assert_array_equal(out.reshape(x, 32), want)


@kaiodsl.kernel(block_size=32)
def stmatrix_kernel(src: Ptr[u32], out: Ptr[u16], X: Const[int], TRANS: Const[bool]):
    s = kaiodsl.shared_array(u16, (4 * 64,))
    lane = kaiodsl.lane_id()
    for i in kaiodsl.static_range(8):
        s[i * 32 + lane] = kaiodsl.u16(0)
    kaiodsl.syncthreads()
    regs = [src[r * 32 + lane] for r in range(X)]
    kaiodsl.stmatrix(s.ptr(lane * 8), regs, trans=TRANS)
    kaiodsl.syncthreads()
    for i in kaiodsl.static_range(8):
        out[i * 32 + lane] = s[i * 32 + lane]


@pytest.mark.parametrize("x", [1, 2, 4])
@pytest.mark.parametrize("trans", [False, True], ids=["n", "trans"])
def test_stmatrix_inverts_ldmatrix(backend, rng, x, trans):
    if int(backend.arch[3:5]) < 90:
        pytest.skip("stmatrix needs sm_90")
    mats = rng.permutation(4 * 64).astype(np.uint16).reshape(4, 8, 8)
    regs = ldmatrix_expected(mats[:x], trans)
    out = np.zeros(4 * 64, np.uint16)
    stmatrix_kernel[1, 32](regs.reshape(-1), out, X=x, TRANS=trans)
    want = np.zeros((4, 8, 8), np.uint16)
    want[:x] = mats[:x]
    np.testing.assert_array_equal(out.reshape(4, 8, 8), want)


# -- cp.async ------------------------------------------------------------------------------------------
@kaiodsl.kernel(block_size=32)
def cp_async_kernel(src: Ptr[u8], sizes: Ptr[i32], out: Ptr[u8], SIZE: Const[int], CACHE: Const,
                    MODE: Const):
    s = kaiodsl.shared_array(u8, (32 * 16,))
    lane = kaiodsl.lane_id()
    for i in kaiodsl.static_range(16):
        s[i * 32 + lane] = kaiodsl.u8(0xEE)  # poison: every byte must be copied or zero-filled
    kaiodsl.syncthreads()
    n = sizes[lane]
    if MODE == "full":
        kaiodsl.cp_async(s.ptr(lane * SIZE), src + lane * SIZE, SIZE, cache=CACHE)
    elif MODE == "src_size":
        kaiodsl.cp_async(s.ptr(lane * SIZE), src + lane * SIZE, SIZE, src_size=n, cache=CACHE)
    else:  # mask: all or nothing
        kaiodsl.cp_async(s.ptr(lane * SIZE), src + lane * SIZE, SIZE, mask=n > 0, cache=CACHE)
    kaiodsl.cp_async_commit()
    kaiodsl.cp_async_wait(0)
    kaiodsl.syncthreads()
    for i in kaiodsl.static_range(16):
        out[i * 32 + lane] = s[i * 32 + lane]


@pytest.mark.parametrize("size,cache", [(4, "ca"), (8, "ca"), (16, "ca"), (16, "cg")])
@pytest.mark.parametrize("mode", ["full", "src_size", "mask"])
def test_cp_async(backend, rng, size, cache, mode):
    src = rng.integers(1, 255, 32 * 16).astype(np.uint8)
    sizes = rng.integers(0, size + 1, 32).astype(np.int32)
    sizes[:3] = (0, size, 1)
    out = np.zeros(32 * 16, np.uint8)
    cp_async_kernel[1, 32](src, sizes, out, SIZE=size, CACHE=cache, MODE=mode)
    want = np.full(32 * 16, 0xEE, np.uint8)
    for lane in range(32):
        n = {"full": size, "src_size": sizes[lane], "mask": size if sizes[lane] else 0}[mode]
        want[lane * size:(lane + 1) * size] = 0
        want[lane * size:lane * size + n] = src[lane * size:lane * size + n]
    np.testing.assert_array_equal(out, want)


@kaiodsl.kernel(block_size=32)
def cp_async_groups(src: Ptr[u32], out: Ptr[u32]):
    """Two groups; wait(1) lands the first (its data is read), wait_all the second."""
    s = kaiodsl.shared_array(u32, (64,))
    lane = kaiodsl.lane_id()
    kaiodsl.cp_async(s.ptr(lane), src + lane, 4)
    kaiodsl.cp_async_commit()
    kaiodsl.cp_async(s.ptr(32 + lane), src + 32 + lane, 4)
    kaiodsl.cp_async_commit()
    kaiodsl.cp_async_wait(1)
    out[lane] = s[lane]
    kaiodsl.cp_async_wait_all()
    out[32 + lane] = s[32 + lane]


def test_cp_async_groups(backend):
    src = np.arange(64, dtype=np.uint32) * 7 + 1
    out = np.zeros(64, np.uint32)
    cp_async_groups[1, 32](src, out)
    np.testing.assert_array_equal(out, src)


# -- packed conversions, prmt, lop3 --------------------------------------------------------------------
XOR3 = lambda a, b, c: a ^ b ^ c  # noqa: E731 - a LUT function for lop3


@kaiodsl.kernel(block_size=32)
def pack_kernel(x: Ptr[f32], y: Ptr[f32], h: Ptr[u32], bh: Ptr[u32], back: Ptr[f32], bits: Ptr[u32],
                halves: Ptr[u16], p: Ptr[u32], l: Ptr[u32], tf: Ptr[f32]):
    i = kaiodsl.lane_id()
    a, b = x[i], y[i]
    hh = kaiodsl.pack_half2(a, b)
    h[i] = kaiodsl.bitcast(hh, u32)
    bh[i] = kaiodsl.bitcast(kaiodsl.pack_half2(a, b, kaiodsl.bf16x2), u32)
    lo, hi = kaiodsl.unpack_half2(hh)
    back[2 * i] = lo
    back[2 * i + 1] = hi
    raw = kaiodsl.bitcast(a, u32)
    r16lo, r16hi = kaiodsl.unpack_b32(raw)
    halves[2 * i] = r16lo
    halves[2 * i + 1] = r16hi
    bits[i] = kaiodsl.pack_b32(r16hi, r16lo)  # swapped halves
    p[3 * i] = kaiodsl.prmt(raw, kaiodsl.bitcast(b, u32), 0x7531)
    p[3 * i + 1] = kaiodsl.prmt(raw, kaiodsl.bitcast(b, u32), 0x0008 | (i & 7))
    p[3 * i + 2] = kaiodsl.prmt(raw, kaiodsl.bitcast(b, u32), i & 3, mode="rc8")
    yb = kaiodsl.bitcast(b, u32)
    l[3 * i] = kaiodsl.lop3(raw, yb, 0xF0F0F0F0, XOR3)
    l[3 * i + 1] = kaiodsl.lop3(raw, yb, kaiodsl.u32(i), "(a & b) | (~a & c)")
    l[3 * i + 2] = kaiodsl.lop3(raw, yb, kaiodsl.u32(i), 0x80)
    tf[i] = kaiodsl.to_tf32(a)


def _prmt(a, b, c, mode=None):
    by = np.concatenate([np.frombuffer(np.uint32(a).tobytes(), np.uint8),
                         np.frombuffer(np.uint32(b).tobytes(), np.uint8)])
    out = []
    for k in range(4):
        if mode == "rc8":
            out.append(by[c & 3])
            continue
        sel = (c >> (4 * k)) & 0xF
        v = by[sel & 7]
        out.append((0xFF if v & 0x80 else 0) if sel & 8 else v)
    return int(np.array(out, np.uint8).view(np.uint32)[0])


def test_packs_prmt_lop3(backend, rng):
    x = (rng.standard_normal(32) * 100).astype(np.float32)
    y = (rng.standard_normal(32) * 100).astype(np.float32)
    outs = dict(h=np.zeros(32, np.uint32), bh=np.zeros(32, np.uint32), back=np.zeros(64, np.float32),
                bits=np.zeros(32, np.uint32), halves=np.zeros(64, np.uint16), p=np.zeros(96, np.uint32),
                l=np.zeros(96, np.uint32), tf=np.zeros(32, np.float32))
    pack_kernel[1, 32](x, y, *outs.values())
    xb, yb = x.view(np.uint32), y.view(np.uint32)
    hx, hy = x.astype(np.float16).view(np.uint16).astype(np.uint32), y.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(outs["h"], hx | (hy.astype(np.uint32) << 16))  # x in the LOW half
    from kaiodsl.types import bf16_bits
    rb = lambda v: bf16_bits(v).astype(np.uint32)
    np.testing.assert_array_equal(outs["bh"], (rb(x) | (rb(y) << 16)).astype(np.uint32))
    back = np.stack([x.astype(np.float16), y.astype(np.float16)], 1).astype(np.float32).reshape(-1)
    np.testing.assert_array_equal(outs["back"], back)
    np.testing.assert_array_equal(outs["halves"], np.stack([xb & 0xFFFF, xb >> 16], 1).reshape(-1))
    np.testing.assert_array_equal(outs["bits"], (xb >> 16) | (xb << 16))
    want_p = [[_prmt(xb[i], yb[i], 0x7531), _prmt(xb[i], yb[i], 0x8 | (i & 7)),
               _prmt(xb[i], yb[i], i & 3, "rc8")] for i in range(32)]
    np.testing.assert_array_equal(outs["p"], np.array(want_p, np.uint32).reshape(-1))
    lane = np.arange(32, dtype=np.uint32)
    want_l = np.stack([xb ^ yb ^ np.uint32(0xF0F0F0F0), (xb & yb) | (~xb & lane), xb & yb & lane], 1)
    np.testing.assert_array_equal(outs["l"], want_l.reshape(-1))
    # cvt.rna: round half away from zero on the 13 dropped mantissa bits
    want_tf = ((xb + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)
    np.testing.assert_array_equal(outs["tf"], want_tf)


def test_lop3_lut():
    assert kaiodsl.lop3_lut(lambda a, b, c: a ^ b ^ c) == 0x96
    assert kaiodsl.lop3_lut("a & b & c") == 0x80
    assert kaiodsl.lop3_lut("(a & b) | (~a & c)") == 0xCA
    assert kaiodsl.lop3_lut(0x1FE) == 0xFE


@kaiodsl.kernel(block_size=32)
def fp8_kernel(x: Ptr[f32], y: Ptr[f32], out: Ptr[u16], KIND: Const):
    i = kaiodsl.lane_id()
    out[i] = kaiodsl.pack_fp8x2(x[i], y[i], KIND)


@pytest.mark.parametrize("kind", ["e4m3", "e5m2"])
def test_pack_fp8x2(backend, kind):
    if int(backend.arch[3:5]) < 89:
        pytest.skip("needs sm_89")
    x = np.array([0.0, 1.0, -2.0, 0.5, 1e9, -1e9, 3.0, 0.125] * 4, np.float32)
    y = x[::-1].copy()
    out = np.zeros(32, np.uint16)
    fp8_kernel[1, 32](x, y, out, KIND=getattr(kaiodsl, kind))
    e4 = {0.0: 0x00, 1.0: 0x38, -2.0: 0xC0, 0.5: 0x30, 1e9: 0x7E, -1e9: 0xFE, 3.0: 0x44, 0.125: 0x20}
    e5 = {0.0: 0x00, 1.0: 0x3C, -2.0: 0xC0, 0.5: 0x38, 1e9: 0x7B, -1e9: 0xFB, 3.0: 0x42, 0.125: 0x30}
    t = e4 if kind == "e4m3" else e5
    want = np.array([t[float(a)] | (t[float(b)] << 8) for a, b in zip(x, y)], np.uint16)
    np.testing.assert_array_equal(out, want)


# -- arch gates and API errors -------------------------------------------------------------------------
@kaiodsl.kernel
def e4m3_mma(out: Ptr[f32]):
    z = kaiodsl.u32(0)
    d = kaiodsl.mma((z, z, z, z), (z, z), kaiodsl.mma_zeros(), dtype="e4m3")
    out[0] = d[0]


@pytest.mark.parametrize("kernel,consts,arch,needs", [
    (e4m3_mma, {}, "sm_80", "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 needs sm_89"),
    (stmatrix_kernel, dict(X=4, TRANS=False), "sm_89", "stmatrix.sync.aligned.m8n8.x4.shared.b16 needs sm_90"),
    (cp_async_groups, {}, "sm_75", "cp.async.ca.shared.global needs sm_80"),
    (ldmatrix_kernel, dict(X=2, TRANS=True), "sm_70", "ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 needs sm_75"),
    (fp8_kernel, dict(KIND=kaiodsl.e5m2), "sm_80", "cvt.rn.satfinite.e5m2x2.f32 needs sm_89"),
])
def test_arch_gate(kernel, consts, arch, needs):
    with pytest.raises(kaiodsl.CompileError, match=needs.replace(".", r"\.")):
        kernel.compile(arch=arch, **consts)


def test_gated_forms_assemble_where_available():
    for kernel, consts, arch in [(e4m3_mma, {}, "sm_89"), (stmatrix_kernel, dict(X=4, TRANS=True), "sm_90a"),
                                 (fp8_kernel, dict(KIND=kaiodsl.e4m3), "sm_89")]:
        ck = kernel.compile(arch=arch, **consts)
        assert ck.registers > 0


@kaiodsl.kernel
def misuse(out: Ptr[f32], WHAT: Const):
    h = kaiodsl.pack_half2(1.0, 2.0)
    z = kaiodsl.u32(0)
    if WHAT == "no_dtype":
        kaiodsl.mma((z, z, z, z), (z, z), kaiodsl.mma_zeros(), dtype=None)
    elif WHAT == "shape":
        kaiodsl.mma((h, h, h, h), (h, h), kaiodsl.mma_zeros(), shape="m16n8k8")
    elif WHAT == "b_regs":
        kaiodsl.mma((h, h, h, h), (h, h, h), kaiodsl.mma_zeros())
    elif WHAT == "bf16_acc16":
        b = kaiodsl.pack_half2(1.0, 2.0, kaiodsl.bf16x2)
        kaiodsl.mma((b, b, b, b), (b, b), kaiodsl.mma_zeros(f16))
    elif WHAT == "ldmatrix_global":
        kaiodsl.ldmatrix(out, 4)
    elif WHAT == "cg_size":
        s = kaiodsl.shared_array(u32, (4,))
        kaiodsl.cp_async(s.ptr(0), kaiodsl.bitcast(out, kaiodsl.u64), 4, cache="cg")
    elif WHAT == "wait":
        kaiodsl.cp_async_wait(9)


@pytest.mark.parametrize("what,msg", [
    ("no_dtype", "pass dtype="), ("shape", "shape 'm16n8k8' needs 2 A registers"),
    ("b_regs", "needs 2 B and 4 C registers"), ("bf16_acc16", "no mma.sync m16n8k16 for bf16 x bf16 -> f16"),
    ("ldmatrix_global", "must be a shared pointer"), ("cg_size", "src must be a global pointer"),
    ("wait", "n must be a compile-time int 0..7"),
])
def test_api_errors(what, msg):
    with pytest.raises(kaiodsl.CompileError, match=msg):
        misuse.compile(arch="sm_90a", WHAT=what)
