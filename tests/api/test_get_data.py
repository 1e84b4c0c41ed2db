"""behaviour §6: get_data ranges and argument rules, Datapoints, columnar export."""

from __future__ import annotations

import datetime

import numpy as np
import pyarrow as pa
import pytest

import datastream
from datastream import exceptions

from .helpers import EVER, TIME_NAMES, UTC, G, at

S = at(0)
E_ = at(60)
FOREVER = datetime.datetime.max


@pytest.fixture
def example(ds):
    """behaviour §6: 1200 one-second points from 12:00:00."""
    stream_id = ds.ensure_stream({"example": 1}, {}, ["mean", "min", "max"], G.Seconds)
    stamps = np.arange(1200, dtype="int64") * 1_000_000 + 946_728_000 * 1_000_000
    ds.append_arrays(stream_id, stamps, np.arange(1200, dtype="int64"), unit="us")
    return ds, stream_id


def _count(ds, stream_id, granularity, **kwargs) -> int:
    return len(ds.get_data(stream_id, granularity, **kwargs))


def test_raw_range_rules(example) -> None:
    ds, stream_id = example
    assert _count(ds, stream_id, G.Seconds, start=S, end=E_) == 61
    assert _count(ds, stream_id, G.Seconds, start_exclusive=S, end=E_) == 60
    assert _count(ds, stream_id, G.Seconds, start=S, end_exclusive=E_) == 60
    assert _count(ds, stream_id, G.Seconds, start_exclusive=S, end_exclusive=E_) == 59
    assert _count(ds, stream_id, G.Seconds, start=S) == 1200
    assert _count(ds, stream_id, G.Seconds, start_exclusive=S) == 1199
    data = ds.get_data(stream_id, G.Seconds, start_exclusive=S, end_exclusive=E_)
    assert data[0] == {"t": at(1), "v": 1}
    assert data[-1] == {"t": at(59), "v": 59}


def test_downsampled_range_rules(example) -> None:
    ds, stream_id = example
    ds.downsample_streams(until=at(1200))
    expected = {G.Seconds10: (7, 6, 6, 5), G.Minutes: (2, 1, 1, 0)}
    for granularity, counts in expected.items():
        got = (
            _count(ds, stream_id, granularity, start=S, end=E_),
            _count(ds, stream_id, granularity, start_exclusive=S, end=E_),
            _count(ds, stream_id, granularity, start=S, end_exclusive=E_),
            _count(ds, stream_id, granularity, start_exclusive=S, end_exclusive=E_),
        )
        assert got == counts, granularity
    totals = {g.name: _count(ds, stream_id, g, start=EVER) for g in G.values[1:]}
    assert totals == {"10seconds": 119, "minutes": 19, "10minutes": 1, "hours": 0,
                      "6hours": 0, "days": 0}
    # the bucket holding `start` is included, `start_exclusive` excludes it
    assert _count(ds, stream_id, G.Seconds10, start=at(5), end=at(25)) == 3
    assert _count(ds, stream_id, G.Seconds10, start_exclusive=at(5), end=at(25)) == 2
    assert _count(ds, stream_id, G.Seconds10, start=at(5), end_exclusive=at(20)) == 2
    assert _count(ds, stream_id, G.Seconds10, start=at(5), end_exclusive=at(20.000001)) == 3
    first = ds.get_data(stream_id, G.Seconds10, start=at(5))[0]
    assert first["t"]["a"] == at(0)
    assert first["v"] == {"c": 10, "s": 45, "m": 4.5, "l": 0, "u": 9}


def test_raw_bounds_are_exact_microseconds(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, [], G.Seconds)
    stamps = [at(0), at(0.000001), at(0.000002), at(0.5)]
    for value, stamp in enumerate(stamps):
        ds.append(stream_id, value, stamp)
    assert [p["v"] for p in ds.get_data(stream_id, G.Seconds, start=at(0.000001))] == [1, 2, 3]
    assert [p["v"] for p in ds.get_data(stream_id, G.Seconds,
                                        start_exclusive=at(0.000001))] == [2, 3]
    assert [p["v"] for p in ds.get_data(stream_id, G.Seconds, start=EVER,
                                        end=at(0.000002))] == [0, 1, 2]
    assert [p["v"] for p in ds.get_data(stream_id, G.Seconds, start=EVER,
                                        end_exclusive=at(0.000002))] == [0, 1]


def test_naive_and_aware_bounds(example) -> None:
    ds, stream_id = example
    naive = datetime.datetime(2000, 1, 1, 12, 0, 10)
    plus1 = datetime.timezone(datetime.timedelta(hours=1))
    aware = datetime.datetime(2000, 1, 1, 13, 0, 20, tzinfo=plus1)
    data = ds.get_data(stream_id, G.Seconds, start=naive, end=aware)
    assert len(data) == 11
    assert data[0]["t"] == at(10)
    assert data[-1]["t"] == at(20)


