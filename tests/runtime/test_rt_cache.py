"""DiskCache: round trip, corrupt/truncated entries, other processes, concurrency, env."""

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
    ck = CompiledKernel(name="k", ptx=".version 7.0\n// body\n", arch="sm_80", key=key,
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
