"""behaviour §6.4: get_table, many streams as one long Arrow table, on every backend.

The oracle is get_data of each stream (itself checked against SQL and numpy elsewhere): the
table must be exactly the concatenation of every matching stream's ``to_arrow()``, with the
stream id and tag columns repeated per row.
"""

from __future__ import annotations

import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import datastream
from datastream import exceptions

from .helpers import EVER, UTC, G, at

HOSTS = ["h1", "h2", "h3"]


@pytest.fixture
def fleet(ds):
    """Three cpu streams of different lengths and value kinds, one memory stream."""
    ids = {}
    for number, host in enumerate(HOSTS):
        stream_id = ds.ensure_stream(
            {"host": host, "metric": "cpu"},
            {"site": {"room": number}},
            ["mean", "min", "max", "count"],
            G.Seconds,
        )
        count = 100 * (number + 1)
        first = np.datetime64(at(0).replace(tzinfo=None), "us")
        stamps = first + np.arange(count) * np.timedelta64(1, "s")
        values = np.arange(count) if number == 1 else np.linspace(0.0, 1.0, count)
        ds.append_arrays(stream_id, stamps, values)
        ids[host] = stream_id
    ids["mem"] = ds.ensure_stream({"host": "h1", "metric": "mem"}, {}, ["mean"], G.Seconds)
    ds.append(ids["mem"], 5.0, at(3))
    return ds, ids


def _expected(ds, stream_ids, granularity, **kwargs) -> pa.Table:
    parts = [ds.get_data(sid, granularity, **kwargs).to_arrow() for sid in stream_ids]
    return pa.concat_tables(parts, promote_options="permissive")


def test_raw_rows_equal_each_streams_export(fleet) -> None:
    ds, ids = fleet
    table = ds.get_table({"metric": "cpu"}, G.Seconds, tags=("host", ("site", "room")))
    order = sorted(ids[h] for h in HOSTS)
    assert table.column_names == ["stream_id", "host", "site.room", "t", "v"]
    assert table.num_rows == 600
    expected = _expected(ds, order, G.Seconds, start=EVER)
    assert table.select(["t", "v"]).equals(expected)
    # ordered by stream, then time; tags repeated per row
    assert table.column("stream_id").to_pylist() == [
        sid for sid in order for _ in range(len(ds.get_data(sid, G.Seconds, start=EVER)))
    ]
    host_of = {ids[h]: h for h in HOSTS}
    hosts = [host_of[sid] for sid in table.column("stream_id").to_pylist()]
    assert table.column("host").to_pylist() == hosts
    assert table.column("site.room").to_pylist() == [HOSTS.index(h) for h in hosts]
    assert table.schema.field("t").type == pa.timestamp("us", tz="UTC")
    # int and float streams together promote to float64
    assert table.schema.field("v").type == pa.float64()


def test_range_rules_are_those_of_get_data(fleet) -> None:
    ds, ids = fleet
    for bounds in (
        {"start": at(10), "end": at(20)},
        {"start_exclusive": at(10), "end": at(20)},
        {"start": at(10), "end_exclusive": at(20)},
        {"start_exclusive": at(10), "end_exclusive": at(20)},
        {"start": at(250)},
    ):
        table = ds.get_table({"metric": "cpu"}, "seconds", **bounds)
        order = sorted(ids[h] for h in HOSTS)
        expected = _expected(ds, order, G.Seconds, **bounds)
        assert table.select(["t", "v"]).equals(expected), bounds


def test_levels_hold_each_streams_downsampled_columns(fleet) -> None:
    ds, ids = fleet
    ds.downsample_streams(until=at(3600))
    table = ds.get_table({"metric": "cpu"}, G.Minutes, tags=["host"])
    order = sorted(ids[h] for h in HOSTS)
    expected = _expected(ds, order, G.Minutes, start=EVER)
    assert table.drop_columns(["stream_id", "host"]).equals(expected)
    assert table.num_rows == sum(len(ds.get_data(s, G.Minutes, start=EVER)) for s in order)
    for name in ("mean", "min", "max", "count", "time_mean", "time_first"):
        assert name in table.column_names


