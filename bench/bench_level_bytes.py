"""Where the bytes of a store go: chunk bytes per level and per level column.

    PYTHONPATH=. .venv/bin/python bench/bench_level_bytes.py [--kinds sensor,walk]
        [--streams 2] [--points 300000]

Runs the task of ``bench/compare.py`` (same seeded data, public API, a DuckDB file), then reads
the ``chunks`` table back: per level, stored chunk bytes per raw point, and for the 10 s level
the bytes per row of each column (``codec.describe`` of its chunks). The file size is printed
beside the sum of chunk bodies, so DuckDB's own overhead shows too.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile

import duckdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare  # noqa: E402

import datastream  # noqa: E402
from datastream.storage import codec  # noqa: E402


def level_names(connection: duckdb.DuckDBPyConnection) -> dict[int, str]:
    names = {0: "raw"}
    names.update(connection.execute("SELECT code, level_key FROM levels").fetchall())
    return names


def chunk_bodies(connection: duckdb.DuckDBPyConnection) -> list[tuple[int, int, bytes]]:
    """(level code, rows, body) per chunk, its pieces joined."""
    pieces = connection.execute(
        "SELECT stream_key, level, seq, rows, body FROM chunks ORDER BY stream_key, level, seq,"
        " part").fetchall()
    joined: dict[tuple, list[bytes]] = {}
    for key, level, seq, count, body in pieces:
        joined.setdefault((key, level, seq, count), []).append(bytes(body))
    return [(level, count, b"".join(parts)) for (_, level, _, count), parts in joined.items()]


def report(kind: str, streams: int, points: int) -> None:
    data = compare.make_dataset(kind, streams, points, 1)
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "store.duckdb")
        ds = datastream.Datastream(compare.duckdb_backend(path))
        try:
            compare.datastream_task(ds, data, compare.Clock())
        finally:
            ds.close()
        size = compare.duckdb_file_bytes(path)
        connection = duckdb.connect(path, read_only=True)
        try:
            names, bodies = level_names(connection), chunk_bodies(connection)
        finally:
            connection.close()
    total = data.total
    per_level: dict[str, int] = collections.Counter()
    columns: dict[str, int] = collections.Counter()
    level_rows = 0
    for level, count, body in bodies:
        name = names[level]
        per_level[name] += len(body)
        if name == "S" and body[:1] == b"C":
            level_rows += count
            for column, codec_name, stored in codec.describe(body[1:]):
                columns[f"{column}:{codec_name}"] += stored
    chunk_total = sum(per_level.values())
    print(f"{kind}: {total:,} points, file {size / total:.2f} B/pt, chunk bodies "
          f"{chunk_total / total:.2f} B/pt; per level (B/pt): "
          + ", ".join(f"{name} {b / total:.3f}" for name, b in per_level.items()))
    if level_rows:
        print(f"  10 s level: {per_level['S'] / level_rows:.2f} B/row; per column (B/row): "
              + ", ".join(f"{name} {b / level_rows:.2f}" for name, b in columns.items() if b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="sensor,walk")
    parser.add_argument("--streams", type=int, default=2)
    parser.add_argument("--points", type=int, default=300_000)
    args = parser.parse_args()
    for kind in args.kinds.split(","):
        report(kind, args.streams, args.points)


if __name__ == "__main__":
    main()
