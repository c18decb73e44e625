"""The disk-cache key follows everything a kernel reaches, across processes.

Process 1 compiles each kernel (cold, writes the cache); process 2, with nothing edited, must
hit the cache (same key, no compile) -- so the key is stable and a changed PTX below cannot
come from a key that simply differs every run; then one dependency of each kernel is edited
in its own module file and process 3 must produce the new PTX.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# case -> (the file edited, its text before, its text after, the kernel's body line)
CASES = {
    "func_attr": ("h_mod.py",
                  "import kaiodsl\n\n@kaiodsl.func\ndef f(v):\n    return v * 2.0\n",
                  "import kaiodsl\n\n@kaiodsl.func\ndef f(v):\n    return v * 3.0\n",
                  "x[i] = h_mod.f(x[i])"),
    "const_attr": ("cfg_mod.py", "SCALE = 2.0\n", "SCALE = 3.0\n", "x[i] = x[i] * cfg_mod.SCALE"),
    "object_attr": ("obj_mod.py",
                    "class Params:\n    def __init__(self, s):\n        self.scale = s\n\nparams = Params(2.0)\n",
                    "class Params:\n    def __init__(self, s):\n        self.scale = s\n\nparams = Params(3.0)\n",
                    "x[i] = x[i] * params.scale"),
    "helper_global": ("helper_mod.py", "SCALE = 2.0\n\ndef scale():\n    return SCALE\n",
                      "SCALE = 3.0\n\ndef scale():\n    return SCALE\n", "x[i] = x[i] * scale()"),
    "numpy_scalar": ("np_mod.py", "import numpy as np\nNPSCALE = np.float32(2.0)\n",
                     "import numpy as np\nNPSCALE = np.float32(3.0)\n", "x[i] = x[i] * float(NPSCALE)"),

    # values computed at import from a data file: the modules' own text never changes
    "computed_attr": ("scale1.txt", "2.0", "3.0", "x[i] = x[i] * data1_mod.SCALE"),
    "helper_module_attr": ("scale2.txt", "2.0", "3.0", "x[i] = x[i] * data2_scale()"),
    # block_size given as a callable: keyed by what it computes, not by its repr (an address)
    "block_size_callable": ("blk_mod.py", "def block():\n    return 64\n", "def block():\n    return 128\n",
                            "x[i] = f32(kaiodsl.block_dim.x)"),
}
DECORATOR = {"block_size_callable": "@kaiodsl.kernel(block_size=lambda: blk_mod.block())"}
FIXED = {
    "data1_mod.py": "import pathlib\nSCALE = float((pathlib.Path(__file__).parent / 'scale1.txt').read_text())\n",
    "data2_mod.py": "import pathlib\nSCALE = float((pathlib.Path(__file__).parent / 'scale2.txt').read_text())\n",
    "data2_help.py": "import data2_mod\n\ndef data2_scale():\n    return data2_mod.SCALE\n",
}

KERNELS = """
import kaiodsl
from kaiodsl import Ptr, f32
import h_mod, cfg_mod, data1_mod, blk_mod
from obj_mod import params
from helper_mod import scale
from np_mod import NPSCALE
from data2_help import data2_scale
""" + "".join(f"""

{DECORATOR.get(case, "@kaiodsl.kernel")}
def k_{case}(x: Ptr[f32]):
    i = kaiodsl.thread_idx.x
    {line}
""" for case, (_, _, _, line) in CASES.items())

RUN = """
import hashlib, json, sys
import kaiodsl.compiler as c
compiled = []
real = c._compile
def counting(*a, **k):
    compiled.append(a[0].__name__)
    return real(*a, **k)
c._compile = counting
import kernels
out = {}
for case in sys.argv[1].split(","):
    k = getattr(kernels, "k_" + case)
    ck = c.compile(k, {}, "sm_80")
    out[case] = {"ptx": hashlib.sha256(ck.ptx.encode()).hexdigest(), "key": ck.key,
                 "compiled": k.__name__ in compiled}
