"""Steady ingest into an embedded file: the rate and the file size as the store grows.

    PYTHONPATH=. .venv/bin/python bench/bench_steady_ingest.py [--batches 500] [--streams 10]

Telemetry arrives continuously: every batch appends ``--batch`` points (one per simulated
second) to each of ``--streams`` full-entropy random-walk streams and flushes; every
``--downsample-every`` batches the streams are downsampled. Printed per report interval: the
ingest rate of that interval and the file size, so a rate that degrades as the file grows (a
storage layout that copies old data at each checkpoint) shows at once; at the end, the overall
rate and bytes per point on disk.
"""

from __future__ import annotations

import argparse
import datetime
import os
import tempfile
import time

import numpy as np

import datastream
from datastream.backends import duckdb

FAR = datetime.datetime(2100, 1, 1, tzinfo=datetime.timezone.utc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=500)
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--batch", type=int, default=2000, help="points per stream and batch")
    parser.add_argument("--downsample-every", type=int, default=60)
    parser.add_argument("--report-every", type=int, default=100)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "steady.duckdb")
        ds = datastream.Datastream(duckdb.Backend(path, threads=1))
        ids = [ds.ensure_stream({"n": n}, {}, ["mean", "min", "max"], "seconds")
               for n in range(arguments.streams)]
        rng = np.random.default_rng(0)
        first = np.datetime64("2026-01-01T00:00:00", "us")
        began = interval_began = time.perf_counter()
        per_batch = arguments.batch * arguments.streams
        print(f"load {os.getloadavg()[0]:.1f}")
        for step in range(arguments.batches):
            offsets = np.arange(arguments.batch) + step * arguments.batch
            stamps = first + offsets * np.timedelta64(1, "s")
            for stream_id in ids:
                ds.append_arrays(stream_id, stamps, np.cumsum(rng.normal(0, 1, arguments.batch)))
            ds.flush()
            if (step + 1) % arguments.downsample_every == 0:
                ds.downsample_streams(until=FAR)
            if (step + 1) % arguments.report_every == 0:
                now = time.perf_counter()
                rate = arguments.report_every * per_batch / (now - interval_began)
                print(f"batch {step + 1:>6}: {rate / 1e6:5.2f} M points/s, file "
                      f"{os.path.getsize(path) / 1e6:7.1f} MB", flush=True)
                interval_began = now
        ds.close()
        total = arguments.batches * per_batch
        elapsed = time.perf_counter() - began
        size = os.path.getsize(path)
        print(f"total {elapsed:.1f} s, {total / elapsed / 1e6:.2f} M points/s, file "
              f"{size / 1e6:.1f} MB = {size / total:.1f} B/point (load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
