"""kaiodsl.tiles.epilogue: every per-element op (scales, bias, maps with and without coordinates, the
cast) and every store policy (row-major with ragged edges, head-major [B, H, S, D], a split into
several outputs), against numpy float64; outputs poisoned first."""

import numpy as np
import pytest

import kaiodsl
from kaiodsl import Const, Ptr, bf16, f16, f32, tiles
from kaiodsl.tiles import epilogue, fragments

T = tiles.AccTile(2, 4)


@kaiodsl.func
def relu(v):
    return max(v, 0.0)


@kaiodsl.func
def ramp(v, row, col):
    return v + f32(row) * 0.5 - f32(col)


@kaiodsl.func
def op_args(E: Const, alpha, rs, cs, bias):
    """The run-time operand of each op of E, in order."""
    args = ()
    for op in E.ops:
        if op.kind == "scale" and op.axis == "uniform":
            args = args + (alpha,)
        elif op.kind == "scale" and op.axis == "row":
            args = args + (rs,)
        elif op.kind == "scale":
            args = args + (cs,)
        elif op.kind == "bias":
            args = args + (bias,)
        else:
            args = args + (None,)
    return args


def _kernel(OUT, n_out):
    @kaiodsl.kernel(block_size=32, name=f"epi_{OUT.name}_{n_out}")
    def epi(x: Ptr[f32], o0: Ptr[OUT], o1: Ptr[OUT], o2: Ptr[OUT], alpha: f32, rs: Ptr[f32], cs: Ptr[f32],
            bias: Ptr[f32], M: kaiodsl.i32, N: kaiodsl.i32, E: Const):
        lane = kaiodsl.thread_idx.x
        acc = fragments.load_c(T, x, 32, 0, 0, lane)
        outs = (o0, o1, o2) if n_out == 3 else o0
        epilogue.store_tile(E, T, acc, outs, op_args(E, alpha, rs, cs, bias), 0, 0, lane, M, N)

    return epi


KERNELS = {(t, n): _kernel(t, n) for t in (f32, f16, bf16) for n in (1, 3)}
NP = {f32: np.float32, f16: np.float16, bf16: np.uint16}


def _bf16_bits(x):
    b = np.asarray(x, np.float32).view(np.uint32)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)


def _as(out_t, x):
    return _bf16_bits(x) if out_t == bf16 else np.asarray(x).astype(NP[out_t])


def _run(rng, E, out_t, M, N, n_out=1, shapes=None):
    x = rng.standard_normal((32, 32)).astype(np.float32)
    rs, cs, bias = (rng.standard_normal(32).astype(np.float32) for _ in range(3))
    alpha = 1.5
    shapes = shapes or [(32, 32)]
    poison = 0xFFFF if out_t == bf16 else np.nan
    outs = [np.full(s, poison, NP[out_t]) for s in shapes] + [np.zeros(1, NP[out_t])] * (3 - len(shapes))
    KERNELS[(out_t, n_out)][1, 32](x, *outs[:3], alpha, rs, cs, bias, M, N, E=E)
    return x.astype(np.float64), alpha, rs.astype(np.float64), cs.astype(np.float64), bias.astype(np.float64), outs


OPS = {
    "none": ((), lambda x, a, r, c, b, R, C: x),
    "scale": ((tiles.Scale(),), lambda x, a, r, c, b, R, C: x * a),
    "row_col_bias_relu": ((tiles.Scale(), tiles.RowScale(), tiles.ColScale(), tiles.Bias(), tiles.Map(relu)),
                          lambda x, a, r, c, b, R, C: np.maximum(x * (a * c[None, :] * r[:, None]) + b[None, :], 0)),
    "bias_then_scale": ((tiles.Bias(), tiles.ColScale()), lambda x, a, r, c, b, R, C: (x + b[None, :]) * c[None, :]),
    "coords": ((tiles.RowScale(), tiles.Map(ramp, coords=True)),
               lambda x, a, r, c, b, R, C: x * r[:, None] + R * 0.5 - C),
}


@pytest.mark.parametrize("ops", list(OPS))
@pytest.mark.parametrize("out_t", [f32, f16, bf16], ids=["f32", "f16", "bf16"])
@pytest.mark.parametrize("M,N", [(32, 32), (27, 30), (9, 5)])
def test_ops_and_row_major_store(backend, rng, ops, out_t, M, N):
    E = tiles.Epilogue(OPS[ops][0], out_t)
    x, a, r, c, b, outs = _run(rng, E, out_t, M, N, shapes=[(32 * 32,)])     # [M, N] and room after it
    R, C = np.mgrid[0:32, 0:32]
    want = OPS[ops][1](x, a, r, c, b, R, C)
    flat = outs[0]
    poison = (flat == 0xFFFF) if out_t == bf16 else np.isnan(flat)
    assert poison[M * N:].all() and not poison[:M * N].any()       # every element written, nothing past [M, N]
    got = flat[:M * N].reshape(M, N)
    w = _as(out_t, want.astype(np.float32))[:M, :N]
    if out_t == f32:
        np.testing.assert_allclose(got, want[:M, :N], rtol=1e-6, atol=1e-6)
    else:   # one rounding of the f32 value: equal or one ulp off (f32 op order)
        gi = got.view(np.int16).astype(np.int32)
        wi = w.view(np.int16).astype(np.int32)
        assert np.abs(gi - wi).max() <= 1


def test_head_major_store(backend, rng):
    """Rows (b, s), columns (h, d) of a [B*S, H*D] tile land at out[b, h, s, d]."""
    S, H, D = 8, 4, 8
    E = tiles.Epilogue((), f32, tiles.HeadMajor(S, H, D))
    x, *_, outs = _run(rng, E, f32, 32, 32, shapes=[(4, H, S, D)])
    want = x.reshape(4, S, H, D).transpose(0, 2, 1, 3)
    np.testing.assert_array_equal(outs[0], want.astype(np.float32))


def test_split_store(backend, rng):
    """Columns [0, 8) -> q [M, 8], [8, 24) -> k as [B, 2, S, 8] (head-major), [24, 32) -> v [M, 8]."""
    S = 8
    E = tiles.Epilogue((tiles.Bias(),), f16, tiles.Split(((8, tiles.RowMajor()), (16, tiles.HeadMajor(S, 2, 8)),
                                                         (8, tiles.RowMajor()))))
    x, a, r, c, b, outs = _run(rng, E, f16, 32, 32, n_out=3, shapes=[(32, 8), (4, 2, S, 8), (32, 8)])
    want = (x + b[None, :]).astype(np.float32).astype(np.float16)
    np.testing.assert_array_equal(outs[0], want[:, :8])
    np.testing.assert_array_equal(outs[1], want[:, 8:24].reshape(4, S, 2, 8).transpose(0, 2, 1, 3))
    np.testing.assert_array_equal(outs[2], want[:, 24:])


def test_bad_store_policies():
    with pytest.raises(ValueError, match="even"):
        tiles.Split(((7, tiles.RowMajor()), (9, tiles.RowMajor())))
    with pytest.raises(ValueError, match="even head_dim"):
        tiles.HeadMajor(8, 2, 5)


def test_epilogue_flags_are_data():
    E = tiles.Epilogue((tiles.Scale(), tiles.RowScale()), f16)
    assert E.col_factor and E.row_factor and not tiles.Epilogue((tiles.Bias(),)).col_factor
    assert hash(E) == hash(tiles.Epilogue((tiles.Scale(), tiles.RowScale()), f16))
