"""Instruction forms (ptx_templates/instructions.txt) and the PTX ISA versions kernels need."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..ptx_templates import read_text

# Lowest PTX ISA version that knows each target (PTX ISA, "Release notes" / target table).
ARCH_MIN_PTX = {"sm_70": "6.0", "sm_75": "6.3", "sm_80": "7.0", "sm_86": "7.1", "sm_87": "7.4",
                "sm_89": "7.8", "sm_90": "7.8", "sm_90a": "8.0", "sm_100": "8.6", "sm_100a": "8.6",
                "sm_120": "8.7", "sm_120a": "8.7"}


@dataclass(frozen=True)
class Form:
    name: str
    min_sm: int
    min_ptx: str
    template: str


@lru_cache(maxsize=None)
def forms() -> dict:
    text = read_text("instructions.txt")
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sm, ptx, template = (p.strip() for p in line.split("|", 3))
        out[name] = Form(name, int(sm), ptx, template)
    return out


def form(name: str) -> Form:
    try:
        return forms()[name]
    except KeyError:
        raise KeyError(f"no instruction form {name!r} in ptx_templates/instructions.txt") from None


def _v(s: str) -> tuple:
    return tuple(int(x) for x in s.split("."))


def ptx_version_for(arch: str, features) -> str:
    """The lowest .version that the arch and every used form allow."""
    if arch not in ARCH_MIN_PTX:
        raise KeyError(f"unknown target {arch!r}; known: {', '.join(ARCH_MIN_PTX)}")
    best = ARCH_MIN_PTX[arch]
    for f in features:
        need = forms()[f].min_ptx if f in forms() else f
        if _v(need) > _v(best):
            best = need
    return best
