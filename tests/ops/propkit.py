"""The harness of the property tests (test_properties*.py): one hypothesis profile, a probe that
counts launches and allocations, mutations that turn a valid argument into an invalid one, and
comparisons that hold with NaN, inf and overflow in the data.

The property every op must have: for any input, either a KaioError whose message names the bad
argument, raised before any launch or allocation, or the reference's result. Nothing else.
"""

import importlib

import numpy as np
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st

import kaiodsl
import kaiodsl.runtime
from kaiodsl.errors import KaioError
from kaiodsl.runtime import backend as rt_backend

from opkit import TOL, bf16_values, host

# Small, fixed example counts: every file of these runs in well under a minute on the simulator.
# derandomize: the same examples on every run (CI stability); no example database on disk.
PROFILE = dict(deadline=None, derandomize=True, database=None, print_blob=False,
               suppress_health_check=list(HealthCheck))


def examples(n: int):
    return settings(max_examples=n, **PROFILE)


class Probe:
    """Counts what an op does: kernel launches (a backend wrapper) and output allocations (the ops'
    new_like / zeros_like / copy_2d, wrapped)."""

    def __init__(self, inner):
        self.inner, self.name, self.arch = inner, inner.name, inner.arch
        self.launches = self.allocs = 0

    def __getattr__(self, name):  # everything else is the wrapped backend's (device, synchronize, ...)
        return getattr(self.inner, name)

    def launch(self, *args, **kwargs):
        self.launches += 1
        return self.inner.launch(*args, **kwargs)

    def counted(self, fn):
        def wrapper(*args, **kwargs):
            self.allocs += 1
            return fn(*args, **kwargs)
        return wrapper

    def reset(self):
        self.launches = self.allocs = 0

    def run(self, call, expect):
        """``call()``; ``expect`` None (it must succeed: returns the result) or a list of strings one of
        which the KaioError must contain (returns None). A KaioError comes before anything ran."""
        self.reset()
        try:
            out = call()
        except KaioError as e:
            msg = str(e)
            event(f"error: {msg[:70]}")
            assert expect is not None, f"a valid call raised {type(e).__name__}: {msg}"
            assert self.launches == 0 and self.allocs == 0, \
                f"{self.launches} launches / {self.allocs} allocations before the error: {msg}"
            assert any(s in msg for s in expect), f"none of {expect} in the message: {msg}"
            return None
        assert expect is None, f"expected an error naming one of {expect}, got a result"
        event(f"result ({self.launches} launches)")
        return out


_ALLOCATORS = {"matmul": ["new_like"], "matmul_int4": ["new_like"], "matmul_int8": ["new_like", "copy_2d"],
               "quantize": ["new_like", "zeros_like"], "backward": ["_copy", "zeros_like"]}


@pytest.fixture(scope="module", params=["sim", pytest.param("cuda", marks=pytest.mark.gpu)])
def probe(request):
    """The backend (sim; cuda where present) behind a Probe, for the whole module."""
    with pytest.MonkeyPatch.context() as mp:
        rt_backend.reset()
        p = Probe(rt_backend.set_backend(request.param))
        for mod_name, names in _ALLOCATORS.items():
            mod = importlib.import_module(f"kaiodsl.ops.{mod_name}")
            for n in names:
                mp.setattr(mod, n, p.counted(getattr(mod, n)))
        rt_backend.set_backend(p)
        yield p
    rt_backend.reset()


# -- values ------------------------------------------------------------------------------------------
SPECIALS = st.sampled_from([None, None, None, "nan", "inf", "-inf", "huge", "tiny", "zero_row"])
HUGE = {"f16": 65504.0, "bf16": 1e18, "f32": 1e18}      # bf16/f32: squares and K-sums stay in range
TINY = {"f16": 6e-8, "bf16": 1e-39, "f32": 1e-39}       # denormals of the type


