"""Helpers of the W8A16 / W4A16 / QKV tests: outputs poisoned with NaN, a CUDA torch fixture."""

import numpy as np

import kaiodsl
import kaiodsl.runtime

from opkit import record

dev = kaiodsl.runtime.to_device


def poison_outputs(monkeypatch, module):
    """Every output the op allocates starts as NaN (an unwritten element fails the finite check); integer
    buffers (e.g. the zero-point placeholder of an op called without zeros) as all ones."""
    orig = module.new_like

    def poisoned(like, shape, dtype):
        out = orig(like, shape, dtype)
        if isinstance(out, np.ndarray):
            out[...] = np.nan if out.dtype.kind == "f" else np.array(0xFFFF).astype(out.dtype)
            return out
        if isinstance(out, kaiodsl.runtime.DeviceArray):
            npd = np.dtype(dtype.np_dtype)
            fill = (np.full(shape, 0xFFFF, np.uint16) if dtype.name == "bf16" else
                    np.full(shape, np.nan if npd.kind == "f" else np.array(-1).astype(npd), npd))
            return dev(fill, dtype) if dtype.name == "bf16" else dev(fill)
        import torch
        out.fill_(float("nan") if out.is_floating_point() else torch.iinfo(out.dtype).max)
        return out

    monkeypatch.setattr(module, "new_like", poisoned)




def spy(monkeypatch, module, name: str) -> list:
    """Replace ``module.name`` by a wrapper that records each call (one entry a call) and returns the list."""
    return record(monkeypatch, module, name)
