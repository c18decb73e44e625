"""IR passes, in the order the pipeline runs them."""

from __future__ import annotations

import os

from ..ir.verifier import verify
from .constfold import constant_fold
from .cse import cse
from .dce import dce, simplify_block_args
from .unroll import unroll_loops
from .writable import mark_writable_params

PIPELINE = [
    ("dce", dce),
    ("constant_fold", constant_fold),
    ("unroll", unroll_loops),
    ("simplify_block_args", simplify_block_args),
    ("cse", cse),
    ("constant_fold", constant_fold),
    ("dce", dce),
    ("mark_writable_params", mark_writable_params),
]


def run_pipeline(fn, verify_each: bool | None = None, after_pass=None) -> None:
    """Run every pass; with KAIODSL_VERIFY=1 (set by the tests) verify after each one.
    ``after_pass(name, fn)`` is called after each pass (the compiler's KAIODSL_DUMP=passes)."""
    if verify_each is None:
        verify_each = os.environ.get("KAIODSL_VERIFY") == "1"
    for name, p in PIPELINE:
        p(fn)
        if after_pass is not None:
            after_pass(name, fn)
        if verify_each:
            try:
                verify(fn)
            except AssertionError as e:
                raise AssertionError(f"IR invalid after pass '{name}': {e}") from None
    verify(fn)
