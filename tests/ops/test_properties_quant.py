"""Property tests of the quantized ops (matmul_int8, matmul_w8a8, quantize_per_token, matmul_int4) and
the int4 format helpers: generated invalid and edge-case inputs give a KaioError naming the argument,
before anything is launched or allocated, or the numpy reference's result (propkit.py: the harness)."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import kaiodsl
import kaiodsl.runtime
from kaiodsl import ops

from opkit import host
from propkit import (as_arg, assert_close, exact, examples, faults, floats, merge, mutate,  # noqa: F401
                     mutations, probe)

I8 = (np.int8,)
BAD_SCALE = ["2", None, float("nan"), float("inf"), 1e39, 10**400, True, [1.0], {"s": 1}]
BAD_LAYOUT = ["auto", "tn", None, 0, ["nk"], np.array(["nk"])]
BAD_CONFIG = ["fast", {"block_m": 64}, ops.GemmConfig(block_k=48), ops.GemmConfig(block_k=16)]


def _int8(seed, shape, extreme=False):
    rng = np.random.default_rng(seed)
    if extreme:                                    # the corners of the int8 range
        return rng.choice(np.array([-128, 127], np.int8), shape)
    return rng.integers(-128, 128, shape, dtype=np.int8)


def _int8_case(d):
    layout = d(st.sampled_from(["nk", "kn"]))
    M, N, K = d(st.sampled_from([9, 1, 0, 33])), d(st.sampled_from([24, 8, 5, 0])), d(st.sampled_from([32, 16, 0, 48]))
    seed = d(st.integers(0, 2**32 - 1))
    a = _int8(seed, (M, K), d(st.booleans()))
    b = _int8(seed + 1, (N, K) if layout == "nk" else (K, N))
    kind = d(st.sampled_from(["numpy", "numpy", "device"]))
    return layout, M, N, K, seed, a, b, kind, (["K=0"] if K == 0 and M and N else None)


def _dev(x, kind):
    return x if kind == "numpy" or x is None else kaiodsl.runtime.to_device(x)


@examples(40)
@given(st.data())
def test_matmul_int8(probe, data):
    d = data.draw
    layout, M, N, K, seed, a, b, kind, base = _int8_case(d)
    scale = d(st.sampled_from([1.0, 0.25, 3, np.float32(1e-3), -2.0, 1e30]))
    args = {"a": _dev(a, kind), "b": _dev(b, kind)}
    kw = {"b_layout": layout, "config": None}
    fault, expect = d(faults("a", "b", "K", "scale", "b_layout", "config")), None
    if fault in args:
        args[fault], expect = mutate(d(mutations(I8)), fault, args[fault], {"a": a, "b": b}[fault].astype(float))
    elif fault == "K":
        args["b"] = _dev(_int8(seed, (N, K + 16) if layout == "nk" else (K + 16, N)), kind)
        expect = ["K=", "'b'"]
    elif fault == "scale":
        scale, expect = d(st.sampled_from(BAD_SCALE)), ["scale"]
    elif fault == "b_layout":
        kw["b_layout"], expect = d(st.sampled_from(BAD_LAYOUT)), ["b_layout"]
    elif fault == "config":
        kw["config"], expect = d(st.sampled_from(BAD_CONFIG)), ["config"]
    out = probe.run(lambda: ops.matmul_int8(args["a"], args["b"], scale, **kw), merge(expect, base))
    if out is not None:       # bit-exact: f32(acc) * f32(scale), one rounding, as the kernel
        ref = ops.reference_matmul_int8(a, b, layout).astype(np.float32) * np.float32(scale)
        assert np.array_equal(host(out), ref)
        assert probe.launches == (1 if M and N else 0)


@examples(35)
@given(st.data())
def test_matmul_w8a8(probe, data):
    d = data.draw
    layout, M, N, K, seed, a, w, kind, base = _int8_case(d)
    rng = np.random.default_rng(seed + 2)
    per_token = d(st.booleans())
    act = (rng.uniform(0.5, 1.5, M) * 1e-2).astype(np.float32) if per_token else 0.0123
    ws = (rng.uniform(0.5, 1.5, N) * 1e-2).astype(np.float32)
    if N and d(st.booleans()):
        ws[0] = d(st.sampled_from([np.nan, np.inf, 0.0, 1e30]))        # special values in the data
    bv = rng.standard_normal(N).astype(np.float32) if d(st.booleans()) else None
    out_dtype = d(st.sampled_from(["f16", "bf16", "f32", kaiodsl.f32, None]))
    args = {"a_q": _dev(a, kind), "w_q": _dev(w, kind), "act_scale": _dev(act, kind) if per_token else act,
            "weight_scale": _dev(ws, kind), "bias": _dev(bv, kind)}
    kw = {"b_layout": layout, "out_dtype": out_dtype}
    vals = {"a_q": a.astype(float), "w_q": w.astype(float), "act_scale": np.asarray(act, float),
            "weight_scale": ws.astype(float), "bias": np.zeros(N) if bv is None else bv.astype(float)}
    fault, expect = d(faults("a_q", "w_q", "act_scale", "weight_scale", "bias", "out_dtype", "b_layout")), None
    if fault == "act_scale" and not per_token:                          # a bad per-tensor scalar
        args[fault], expect = d(st.sampled_from(BAD_SCALE[:-2] + [np.ones((2, 2), np.float32)])), ["act_scale"]
    elif fault in args:
        allowed = I8 if fault in ("a_q", "w_q") else (np.float32,)
        how = d(mutations(allowed))
        if fault == "act_scale" and how == "float":
            how = "str"                                                # a float act_scale is valid
        args[fault], expect = mutate(how, fault, args[fault], vals[fault])
        bz = args["bias"]
        if fault == "bias" and (bz is None or kind == "numpy" and isinstance(bz, np.ndarray)
                                and bz.dtype == np.float16 and bz.shape == (N,)):
            expect = None                                              # no bias, or an f16 one: valid
            bv = None if bz is None else bz.astype(np.float32)
    elif fault == "out_dtype":
        kw["out_dtype"], expect = d(st.sampled_from(["f8", "i32", 3, kaiodsl.i8, []])), ["out_dtype"]
    elif fault == "b_layout":
        kw["b_layout"], expect = d(st.sampled_from(BAD_LAYOUT)), ["b_layout"]
    out = probe.run(lambda: ops.matmul_w8a8(args["a_q"], args["w_q"], args["act_scale"], args["weight_scale"],
                                            bias=args["bias"], **kw), merge(expect, base))
    if out is not None:
        ref = ops.reference_matmul_w8a8(a, w, act, ws, bv, layout)
        assert_close(out, ref, {None: "f16", kaiodsl.f32: "f32"}.get(out_dtype, out_dtype))


@examples(40)
@given(st.data())
def test_quantize_per_token(probe, data):
    """Bit-exact with the reference, NaN/inf/huge/denormal/zero rows included; NaN scales compared as NaN
    (their bits are the hardware's)."""
    d = data.draw
    dtype = d(st.sampled_from(["f16", "bf16"]))
    M, K = d(st.sampled_from([3, 1, 0, 2])), d(st.sampled_from([300, 16, 1, 0, 5]))
    special = d(st.sampled_from([None, "nan", "inf", "-inf", "huge", "tiny", "zero_row"]))
    xv = floats(d(st.integers(0, 2**32 - 1)), (M, K), dtype, special)
    kind = "device" if dtype == "bf16" else d(st.sampled_from(["numpy", "device"]))
    x = as_arg(xv, dtype, kind)
    fault, expect = d(faults("x")), None
    if fault:
        x, expect = mutate(d(mutations((np.float16,), mix=False)), "x", x, xv)
    out = probe.run(lambda: ops.quantize_per_token(x), expect)
    if out is not None:
        q, s = host(out[0]), host(out[1])
        rq, rs = ops.reference_quantize_per_token(xv.astype(np.float32))
        assert q.dtype == np.int8 and s.dtype == np.float32 and q.shape == (M, K) and s.shape == (M,)
        assert np.array_equal(q, rq)
        nan = np.isnan(rs)
        assert np.array_equal(np.isnan(s), nan)
        assert np.array_equal(s[~nan].view(np.uint32), rs[~nan].view(np.uint32))
        assert probe.launches == (1 if M and K else 0)


PARALLELISM = [None, (1, 8, 2, 4), (2, 4, 2, 2), (4, 1, 1, 1)]
BAD_PARALLELISM = [(0, 1, 1, 1), (8, 8, 1, 1), (4, 8, 1, 4), (1, 1, 9, 1), "x", (1, 2, 3), [1.0, 1, 1, 1],
                   (True, 1, 1, 1)]


@examples(30)
@given(st.data())
def test_matmul_int4(probe, data):
    d = data.draw
    dtype = d(st.sampled_from(["f16", "bf16"]))
    gs = d(st.sampled_from([128, 64, 32]))
    M, N, K = d(st.sampled_from([3, 9, 1, 0])), d(st.sampled_from([16, 8, 0])), d(st.sampled_from([128, 256, 0]))
    seed = d(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    q = rng.integers(0, 16, (N, K), dtype=np.uint8)
    sv = exact(floats(seed + 1, (N, K // gs), dtype) * 0.1, dtype)
    zv = rng.integers(0, 16, (N, K // gs), dtype=np.uint8) if d(st.booleans()) else None
    av = floats(seed + 2, (M, K), dtype, d(st.sampled_from([None, "nan", "inf", "huge"])))
    kind = "device" if dtype == "bf16" else d(st.sampled_from(["numpy", "device"]))
    args = {"a": as_arg(av, dtype, kind), "w_packed": _dev(ops.pack_int4(q), kind), "scales": as_arg(sv, dtype, kind),
            "zeros": _dev(zv, kind)}
    kw = {"group_size": gs, "parallelism": d(st.sampled_from(PARALLELISM))}
    vals = {"a": av, "w_packed": ops.pack_int4(q).astype(float), "scales": sv,
            "zeros": np.zeros((N, K // gs)) if zv is None else zv.astype(float)}
    base = ["K=0"] if K == 0 and M and N else None
    fault, expect = d(faults("a", "w_packed", "scales", "zeros", "group_size", "parallelism", "K", valid=1.5)), None
    if fault in args:
        allowed = {"a": (np.float16,), "w_packed": (np.int32, np.uint32), "scales": (np.float16,),
                   "zeros": (np.uint8,)}[fault]
        args[fault], expect = mutate(d(mutations(allowed)), fault, args[fault], vals[fault])
        if expect and fault in ("a", "scales"):
            expect += ["'a'", "'scales'"]   # scales take a's dtype: a changed 'a' may be reported at 'scales'
        if fault == "zeros" and args["zeros"] is None:
            expect = None                                   # no zeros is valid: zero points 8
            zv = None
    elif fault == "group_size":
        kw["group_size"], expect = d(st.sampled_from([48, 0, 256, "128", 128.0, None, True])), ["group_size"]
    elif fault == "parallelism":
        kw["parallelism"], expect = d(st.sampled_from(BAD_PARALLELISM)), ["parallelism"]
    elif fault == "K":
        args["a"], expect = as_arg(floats(seed, (M, K + 128), dtype), dtype, kind), ["K="]
    out = probe.run(lambda: ops.matmul_int4(args["a"], args["w_packed"], args["scales"], zeros=args["zeros"],
                                            **kw), merge(expect, base))
    if out is not None:
        with np.errstate(invalid="ignore", over="ignore"):      # NaN / inf in a
            ref = ops.reference_matmul_int4(av, q, sv.astype(np.float16 if dtype == "f16" else np.float32), zv, gs)
        assert_close(out, ref, dtype)
        assert probe.launches == (1 if M and N else 0)


# -- the int4 format helpers (host numpy: no kernels) ---------------------------------------------------
NOT_ARRAYS = ["abc", {"q": 1}, None, 1.5, [[1, 2], [3]]]


@examples(60)
@given(st.data())
def test_pack_unpack_int4(data):
    d = data.draw
    N, K = d(st.sampled_from([8, 16, 0, 12])), d(st.sampled_from([128, 256, 0, 100]))
    rng = np.random.default_rng(d(st.integers(0, 2**32 - 1)))
    dt = d(st.sampled_from([np.uint8, np.int64, np.int32, np.uint16]))
    q = rng.integers(0, 16, (N, K)).astype(dt)
    kind = d(st.sampled_from([None, "list", "nan", "float", "16", "neg", "rank", "not-array"]))
    if kind == "list":
        q = q.tolist()
    elif kind in ("nan", "float"):
        q = q.astype(np.float64)
        if kind == "nan" and q.size:
            q[0, 0] = np.nan
    elif kind in ("16", "neg") and q.size:
        q = q.astype(np.int64)
        q[-1, -1] = 16 if kind == "16" else -1
    elif kind == "rank":
        q = q.reshape(-1)
    elif kind == "not-array":
        q = d(st.sampled_from(NOT_ARRAYS))
    shape_ok = N % 8 == 0 and K % 128 == 0
    valid = kind in (None, "list") and shape_ok and (kind is None or N * K > 0)   # [] has no shape [N, 0]
    try:
        w = ops.pack_int4(q)
    except kaiodsl.ArgumentError as e:
        assert not valid, str(e)
        assert "pack_int4(): 'q'" in str(e)
        return
    assert valid or (kind in ("16", "neg") and not N * K), f"pack_int4 took {kind} {N}x{K}"
    assert w.dtype == np.int32 and w.shape == (N // 8, K // 128, 32, 4)
    assert np.array_equal(ops.unpack_int4(w), np.asarray(q))
    bad = d(st.sampled_from([None, "i64", "rank", "shape", "str"]))
    if bad:
        arg = {"i64": w.astype(np.int64), "rank": w.reshape(-1), "shape": w.reshape(-1, 4), "str": "w"}[bad]
        try:
            ops.unpack_int4(arg)
        except kaiodsl.ArgumentError as e:
            assert "unpack_int4(): 'w_packed'" in str(e)
        else:
            raise AssertionError(f"unpack_int4 took a {bad} w_packed")


@examples(60)
@given(st.data())
def test_quantize_int4(data):
    """Valid weights: dequantize(q, scales, zeros) is within half a step of w; anything else (NaN, inf,
    shapes, group sizes, types) is an ArgumentError of quantize_int4 naming the argument."""
    d = data.draw
    N, K = d(st.sampled_from([8, 3, 0])), d(st.sampled_from([128, 64, 96, 0]))
    gs, sym = d(st.sampled_from([32, 64, 128])), d(st.booleans())
    rng = np.random.default_rng(d(st.integers(0, 2**32 - 1)))
    w = rng.standard_normal((N, K)) * d(st.sampled_from([1.0, 1e-30, 1e30]))
    special = d(st.sampled_from([None, None, "nan", "inf", "f64-huge", "bad-group", "bad-sym", "rank", "str"]))
    args, expect = {"group_size": gs, "symmetric": sym}, None
    if K % gs:
        expect = "group_size"
    if special in ("nan", "inf", "f64-huge") and w.size:
        w[-1, 0] = {"nan": np.nan, "inf": -np.inf, "f64-huge": 1e300}[special]
        expect = "'w"
    elif special == "bad-group":
        args["group_size"], expect = d(st.sampled_from([0, 16, "64", 64.5, None])), "group_size"
    elif special == "bad-sym":
        args["symmetric"], expect = d(st.sampled_from(["yes", 1, None])), "symmetric"
    elif special == "rank":
        w, expect = w.reshape(-1), "'w'"
    elif special == "str":
        w, expect = "w", "'w'"
    try:
        q, s, z = ops.quantize_int4(w, **args)
    except kaiodsl.ArgumentError as e:
        assert expect is not None and expect in str(e) and "quantize_int4()" in str(e), str(e)
        return
    assert expect is None, f"quantize_int4 took {special}"
    assert q.dtype == np.uint8 and q.shape == (N, K) and (z is None) == sym and np.all(q <= 15)
    deq = ops.dequantize(q, s, z, gs, np.float32).astype(np.float64)
    step = np.repeat(s.astype(np.float64), gs, axis=1)
    assert np.all(np.abs(deq - w.astype(np.float32)) <= 0.51 * step + 1e-300)


@examples(60)
@given(st.data())
def test_from_gptq(data):
    """GPTQ tensors of known q/scales/zeros come back exactly; wrong dtypes, shapes and group sizes are
    ArgumentErrors naming the argument."""
    d = data.draw
    N, K, gs = d(st.sampled_from([16, 8])), d(st.sampled_from([256, 128])), d(st.sampled_from([64, 32, 128]))
    rng = np.random.default_rng(d(st.integers(0, 2**32 - 1)))
    q = rng.integers(0, 16, (N, K), dtype=np.uint8)
    scales = rng.uniform(0.5, 1.5, (N, K // gs)).astype(np.float16)
    zeros = rng.integers(0, 16, (N, K // gs), dtype=np.uint8) if d(st.booleans()) else None
    qw = np.zeros((K // 8, N), np.uint32)
    for i in range(8):
        qw |= q.T[i::8].astype(np.uint32) << np.uint32(4 * i)
    qz = None
    if zeros is not None:
        stored = ((zeros.astype(np.int64) - 1) & 0xF).astype(np.uint32).T
        qz = np.zeros((K // gs, N // 8), np.uint32)
        for i in range(8):
            qz |= stored[:, i::8] << np.uint32(4 * i)
    args = {"qweight": qw.view(np.int32), "scales": np.ascontiguousarray(scales.T), "qzeros": qz, "group_size": gs}
    bad = d(st.sampled_from([None, None, "qweight", "scales", "qzeros", "group_size"]))
    if bad == "group_size":
        args["group_size"] = d(st.sampled_from([gs * 2 if gs < 128 else 64, 100, "128", None]))
    elif bad:
        x = args[bad] if args[bad] is not None else np.zeros((K // gs, N // 8), np.int32)
        args[bad] = d(st.sampled_from([x.astype(np.int64), x.tolist(), x.reshape(-1), x[:-1], "x",
                                       x.astype(np.float32) if bad != "scales" else x.astype(np.int32)]))
    try:
        wp, s, z = ops.from_gptq(**args)
    except kaiodsl.ArgumentError as e:
        name = "scales" if bad == "group_size" else bad
        assert bad is not None and ("group_size" in str(e) or f"'{name}'" in str(e)), str(e)
        return
    assert bad is None or (bad == "scales" and isinstance(args["scales"], list)), f"from_gptq took a bad {bad}"
    assert np.array_equal(ops.unpack_int4(wp), q) and np.array_equal(s, scales)
    assert (z is None) == (zeros is None) and (z is None or np.array_equal(z, zeros))
