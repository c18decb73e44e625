"""Test-wide settings: verify the IR after every pass; keep the disk cache out of the user's home."""

import os
import tempfile

os.environ["KAIODSL_VERIFY"] = "1"
os.environ.setdefault("KAIODSL_CACHE_DIR", tempfile.mkdtemp(prefix="kaiodsl-test-cache-"))
