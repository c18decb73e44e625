"""TensorMap specs: the driver's rules checked before the driver (no GPU needed), numpy-order input,
the cache; on a GPU the driver encodes 128 bytes."""

import pytest

import kaiodsl
from kaiodsl.runtime.tensormap import tensor_map

BASE = 0x7F0000000000


def test_numpy_order_is_reversed_for_the_driver():
    s = tensor_map(BASE, "f16", (256, 512), (64, 64), swizzle=128)
    assert s.dims == (512, 256) and s.strides == (1024,) and s.box == (64, 64) and s.box_bytes == 8192
    assert tensor_map(BASE, "f16", (256, 512), (64, 64), swizzle=128) is s  # cached
    t = tensor_map(BASE, "f32", (4, 8, 16), (2, 4, 4), strides=(1024, 64, 4))
    assert t.dims == (16, 8, 4) and t.strides == (64, 1024)


@pytest.mark.parametrize("kw,msg", [
    (dict(box=(64, 128), swizzle=128), r"box=\(64, 128\): the inner box dimension is 256 bytes, more than the 128-byte"),
    (dict(box=(64, 4)), r"box=\(64, 4\): the inner box dimension is 8 bytes: it must be a multiple of 16"),
    (dict(box=(300, 64)), r"box=\(300, 64\): every box dimension must be 1..256"),
    (dict(strides=(1000,)), r"strides=\(1000,\): byte strides must be positive multiples of 16"),
    (dict(strides=(512,)), r"stride of dimension 1 \(512 bytes\) is smaller than the 1024 bytes below it"),
    (dict(swizzle=96), r"swizzle=96: allowed: 0 \(none\), 32, 64, 128"),
    (dict(address=BASE + 8), r"address='0x7f0000000008': the global address must be 16-byte aligned"),
    (dict(dtype="i32", oob_fill="nan"), r"oob_fill='nan': NaN fill needs a float dtype"),
    (dict(l2_promotion=100), r"l2_promotion=100"),
    (dict(interleave=32, swizzle=64), r"rank must be 3..5 with interleave"),
])
def test_driver_rules_are_argument_errors(kw, msg):
    args = dict(address=BASE, dtype="f16", shape=(256, 512), box=(64, 64))
    args.update(kw)
    with pytest.raises(kaiodsl.ArgumentError, match=msg):
        tensor_map(**args)


@pytest.mark.gpu
def test_driver_encodes_128_bytes():
    import numpy as np

    a = kaiodsl.to_device(np.zeros((256, 512), np.float16))
    spec = tensor_map(a.ptr, "f16", (256, 512), (64, 64), swizzle=128)
    assert len(spec.encode()) == 128
