"""``downsample``, ``backprocess`` and ``verify`` end to end."""

from __future__ import annotations

import datetime

import datastream
from datastream.backends import duckdb

from .support import invoke, subprocess_run
from .test_streams_command import make_store


def test_downsample_then_verify_clean(tmp_path):
    store = make_store(tmp_path)
    result = invoke("downsample", "--db", store, "--until", "2000-01-02", "--tag", "host=a")
    assert result.exit_code == 0 and "downsampled 1 streams" in result.output
    with datastream.Datastream(duckdb.Backend(str(store))) as ds:
        until = {tags["host"]: tags["downsampled_until"]["10seconds"]
                 for tags in ds.find_streams()}
    assert until["a"] == datetime.datetime(2000, 1, 1, 0, 0, 20, tzinfo=datetime.timezone.utc)
    assert until["b"] is None
    checked = invoke("verify", "--db", store)
    assert checked.exit_code == 0, checked.output
    assert "checked 3 streams, 2 buckets" in checked.output and "0 mismatches" in checked.output


def test_verify_reports_a_tampered_bucket(tmp_path):
    store = make_store(tmp_path)
    invoke("downsample", "--db", store, "--until", "2000-01-02")
    with datastream.Datastream(duckdb.Backend(str(store))) as ds:
        stream_id = ds.find_streams({"host": "a"})[0]["stream_id"]
        rows = ds.backend.read_level("S", stream_id, None, None)
        import pyarrow as pa
        import pyarrow.compute as pc

        tampered = rows.set_column(rows.column_names.index("s"), "s",
                                   pc.add(rows.column("s"), 1.0))
        tampered = tampered.add_column(0, "stream_id", pa.array([stream_id] * rows.num_rows))
        from datastream.storage.base import WriteBatch

        ds.backend.commit(WriteBatch(levels={"S": tampered}))
    result = subprocess_run("verify", "--db", store)  # a real process, exit code included
    assert result.returncode == 1, result.stderr
    assert "mismatch stream_id=" in result.stdout and "downsampler='mean'" in result.stdout


def test_backprocess_replays_a_derived_stream(tmp_path):
    store = make_store(tmp_path)
    with datastream.Datastream(duckdb.Backend(str(store))) as ds:
        source = ds.find_streams({"host": "a"})[0]["stream_id"]
        derived = ds.ensure_stream({"derived": "rate"}, {}, [], "seconds", derive_from=[source],
                                   derive_op="derivative")
    result = invoke("backprocess", "--db", store)
    assert result.exit_code == 0, result.output
    assert derived in result.output and "backprocessed 1 streams" in result.output
    with datastream.Datastream(duckdb.Backend(str(store))) as ds:
        points = ds.get_data(derived, "seconds", start=datetime.datetime.min).to_arrow()
    assert points.num_rows == 29 and set(points.column("v").to_pylist()) == {1.0}
