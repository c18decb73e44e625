"""Random valid kernels over every scalar type, operator and cast assemble with nvJitLink (issue 10 item 5).

ptxas rejected 15 % of such kernels (abs.uN, cvt.sat.s32.s16, cvt.sat.s32.s32, ...). The
generator (fuzzgen.py) writes a fixed, seeded sample, so a failure reproduces; each kernel holds
many statements, so one compile covers many forms. Zero rejections are allowed; the
def-before-use checker (ptxdefs.py) runs over the same PTX.
"""

import importlib.util

import pytest

import kaiodsl
from fuzzgen import module_source
from ptxdefs import undefined_reads

SEEDS = range(4)


@pytest.fixture(scope="module")
def fuzz_module(tmp_path_factory):
    mods = {}
    for seed in SEEDS:
        path = tmp_path_factory.mktemp("fuzz") / f"fuzz_kernels_{seed}.py"
        path.write_text(module_source(seed, kernels=2, stmts=24, depth=3))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mods[seed] = mod
    return mods


@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
@pytest.mark.parametrize("seed", SEEDS)
def test_random_kernels_assemble(fuzz_module, seed, arch):
    mod = fuzz_module[seed]
    for name in ("fuzz0", "fuzz1"):
        k = getattr(mod, name)
        try:
            compiled = k.compile(arch=arch)
        except kaiodsl.KaioError as e:
            src = open(mod.__file__).read()
            pytest.fail(f"seed {seed} {name} ({arch}) was refused:\n{e}\n--- source ({mod.__file__}) ---\n{src}")
        assert compiled.cubin
        assert undefined_reads(compiled.ptx) == [], f"seed {seed} {name}: a register read before written"