def test_downsampler_filters_and_missing_columns(fleet) -> None:
    ds, ids = fleet
    ds.downsample_streams(until=at(3600))
    table = ds.get_table(
        {"host": "h1"}, "minutes", value_downsamplers=["mean", "max"], time_downsamplers=["last"]
    )
    assert table.column_names == ["stream_id", "t", "mean", "max", "time_last"]
    mem_rows = pc.equal(table.column("stream_id"), ids["mem"])
    # the memory stream keeps no max: a null column there, not a missing one
    assert table.filter(mem_rows).column("max").null_count == table.filter(mem_rows).num_rows
    cpu = table.filter(pc.equal(table.column("stream_id"), ids["h1"]))
    expected = ds.get_data(
        ids["h1"], "minutes", start=EVER, value_downsamplers=["mean", "max"],
        time_downsamplers=["last"],
    ).to_arrow()
    ours = cpu.drop_columns(["stream_id"])
    assert ours.equals(expected.select(ours.column_names))


def test_granularity_finer_than_a_streams_highest_reads_raw(ds) -> None:
    hourly = ds.ensure_stream({"kind": "x", "n": 1}, {}, ["mean"], G.Hours)
    fine = ds.ensure_stream({"kind": "x", "n": 2}, {}, ["mean"], G.Seconds)
    ds.append(hourly, 1.0, at(0))
    ds.append(fine, 2.0, at(1))
    table = ds.get_table({"kind": "x"}, G.Seconds, tags=("n",))
    assert sorted(table.column("v").to_pylist()) == [1.0, 2.0]
    assert table.num_rows == 2


def test_no_match_and_unbuffered_appends_are_seen(ds) -> None:
    empty = ds.get_table({"nothing": 1}, G.Seconds, tags=("host",))
    assert empty.num_rows == 0
    assert empty.column_names[:2] == ["stream_id", "host"]
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    ds.append(stream_id, 1.5, at(0))  # still buffered: the table sees it anyway
    table = ds.get_table({"a": 1}, G.Seconds)
    assert table.column("v").to_pylist() == [1.5]


def test_mixed_value_types_become_text(ds) -> None:
    number = ds.ensure_stream({"mix": 1}, {}, ["mean"], G.Seconds)
    word = ds.ensure_stream({"mix": 2}, {}, ["most_often"], G.Seconds, value_type="nominal")
    ds.append(number, 2.5, at(0))
    ds.append(word, "on", at(0))
    table = ds.get_table({}, G.Seconds, tags=("mix",))
    by_mix = dict(zip(table.column("mix").to_pylist(), table.column("v").to_pylist()))
    assert pa.types.is_string(table.schema.field("v").type)
    assert by_mix == {1: "2.5", 2: '"on"'}


def test_columns_come_in_one_order_whatever_the_streams_keep(ds) -> None:
    """Streams keeping different downsamplers: the union of their columns in the order of
    §6.3 (values canonical, then time columns), not in the order the streams (sorted by
    their random ids) brought them."""
    kept = [["max"], ["min"], ["std_dev"], ["mean", "max"], ["sum"]]
    for number, names in enumerate(kept):
        stream_id = ds.ensure_stream({"order": number}, {}, names, G.Seconds)
        ds.append_arrays(stream_id, np.arange(30, dtype=np.int64) + 946_684_800,
                         np.arange(30.0), unit="s")
    ds.downsample_streams(until=at(3600))
    table = ds.get_table({}, G.Seconds10, time_downsamplers=["last", "first"])
    values = ["count", "sum", "sum_squares", "min", "max", "mean", "std_dev"]
    assert table.column_names == ["stream_id", "t", *values, "time_last", "time_first"]
    chosen = ds.get_table({}, G.Seconds10, value_downsamplers=["min", "count"])
    assert chosen.column_names[:4] == ["stream_id", "t", "min", "count"]
    assert chosen.column_names[4:] == [f"time_{name}" for name in datastream.TIME_DOWNSAMPLERS]


