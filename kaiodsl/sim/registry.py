"""The rule table: PTX opcode base name -> builder(machine, instr, mods) -> fn(mask).

A builder runs once per launch batch and resolves operands into live register
views; the returned fn(mask) does the work for the threads in `mask` (a bool array
over the batch, or None for every thread). Missing rules fail with the opcode.
"""

from __future__ import annotations

import numpy as np

RULES: dict = {}

ROUNDING = ("rn", "rz", "rm", "rp", "rna")
INT_ROUNDING = ("rni", "rzi", "rmi", "rpi")


def rule(*names):
    def deco(fn):
        for n in names:
            RULES[n] = fn
        return fn
    return deco


def write(reg_setter, value, mask):
    reg_setter(value, mask)


def rounding(mods, default="rn"):
    for r in mods:
        if r in ROUNDING or r in INT_ROUNDING:
            return r
    return default


def threads(mask, T):
    """Batch indices of the threads in mask."""
    return np.arange(T) if mask is None else np.flatnonzero(mask)


def at(x, ti):
    """Operand values for threads ti (scalars broadcast)."""
    x = np.asarray(x)
    return x[ti] if x.ndim else np.broadcast_to(x, ti.shape)
