"""``verify()`` per raw point: the columnar pass against bucket-by-bucket comparison alone.

    PYTHONPATH=. .venv/bin/python bench/bench_verify.py [--points 200000] [--repeats 3]

One sensor stream of ``bench/compare.py`` (1 Hz, jittered, quantised to 0.01) with every
float value downsampler, appended and downsampled into an in-memory store, then verified
twice per repeat: as shipped, and with the columnar pass switched off (every bucket through
the bucket-by-bucket comparison). Both must find nothing; the best time of each is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare  # noqa: E402

import datastream  # noqa: E402
from datastream.backends import duckdb as duckdb_backend  # noqa: E402
from datastream.verification import columnar  # noqa: E402


def timed(ds: datastream.Datastream) -> float:
    began = time.perf_counter()
    result = ds.verify()
    elapsed = time.perf_counter() - began
    if result:
        raise RuntimeError(f"verify found {len(result)} mismatches in a clean store")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    t, v = compare.stream_arrays("sensor", 1, 0, args.points)
    with datastream.Datastream(duckdb_backend.Backend()) as ds:
        stream_id = ds.ensure_stream({"bench": "verify"}, {}, list(columnar.VALUE_LABELS),
                                     "seconds")
        ds.append_arrays(stream_id, t, v, unit="us")
        ds.downsample_streams(until=compare.to_datetime(int(t[-1]) + 1))
        buckets = ds.verify().checked["buckets"]
        columns, buckets_only = [], []
        for _ in range(args.repeats):
            columns.append(timed(ds))
            with mock.patch.object(columnar, "supported", return_value=False):
                buckets_only.append(timed(ds))
    fast, slow = min(columns), min(buckets_only)
    print(f"verify() of {args.points:,} points ({buckets:,} buckets), best of {args.repeats}:")
    print(f"  columnar pass       {fast:7.2f} s  {fast / args.points * 1e6:6.1f} µs/point")
    print(f"  bucket by bucket    {slow:7.2f} s  {slow / args.points * 1e6:6.1f} µs/point")
    print(f"  ratio               {slow / fast:7.1f}×")


if __name__ == "__main__":
    main()
