"""Where a kernel's source comes from: files, notebook cells (linecache), and code that has none."""

import linecache
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from kaiodsl import compiler
from kaiodsl.errors import CompileError

CELL_FUNC = """
import kaiodsl
from kaiodsl import Ptr, f32, i32

@kaiodsl.func
def twice(v):
    return v * 2.0
"""

CELL_KERNEL = """
@kaiodsl.kernel
def cell_kernel(x: Ptr[f32], n: i32):
    i = kaiodsl.block_idx.x * kaiodsl.block_dim.x + kaiodsl.thread_idx.x
    if i < n:
        x[i] = twice(x[i]) + 1.0
"""


def _run_cell(ns: dict, source: str, filename: str) -> None:
    """What IPython does with a cell: register its text with linecache, compile under that name, exec."""
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    exec(compile(source, filename, "exec"), ns)


@pytest.fixture(params=["ipython", "ipykernel"])
def cells(request, monkeypatch, tmp_path):
    """Cell file names as IPython gives them in a terminal and as ipykernel (Jupyter) does: the
    latter look like paths but exist only in linecache."""
    monkeypatch.setenv("KAIODSL_CACHE_DIR", str(tmp_path))
    names = (["<ipython-input-1-abc123>", "<ipython-input-2-def456>"] if request.param == "ipython" else
             [f"/tmp/ipykernel_{os.getpid()}/{n}.py" for n in (3021475839, 1184092211)])
    yield names
    for n in names:
        linecache.cache.pop(n, None)
    compiler.MEMORY.clear()


def test_notebook_cells_compile_and_run(cells, backend, rng):
    ns = {"__name__": "__main__"}
    _run_cell(ns, CELL_FUNC, cells[0])
    _run_cell(ns, CELL_KERNEL, cells[1])
    k = ns["cell_kernel"]
    assert ".entry cell_kernel" in k.ptx(arch="sm_80")
    x = rng.standard_normal(300).astype(np.float32)  # a numpy array: copied in and back out
    want = x.astype(np.float64) * 2.0 + 1.0
    k[3, 128](x, 300)
    np.testing.assert_allclose(x, want, rtol=1e-6)


def test_notebook_cell_errors_point_into_the_cell(cells):
    ns = {"__name__": "__main__"}
    _run_cell(ns, CELL_FUNC, cells[0])
    _run_cell(ns, CELL_KERNEL.replace("twice(x[i]) + 1.0", "twice(x[i]) + undefined_name"), cells[1])
    with pytest.raises(CompileError) as e:
        ns["cell_kernel"].ptx(arch="sm_80")
    assert f'File "{cells[1]}", line 6' in str(e.value) and "undefined_name" in str(e.value)


def test_edited_notebook_cell_is_recompiled(cells):
    ns = {"__name__": "__main__"}
    _run_cell(ns, CELL_FUNC, cells[0])
    _run_cell(ns, CELL_KERNEL, cells[1])
    first = ns["cell_kernel"].compile(arch="sm_80")
    compiler.MEMORY.clear()
    _run_cell(ns, CELL_FUNC.replace("2.0", "4.0"), cells[0])  # the cell re-run with an edit
    _run_cell(ns, CELL_KERNEL, cells[1])
    second = ns["cell_kernel"].compile(arch="sm_80")
    assert first.key != second.key and first.ptx != second.ptx


def test_exec_without_source_is_a_compile_error(monkeypatch, tmp_path):
    monkeypatch.setenv("KAIODSL_CACHE_DIR", str(tmp_path))
    ns = {}
    exec(compile(CELL_FUNC + CELL_KERNEL, "<string>", "exec"), ns)
    with pytest.raises(CompileError, match=r"must live in a \.py file or a notebook cell") as e:
        ns["cell_kernel"].ptx(arch="sm_80")
    assert "python file.py" in str(e.value) and "<string>" in str(e.value)


@pytest.mark.parametrize("how", ["-c", "stdin"])
def test_python_c_and_stdin_give_the_compile_error(how, tmp_path):
    code = "import kaiodsl\nfrom kaiodsl import Ptr, f32, i32\n" + CELL_KERNEL.replace("twice(x[i])", "x[i]") + \
        "cell_kernel.ptx(arch='sm_80')\n"
    env = dict(os.environ, KAIODSL_CACHE_DIR=str(tmp_path))
    args = [sys.executable, "-c", code] if how == "-c" else [sys.executable, "-"]
    r = subprocess.run(args, input=None if how == "-c" else code, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("kaiodsl.errors.CompileError: cannot read the source of cell_kernel"), r.stderr
    assert "OSError" not in r.stderr


def test_a_file_kernel_has_its_file_name(tmp_path, monkeypatch):
    monkeypatch.setenv("KAIODSL_CACHE_DIR", str(tmp_path / "c"))
    f = tmp_path / "mod_in_file.py"
    f.write_text(textwrap.dedent(CELL_FUNC + CELL_KERNEL))
    import importlib.util

    spec = importlib.util.spec_from_file_location("mod_in_file", f)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    assert "mod_in_file.py" in m.cell_kernel.ptx(arch="sm_80").splitlines()[1]


IPYTHON = """
from IPython.core.interactiveshell import InteractiveShell
sh = InteractiveShell.instance()
for cell in {cells!r}:
    sh.run_cell(cell).raise_error()
sh.run_cell("print('entries', cell_kernel.ptx(arch='sm_80').count('.entry cell_kernel'))").raise_error()
sh.run_cell("import numpy as np; x = np.arange(300, dtype=np.float32); cell_kernel[3, 128](x, 300); "
            "print('ok', bool((x == np.arange(300) * 2.0 + 1.0).all()))").raise_error()
"""


def test_real_ipython_shell(tmp_path):
    pytest.importorskip("IPython")
    env = dict(os.environ, KAIODSL_CACHE_DIR=str(tmp_path), KAIODSL_BACKEND="sim", IPYTHONDIR=str(tmp_path / "ipy"))
    r = subprocess.run([sys.executable, "-c", IPYTHON.format(cells=[CELL_FUNC, CELL_KERNEL])], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "entries 1" in r.stdout and "ok True" in r.stdout, r.stdout + r.stderr
