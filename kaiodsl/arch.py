"""The one model of a compile target: ``Arch.parse("sm_90a")`` and the predicates forms are gated by.

A target is a compute capability (90) and a suffix: '' (portable: runs on this and later GPUs),
'a' (arch-specific: its extra instructions, e.g. wgmma and setmaxnreg, exist on that exact
capability only) or 'f' (family-specific). PTX ISA 8.x, "Target ISA notes" / "Architecture-specific
features".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from .errors import KaioError

# Lowest PTX ISA version that knows each target (PTX ISA, "Release notes" / target table).
ARCH_MIN_PTX = {"sm_70": "6.0", "sm_75": "6.3", "sm_80": "7.0", "sm_86": "7.1", "sm_87": "7.4",
                "sm_89": "7.8", "sm_90": "7.8", "sm_90a": "8.0", "sm_100": "8.6", "sm_100a": "8.6",
                "sm_120": "8.7", "sm_120a": "8.7"}

_TARGET = re.compile(r"sm_(\d+)([af]?)$")


@dataclass(frozen=True)
class Arch:
    """A parsed target: ``sm`` the capability number, ``suffix`` '', 'a' or 'f'."""

    sm: int
    suffix: str = ""

    @staticmethod
    def parse(name) -> "Arch":
        if isinstance(name, Arch):
            return name
        return _parse(str(name))

    @property
    def name(self) -> str:
        return f"sm_{self.sm}{self.suffix}"

    @property
    def min_ptx(self) -> str:
        return ARCH_MIN_PTX[self.name]

    def __str__(self) -> str:
        return self.name


@lru_cache(maxsize=None)
def _parse(name: str) -> Arch:
    m = _TARGET.match(name)
    if m is None or name not in ARCH_MIN_PTX:
        raise KaioError(f"unknown target {name!r}; known: {', '.join(ARCH_MIN_PTX)}")
    return Arch(int(m.group(1)), m.group(2))


@dataclass(frozen=True)
class ArchPred:
    """Where a form exists: ``>=sm_80`` (that capability and newer, any suffix) or ``sm_90a``
    (exactly that arch-specific target; PTX ISA: ".a features are not forward compatible")."""

    text: str

    @property
    def exact(self) -> bool:
        return not self.text.startswith(">=")

    @property
    def arch(self) -> Arch:
        name = self.text[2:] if self.text.startswith(">=") else self.text
        m = _TARGET.match(name)
        if m is None:
            raise KaioError(f"bad arch predicate {self.text!r}: write >=sm_NN or sm_NNa")
        return Arch(int(m.group(1)), m.group(2))

    def allows(self, target) -> bool:
        t = Arch.parse(target)
        if self.exact:
            return t == self.arch
        return t.sm >= self.arch.sm

    def describe(self) -> str:
        """Words for an error: 'needs sm_80 or newer' / 'needs sm_90a (and only sm_90a)'."""
        if self.exact:
            return f"needs {self.arch} (it exists on {self.arch} only)"
        return f"needs {self.arch} or newer"


def arch_pred(text: str) -> ArchPred:
    p = ArchPred(text.strip())
    p.arch  # validates the target name  # noqa: B018
    return p


def at_least(target, sm: int) -> bool:
    """True when ``target`` has capability ``sm`` or newer (the question codegen asks of sm_90 features)."""
    return Arch.parse(target).sm >= sm
