"""The package list for setuptools; all other metadata is in pyproject.toml.

Found rather than listed, so that a new subpackage cannot be left out of the wheel while an editable
install still works. ops/, ptx_templates/ and examples/ install as kaiodsl.ops, kaiodsl.ptx_templates
and kaiodsl.examples, so no top-level ``ops`` module lands in site-packages.
"""

from setuptools import find_namespace_packages, setup

MAPPED = {"kaiodsl.ops": "ops", "kaiodsl.ptx_templates": "ptx_templates", "kaiodsl.examples": "examples"}
SKIP = ["__pycache__", "*.__pycache__"]

packages = find_namespace_packages(include=["kaiodsl", "kaiodsl.*"], exclude=SKIP)
for name, folder in MAPPED.items():
    packages += [name, *(f"{name}.{sub}" for sub in find_namespace_packages(folder, exclude=SKIP))]
setup(packages=packages, package_dir=MAPPED)
