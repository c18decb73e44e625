"""Op-library test helpers: inputs in every dtype the ops take (bf16 through kaiodsl.DeviceArray:
numpy has none), readback as numpy values, and relative-norm checks with per-dtype tolerances."""

import numpy as np
import pytest

import kaiodsl
import kaiodsl.runtime
from kaiodsl.runtime import args as rt_args

BACKENDS = ["sim", pytest.param("cuda", marks=pytest.mark.gpu)]

# relative-norm tolerance by output dtype: a few units of its rounding (f32: the f32 accumulation)
TOL = {"f32": 1e-5, "f16": 2e-3, "bf16": 1.5e-2}
# Hopper's fp8 wgmma keeps its running sum in an accumulator narrower than f32 (what torch._scaled_mm
# calls use_fast_accum=True); on the H200 an f32 output is off by 1.6e-4 (relative norm) at K = 64 and
# 2e-3 at K = 8192. The simulator adds in exact f32, so it keeps TOL["f32"].
FP8_GPU_F32_TOL = 4e-3


def fp8_tol(backend, out_dtype: str) -> float:
    """The relative-norm bound for an fp8 GEMM's ``out_dtype`` result on ``backend``."""
    return FP8_GPU_F32_TOL if out_dtype == "f32" and getattr(backend, "name", backend) == "cuda" else TOL[out_dtype]


def bf16_values(x) -> np.ndarray:
    """float32 values of x rounded to bf16 (round to nearest even), as the DeviceArray will hold."""
    bits = rt_args.floats_to_bf16_bits(np.asarray(x, np.float32))
    return (bits.astype(np.uint32) << 16).view(np.float32)


def make(x, dtype: str, kind: str = "numpy"):
    """(the op argument, its exact values as float64) for float data ``x`` in ``dtype``.
    ``kind`` 'numpy' or 'device'; bf16 is always a DeviceArray."""
    x = np.asarray(x)
    if dtype == "bf16":
        v = bf16_values(x)
        return kaiodsl.runtime.to_device(v, kaiodsl.bf16), v.astype(np.float64)
    v = x.astype({"f16": np.float16, "f32": np.float32}.get(dtype, x.dtype))
    return (v if kind == "numpy" else kaiodsl.runtime.to_device(v)), v.astype(np.float64)


def host(x) -> np.ndarray:
    """An op output as a numpy array of values (bf16 widened to float32)."""
    if isinstance(x, np.ndarray):          # a numpy bf16 output holds the raw bits as uint16
        return (x.astype(np.uint32) << 16).view(np.float32) if x.dtype == np.uint16 else x
    if isinstance(x, kaiodsl.runtime.DeviceArray):
        h = x.numpy()
        if x.scalar_type == kaiodsl.bf16:
            return (h.astype(np.uint32) << 16).view(np.float32)
        return h
    return x.float().cpu().numpy() if x.is_floating_point() else x.cpu().numpy()   # torch


def dtype_name(x) -> str:
    if isinstance(x, np.ndarray):
        return {np.dtype(np.float16): "f16", np.dtype(np.float32): "f32", np.dtype(np.int8): "i8",
                np.dtype(np.uint16): "bf16"}[x.dtype]
    if isinstance(x, kaiodsl.runtime.DeviceArray):
        return x.scalar_type.name
    return {"torch.float16": "f16", "torch.bfloat16": "bf16", "torch.float32": "f32"}[str(x.dtype)]


def rel_err(got, ref) -> float:
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert np.all(np.isfinite(got)), "non-finite values in the output (unwritten memory?)"
    den = np.linalg.norm(ref)
    return float(np.linalg.norm(got - ref) / (den if den else 1.0))


def check_close(out, ref, out_dtype: str):
    assert dtype_name(out) == out_dtype
    err = rel_err(host(out), ref)
    assert err <= TOL[out_dtype], f"relative error {err:.3g} > {TOL[out_dtype]} ({out_dtype} output)"


def ptxas_report(ptx: str) -> str:
    """ptxas -v's report for sm_90a PTX (the assembler the CUDA 13.0 driver JITs with), skipping the test
    where no ptxas is on PATH. The kernels that rebalance registers with setmaxnreg are checked here:
    nvJitLink allocates them against the launch's count and reports spills that the driver's JIT does not."""
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    if shutil.which("ptxas") is None:
        pytest.skip("no ptxas on PATH")
    path = Path(tempfile.mkdtemp()) / "k.ptx"
    path.write_text(ptx)
    r = subprocess.run(["ptxas", "-arch=sm_90a", "-v", str(path), "-o", str(path.with_suffix(".cubin"))],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stderr


def record(monkeypatch, module, name: str, pick=lambda args: 1) -> list:
    """Replace ``module.name`` by a wrapper that calls it and records ``pick(args)`` of each call's
    positional arguments (by default 1 a call); returns the list."""
    calls = []
    orig = getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append(pick(args))
        return orig(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls

