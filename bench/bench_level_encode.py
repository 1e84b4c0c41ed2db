"""CPU time the embedded store spends encoding level chunks, in two write patterns.

    PYTHONPATH=. .venv/bin/python bench/bench_level_encode.py [--kind walk] [--streams 10]
        [--points 300000] [--many 200] [--batches 40] [--batch 60] [--every 5]

* bulk: the ingest of ``bench/compare.py`` (``--streams`` streams of ``--points`` points,
  appended, flushed, downsampled once into a DuckDB file): a few large level chunks per
  stream and level.
* steady: ``--many`` streams receiving ``--batch`` points each per flush, downsampled every
  ``--every`` flushes: every downsample writes a small chunk per stream and level, the
  pattern where a chunk's fixed cost counts.

``--streams 0`` or ``--many 0`` skips that pattern.

Level encoding is timed by wrapping the store's ``chunks.encode_level`` (thread CPU time), so
the script measures any version of the library; kernels are loaded before the timing. Prints
the CPU seconds of the whole run and of level encoding, the chunks and their mean rows.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare  # noqa: E402

import datastream  # noqa: E402
from datastream.backends import duckdb  # noqa: E402
from datastream.storage.duckdb import chunks  # noqa: E402


class EncodeClock:
    """Thread CPU seconds, calls and rows of ``chunks.encode_level`` while installed."""

    def __init__(self) -> None:
        self.seconds, self.calls, self.rows = 0.0, 0, 0
        self._original = chunks.encode_level

    def __enter__(self) -> EncodeClock:
        def timed(table, *args, **kwargs):
            began = time.thread_time()
            try:
                return self._original(table, *args, **kwargs)
            finally:
                self.seconds += time.thread_time() - began
                self.calls += 1
                self.rows += table.num_rows

        chunks.encode_level = timed
        return self

    def __exit__(self, *exc: object) -> None:
        chunks.encode_level = self._original

    def report(self, label: str, total: float) -> None:
        each = self.seconds / max(self.calls, 1)
        print(f"{label}: {total:.2f} s CPU, level encoding {self.seconds:.3f} s CPU in "
              f"{self.calls:,} chunks of {self.rows / max(self.calls, 1):,.0f} rows on average "
              f"({each * 1e3:.2f} ms each), load {os.getloadavg()[0]:.2f}")


def bulk(kind: str, streams: int, points: int, folder: str) -> None:
    data = compare.make_dataset(kind, streams, points, 1)
    ds = datastream.Datastream(compare.duckdb_backend(os.path.join(folder, "bulk.duckdb")))
    ids = [ds.ensure_stream({"bench": "bulk", "n": n}, {}, compare.VALUE_NAMES, "seconds")
           for n in range(streams)]
    with EncodeClock() as clock:
        began = time.process_time()
        for stream_id, (t, v) in zip(ids, data.streams):
            ds.append_arrays(stream_id, t, v, unit="us")
        ds.flush()
        ds.downsample_streams(until=data.until)
        ds.close()
        clock.report(f"bulk {kind} {streams} x {points:,}", time.process_time() - began)


def steady(streams: int, batches: int, batch: int, every: int, folder: str) -> None:
    rng = np.random.default_rng(0)
    start = 1_700_000_000_000_000
    ds = datastream.Datastream(duckdb.Backend(os.path.join(folder, "steady.duckdb"), threads=1))
    ids = [ds.ensure_stream({"bench": "steady", "n": n}, {}, compare.VALUE_NAMES, "seconds")
           for n in range(streams)]
    levels = np.full(streams, 20.0)
    with EncodeClock() as clock:
        began = time.process_time()
        for number in range(batches):
            t = start + (number * batch + np.arange(batch, dtype=np.int64)) * 1_000_000
            for n, stream_id in enumerate(ids):  # sensor-like: a walk quantised to 0.01
                values = np.round(levels[n] + np.cumsum(rng.normal(0, 0.1, batch)), 2)
                levels[n] = values[-1]
                ds.append_arrays(stream_id, t, values, unit="us")
            ds.flush()
            if (number + 1) % every == 0:
                ds.downsample_streams()
        ds.close()
        clock.report(f"steady {streams} streams x {batches} flushes of {batch} points, "
                     f"downsampled every {every}", time.process_time() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="walk", choices=("sensor", "walk"))
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--points", type=int, default=300_000)
    parser.add_argument("--many", type=int, default=200)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch", type=int, default=60)
    parser.add_argument("--every", type=int, default=5)
    args = parser.parse_args()
    compare.warm_kernels()
    with tempfile.TemporaryDirectory() as folder:
        if args.streams:
            bulk(args.kind, args.streams, args.points, folder)
        if args.many:
            steady(args.many, args.batches, args.batch, args.every, folder)


if __name__ == "__main__":
    main()
