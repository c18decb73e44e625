"""The on-disk cache of specializations: CompiledKernel payloads (and cubins) by key.

One entry is one file, ``<dir>/<key[:2]>/<key>.kaio``:

    KAIO1 <sha256 hex of body> <body length>\\n<body>

where body is ``<json length>\\n<json><cubin bytes>``. Writes go to a temporary
file in the same folder and are published with ``os.replace`` (atomic on POSIX
and Windows), so a reader sees a whole entry or none; several processes storing
the same key each publish a whole file and the last one wins. A truncated or
corrupt entry fails its checksum, is removed, and reads as a miss. An entry whose checksum
holds but whose payload the compiler cannot use (an older layout, a planted file) is
``evict``-ed by the compiler, which then rebuilds it (kaiodsl/compiler.py).

Environment: ``KAIODSL_CACHE_DIR`` (default ``~/.cache/kaiodsl``), ``KAIODSL_CACHE=0``
turns the cache off (``default_cache()`` returns None).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

MAGIC = b"KAIO1"
_KEY_OK = re.compile(r"^[A-Za-z0-9_.\-]+$")


class DiskCache:
    """A folder of cache entries; ``load``/``store`` never raise for I/O trouble (a miss instead)."""

    def __init__(self, root):
        self.root = Path(root).expanduser()

    def path(self, key: str) -> Path:
        if not _KEY_OK.match(key):  # keys become file names: hash anything else
            key = hashlib.sha256(key.encode()).hexdigest()
        return self.root / key[:2] / f"{key}.kaio"

    def load(self, key: str) -> dict | None:
        """The payload stored under ``key`` (with ``payload['cubin']`` bytes if one was stored), or None."""
        p = self.path(key)
        try:
            data = p.read_bytes()
        except OSError:
            return None
        entry = _decode(data)
        if entry is None or entry[0].get("key", key) != key:
            _remove(p)  # corrupt, truncated or foreign: rebuild
            return None
        payload, cubin = entry
        if cubin:
            payload["cubin"] = cubin
        return payload

    def store(self, key: str, payload: dict, cubin: bytes | None = None) -> bool:
        """Publish an entry atomically; returns False (and stores nothing) on an I/O error."""
        p = self.path(key)
        payload = {k: v for k, v in payload.items() if k != "cubin"}
        payload.setdefault("key", key)
        data = _encode(payload, cubin or b"")
        tmp = None
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{p.stem[:16]}.", suffix=".tmp", dir=p.parent)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
            return True
        except OSError:
            if tmp is not None:
                _remove(Path(tmp))
            return False

    def evict(self, key: str) -> None:
        """Remove one entry (its payload was unusable): the next store rebuilds it."""
        _remove(self.path(key))

    def clear(self) -> None:
        for p in self.root.glob("*/*.kaio"):
            _remove(p)

    def __repr__(self) -> str:
        return f"DiskCache({str(self.root)!r})"


def default_cache() -> DiskCache | None:
    """The cache the environment asks for (read on every call, so tests can change it)."""
    if os.environ.get("KAIODSL_CACHE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    root = os.environ.get("KAIODSL_CACHE_DIR") or os.path.join("~", ".cache", "kaiodsl")
    return DiskCache(root)


# -- the entry format -------------------------------------------------------------------
def _encode(payload: dict, cubin: bytes) -> bytes:
    js = json.dumps(payload, sort_keys=True).encode()
    body = str(len(js)).encode() + b"\n" + js + cubin
    header = MAGIC + b" " + hashlib.sha256(body).hexdigest().encode() + b" " + str(len(body)).encode()
    return header + b"\n" + body


def _decode(data: bytes):
    try:
        header, body = data.split(b"\n", 1)
        magic, digest, length = header.split(b" ")
        if magic != MAGIC or int(length) != len(body):
            return None
        if hashlib.sha256(body).hexdigest().encode() != digest:
            return None
        jlen, rest = body.split(b"\n", 1)
        js, cubin = rest[:int(jlen)], rest[int(jlen):]
        payload = json.loads(js)
        return (payload, cubin) if isinstance(payload, dict) else None
    except (ValueError, UnicodeDecodeError):
        return None


def _remove(p: Path) -> None:
    try:
        p.unlink()
    except OSError:
        pass