def test_min_and_max_mean_unbounded(example) -> None:
    ds, stream_id = example
    assert _count(ds, stream_id, G.Seconds, start=datetime.datetime.min) == 1200
    assert _count(ds, stream_id, G.Seconds, start_exclusive=datetime.datetime.min) == 1200
    assert _count(ds, stream_id, G.Seconds, start=EVER, end=FOREVER) == 1200
    assert _count(ds, stream_id, G.Seconds, start=EVER, end_exclusive=FOREVER) == 1200
    aware_min = datetime.datetime.min.replace(tzinfo=UTC)
    aware_max = datetime.datetime.max.replace(tzinfo=UTC)
    assert _count(ds, stream_id, G.Seconds, start=aware_min, end=aware_max) == 1200
    assert _count(ds, stream_id, G.Seconds, start=FOREVER) == 0
    assert _count(ds, stream_id, G.Seconds, start=EVER, end=datetime.datetime.min) == 0
    ds.downsample_streams(until=at(1200))
    assert _count(ds, stream_id, G.Minutes, start=EVER, end=FOREVER) == 19
    assert _count(ds, stream_id, G.Minutes, start_exclusive=EVER, end_exclusive=FOREVER) == 19


def test_argument_rules(example) -> None:
    ds, stream_id = example
    with pytest.raises(AttributeError):
        ds.get_data(stream_id, G.Seconds)
    with pytest.raises(AttributeError):
        ds.get_data(stream_id, G.Seconds, end=E_)
    with pytest.raises(AttributeError):
        ds.get_data(stream_id, G.Seconds, start=S, start_exclusive=S)
    with pytest.raises(AttributeError):
        ds.get_data(stream_id, G.Seconds, start=S, end=E_, end_exclusive=E_)
    with pytest.raises(AttributeError):
        ds.get_data(stream_id, G.Minutes, start_exclusive=S, start=S, end=E_)
    for kwargs in [{"value_downsamplers": ["average"]}, {"time_downsamplers": ["median"]},
                   {"value_downsamplers": ["mean", "nope"]}]:
        with pytest.raises(exceptions.UnsupportedDownsampler):
            ds.get_data(stream_id, G.Minutes, start=S, **kwargs)


def test_finer_than_highest_returns_raw(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Minutes)
    ds.append(stream_id, 1, at(0.5))
    ds.append(stream_id, 2, at(30))
    ds.append(stream_id, 3, at(700))
    for granularity in (G.Seconds, G.Seconds10, G.Minutes, "seconds", "S"):
        assert list(ds.get_data(stream_id, granularity, start=EVER)) == [
            {"t": at(0.5), "v": 1}, {"t": at(30), "v": 2}, {"t": at(700), "v": 3},
        ]
    ds.downsample_streams(until=at(3600))
    minutes10 = list(ds.get_data(stream_id, G.Minutes10, start=EVER))
    assert len(minutes10) == 1
    assert minutes10[0]["v"]["m"] == 1.5


def test_reverse(example) -> None:
    ds, stream_id = example
    data = ds.get_data(stream_id, G.Seconds, start=S, end=at(9), reverse=True)
    assert [p["v"] for p in data] == list(range(9, -1, -1))
    assert data[0]["t"] == at(9)
    ds.downsample_streams(until=at(1200))
    buckets = ds.get_data(stream_id, G.Minutes, start=EVER, reverse=True)
    assert [p["v"]["l"] for p in buckets] == [60 * m for m in range(18, -1, -1)]


def test_equal_timestamps_keep_append_order(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, [], G.Seconds)
    order = [4, 8, 15, 16, 23, 42, 1, 0]
    ds.append_multiple([{"stream_id": stream_id, "value": v, "timestamp": at(1)} for v in order])
    ds.append(stream_id, 99, at(2))
    assert [p["v"] for p in ds.get_data(stream_id, G.Seconds, start=EVER)] == order + [99]
    assert [p["v"] for p in ds.get_data(stream_id, G.Seconds, start=at(1), end=at(1))] == order


# -- Datapoints ------------------------------------------------------------------------------


def test_datapoints_is_list_like(example) -> None:
    ds, stream_id = example
    data = ds.get_data(stream_id, G.Seconds, start=S)
    assert isinstance(data, datastream.Datapoints)
    assert len(data) == 1200
    assert data.count() == 1200
    assert data[0] == {"t": at(0), "v": 0}
    assert data[1199] == {"t": at(1199), "v": 1199}
    assert data[-1] == {"t": at(1199), "v": 1199}
    assert data[-1200] == data[0]
    for index in (1200, 5000, -1201):
        with pytest.raises(IndexError):
            data[index]
    part = data[10:15]
    assert len(part) == 5
    assert [p["v"] for p in part] == [10, 11, 12, 13, 14]
    assert part[0] == {"t": at(10), "v": 10}
    assert part[-1]["v"] == 14
    with pytest.raises(IndexError):
        part[5]
    assert len(data) == 1200  # the slice is independent
    assert [p["v"] for p in data[1195:5000]] == [1195, 1196, 1197, 1198, 1199]
    assert len(data[5000:6000]) == 0
    assert [p["v"] for p in data[-3:]] == [1197, 1198, 1199]
    assert [p["v"] for p in data[3:8][1:3]] == [4, 5]
    listed = list(data)
    assert len(listed) == 1200
    assert listed[600] == {"t": at(600), "v": 600}
    assert list(data) == listed  # iterating twice gives the same


