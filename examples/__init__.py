"""The example kernels, installed as the package kaiodsl.examples: what ``python -m kaiodsl demo`` runs.

The demo finds every module here (subfolders too, names not starting with ``_``) that defines
``run(quick: bool = False) -> str``: it compiles the module's kernels, then calls ``run``, which launches
them, checks them against numpy and returns a one-line summary. Optional module attributes:
``DEMO_CONSTS = {"kernel": {"NAME": value}}`` for Const parameters without a default, and
``DEMO_ARCHS = ("sm_90a",)`` for examples that only run on some targets (others are skipped), and
``DEMO_SKIP = "why"`` (a non-empty string, None otherwise) for an example that cannot run in this
install at all (gemm/05_hopper_ws.py until the op it calls exists). ``gemm/`` is the GEMM tutorial,
levels 01-05 (gemm/README.md).
Each file also runs on its own: ``python examples/saxpy.py``.
"""
