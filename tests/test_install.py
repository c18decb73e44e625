"""What a user gets from a wheel: it holds every package file under kaiodsl/ (no top-level ``ops``), and
installed (not editable) it imports, simulates a kernel and runs the demo from another directory."""

import importlib.metadata
import importlib.util
import os
import shutil
import site
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Checkout folder -> where it installs (setup.py's package_dir).
INSTALLS_AS = {"kaiodsl": "kaiodsl", "ops": "kaiodsl/ops", "ptx_templates": "kaiodsl/ptx_templates",
               "examples": "kaiodsl/examples"}
NOT_SOURCE = ("__pycache__", "*.pyc", "*.egg-info", "build", "dist", ".git", ".venv", ".pytest_cache")


def _run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


def _isolation() -> list:
    """Build with this environment's setuptools where it can make wheels (offline machines: the GPU hosts),
    else in pip's isolated build environment (which downloads setuptools)."""
    try:
        major, minor = (int(x) for x in importlib.metadata.version("setuptools").split(".")[:2])
    except importlib.metadata.PackageNotFoundError:
        return []
    bdist_wheel = (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None
    return ["--no-build-isolation"] if major >= 64 and bdist_wheel else []


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built by pip from a copy of the working tree (so no build/ folder of the checkout leaks in)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", *_isolation(), "-w", str(tmp / "dist"), str(src)])
    (whl,) = (tmp / "dist").glob("kaiodsl-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel installed with pip into its own folder (the dependencies come from this environment)."""
    site = tmp_path_factory.mktemp("site")
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)])
    return site


def test_wheel_has_only_kaiodsl_at_top_level(wheel):
    with zipfile.ZipFile(wheel) as z:
        top = {name.split("/")[0] for name in z.namelist()}
    assert {t for t in top if not t.endswith(".dist-info")} == {"kaiodsl"}, sorted(top)


@pytest.mark.parametrize("folder", sorted(INSTALLS_AS))
def test_wheel_holds_every_package_file(wheel, folder):
    """Every source and data file (.py, grammar, instruction forms, LLVM IR) is in the wheel where it installs."""
    base = ROOT / folder
    want = {f"{INSTALLS_AS[folder]}/{p.relative_to(base).as_posix()}" for p in base.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    with zipfile.ZipFile(wheel) as z:
        missing = sorted(want - set(z.namelist()))
    assert want and not missing, f"not in the wheel (add a package-data glob in pyproject.toml): {missing}"


SAXPY = '''
import sys
from pathlib import Path

import numpy as np

import kaiodsl
import kaiodsl.ops
import kaiodsl.sim
from kaiodsl import Ptr, f32, i32

assert kaiodsl.get_backend_name() == "sim", kaiodsl.get_backend_name()


@kaiodsl.kernel
def saxpy(a: f32, x: Ptr[f32], y: Ptr[f32], n: i32):
    i = kaiodsl.block_idx.x * kaiodsl.block_dim.x + kaiodsl.thread_idx.x
    if i < n:
        y[i] = a * x[i] + y[i]


rng = np.random.default_rng(7)
n = 1000
x, y = rng.standard_normal(n, np.float32), rng.standard_normal(n, np.float32)
want = np.float32(1.5) * x + y
saxpy[(n + 127) // 128, 128](1.5, x, y, n)
assert np.array_equal(y, want), "saxpy does not match numpy"
assert saxpy.compile(arch="sm_90a").registers > 0  # nvJitLink from the installed copy too
target = Path(sys.argv[1]).resolve()
for name, mod in sorted(sys.modules.items()):  # everything ran from the installed copy, not the checkout
    if name.split(".")[0] == "kaiodsl" and getattr(mod, "__file__", None):
        assert Path(mod.__file__).resolve().is_relative_to(target), (name, mod.__file__)
print("saxpy ok")
'''


@pytest.fixture
def user_env(installed, tmp_path):
    """A fresh directory outside the checkout, and an environment with the installed copy and this
    environment's dependencies on the path but without its .pth files (python -S): an editable
    install's finder would otherwise fill in any module missing from the wheel from the checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAIODSL_", "PYTHON"))}
    env.update(PYTHONPATH=os.pathsep.join([str(installed), *site.getsitepackages()]), KAIODSL_BACKEND="sim",
               KAIODSL_CACHE_DIR=str(tmp_path / "cache"))
    work = tmp_path / "work"
    work.mkdir()
    return work, env


def test_installed_kaiodsl_simulates_a_kernel_from_a_file(installed, user_env):
    work, env = user_env
    (work / "user_saxpy.py").write_text(textwrap.dedent(SAXPY))
    assert "saxpy ok" in _run([sys.executable, "-S", "user_saxpy.py", str(installed)], cwd=work, env=env)


def test_installed_demo_runs_from_another_directory(installed, user_env):
    """Three examples here (saxpy, tc_matmul for the tile library, and a GEMM tutorial level, which
    imports its sibling gemm_common.py); .ci/run runs the whole demo."""
    work, env = user_env
    shipped = {p.relative_to(installed / "kaiodsl" / "examples").as_posix()
               for p in (installed / "kaiodsl" / "examples").rglob("*.py")}
    assert {p.relative_to(ROOT / "examples").as_posix() for p in (ROOT / "examples").rglob("*.py")} <= shipped
    code = ("import sys; from kaiodsl.demo import main; "
            "sys.exit(main(only={'saxpy', 'tc_matmul', '03_mma_ldmatrix'}))")
    out = _run([sys.executable, "-S", "-c", code], cwd=work, env=env)
    assert "demo: 3 passed, 0 failed" in out, out
    assert "== gemm/03_mma_ldmatrix.py" in out, out
    assert ".entry saxpy" in out  # the PTX is shown


def test_installed_tuning_table_is_package_data(installed, user_env):
    """The shipped tuning tables come with the wheel and are found from the installed copy."""
    work, env = user_env
    code = ("from kaiodsl.tuning import table; p = table.table_path('NVIDIA H200'); "
            "print(p.resolve()); print(len(table.read_table(p)['entries']))")
    out = _run([sys.executable, "-S", "-c", code], cwd=work, env=env).split()
    assert Path(out[0]).is_relative_to(installed.resolve()), out