def test_batch_size_hint(example) -> None:
    ds, stream_id = example
    data = ds.get_data(stream_id, G.Seconds, start=S)
    expected = [{"t": at(i), "v": i} for i in range(1200)]
    data.batch_size(7)
    assert list(data) == expected
    other = ds.get_data(stream_id, G.Seconds, start=S)
    other.batch_size(5000)
    assert list(other) == expected
    assert len(other) == 1200


def test_empty_result(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    data = ds.get_data(stream_id, G.Seconds, start=EVER)
    assert len(data) == 0
    assert data.count() == 0
    assert list(data) == []
    with pytest.raises(IndexError):
        data[0]
    assert list(ds.get_data(stream_id, G.Days, start=EVER)) == []
    assert data.to_arrow().num_rows == 0


# -- columnar export -------------------------------------------------------------------------


def test_raw_to_arrow_pandas_numpy(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    stamps = [at(0), at(1.5), at(2.000001)]
    for value, stamp in zip([1.5, None, -2.0], stamps, strict=True):
        ds.append(stream_id, value, stamp)
    data = ds.get_data(stream_id, G.Seconds, start=EVER)
    table = data.to_arrow()
    assert isinstance(table, pa.Table)
    assert table.column_names == ["t", "v"]
    assert table.schema.field("t").type == pa.timestamp("us", tz="UTC")
    assert table.column("t").to_pylist() == stamps
    assert table.column("v").to_pylist() == [1.5, None, -2.0]
    frame = data.to_pandas()
    assert list(frame.columns) == ["v"]
    assert frame.index.name == "t"
    assert str(frame.index.tz) == "UTC"
    assert len(frame) == 3
    assert frame["v"].iloc[0] == 1.5
    assert frame["v"].isna().tolist() == [False, True, False]
    assert frame.index[2].to_pydatetime() == stamps[2]
    array = data.to_numpy()
    assert len(array) == 3
    assert np.asarray(array["v"], dtype="float64")[0] == 1.5
    assert np.isnan(np.asarray(array["v"], dtype="float64")[1])
    capsule = pa.table(data)
    assert capsule.equals(table)
    reader = pa.RecordBatchReader.from_stream(data)
    assert reader.read_all().equals(table)


def test_int_values_export_as_ints(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    for second in range(3):
        ds.append(stream_id, 2**62 + second, at(second))
    table = ds.get_data(stream_id, G.Seconds, start=EVER).to_arrow()
    assert table.column("v").to_pylist() == [2**62, 2**62 + 1, 2**62 + 2]


def test_downsampled_export(example) -> None:
    ds, stream_id = example
    ds.downsample_streams(until=at(1200))
    data = ds.get_data(stream_id, G.Minutes, start=EVER)
    table = data.to_arrow()
    assert set(table.column_names) == {"t", "mean", "min", "max", "sum", "count"} | {
        f"time_{name}" for name in TIME_NAMES
    }
    assert table.num_rows == 19
    assert table.schema.field("t").type == pa.timestamp("us", tz="UTC")
    assert table.column("t").to_pylist() == [at(60 * m) for m in range(19)]
    assert table.column("mean").to_pylist() == [60 * m + 29.5 for m in range(19)]
    assert table.column("min").to_pylist() == [60 * m for m in range(19)]
    assert table.column("count").to_pylist() == [60] * 19
    assert table.column("time_first").to_pylist() == [at(60 * m) for m in range(19)]
    assert table.column("time_last").to_pylist() == [at(60 * m + 59) for m in range(19)]
    filtered = ds.get_data(stream_id, G.Minutes, start=EVER, value_downsamplers=["mean", "max"],
                           time_downsamplers=["first"]).to_arrow()
    assert set(filtered.column_names) == {"t", "mean", "max", "time_first"}
    assert len(data.to_pandas()) == 19
    assert list(data.to_pandas()["mean"])[:2] == [29.5, 89.5]
    assert len(data.to_numpy()) == 19
    assert pa.table(data).equals(table)


def test_large_export_is_columnar(ds, monkeypatch) -> None:
    """The columnar exports never build per-point Python values (speed lives in bench/)."""
    stream_id = ds.ensure_stream({"a": 1}, {}, [], G.Seconds)
    count = 200_000
    stamps = np.arange(count, dtype="int64") * 1000 + 946_728_000 * 1_000_000
    ds.append_arrays(stream_id, stamps, np.arange(count, dtype="float64"), unit="us")
    data = ds.get_data(stream_id, G.Seconds, start=EVER)
    assert len(data) == count

    def per_point(*args, **kwargs):
        raise AssertionError("a columnar export decoded values one by one")

    monkeypatch.setattr(datastream.values, "decode_values", per_point)
    monkeypatch.setattr(datastream.values, "decode_value", per_point)
    table = data.to_arrow()
    frame = data.to_pandas()
    array = data.to_numpy()
    assert table.num_rows == count
    assert len(frame) == count and len(array) == count
    assert frame["v"].iloc[-1] == count - 1
    assert array["v"][12_345] == 12_345.0
