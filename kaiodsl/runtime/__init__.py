"""kaiodsl.runtime: backends (CUDA driver / simulator), launches, arrays, streams, caches.

Importing this never touches the CUDA driver: the backend is chosen on first use.
"""

from .arrays import DeviceArray, empty, to_device, zeros
from .backend import current, get_backend_name, set_backend, synchronize
from .cache import DiskCache, default_cache
from .launch import Launcher
from .streams import Stream

__all__ = ["DeviceArray", "to_device", "empty", "zeros", "Stream", "set_backend", "current",
           "get_backend_name", "synchronize", "Launcher", "DiskCache", "default_cache"]
