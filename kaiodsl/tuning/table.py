"""Tuning tables: one JSON file per device, shape classes, config (de)serialisation and lookup.

A table file (``tables/<device slug>.json``, shipped as package data) is

    {"device": "NVIDIA H200", "created": "2025-...", "tuning_seconds": 812.4,
     "entries": [{"op": "matmul", "dtype": "f16", "layout": "nk", "shape_class": "M2-16 N4096 K4096",
                  "shape": [16, 4096, 4096], "config": {"class": "GemmConfig", "block_m": 16, ...},
                  "ms": 0.031, "default_ms": 0.042, "speedup": 1.35}, ...]}

An entry's key is (device, op, dtype, layout, shape); several shapes may share one shape class.

**Shape classes.** M (the token count of an LLM projection: 1 in decode, thousands in prefill)
changes which tiling wins far more than N or K do, so it gets the classes where the choice flips:
1 (one row: the tiniest tile), 2-16 (one m16 MMA row block), 17-64, 65-256, 257-1024, 1025-4096 and
>4096 (enough tiles to fill the GPU with the largest tile). N and K are bucketed by the power of two
at or above them (N=14336 -> "N16384"): the number of tiles and k steps, which is what matters to a
tiling, changes by at most 2x inside a bucket. A lookup of a shape that was tuned exactly uses that
entry; any other shape uses the entry of its class whose shape is nearest (in log2 distance).

**Bad entries.** A config in a table that does not name the op's config class, has fields that
class does not have, or fails the config's own checks is an error (``ArgumentError`` naming the
file, the entry's index and the reason), raised by the first lookup for that op: a table that
silently stopped applying would hide a slow-down. ``tests/tuning`` loads every shipped table.
"""

from __future__ import annotations

import json
import math
from importlib import resources
import os
import re
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path

from ..errors import ArgumentError, KaioError

TABLE_DIR = Path(str(resources.files("kaiodsl.tuning") / "tables"))   # package data: ships in the wheel
ENV_DIR = "KAIODSL_TUNING_DIR"  # a folder of tables consulted before the shipped ones
M_CLASSES = ((1, 1), (2, 16), (17, 64), (65, 256), (257, 1024), (1025, 4096))
ENTRY_FIELDS = ("op", "dtype", "layout", "shape_class", "shape", "config", "ms", "default_ms", "speedup")


# -- shape classes --------------------------------------------------------------------------------------
def m_class(M: int) -> str:
    for lo, hi in M_CLASSES:
        if lo <= M <= hi:
            return f"M{lo}" if lo == hi else f"M{lo}-{hi}"
    return f"M>{M_CLASSES[-1][1]}" if M > 0 else "M0"


def pow2_class(x: int) -> int:
    """The power of two at or above ``x`` (x >= 1)."""
    return 1 << max(int(x) - 1, 0).bit_length()


def shape_class(shape) -> str:
    """``(M, N, K)`` -> its class, e.g. (16, 14336, 4096) -> "M2-16 N16384 K4096"."""
    M, N, K = shape
    return f"{m_class(M)} N{pow2_class(N)} K{pow2_class(K)}"


def _distance(a, b) -> float:
    return sum(abs(math.log2(max(x, 1)) - math.log2(max(y, 1))) for x, y in zip(a, b))


# -- configs as JSON ----------------------------------------------------------------------------------
def config_to_dict(config) -> dict:
    """A frozen-dataclass config as ``{"class": name, field: value, ...}``."""
    if not is_dataclass(config) or isinstance(config, type):
        raise ArgumentError(f"a tuning config must be a dataclass instance, got {config!r}")
    return {"class": type(config).__name__, **asdict(config)}


def config_from_dict(d, config_type):
    """The ``config_type`` instance a dict from ``config_to_dict`` describes; ArgumentError says why not.
    Fields the dict leaves out take their defaults (a field added later keeps old tables valid)."""
    if not isinstance(d, dict):
        raise ArgumentError(f"config must be a JSON object, got {d!r}")
    d = dict(d)
    cls = d.pop("class", None)
    if cls != config_type.__name__:
        raise ArgumentError(f"config class {cls!r} is not {config_type.__name__!r}")
    known = {f.name for f in fields(config_type)}
    extra = sorted(set(d) - known)
    if extra:
        raise ArgumentError(f"{config_type.__name__} has no field(s) {', '.join(extra)} "
                            f"(its fields: {', '.join(sorted(known))})")
    try:
        return config_type(**d)
    except KaioError:
        raise
    except (TypeError, ValueError) as e:
        raise ArgumentError(f"{config_type.__name__}(**{d}) failed: {e}") from None


# -- files ----------------------------------------------------------------------------------------------
def device_slug(device: str) -> str:
    """"NVIDIA H200" -> "nvidia-h200" (the table's file name)."""
    slug = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")
    if not slug:
        raise ArgumentError(f"device name {device!r} has no letters or digits to name a table file")
    return slug


def table_dirs() -> list[Path]:
    """Where lookups search, first match wins: ``$KAIODSL_TUNING_DIR`` (if set), then the shipped tables."""
    extra = os.environ.get(ENV_DIR)
    return ([Path(extra)] if extra else []) + [TABLE_DIR]


def table_path(device: str, folder: Path | None = None) -> Path:
    return Path(folder or TABLE_DIR) / f"{device_slug(device)}.json"


def empty_table(device: str) -> dict:
    return {"device": device, "created": None, "tuning_seconds": 0.0, "entries": []}


