"""The demo workload: telemetry-like signals written to an embedded file and read back."""

from __future__ import annotations

import datetime
import os
import time

import numpy as np

from . import Datastream, Granularity
from .backends import duckdb
from .kernels import jit
from .units import US_PER_SECOND

START = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
START_US = int(START.timestamp()) * US_PER_SECOND


def _signal(rng: np.random.Generator, kind: str, points: int) -> tuple[np.ndarray, np.ndarray]:
    """One stream: ~1 s sampling with jitter, a few long gaps, ~1% nulls (NaN)."""
    steps = rng.integers(900_000, 1_100_000, size=points, dtype=np.int64)
    gaps = rng.random(points) < 0.0005
    steps[gaps] += rng.integers(60, 3600, size=int(gaps.sum())) * US_PER_SECOND
    timestamps = START_US + np.cumsum(steps)
    phase = np.arange(points) / 3600.0
    if kind == "cpu":
        signal = 35 + 25 * np.sin(phase) + rng.normal(0, 8, points)
        signal = np.clip(signal, 0, 100).round(2)
    else:
        signal = (45 + 5 * np.sin(phase / 6) + rng.normal(0, 0.3, points)).round(2)
    signal[rng.random(points) < 0.01] = np.nan
    return timestamps, signal


DEMO_TAG = {"workload": "datastream-demo"}
"""A query tag of every demo stream: a demo run into another backend replaces only these."""


def run(path: str, streams: int, points: int, url: str | None = None) -> None:
    """Write ``streams`` x ``points`` datapoints, downsample, read back, print timings, with the
    compiled kernels from the first call (as ``DATASTREAM_KERNELS=compiled`` sets for a
    long-running ingest): the figures are those of steady work, numba's setup included once.
    Into the embedded file ``path`` (replaced), or into the backend of ``url`` (a connection
    URL of the command line), whose earlier demo streams are deleted first."""
    fallback, jit.FALLBACK = jit.FALLBACK, False
    try:
        _run(path, streams, points, url)
    finally:
        jit.FALLBACK = fallback


def _open(path: str, url: str | None) -> Datastream:
    if url is not None:
        from .cli.connection import open_store

        ds = open_store(None, url)
        assert ds is not None
        ds.delete_streams(DEMO_TAG)
        return ds
    for suffix in ("", ".wal"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    return Datastream(duckdb.Backend(path))


def _run(path: str, streams: int, points: int, url: str | None = None) -> None:
    rng = np.random.default_rng(7)
    data = [_signal(rng, "cpu" if i % 2 == 0 else "temperature", points) for i in range(streams)]
    print(f"datastream demo: {streams} streams x {points:,} points into {url or path}")

    with _open(path, url) as ds:
        ids = []
        for number in range(streams):
            kind = "cpu" if number % 2 == 0 else "temperature"
            ids.append(
                ds.ensure_stream(
                    {"host": f"node-{number // 2:02d}", "metric": kind, **DEMO_TAG},
                    {"unit": "%" if kind == "cpu" else "C", "stream_number": number},
                    ["mean", "min", "max", "std_dev"],
                    Granularity.Seconds,
                )
            )
        began = time.perf_counter()
        for stream_id, (timestamps, signal) in zip(ids, data, strict=True):
            ds.append_arrays(stream_id, timestamps, signal, unit="us")
        ds.flush()
        written = time.perf_counter() - began
        total = streams * points
        print(f"  wrote   {total:>12,} points in {written:7.2f} s  "
              f"({total / written:>12,.0f} points/s, durable)")

        began = time.perf_counter()
        until = max(int(t[-1]) for t, _ in data)
        ds.downsample_streams(until=START + datetime.timedelta(microseconds=until - START_US))
        elapsed = time.perf_counter() - began
        print(f"  downsampled all 6 levels in {elapsed:7.2f} s  "
              f"({total / elapsed:>12,.0f} points/s)")

        began = time.perf_counter()
        read = 0
        for stream_id in ids:
            read += len(ds.get_data(stream_id, Granularity.Seconds, start=START).to_arrow())
        elapsed = time.perf_counter() - began
        print(f"  read    {read:>12,} raw points in {elapsed:7.2f} s  "
              f"({read / elapsed:>12,.0f} points/s, Arrow)")

        began = time.perf_counter()
        middle = int(data[0][0][len(data[0][0]) // 2])
        window = START + datetime.timedelta(microseconds=middle - START_US)
        sample = ds.get_data(ids[0], Granularity.Seconds, start=window,
                             end=window + datetime.timedelta(minutes=10))
        dicts = list(sample)
        elapsed = time.perf_counter() - began
        print(f"  range   {len(dicts):>12,} raw points as dicts in {elapsed * 1000:7.1f} ms")

        began = time.perf_counter()
        hourly = list(ds.get_data(ids[0], Granularity.Hours, start=START))
        elapsed = time.perf_counter() - began
        print(f"  hourly  {len(hourly):>12,} buckets of {ds.get_tags(ids[0])['metric']} "
              f"in {elapsed * 1000:7.1f} ms; first: {hourly[0]['v'] if hourly else None}")
        found = ds.find_streams({"metric": "cpu", "stream_number": {"$gte": 10}})
        print(f"  query   {len(found)} cpu streams with stream_number >= 10")
    if url is None:
        size = os.path.getsize(path)
        print(f"  file    {size / 1e6:.1f} MB ({size / total:.1f} bytes/point)")
