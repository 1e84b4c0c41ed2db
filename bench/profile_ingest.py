"""Profile the ingest task of ``bench/compare.py`` (append + flush, then downsample_streams)
on the embedded store, each phase apart, so the avoidable work on the write path shows.

    PYTHONPATH=. .venv/bin/python bench/profile_ingest.py [--kind sensor|walk] [--streams 10]
        [--points 300000] [--sort tottime|cumtime] [--lines 30]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="sensor", choices=("sensor", "walk"))
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--points", type=int, default=300_000)
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--lines", type=int, default=30)
    args = parser.parse_args()

    import datastream

    data = compare.make_dataset(args.kind, args.streams, args.points, 1)
    compare.warm_kernels()
    work = tempfile.mkdtemp()
    path = os.path.join(work, "profile.duckdb")
    started = time.perf_counter()
    ds = datastream.Datastream(compare.duckdb_backend(path))
    ids = [ds.ensure_stream({"bench": "profile", "n": n}, {}, compare.VALUE_NAMES, "seconds")
           for n in range(args.streams)]
    phases = {
        "append+flush": lambda: _append(ds, ids, data),
        "downsample": lambda: ds.downsample_streams(until=data.until),
        "close": ds.close,
    }
    for name, run in phases.items():
        profile = cProfile.Profile()
        began = time.perf_counter()
        profile.runcall(run)
        print(f"== {name}: {time.perf_counter() - began:.3f} s")
        pstats.Stats(profile).sort_stats(args.sort).print_stats(args.lines)
    total = time.perf_counter() - started
    print(f"total {total:.3f} s, {data.total / total / 1e6:.2f} M points/s,"
          f" {os.path.getsize(path) / data.total:.2f} B/point, load {os.getloadavg()[0]:.2f}")


def _append(ds, ids, data) -> None:
    for stream_id, (t, v) in zip(ids, data.streams):
        ds.append_arrays(stream_id, t, v, unit="us")
    ds.flush()


if __name__ == "__main__":
    main()
