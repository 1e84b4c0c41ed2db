"""engine/downsampling.py: level rows store only the value state the stream's downsamplers
read, on every backend."""

from __future__ import annotations

import numpy as np

import datastream

from ..api.helpers import ALL_VALUE_DOWNSAMPLERS, EVER, G, at


def _stored_rows(ds, stream_id: str, level_key: str):
    return ds._engine.storage.read_level(level_key, stream_id, None, None)


def test_a_mean_min_max_stream_stores_no_squares_mean_offsets_or_m2(ds) -> None:
    rng = np.random.default_rng(3)
    lean = ds.ensure_stream({"n": "lean"}, {}, ["mean", "min", "max"], G.Seconds)
    full = ds.ensure_stream({"n": "full"}, {}, ALL_VALUE_DOWNSAMPLERS, G.Seconds)
    for second, value in enumerate(rng.normal(0, 1, 900).tolist()):
        ds.append(lean, value, at(second))
        ds.append(full, value, at(second))
    ds.downsample_streams(until=at(900))
    for key in ("S", "m"):  # 10 s, then 1 min: combined from the 10 s rows
        lean_rows, full_rows = _stored_rows(ds, lean, key), _stored_rows(ds, full, key)
        assert lean_rows.num_rows == full_rows.num_rows > 0
        for name in ("q", "mu", "m2"):
            assert lean_rows.column(name).null_count == lean_rows.num_rows
            assert full_rows.column(name).null_count == 0
        for name in ("c", "s", "l", "u", "np", "tm", "ta", "tz", "im2"):
            assert lean_rows.column(name).equals(full_rows.column(name)), name
    # fourteen minutes closed: the bucket of the latest point stays open
    assert ds.get_data(lean, G.Minutes, start=EVER).to_arrow().num_rows == 14


def test_a_lean_stream_takes_fewer_stored_bytes(tmp_path, clock) -> None:
    """On the embedded store, which reports the bytes of its chunks."""
    from datastream.backends import duckdb

    rng = np.random.default_rng(4)
    values = np.cumsum(rng.normal(0, 1, 20_000))  # full-entropy doubles
    t = np.datetime64("2000-01-01T12:00:00") + np.arange(20_000) * np.timedelta64(1, "s")
    with datastream.Datastream(duckdb.Backend(str(tmp_path / "s.duckdb")), clock=clock) as ds:
        lean = ds.ensure_stream({"n": "lean"}, {}, ["mean", "min", "max"], G.Seconds)
        full = ds.ensure_stream({"n": "full"}, {}, ALL_VALUE_DOWNSAMPLERS, G.Seconds)
        ds.append_arrays(lean, t, values)
        ds.append_arrays(full, t, values)
        ds.downsample_streams(until=at(20_000))
        lean_bytes = ds._engine.storage.stored_bytes(lean)
        full_bytes = ds._engine.storage.stored_bytes(full)
    assert lean_bytes["raw"] == full_bytes["raw"]
    # per 10 s row, M2, the mean offset and the squares' spread take ~9 of ~28 bytes
    assert lean_bytes["S"] < 0.8 * full_bytes["S"]
    assert lean_bytes["m"] < 0.8 * full_bytes["m"]
