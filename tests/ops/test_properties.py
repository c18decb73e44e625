"""Property tests of the float GEMMs (matmul, matmul_backward, the KAIO tc names) and GemmConfig:
generated invalid and edge-case inputs give a KaioError naming the argument, before anything is
launched or allocated, or the numpy reference's result (propkit.py has the harness)."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import kaiodsl
from kaiodsl import ops

from propkit import (as_arg, assert_close, examples, faults, floats, merge, mutate, mutations,  # noqa: F401
                     probe)

F16 = (np.float16,)
OUT_DTYPES = {None: None, "f32": "f32", "f16": "f16", "bf16": "bf16", kaiodsl.f32: "f32", np.float16: "f16"}
BAD_OUT = ["f64", "i8", kaiodsl.i32, 3, [], {"f32": 1}, np.float64]
BAD_CHOICE = ["", "fast", None, 1, ["kn"], {"kn": 1}, np.array(["kn"])]


def _bad_config():
    """Configs the ops must refuse: wrong types, and GemmConfigs that are no valid tiling."""
    return st.sampled_from([
        "fast", {"block_m": 64}, [64, 64], 3,
        ops.GemmConfig(block_m=24), ops.GemmConfig(block_k=48), ops.GemmConfig(warps_m=8, warps_n=8, block_m=256),
        ops.GemmConfig(block_m=144, block_n=144, block_k=32, warps_m=1, warps_n=9, stages=2),
        ops.GemmConfig(stages=9, block_k=64),
    ])


GOOD_CONFIGS = [None, ops.GemmConfig(block_m=32, block_n=64, block_k=32, warps_m=1, warps_n=2, stages=2, group_m=1)]


@examples(45)
@given(st.data())
def test_matmul(probe, data):
    d = data.draw
    dtype = d(st.sampled_from(["f16", "bf16"]))
    kind = "device" if dtype == "bf16" else d(st.sampled_from(["numpy", "numpy", "device"]))
    layout = d(st.sampled_from(["kn", "nk", "auto"]))
    M, N, K = (d(st.sampled_from([17, 5, 1, 0])), d(st.sampled_from([24, 8, 13, 3, 0])),
               d(st.sampled_from([40, 8, 13, 7, 1, 0])))     # every K and N: ragged ones take the element copies
    seed, special = d(st.integers(0, 2**32 - 1)), d(st.sampled_from([None, None, "nan", "inf", "huge", "tiny"]))
    kn = layout != "nk"
    av = floats(seed, (M, K), dtype, special)
    bv = floats(seed + 1, (K, N) if kn else (N, K), dtype)
    kw = {"b_layout": layout, "out_dtype": d(st.sampled_from(list(OUT_DTYPES))),
          "pipeline": d(st.sampled_from(["auto", "sync", "async"])), "config": d(st.sampled_from(GOOD_CONFIGS))}
    biasv = floats(seed + 2, (N,), "f32") if d(st.booleans()) else None
    args = {"a": as_arg(av, dtype, kind), "b": as_arg(bv, dtype, kind),
            "bias": None if biasv is None else as_arg(biasv, "f32", kind)}
    base = ["K=0"] if K == 0 and M and N else None
    fault, expect = d(faults("a", "b", "bias", "K", "out_dtype", "pipeline", "b_layout", "config")), None
    if fault in args:
        vals = {"a": av, "b": bv, "bias": biasv if biasv is not None else np.ones(N)}[fault]
        args[fault], expect = mutate(d(mutations(F16 if fault != "bias" else (np.float16, np.float32))), fault,
                                     args[fault], vals)
        if expect and fault != "bias":
            expect += ["'a'", "'b'"]    # b's dtype must be a's: a changed 'a' may be reported at 'b'
        bz = args["bias"]
        if fault == "bias" and (bz is None or kind == "numpy" and isinstance(bz, np.ndarray) and bz.shape == (N,)
                                and bz.dtype == np.float16):
            expect = None           # no bias, or an f16 numpy one (converted to f32): valid
            biasv = None if bz is None else bz.astype(np.float64)
    elif fault == "K":
        args["b"] = as_arg(floats(seed, (K + 8, N) if kn else (N, K + 8), dtype), dtype, kind)
        expect = ["K=", "'b'"]
    elif fault == "out_dtype":
        kw["out_dtype"], expect = d(st.sampled_from(BAD_OUT)), ["out_dtype"]
    elif fault in ("pipeline", "b_layout"):
        kw[fault], expect = d(st.sampled_from(BAD_CHOICE)), [fault]
    elif fault == "config":
        kw["config"], expect = d(_bad_config()), ["config"]
    out = probe.run(lambda: ops.matmul(args["a"], args["b"], bias=args["bias"], **kw), merge(expect, base))
    if out is not None:
        ref = ops.reference_matmul(av, bv, "kn" if kn else "nk", biasv)
        assert_close(out, ref, OUT_DTYPES[kw["out_dtype"]] or dtype)
        assert probe.launches == (1 if M and N else 0)


@examples(20)
@given(st.data())
def test_matmul_backward(probe, data):
    d = data.draw
    layout = d(st.sampled_from(["kn", "nk"]))
    M, N, K = d(st.sampled_from([9, 1, 0])), d(st.sampled_from([8, 5, 0])), d(st.sampled_from([16, 8, 5, 0]))
    seed = d(st.integers(0, 2**32 - 1))
    vals = {"grad": floats(seed, (M, N), "f16"), "a": floats(seed + 1, (M, K), "f16"),
            "b": floats(seed + 2, (K, N) if layout == "kn" else (N, K), "f16")}
    args = {n: as_arg(v, "f16") for n, v in vals.items()}
    kw = {"b_layout": layout, "pipeline": "auto"}
    base = None
    fault, expect = d(faults("grad", "a", "b", "b_layout", "pipeline")), None
    if fault in args:
        args[fault], expect = mutate(d(mutations(F16)), fault, args[fault], vals[fault])
        expect = expect and expect + ["'grad'", "'a'", "'b'"]      # one dtype for the three
    elif fault:
        kw[fault], expect = d(st.sampled_from(BAD_CHOICE + ["auto"] * (fault == "b_layout"))), [fault]
    out = probe.run(lambda: ops.matmul_backward(args["grad"], args["a"], args["b"], **kw), merge(expect, base))
    if out is not None:
        rda, rdb = ops.reference_matmul_backward(vals["grad"], vals["a"], vals["b"], layout)
        assert_close(out[0], rda, "f16")
        assert_close(out[1], rdb, "f16")


TC = {"matmul_tc": "f16", "matmul_tc_bf16": "bf16", "matmul_tc_async": "f16", "matmul_tc_bf16_async": "bf16"}


@examples(15)
@given(st.data())
def test_kaio_tc_names(probe, data):
    """KAIO's contract, square and not: b [K, N] row-major, f32 out; the other dtype is refused."""
    d = data.draw
    name = d(st.sampled_from(list(TC)))
    dtype = TC[name] if d(st.booleans()) else d(st.sampled_from(["f16", "bf16"]))
    M, N, K = d(st.sampled_from([(16, 16, 16), (8, 8, 8), (3, 16, 24), (24, 8, 16)]))
    seed = d(st.integers(0, 2**32 - 1))
    av, bv = floats(seed, (M, K), dtype), floats(seed + 1, (K, N), dtype)
    expect = None if dtype == TC[name] else [f"{name}(): 'a' has dtype {dtype}"]
    out = probe.run(lambda: ops.KAIO_NAMES[name](as_arg(av, dtype), as_arg(bv, dtype)), expect)
    if out is not None:
        assert_close(out, av @ bv, "f32")


