"""kaiodsl.fingerprint: values that differ hash differently; equal values hash equally; values with
no stable fingerprint are reported, never guessed."""

import dataclasses
import enum
import threading

import numpy as np
import pytest

from kaiodsl import f16, f32
from kaiodsl.fingerprint import Dependencies


def fp(v):
    d = Dependencies()
    d.value(v)
    return d.digest(), d.unstable


@dataclasses.dataclass(frozen=True)
class Tile:
    m: int
    n: int


class Mode(enum.Enum):
    FAST = 1
    EXACT = 2


class Plain:
    def __init__(self, scale):
        self.scale = scale


class Slotted:
    __slots__ = ("scale",)

    def __init__(self, scale):
        self.scale = scale


def helper_a():
    return 2


def helper_b():
    return 3


@pytest.mark.parametrize("a, b", [
    (np.float32(2.0), np.float32(3.0)), (np.float32(2.0), np.float64(2.0)), (np.int32(7), np.int64(7)),
    (2, 2.0), (True, 1), ((1, 2), (2, 1)), ([1, 2], (1, 2)), ({"a": 1}, {"a": 2}),
    (Tile(64, 64), Tile(64, 128)), (Mode.FAST, Mode.EXACT), (Plain(2.0), Plain(3.0)),
    (Slotted(2.0), Slotted(3.0)), (helper_a, helper_b), (f16, f32),
    (np.arange(4, dtype=np.int32), np.arange(4, dtype=np.int64)), (np.zeros(3), np.ones(3)),
    (range(4), range(5)), (np.dtype("f2"), np.dtype("f4")),
])
def test_different_values_differ(a, b):
    (ha, ua), (hb, ub) = fp(a), fp(b)
    assert ua is None and ub is None
    assert ha != hb


@pytest.mark.parametrize("a, b", [
    ({1, 2, 3}, {3, 2, 1}), ({"x": 1, "y": 2}, {"y": 2, "x": 1}), (Tile(1, 2), Tile(1, 2)),
    (Plain(np.float32(1)), Plain(np.float32(1))), (frozenset("ab"), frozenset("ba")),
])
def test_equal_values_agree(a, b):
    assert fp(a) == fp(b) and fp(a)[0] is not None


@pytest.mark.parametrize("v", [iter([1, 2]), threading.Lock(), Plain(iter(()))])
def test_state_in_c_is_unstable(v):
    h, why = fp(v)
    assert h is None and "lives in C" in why


def test_cycles_terminate():
    a = Plain(None)
    a.scale = a
    assert fp(a)[0] is not None


def test_torch_values():
    torch = pytest.importorskip("torch")
    assert fp(torch.ones(3))[0] is None  # a tensor's data is not in its repr: never a key
    assert fp(torch.float16)[0] != fp(torch.bfloat16)[0] and fp(torch.float16)[1] is None
