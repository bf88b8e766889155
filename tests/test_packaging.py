"""The folders are installed under the edgetally namespace, and nowhere else."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FOLDERS = ("models", "runtime", "quantize", "firmware_bridge", "fleet")


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    on_disk = {
        "edgetally." + ".".join(init.parent.relative_to(REPO).parts)
        for folder in FOLDERS
        for init in (REPO / folder).rglob("__init__.py")
    } | {
        "edgetally" + "".join("." + p for p in init.parent.relative_to(REPO / "cli").parts)
        for init in (REPO / "cli").rglob("__init__.py")
    }
    assert on_disk - listed == set(), "add these packages to pyproject.toml"


def test_folders_import_under_the_namespace_only() -> None:
    for folder in FOLDERS:
        module = importlib.import_module(f"edgetally.{folder}")
        assert module.__file__ is not None
    # The generic names must not be importable from site-packages.
    import edgetally.models

    site = Path(edgetally.models.__file__).resolve()
    assert "site-packages" not in str(site) or "edgetally" in site.parts
