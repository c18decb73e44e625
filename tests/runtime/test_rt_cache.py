"""DiskCache: round trip, corrupt/truncated and malformed entries, other processes, concurrency, env,
and the compiler's use of it (malformed payloads evicted and rebuilt; cubins kept for warm processes)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from kaiodsl.compiled import CompiledKernel, ParamInfo
from kaiodsl.runtime.cache import DiskCache, default_cache
from kaiodsl.types import Ptr, f32, i32

KEY = "abc123def456"


def payload(key=KEY):
    ck = CompiledKernel(name="k", ptx=".version 7.0\n.visible .entry k()\n{\n}\n", arch="sm_80", key=key,
                        params=(ParamInfo("x", Ptr[f32], True), ParamInfo("n", i32)))
    return ck.to_payload()


def test_round_trip_with_cubin(tmp_path):
    c = DiskCache(tmp_path)
    assert c.load(KEY) is None
    assert c.store(KEY, payload(), cubin=b"\x7fELF\x00binary")
    got = c.load(KEY)
    assert got["cubin"] == b"\x7fELF\x00binary"
    ck = CompiledKernel.from_payload(got)
    assert ck.params[0].writable and ck.key == KEY and ck.ptx == payload()["ptx"]


def test_without_cubin(tmp_path):
    c = DiskCache(tmp_path)
    c.store(KEY, payload())
    assert "cubin" not in c.load(KEY)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_corrupt_entry_is_a_miss_and_removed(tmp_path, damage):
    c = DiskCache(tmp_path)
    c.store(KEY, payload(), cubin=b"x" * 100)
    p = c.path(KEY)
    data = p.read_bytes()
    data = {"truncate": data[: len(data) // 2], "flip": data[:-5] + b"X" + data[-4:],
            "garbage": b"not a cache entry", "empty": b""}[damage]
    p.write_bytes(data)
    assert c.load(KEY) is None
    assert not p.exists()
    c.store(KEY, payload())  # rebuilt
    assert c.load(KEY)["name"] == "k"


def test_odd_keys_become_file_names(tmp_path):
    c = DiskCache(tmp_path)
    c.store("a/b:c d", payload("a/b:c d"))
    assert c.load("a/b:c d")["key"] == "a/b:c d"
    assert c.path("a/b:c d").parent.parent == tmp_path


def _run(code, env):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=120)


def test_other_process_finds_entry(tmp_path):
    env = dict(os.environ, KAIODSL_CACHE_DIR=str(tmp_path))
    r = _run(f"""
        from kaiodsl.runtime.cache import default_cache
        default_cache().store({KEY!r}, {payload()!r}, cubin=b"CUBIN")
        """, env)
    assert r.returncode == 0, r.stderr
    got = DiskCache(tmp_path).load(KEY)
    assert got["cubin"] == b"CUBIN"
    r = _run(f"""
        from kaiodsl.runtime.cache import default_cache
        print(default_cache().load({KEY!r})["name"])
        """, env)
    assert r.stdout.strip() == "k", r.stderr


def test_concurrent_writers_and_readers(tmp_path):
    env = dict(os.environ, KAIODSL_CACHE_DIR=str(tmp_path))
    code = f"""
        import sys
        from kaiodsl.runtime.cache import default_cache
        c = default_cache()
        p = {payload()!r}
        for i in range(50):
            c.store({KEY!r}, p, cubin=bytes([int(sys.argv[1])]) * 4096)
            got = c.load({KEY!r})
            assert got is not None and got["name"] == "k" and len(got["cubin"]) == 4096, got
            assert len(set(got["cubin"])) == 1  # never a mix of two writers
        """
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(i)], env=env,
                              stderr=subprocess.PIPE, text=True) for i in range(6)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert DiskCache(tmp_path).load(KEY) is not None
    leftovers = [f for f in tmp_path.rglob("*") if f.is_file() and f.suffix == ".tmp"]
    assert leftovers == []


def test_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KAIODSL_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.delenv("KAIODSL_CACHE", raising=False)
    assert default_cache().root == tmp_path / "c"
    monkeypatch.setenv("KAIODSL_CACHE", "0")
    assert default_cache() is None
    monkeypatch.delenv("KAIODSL_CACHE_DIR")
    monkeypatch.setenv("KAIODSL_CACHE", "1")
    assert str(default_cache().root).endswith(os.path.join(".cache", "kaiodsl"))


def test_unwritable_dir_is_not_an_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    c = DiskCache(f / "sub")  # a file where a folder should be
    assert c.store(KEY, payload()) is False
    assert c.load(KEY) is None


# -- the compiler's side: payloads that pass the checksum but cannot be used -------------
KERNEL_SRC = """
import kaiodsl
from kaiodsl import Ptr, f32, i32

