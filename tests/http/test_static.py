"""The chart page's static files: the vendored uPlot is the recorded release, and every file
the page needs ships in the wheel (package data)."""

from __future__ import annotations

import fnmatch
import hashlib
import re
import tomllib
from pathlib import Path

from tools import vendor_uplot

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "datastream"
STATIC = PACKAGE / "http" / "static"
UPLOT = STATIC / "vendor" / "uplot"


def version_record() -> tuple[dict[str, str], dict[str, str]]:
    """VERSION as (fields, sha256 by file name)."""
    fields: dict[str, str] = {}
    checksums: dict[str, str] = {}
    for line in (UPLOT / "VERSION").read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(": ")
        if key.startswith("sha256 "):
            checksums[key.removeprefix("sha256 ")] = value
        else:
            fields[key] = value
    return fields, checksums


def test_version_record_names_the_pinned_release() -> None:
    fields, _ = version_record()
    assert fields["name"] == "uPlot"
    assert fields["version"] == vendor_uplot.UPLOT_VERSION
    assert re.fullmatch(r"1\.6\.\d+", fields["version"])
    assert fields["npm-package"] == f"uplot@{fields['version']}"
    assert fields["tarball"] == f"uplot-{fields['version']}.tgz"
    assert fields["integrity"] == vendor_uplot.UPLOT_INTEGRITY
    assert re.fullmatch(r"sha512-[A-Za-z0-9+/]{86}==", fields["integrity"])
    assert fields["license"] == "MIT"


def test_vendored_files_match_their_recorded_checksums() -> None:
    _, checksums = version_record()
    assert set(checksums) == set(vendor_uplot.MEMBERS.values())
    assert {path.name for path in UPLOT.iterdir()} == {"VERSION", *checksums}
    for name, expected in checksums.items():
        assert hashlib.sha256((UPLOT / name).read_bytes()).hexdigest() == expected, name


def test_script_announces_the_recorded_version_and_license_is_mit() -> None:
    fields, _ = version_record()
    header = (UPLOT / "uPlot.iife.min.js").read_text(encoding="utf-8")[:200]
    assert f"(v{fields['version']})" in header
    assert "var uPlot=" in header
    license_text = (UPLOT / "LICENSE").read_text(encoding="utf-8")
    assert license_text.startswith("The MIT License")
    assert "Leon Sorokin" in license_text


def test_page_refers_only_to_files_that_exist() -> None:
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    references = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert "static/app.js" in references
    assert "static/vendor/uplot/uPlot.iife.min.js" in references
    for reference in references:
        if reference.startswith("data:"):
            continue  # inline, e.g. the empty favicon that spares a request
        assert reference.startswith("static/"), reference
        assert (STATIC / reference.removeprefix("static/")).is_file(), reference


def test_every_static_file_is_package_data() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["datastream"]
    static_files = [path for path in STATIC.rglob("*") if path.is_file()]
    assert len(static_files) >= 7
    for path in static_files:
        relative = path.relative_to(PACKAGE).as_posix()
        # setuptools globs do not cross directories with "*", as fnmatch would: compare depth.
        assert any(
            fnmatch.fnmatch(relative, pattern) and relative.count("/") == pattern.count("/")
            for pattern in patterns
        ), f"{relative} is missing from [tool.setuptools.package-data]"