def floats(seed: int, shape, dtype: str, special=None) -> np.ndarray:
    """float64 values exactly representable in ``dtype`` (f16/bf16/f32), with one kind of special value."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * rng.choice([0.01, 1.0, 10.0])
    if x.size and special:
        at = tuple(rng.integers(0, s) for s in shape)
        if special == "zero_row":
            x[at[0]] = 0.0
        else:
            x[at] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "huge": HUGE[dtype],
                     "tiny": TINY[dtype]}[special]
    return exact(x, dtype)


def exact(x, dtype: str) -> np.ndarray:
    if dtype == "bf16":
        return bf16_values(x).astype(np.float64)
    return np.asarray(x).astype({"f16": np.float16, "f32": np.float32}[dtype]).astype(np.float64)


def as_arg(values: np.ndarray, dtype: str, kind: str = "numpy"):
    """The op argument holding ``values`` in ``dtype`` (bf16: always a DeviceArray, numpy has none)."""
    if dtype == "bf16":
        return kaiodsl.runtime.to_device(values.astype(np.float32), kaiodsl.bf16)
    npd = {"f16": np.float16, "f32": np.float32, "i8": np.int8, "u8": np.uint8, "i32": np.int32,
           "u32": np.uint32}[dtype]
    v = np.ascontiguousarray(values.astype(npd))
    return v if kind == "numpy" else kaiodsl.runtime.to_device(v)


# -- mutations: a valid array argument made invalid --------------------------------------------------
WRONG_DTYPES = [np.float32, np.float64, np.int8, np.int32, np.uint8, np.bool_, np.complex64, np.int64]


def mutations(allowed, mix: bool = True):
    """The ways one array argument can be wrong; ``allowed`` are the numpy dtypes it may have; ``mix``:
    the op takes other arrays, which this one's kind (numpy / device) must match."""
    ways = ["dtype", "rank1", "rank3", "strided", "transposed", "none", "list", "str", "dict", "float"]
    return st.sampled_from(ways + ["mix"] * mix) | st.sampled_from([d for d in WRONG_DTYPES if d not in allowed])


def mutate(how, name: str, arg, values: np.ndarray):
    """(the broken argument, strings one of which the error must contain)."""
    q = f"'{name}'"
    shape = values.shape
    if not isinstance(how, str):                               # a wrong numpy dtype
        with np.errstate(invalid="ignore", over="ignore"):
            return np.ascontiguousarray(np.nan_to_num(values).astype(how)), [q]
    if how == "dtype":                                         # bf16 bits in numpy: uint16
        return np.zeros(shape, np.uint16), [q]
    if how in ("rank1", "rank3"):
        v = values.reshape(-1) if how == "rank1" else values[None]
        return np.ascontiguousarray(v.astype(np.float16)), [q]
    if how in ("strided", "transposed"):                       # the same shape as a strided / transposed view
        x = _numpy_of(arg, values)
        if x.ndim == 0:
            return arg, None
        if how == "strided":
            view = np.repeat(x, 2, axis=-1)[..., ::2]
        else:
            view = np.ascontiguousarray(np.swapaxes(x, -1, -2)).swapaxes(-1, -2) if x.ndim >= 2 else x
        if view.flags.c_contiguous:                            # empty or size-1 dims: no strided view exists
            return arg, None
        return view, [q]
    if how == "mix":                                           # a device array among numpy ones (or back)
        if isinstance(arg, np.ndarray):
            return kaiodsl.runtime.to_device(arg), ["mixes", q]
        return host(arg), ["mixes", q, "'"]
    return {"none": None, "list": values.tolist(), "str": "abc", "dict": {"a": 1}, "float": 1.5}[how], [q]


def _numpy_of(arg, values):
    return arg if isinstance(arg, np.ndarray) else np.ascontiguousarray(values.astype(np.float16))


# -- comparing results ---------------------------------------------------------------------------------
ROUND = {"f16": np.float16, "f32": np.float32}


def to_dtype(ref64: np.ndarray, dtype: str) -> np.ndarray:
    """The float64 reference rounded once to the output dtype (overflow -> inf, as the kernel's cvt)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if dtype == "bf16":
            return bf16_values(ref64.astype(np.float32)).astype(np.float64)
        return ref64.astype(ROUND[dtype]).astype(np.float64)


def assert_close(out, ref64: np.ndarray, dtype: str, tol: float = None):
    """NaN where the reference is NaN, the same infinities, and the finite rest within ``tol``
    (relative norm; default the dtype's TOL)."""
    got = np.asarray(host(out), np.float64)
    ref = to_dtype(np.asarray(ref64, np.float64), dtype)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert np.array_equal(np.isnan(got), np.isnan(ref)), "NaN positions differ"
    inf = np.isinf(ref)
    assert np.array_equal(np.isinf(got), inf) and np.array_equal(got[inf], ref[inf]), "infinities differ"
    fin = np.isfinite(ref)
    den = np.linalg.norm(ref[fin])
    err = np.linalg.norm(got[fin] - ref[fin]) / (den if den else 1.0)
    assert err <= (tol or TOL[dtype]), f"relative error {err:.3g} > {tol or TOL[dtype]} ({dtype})"


def faults(*names, valid: float = 1.0):
    """The fault to inject: None (a valid call) ``valid`` times as often as a fault, else one of ``names``."""
    return st.sampled_from([None] * round(valid * len(names)) + list(names))


def merge(fault_expect, base_expect):
    """What a call with one injected fault may raise: the fault's error, or an error the input already had."""
    if fault_expect is None:
        return base_expect
    return fault_expect + (base_expect or [])
