"""Wide ints and f64 to bf16 round once, in every rounding mode, on both backends.

Before sm_90 PTX has no cvt.bf16 from s32/s64/u32/u64/f64: kaiodsl goes through f32, which
rounded twice (a value just above a bf16 tie became the tie in f32, then went to even). The f32
step now rounds to odd for nearest-even (directed modes compose). The reference is exact
integer arithmetic on the value's significand.
"""

from fractions import Fraction

import numpy as np
import pytest

import kaiodsl
from kaiodsl import Const, Ptr, bf16, f64, i32, i64, u32, u64

BACKENDS = ["sim", pytest.param("cuda", marks=pytest.mark.gpu)]


def _bf16_exact(v, mode: str) -> int:
    """bf16 bits of the exact value v (int or float) rounded to 8 significant bits by ``mode``."""
    if v != v:
        return 0x7FFF
    x = Fraction(v)
    if x == 0:
        return 0x8000 if isinstance(v, float) and np.signbit(v) else 0
    neg, a = x < 0, abs(x)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    e = e if Fraction(2) ** e <= a else e - 1      # 2**e <= a < 2**(e+1)
    step = Fraction(2) ** (e - 7)                    # spacing of 8-bit significands at this exponent
    q, r = divmod(a, step)
    up = {"rn": r > step / 2 or (r == step / 2 and q % 2 == 1), "rz": False,
          "rm": neg and r > 0, "rp": (not neg) and r > 0}[mode]
    y = float((q + up) * step) * (-1 if neg else 1)
    return int(np.array(y, np.float32).view(np.uint32) >> 16)


def _values(S, rng, backend):
    if S == f64:
        ties = [1 + 2.0 ** -8 + 2.0 ** -30, 1 + 2.0 ** -8 - 2.0 ** -30, -(3 + 2.0 ** -6 + 2.0 ** -40), 1 + 2.0 ** -8,
                1.0000001, 1e20 + 12345.0, -7.5e-30]
        return np.array(ties + list(rng.standard_normal(25) * 1e3), np.float64)
    lo, hi = S.int_range
    ties = [2 ** 24 + 2 ** 16 + 1, 2 ** 24 + 2 ** 16 - 1, 2 ** 24 + 2 ** 16, 0x01018001, hi, 3, 1 << 31 if S.bits > 32 else 7]
    if lo:
        ties += [lo, -(2 ** 24 + 2 ** 16 + 1)]
    if backend == "sim" and S.bits == 64:
        # the simulator converts integers to floats through f64 (sim/numeric.py), exact to 2**53 only
        lo, hi = max(lo, -(2 ** 53)), min(hi, 2 ** 53)
    big = rng.integers(lo, hi, 24, endpoint=True, dtype=S.np_dtype)
    return np.array([t for t in ties if lo <= t <= hi] + list(big), S.np_dtype)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
@pytest.mark.parametrize("S", [i32, u32, i64, u64, f64], ids=str)
def test_wide_to_bf16_rounds_once(backend, arch, S, rng, monkeypatch):
    if backend.name == "cuda" and arch == "sm_90a":
        pytest.skip("the GPU runs its own arch")
    if backend.name == "sim":
        monkeypatch.setattr(backend, "arch", arch)  # the simulator runs the PTX of the arch asked for

    @kaiodsl.kernel
    def k(a: Ptr[S], o: Ptr[bf16], MODE: Const[str]):
        i = kaiodsl.thread_idx.x
        o[i] = kaiodsl.cast(a[i], bf16, rounding=MODE)

    x = _values(S, rng, backend.name)
    for mode in ("rn", "rz", "rm", "rp"):
        o = np.full(len(x), 0x5A5A, np.uint16)
        k[1, len(x)](x, o, MODE=mode)
        want = [_bf16_exact(float(v) if S == f64 else int(v), mode) for v in x]
        bad = [f"{mode} {v!r}: got {g:#06x}, expected {w:#06x}" for v, g, w in zip(x, o, want) if g != w]
        assert not bad, "\n".join(bad[:8])
