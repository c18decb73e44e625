"""nvJitLink assembles every kernel in examples/ (the demo's examples, found as the demo finds them) for
sm_80, sm_89 and sm_90a (those of an example's DEMO_ARCHS), reporting registers and spills."""

import inspect
import pathlib

import pytest

import kaiodsl
from kaiodsl import demo

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
ARCHS = ["sm_80", "sm_89", "sm_90a"]
CONSTS = {}  # kernel name -> its example's DEMO_CONSTS entry
ONLY_ON = {}  # kernel name -> its example's DEMO_ARCHS


def _discover():
    found = []
    for path in demo.example_files(EXAMPLES):
        mod = demo.load_example(path, EXAMPLES)
        for name, obj in vars(mod).items():
            if isinstance(obj, kaiodsl.frontend.decorator.Kernel):
                CONSTS[obj.__name__] = getattr(mod, "DEMO_CONSTS", {}).get(obj.__name__, {})
                ONLY_ON[obj.__name__] = getattr(mod, "DEMO_ARCHS", ARCHS)
                found.append(pytest.param(obj, id=f"{path.relative_to(EXAMPLES).with_suffix('')}:{name}"))
    return found


KERNELS = _discover()


def test_examples_were_found():
    assert len(KERNELS) >= 6


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_example_assembles(kernel, arch):
    if arch not in ONLY_ON[kernel.__name__]:
        pytest.skip(f"{kernel.__name__} runs on {', '.join(ONLY_ON[kernel.__name__])} (DEMO_ARCHS)")
    defaults = {n for n, _, d in kernel.params if d is not inspect.Parameter.empty}
    missing = kernel.const_names - set(CONSTS.get(kernel.__name__, {})) - defaults
    assert not missing, f"add Const values for {kernel.__name__} ({', '.join(sorted(missing))}) to its example's DEMO_CONSTS"
    compiled = kernel.compile(arch=arch, **CONSTS.get(kernel.__name__, {}))
    stats = compiled.stats()
    print(stats)
    assert compiled.cubin
    assert 0 < stats["registers"] <= 255
    assert stats["spills"] == 0
