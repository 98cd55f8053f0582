"""One version number, kept equal in pyproject.toml, the package and DESCRIPTION."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import mmaavi

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO_ROOT = Path(__file__).resolve().parents[2]


def _pyproject_version() -> str:
    with (REPO_ROOT / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)["project"]["version"]


def test_package_version_matches_pyproject():
    assert mmaavi.__version__ == _pyproject_version()


def test_description_version_matches_pyproject():
    description = REPO_ROOT / "DESCRIPTION"
    if not description.is_file():
        pytest.skip("no DESCRIPTION yet (the R package is not there)")
    match = re.search(r"^Version:\s*(\S+)\s*$", description.read_text(), flags=re.MULTILINE)
    assert match is not None, f"no 'Version:' field in {description}"
    assert match.group(1) == _pyproject_version()
