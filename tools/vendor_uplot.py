"""Vendor a pinned uPlot release into the package, so installs and CI need no network.

The chart page (datastream/http/static/) draws with uPlot. This script fetches the pinned
release tarball from the npm registry, refuses it unless it matches the pinned sha512
integrity, and copies the minified script, its stylesheet and the license next to a VERSION
record that the test suite checks the committed files against. Run it again after changing
``UPLOT_VERSION`` and ``UPLOT_INTEGRITY`` (from ``npm view uplot@X dist.integrity``).

The registry address comes from ``npm view`` (so a configured mirror is honoured) unless
``--tarball-url`` gives it; standard library only.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

UPLOT_VERSION = "1.6.32"
UPLOT_INTEGRITY = (
    "sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw=="
)
UPLOT_LICENSE = "MIT"
# Member of the npm tarball -> file name in the vendor directory.
MEMBERS = {
    "package/dist/uPlot.iife.min.js": "uPlot.iife.min.js",
    "package/dist/uPlot.min.css": "uPlot.min.css",
    "package/LICENSE": "LICENSE",
}
TARGET = Path(__file__).resolve().parents[1] / "datastream" / "http" / "static" / "vendor" / "uplot"
DOWNLOAD_TIMEOUT_SECONDS = 60


def registry_tarball_url(version: str) -> str:
    """The tarball address npm itself would use (its configured registry)."""
    try:
        result = subprocess.run(
            ["npm", "view", f"uplot@{version}", "dist.tarball"],
            capture_output=True, text=True, check=True, timeout=DOWNLOAD_TIMEOUT_SECONDS,
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise SystemExit(f"npm could not tell the tarball address ({error}); "
                         "pass --tarball-url") from error
    url = result.stdout.strip()
    if not url.startswith(("https://", "http://")):
        raise SystemExit(f"npm answered no tarball address for uplot@{version}: {url!r}")
    return url


def check_integrity(tarball: bytes, integrity: str) -> None:
    """Refuse a tarball whose digest differs from the pinned npm integrity string."""
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512" or not expected:
        raise ValueError(f"unsupported integrity string {integrity!r}: expected sha512-<base64>")
    actual = base64.b64encode(hashlib.sha512(tarball).digest()).decode("ascii")
    if actual != expected:
        raise ValueError(f"tarball integrity mismatch: expected sha512-{expected}, "
                         f"got sha512-{actual}")


def extract_members(tarball: bytes) -> dict[str, bytes]:
    """The wanted files from the gzipped tarball, by their vendored names."""
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        for member_name, file_name in MEMBERS.items():
            try:
                member = archive.getmember(member_name)
            except KeyError:
                raise ValueError(f"tarball has no {member_name}") from None
            handle = archive.extractfile(member)
            if not member.isfile() or handle is None:
                raise ValueError(f"tarball member {member_name} is not a regular file")
            files[file_name] = handle.read()
    return files


def version_record(tarball_name: str, files: dict[str, bytes]) -> str:
    """The VERSION text: what was vendored, from where, under which license, with checksums."""
    lines = [
        "name: uPlot",
        f"version: {UPLOT_VERSION}",
        f"npm-package: uplot@{UPLOT_VERSION}",
        f"tarball: {tarball_name}",
        f"integrity: {UPLOT_INTEGRITY}",
        f"license: {UPLOT_LICENSE}",
    ]
    lines += [f"sha256 {name}: {hashlib.sha256(data).hexdigest()}"
              for name, data in sorted(files.items())]
    return "\n".join(lines) + "\n"


def write_vendor_directory(target: Path, files: dict[str, bytes], record: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (target / name).write_bytes(data)
    (target / "VERSION").write_text(record, encoding="utf-8")


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
        return response.read()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tarball-url", help="where to fetch the tarball (default: ask npm)")
    parser.add_argument("--target", type=Path, default=TARGET, help="vendor directory")
    options = parser.parse_args(argv)
    url = options.tarball_url or registry_tarball_url(UPLOT_VERSION)
    tarball = download(url)
    check_integrity(tarball, UPLOT_INTEGRITY)
    files = extract_members(tarball)
    # The registry host is left out of the record: the integrity pins the content wherever
    # the tarball came from.
    record = version_record(url.rsplit("/", 1)[-1], files)
    write_vendor_directory(options.target, files, record)
    print(f"uPlot {UPLOT_VERSION} vendored into {options.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
