"""kaiodsl.compiler: the one compile route, its context, IR numbering and per-pass dumps."""

import os
import pathlib
import struct
import subprocess
import sys

import pytest

import kaiodsl
from kaiodsl import Ptr, f32, i32
from kaiodsl import compiler
from kaiodsl.errors import KaioError
from kaiodsl.passes import PIPELINE


@pytest.fixture(autouse=True)
def fresh(monkeypatch, tmp_path):
    monkeypatch.setenv("KAIODSL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("KAIODSL_DUMP", raising=False)
    monkeypatch.delenv("KAIODSL_DUMP_DIR", raising=False)
    compiler.MEMORY.clear()


@kaiodsl.func
def warps_of_block():
    return kaiodsl.block_dim.x // 32


@kaiodsl.func
def lanes_total(x: Ptr[f32], i: i32):
    n = 0
    for _ in kaiodsl.static_range(warps_of_block()):  # a compile-time bound: block_dim must fold here
        n += 32
    x[i] = f32(n + kaiodsl.block_dim.y)


@pytest.mark.parametrize("block", [64, 256])
def test_block_dim_folds_inside_inlined_funcs(block):
    @kaiodsl.kernel(block_size=(block, 2))
    def k(x: Ptr[f32]):
        lanes_total(x, kaiodsl.thread_idx.x)

    ptx = k.ptx(arch="sm_80")
    assert "%ntid" not in ptx
    want = "0f%08x" % struct.unpack(">I", struct.pack(">f", block + 2))[0]  # n + block_dim.y, folded
    assert f"st.global.f32 [%rd3], {want};" in ptx.lower()


def test_block_dim_stays_a_register_without_block_size():
    @kaiodsl.kernel
    def k(x: Ptr[f32]):
        i = kaiodsl.thread_idx.x
        x[i] = f32(kaiodsl.block_dim.x + warps_of_block())

    assert "%ntid.x" in k.ptx(arch="sm_80")


@kaiodsl.kernel
def kernel_a(x: Ptr[f32], n: i32):
    i = kaiodsl.thread_idx.x
    if i < n:
        x[i] = kaiodsl.sqrt(x[i]) + 1.0


@kaiodsl.kernel
def kernel_b(x: Ptr[i32], y: Ptr[i32]):
    i = kaiodsl.thread_idx.x
    y[i] = x[i] * 3 + 1


PRINT_B = """
import sys
sys.path.insert(0, {here!r})
import test_compile_route as t
print(t.kernel_b.ir(arch="sm_80", optimized=False) + "=====" + t.kernel_b.ir(arch="sm_80"), end="")
"""


def test_ir_numbering_does_not_depend_on_what_was_compiled_before(monkeypatch):
    monkeypatch.setenv("KAIODSL_CACHE", "0")
    kernel_a.compile(arch="sm_80")  # numbers many nodes before kernel_b is built
    here = kernel_b.ir(arch="sm_80", optimized=False) + "=====" + kernel_b.ir(arch="sm_80")
    env = dict(os.environ, KAIODSL_CACHE="0")
    r = subprocess.run([sys.executable, "-c", PRINT_B.format(here=str(pathlib.Path(__file__).parent))],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == here
    assert here.startswith("kernel kernel_b(%1: Ptr[i32] x, %2: Ptr[i32] y)")


def test_compiled_kernels_live_in_the_memory_cache_not_the_kernel():
    c = kernel_b.compile(arch="sm_80")
    assert kernel_b.compile(arch="sm_80") is c
    assert compiler.MEMORY.get(kernel_b, (compiler.const_repr({}), "sm_80", False)) is c
    assert not any(isinstance(v, dict) and c in v.values() for v in vars(kernel_b).values())


def _stderr_stages(err: str) -> list:
    return [l.split(" dump: ", 1)[1] for l in err.splitlines() if l.startswith("// ===== kaiodsl dump:")]


def test_dump_env_prints_every_stage(monkeypatch, capfd):
    monkeypatch.setenv("KAIODSL_DUMP", "ir,passes,ptx")
    c = kernel_a.compile(arch="sm_80")
    err = capfd.readouterr().err
    stages = _stderr_stages(err)
    want = ["kernel_a (sm_80) ir"] + [f"kernel_a (sm_80) after pass {n}" for n, _ in PIPELINE] + ["kernel_a (sm_80) ptx ====="]
    assert [s.rstrip(" =") for s in stages] == [w.rstrip(" =") for w in want]
    assert err.endswith(c.ptx)
    kernel_a.compile(arch="sm_80")  # a dump compiles again: the dump must not vanish behind a cache hit
    assert len(_stderr_stages(capfd.readouterr().err)) == len(want)


def test_dump_dir_writes_one_file_per_stage(monkeypatch, tmp_path):
    monkeypatch.setenv("KAIODSL_DUMP", "passes,ptx")
    monkeypatch.setenv("KAIODSL_DUMP_DIR", str(tmp_path / "dump"))
    c = kernel_a.compile(arch="sm_80")
    (d,) = (tmp_path / "dump").iterdir()
    names = sorted(p.name for p in d.iterdir())
    assert names == sorted([f"{i:02d}-{n}.txt" for i, (n, _) in enumerate(PIPELINE, 1)] + ["ptx.ptx"])
    assert (d / "ptx.ptx").read_text() == c.ptx
    assert (d / f"{len(PIPELINE):02d}-{PIPELINE[-1][0]}.txt").read_text() == c.ir_text


def test_dump_rejects_unknown_stage(monkeypatch):
    monkeypatch.setenv("KAIODSL_DUMP", "ir,sass")
    with pytest.raises(KaioError, match="unknown stage.*sass.*ir, passes, ptx"):
        kernel_a.compile(arch="sm_80")