def test_integers_beyond_2_to_53_beside_floats(ds) -> None:
    """An int64 value that float64 cannot hold, beside floats (in one stream or in another):
    the export rounds it as numpy would, rather than refusing the whole table."""
    mixed = ds.ensure_stream({"big": 1}, {}, ["mean"], G.Seconds)
    ds.append(mixed, 2**60 + 1, at(0))
    ds.append(mixed, 3.5, at(1))
    alone = ds.ensure_stream({"big": 2}, {}, ["mean"], G.Seconds)
    ds.append(alone, 2**60 + 1, at(0))
    floats = ds.ensure_stream({"big": 3}, {}, ["mean"], G.Seconds)
    ds.append(floats, 0.25, at(0))
    exported = ds.get_data(mixed, G.Seconds, start=EVER).to_arrow()
    assert exported.column("v").to_pylist() == [float(2**60 + 1), 3.5]
    assert [p["v"] for p in ds.get_data(mixed, G.Seconds, start=EVER)] == [2**60 + 1, 3.5]
    assert ds.get_data(alone, G.Seconds, start=EVER).to_arrow().column("v").to_pylist() == [
        2**60 + 1]  # one stream of integers stays int64, exact
    table = ds.get_table({}, G.Seconds, tags=("big",))
    assert pa.types.is_float64(table.schema.field("v").type)
    by_stream = sorted(zip(table.column("big").to_pylist(), table.column("v").to_pylist()))
    assert by_stream == [(1, 3.5), (1, float(2**60 + 1)), (2, float(2**60 + 1)), (3, 0.25)]


def test_tag_columns_of_mixed_types_are_canonical_json(ds) -> None:
    for number, label in enumerate([[1, 2], {"b": 1, "a": "é"}, 3]):
        stream_id = ds.ensure_stream({"mixed": number}, {"label": label}, ["mean"], G.Seconds)
        ds.append(stream_id, 1.0, at(0))
    table = ds.get_table({}, G.Seconds, tags=("mixed", "label"))
    by_stream = dict(zip(table.column("mixed").to_pylist(), table.column("label").to_pylist()))
    assert by_stream == {0: "[1,2]", 1: '{"a":"é","b":1}', 2: "3"}


def test_argument_errors(fleet) -> None:
    ds, _ = fleet
    with pytest.raises(AttributeError):
        ds.get_table({}, G.Seconds, start=at(0), start_exclusive=at(0))
    with pytest.raises(AttributeError):
        ds.get_table({}, G.Seconds, end=at(0), end_exclusive=at(0))
    with pytest.raises(exceptions.UnsupportedGranularity):
        ds.get_table({}, "fortnights")
    with pytest.raises(exceptions.UnsupportedDownsampler):
        ds.get_table({}, G.Minutes, value_downsamplers=["nope"])
    with pytest.raises(TypeError):
        ds.get_table({}, G.Seconds, tags="host")
    for impossible in ("a.b", "$x", "a__b", ("a", "b.c"), ("a", "\ud800")):
        with pytest.raises(ValueError, match="tags path"):  # no tag can have such a key
            ds.get_table({}, G.Seconds, tags=(impossible,))
    for taken in ("t", "v", "stream_id", "mean", "count", "time_first", ("time_last",)):
        with pytest.raises(ValueError, match="data columns"):  # never overwritten by data
            ds.get_table({}, G.Minutes, tags=(taken,))
    twice = ds.get_table({}, G.Minutes, start=at(0), value_downsamplers=["max", "min", "max"],
                         time_downsamplers=["last", "last"])
    assert twice.column_names == ["stream_id", "t", "max", "min", "time_last"]
    with pytest.raises(ValueError, match="named twice"):
        ds.get_table({}, G.Seconds, tags=("host", ("host",)))
    with pytest.raises(ValueError):
        ds.get_table({"x": {"$bogus": 1}}, G.Seconds)


def test_naive_bounds_are_utc(fleet) -> None:
    ds, _ = fleet
    naive = at(10).astimezone(UTC).replace(tzinfo=None)
    aware = ds.get_table({"metric": "cpu"}, G.Seconds, start=at(10), end=at(12))
    assert ds.get_table({"metric": "cpu"}, G.Seconds, start=naive, end=at(12)).equals(aware)
    assert aware.num_rows == 9
    assert ds.get_table({}, G.Seconds, start=datetime.datetime.max).num_rows == 0
