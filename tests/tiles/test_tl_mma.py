"""kaiodsl.tiles.mma: the warp tile of atoms at every mma.sync shape the library names, against numpy
(bit-exact for integers); and the atom's geometry."""

import numpy as np
import pytest

import kaiodsl
from kaiodsl import Ptr, bf16, bf16x2, f16, f16x2, f32, i8, i32, tiles, u32
from kaiodsl.tiles import epilogue, fragments, mma

from fragkit import operand

# (atom dtype, K, numpy element type of the inputs, kaiodsl pointer type, packed register type)
ATOMS = [("f16", 16, np.float16, f16, f16x2), ("f16", 8, np.float16, f16, f16x2),
         ("bf16", 16, np.uint16, bf16, bf16x2), ("bf16", 8, np.uint16, bf16, bf16x2),
         ("tf32", 8, np.float32, f32, f32), ("tf32", 4, np.float32, f32, f32),
         ("s8", 32, np.int8, i8, u32), ("s8", 16, np.int8, i8, u32)]


def _kernel(dt, k, P, H2):
    atom = tiles.MmaAtom(dt, k)
    W = tiles.WarpMma(32, 16, atom)
    acc_t = f32 if atom.acc == "f32" else i32

    @kaiodsl.kernel(block_size=32, name=f"warp_mma_{dt}_k{k}")
    def warp_mma(a: Ptr[P], b: Ptr[P], d: Ptr[acc_t]):
        """D [32, 16] = A [32, 2k] @ B [2k, 16]: two k steps of a 2 x 2 tile of atoms."""
        lane = kaiodsl.thread_idx.x
        acc = fragments.zeros(W.acc_tile)
        for ks in kaiodsl.static_range(2):
            af = [operand("a", dt, k, a, 2 * k, 16 * i, ks * k, H2) for i in range(W.mi)]
            bf = [operand("b", dt, k, b, 16, ks * k, 8 * j, H2) for j in range(W.nj)]
            acc = mma.mma_tile(W, acc, af, bf)
        epilogue.store_tile(tiles.Epilogue((), acc_t), W.acc_tile, acc, d, (), 0, 0, lane, 32, 16)

    return warp_mma, atom


KERNELS = {(dt, k): _kernel(dt, k, P, H2) for dt, k, _, P, H2 in ATOMS}


@pytest.mark.parametrize("dt,k,np_t", [(a[0], a[1], a[2]) for a in ATOMS], ids=[f"{a[0]}-k{a[1]}" for a in ATOMS])
def test_warp_mma_every_shape(backend, rng, dt, k, np_t):
    kern, atom = KERNELS[(dt, k)]
    assert atom.shape == f"m16n8k{k}" and atom.a_regs * 64 // {"f16": 16, "bf16": 16, "tf32": 32, "s8": 8}[dt] == k
    a = rng.integers(-8, 8, (32, 2 * k))
    b = rng.integers(-8, 8, (2 * k, 16))
    want = a.astype(np.float64) @ b.astype(np.float64)
    if dt == "bf16":   # small integers are exact in bf16: the top half of their f32 bits
        ab, bb = ((x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16) for x in (a, b))
    else:
        ab, bb = a.astype(np_t), b.astype(np_t)
    d = np.full((32, 16), np.nan if atom.acc == "f32" else -1, np.float32 if atom.acc == "f32" else np.int32)
    kern[1, 32](ab, bb, d)
    np.testing.assert_array_equal(d, want.astype(d.dtype))


def test_atom_geometry():
    assert tiles.MmaAtom("f16").k == 16 and tiles.MmaAtom("s8").k == 32 and tiles.MmaAtom("s4").k == 64
    assert tiles.MmaAtom("tf32").k == 8 and tiles.MmaAtom("e4m3").acc == "f32"
    assert tiles.MmaAtom("s8").mma_dtype == "s8" and tiles.MmaAtom("bf16").mma_dtype is None
    w = tiles.WarpMma(64, 32)
    assert (w.mi, w.nj, w.acc_tile) == (4, 4, tiles.AccTile(4, 4, "f32"))
    with pytest.raises(ValueError, match="multiple of 16x8"):
        tiles.WarpMma(24, 32)
    with pytest.raises(ValueError, match="dtype must be one of"):
        tiles.MmaAtom("f8")
