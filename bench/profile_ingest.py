"""Profile the ingest task of ``bench/compare.py`` (append + flush, then downsample_streams)
on the embedded store, each phase apart, so the avoidable work on the write path shows.

    PYTHONPATH=. .venv/bin/python bench/profile_ingest.py [--kind sensor|walk] [--streams 10]
        [--points 300000] [--sort tottime|cumtime] [--lines 30] [--timers] [--repeats 1]

``--timers`` replaces cProfile (whose per-call cost distorts the small steps) by wall clocks
around the main steps, and adds the minor page faults of each phase: on a VM where memory
touched for the first time is slow, the faults say where that time goes.
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
    parser.add_argument("--timers", action="store_true",
                        help="wall clocks around the main steps instead of cProfile")
    parser.add_argument("--repeats", type=int, default=1, help="runs (--timers only)")
    args = parser.parse_args()
    if args.timers:
        timed(args)
        return

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


STEPS = {  # step name -> (module, attribute holding the function or method)
    "prepare arrays": ("datastream.api", "Datastream._prepare_arrays"),
    "encode raw chunks": ("datastream.storage.codec", "encode_raw"),
    "read raw back": ("datastream.storage.duckdb.storage", "DuckDBStorage.read_raw"),
    "partials from raw": ("datastream.downsamplers", "partials_from_raw"),
    "encode level chunks": ("datastream.storage.codec", "encode_level"),
}


def timed(args) -> None:
    """Each phase's wall time and page faults, and the time inside each of ``STEPS``."""
    import collections
    import importlib
    import resource

    import datastream

    spent: collections.Counter = collections.Counter()

    def clock(name: str, func):
        def wrapper(*a, **k):
            began = time.perf_counter()
            try:
                return func(*a, **k)
            finally:
                spent[name] += time.perf_counter() - began
        return wrapper

    for name, (module, attribute) in STEPS.items():
        owner = importlib.import_module(module)
        *path, last = attribute.split(".")
        for part in path:
            owner = getattr(owner, part)
        setattr(owner, last, clock(name, getattr(owner, last)))

    def faults() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    data = compare.make_dataset(args.kind, args.streams, args.points, 1)
    compare.warm_kernels()
    for _ in range(args.repeats):
        spent.clear()
        path = os.path.join(tempfile.mkdtemp(), "profile.duckdb")
        began = time.perf_counter()
        ds = datastream.Datastream(compare.duckdb_backend(path))
        ids = [ds.ensure_stream({"bench": "profile", "n": n}, {}, compare.VALUE_NAMES,
                                "seconds") for n in range(args.streams)]
        phases = []
        for name, run, arguments in (("append+flush", _append, (ds, ids, data)),
                                     ("downsample", _downsample, (ds, data)),
                                     ("close", ds.close, ())):
            start, touched = time.perf_counter(), faults()
            run(*arguments)
            phases.append(f"{name} {time.perf_counter() - start:.3f} s"
                          f" ({faults() - touched} faults)")
        total = time.perf_counter() - began
        print(f"{args.kind}: {total:.3f} s, {data.total / total / 1e6:.2f} M points/s; "
              + ", ".join(phases))
        print("  " + ", ".join(f"{name} {seconds:.3f} s" for name, seconds in spent.items()))


def _downsample(ds, data) -> None:
    ds.downsample_streams(until=data.until)


def _append(ds, ids, data) -> None:
    for stream_id, (t, v) in zip(ids, data.streams):
        ds.append_arrays(stream_id, t, v, unit="us")
    ds.flush()


if __name__ == "__main__":
    main()
