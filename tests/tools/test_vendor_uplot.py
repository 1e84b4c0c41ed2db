"""tools/vendor_uplot.py, offline: the integrity check, extraction and the VERSION record, on a
tarball built here."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from tools import vendor_uplot

CONTENTS = {
    "package/dist/uPlot.iife.min.js": b"/*! uPlot (v1.6.99) */ var uPlot=1;",
    "package/dist/uPlot.min.css": b".uplot{}",
    "package/LICENSE": b"The MIT License (MIT)\n",
    "package/README.md": b"not vendored",
}


def npm_tarball(contents: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in contents.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def integrity_of(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")


def test_integrity_check_accepts_the_matching_digest_only() -> None:
    tarball = npm_tarball(CONTENTS)
    vendor_uplot.check_integrity(tarball, integrity_of(tarball))
    with pytest.raises(ValueError, match="integrity mismatch"):
        vendor_uplot.check_integrity(tarball + b"\0", integrity_of(tarball))
    with pytest.raises(ValueError, match="unsupported integrity"):
        vendor_uplot.check_integrity(tarball, "sha1-abc")


def test_extraction_takes_the_three_files_by_their_vendored_names() -> None:
    files = vendor_uplot.extract_members(npm_tarball(CONTENTS))
    assert files == {
        "uPlot.iife.min.js": CONTENTS["package/dist/uPlot.iife.min.js"],
        "uPlot.min.css": CONTENTS["package/dist/uPlot.min.css"],
        "LICENSE": CONTENTS["package/LICENSE"],
    }


def test_a_tarball_without_a_wanted_file_is_refused() -> None:
    incomplete = {k: v for k, v in CONTENTS.items() if not k.endswith(".css")}
    with pytest.raises(ValueError, match="no package/dist/uPlot.min.css"):
        vendor_uplot.extract_members(npm_tarball(incomplete))


def test_record_and_files_are_written_together(tmp_path: Path) -> None:
    files = vendor_uplot.extract_members(npm_tarball(CONTENTS))
    record = vendor_uplot.version_record("uplot-1.6.99.tgz", files)
    vendor_uplot.write_vendor_directory(tmp_path / "uplot", files, record)
    written = {path.name: path.read_bytes() for path in (tmp_path / "uplot").iterdir()}
    assert set(written) == {"VERSION", *files}
    lines = written["VERSION"].decode().splitlines()
    assert f"version: {vendor_uplot.UPLOT_VERSION}" in lines
    assert "tarball: uplot-1.6.99.tgz" in lines
    assert f"integrity: {vendor_uplot.UPLOT_INTEGRITY}" in lines
    assert "license: MIT" in lines
    css_digest = hashlib.sha256(CONTENTS["package/dist/uPlot.min.css"]).hexdigest()
    assert f"sha256 uPlot.min.css: {css_digest}" in lines