FIELDS = ["block_m", "block_n", "block_k", "warps_m", "warps_n", "stages", "group_m"]


@examples(30)
@given(st.data())
def test_gemm_config(probe, data):
    """Any GemmConfig that constructs and passes check() computes the right product (f16 and int8, both
    B layouts); anything else is an ArgumentError naming the field or the rule."""
    d = data.draw
    kw = {"block_m": d(st.sampled_from([64, 32, 48, 16])), "block_n": d(st.sampled_from([64, 32, 80, 16])),
          "block_k": d(st.sampled_from([32, 64, 16, 128])), "warps_m": d(st.sampled_from([2, 1, 3])),
          "warps_n": d(st.sampled_from([2, 1, 4])), "stages": d(st.sampled_from([2, 1, 3])),
          "group_m": d(st.sampled_from([8, 1, 2]))}
    bad = d(st.sampled_from([None] * 6 + FIELDS))
    if bad:
        kw[bad] = d(st.sampled_from([0, -1, 2.0, True, "8", None]))
    elem = d(st.sampled_from([2, 1]))
    layout = d(st.sampled_from(["nk", "kn"])) if elem == 2 else "nk"
    try:
        cfg = ops.GemmConfig(**kw)
        cfg.check(elem, layout == "nk")
    except kaiodsl.ArgumentError as e:
        assert bad is None or f"GemmConfig: {bad} must be a positive int" in str(e), str(e)
        return
    assert bad is None, f"GemmConfig({bad}={kw[bad]!r}) was accepted"
    M, N, K = 21, 40, 2 * kw["block_k"] + 16
    seed = d(st.integers(0, 2**32 - 1))
    if elem == 2:
        av, bv = floats(seed, (M, K), "f16"), floats(seed + 1, (K, N) if layout == "kn" else (N, K), "f16")
        out = probe.run(lambda: ops.matmul(as_arg(av, "f16"), as_arg(bv, "f16"), b_layout=layout, out_dtype="f32",
                                           config=cfg), None)
        assert_close(out, ops.reference_matmul(av, bv, layout), "f32")
    else:
        rng = np.random.default_rng(seed)
        a8, b8 = rng.integers(-128, 128, (M, K), dtype=np.int8), rng.integers(-128, 128, (N, K), dtype=np.int8)
        out = probe.run(lambda: ops.matmul_int8(a8, b8, config=cfg), None)
        assert np.array_equal(out, ops.reference_matmul_int8(a8, b8).astype(np.float32))