@kaiodsl.kernel
def scale(x: Ptr[f32], n: i32):
    i = kaiodsl.block_idx.x * kaiodsl.block_dim.x + kaiodsl.thread_idx.x
    if i < n:
        x[i] = x[i] * 3.0
"""


@pytest.fixture
def scale_kernel(tmp_path, monkeypatch):
    import importlib.util

    from kaiodsl import compiler

    f = tmp_path / "scale_mod.py"
    f.write_text(KERNEL_SRC)
    spec = importlib.util.spec_from_file_location("scale_mod", f)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setenv("KAIODSL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("KAIODSL_CACHE", raising=False)
    compiler.MEMORY.clear()
    yield mod.scale
    compiler.MEMORY.clear()


def _plant(good: dict, damage: str) -> dict:
    bad = json.loads(json.dumps(good))
    if damage == "missing_ptx":
        del bad["ptx"]
    elif damage == "params_not_list":
        bad["params"] = "x"
    elif damage == "param_not_object":
        bad["params"] = [5]
    elif damage == "unknown_dtype":
        bad["params"][0]["dtype"] = "f99"
    elif damage == "bad_space":
        bad["params"][0]["space"] = "texture"
    elif damage == "bad_block":
        bad["required_block"] = [0, 1]
    elif damage == "empty_ptx":
        bad["ptx"] = ""
    elif damage == "shared_is_text":
        bad["static_shared_bytes"] = "0"
    elif damage == "link_without_cubin":
        bad["link"] = {"registers": 8, "spill_stores": 0, "spill_loads": 0, "stack_bytes": 0,
                       "shared_bytes": 0, "local_bytes": 0, "info_log": ""}
    elif damage == "not_an_object_inside":
        bad["link"] = [1, 2]
    return bad


@pytest.mark.parametrize("damage", ["missing_ptx", "params_not_list", "param_not_object", "unknown_dtype",
                                    "bad_space", "bad_block", "empty_ptx", "shared_is_text", "link_without_cubin",
                                    "not_an_object_inside"])
def test_malformed_payload_is_evicted_and_rebuilt(scale_kernel, damage):
    from kaiodsl import compiler

    good = compiler.compile(scale_kernel, {}, "sm_80")
    disk = default_cache()
    payload = disk.load(good.key)
    assert payload is not None and CompiledKernel.from_payload(payload).ptx == good.ptx
    assert disk.store(good.key, _plant(payload, damage))  # a valid checksum over a broken payload
    compiler.MEMORY.clear()  # a new process, as far as the caches go
    again = compiler.compile(scale_kernel, {}, "sm_80")
    assert again.ptx == good.ptx and again.params == good.params
    assert CompiledKernel.from_payload(disk.load(good.key)).ptx == good.ptx  # the entry was rebuilt


WARM = """
import json, sys
import kaiodsl.toolchain.nvjitlink as nv
calls = []
real = nv.link_ptx
def counting(*a, **k):
    calls.append(a[1])
    return real(*a, **k)
nv.link_ptx = counting
sys.path.insert(0, sys.argv[1])
import scale_mod
ck = scale_mod.scale.compile(arch="sm_90a")
regs, cubin = ck.registers, ck.cubin
print(json.dumps({"links": len(calls), "registers": regs, "cubin": cubin.hex(), "size": len(cubin)}))
"""


def test_warm_process_does_not_assemble_again(tmp_path):
    (tmp_path / "scale_mod.py").write_text(KERNEL_SRC)
    env = dict(os.environ, KAIODSL_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("KAIODSL_CACHE", None)
    runs = []
    for _ in range(2):
        r = _run(WARM.replace("sys.argv[1]", repr(str(tmp_path))), env)
        assert r.returncode == 0, r.stderr
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    cold, warm = runs
    assert cold["links"] == 1 and cold["size"] > 0
    assert warm["links"] == 0, "a warm process ran nvJitLink again"
    assert (warm["registers"], warm["size"], warm["cubin"]) == (cold["registers"], cold["size"], cold["cubin"])
