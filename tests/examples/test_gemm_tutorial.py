"""The GEMM tutorial (examples/gemm/): every level's own check (``run``: fresh random f16 data, a
NaN-poisoned output, float64 numpy, relative norm) on each backend, the argument checks before any
launch, level 5's guard, and bench.py's README table."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

import kaiodsl
from kaiodsl import demo
from kaiodsl.runtime import backend as rt_backend

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GEMM = EXAMPLES / "gemm"
LEVELS = ["01_naive", "02_smem_tiling", "03_mma_ldmatrix", "04_cp_async_pipeline"]


def level(stem: str):
    """A level loaded as the demo loads it (by path: the names start with a digit)."""
    return demo.load_example(GEMM / f"{stem}.py", EXAMPLES)


def test_the_ladder_is_complete():
    stems = {p.stem for p in GEMM.glob("[0-9][0-9]_*.py")}
    assert stems == set(LEVELS) | {"05_hopper_ws"}, stems


@pytest.mark.parametrize("stem", LEVELS)
def test_level_matches_numpy(backend, stem):
    """The small ragged shape of ``run(quick=True)`` (M, N not tile multiples, a ragged last k tile)."""
    summary = level(stem).run(quick=True)
    assert "relative error" in summary, summary


@pytest.mark.gpu
@pytest.mark.parametrize("stem", LEVELS)
def test_level_matches_numpy_full_size_on_gpu(stem):
    if not rt_backend.gpu_available():
        pytest.skip("needs a CUDA driver and device")
    rt_backend.set_backend("cuda")
    try:
        assert "relative error" in level(stem).run(quick=False)
    finally:
        rt_backend.reset()


@pytest.mark.parametrize("stem", LEVELS)
def test_level_writes_every_element_of_a_single_tile_problem(backend, stem, rng):
    """M = N = 1 and the smallest K each level takes: everything is edge."""
    mod = level(stem)
    k = 8 if stem >= "03" else 3
    a = rng.standard_normal((1, k)).astype(np.float16)
    b = rng.standard_normal((1, k)).astype(np.float16)
    c = np.full((1, 1), np.nan, np.float32)
    mod.gemm(a, b, out=c)
    want = a.astype(np.float64) @ b.astype(np.float64).T
    assert np.allclose(c, want, rtol=1e-5, atol=1e-6), (c, want)


class _NoLaunch:
    name, arch = "sim", "sm_90a"

    def launch(self, *args, **kwargs):
        raise AssertionError("launched although the arguments are invalid")


def _bad_args():
    f16 = np.zeros((4, 16), np.float16) + 1
    return [
        ("a", "b", lambda: (f16.astype(np.float32), f16, None), "'a' has dtype f32"),
        ("k", "k", lambda: (f16, np.ones((4, 24), np.float16), None), "K=16 and 24 differ"),
        ("rank", "r", lambda: (f16[0], f16, None), "must be a matrix [M, K]"),
        ("out", "o", lambda: (f16, f16, np.full((4, 5), np.nan, np.float32)), "'out' has shape (4, 5)"),
        ("outdt", "d", lambda: (f16, f16, np.full((4, 4), np.nan, np.float16)), "'out' has dtype f16"),
        ("mixed", "m", lambda: (f16, kaiodsl.runtime.to_device(f16), None), "mixes host numpy arrays"),
    ]


@pytest.mark.parametrize("stem", LEVELS)
@pytest.mark.parametrize("case", _bad_args(), ids=lambda c: c[0])
def test_invalid_arguments_raise_before_any_launch(stem, case):
    mod = level(stem)
    _, _, make, message = case
    a, b, out = make()
    rt_backend.set_backend(_NoLaunch())
    try:
        with pytest.raises(kaiodsl.ArgumentError, match=re.escape(message)):
            mod.gemm(a, b, out=out)
    finally:
        rt_backend.reset()


@pytest.mark.parametrize("stem", ["03_mma_ldmatrix", "04_cp_async_pipeline"])
def test_tensor_core_levels_need_k_a_multiple_of_8_and_32_bit_tile_offsets(stem):
    mod = level(stem)
    a = np.ones((8, 12), np.float16)
    big = np.empty((1, mod.TILE_K_LIMIT), np.float16)         # 16 MB: a row of K = 2**23
    rt_backend.set_backend(_NoLaunch())
    try:
        with pytest.raises(kaiodsl.ArgumentError, match="K=12 must be a multiple of 8"):
            mod.gemm(a, a)
        with pytest.raises(kaiodsl.ArgumentError, match=f"K={mod.TILE_K_LIMIT} must be below"):
            mod.gemm(big, big)
    finally:
        rt_backend.reset()


def test_level5_runs_only_where_its_op_exists(backend, monkeypatch):
    mod = level("05_hopper_ws")
    if not mod.available():
        assert mod.DEMO_SKIP and "does not exist" in mod.run(quick=True)
        pytest.skip(f"{mod.MODULE} does not exist yet")
    assert mod.DEMO_SKIP is None
    assert "relative error" in mod.run(quick=True)


def test_bench_rewrites_the_readme_table(tmp_path):
    bench = demo.load_example(GEMM / "bench.py", EXAMPLES)
    readme = tmp_path / "README.md"
    readme.write_text((GEMM / "README.md").read_text())
    measured = EXAMPLES.parent / "benchmarks" / "results" / "gemm_tutorial.json"
    shipped = json.loads(measured.read_text()) if measured.exists() else None
    assert bench.readme_table(shipped) in readme.read_text()   # the shipped table is the committed run's
    data = {"meta": {"device": "NVIDIA H200"}, "size": 4096,
            "results": [{"level": "cuBLAS", "size": 4096, "ms": 0.2, "tflops": 687.2, "fraction": 1.0},
                        {"level": "01_naive", "size": 2048, "ms": 9.0, "tflops": 1.9, "fraction": 0.004},
                        {"level": "04_cp_async_pipeline", "size": 4096, "ms": 0.4, "tflops": 343.6,
                         "fraction": 0.5},
                        {"level": "05_hopper_ws", "size": 4096, "note": "skipped: not written"}]}
    bench.update_readme(data, readme)
    text = readme.read_text()
    assert "| 1.9 (at 2048^3) | 0.4% |" in text and "| 343.6 | 50.0% |" in text
    assert "| skipped: not written | - |" in text and "| cuBLAS | torch.matmul, f16 out | 687.2 | 100% |" in text
    assert text.count("pending (run examples/gemm/bench.py on the GPU)") == 4       # levels 2 and 3
    assert text.startswith("# A GEMM in five levels") and text.rstrip().endswith("gemm_tutorial.json`.")
    bench.update_readme(data, readme)
    assert readme.read_text() == text                                              # idempotent
