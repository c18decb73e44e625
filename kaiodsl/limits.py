"""Launch limits: the one check every backend runs before a launch, and the per-arch limits that
stand in for device attributes where there is no device (the simulator).

The keys are the runtime's names for CUDA device attributes (runtime/driver.py reads them from
the device); the values below are those of the CUDA C++ Programming Guide, "Technical
Specifications per Compute Capability".
"""

from __future__ import annotations

from .errors import LaunchError

_COMMON = {
    "max_threads_per_block": 1024,
    "max_block_x": 1024, "max_block_y": 1024, "max_block_z": 64,
    "max_grid_x": 2**31 - 1, "max_grid_y": 65535, "max_grid_z": 65535,
    "max_shared_per_block": 48 * 1024,  # without the opt-in (cuFuncSetAttribute)
    "max_regs_per_block": 65536,
}
# shared memory per block with the opt-in: the hard limit of each arch
_SHARED_OPTIN = {70: 96 * 1024, 75: 64 * 1024, 80: 163 * 1024, 86: 99 * 1024, 87: 163 * 1024,
                 89: 99 * 1024, 90: 227 * 1024, 100: 227 * 1024, 120: 99 * 1024}
REG_ALLOC_UNIT = 256  # registers are given to a warp in units of 256 (8 per thread)


def _cc(arch: str) -> int:
    digits = "".join(ch for ch in arch.removeprefix("sm_") if ch.isdigit())
    return int(digits) if digits else -1


def arch_limits(arch: str) -> dict:
    """The device limits of a target such as 'sm_80' or 'sm_90a' (suffixes share the base arch)."""
    cc = _cc(arch)
    if cc not in _SHARED_OPTIN:
        known = ", ".join(f"sm_{k}" for k in _SHARED_OPTIN)
        raise LaunchError(f"no launch limits are known for arch {arch!r} (known: {known})")
    return {**_COMMON, "max_shared_optin": _SHARED_OPTIN[cc]}


def max_threads_for(num_regs: int, attrs: dict, maxntid: int | None = None) -> int:
    """The most threads per block a kernel using num_regs registers per thread can launch with
    (what cuFuncGetAttribute(MAX_THREADS_PER_BLOCK) reports): whole warps of rounded-up registers."""
    per_warp = -(-max(num_regs, 1) * 32 // REG_ALLOC_UNIT) * REG_ALLOC_UNIT
    by_regs = attrs["max_regs_per_block"] // per_warp * 32
    return min(attrs["max_threads_per_block"], by_regs, maxntid or attrs["max_threads_per_block"])


def check_launch(kernel: str, attrs: dict, grid, block, static_shared: int, smem: int,
                 required_block=None, num_regs: int | None = None,
                 max_threads: int | None = None) -> None:
    """Raise LaunchError with the limit and the value for any configuration the device refuses.

    num_regs / max_threads: the assembled kernel's registers per thread and threads per block
    limit, where known (the register checks are skipped without them)."""
    a, k = attrs, kernel
    threads = block[0] * block[1] * block[2]
    if min(block) < 1 or min(grid) < 1:
        raise LaunchError(f"kernel '{k}': grid {grid} and block {block} must be positive")
    if required_block and tuple(required_block) != tuple(block):
        raise LaunchError(f"kernel '{k}' was compiled for block {tuple(required_block)} "
                          f"(.reqntid), launched with block {block}")
    for i, axis in enumerate("xyz"):
        if block[i] > a[f"max_block_{axis}"]:
            raise LaunchError(f"kernel '{k}': block.{axis}={block[i]} exceeds the device limit "
                              f"{a[f'max_block_{axis}']}")
        if grid[i] > a[f"max_grid_{axis}"]:
            raise LaunchError(f"kernel '{k}': grid.{axis}={grid[i]} exceeds the device limit "
                              f"{a[f'max_grid_{axis}']}")
    if threads > a["max_threads_per_block"]:
        raise LaunchError(f"kernel '{k}': block {block} has {threads} threads; the device allows "
                          f"{a['max_threads_per_block']} per block")
    if num_regs is not None:
        regs = num_regs * threads
        if regs > a["max_regs_per_block"]:
            raise LaunchError(f"kernel '{k}' uses {num_regs} registers/thread x {threads} threads = "
                              f"{regs} registers; the device has {a['max_regs_per_block']} per block "
                              f"(use a smaller block, at most {max_threads} threads)")
    if max_threads is not None and threads > max_threads:
        raise LaunchError(f"kernel '{k}' can run at most {max_threads} threads per block "
                          f"(registers / .maxntid), launched with {threads}")
    total = static_shared + smem
    if total > a["max_shared_optin"]:
        raise LaunchError(f"kernel '{k}': {static_shared} B static + {smem} B dynamic shared "
                          f"memory = {total} B exceeds the device limit {a['max_shared_optin']} B")
