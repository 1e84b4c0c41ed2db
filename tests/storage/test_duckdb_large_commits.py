"""SIGKILL during large commits of the embedded store (behaviour §4.3).

A commit of megabytes is written by DuckDB straight into the database file, row group by row
group, before COMMIT makes it visible (``storage.piece_counts``). A child appending such
batches is killed at random moments, several times over one file; after each kill the file
must open and hold every acknowledged batch exactly, and no part of any other batch.
"""

from __future__ import annotations

import datetime
import os
import random
import signal
import subprocess
import sys
import time

import duckdb
import numpy as np

import datastream
from datastream.backends import duckdb as duckdb_backend
from tests.storage import large_commit_child as child

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def acknowledged(ack_file: str) -> int:
    """How many batches were acknowledged (batch numbers are acknowledged in order)."""
    if not os.path.exists(ack_file):
        return 0
    with open(ack_file) as lines:
        numbers = [int(line) for line in lines if line.endswith("\n")]
    assert numbers == list(range(len(numbers))), "a batch was acknowledged twice or skipped"
    return len(numbers)


def run_and_kill(path: str, ack_file: str, rng: random.Random) -> None:
    before = acknowledged(ack_file)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.storage.large_commit_child", path, ack_file],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
    )
    try:
        deadline = time.monotonic() + 120
        while acknowledged(ack_file) <= before and process.poll() is None:
            assert time.monotonic() < deadline, "the child acknowledged nothing in 120 s"
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.5))  # somewhere inside a later append, flush or downsample
        assert process.poll() is None, f"the child exited with {process.returncode}"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


def check(path: str, ack_file: str) -> int:
    """The stored batches: whole, exact, in order, and at least the acknowledged ones."""
    with datastream.Datastream(duckdb_backend.Backend(path)) as ds:
        (found,) = ds.find_streams(child.TAGS)
        rows = ds.get_data(found["stream_id"], datastream.Granularity.Seconds,
                           start=datetime.datetime.min).to_arrow()
    times = rows.column("t").cast("int64").to_numpy()
    values = rows.column("v").to_numpy()
    stored, rest = divmod(len(times), child.BATCH)
    assert rest == 0, f"{rest} points of a batch that was not committed"
    assert stored >= acknowledged(ack_file)
    with duckdb.connect(path, read_only=True) as con:  # each batch filled one row group
        pieces = con.sql("SELECT count(*) FROM chunks WHERE level = 0").fetchall()[0][0]
    assert pieces == stored * 2048
    expected = [child.batch(number) for number in range(stored)]
    assert np.array_equal(times, np.concatenate([t for t, _ in expected] or [[]]))
    assert np.array_equal(values, np.concatenate([v for _, v in expected] or [[]]))
    return stored


def test_sigkill_during_large_commits_loses_nothing_acknowledged(tmp_path):
    seed = int(os.environ.get("DATASTREAM_CRASH_SEED", random.randrange(2**31)))
    rng = random.Random(seed)
    path, ack_file = str(tmp_path / "large.duckdb"), str(tmp_path / "acks")
    stored = 0
    for _ in range(3):
        run_and_kill(path, ack_file, rng)
        stored = check(path, ack_file)
    assert stored >= 3, f"DATASTREAM_CRASH_SEED={seed}: only {stored} batches stored"
    with datastream.Datastream(duckdb_backend.Backend(path)) as ds:
        ds.downsample_streams()
        (found,) = ds.find_streams(child.TAGS)
        hours = ds.get_data(found["stream_id"], datastream.Granularity.Hours,
                            start=datetime.datetime.min).to_arrow()
    # the levels written across the kills agree with the raw points (numpy as the oracle)
    values = np.concatenate([child.batch(number)[1] for number in range(stored)])
    per_hour = values[: values.size // 3600 * 3600].reshape(-1, 3600)
    assert hours.num_rows == per_hour.shape[0]
    np.testing.assert_allclose(hours.column("mean").to_numpy(), per_hour.mean(axis=1),
                               rtol=1e-9, atol=1e-9)
    assert np.array_equal(hours.column("min").to_numpy(), per_hour.min(axis=1))
    assert np.array_equal(hours.column("max").to_numpy(), per_hour.max(axis=1))


def test_two_datastreams_over_one_backend_see_each_others_large_commits(tmp_path):
    """Two ``Datastream`` objects of one process share one backend object: the large commit of
    one (written straight into the file) is read by the other, and both survive a reopen."""
    path = str(tmp_path / "shared.duckdb")
    backend = duckdb_backend.Backend(path)
    first, second = datastream.Datastream(backend), datastream.Datastream(backend)
    a = first.ensure_stream({"writer": 1}, {}, ["mean"], "seconds")
    b = second.ensure_stream({"writer": 2}, {}, ["mean"], "seconds")
    times_a, values_a = child.batch(0)
    times_b, values_b = child.batch(1)
    first.append_arrays(a, times_a, values_a, unit="us")
    second.append_arrays(b, times_b, values_b, unit="us")
    first.flush()
    second.flush()

    def raw(ds, stream_id):
        return ds.get_data(stream_id, datastream.Granularity.Seconds,
                           start=datetime.datetime.min).to_arrow().column("v").to_numpy()

    assert np.array_equal(raw(second, a), values_a) and np.array_equal(raw(first, b), values_b)
    first.close()
    second.close()
    backend.close()
    with datastream.Datastream(duckdb_backend.Backend(path)) as ds:
        assert np.array_equal(raw(ds, a), values_a) and np.array_equal(raw(ds, b), values_b)
        pieces = ds.backend._con.sql("SELECT count(*) FROM chunks WHERE level = 0").fetchall()
    assert pieces[0][0] % 2048 == 0
