"""Small helpers shared by the language tests: poisoned outputs, float comparison, bf16 bits."""

import numpy as np

POISON_INT = 0xDEADBEEF


def poison(shape, dtype) -> np.ndarray:
    """An output buffer full of garbage: NaN for floats, 0xDEADBEEF (truncated) for ints."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.full(shape, np.nan, dtype)
    if dtype.kind == "b":
        return np.ones(shape, dtype)
    return np.full(shape, POISON_INT, np.uint64).astype(dtype)


def assert_close(got, want, rtol=1e-6):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert not np.isnan(got).any(), f"NaN in output: {got}"
    err = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30)
    assert err <= rtol, f"relative error {err:.3g} > {rtol}\n got={got}\nwant={want}"


def random(rng, n, dtype, lo=-100, hi=100, nonzero=False):
    """Fresh random values of numpy ``dtype`` (never all zeros)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        x = rng.uniform(lo, hi, n).astype(dtype)
    elif dtype.kind == "b":
        x = rng.integers(0, 2, n).astype(bool)
    else:
        info = np.iinfo(dtype)
        x = rng.integers(max(info.min, lo), min(info.max, hi), n, endpoint=True).astype(dtype)
    if nonzero and dtype.kind != "b":
        x[x == 0] = 1
    return x


from kaiodsl.types import bf16_bits  # noqa: E402,F401  (f32 -> bf16 bits, round to nearest even)


def bf16_to_f32(bits) -> np.ndarray:
    return (np.asarray(bits, np.uint32) << 16).view(np.float32)
