"""mma.sync for every shape and dtype: one warp loads A and B (plain loads placing every element by
frag_coord, or ldmatrix from shared memory), runs one mma with a non-zero C, stores D; checked
against numpy (bit-exact for integers). Every kernel also assembles through nvJitLink per arch."""

import numpy as np
import pytest

import kaiodsl
from kaiodsl import Const, Ptr, bf16x2, f16, f16x2, f32, i32, u8, u16, u32
from tckit import CASES, pack_rows, random_elements

ARCHS = ["sm_80", "sm_89", "sm_90a"]
REG = {"f16": f16x2, "bf16": bf16x2, "tf32": f32}
ACC_T = {"f32": f32, "f16": f16, "s32": i32}


# -- kernels -------------------------------------------------------------------------------------
@kaiodsl.func
def fragment_reg(p, ld, ROLE: Const, R: Const[int], DT: Const, K: Const[int], W: Const[int]):
    """Register R of this lane's ROLE fragment, assembled element by element (low bits first)."""
    reg = kaiodsl.u32(0)
    for j in kaiodsl.static_range(32 // W):
        row, col = kaiodsl.frag_coord(ROLE, R * (32 // W) + j, DT, K)
        reg = reg | (kaiodsl.u32(p[row * ld + col]) << (W * j))
    return kaiodsl.bitcast(reg, REG.get(DT, u32))


@kaiodsl.func
def load_c(c, ACC: Const):
    if ACC == "f16":
        vals = [c[kaiodsl.frag_coord("c", i)[0] * 8 + kaiodsl.frag_coord("c", i)[1]] for i in range(4)]
        return (kaiodsl.pack_half2(vals[0], vals[1]), kaiodsl.pack_half2(vals[2], vals[3]))
    return tuple([c[kaiodsl.frag_coord("c", i)[0] * 8 + kaiodsl.frag_coord("c", i)[1]] for i in range(4)])


@kaiodsl.func
def store_d(d, acc):
    vals = kaiodsl.frag_elements(acc)
    for i in kaiodsl.static_range(4):
        row, col = kaiodsl.frag_coord("c", i)
        d[row * 8 + col] = vals[i]


_KERNELS = {}


def plain_kernel(elem, acc_t):
    """A/B given as row-major element bits in ``elem`` containers; C and D of type acc_t."""
    key = ("plain", elem, acc_t)
    if key not in _KERNELS:
        @kaiodsl.kernel(block_size=32, name=f"mma_plain_{elem}_{acc_t}")
        def k(a: Ptr[elem], b: Ptr[elem], c: Ptr[acc_t], d: Ptr[acc_t], DA: Const, DB: Const, K: Const[int],
              W: Const[int], ACC: Const):
            fa = [fragment_reg(a, K, "a", r, DA, K, W) for r in range(K * W // 64)]
            fb = [fragment_reg(b, 8, "b", r, DB, K, W) for r in range(K * W // 128)]
            store_d(d, kaiodsl.mma(fa, fb, load_c(c, ACC), dtype=(DA, DB)))
        _KERNELS[key] = k
    return _KERNELS[key]


def smem_kernel(acc_t):
    """A/B given as packed row-major bytes, staged in shared memory and read with ldmatrix.
    TRANS=False: A is [16, K], B is given as B^T [8, K]; TRANS=True (16-bit only): A^T [K, 16] and
    B [K, 8], both read with ldmatrix.trans."""
    key = ("smem", acc_t)
    if key not in _KERNELS:
        @kaiodsl.kernel(block_size=32, name=f"mma_ldmatrix_{acc_t}")
        def k(a8: Ptr[u8], b8: Ptr[u8], c: Ptr[acc_t], d: Ptr[acc_t], DA: Const, DB: Const, K: Const[int],
              W: Const[int], ACC: Const, TRANS: Const[bool]):
            NA = K * W // 64          # A registers (ldmatrix matrices)
            NB = K * W // 128         # B registers
            sa = kaiodsl.shared_array(u8, (16 * K * W // 8,), name="sa")
            sb = kaiodsl.shared_array(u8, (8 * K * W // 8,), name="sb")
            lane = kaiodsl.lane_id()
            for i in kaiodsl.static_range(16 * K * W // 256):
                sa[i * 32 + lane] = a8[i * 32 + lane]
            for i in kaiodsl.static_range(8 * K * W // 256):
                sb[i * 32 + lane] = b8[i * 32 + lane]
            kaiodsl.syncthreads()
            if TRANS:  # A^T rows are the 16 m values (32 bytes), B rows the 8 n values (16 bytes)
                fa = kaiodsl.ldmatrix(sa.ptr(((lane & 7) + (lane >> 4) * 8) * 32 + ((lane >> 3) & 1) * 16),
                                      NA, trans=True, dtype=REG[DA])
                fb = kaiodsl.ldmatrix(sb.ptr((lane & (8 * NB - 1)) * 16), NB, trans=True, dtype=REG[DB])
            else:
                RA = K * W // 8       # bytes per row of A and of B^T
                fa = kaiodsl.ldmatrix(sa.ptr((lane & 15) * RA + ((lane >> 4) & (NA // 2 - 1)) * 16), NA,
                                      dtype=REG.get(DA, u32))
                fb = kaiodsl.ldmatrix(sb.ptr((lane & 7) * RA + ((lane >> 3) & (NB - 1)) * 16), NB,
                                      dtype=REG.get(DB, u32))
            store_d(d, kaiodsl.mma(fa, fb, load_c(c, ACC), dtype=(DA, DB)))
        _KERNELS[key] = k
    return _KERNELS[key]


ELEM = {32: u32, 16: u16, 8: u8, 4: u8}
LOADERS = ["plain", "ldmatrix", "ldmatrix_trans"]


def kernel_for(case, loader):
    consts = dict(DA=case.a, DB=case.b, K=case.k, W=case.bits, ACC=case.acc)
    if loader == "plain":
        return plain_kernel(ELEM[case.bits], ACC_T[case.acc]), consts
    return smem_kernel(ACC_T[case.acc]), {**consts, "TRANS": loader == "ldmatrix_trans"}


def _cases():
    for case in CASES:
        for loader in LOADERS:
            if loader == "ldmatrix_trans" and case.bits != 16:
                continue  # ldmatrix.trans moves 16-bit elements
            yield pytest.param(case, loader, id=f"{case.id}-{loader}")


# -- structure and assembly ------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("case,loader", list(_cases()))
def test_assembles(case, loader, arch):
    k, consts = kernel_for(case, loader)
    sm = int(arch[3:5])
    if sm < case.min_sm:
        with pytest.raises(kaiodsl.CompileError, match=f"mma.sync.*needs sm_{case.min_sm}"):
            k.compile(arch=arch, **consts)
        return
    ck = k.compile(arch=arch, **consts)
    a_name = "tf32" if case.a == "tf32" else case.a
    want = f"mma.sync.aligned.m16n8k{case.k}.row.col.{case.acc}.{a_name}.{case.b}.{case.acc}"
    assert want in ck.ptx
    if loader != "plain":
        assert "ldmatrix.sync.aligned.m8n8" in ck.ptx
        assert (".trans." in ck.ptx) == (loader == "ldmatrix_trans")
    assert ck.spills == 0 and ck.registers > 0  # nvJitLink assembled it


# -- execution -----------------------------------------------------------------------------------------
def _accumulator(rng, acc):
    if acc == "s32":
        return rng.integers(-1000, 1000, (16, 8)).astype(np.int32)
    c = (rng.permutation(128) - 64).astype(np.float64) / 8
    return c.astype(np.float16 if acc == "f16" else np.float32).reshape(16, 8)


@pytest.mark.parametrize("case,loader", list(_cases()))
def test_mma_matches_numpy(backend, rng, case, loader):
    if int(backend.arch[3:5]) < case.min_sm:
        pytest.skip(f"{case.id} needs sm_{case.min_sm}")
    abits, av = random_elements(rng, case.a, (16, case.k))
    bbits, bv = random_elements(rng, case.b, (case.k, 8))
    c = _accumulator(rng, case.acc)
    d = np.zeros_like(c) if case.acc == "s32" else np.full_like(c, np.nan)
    k, consts = kernel_for(case, loader)
    if loader == "plain":
        a, b = abits, bbits
    elif loader == "ldmatrix":
        a, b = pack_rows(abits, case.bits), pack_rows(bbits.T.copy(), case.bits)
    else:
        a, b = pack_rows(abits.T.copy(), 16), pack_rows(bbits, 16)
    k[1, 32](a.reshape(-1), b.reshape(-1), c.reshape(-1), d.reshape(-1), **consts)
    want = av @ bv + c.astype(av.dtype if case.acc == "s32" else np.float64)
    if case.acc == "s32":
        np.testing.assert_array_equal(d, want.astype(np.int32))
    elif case.acc == "f16":
        np.testing.assert_allclose(d.astype(np.float64), want, rtol=2e-3, atol=2e-3)
    else:
        # f32 accumulation in an unspecified order: the error bound scales with the magnitude of the
        # terms summed (|a| @ |b| + |c|), not with the result, which may cancel to near zero.
        scale = np.abs(av) @ np.abs(bv) + np.abs(c.astype(np.float64))
        bound = (case.k + 1) * 2.0 ** -24 * scale   # the classic gamma_k bound of a k-term f32 sum
        assert np.all(np.abs(d - want) <= bound), np.max(np.abs(d - want) / scale)
