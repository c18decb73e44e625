"""PTX instruction forms (instructions.txt) and the PTX grammar (ptx.lark), installed as kaiodsl.ptx_templates.

Every file kaiodsl reads at run time (these two, the native launcher's LLVM IR, the demo kernels) is
found through ``resource`` here, with importlib.resources and never a path relative to a source file,
so that a wheel install works from any directory.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


def resource(name: str = "", package: str = __name__) -> Traversable:
    """The data file (or folder) ``name`` of kaiodsl ``package``; ``""`` is the package's own folder."""
    folder = resources.files(package)
    return folder.joinpath(name) if name else folder


def read_text(name: str, package: str = __name__) -> str:
    """The text of data file ``name`` of ``package`` (default: this folder)."""
    return resource(name, package).read_text(encoding="utf-8")


def data_files() -> list[Traversable]:
    """This folder's files, sorted by name: the package data that a compiled kernel depends on."""
    return sorted((f for f in resource().iterdir() if f.is_file()), key=lambda f: f.name)
