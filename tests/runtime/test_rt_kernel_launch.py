"""@kaiodsl.kernel objects through the launcher on the simulator: defaults, cached Launchers,
and errors that show the user's frame and the API entry only."""

import traceback

import numpy as np
import pytest

import kaiodsl
from kaiodsl import Const, Ptr, f32, i32
from kaiodsl.errors import ArgumentError, CompileError
from kaiodsl.runtime import set_backend
from kaiodsl.runtime.launch import Launcher, split_args


@kaiodsl.kernel
def fill(out: Ptr[f32], n: i32, value: f32 = 1.5, SCALE: Const[int] = 2, NEG: Const[bool] = False):
    i = kaiodsl.block_idx.x * kaiodsl.block_dim.x + kaiodsl.thread_idx.x
    if i < n:
        if NEG:
            out[i] = -value * SCALE
        else:
            out[i] = value * SCALE


@kaiodsl.kernel
def broken(out: Ptr[f32], n: i32, EDGE: Const[bool] = True):
    out[0] = undefined_name  # noqa: F821 -- the compile error under test


@pytest.fixture
def sim():
    pytest.importorskip("kaiodsl.sim")
    return set_backend("sim")


def run(*args, **kwargs):
    out = np.zeros(8, np.float32)
    fill[1, 32](out, 8, *args, **kwargs)
    return out


@pytest.mark.parametrize("args, kwargs, want", [
    ((), {}, 3.0),                                   # every default
    ((2.0,), {}, 4.0),                               # runtime default overridden positionally
    ((), {"value": 2.0, "NEG": True}, -4.0),         # by keyword, SCALE from its default
    ((0.5, 4), {}, 2.0),                             # a Const positionally, the other defaulted
    ((), {"SCALE": 3}, 4.5),
])
def test_defaults_fill_omitted_parameters(sim, args, kwargs, want):
    np.testing.assert_array_equal(run(*args, **kwargs), np.full(8, want, np.float32))


def test_defaulted_consts_share_one_specialization(sim):
    run()
    run(SCALE=2, NEG=False)  # the same values spelled out: the same launch-cache entry
    keys = [k for k in fill._launch_cache if isinstance(k, tuple) and k[0] is sim]
    assert keys == [(sim, (("SCALE", 2), ("NEG", False)))]


def test_split_args_applies_defaults():
    consts, runtime = split_args(fill, ("o", 8), {})
    assert consts == {"SCALE": 2, "NEG": False} and runtime == ("o", 8, 1.5)
    with pytest.raises(ArgumentError, match=r"missing argument\(s\): n"):
        split_args(fill, ("o",), {})


def test_launchers_are_cached_per_grid_and_block(sim):
    assert fill[1, 32] is fill[1, 32] and fill[(2, 1), 32] is not fill[1, 32]
    assert isinstance(fill[[1], 32], Launcher)  # unhashable dims: built, not cached
    assert fill[2, 64].grid == (2, 1, 1)


def _frames(info):
    return [f.name for f in traceback.extract_tb(info.value.__traceback__)]


def test_compile_error_through_a_launch_has_no_internal_frames(sim):
    with pytest.raises(CompileError, match="undefined_name") as info:
        broken[1, 32](np.zeros(4, np.float32), 4)
    assert _frames(info) == ["test_compile_error_through_a_launch_has_no_internal_frames", "__call__"]
    with pytest.raises(CompileError) as info:  # the same through the bound Launcher, EDGE given
        launch = broken[1, 32]
        launch(np.zeros(4, np.float32), 4, EDGE=False)
    assert _frames(info)[-1] == "__call__" and len(_frames(info)) == 2


def test_argument_error_through_a_launch_has_no_internal_frames(sim):
    with pytest.raises(ArgumentError, match="'out' expects dtype f32") as info:
        fill[1, 32](np.zeros(8, np.float16), 8)
    assert _frames(info) == ["test_argument_error_through_a_launch_has_no_internal_frames", "__call__"]
