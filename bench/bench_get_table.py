"""get_table over many streams beside the Python loops a user would write without it.

    PYTHONPATH=. .venv/bin/python bench/bench_get_table.py [--streams 1000] [--points 1000]

One embedded DuckDB file, ``--streams`` streams of ``--points`` raw points each. Timed, best
of ``--rounds``:
- ``get_table``: one call, the long Arrow table with ``stream_id`` and two tag columns;
- loop of ``get_data(...).to_arrow()`` per stream, then tag columns and one concat;
- loop of ``get_data`` iterated as dicts into one list of rows (what the old API offered).
The same is done at the minutes level after downsampling. Figures go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import tempfile
import time

import numpy as np
import pyarrow as pa

import datastream
from datastream.backends import duckdb

EVER = datetime.datetime.min


def build(path: str, streams: int, points: int) -> datastream.Datastream:
    ds = datastream.Datastream(duckdb.Backend(path))
    start = np.datetime64("2026-01-01T00:00:00", "us")
    stamps = start + np.arange(points) * np.timedelta64(1, "s")
    rng = np.random.default_rng(7)
    for number in range(streams):
        stream_id = ds.ensure_stream(
            {"host": f"node-{number:04d}", "metric": "cpu"}, {}, ["mean", "min", "max"],
            datastream.Granularity.Seconds,
        )
        ds.append_arrays(stream_id, stamps, np.round(rng.normal(50, 5, points), 2))
    ds.downsample_streams(until=datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone.utc))
    ds.flush()
    return ds


def loop_arrow(ds: datastream.Datastream, granularity: str) -> pa.Table:
    parts = []
    for stream in ds.find_streams({"metric": "cpu"}):
        part = ds.get_data(stream["stream_id"], granularity, start=EVER).to_arrow()
        repeat = part.num_rows
        part = part.add_column(0, "metric", pa.array([stream["metric"]] * repeat))
        part = part.add_column(0, "host", pa.array([stream["host"]] * repeat))
        parts.append(part.add_column(0, "stream_id", pa.array([stream["stream_id"]] * repeat)))
    return pa.concat_tables(parts)


def loop_dicts(ds: datastream.Datastream, granularity: str) -> list[dict]:
    rows = []
    for stream in ds.find_streams({"metric": "cpu"}):
        for point in ds.get_data(stream["stream_id"], granularity, start=EVER):
            rows.append({"stream_id": stream["stream_id"], "host": stream["host"],
                         "metric": stream["metric"], **point})
    return rows


def best(function, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        function()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        began = time.perf_counter()
        ds = build(os.path.join(folder, "tables.duckdb"), arguments.streams, arguments.points)
        print(f"built {arguments.streams} x {arguments.points} in "
              f"{time.perf_counter() - began:.1f} s (load {os.getloadavg()[0]:.1f})")
        for granularity in ("seconds", "minutes"):
            table = ds.get_table({"metric": "cpu"}, granularity, tags=("host", "metric"))
            rows = table.num_rows
            assert loop_arrow(ds, granularity).num_rows == rows == len(loop_dicts(ds, granularity))
            ours = best(lambda g=granularity: ds.get_table({"metric": "cpu"}, g,
                                                           tags=("host", "metric")),
                        arguments.rounds)
            arrow = best(lambda g=granularity: loop_arrow(ds, g), arguments.rounds)
            dicts = best(lambda g=granularity: loop_dicts(ds, g), max(1, arguments.rounds - 2))
            print(f"{granularity:8s} {rows:>9,} rows  get_table {ours:6.2f} s "
                  f"({rows / ours / 1e6:5.2f} M rows/s)  loop+to_arrow {arrow:6.2f} s "
                  f"({arrow / ours:4.1f}x)  loop of dicts {dicts:6.2f} s ({dicts / ours:4.1f}x)")
        ds.close()


if __name__ == "__main__":
    main()
