"""Helpers for the command line tests: run a command in process (click's runner) or as a
real ``python -m datastream`` subprocess, and read a store back."""

from __future__ import annotations

import datetime
import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from click.testing import CliRunner, Result

import datastream
from datastream.backends import duckdb
from datastream.cli import connection
from datastream.cli.app import cli

ROOT = Path(__file__).resolve().parents[2]
START = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
EVERYTHING = datetime.datetime.min


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)


def subprocess_run(*args: str, **options) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "datastream", *map(str, args)], env=environment,
                          capture_output=True, text=True, timeout=300, **options)


def stored(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every stream of a store: canonical query text → (t µs, values as float)."""
    with datastream.Datastream(duckdb.Backend(str(path))) as ds:
        result = {}
        for tags in ds.find_streams():
            table = ds.get_data(tags["stream_id"], tags["highest_granularity"],
                                start=EVERYTHING).to_arrow()
            key = ",".join(f"{k}={v}" for k, v in sorted(datastream.Stream(tags).tags.items()))
            t = table.column("t").cast("int64").to_numpy()
            v = table.column("v").cast("float64").to_numpy(zero_copy_only=False)
            result[key] = (t, v)
        return result


def stream_count(path: Path) -> int:
    if not path.exists():
        return 0
    with datastream.Datastream(duckdb.Backend(str(path))) as ds:
        return len(ds.find_streams())


Row = tuple[str, str, int, float]


def sample_rows(streams: int = 3, points: int = 50, seed: int = 1) -> list[Row]:
    """(host, metric, t µs, value) rows, streams interleaved, one null per stream."""
    rng = np.random.default_rng(seed)
    start_us = int(START.timestamp()) * 1_000_000
    rows = []
    for point in range(points):
        for number in range(streams):
            value = float(np.round(rng.normal(50, 10), 3)) if point != 7 else float("nan")
            rows.append((f"node-{number}", "cpu", start_us + point * 1_000_000 + number, value))
    return rows


def freeze_clock(monkeypatch, now: datetime.datetime) -> None:
    """Commands open their store with a clock that says ``now`` (retention counts back from
    the clock's now, so exact counts need a fixed one)."""
    monkeypatch.setattr(connection, "Datastream",
                        functools.partial(datastream.Datastream, clock=lambda: now))


def minutely_store(path: Path, now: datetime.datetime, days: int = 3) -> str:
    """A store with stream ``{"n": "x"}`` (mean, min, max from seconds): one point a minute
    from START for ``days`` days, value = minutes since START, downsampled at ``now``."""
    with datastream.Datastream(duckdb.Backend(str(path)), clock=lambda: now) as ds:
        stream_id = ds.ensure_stream({"n": "x"}, {}, ["mean", "min", "max"], "seconds")
        minutes = np.arange(days * 1440, dtype=np.int64)
        start_us = int(START.timestamp()) * 1_000_000
        ds.append_arrays(stream_id, start_us + minutes * 60_000_000, minutes.astype(float),
                         unit="us")
        ds.downsample_streams()
    return stream_id


def table_rows(output: str) -> list[list[str]]:
    """The cells of each body row of the rich tables in ``output``."""
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in output.splitlines()
            if line.startswith("│")]
