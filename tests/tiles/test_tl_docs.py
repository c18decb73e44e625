"""docs/tiles.md runs: its flash-attention sketch (the ```python block that starts with
``# flash_sketch.py``) is written to a module, imported and checked in the simulator against float64."""

import importlib.util
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "tiles.md"


@pytest.fixture(scope="module")
def sketch(tmp_path_factory):
    blocks = re.findall(r"```python\n(# flash_sketch\.py\n.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1, "docs/tiles.md must hold exactly one flash_sketch.py block"
    path = tmp_path_factory.mktemp("doc") / "flash_sketch.py"
    path.write_text(blocks[0])
    spec = importlib.util.spec_from_file_location("flash_sketch", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("sk,shift", [(40, -4), (16, 100), (33, 20), (7, 0)])
def test_flash_sketch_matches_float64(backend, sketch, sk, shift):
    """shift -4: rows 0..3 see no key (o = 0, lse = -inf, never NaN); 16: one block; 33/7: ragged keys."""
    sketch.check(sk=sk, shift=shift)


def test_flash_sketch_assembles(sketch):
    c = sketch.flash_fwd.compile(arch="sm_80")
    assert c.spills == 0
    ptx = c.ptx
    assert "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16" in ptx and "ex2.approx" in ptx
