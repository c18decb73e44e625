"""The registry of tunable ops: what the tuner needs to know about an op, and nothing more.

An op registers a ``Tunable`` (ops/matmul_tune.py does it for ``matmul``). The tuner never looks
inside a config: it asks the entry for candidates, builds inputs through it, runs the op with a
config through it and stores the config with ``table.config_to_dict``. A new op -- the int4, w8a16
or QKV kernels, a Hopper GEMM with its own ``Sm90Config`` -- registers its own entry the same way.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from ..errors import ArgumentError


@dataclass(frozen=True)
class Tunable:
    """One tunable op.

    name        the op's name in tables and on the command line ("matmul")
    config_type the frozen dataclass of its configs (stored as ``{"class": ..., fields...}``)
    dtypes, layouts   the values ``--dtype`` and the table's ``layout`` may take (first: the default)
    candidates(shape, dtype, layout, arch) -> [config]   the pruned search space for a shape: only
                configs that pass the config's own checks and the arch's shared-memory limit, most
                promising first (a time budget cuts the list from the end)
    default(shape, dtype, layout) -> config   what the op runs without a table (the heuristic); its
                output is the correctness reference and its time the baseline
    make_inputs(shape, dtype, layout, backend, rng) -> inputs   fresh random inputs, never zeros:
                torch CUDA tensors for backend "cuda", numpy arrays for "sim"
    run(inputs, config) -> output   one call of the op with ``config`` (launches, does not synchronise)
    validate(config, dtype, layout) -> None   raises ArgumentError for a config the op cannot run on
                the current arch (used on table entries before they are trusted)
    """

    name: str
    config_type: type
    dtypes: tuple
    layouts: tuple
    candidates: Callable
    default: Callable
    make_inputs: Callable
    run: Callable
    validate: Callable


_REGISTRY: dict = {}
# modules that register the built-in entries; imported on the first lookup by name
BUILTIN_MODULES = ("kaiodsl.ops.matmul_tune", "kaiodsl.ops.gemm_sm90_tune")


def register(tunable: Tunable) -> Tunable:
    """Add (or replace) the entry of ``tunable.name``."""
    if not isinstance(tunable, Tunable):
        raise ArgumentError(f"register() takes a kaiodsl.tuning.Tunable, got {tunable!r}")
    _REGISTRY[tunable.name] = tunable
    return tunable


def _load_builtins() -> None:
    for mod in BUILTIN_MODULES:
        importlib.import_module(mod)


def names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def get(name: str) -> Tunable:
    _load_builtins()
    t = _REGISTRY.get(name)
    if t is None:
        raise ArgumentError(f"no tunable op {name!r}; registered: {', '.join(sorted(_REGISTRY)) or 'none'}")
    return t
