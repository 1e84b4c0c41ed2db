"""Retention soak: a simulated year of telemetry replayed at full speed with an injected clock.

    PYTHONPATH=. .venv/bin/python bench/soak_retention.py [--streams 100] [--days 365]
        [--step 1] [--csv bench/soak_retention.csv]

``--streams`` sensor-like streams (values quantised to 0.01) get one point every ``--step``
simulated seconds, a simulated day at a time through ``append_table``; after each day the clock
moves to the end of the day and ``downsample_streams`` closes the day's buckets and applies the
retention: raw points 7 days, 10-second buckets 30 days, minutes a year, coarser levels forever.
Printed and written to ``--csv`` per ``--report-days``: the simulated day, the file size (DuckDB
file plus its write-ahead log, allocated bytes), the raw points kept, the ingest rate of the
period (points appended and downsampled per wall second) and the share of the wall time spent
in retention. A store with retention must level off in size once the shortest horizons are
reached (only minutes and coarser grow, ~60x slower than raw), and its rate must not degrade.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import tempfile
import time

import numpy as np
import pyarrow as pa

import datastream
from datastream.backends import duckdb

DAY_S = 86_400
START = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
RETENTION = {
    "seconds": datetime.timedelta(days=7),
    "10seconds": datetime.timedelta(days=30),
    "minutes": datetime.timedelta(days=365),
}


class Clock:
    """The injected clock: simulated time, moved by the replay."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime.datetime:
        return self.now


def allocated_bytes(path: str) -> int:
    """Bytes on disk of the store file and its log (blocks allocated, not apparent length)."""
    total = 0
    for name in (path, path + ".wal"):
        if os.path.exists(name):
            total += os.stat(name).st_blocks * 512
    return total


def day_table(ids: list[str], day: int, step: int, rng: np.random.Generator) -> pa.Table:
    """One simulated day of every stream as one long table (stream_id, timestamp, value)."""
    per_stream = DAY_S // step
    start_us = int(START.timestamp() * 1_000_000) + day * DAY_S * 1_000_000
    stamps = start_us + np.arange(per_stream, dtype=np.int64) * step * 1_000_000
    phase = (np.arange(per_stream) + day * per_stream) * step / 3600.0
    columns_id, columns_t, columns_v = [], [], []
    for index, stream_id in enumerate(ids):
        values = 20 + 5 * np.sin(phase + index) + rng.normal(0, 0.1, per_stream)
        columns_id.append(pa.repeat(pa.scalar(stream_id), per_stream))
        columns_t.append(pa.array(stamps, pa.timestamp("us", tz="UTC")))
        columns_v.append(pa.array(np.round(values, 2)))
    return pa.table({
        "stream_id": pa.concat_arrays(columns_id),
        "timestamp": pa.concat_arrays(columns_t),
        "value": pa.concat_arrays(columns_v),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--step", type=int, default=1, help="simulated seconds between points")
    parser.add_argument("--report-days", type=int, default=7)
    parser.add_argument("--csv", default=None, help="write the report rows to this CSV file")
    parser.add_argument("--path", default=None, help="store file (default: a temporary one)")
    arguments = parser.parse_args()
    folder = tempfile.TemporaryDirectory()
    path = arguments.path or os.path.join(folder.name, "soak.duckdb")
    clock = Clock()
    ds = datastream.Datastream(duckdb.Backend(path, threads=1), clock=clock)
    ids = [ds.ensure_stream({"soak": index}, {}, ["mean", "min", "max"], "seconds")
           for index in range(arguments.streams)]
    ds.set_retention(None, RETENTION)
    rng = np.random.default_rng(0)
    rows = []
    period_points = 0
    period_wall = period_retention = 0.0
    began = time.perf_counter()
    print(f"{arguments.streams} streams, one point every {arguments.step} s, "
          f"{arguments.days} simulated days; load {os.getloadavg()[0]:.1f}")
    print(f"{'day':>5} {'file MB':>9} {'B/pt kept':>9} {'raw kept':>11} {'M pts/s':>8}"
          f" {'retention %':>11}")
    for day in range(arguments.days):
        table = day_table(ids, day, arguments.step, rng)
        started = time.perf_counter()
        ds.append_table(table)
        clock.now = START + datetime.timedelta(days=day + 1)
        ds.downsample_streams()  # closes the day's buckets, then applies the retention
        period_wall += time.perf_counter() - started
        period_points += table.num_rows
        # apply_retention again on its own to time it (it finds little left to do)
        started = time.perf_counter()
        ds.apply_retention()
        period_retention += time.perf_counter() - started
        if (day + 1) % arguments.report_days == 0 or day + 1 == arguments.days:
            ds.flush()
            size = allocated_bytes(path)
            kept = sum(ds.get_data(stream_id, "seconds", start=START).to_arrow().num_rows
                       for stream_id in ids[:1]) * arguments.streams
            row = {
                "day": day + 1,
                "file_mb": round(size / 1e6, 2),
                "bytes_per_point_kept": round(size / max(kept, 1), 2),
                "raw_points_kept": kept,
                "m_points_per_s": round(period_points / period_wall / 1e6, 3),
                "retention_share": round(100 * period_retention / (period_wall
                                                                   + period_retention), 1),
            }
            rows.append(row)
            print(f"{row['day']:>5} {row['file_mb']:>9.1f} {row['bytes_per_point_kept']:>9.2f}"
                  f" {kept:>11,} {row['m_points_per_s']:>8.3f} {row['retention_share']:>11.1f}",
                  flush=True)
            period_points = 0
            period_wall = period_retention = 0.0
    ds.close()
    print(f"total {time.perf_counter() - began:.0f} s wall; final file "
          f"{allocated_bytes(path) / 1e6:.1f} MB; load {os.getloadavg()[0]:.1f}")
    if arguments.csv:
        with open(arguments.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    folder.cleanup()


if __name__ == "__main__":
    main()
