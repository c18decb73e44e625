"""A 32-bit product that can wrap and feeds a global address warns at the user's line (issue 10 item 1).

The documented idiom, ``kaiodsl.i64(row) * ld + col``, computes the offset in 64 bits, warns
nothing, and is correct past 2**31 elements (checked here on the PTX and in the simulator).
"""

import warnings

import numpy as np
import pytest

import kaiodsl
from kaiodsl import Ptr, f32, i32, i64


def _warnings(kernel) -> list:
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        kernel.ptx(arch="sm_80")
    return [x for x in w if issubclass(x.category, kaiodsl.IndexOverflowWarning)]


def _line_of(kernel, text: str) -> int:
    return kernel.source.first_line + next(k for k, l in enumerate(kernel.source.lines) if text in l)


@kaiodsl.kernel
def wraps(x: Ptr[f32], ld: i32):
    row, col = kaiodsl.block_idx.x, kaiodsl.thread_idx.x
    x[row * ld + col] = 1.0


@kaiodsl.kernel
def widened_too_late(x: Ptr[f32], ld: i32):
    row, col = kaiodsl.block_idx.x, kaiodsl.thread_idx.x
    x[kaiodsl.i64(row * ld) + col] = 1.0


@kaiodsl.kernel
def loop_product(x: Ptr[f32], n: i32):
    for j in range(n):
        x[j * 2] = 1.0


@pytest.mark.parametrize("kernel,text,expr", [
    (wraps, "x[row * ld + col]", "row * ld"),
    (widened_too_late, "x[kaiodsl.i64(row * ld) + col]", "row * ld"),
    (loop_product, "x[j * 2]", "j * 2"),
], ids=["row*ld", "i64(row*ld)", "loop j*2"])
def test_wrapping_product_warns_at_the_users_line(kernel, text, expr):
    w = _warnings(kernel)
    assert len(w) == 1, [str(x.message) for x in w]
    assert w[0].filename == kernel.source.file and w[0].lineno == _line_of(kernel, text)
    msg = str(w[0].message)
    assert f"`{expr}`" in msg and "kaiodsl.i64(row) * n + col" in msg


@kaiodsl.kernel
def safe(x: Ptr[f32], ld: i32, ld64: i64):
    row, col = kaiodsl.block_idx.x, kaiodsl.thread_idx.x
    s = kaiodsl.shared_array(f32, 4096)
    s[row * ld] = 0.5                               # shared addresses are 32-bit by hardware
    x[kaiodsl.i64(row) * ld + col] = 1.0            # the idiom
    x[row * ld64 + col] = 2.0                       # already 64-bit
    x[col * 4 + 3] = 3.0                            # tid < 1024: cannot wrap
    x[(col // 32) * 64 + (col % 32) * 2] = 4.0      # bounded by the block size
    x[row + col] = 5.0                              # no product
    x[kaiodsl.lane_id() * 1000 + 7 * 9] = 6.0


def test_no_warning_where_nothing_can_wrap():
    assert _warnings(safe) == []


def test_warning_can_be_silenced():
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=kaiodsl.IndexOverflowWarning)
        loop_product.ptx(arch="sm_90a")
    assert not [x for x in w if issubclass(x.category, kaiodsl.KaioWarning)]


def test_the_idiom_indexes_in_64_bits():
    @kaiodsl.kernel
    def k(x: Ptr[f32], base: Ptr[f32], ld: i32):
        row, col = kaiodsl.block_idx.x, kaiodsl.thread_idx.x
        x[kaiodsl.i64(row) * ld + col] = base[col] + kaiodsl.f32(row)

    ptx = k.ptx(arch="sm_80")
    assert "mul.lo.s64" in ptx or "mul.wide.s32" in ptx
    kaiodsl.set_backend("sim")
    x, base = np.full(4 * 8, -1.0, np.float32), np.arange(8, dtype=np.float32)
    k[4, 8](x, base, 8)
    np.testing.assert_array_equal(x.reshape(4, 8), base[None, :] + np.arange(4, dtype=np.float32)[:, None])


@kaiodsl.kernel(block_size=64)
def via_tile_library(a: kaiodsl.Ptr[kaiodsl.f16], M: i32, lda: i32):
    T = kaiodsl.tiles.SmemTile(32, 32, kaiodsl.f16)
    plan = kaiodsl.tiles.copies.plan(kaiodsl.tiles.TileCopy(T, 64, "cols", "cp.async"),
                                     kaiodsl.shared_array(kaiodsl.f16, (T.end,), align=128), a, lda, 0, M,
                                     kaiodsl.thread_idx.x)
    kaiodsl.tiles.copies.issue(kaiodsl.tiles.TileCopy(T, 64, "cols", "cp.async"), plan, lda, 0, 0, 32)


def test_a_tile_library_line_warns_at_the_kernel():
    """A product inside an inlined tile-library function (TileCopy's i32 row offsets, rows x ld) warns at
    the kernel using it, in its module (so the kernel's own filters apply), naming the library line: no
    warning points into kaiodsl's files."""
    w = _warnings(via_tile_library)
    assert w and all(x.filename == via_tile_library.source.file for x in w), [(x.filename, x.lineno) for x in w]
    assert all(x.lineno == via_tile_library.source.first_line for x in w)
    msg = str(w[0].message)
    assert "in kaiodsl.tiles.copies line" in msg and "inlined into kernel via_tile_library" in msg