def read_table(path: Path) -> dict:
    """A table file's JSON, checked for the top-level fields and each entry's fields."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ArgumentError(f"tuning table {path}: cannot be read as JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list) or "device" not in data:
        raise ArgumentError(f"tuning table {path}: expected an object with 'device' and a list 'entries'")
    for i, e in enumerate(data["entries"]):
        missing = [f for f in ENTRY_FIELDS if not isinstance(e, dict) or f not in e]
        if missing:
            raise ArgumentError(f"tuning table {path}: entry {i} lacks {', '.join(missing)}")
        if not (isinstance(e["shape"], list) and len(e["shape"]) == 3
                and all(type(x) is int and x >= 1 for x in e["shape"])):
            raise ArgumentError(f"tuning table {path}: entry {i} ({e['op']}): shape must be [M, N, K] of "
                                f"positive ints, got {e['shape']!r}")
    return data


def entry_key(e: dict) -> tuple:
    return (e["op"], e["dtype"], e["layout"], tuple(e["shape"]))


def merge(old: dict, new_entries: list, device: str, created: str, seconds: float) -> dict:
    """``old`` with ``new_entries`` added; an entry of the same (op, dtype, layout, shape) is replaced,
    every other old entry is kept. ``tuning_seconds`` adds up over the runs that built the table."""
    if old["device"] != device:
        raise ArgumentError(f"the table holds entries for device {old['device']!r}, not {device!r}: "
                            f"write the results for {device!r} to another file (--out)")
    fresh = {entry_key(e): e for e in new_entries}
    kept = [e for e in old["entries"] if entry_key(e) not in fresh]
    entries = sorted(kept + list(fresh.values()), key=lambda e: (e["op"], e["dtype"], e["layout"], e["shape"]))
    return {"device": device, "created": created,
            "tuning_seconds": round(float(old.get("tuning_seconds") or 0.0) + seconds, 1), "entries": entries}


def write_table(path: Path, table: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    head = {k: v for k, v in table.items() if k != "entries"}
    lines = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    rows = ",\n".join(f"  {json.dumps(e, separators=(', ', ': '))}" for e in table["entries"])
    # one entry a line: a re-tuned shape is a one-line diff in the committed table
    tmp.write_text("{\n" + "\n".join(lines) + '\n "entries": [\n' + rows + ("\n" if rows else "") + " ]\n}\n")
    tmp.replace(path)       # a reader never sees half a file
    clear_cache()


# -- lookup ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Choice:
    """A config and where it came from: "table: <device> <shape class> (<file>)" or "heuristic"."""

    config: object
    source: str


_TABLES: dict = {}    # (device, op, config type) -> (path, [(entry, config)]) or None: parsed once
_CHOICES: dict = {}   # (device, op, dtype, layout, shape, config type) -> Choice or None


def clear_cache() -> None:
    """Forget parsed tables and looked-up choices (after a table is written, or in tests)."""
    _TABLES.clear()
    _CHOICES.clear()


def _op_entries(device: str, op: str, config_type, validate):
    key = (device, op, config_type)
    if key not in _TABLES:
        found = None
        for folder in table_dirs():
            path = table_path(device, folder)
            if path.is_file():
                data = read_table(path)
                parsed = []
                for i, e in enumerate(data["entries"]):
                    if e["op"] != op:
                        continue
                    try:
                        cfg = config_from_dict(e["config"], config_type)
                        if validate is not None:
                            validate(cfg, e["dtype"], e["layout"])
                    except ArgumentError as err:
                        raise ArgumentError(f"tuning table {path}: entry {i} ({op} {e['dtype']} {e['layout']} "
                                            f"{e['shape']}): {err}") from None
                    parsed.append((e, cfg))
                found = (path, parsed)
                break
        _TABLES[key] = found
    return _TABLES[key]


def lookup(device: str | None, op: str, dtype: str, layout: str, shape, config_type, validate=None):
    """The table's Choice for ``shape`` on ``device`` (exact shape, else the nearest of its class), or None.

    ``validate(config, dtype, layout)`` raises ArgumentError for a config the op cannot run; a bad
    entry is an error naming the file and entry. ``device`` None (the simulator) has no table."""
    if device is None:
        return None
    shape = tuple(int(x) for x in shape)
    key = (device, op, dtype, layout, shape, config_type)
    if key in _CHOICES:
        return _CHOICES[key]
    found = _op_entries(device, op, config_type, validate)
    choice = None
    if found is not None:
        path, parsed = found
        cls = shape_class(shape)
        same = [(e, c) for e, c in parsed if e["dtype"] == dtype and e["layout"] == layout
                and shape_class(e["shape"]) == cls]
        if same:
            e, cfg = min(same, key=lambda ec: _distance(ec[0]["shape"], shape))
            how = "" if tuple(e["shape"]) == shape else f", nearest tuned {'x'.join(map(str, e['shape']))}"
            choice = Choice(cfg, f"table: {device} {cls} ({path.name}{how})")
    if len(_CHOICES) >= 1 << 14:  # many ragged shapes (serving): start over rather than grow without bound
        _CHOICES.clear()
    _CHOICES[key] = choice
    return choice


def device_name() -> str | None:
    """The current backend's device name ("NVIDIA H200"), or None where there is no device table
    (the simulator, test fakes)."""
    from ..runtime import current

    return getattr(current(), "device_name", None)
