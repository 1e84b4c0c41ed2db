"""The ``datastream`` command line (``datastream ...`` or ``python -m datastream ...``).

Built on click and rich, which are imported only here: ``import datastream`` never loads them.
One module per job: :mod:`.connection` (``--db`` / ``--url``), :mod:`.options` (shared
options), :mod:`.readers` and :mod:`.line_protocol` (input files), :mod:`.plan` and
:mod:`.importer` (resumable bulk import), :mod:`.writers` (export files), and one module per
command group. The user guide is ``docs/guide/cli.md``.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 datastream error or verify
    mismatch, 2 bad input or usage)."""
    from .app import run

    return run(argv)
