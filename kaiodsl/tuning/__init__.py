"""kaiodsl.tuning: measured configs per device, and the tuner that measures them.

* ``registry``: ops register a ``Tunable`` (config class, candidates, inputs, how to run);
* ``table``: shape classes, the per-device JSON tables (package data under ``tables/``), lookup;
* ``tuner``: times every candidate of a shape (CUDA events; the simulator's wall clock with
  ``backend="sim"``), checks it against the default config's output, and merges the winners into
  the device's table. ``python -m kaiodsl tune`` is its command line (``tuning.cli``).

Ops ask ``lookup(device_name(), op, dtype, layout, shape, ConfigType)`` and fall back to their
heuristic when it returns None (the simulator, an untuned device or shape class).
"""

from .registry import Tunable, get, names, register
from .table import Choice, clear_cache, device_name, lookup, shape_class, table_path

__all__ = ["Choice", "Tunable", "clear_cache", "device_name", "get", "lookup", "names", "register", "shape_class",
           "table_path"]
