"""Launcher: dims, Const splitting, the per-kernel cache, arguments reaching the backend."""

import numpy as np
import pytest

from kaiodsl.errors import ArgumentError, LaunchError
from kaiodsl.runtime import set_backend
from kaiodsl.runtime.launch import Launcher, dim3, split_args
from kaiodsl.runtime.ptx_kernel import PtxKernel, param

import ptx_samples as S


class ConstKernel(PtxKernel):
    """A PtxKernel with Const parameters, standing in for a frontend Kernel."""

    def __init__(self):
        super().__init__(S.SCALE, S.SCALE_PARAMS)
        self.arg_names = ("x", "BLOCK", "y", "a", "n", "DEBUG")
        self.const_names = frozenset({"BLOCK", "DEBUG"})
        self.seen = []

    def specialize(self, consts, arch):
        self.seen.append(dict(consts))
        return super().specialize(consts, arch)


@pytest.mark.parametrize("d, out", [(5, (5, 1, 1)), ((5,), (5, 1, 1)), ((2, 3), (2, 3, 1)),
                                    ([2, 3, 4], (2, 3, 4)), (np.int64(7), (7, 1, 1))])
def test_dim3(d, out):
    assert dim3(d, "grid") == out


@pytest.mark.parametrize("d", [0, -1, (1, 2, 3, 4), (), "8", 2.5, (2.0, 1)])
def test_dim3_errors(d):
    with pytest.raises(LaunchError, match="grid must be"):
        dim3(d, "grid")


def test_param_spec():
    p = param("y: Ptr[f16] writable")
    assert p.is_pointer and p.writable and p.dtype.name == "f16"
    assert not param("n: i32").is_pointer


def test_launch_reaches_backend_and_caches(fake_sim):
    k = PtxKernel(S.SCALE, S.SCALE_PARAMS)
    x, y = np.ones(8, np.float32), np.zeros(8, np.float32)
    for _ in range(3):
        k[2, (4,)](x, y, 2.0, 8)
    assert k.specialize_calls == 1
    compiled, grid, block, vals, smem, stream = fake_sim.launches[-1]
    assert compiled.name == "scale" and grid == (2, 1, 1) and block == (4, 1, 1)
    assert vals[2].dtype == np.float32 and vals[3].dtype == np.int32 and smem == 0


def test_argument_errors_under_backend(fake_sim):
    k = PtxKernel(S.SCALE, S.SCALE_PARAMS)
    with pytest.raises(ArgumentError, match="'x' expects dtype f32"):
        k[1, 8](np.ones(8, np.float16), np.zeros(8, np.float32), 1.0, 8)
    with pytest.raises(ArgumentError, match="out of range"):
        k[1, 8](np.ones(8, np.float32), np.zeros(8, np.float32), 1.0, 2**40)
    with pytest.raises(ArgumentError, match="takes 4 runtime"):
        k[1, 8](np.ones(8, np.float32))


def test_consts_positional_and_keyword(fake_sim):
    k = ConstKernel()
    x, y = np.ones(8, np.float32), np.zeros(8, np.float32)
    k[1, 8](x, 128, y, 1.0, 8, False)
    k[1, 8](x, 128, y, 1.0, n=8, DEBUG=False)
    k[1, 8](x, y=y, a=1.0, n=8, BLOCK=128, DEBUG=False)
    assert k.seen == [{"BLOCK": 128, "DEBUG": False}]  # one specialization, cached
    k[1, 8](x, 64, y, 1.0, 8, DEBUG=[1, 2])  # unhashable Const values are keyed by repr
    k[1, 8](x, 64, y, 1.0, 8, DEBUG=[1, 2])
    assert len(k.seen) == 2
    _, _, _, vals, _, _ = fake_sim.launches[-1]
    assert len(vals) == 4  # Const values never reach the backend


def test_split_errors():
    k = ConstKernel()
    with pytest.raises(ArgumentError, match="no parameter 'z'"):
        split_args(k, (), {"z": 1})
    with pytest.raises(ArgumentError, match="missing argument"):
        split_args(k, (1, 2), {})
    with pytest.raises(ArgumentError, match="two values for 'x'"):
        split_args(k, (1,), {"x": 1})
    with pytest.raises(ArgumentError, match="takes 6"):
        split_args(k, tuple(range(7)), {})


def test_cache_is_per_backend(fake_sim):
    k = PtxKernel(S.SCALE, S.SCALE_PARAMS)
    args = (np.ones(8, np.float32), np.zeros(8, np.float32), 1.0, 8)
    k[1, 8](*args)

    class Other:
        name, arch = "other", "sm_80"

        def launch(self, *a):
            self.got = a

    o = set_backend(Other())
    k[1, 8](*args, smem=64, stream=3)
    assert k.specialize_calls == 2 and o.got[4:] == (64, 3)


def test_launcher_repr_and_compiled(fake_sim):
    k = PtxKernel(S.SCALE, S.SCALE_PARAMS)
    lc = k[(1, 2), 32]
    assert isinstance(lc, Launcher) and "grid=(1, 2, 1)" in repr(lc)
    assert lc.compiled(None, None, 1.0, 1).arch == "sm_90a"


def test_real_simulator_runs_hand_written_ptx():
    sim = pytest.importorskip("kaiodsl.sim")
    if not hasattr(sim, "SimBackend"):
        pytest.skip("kaiodsl.sim.SimBackend not written yet")
    set_backend("sim")
    k = PtxKernel(S.SCALE, S.SCALE_PARAMS)
    x = np.arange(40, dtype=np.float32)
    y = np.zeros(40, np.float32)
    k[2, 32](x, y, 3.0, 40)
    np.testing.assert_array_equal(y, 3 * x)
