"""kaiodsl.tuning in the simulator: the tuner and its command line, table merge and lookup by shape
class, matmul's config="auto", bad table entries, and the no-GPU exit. No timing is asserted."""

import importlib
import json
import re
from dataclasses import dataclass

import numpy as np
import pytest

import kaiodsl.ops as ops
from kaiodsl import cli, tuning
from kaiodsl.errors import ArgumentError, CompileError
from kaiodsl.ops import matmul_tune
from kaiodsl.ops.matmul import GemmConfig
from kaiodsl.runtime import backend as rt_backend
from kaiodsl.tuning import registry, table
from kaiodsl.tuning.tuner import Settings, Tuner

TINY = (17, 64, 64)          # past the decode kernel (M <= 16), which is chosen before any table


@pytest.fixture(autouse=True)
def fresh(monkeypatch, tmp_path):
    """Each test: the simulator, no user table folder, no cached tables or choices."""
    monkeypatch.delenv(table.ENV_DIR, raising=False)
    rt_backend.reset()
    rt_backend.set_backend("sim")
    table.clear_cache()
    yield
    table.clear_cache()
    rt_backend.reset()


class NamedSim:
    """The simulator under a device name: the table of that name applies to it."""

    def __init__(self, device_name):
        self.inner = rt_backend.current()
        self.name, self.arch, self.device_name = self.inner.name, self.inner.arch, device_name

    def launch(self, *args, **kwargs):
        return self.inner.launch(*args, **kwargs)


def _entry(shape, cfg, op="matmul", dtype="f16", layout="nk"):
    return {"op": op, "dtype": dtype, "layout": layout, "shape_class": table.shape_class(shape), "shape": list(shape),
            "config": table.config_to_dict(cfg) if not isinstance(cfg, dict) else cfg, "ms": 1.0,
            "default_ms": 2.0, "speedup": 2.0}


def _write(folder, device, entries):
    path = table.table_path(device, folder)
    table.write_table(path, {"device": device, "created": "now", "tuning_seconds": 1.0, "entries": entries})
    return path


