"""``python -m kaiodsl ptx FILE.py:KERNEL --const NAME=VALUE``: Const values are Python literals."""

import pathlib
import subprocess
import sys

import pytest

from kaiodsl.cli import main, parse_consts
from kaiodsl.errors import KaioError

ROOT = pathlib.Path(__file__).resolve().parents[2]
TC = f"{ROOT / 'examples' / 'tc_matmul.py'}:tc_matmul"


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
