"""Vector loads and stores of up to 16 bytes for every element width (issue 10 item 18).

PTX ld/st have .v2 and .v4 only, so 8 x f16 (16 bytes) and 8 or 16 x 8-bit move as
.v2/.v4.b32 words that are unpacked into (packed from) the element registers. Checked in the
simulator against numpy (masked too, with an 8-bit signed type to see the sign extension),
assembled by nvJitLink, and on the GPU.
"""

import numpy as np
import pytest

import kaiodsl
from kaiodsl import Ptr, bf16, bool_, f16, f32, i8, i16, u8
from ptxdefs import undefined_reads

BACKENDS = ["sim", pytest.param("cuda", marks=pytest.mark.gpu)]
CASES = [(f16, 8), (bf16, 8), (i16, 8), (u8, 16), (i8, 16), (i8, 8), (u8, 8), (f32, 4)]


def _kernel(T, VEC):
    @kaiodsl.kernel
    def k(x: Ptr[T], o: Ptr[T], s: Ptr[f32], m: Ptr[bool_]):
        i = kaiodsl.thread_idx.x
        v = kaiodsl.load(x, i * VEC, vec=VEC)
        w = kaiodsl.load(x, i * VEC, vec=VEC, mask=m[i], other=3)
        kaiodsl.store(o, i * VEC, w, vec=VEC)
        acc = f32(0.0)
        for e in kaiodsl.static_range(VEC):
            acc = acc + kaiodsl.f32(v[e]) * (e + 1)  # every lane's value, sign extension included
        s[i] = acc
    return k


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("T,VEC", CASES, ids=[f"{t}x{v}" for t, v in CASES])
def test_wide_vector_load_store(backend, T, VEC, rng):
    threads = 8
    n = threads * VEC
    if T.is_int:
        lo, hi = T.int_range
        x = rng.integers(lo, hi, n, endpoint=True).astype(T.np_dtype)
        xf = x.astype(np.float64)
    elif T == bf16:
        xf = rng.integers(-64, 64, n).astype(np.float64) / 4  # exact in bf16
        x = (xf.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    else:
        x = (rng.standard_normal(n) * 4).astype(T.np_dtype)
        xf = x.astype(np.float64)
    m = rng.random(threads) < 0.5
    o = np.zeros_like(x)
    s = np.full(threads, np.nan, np.float32)
    _kernel(T, VEC)[1, threads](x, o, s, m)
    three = (np.float32(3.0).view(np.uint32) >> 16).astype(np.uint16) if T == bf16 else T.np_dtype.type(3)
    want_o = np.where(np.repeat(m, VEC), x, three)
    np.testing.assert_array_equal(o, want_o)
    want_s = (xf.reshape(threads, VEC) * np.arange(1, VEC + 1)).sum(1)
    np.testing.assert_allclose(s, want_s, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
@pytest.mark.parametrize("T,VEC", CASES[:5], ids=[f"{t}x{v}" for t, v in CASES[:5]])
def test_wide_vectors_assemble(T, VEC, arch):
    k = _kernel(T, VEC)
    ptx = k.ptx(arch=arch)
    if VEC * T.nbytes == 16 and T.bits < 32:
        assert "ld.global.v4.b32" in ptx and "st.global.v4.b32" in ptx
    assert undefined_reads(ptx) == []
    assert k.compile(arch=arch).cubin


@pytest.mark.parametrize("T,vec", [(f16, 16), (f32, 8), (kaiodsl.f64, 4), (u8, 32), (f16, 3)])
def test_more_than_16_bytes_is_refused(T, vec):
    with pytest.raises(kaiodsl.CompileError, match="vec"):
        @kaiodsl.kernel
        def k(x: Ptr[T]):
            kaiodsl.load(x, 0, vec=vec)
        k.ptx(arch="sm_80")
