"""Child of tests/storage/test_duckdb_large_commits.py: appends batches of full-entropy floats
large enough for DuckDB to write them straight into the file, acknowledging each batch (one
line, fsynced) only after ``flush()`` returned; downsamples every second batch. Runs until
killed. ``python -m tests.storage.large_commit_child PATH ACK_FILE``."""

from __future__ import annotations

import os
import sys

import numpy as np

import datastream
from datastream.backends import duckdb as duckdb_backend

BATCH = 400_000  # ~2.5 MB of encoded random walk: a commit that fills whole row groups
T0_US = 1_767_225_600_000_000  # 2026-01-01 UTC
TAGS = {"crash": "large commits"}


def batch(number: int) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps (µs, one second apart) and values of batch ``number``, the same every time."""
    times = T0_US + (number * BATCH + np.arange(BATCH, dtype=np.int64)) * 1_000_000
    return times, np.cumsum(np.random.default_rng(number).normal(0, 1, BATCH))


def main(path: str, ack_file: str) -> None:
    ds = datastream.Datastream(duckdb_backend.Backend(path))
    stream_id = ds.ensure_stream(TAGS, {}, ["mean", "min", "max"], "seconds")
    latest = ds.get_tags(stream_id)["latest_datapoint"]
    stored_us = 0 if latest is None else round(latest.timestamp() * 1e6) - T0_US
    number = 0 if latest is None else stored_us // 1_000_000 // BATCH + 1
    acks = os.open(ack_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    while True:
        times, values = batch(number)
        ds.append_arrays(stream_id, times, values, unit="us")
        ds.flush()
        os.write(acks, f"{number}\n".encode())
        os.fsync(acks)
        if number % 2 == 1:
            ds.downsample_streams()
        number += 1


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
