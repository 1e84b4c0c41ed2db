"""Bytes on disk per raw point, raw plus all six levels, in the embedded store: tracked so a
change that stores more (or less) shows next to the timings. Four streams of 250k one-second
points; sensor values quantised to 0.01 and a full-entropy random walk, each kept with mean,
min and max only and with all seven aggregates."""

import os
import tempfile

import numpy as np

import datastream
from datastream.backends import duckdb

STREAMS, POINTS = 4, 250_000
START_US = 1_767_225_600_000_000
LEAN = ["mean", "min", "max"]
FULL = ["count", "sum", "sum_squares", "min", "max", "mean", "std_dev"]

def _values(kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "sensor":
        seconds = np.arange(POINTS) / 3600
        return np.round(20 + 5 * np.sin(seconds) + rng.normal(0, 0.3, POINTS), 2)
    return 100 + np.cumsum(rng.normal(0, 1, POINTS))

def bytes_per_point(kind: str, names: list[str]) -> float:
    """File bytes per point after ingesting and downsampling everything (the file's pages
    included, as a user's disk sees them)."""
    rng = np.random.default_rng(7)
    times = START_US + np.arange(POINTS, dtype=np.int64) * 1_000_000
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "store.duckdb")
        with datastream.Datastream(duckdb.Backend(path)) as ds:
            for number in range(STREAMS):
                stream = ds.ensure_stream({"n": number}, {}, names, "seconds")
                ds.append_arrays(stream, times, _values(kind, rng), unit="us")
            ds.downsample_streams(until=datastream.granularity.from_us(int(times[-1]) + 1))
        return os.path.getsize(path) / (STREAMS * POINTS)

class StoredBytes:
    timeout = 300
    unit = "bytes/point"
    params = (["sensor", "walk"], ["mean/min/max", "all seven"])
    param_names = ["data", "downsamplers"]

    def track_bytes_per_point(self, kind, downsamplers):
        return bytes_per_point(kind, LEAN if downsamplers == "mean/min/max" else FULL)
