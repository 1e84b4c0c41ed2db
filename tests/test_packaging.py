"""Packaging: one version string, the typed marker, and extras that ship no test doubles.

The distribution is ``datastream-columnar`` (``datastream`` on PyPI is an unrelated project);
the import name stays ``datastream``.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import datastream

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "datastream-columnar"
# Packages that stand in for a server or exist to test and measure: never a runtime need.
TEST_ONLY = {"mongomock", "pytest", "hypothesis", "asv", "ruff"}


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def test_version_is_the_installed_distributions() -> None:
    assert datastream.__version__ == importlib.metadata.version(DISTRIBUTION)


def test_version_has_one_source() -> None:
    project = pyproject()
    assert project["project"]["name"] == DISTRIBUTION
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    version_attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert version_attr == "datastream._version.__version__"
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]\d+|rc\d+)?", datastream.__version__)


def test_package_is_marked_typed() -> None:
    package_dir = Path(datastream.__file__).parent
    assert (package_dir / "py.typed").is_file()
    assert "py.typed" in pyproject()["tool"]["setuptools"]["package-data"]["datastream"]


def test_runtime_extras_hold_no_test_doubles() -> None:
    extras = pyproject()["project"]["optional-dependencies"]
    runtime = {name: deps for name, deps in extras.items() if name not in ("test", "docs")}
    assert {"mongodb", "influxdb", "pandas", "polars"} <= set(runtime)
    for name, deps in runtime.items():
        leaked = {requirement_name(dep) for dep in deps} & TEST_ONLY
        assert not leaked, f"extra {name!r} installs test-only packages {sorted(leaked)}"
    assert "mongomock" in {requirement_name(dep) for dep in extras["test"]}


def test_installed_metadata_names_license_and_extras() -> None:
    metadata = importlib.metadata.metadata(DISTRIBUTION)
    assert metadata["License-Expression"] == "MIT"
    assert {"mongodb", "influxdb", "pandas", "polars", "test", "docs"} <= set(
        metadata.get_all("Provides-Extra")
    )
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
