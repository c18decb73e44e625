"""``python -m kaiodsl demo`` finds its examples (every module with ``run``, subfolders too) rather than
reading a fixed list: it compiles each kernel with the example's DEMO_CONSTS, skips examples made for
other targets, and reports a failing example without stopping."""

from pathlib import Path

import pytest

from kaiodsl import demo

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

EXAMPLE = '''
import kaiodsl
from kaiodsl import Const, Ptr, f32, i32
{header}


@kaiodsl.kernel(block_size="BLOCK")
def {name}(x: Ptr[f32], n: i32, BLOCK: Const[int]):
    i = kaiodsl.block_idx.x * BLOCK + kaiodsl.thread_idx.x
    if i < n:
        x[i] = x[i] * {factor}


DEMO_CONSTS = {{"{name}": {{"BLOCK": 64}}}}


def run(quick=False):
    import numpy as np

    x = np.random.default_rng(0).standard_normal(100).astype(np.float32)
    want = x * np.float32({expect})
    {name}[2, 64](x, 100, BLOCK=64)
    assert np.array_equal(x, want), "{name} does not match numpy"
    return "{name} checked"
'''


def _example(path: Path, name: str, factor="3.0", expect="3.0", header=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(EXAMPLE.format(name=name, factor=factor, expect=expect, header=header))


@pytest.fixture
def folder(tmp_path):
    _example(tmp_path / "top.py", "top")
    _example(tmp_path / "broken.py", "broken", expect="2.0")  # its check fails
    _example(tmp_path / "other_arch.py", "other_arch", header='DEMO_ARCHS = ("sm_0",)')
    # A level in a subfolder, importing a helper module (no run: not an example) beside it.
    (tmp_path / "gemm").mkdir()
    (tmp_path / "gemm" / "gemm_helpers.py").write_text("FACTOR = 5.0\n")
    _example(tmp_path / "gemm" / "level1.py", "level1", factor="FACTOR", expect="5.0",
             header="from gemm_helpers import FACTOR")
    (tmp_path / "_private.py").write_text("raise RuntimeError('a private module is not an example')\n")
    return tmp_path


def test_demo_discovers_examples(backend, folder, capsys):
    assert demo.main(folder=folder) == 1
    out = capsys.readouterr().out
    shown = [line[3:] for line in out.splitlines() if line.startswith("== ")]
    assert shown == ["broken.py", "other_arch.py", "top.py", str(Path("gemm", "level1.py"))], out
    assert "top checked" in out and "level1 checked" in out
    assert "FAILED: AssertionError: broken does not match numpy" in out
    assert "skipped: runs on sm_0" in out
    assert "top on sm_" in out and "registers" in out  # compiled with its DEMO_CONSTS, stats shown
    assert out.rstrip().endswith("demo: 2 passed, 1 failed, 1 skipped"), out


@pytest.mark.parametrize("only, rc, last", [({"top"}, 0, "demo: 1 passed, 0 failed"),
                                            ({"level1", "broken"}, 1, "demo: 1 passed, 1 failed"),
                                            ({"nope"}, 1, "named nope")])
def test_demo_runs_the_examples_asked_for(backend, folder, capsys, only, rc, last):
    assert demo.main(folder=folder, only=only) == rc
    assert capsys.readouterr().out.rstrip().endswith(last)


def test_demo_runs_every_shipped_example(backend, capsys):
    """The installed package kaiodsl.examples is the checkout's examples/ folder, and every example passes."""
    assert demo.main() == 0
    out = capsys.readouterr().out
    names = {p.relative_to(EXAMPLES).as_posix() for p in demo.example_files(EXAMPLES)
             if "\ndef run(" in p.read_text()}
    assert names and all(f"== {n}\n" in out for n in names), out
    assert ".entry saxpy" in out  # the one PTX the demo prints


def test_demo_skips_an_example_that_says_why(backend, tmp_path, capsys):
    """DEMO_SKIP (a reason) skips an example before it compiles or runs, whatever the arch."""
    _example(tmp_path / "later.py", "later", expect="2.0", header='DEMO_SKIP = "its op is not written yet"')
    assert demo.main(folder=tmp_path) == 0
    out = capsys.readouterr().out
    assert "   skipped: its op is not written yet" in out and "registers" not in out, out
    assert out.rstrip().endswith("demo: 0 passed, 0 failed, 1 skipped"), out


def test_example_files_skips_private_modules(folder):
    rel = [p.relative_to(folder).as_posix() for p in demo.example_files(folder)]
    assert rel == ["broken.py", "other_arch.py", "top.py", "gemm/gemm_helpers.py", "gemm/level1.py"]
