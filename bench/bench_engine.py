"""End-to-end ingest + downsampling into a file: datastream beside DuckDB SQL, same data, one run.

datastream: ``append_arrays`` per stream, ``flush`` (durable), ``downsample_streams`` (all six
levels, count/sum/sum_squares/min/max/mean/std_dev plus the eight time downsamplers).
DuckDB: load the same points into a table of a file, then one ``INSERT ... SELECT`` per level
with floor bucketing computing count, sum, sum of squares, min, max, avg, stddev_pop.

    .venv/bin/python bench/bench_engine.py --streams 10 --points 500000
"""

from __future__ import annotations

import argparse
import datetime
import os
import tempfile
import time

import duckdb
import numpy as np
import pyarrow as pa

import datastream
from datastream.backends import duckdb as duckdb_backend

START_US = 1_767_225_600_000_000  # 2026-01-01
WIDTHS_S = (10, 60, 600, 3600, 21600, 86400)


def make_data(streams: int, points: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(3)
    data = []
    for _ in range(streams):
        steps = rng.integers(500_000, 1_500_000, size=points, dtype=np.int64)
        timestamps = START_US + np.cumsum(steps)
        values = (50 + 20 * np.sin(np.arange(points) / 3600) + rng.normal(0, 2, points)).round(2)
        data.append((timestamps, values))
    return data


def run_datastream(path: str, data) -> float:
    began = time.perf_counter()
    with datastream.Datastream(duckdb_backend.Backend(path)) as ds:
        ids = [
            ds.ensure_stream({"n": n}, {}, ["mean", "min", "max", "std_dev"], "seconds")
            for n in range(len(data))
        ]
        for stream_id, (timestamps, values) in zip(ids, data, strict=True):
            ds.append_arrays(stream_id, timestamps, values, unit="us")
        ds.flush()
        latest = max(int(t[-1]) for t, _ in data)
        until = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(
            microseconds=latest
        )
        ds.downsample_streams(until=until)
    return time.perf_counter() - began


def run_duckdb(path: str, data) -> float:
    points = pa.table(
        {
            "stream": np.concatenate(
                [np.full(len(t), n, np.int32) for n, (t, _) in enumerate(data)]
            ),
            "t": np.concatenate([t for t, _ in data]),
            "v": np.concatenate([v for _, v in data]),
        }
    )
    began = time.perf_counter()
    con = duckdb.connect(path)
    con.execute("SET threads = 1")
    con.register("points", points)
    con.execute("CREATE TABLE raw AS SELECT * FROM points")
    for width in WIDTHS_S:
        bucket = f"(t // {width * 1_000_000}) * {width * 1_000_000}"
        con.execute(
            f"CREATE TABLE level_{width} AS SELECT stream, {bucket} AS b, count(v) AS c, "
            "sum(v) AS s, sum(v * v) AS q, min(v) AS l, max(v) AS u, avg(v) AS m, "
            f"stddev_pop(v) AS d FROM raw GROUP BY stream, {bucket}"
        )
    con.close()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--points", type=int, default=500_000)
    arguments = parser.parse_args()
    data = make_data(arguments.streams, arguments.points)
    total = arguments.streams * arguments.points
    with tempfile.TemporaryDirectory() as directory:
        ours = run_datastream(os.path.join(directory, "ds.duckdb"), data)
        peer = run_duckdb(os.path.join(directory, "peer.duckdb"), data)
    print(f"{total:,} points, {arguments.streams} streams, all six levels, into a file")
    print(f"datastream  {ours:7.2f} s  {total / ours / 1e6:6.2f} M points/s")
    print(f"DuckDB SQL  {peer:7.2f} s  {total / peer / 1e6:6.2f} M points/s")
    print(f"ratio (DuckDB time / datastream time): {peer / ours:.2f}")


if __name__ == "__main__":
    main()