# -- the command line ---------------------------------------------------------------------------------
def test_tune_sim_writes_a_valid_table_with_a_progress_bar(tmp_path, capsys):
    out = tmp_path / "t.json"
    rc = cli.main(["tune", "--backend", "sim", "--shapes", "x".join(map(str, TINY)), "--max-candidates", "3",
                   "--reps", "1", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    bars = re.findall(r"^\[([#.]{20})\] (\d)/3 matmul f16 17x64x64 best \d+\.\d{3} ms$", captured.err, re.M)
    assert [int(n) for _, n in bars] == [1, 2, 3] and bars[-1][0] == "#" * 20, captured.err
    assert "tuning took" in captured.out and "17x64x64" in captured.out
    data = table.read_table(out)
    assert data["device"] == "simulator" and data["tuning_seconds"] > 0
    (e,) = data["entries"]
    assert (e["op"], e["dtype"], e["layout"], e["shape"]) == ("matmul", "f16", "nk", list(TINY))
    assert e["shape_class"] == "M17-64 N64 K64"
    chosen = table.config_from_dict(e["config"], GemmConfig)
    assert chosen in matmul_tune.candidates(TINY, "f16", "nk", "sm_90a")[:3]
    assert e["speedup"] == pytest.approx(e["default_ms"] / e["ms"], rel=1e-2)


def test_tune_without_a_gpu_exits_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(rt_backend, "gpu_available", lambda: False)
    rc = cli.main(["tune", "--shapes", "16x64x64", "--out", str(tmp_path / "t.json")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "NoDeviceError" in err and "CUDA GPU" in err and "--backend sim" in err
    assert not (tmp_path / "t.json").exists()


def test_tune_rejects_bad_shapes(capsys):
    assert cli.main(["tune", "--backend", "sim", "--shapes", "16x64"]) == 1
    assert "MxNxK" in capsys.readouterr().err


# -- the tuner on a fake op: wrong results and failures are skipped with the reason ---------------------
@dataclass(frozen=True)
class FakeConfig:
    k: int = 0


def _fake_run(inputs, cfg):
    if cfg.k == 2:
        return inputs + 1.0                 # computes something else
    if cfg.k == 3:
        raise CompileError("no such tiling")
    return inputs * 1.0


FAKE = tuning.Tunable(name="fake", config_type=FakeConfig, dtypes=("f16",), layouts=("nk",),
                      candidates=lambda shape, dtype, layout, arch: [FakeConfig(k) for k in range(4)],
                      default=lambda shape, dtype, layout: FakeConfig(0),
                      make_inputs=lambda shape, dtype, layout, backend, rng: rng.standard_normal(shape[:2]) + 3.0,
                      run=_fake_run, validate=lambda cfg, dtype, layout: None)


def test_tuner_skips_wrong_and_failing_candidates():
    (r,) = Tuner(FAKE, Settings("sim", reps=1), progress_stream=open("/dev/null", "w")).run([(4, 8, 8)], "f16", "nk")
    assert {t.config.k for t in r.timed} == {0, 1}
    reasons = {t.config.k: t.reason for t in r.skipped}
    assert reasons[2].startswith("wrong result") and "CompileError: no such tiling" in reasons[3]
    e = r.entry()
    assert e["config"]["k"] in (0, 1) and [s["config"] for s in e["skipped"]] == ["FakeConfig(k=2)", "FakeConfig(k=3)"]


def test_registry_names_matmul_and_refuses_unknown():
    assert "matmul" in registry.names()
    with pytest.raises(ArgumentError, match="no tunable op 'nope'"):
        registry.get("nope")


# -- tables: merge, shape classes, lookup -------------------------------------------------------------
def test_merge_keeps_other_entries():
    a, b = GemmConfig(16, 64, 32, 1, 2, 2), GemmConfig(64, 64, 32, 2, 2, 4)
    old = {"device": "G", "created": "x", "tuning_seconds": 5.0,
           "entries": [_entry((1, 64, 64), a), _entry((16, 64, 64), a), _entry((16, 64, 64), a, dtype="bf16")]}
    merged = table.merge(old, [_entry((16, 64, 64), b)], "G", "y", 2.0)
    keys = {(e["dtype"], tuple(e["shape"])): e["config"]["block_m"] for e in merged["entries"]}
    assert keys == {("f16", (1, 64, 64)): 16, ("f16", (16, 64, 64)): 64, ("bf16", (16, 64, 64)): 16}
    assert merged["tuning_seconds"] == 7.0
    with pytest.raises(ArgumentError, match="device 'G', not 'H'"):
        table.merge(old, [], "H", "y", 0.0)


@pytest.mark.parametrize("shape,cls", [((1, 4096, 4096), "M1 N4096 K4096"), ((2, 14336, 4096), "M2-16 N16384 K4096"),
                                       ((65, 4097, 128256), "M65-256 N8192 K131072"),
                                       ((8192, 1, 3), "M>4096 N1 K4")])
def test_shape_class(shape, cls):
    assert table.shape_class(shape) == cls


def test_lookup_exact_then_nearest_in_class(tmp_path, monkeypatch):
    monkeypatch.setenv(table.ENV_DIR, str(tmp_path))
    a, b = GemmConfig(16, 64, 32, 1, 2, 2), GemmConfig(16, 128, 64, 1, 4, 3)
    _write(tmp_path, "Test GPU", [_entry((3, 4096, 4096), a), _entry((16, 4096, 4096), b)])

    def find(shape):
        return tuning.lookup("Test GPU", "matmul", "f16", "nk", shape, GemmConfig)

    assert find((16, 4096, 4096)).config == b and "nearest" not in find((16, 4096, 4096)).source
    assert find((4, 3000, 4000)).config == a                     # unseen: the nearest of its class
    assert find((4, 3000, 4000)).source.startswith("table: Test GPU M2-16 N4096 K4096 (test-gpu.json, nearest")
    assert find((17, 4096, 4096)) is None                        # another M class
    assert tuning.lookup("Test GPU", "matmul", "bf16", "nk", (16, 4096, 4096), GemmConfig) is None
    assert tuning.lookup("Other GPU", "matmul", "f16", "nk", (16, 4096, 4096), GemmConfig) is None
    assert tuning.lookup(None, "matmul", "f16", "nk", (16, 4096, 4096), GemmConfig) is None


def test_shipped_tables_are_valid():
    """Every committed table parses and each config is one its op can run (CI has no GPU to find out)."""
    paths = sorted(table.TABLE_DIR.glob("*.json"))
    assert paths
    for path in paths:
        data = table.read_table(path)
        assert path == table.table_path(data["device"])
        for e in data["entries"]:
            t = registry.get(e["op"])
            t.validate(table.config_from_dict(e["config"], t.config_type), e["dtype"], e["layout"])


# -- config="auto" --------------------------------------------------------------------------------------
def test_matmul_auto_uses_the_device_table(tmp_path, monkeypatch, rng):
    mm = importlib.import_module("kaiodsl.ops.matmul")     # kaiodsl.ops.matmul is the function

    monkeypatch.setenv(table.ENV_DIR, str(tmp_path))
    tuned = GemmConfig(16, 64, 32, 1, 2, 2)
    assert tuned != ops.matmul_config(*TINY, "f16", "nk")        # the heuristic would pick another
    _write(tmp_path, "Test GPU", [_entry(TINY, tuned)])
    rt_backend.set_backend(NamedSim("Test GPU"))
    choice = ops.matmul_choice(*TINY, "f16", "nk")
    assert choice.config == tuned and choice.source == "table: Test GPU M17-64 N64 K64 (test-gpu.json)"
    assert ops.matmul_config(*TINY, "f16", "nk") == tuned       # the old helper shows the same choice
    assert ops.matmul_choice(80, 64, 64, "f16", "nk").source == "heuristic"
    assert ops.matmul_choice(*TINY, "f16", "nk", pipeline="sync").source == "heuristic"
    used = []
    real = mm.gemm_kernel
    monkeypatch.setattr(mm, "gemm_kernel", lambda *a: used.append(a[3]) or real(*a))
    M, N, K = TINY
    a, w = rng.standard_normal((M, K)).astype(np.float16), rng.standard_normal((N, K)).astype(np.float16)
    for config in ("auto", None):
        out = ops.matmul(a, w, b_layout="nk", out_dtype="f32", config=config)
        ref = ops.reference_matmul(a, w, "nk")
        assert np.linalg.norm(out - ref) / np.linalg.norm(ref) < 1e-5
    assert used == [tuned, tuned]


def test_matmul_auto_is_the_heuristic_without_a_table(tmp_path, monkeypatch):
    monkeypatch.setenv(table.ENV_DIR, str(tmp_path))
    _write(tmp_path, "Test GPU", [_entry(TINY, GemmConfig(16, 64, 32, 1, 2, 2))])
    sim = ops.matmul_choice(*TINY, "f16", "nk")                   # the plain simulator: no device name
    assert sim.source == "heuristic" and sim.config == ops.matmul_heuristic(*TINY, "f16", "nk")
    rt_backend.set_backend(NamedSim("Untuned GPU"))
    assert ops.matmul_choice(*TINY, "f16", "nk").source == "heuristic"
    with pytest.raises(ArgumentError, match="config must be a kaiodsl.ops.GemmConfig, 'auto' or None"):
        ops.matmul_choice(*TINY, "f16", "nk", config="fast")


@pytest.mark.parametrize("bad,why", [
    ({"class": "GemmConfig", "block_m": 24}, "not a valid tiling"),
    ({"class": "GemmConfig", "block_mm": 16}, "has no field"),
    ({"class": "Sm90Config", "block_m": 16}, "config class 'Sm90Config' is not 'GemmConfig'"),
    ({"class": "GemmConfig", "stages": 0}, "must be a positive int"),
])
def test_bad_config_in_a_table_names_the_file_and_entry(tmp_path, monkeypatch, bad, why):
    monkeypatch.setenv(table.ENV_DIR, str(tmp_path))
    path = _write(tmp_path, "Test GPU", [_entry((1, 64, 64), GemmConfig(16, 64, 32, 1, 2, 2)), _entry(TINY, bad)])
    rt_backend.set_backend(NamedSim("Test GPU"))
    with pytest.raises(ArgumentError) as info:
        ops.matmul_choice(*TINY, "f16", "nk")
    msg = str(info.value)
    assert str(path) in msg and "entry 1 (matmul f16 nk [17, 64, 64])" in msg and why in msg, msg


def test_broken_table_file_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv(table.ENV_DIR, str(tmp_path))
    path = table.table_path("Test GPU", tmp_path)
    path.write_text(json.dumps({"device": "Test GPU", "entries": [{"op": "matmul"}]}))
    rt_backend.set_backend(NamedSim("Test GPU"))
    with pytest.raises(ArgumentError, match=re.escape(f"tuning table {path}: entry 0 lacks dtype")):
        ops.matmul_choice(*TINY, "f16", "nk")
