"""Chunk bodies out of a DuckDB result: views of the result's buffer against a combined copy.

    PYTHONPATH=. .venv/bin/python bench/bench_chunk_views.py [--points 1000000] [--repeats 10]

Stores raw sensor points of one stream in a file, then per repeat opens it read-only, fetches
the raw pieces as a read does, and times ``storage.whole_chunk_views`` against the previous way
(``combine_chunks``: a copy of every body, even of a result in one batch).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import duckdb
import numpy as np
import pyarrow as pa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare  # noqa: E402

import datastream  # noqa: E402
from datastream.storage.duckdb import storage  # noqa: E402


def combined_views(found: pa.Table) -> list[memoryview]:
    """The bodies as views of one combined copy of the result's pieces (rows in seq order)."""
    seq = found.column("seq").to_numpy()
    body = found.column("body").combine_chunks()
    _, offsets, data = body.buffers()
    width = np.int64 if pa.types.is_large_binary(body.type) else np.int32
    ends = np.frombuffer(offsets, width)[body.offset:body.offset + len(body) + 1]
    starts = np.flatnonzero(np.concatenate(([True], seq[1:] != seq[:-1])))
    bounds = ends[np.append(starts, len(seq))].tolist()
    view = memoryview(data)
    return [view[low:high] for low, high in zip(bounds[:-1], bounds[1:])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    t, v = compare.stream_arrays("sensor", 7, 1, args.points)
    path = os.path.join(tempfile.mkdtemp(), "raw.duckdb")
    with datastream.Datastream(compare.duckdb_backend(path)) as ds:
        stream_id = ds.ensure_stream({"bench": "raw"}, {}, ["mean"], "seconds")
        ds.append_arrays(stream_id, t, v, unit="us")
    ways = {"combined copy": combined_views, "views": storage.whole_chunk_views}
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.repeats):
        con = duckdb.connect(path, read_only=True)
        found = con.sql("SELECT seq, part, body FROM chunks WHERE level = 0").to_arrow_table()
        for name, way in ways.items():
            began = time.perf_counter()
            bodies = way(found)
            seconds[name].append(time.perf_counter() - began)
        con.close()
    print(f"{len(bodies)} bodies, {found.num_rows} pieces in {found.column('body').num_chunks}"
          f" batch(es), {found.nbytes:,} bytes")
    for name, figures in seconds.items():
        print(f"  {name}: {statistics.median(figures) * 1e3:.2f} ms (median)")


if __name__ == "__main__":
    main()
