"""nvJitLink assembles every kernel in examples/ for sm_80, sm_89 and sm_90a, reporting registers and spills."""

import importlib.util
import inspect
import pathlib

import pytest

import kaiodsl

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
# Const values for kernels that need them, by kernel name.
CONSTS = {"block_sum": {"BLOCK": 256}, "softmax": {"BLOCK": 256}, "transpose": {"TILE": 32, "ROWS": 8}}
ARCHS = ["sm_80", "sm_89", "sm_90a"]


def _discover():
    found = []
    for path in sorted(EXAMPLES.glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"_kaio_example_{path.stem}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        archs = getattr(mod, "ARCHS", ARCHS)  # an example for one arch says so (hopper_gemm: sm_90a)
        for name, obj in vars(mod).items():
            if isinstance(obj, kaiodsl.frontend.decorator.Kernel):
                found += [pytest.param(obj, a, id=f"{path.stem}:{name}-{a}") for a in archs]
    return found


KERNELS = _discover()


def test_examples_were_found():
    assert len(KERNELS) >= 6


@pytest.mark.parametrize("kernel,arch", KERNELS)
def test_example_assembles(kernel, arch):
    defaults = {n for n, _, d in kernel.params if d is not inspect.Parameter.empty}
    missing = kernel.const_names - set(CONSTS.get(kernel.__name__, {})) - defaults
    assert not missing, f"add Const values for {kernel.__name__} ({', '.join(sorted(missing))}) to CONSTS"
    compiled = kernel.compile(arch=arch, **CONSTS.get(kernel.__name__, {}))
    stats = compiled.stats()
    print(stats)
    assert compiled.cubin
    assert 0 < stats["registers"] <= 255
    assert stats["spills"] == 0
