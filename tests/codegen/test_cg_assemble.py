"""nvJitLink assembles the PTX of every scalar type's loads, stores, arithmetic and conversions (CPU-only
coverage for the PTX forms the simulator is lenient about, e.g. predicates in memory)."""

import pytest

import kaiodsl
from kaiodsl import Ptr, bf16, bool_, f16, f32, f64, i8, i16, i32, i64, u8, u16, u32, u64

TYPES = [i8, u8, i16, u16, i32, u32, i64, u64, f16, bf16, f32, f64]


def _kernel(T):
    @kaiodsl.kernel
    def k(a: Ptr[T], b: Ptr[T], o: Ptr[T], m: Ptr[bool_], f: Ptr[f32], s: T):
        i = kaiodsl.thread_idx.x
        x, y = a[i], b[i]
        o[i] = min(x * y + s, max(x - y, x)) if m[i] else kaiodsl.load(a, i + 1, mask=i < 8, other=1)
        m[i + 1] = x < y
        f[i] = kaiodsl.f32(x) + kaiodsl.f32(kaiodsl.i32(f[i + 1]))
        o[i + 2] = kaiodsl.cast(f[i], T)
    return k


@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
@pytest.mark.parametrize("T", TYPES, ids=str)
def test_every_type_assembles(T, arch):
    c = _kernel(T).compile(arch=arch)
    assert c.cubin and c.spills == 0


@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
def test_bool_memory_assembles(arch):
    @kaiodsl.kernel
    def k(m: Ptr[bool_], flag: bool_):
        i = kaiodsl.thread_idx.x
        m[i] = m[i + 1] and flag
        m[i + 2] = True
        kaiodsl.store(m, i + 3, kaiodsl.load(m, i, mask=flag, other=True), mask=i > 2)

    ptx = k.ptx(arch=arch)
    assert ".pred" not in "".join(l for l in ptx.splitlines() if l.strip().startswith(("ld.global", "st.global")))
    assert k.compile(arch=arch).cubin
