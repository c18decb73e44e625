"""``python -m kaiodsl ptx FILE.py:KERNEL``: --const values are Python literals; --stats, --ir, --dump."""

import pathlib
import subprocess
import sys

import pytest

from kaiodsl.cli import main, parse_consts
from kaiodsl.passes import PIPELINE
from kaiodsl.errors import KaioError

ROOT = pathlib.Path(__file__).resolve().parents[2]
TC = f"{ROOT / 'examples' / 'tc_matmul.py'}:tc_matmul"
SAXPY = f"{ROOT / 'examples' / 'saxpy.py'}:saxpy"


@pytest.mark.parametrize("text, value", [
    ("EDGE=False", False), ("EDGE=True", True), ("N=3", 3), ("X=-2.5", -2.5), ("S='a b'", "a b"),
    ("T=(64, 64)", (64, 64)), ("MODE=fast", "fast"), ("E=", ""), ("A=x=y", "x=y")])
def test_parse_consts_reads_python_literals(text, value):
    got = parse_consts([text])
    assert got == {text.split("=")[0]: value} and type(next(iter(got.values()))) is type(value)


@pytest.mark.parametrize("bad", ["EDGE", "=1", "1X=2"])
def test_parse_consts_errors(bad):
    with pytest.raises(KaioError, match="NAME=VALUE"):
        parse_consts([bad])


def _ptx(capsys, *argv):
    assert main(["ptx", TC, "--arch", "sm_80", *argv]) == 0
    return capsys.readouterr().out


def test_const_false_specializes_tc_matmul(capsys):
    default, edge_on = _ptx(capsys), _ptx(capsys, "--const", "EDGE=True")
    edge_off = _ptx(capsys, "--const", "EDGE=False")
    assert ".entry tc_matmul" in edge_off and default == edge_on
    assert edge_off != edge_on  # EDGE=False drops the ragged-edge masking


def test_const_of_the_wrong_type_is_one_line_error(capsys):
    assert main(["ptx", TC, "--const", "EDGE=false"]) == 1
    err = capsys.readouterr().err
    assert "Const parameter 'EDGE' must be bool, got 'false'" in err and "Traceback" not in err


def test_unknown_const_names_the_real_ones(capsys):
    assert main(["ptx", TC, "--const", "EGDE=False"]) == 1
    assert "Const parameters: EDGE" in capsys.readouterr().err


def test_module_entry_point_subprocess():
    r = subprocess.run([sys.executable, "-m", "kaiodsl", "ptx", TC, "--const", "EDGE=False", "--ir"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "tc_matmul" in r.stdout


def _stages(err: str) -> list:
    return [l.split(" dump: ", 1)[1].rstrip(" =") for l in err.splitlines() if l.startswith("// ===== kaiodsl dump:")]


def test_cli_ptx_stats_ir_and_dump(capsys, tmp_path):
    assert main(["ptx", SAXPY, "--arch", "sm_90a", "--stats"]) == 0
    out = capsys.readouterr().out
    assert ".target sm_90a" in out and ".entry saxpy" in out and "registers" in out.splitlines()[-1]
    assert main(["ptx", SAXPY, "--arch", "sm_90a", "--ir"]) == 0
    assert capsys.readouterr().out.startswith("kernel saxpy(%1: f32 a")
    assert main(["ptx", SAXPY, "--arch", "sm_80", "--dump", "passes"]) == 0
    cap = capsys.readouterr()
    assert [s.split(" after pass ")[1] for s in _stages(cap.err)] == [n for n, _ in PIPELINE]
    assert ".entry saxpy" in cap.out
    assert main(["ptx", SAXPY, "--dump", "all", "--dump-dir", str(tmp_path / "d")]) == 0
    files = {p.name for p in (tmp_path / "d").rglob("*") if p.is_file()}
    assert {"00-ir.txt", "ptx.ptx"} <= files
    assert main(["ptx", SAXPY, "--dump", "sass"]) == 1
    assert "unknown stage" in capsys.readouterr().err
