"""kaiodsl.sim: a PTX simulator with checks (out-of-bounds, races, partial barriers, cp.async).

PTX text -> parse.py (lark grammar in ptx_templates/ptx.lark) -> executor.py
(numpy over all threads of a batch of blocks). See docs/simulator.md.
"""

from .api import SimBackend, run_ptx
from .parse import parse_ptx

__all__ = ["SimBackend", "run_ptx", "parse_ptx"]
