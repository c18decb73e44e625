"""Cluster and PDL launches through cuLaunchKernelEx (fake driver): the exact launch config and
parameters, the limits checked before anything launches, ordinary launches untouched."""

import ctypes
import struct
from types import SimpleNamespace

import pytest

from kaiodsl.errors import LaunchError
from kaiodsl.runtime.arrays import DeviceArray

from test_rt_cuda_fake import fake_cuda  # noqa: F401 - the fixture

CLUSTER_DIM, PROGRAMMATIC = 4, 6  # CUlaunchAttributeID values


def _attr():
    return SimpleNamespace(id=None, value=SimpleNamespace(clusterDim=SimpleNamespace(x=0, y=0, z=0),
                                                          programmaticStreamSerializationAllowed=0))


@pytest.fixture
def ex(fake_cuda):  # noqa: F811
    fake, k = fake_cuda
    fake.ex_launches = []

    def launch_ex(cfg, fn, argv, extra):
        ptrs = (ctypes.c_void_p * len(fake.sizes)).from_address(argv)
        vals = [ctypes.string_at(p, n) for p, n in zip(ptrs, fake.sizes)]
        attrs = [(a.id, (a.value.clusterDim.x, a.value.clusterDim.y, a.value.clusterDim.z)
                  if a.id == CLUSTER_DIM else a.value.programmaticStreamSerializationAllowed)
                 for a in cfg.attrs[:cfg.numAttrs]]
        fake.ex_launches.append(((cfg.gridDimX, cfg.gridDimY, cfg.gridDimZ),
                                 (cfg.blockDimX, cfg.blockDimY, cfg.blockDimZ), cfg.sharedMemBytes, cfg.hStream,
                                 attrs, vals))
        return (0,)

    fake.cuLaunchKernelEx = launch_ex
    fake.CUlaunchConfig = lambda: SimpleNamespace()
    fake.CUlaunchAttribute = _attr
    fake.CUlaunchAttributeID = SimpleNamespace(CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION=CLUSTER_DIM,
                                               CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION=PROGRAMMATIC)
    fake.CUfunction_attribute.CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED = 16
    return fake, k


@pytest.mark.parametrize("cluster,pdl,attrs", [
    ((2, 1, 1), False, [(CLUSTER_DIM, (2, 1, 1))]),
    ((2, 2), True, [(CLUSTER_DIM, (2, 2, 1)), (PROGRAMMATIC, 1)]),
    (None, True, [(PROGRAMMATIC, 1)]),
])
def test_launch_config_reaches_the_driver(ex, cluster, pdl, attrs):
    fake, k = ex
    x, y = DeviceArray(8, "f32"), DeviceArray(16, "f32")
    k[(4, 2), 128](x, y, 1.5, -7, cluster=cluster, pdl=pdl, stream=5, smem=256)
    grid, block, smem, stream, got, vals = fake.ex_launches[-1]
    assert (grid, block, smem, stream, got) == ((4, 2, 1), (128, 1, 1), 256, 5, attrs)
    assert vals == [struct.pack("<Q", x.ptr), struct.pack("<Q", y.ptr), struct.pack("<f", 1.5), struct.pack("<i", -7)]
    assert fake.launches == []  # not through cuLaunchKernel
    k[(4, 2), 128](x, y, 1.5, -7)  # an ordinary launch still takes cuLaunchKernel
    assert len(fake.launches) == 1 and len(fake.ex_launches) == 1


def test_non_portable_cluster_opts_in_once(ex):
    fake, k = ex
    x, y = DeviceArray(8, "f32"), DeviceArray(16, "f32")
    for _ in range(2):
        k[16, 32](x, y, 1.0, 3, cluster=16)
    assert fake.set_attr == [1] and fake.ex_launches[-1][4] == [(CLUSTER_DIM, (16, 1, 1))]


@pytest.mark.parametrize("grid,cluster,pdl,msg", [
    ((3, 1), (2, 1, 1), False, r"grid.x=3 is not a multiple of cluster.x=2"),
    ((4, 3), (1, 2), False, r"grid.y=3 is not a multiple of cluster.y=2"),
    (32, 32, False, r"cluster=\(32, 1, 1\) has 32 CTAs; at most 8 \(portable\) or 16"),
    (4, (0, 1), False, r"cluster must be a positive int"),
    (4, None, 1, r"pdl must be True or False"),
])
def test_cluster_limits_before_launch(ex, grid, cluster, pdl, msg):
    fake, k = ex
    x, y = DeviceArray(8, "f32"), DeviceArray(16, "f32")
    with pytest.raises(LaunchError, match=msg):
        k[grid, 32](x, y, 1.0, 3, cluster=cluster, pdl=pdl)
    assert fake.ex_launches == [] and fake.launches == []


def test_clusters_need_sm_90(ex):
    fake, k = ex
    from kaiodsl.runtime import backend
    backend.STATE.backend.arch = "sm_80"
    x, y = DeviceArray(8, "f32"), DeviceArray(16, "f32")
    with pytest.raises(LaunchError, match=r"cluster=\(2, 1, 1\) needs sm_90 or newer; this backend targets sm_80"):
        k[2, 32](x, y, 1.0, 3, cluster=2)