print(json.dumps(out))
"""


def _run(tmp: Path, cases) -> dict:
    env = dict(os.environ, KAIODSL_CACHE_DIR=str(tmp / "cache"), PYTHONDONTWRITEBYTECODE="1",
               PYTHONPATH=str(tmp))
    env.pop("KAIODSL_CACHE", None)
    r = subprocess.run([sys.executable, str(tmp / "run.py"), ",".join(cases)], env=env, cwd=tmp,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deps")
    for mod, before, _, _ in CASES.values():
        (tmp / mod).write_text(before)
    for mod, text in FIXED.items():
        (tmp / mod).write_text(text)
    (tmp / "kernels.py").write_text(KERNELS)
    (tmp / "run.py").write_text(RUN)
    cold = _run(tmp, CASES)
    warm = _run(tmp, CASES)
    for mod, _, after, _ in CASES.values():
        (tmp / mod).write_text(after)
    edited = _run(tmp, CASES)
    return cold, warm, edited


@pytest.mark.parametrize("case", list(CASES))
def test_edited_dependency_recompiles_in_a_new_process(runs, case):
    cold, warm, edited = runs
    assert cold[case]["compiled"] and not cold[case]["key"].startswith("uncached")
    assert not warm[case]["compiled"], "an unchanged kernel must be a disk-cache hit in a new process"
    assert warm[case]["key"] == cold[case]["key"] and warm[case]["ptx"] == cold[case]["ptx"]
    assert edited[case]["compiled"], f"{case}: the edited dependency was served from the cache"
    assert edited[case]["key"] != cold[case]["key"] and edited[case]["ptx"] != cold[case]["ptx"]


def _copy_package(dst: Path) -> Path:
    """kaiodsl laid out as a wheel installs it: kaiodsl/, kaiodsl/ops, kaiodsl/ptx_templates."""
    pkg = dst / "site" / "kaiodsl"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "kaiodsl", pkg, ignore=ignore)
    shutil.copytree(ROOT / "ops", pkg / "ops", ignore=ignore)
    shutil.copytree(ROOT / "ptx_templates", pkg / "ptx_templates", ignore=ignore)
    return pkg


FP = """
import json, kaiodsl
from kaiodsl.fingerprint import compiler_fingerprint
print(json.dumps({"file": kaiodsl.__file__, "fp": compiler_fingerprint()}))
"""


def _fingerprint(tmp: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tmp / "site"), PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run([sys.executable, "-c", FP], env=env, cwd=tmp, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("edited, changes", [
    ("ops/__init__.py", True),                   # kaiodsl.ops: the GEMMs are compiled from it
    ("ptx_templates/instructions.txt", True),    # package data the codegen reads
    ("codegen/ptx.py", True),
    ("sim/__init__.py", False),                  # the simulator never changes the PTX
])
def test_compiler_fingerprint_covers_ops_and_package_data(tmp_path, edited, changes):
    pkg = _copy_package(tmp_path)
    before = _fingerprint(tmp_path)
    assert Path(before["file"]).resolve().is_relative_to(pkg.resolve()), before
    f = pkg / edited
    f.write_text(f.read_text() + "\n# edited\n")
    after = _fingerprint(tmp_path)
    assert (after["fp"] != before["fp"]) == changes


def test_unstable_dependency_disables_the_disk_cache(tmp_path, monkeypatch):
    """A value with no stable fingerprint (C-level state, an address in its repr) is never keyed."""
    import kaiodsl
    from kaiodsl import Ptr, f32
    from kaiodsl.compiler import cache_key, compile

    monkeypatch.setenv("KAIODSL_CACHE_DIR", str(tmp_path))
    handle = textwrap  # a module is fine ...
    opaque = iter([1.0])  # ... an iterator's position lives in C

    @kaiodsl.kernel
    def k(x: Ptr[f32]):
        i = kaiodsl.thread_idx.x
        if handle is not None and opaque is not None:
            x[i] = 1.0

    @kaiodsl.kernel
    def k2(x: Ptr[f32]):
        i = kaiodsl.thread_idx.x
        if opaque is not None:
            x[i] = 2.0

    assert cache_key(k, {}, "sm_80", k.options) is None
    one, two = compile(k, {}, "sm_80"), compile(k2, {}, "sm_80")
    # not on disk, but each still has its own identity: the runtime keys loaded modules by it
    assert one.key.startswith("uncached-") and two.key.startswith("uncached-") and one.key != two.key
    assert list(tmp_path.rglob("*.kaio")) == []
