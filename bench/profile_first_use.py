"""What a fresh process pays for its first calls, on the kernel cache as it is (warm after
``datastream warmup``): each case runs in a new interpreter and prints its phases' wall times,
the whole process's, and whether numba got imported.

    PYTHONPATH=. .venv/bin/python bench/profile_first_use.py [--repeats 3] [--points 1000000]
        [--names mean,min,max] [--kernels auto|compiled]

* ``read``: a file of ``--points`` raw points (written once, beforehand) opened and read as
  Arrow twice: a script's or a notebook's first read, then its second.
* ``ingest``: ``--points`` points appended to an in-memory store, flushed, downsampled, and one
  level read back.

``--kernels`` sets ``DATASTREAM_KERNELS`` for the children (``compiled``: the compiled kernels
from the first call, numba's setup paid there).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = """
import datetime, json, sys, time
began = time.perf_counter()
import numpy as np
import datastream
from datastream.backends import duckdb

case, path, points, names = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split(",")
start = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
t = 1_577_836_800_000_000 + np.arange(points, dtype=np.int64) * 1_000_000
v = np.round(np.random.default_rng(1).normal(20, 5, points), 2)
phases = {}

def lap(name, mark):
    phases[name] = round(time.perf_counter() - mark, 4)
    return time.perf_counter()

if case == "write":
    with datastream.Datastream(duckdb.Backend(path)) as ds:
        ds.append_arrays(ds.ensure_stream({"first": "use"}, {}, names, "seconds"), t, v,
                         unit="us")
elif case == "read":
    with datastream.Datastream(duckdb.Backend(path)) as ds:
        stream_id = ds.find_streams({"first": "use"})[0]["stream_id"]
        mark = time.perf_counter()
        ds.get_data(stream_id, "seconds", start=start).to_arrow()
        mark = lap("first read", mark)
        ds.get_data(stream_id, "seconds", start=start).to_arrow()
        lap("second read", mark)
else:
    with datastream.Datastream() as ds:
        stream_id = ds.ensure_stream({"first": "use"}, {}, names, "seconds")
        mark = time.perf_counter()
        ds.append_arrays(stream_id, t, v, unit="us")
        ds.flush()
        mark = lap("append+flush", mark)
        ds.downsample_streams(until=start + datetime.timedelta(days=400))
        mark = lap("downsample", mark)
        ds.get_data(stream_id, "minutes", start=start).to_arrow()
        lap("level read", mark)
phases["process"] = round(time.perf_counter() - began, 4)
print(json.dumps({"phases": phases, "numba": "numba" in sys.modules}))
"""


def child(case: str, path: str, args: argparse.Namespace) -> dict:
    """One case in a new interpreter, started in the store's folder: ``-c`` puts the working
    directory first on the path, and only PYTHONPATH may say which datastream runs."""
    env = dict(os.environ, DATASTREAM_KERNELS=args.kernels)
    done = subprocess.run([sys.executable, "-c", CHILD, case, path, str(args.points),
                           args.names], env=env, capture_output=True, text=True, check=True,
                          cwd=os.path.dirname(path))
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--names", default="mean,min,max")
    parser.add_argument("--kernels", default="auto", choices=("auto", "compiled"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "first-use.duckdb")
        child("write", path, args)
        for case in ("read", "ingest"):
            for _ in range(args.repeats):
                out = child(case, path, args)
                shown = ", ".join(f"{name} {seconds * 1e3:.0f} ms"
                                  for name, seconds in out["phases"].items())
                print(f"{case} ({args.points:,} points, {args.names}, kernels {args.kernels}): "
                      f"{shown}; numba {'imported' if out['numba'] else 'not imported'}")


if __name__ == "__main__":
    main()
