"""behaviour §4: append, append_multiple, buffering and durability, columnar bulk appends."""

from __future__ import annotations

import datetime
import decimal
import math
import subprocess
import sys
import textwrap
import time
import uuid

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import datastream
from datastream import exceptions

from .helpers import EVER, UTC, G, at, raw, times, values

# -- append ----------------------------------------------------------------------------------


def test_append_returns_the_stored_datapoint(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    result = ds.append(stream_id, 42, at(1.5))
    assert result == {
        "stream_id": stream_id,
        "granularity": G.Seconds,
        "datapoint": {"t": at(1.5), "v": 42},
    }
    assert result["datapoint"]["t"].utcoffset() == datetime.timedelta(0)
    minutes = ds.ensure_stream({"a": 2}, {}, ["mean"], G.Minutes)
    assert ds.append(minutes, 1.5, at(0))["granularity"] == G.Minutes


def test_default_timestamp_is_the_clock(ds, clock) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    clock.now = at(3)
    assert ds.append(stream_id, 1)["datapoint"]["t"] == at(3)
    clock.advance(seconds=2, microseconds=7)
    ds.append(stream_id, 2)
    assert times(ds, stream_id) == [at(3), at(5.000007)]


def test_naive_is_utc_and_aware_is_converted(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, [], G.Seconds)
    ds.append(stream_id, 1, datetime.datetime(2000, 1, 1, 12, 0, 0))
    plus5 = datetime.timezone(datetime.timedelta(hours=5))
    ds.append(stream_id, 2, datetime.datetime(2000, 1, 1, 17, 0, 1, tzinfo=plus5))
    minus3 = datetime.timezone(datetime.timedelta(hours=-3, minutes=-30))
    ds.append(stream_id, 3, datetime.datetime(2000, 1, 1, 8, 30, 2, tzinfo=minus3))
    got = times(ds, stream_id)
    assert got == [at(0), at(1), at(2)]
    assert all(t.utcoffset() == datetime.timedelta(0) for t in got)


def test_microseconds_are_kept(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, [], G.Seconds)
    stamps = [at(0), at(0.000001), at(0.5), at(0.999999), at(1.123456)]
    for value, stamp in enumerate(stamps):
        ds.append(stream_id, value, stamp)
    assert times(ds, stream_id) == stamps
    assert [t.microsecond for t in times(ds, stream_id)] == [0, 1, 500000, 999999, 123456]


def test_supported_timestamp_range(ds) -> None:
    stamps = [
        datetime.datetime(1677, 9, 22, tzinfo=UTC),
        datetime.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime.datetime(1970, 1, 1, tzinfo=UTC),
        datetime.datetime(2262, 4, 11, tzinfo=UTC),
    ]
    for number, stamp in enumerate(stamps):
        stream_id = ds.ensure_stream({"a": number}, {}, ["mean"], G.Seconds)
        ds.append(stream_id, 1, stamp)
        assert times(ds, stream_id) == [stamp]
    stream_id = ds.ensure_stream({"a": "all"}, {}, [], G.Seconds)
    for stamp in stamps:
        ds.append(stream_id, 1, stamp)
    assert times(ds, stream_id) == stamps


def test_the_ends_of_the_span_downsample_on_every_backend(ds) -> None:
    """Every level's bucket of the first and last supported microseconds starts inside the
    span, so each backend stores them (InfluxDB refused a day starting before 1677-09-22)."""
    low = ds.ensure_stream({"a": "low"}, {}, ["mean"], G.Seconds)
    high = ds.ensure_stream({"a": "high"}, {}, ["mean"], G.Seconds)
    ds.append(low, 1, datetime.datetime(1677, 9, 22, tzinfo=UTC))
    ds.append(low, 2, datetime.datetime(1677, 9, 23, 0, 0, 1, tzinfo=UTC))
    ds.append(high, 1, datetime.datetime(2262, 4, 10, tzinfo=UTC))
    ds.append(high, 2, datetime.datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=UTC))
    ds.downsample_streams(until=datetime.datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=UTC))
    days = ds.get_data(low, G.Days, start=datetime.datetime.min)
    assert [(p["t"]["a"], p["v"]["m"]) for p in days] == [
        (datetime.datetime(1677, 9, 22, tzinfo=UTC), 1.0)]
    assert [p["v"]["m"] for p in ds.get_data(high, G.Days, start=datetime.datetime.min)] == [1.0]
    assert not ds.verify()


def test_unsupported_timestamps(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    for stamp in [
        datetime.datetime(1677, 9, 20, tzinfo=UTC),
        datetime.datetime(1677, 9, 21, 0, 12, 43, 145225, tzinfo=UTC),  # int64 ns, not a day
        datetime.datetime(1000, 1, 1),
        datetime.datetime.min,
        datetime.datetime(2262, 4, 12, tzinfo=UTC),
        datetime.datetime.max,
    ]:
        with pytest.raises(exceptions.InvalidTimestamp):
            ds.append(stream_id, 1, stamp)
        with pytest.raises(exceptions.InvalidTimestamp):
            ds.append(stream_id, 1, stamp, check_timestamp=False)
        with pytest.raises(exceptions.InvalidTimestamp):
            ds.append_multiple([{"stream_id": stream_id, "value": 1, "timestamp": stamp}])
    assert values(ds, stream_id) == []
    assert ds.get_tags(stream_id)["latest_datapoint"] is None


def test_other_timestamp_forms(ds) -> None:
    """behaviour §4.1: pandas.Timestamp, numpy.datetime64 scalars and ISO-8601 strings
    (naive → UTC)."""
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    stamps = [
        (pd.Timestamp("2000-01-01 12:00:01"), at(1)),
        (pd.Timestamp("2000-01-01 13:00:02", tz="Europe/Paris"), at(2)),
        (pd.Timestamp("2000-01-01 12:00:03.000004999"), at(3.000004)),
        (np.datetime64("2000-01-01T12:00:04"), at(4)),
        (np.datetime64("2000-01-01T12:00:05.000006789", "ns"), at(5.000006)),
        (np.datetime64("2000-01-01T12:01", "m"), at(60)),
        (np.datetime64("2000-01-02"), at(86400 - 12 * 3600)),
        ("2000-01-02T00:00:01", at(86401 - 12 * 3600)),
        ("2000-01-02T00:00:02Z", at(86402 - 12 * 3600)),
        ("2000-01-02T02:00:03.5+02:00", at(86403.5 - 12 * 3600)),
        ("2000-01-03", at(2 * 86400 - 12 * 3600)),
    ]
    for stamp, expected in stamps:
        assert ds.append(stream_id, 1, stamp)["datapoint"]["t"] == expected, stamp
    ds.append_multiple([{"stream_id": stream_id, "value": 2, "timestamp": "2000-01-04T00:00"}])
    assert times(ds, stream_id) == [expected for _, expected in stamps] + [
        at(3 * 86400 - 12 * 3600)
    ]


@pytest.mark.parametrize(
    "stamp",
    [946_728_000, 946_728_000_000_000, 946_728_000.5, np.int64(946_728_000), np.float64(1.0),
     0, decimal.Decimal(946728000)],
)
def test_bare_number_timestamp(ds, stamp) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    with pytest.raises(exceptions.InvalidTimestamp, match=r"append_arrays\(\.\.\., unit=\)"):
        ds.append(stream_id, 1, stamp)
    with pytest.raises(exceptions.InvalidTimestamp, match="datetime"):
        ds.append_multiple([{"stream_id": stream_id, "value": 1, "timestamp": stamp}])
    assert values(ds, stream_id) == []


@pytest.mark.parametrize(
    "stamp",
    ["yesterday", "2000-13-01", "", b"2000-01-01", np.datetime64("NaT"), pd.NaT,
     np.datetime64(2**62, "s"), np.datetime64(300_000, "Y"), np.datetime64("2263-01-01"),
     "9999-12-31T23:59:59", datetime.date(2000, 1, 1), True],
)
def test_invalid_timestamp_forms(ds, stamp) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    with pytest.raises(exceptions.InvalidTimestamp):
        ds.append(stream_id, 1, stamp)
    assert values(ds, stream_id) == []


@pytest.mark.parametrize("stamp, message", [
    (np.datetime64("NaT"), "must not be NaT"), (pd.NaT, "must not be NaT"),
    (np.datetime64("2300-01-01"), r"np.datetime64\('2300-01-01'\) is outside"),
])
def test_invalid_timestamp_messages_name_the_timestamp(ds, stamp, message) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    with pytest.raises(exceptions.InvalidTimestamp, match=message):
        ds.append(stream_id, 1, stamp)


def test_check_timestamp(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    ds.append(stream_id, 1, at(10))
    with pytest.raises(exceptions.InvalidTimestamp):
        ds.append(stream_id, 2, at(9.999999))
    ds.append(stream_id, 3, at(10))  # equal is fine
    ds.append(stream_id, 4, at(10))
    ds.append(stream_id, 5, at(5), check_timestamp=False)
    with pytest.raises(exceptions.InvalidTimestamp):
        ds.append(stream_id, 6, at(7))
    ds.append(stream_id, 7, at(11))
    assert values(ds, stream_id) == [5, 1, 3, 4, 7]
    assert times(ds, stream_id) == [at(5), at(10), at(10), at(10), at(11)]


def test_equal_timestamps_keep_append_order(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, [], G.Seconds)
    for value in [5, 3, 9, 1, 7, 2, 8]:
        ds.append(stream_id, value, at(0))
    ds.flush()
    for value in [6, 4]:
        ds.append(stream_id, value, at(0))
    assert values(ds, stream_id) == [5, 3, 9, 1, 7, 2, 8, 6, 4]


def test_single_appends_of_every_value_form(ds) -> None:
    """The per-point path keeps the kinds: ints stay ints, NaN and None are nulls, other
    numbers are converted as documented, and each call returns what was stored."""
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    appended = [1.5, 7, None, float("nan"), np.float64(2.25), np.int32(-3), decimal.Decimal("0.5"),
                2**70, -(2**63), 2**63 - 1, -0.0]
    stored = [1.5, 7, None, None, 2.25, -3, 0.5, float(2**70), -(2**63), 2**63 - 1, -0.0]
    returned = [ds.append(stream_id, value, at(i))["datapoint"]["v"] for i, value in
                enumerate(appended)]
    for got in (returned, values(ds, stream_id)):
        assert got == stored
        assert [type(v) for v in got] == [type(v) for v in stored]
    assert math.copysign(1.0, values(ds, stream_id)[-1]) == -1.0
    for bad in (True, float("inf"), "1", 1j):
        with pytest.raises((TypeError, ValueError)):
            ds.append(stream_id, bad, at(100))
    assert len(values(ds, stream_id)) == len(stored)


def test_bulk_arrays_changed_after_the_call_leave_stored_points_alone(ds) -> None:
    """The caller may reuse its arrays at once: buffered and lately stored rows (kept for
    reads) are copies, so downsampling and reads see the values as appended."""
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    stamps = np.arange(3, dtype="int64") * 1_000_000 + 946_728_000_000_000
    floats = np.array([1.5, 2.5, 3.5])
    ints = np.array([1, 2, 3], dtype="int64")
    ds.append_arrays(stream_id, stamps, floats, unit="us")
    ds.append_arrays(stream_id, stamps + 3_000_000, ints, unit="us")
    ds.append(stream_id, 0, at(20))  # closes the first 10 s bucket
    ds.flush()
    floats[:], ints[:], stamps[:] = 99.0, 99, 0
    assert values(ds, stream_id) == [1.5, 2.5, 3.5, 1, 2, 3, 0]
    ds.downsample_streams(until=at(60))
    means = ds.get_data(stream_id, G.Seconds10, start=EVER).to_arrow().column("mean")
    assert means.to_pylist() == [13.5 / 6, None]  # then an empty bucket


def test_single_appends_between_bulk_appends_keep_their_order(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, [], G.Seconds)
    first = np.datetime64("2000-01-01T12:00:00", "us")
    second = first + np.timedelta64(1, "s")
    ds.append(stream_id, 0, at(0))
    ds.append_arrays(stream_id, np.array([first, second]), np.array([1.0, 2.0]))
    for value in (3, 4, 5):
        ds.append(stream_id, value, at(1))
    ds.append_arrays(stream_id, np.array([second]), np.array([6.0]))
    ds.append(stream_id, 7, at(1))
    assert values(ds, stream_id) == [0, 1.0, 2.0, 3, 4, 5, 6.0, 7]


def test_single_appends_follow_the_latest_state(ds) -> None:
    """Downsampling, a flush and another append change what a single append may do next."""
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    for second in range(0, 100, 10):
        ds.append(stream_id, second, at(second))
    ds.downsample_streams(until=at(60))
    with pytest.raises(exceptions.InvalidTimestamp, match="downsampled"):
        ds.append(stream_id, 1, at(59), check_timestamp=False)
    with pytest.raises(exceptions.InvalidTimestamp, match="older"):
        ds.append(stream_id, 1, at(89))
    ds.append(stream_id, 1, at(65), check_timestamp=False)  # a late point, not frozen
    ds.append(stream_id, 2, at(90))
    ds.flush()
    with pytest.raises(exceptions.InvalidTimestamp, match="older"):
        ds.append(stream_id, 3, at(89.999999))
    ds.append(stream_id, 3, at(90))
    assert times(ds, stream_id)[-4:] == [at(80), at(90), at(90), at(90)]
    assert values(ds, stream_id)[-3:] == [90, 2, 3]


def test_reads_see_buffered_appends(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    ds.append(stream_id, 1, at(0))
    ds.append(stream_id, 2, at(4))
    assert ds.get_tags(stream_id)["latest_datapoint"] == at(4)
    assert ds.get_tags(stream_id)["earliest_datapoint"] == at(0)
    assert ds.find_streams({"a": 1})[0]["latest_datapoint"] == at(4)
    ds.append(stream_id, 3, at(12))
    assert values(ds, stream_id) == [1, 2, 3]
    ds.append(stream_id, 4, at(13))
    ds.downsample_streams(until=at(60))
    assert [p["v"]["m"] for p in ds.get_data(stream_id, G.Seconds10, start=EVER)] == [1.5]


def test_unknown_and_derived_streams(ds) -> None:
    source = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    derived = ds.ensure_stream(
        {"a": 2}, {}, ["mean"], G.Seconds, derive_from=source, derive_op="derivative"
    )
    with pytest.raises(exceptions.StreamNotFound):
        ds.append(str(uuid.uuid4()), 1, at(0))
    with pytest.raises(exceptions.AppendToDerivedStreamNotAllowed):
        ds.append(derived, 1, at(0))
    with pytest.raises(exceptions.AppendToDerivedStreamNotAllowed):
        ds.append_multiple([{"stream_id": derived, "value": 1, "timestamp": at(0)}])
    with pytest.raises(exceptions.AppendToDerivedStreamNotAllowed):
        ds.append_arrays(derived, np.array([0], dtype="int64"), np.array([1.0]), unit="us")
    assert values(ds, derived) == []
    assert ds.get_tags(derived)["derived_from"]["stream_ids"] == [source]


# -- append_multiple -------------------------------------------------------------------------


def test_append_multiple_interleaved(ds, clock) -> None:
    a = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    b = ds.ensure_stream({"a": 2}, {}, ["mean"], G.Seconds)
    clock.now = at(100)
    ds.append_multiple(
        [
            {"stream_id": a, "value": 1, "timestamp": at(0)},
            {"stream_id": b, "value": 10, "timestamp": at(0)},
            {"stream_id": b, "value": 11, "timestamp": at(1)},
            {"stream_id": a, "value": 2, "timestamp": at(2)},
            {"stream_id": a, "value": 3},
        ]
    )
    assert values(ds, a) == [1, 2, 3]
    assert times(ds, a) == [at(0), at(2), at(100)]
    assert values(ds, b) == [10, 11]
    ds.append_multiple([])
    assert values(ds, a) == [1, 2, 3]


BAD_ITEMS = {
    "unknown_stream": lambda ids: {"stream_id": str(uuid.uuid4()), "value": 1,
                                   "timestamp": at(50)},
    "malformed_stream": lambda ids: {"stream_id": "nope", "value": 1, "timestamp": at(50)},
    "bool": lambda ids: {"stream_id": ids["a"], "value": True, "timestamp": at(50)},
    "text": lambda ids: {"stream_id": ids["a"], "value": "1", "timestamp": at(50)},
    "inf": lambda ids: {"stream_id": ids["a"], "value": math.inf, "timestamp": at(50)},
    "older_than_stored": lambda ids: {"stream_id": ids["a"], "value": 1, "timestamp": at(5)},
    "out_of_range": lambda ids: {"stream_id": ids["a"], "value": 1,
                                 "timestamp": datetime.datetime(3000, 1, 1)},
    "derived": lambda ids: {"stream_id": ids["d"], "value": 1, "timestamp": at(50)},
    "bad_dict": lambda ids: {"stream_id": ids["a"], "value": {"c": 1}, "timestamp": at(50)},
    "nominal_into_numeric": lambda ids: {"stream_id": ids["a"], "value": [1],
                                         "timestamp": at(50)},
    "bad_graph": lambda ids: {"stream_id": ids["g"], "value": {"v": [], "e": [{"f": 1,
                                                                                "t": 2}]},
                              "timestamp": at(50)},
    "decreasing_in_call": None,
}


def test_append_multiple_is_atomic(ds) -> None:
    ids = {
        "a": ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds),
        "b": ds.ensure_stream({"a": 2}, {}, ["mean"], G.Seconds),
        "g": ds.ensure_stream({"a": 3}, {}, ["count"], G.Seconds, value_type="graph"),
    }
    ids["d"] = ds.ensure_stream(
        {"a": 4}, {}, ["mean"], G.Seconds, derive_from=[ids["b"]], derive_op="derivative"
    )
    ds.append(ids["a"], 0, at(10))
    ds.append(ids["b"], 0, at(10))
    good = [
        {"stream_id": ids["b"], "value": 1, "timestamp": at(20)},
        {"stream_id": ids["a"], "value": 2, "timestamp": at(20)},
        {"stream_id": ids["g"], "value": None, "timestamp": at(20)},
        {"stream_id": ids["b"], "value": 3, "timestamp": at(30)},
    ]
    for kind, make in BAD_ITEMS.items():
        if make is None:
            bad = [{"stream_id": ids["a"], "value": 5, "timestamp": at(40)},
                   {"stream_id": ids["a"], "value": 6, "timestamp": at(35)}]
        else:
            bad = [make(ids)]
        for items in (bad + good, good + bad):
            with pytest.raises((exceptions.DatastreamException, ValueError, TypeError)):
                ds.append_multiple(items)
                pytest.fail(f"{kind} accepted")
            ds.flush()
            assert values(ds, ids["a"]) == [0], kind
            assert values(ds, ids["b"]) == [0], kind
            assert values(ds, ids["g"]) == [], kind
            assert values(ds, ids["d"]) == [], kind
            assert ds.get_tags(ids["a"])["latest_datapoint"] == at(10), kind
            assert ds.get_tags(ids["g"])["latest_datapoint"] is None, kind
    ds.append_multiple(good)
    assert values(ds, ids["b"]) == [0, 1, 3]
    assert values(ds, ids["d"]) == [0.1, 0.2]


def test_append_multiple_expected_exceptions(ds) -> None:
    a = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    ds.append(a, 0, at(10))
    with pytest.raises(exceptions.StreamNotFound):
        ds.append_multiple([{"stream_id": str(uuid.uuid4()), "value": 1}])
    with pytest.raises(exceptions.InvalidTimestamp):
        ds.append_multiple([{"stream_id": a, "value": 1, "timestamp": at(5)}])
    with pytest.raises(exceptions.InvalidTimestamp):
        ds.append_multiple([{"stream_id": a, "value": 1, "timestamp": at(40)},
                            {"stream_id": a, "value": 1, "timestamp": at(30)}])
    with pytest.raises(TypeError):
        ds.append_multiple([{"stream_id": a, "value": False, "timestamp": at(40)}])
    with pytest.raises(ValueError):
        ds.append_multiple([{"stream_id": a, "value": -math.inf, "timestamp": at(40)}])
    ds.append_multiple([{"stream_id": a, "value": 1, "timestamp": at(10)}])
    assert values(ds, a) == [0, 1]


# -- flush, close, context manager, buffered=False -------------------------------------------


def test_close_flushes(backend_factory, clock) -> None:
    first = datastream.Datastream(backend_factory(), clock=clock)
    stream_id = first.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    for second in range(5):
        first.append(stream_id, second, at(second))
    first.close()
    second = datastream.Datastream(backend_factory(), clock=clock)
    try:
        assert values(second, stream_id) == [0, 1, 2, 3, 4]
        assert second.get_tags(stream_id)["latest_datapoint"] == at(4)
    finally:
        second.close()


def test_context_manager_flushes(backend_factory, clock) -> None:
    with datastream.Datastream(backend_factory(), clock=clock) as first:
        stream_id = first.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
        first.append_multiple(
            [{"stream_id": stream_id, "value": v, "timestamp": at(v)} for v in range(7)]
        )
    with datastream.Datastream(backend_factory(), clock=clock) as second:
        assert values(second, stream_id) == list(range(7))


def test_context_manager_returns_the_instance(backend_factory, clock) -> None:
    instance = datastream.Datastream(backend_factory(), clock=clock)
    with instance as entered:
        assert entered is instance


def test_unbuffered(backend_factory, clock) -> None:
    with datastream.Datastream(backend_factory(), clock=clock, buffered=False) as first:
        stream_id = first.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
        first.append(stream_id, 1, at(0))
        first.append_multiple([{"stream_id": stream_id, "value": 2, "timestamp": at(1)}])
        assert values(first, stream_id) == [1, 2]
    with datastream.Datastream(backend_factory(), clock=clock) as second:
        assert values(second, stream_id) == [1, 2]


CHILD = textwrap.dedent(
    """
    import datetime, os, sys, time
    import numpy as np
    import datastream
    from datastream.backends import duckdb

    T0 = datetime.datetime(2000, 1, 1, 12, tzinfo=datetime.timezone.utc)
    at = lambda s: T0 + datetime.timedelta(seconds=s)
    keep = []  # every Datastream stays open until the crash
    for path, mode in zip(sys.argv[1::2], sys.argv[2::2]):
        d = datastream.Datastream(duckdb.Backend(path), clock=lambda: T0,
                                  buffered=(mode != "unbuffered"))
        keep.append(d)
        a = d.ensure_stream({"n": 1}, {}, ["mean"], "seconds")
        r = d.ensure_stream({"n": 2}, {}, ["mean"], "seconds", derive_from=[a],
                            derive_op="derivative")
        if mode == "unbuffered":
            for i in range(5):
                d.append(a, i * i, at(i))
        elif mode == "flushed":
            for i in range(5):
                d.append(a, i * i, at(i))
            d.flush()
            for i in range(5, 8):
                d.append(a, i * i, at(i))
        elif mode == "full_buffer":
            stamps = np.arange(10_000, dtype="int64") * 1_000_000 + 946728000 * 1_000_000
            d.append_arrays(a, stamps, np.arange(10_000, dtype="int64"), unit="us")
        elif mode == "aged":
            d.append(a, 0, at(0))
            d.append(a, 1, at(1))
            time.sleep(1.3)
            d.append(a, 4, at(2))  # the oldest buffered point is over 1 s old: flush
        elif mode == "exit":
            for i in range(5):
                d.append(a, i * i, at(i))
        print(mode, a, r, flush=True)
    if sys.argv[2] == "exit":
        sys.exit(0)  # a normal exit: the atexit handler flushes
    os._exit(0)  # a crash: no close, no flush, no atexit handlers
    """
)


CRASH_MODES = ("unbuffered", "flushed", "full_buffer", "aged")


def _child(folder, modes) -> dict[str, tuple[str, str, str]]:
    arguments = []
    for mode in modes:
        arguments += [str(folder / f"{mode}.duckdb"), mode]
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *arguments], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = {}
    for line in done.stdout.split("\n"):
        if line.strip():
            mode, a, r = line.split()
            result[mode] = (str(folder / f"{mode}.duckdb"), a, r)
    assert set(result) == set(modes), done.stdout + done.stderr
    return result


@pytest.fixture(scope="module")
def crashed(tmp_path_factory) -> dict[str, tuple[str, str, str]]:
    """One child process writes a file per mode and dies without closing anything."""
    return _child(tmp_path_factory.mktemp("crash"), CRASH_MODES)


def _open(path, clock):
    from datastream.backends import duckdb

    return datastream.Datastream(duckdb.Backend(path), clock=clock)


def test_crash_after_unbuffered_appends_loses_nothing(crashed, clock) -> None:
    path, a, r = crashed["unbuffered"]
    with _open(path, clock) as d:
        assert values(d, a) == [0, 1, 4, 9, 16]
        assert values(d, r) == [1.0, 3.0, 5.0, 7.0]
        assert d.get_tags(a)["latest_datapoint"] == at(4)


def test_crash_keeps_everything_a_flush_covered(crashed, clock) -> None:
    path, a, r = crashed["flushed"]
    with _open(path, clock) as d:
        got = values(d, a)
        assert got[:5] == [0, 1, 4, 9, 16]
        assert got == [i * i for i in range(len(got))]
        assert 5 <= len(got) <= 8
        derived = values(d, r)
        assert derived[:4] == [1.0, 3.0, 5.0, 7.0]
        assert derived == [float(2 * i + 1) for i in range(len(derived))]
        assert len(derived) == len(got) - 1
        assert d.get_tags(a)["latest_datapoint"] == at(len(got) - 1)
        # consistent after the crash: appending and downsampling go on
        d.append(a, 1000, at(100))
        d.downsample_streams(until=at(200))
        assert [p["v"]["c"] for p in d.get_data(a, G.Seconds10, start=EVER)][0] == len(got)


def test_full_buffer_flushes_by_itself(crashed, clock) -> None:
    path, a, r = crashed["full_buffer"]
    with _open(path, clock) as d:
        assert len(d.get_data(a, G.Seconds, start=EVER)) == 10_000
        assert len(d.get_data(r, G.Seconds, start=EVER)) == 9_999
        assert d.get_tags(a)["latest_datapoint"] == at(9_999)


def test_old_buffer_flushes_by_itself(crashed, clock) -> None:
    path, a, r = crashed["aged"]
    with _open(path, clock) as d:
        got = [p["v"] for p in d.get_data(a, G.Seconds, start=EVER)]
        assert got[:2] == [0, 1]
        assert got in ([0, 1], [0, 1, 4])
        assert [p["v"] for p in d.get_data(r, G.Seconds, start=EVER)] == [1.0, 3.0][
            : len(got) - 1]


def test_interpreter_exit_flushes(tmp_path, clock) -> None:
    path, a, r = _child(tmp_path, ["exit"])["exit"]
    with _open(path, clock) as d:
        assert values(d, a) == [0, 1, 4, 9, 16]
        assert values(d, r) == [1.0, 3.0, 5.0, 7.0]


# -- append_arrays ---------------------------------------------------------------------------


T0_US = 946_728_000 * 1_000_000  # 2000-01-01 12:00:00 UTC in epoch microseconds


def _us(seconds) -> np.ndarray:
    return np.round(np.asarray(seconds, dtype="float64") * 1_000_000).astype("int64") + T0_US


def test_append_arrays_datetime64_and_nan_is_null(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    stamps = np.array(["2000-01-01T12:00:00", "2000-01-01T12:00:01.5",
                       "2000-01-01T12:00:02.000001"], dtype="datetime64[us]")
    ds.append_arrays(stream_id, stamps, np.array([1.5, np.nan, -2.25]))
    assert values(ds, stream_id) == [1.5, None, -2.25]
    assert times(ds, stream_id) == [at(0), at(1.5), at(2.000001)]
    ds.append_arrays(stream_id, np.array(["2000-01-01T12:00:03"], dtype="datetime64[ns]"),
                     np.array([4.0]))
    assert times(ds, stream_id)[-1] == at(3)


def test_append_arrays_int64_epoch_us_and_ints_stay_ints(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    ds.append_arrays(stream_id, _us([0, 1, 2]), np.array([1, 2, 2**62], dtype="int64"),
                     unit="us")
    got = values(ds, stream_id)
    assert got == [1, 2, 2**62]
    assert all(type(v) is int for v in got)


@pytest.mark.parametrize(
    "unit, scale, dtype",
    [(unit, scale, dtype)
     for unit, scale in [("s", 1), ("ms", 1_000), ("us", 1_000_000), ("ns", 1_000_000_000)]
     for dtype in ["int64", "uint64"]] + [("s", 1, "int32"), ("s", 1, "uint32")],
)
def test_append_arrays_integer_epochs_need_a_unit(ds, unit, scale, dtype) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    seconds = [946_728_000, 946_728_001, 946_728_003]
    stamps = np.array([s * scale for s in seconds], dtype=dtype)
    with pytest.raises(TypeError, match="unit="):
        ds.append_arrays(stream_id, stamps, np.array([1.0, 2.0, 3.0]))
    with pytest.raises(TypeError, match="unit="):
        ds.append_arrays(stream_id, pa.array(stamps), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="unit"):
        ds.append_arrays(stream_id, stamps, np.array([1.0, 2.0, 3.0]), unit="minutes")
    assert values(ds, stream_id) == []
    assert ds.append_arrays(stream_id, stamps, np.array([1.0, 2.0, 3.0]), unit=unit) == 3
    assert ds.append_arrays(stream_id, pa.array(stamps + 3 * scale), np.array([4.0, 5.0, 6.0]),
                            unit=unit) == 3
    assert times(ds, stream_id) == [at(0), at(1), at(3), at(3), at(4), at(6)]


def test_append_arrays_nanoseconds_are_floored(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, [], G.Seconds)
    stamps = np.array([-1_500, -1, 0, 999, 1_000, 946_728_000_000_000_999], dtype="int64")
    ds.append_arrays(stream_id, stamps, np.arange(6.0), unit="ns", check_timestamp=False)
    assert ds.append_arrays(
        stream_id, stamps.astype("datetime64[ns]"), np.arange(6.0), check_timestamp=False
    ) == 6
    epoch = datetime.datetime(1970, 1, 1, tzinfo=UTC)
    expected = [epoch + datetime.timedelta(microseconds=us) for us in (-2, -1, 0, 0, 1)]
    assert times(ds, stream_id) == sorted(expected * 2) + [at(0), at(0)]


@pytest.mark.parametrize(
    "unit", ["Y", "M", "W", "D", "h", "m", "s", "ms", "us", "ns", "ps", "10s", "250ms"]
)
def test_append_arrays_datetime64_of_any_unit(ds, unit) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    stamps = np.array(["1970-01-01", "1970-01-01"], dtype=f"datetime64[{unit}]")
    stamps[1] += 1_000_001 if unit in ("ns", "ps") else 1  # later by at least a microsecond
    ds.append_arrays(stream_id, stamps, np.array([1.0, 2.0]))
    epoch = datetime.datetime(1970, 1, 1, tzinfo=UTC)
    expected = [epoch + datetime.timedelta(microseconds=int(us))
                for us in stamps.astype("datetime64[us]").astype("int64")]
    assert times(ds, stream_id) == expected
    assert expected[1] > epoch


@pytest.mark.parametrize("as_array", [False, True], ids=["list", "numpy-str"])
def test_append_arrays_iso_strings_alone(ds, as_array) -> None:
    """Strings only (numpy holds them as its own string type, not as objects) are read as
    append() reads one: naive is UTC, an offset is converted."""
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    stamps = ["2000-01-01T00:00:01", "2000-01-01T02:00:02.5+02:00"]
    assert ds.append_arrays(stream_id, np.array(stamps) if as_array else stamps,
                            np.array([1.0, 2.0])) == 2
    start = datetime.datetime(2000, 1, 1, tzinfo=UTC)
    assert times(ds, stream_id) == [start + datetime.timedelta(seconds=1),
                                    start + datetime.timedelta(seconds=2.5)]
    with pytest.raises(exceptions.InvalidTimestamp):
        ds.append_arrays(stream_id, ["2000-01-01T00:00:03", "not a time"], [3.0, 4.0])
    assert values(ds, stream_id) == [1.0, 2.0]


@pytest.mark.parametrize(
    "stamps, unit",
    [
        (np.array([0, 2**62], dtype="datetime64[s]"), None),  # used to wrap into 1970
        (np.array([0, -(2**62)], dtype="datetime64[ms]"), None),
        (np.array([0, 300_000], dtype="datetime64[Y]"), None),
        (np.array([0, 2**40], dtype="datetime64[D]"), None),
        (np.array([0, 3_600_000], dtype="datetime64[M]"), None),
        (np.array(["2262-04-12", "1970-01-01"], dtype="datetime64[D]"), None),
        (np.array(["1677-09-21", "1970-01-01"], dtype="datetime64[D]"), None),
        (np.array([0, 2**64 - 1], dtype="uint64"), "us"),
        (np.array([0, 2**64 - 1], dtype="uint64"), "ns"),
        (np.array([0, 2**63], dtype="uint64"), "ns"),  # used to wrap into 1677
        (np.array([0, 2**63 + 999], dtype="uint64"), "ns"),
        (pa.array([0, 2**63], pa.uint64()), "ns"),
        (np.array([0, 10**13], dtype="int64"), "s"),
        (np.array([0, 2**62], dtype="int64"), "ms"),
        (np.array([0, -(2**63)], dtype="int64"), "us"),
        (np.array([0, 2**63 - 1], dtype="int64"), "us"),
        (pa.array([0, 2**62], pa.timestamp("s")), None),
        (pa.array([0, 2**62], pa.timestamp("ms", tz="UTC")), None),
        (np.array([0, 2**70], dtype=object), "us"),
    ],
)
def test_append_arrays_out_of_range_is_refused_not_wrapped(ds, stamps, unit) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    with pytest.raises(exceptions.InvalidTimestamp, match="range"):
        ds.append_arrays(stream_id, stamps, np.array([1.0, 2.0]), unit=unit,
                         check_timestamp=False)
    assert values(ds, stream_id) == []


def test_append_arrays_range_edges(ds) -> None:
    from datastream.granularity import MAX_US, MIN_US

    stream_id = ds.ensure_stream({"a": 1}, {}, [], G.Seconds)
    ds.append_arrays(stream_id, np.array([MIN_US, MAX_US]), np.array([1.0, 2.0]), unit="us")
    ds.append_arrays(stream_id, np.array([2**63 - 1], dtype="int64"), np.array([3.0]),
                     unit="ns")
    assert times(ds, stream_id)[-1] == datetime.datetime(1970, 1, 1, tzinfo=UTC) + \
        datetime.timedelta(microseconds=MAX_US)
    for bad in (MIN_US - 1, MAX_US + 1):
        with pytest.raises(exceptions.InvalidTimestamp):
            ds.append_arrays(stream_id, np.array([bad]), np.array([1.0]), unit="us",
                             check_timestamp=False)


def test_append_arrays_huge_python_int_epochs_need_a_unit_too(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    with pytest.raises(TypeError, match="unit="):
        ds.append_arrays(stream_id, [2**70], [1.0])
    assert values(ds, stream_id) == []


@pytest.mark.parametrize("items", [[7, True], [1.5, True], [1, np.bool_(False)], (2, False)])
def test_append_arrays_refuses_bools_among_numbers(ds, items) -> None:
    """numpy makes ``[7, True]`` an int array; the bool is still refused, as one by one."""
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    with pytest.raises(TypeError, match="bool"):
        ds.append_arrays(stream_id, np.array([at(0), at(1)], dtype="datetime64[us]"), items)
    assert values(ds, stream_id) == []


@pytest.mark.parametrize("column", [
    lambda v: pd.array(v, dtype="Int64"),
    lambda v: pd.Series(v, dtype="Int64"),
    lambda v: pd.Series(v, dtype="int64[pyarrow]"),
    lambda v: pl.Series(v, dtype=pl.Int64),
])
def test_append_arrays_nullable_ints_stay_exact_ints(ds, column) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    stamps = np.array([at(0), at(1), at(2)], dtype="datetime64[us]")
    ds.append_arrays(stream_id, stamps, column([2**53 + 1, None, -(2**62) - 3]))
    stored = values(ds, stream_id)
    assert stored == [2**53 + 1, None, -(2**62) - 3]
    assert type(stored[0]) is int and type(stored[2]) is int


def test_append_arrays_nullable_floats(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    stamps = np.array([at(0), at(1)], dtype="datetime64[us]")
    ds.append_arrays(stream_id, stamps, pd.array([1.5, None], dtype="Float64"))
    assert values(ds, stream_id) == [1.5, None]


def test_append_arrays_unit_is_only_for_integers(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    for stamps in (np.array(["2000-01-01"], dtype="datetime64[s]"),
                   pa.array([at(0)], pa.timestamp("us", tz="UTC")),
                   np.array([at(0)], dtype=object)):
        with pytest.raises(TypeError, match="unit"):
            ds.append_arrays(stream_id, stamps, np.array([1.0]), unit="s")
    with pytest.raises(exceptions.InvalidTimestamp):
        ds.append_arrays(stream_id, np.array([946_728_000.0]), np.array([1.0]), unit="s")
    assert values(ds, stream_id) == []


def test_append_table_integer_timestamps(ds) -> None:
    a, b = _two(ds)
    table = pa.table({"stream_id": [a, b], "timestamp": pa.array([946_728_000, 946_728_001]),
                      "value": [1.0, 2.0]})
    with pytest.raises(TypeError, match="unit="):
        ds.append_table(table)
    assert ds.append_table(table, unit="s") == 2
    assert times(ds, a) == [at(0)] and times(ds, b) == [at(1)]


def test_append_arrays_keyword_and_pyarrow(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    stamps = pa.array([at(0), at(1), at(2)], type=pa.timestamp("us", tz="UTC"))
    ds.append_arrays(stream_id, stamps, pa.array([1.0, None, 3.0]))
    ds.append_arrays(stream_id, timestamps=pa.array(_us([3])), values=pa.array([4], pa.int64()),
                     unit="us")
    assert values(ds, stream_id) == [1.0, None, 3.0, 4]
    assert times(ds, stream_id) == [at(0), at(1), at(2), at(3)]


def test_append_arrays_downsamples_like_single_appends(ds) -> None:
    bulk = ds.ensure_stream({"a": 1}, {}, ["mean", "std_dev", "min", "max"], G.Seconds)
    single = ds.ensure_stream({"a": 2}, {}, ["mean", "std_dev", "min", "max"], G.Seconds)
    rng = np.random.default_rng(7)
    seconds = np.sort(rng.uniform(0, 600, 500))
    data = rng.normal(10, 3, 500)
    data[::17] = np.nan
    ds.append_arrays(bulk, _us(seconds), data, unit="us")
    for second, value in zip(_us(seconds), data, strict=True):
        stamp = datetime.datetime(1970, 1, 1, tzinfo=UTC) + datetime.timedelta(
            microseconds=int(second))
        ds.append(single, None if np.isnan(value) else float(value), stamp)
    ds.downsample_streams(until=at(3600))
    for granularity in G.values:
        assert [p for p in ds.get_data(bulk, granularity, start=EVER)] == [
            p for p in ds.get_data(single, granularity, start=EVER)
        ]


def test_append_arrays_is_atomic(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    derived = ds.ensure_stream(
        {"a": 2}, {}, ["mean"], G.Seconds, derive_from=[stream_id], derive_op="derivative"
    )
    ds.append(stream_id, 0, at(10))
    for bad in ["inf", "decreasing", "older", "unknown", "derived"]:
        target, stamps, data = stream_id, _us([11, 12, 13]), np.array([1.0, 2.0, 3.0])
        expected: type[Exception] = exceptions.InvalidTimestamp
        if bad == "inf":
            data = np.array([1.0, np.inf, 3.0])
            expected = ValueError
        elif bad == "decreasing":
            stamps = _us([11, 13, 12])
        elif bad == "older":
            stamps = _us([9, 12, 13])
        elif bad == "unknown":
            target, expected = str(uuid.uuid4()), exceptions.StreamNotFound
        else:
            target, expected = derived, exceptions.AppendToDerivedStreamNotAllowed
        with pytest.raises(expected):
            ds.append_arrays(target, stamps, data, unit="us")
        assert values(ds, stream_id) == [0], bad
        assert values(ds, derived) == [], bad
        assert ds.get_tags(stream_id)["latest_datapoint"] == at(10), bad


def test_append_arrays_unchecked_order(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    ds.append(stream_id, 0, at(10))
    ds.append_arrays(stream_id, _us([13, 11, 12]), np.array([3, 1, 2]), check_timestamp=False,
                     unit="us")
    assert values(ds, stream_id) == [0, 1, 2, 3]
    assert ds.get_tags(stream_id)["earliest_datapoint"] == at(10)
    assert ds.get_tags(stream_id)["latest_datapoint"] == at(13)


def test_append_arrays_is_vectorised(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    count = 300_000
    started = time.perf_counter()
    ds.append_arrays(stream_id, _us(np.arange(count) / 10), np.arange(count, dtype="float64"),
                     unit="us")
    ds.flush()
    elapsed = time.perf_counter() - started
    result = ds.get_data(stream_id, G.Seconds, start=EVER)
    assert len(result) == count
    assert result[-1] == {"t": at((count - 1) / 10), "v": float(count - 1)}
    assert elapsed < 10, f"{count} points took {elapsed:.1f} s"


# -- append_table ----------------------------------------------------------------------------


def _two(ds) -> tuple[str, str]:
    return (
        ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds),
        ds.ensure_stream({"a": 2}, {}, ["mean"], G.Seconds),
    )


def _columns(a, b):
    return {
        "stream_id": [a, b, a, b, a],
        "timestamp": [at(0), at(0), at(1), at(2), at(3)],
        "value": [1.0, 10.0, float("nan"), 12.0, 3.0],
    }


@pytest.mark.parametrize("kind", ["arrow", "record_batch", "pandas", "polars"])
def test_append_table(ds, kind) -> None:
    a, b = _two(ds)
    columns = _columns(a, b)
    if kind == "arrow":
        table = pa.table(
            {
                "stream_id": pa.array(columns["stream_id"]),
                "timestamp": pa.array(columns["timestamp"], pa.timestamp("us", tz="UTC")),
                "value": pa.array(columns["value"]),
            }
        )
    elif kind == "record_batch":
        table = pa.RecordBatch.from_pydict(
            columns,
            schema=pa.schema([("stream_id", pa.string()),
                              ("timestamp", pa.timestamp("us", tz="UTC")),
                              ("value", pa.float64())]),
        )
    elif kind == "pandas":
        table = pd.DataFrame(
            {**columns, "timestamp": pd.to_datetime(columns["timestamp"], utc=True)}
        )
    else:
        table = pl.DataFrame(columns)
    ds.append_table(table)
    assert values(ds, a) == [1.0, None, 3.0]
    assert times(ds, a) == [at(0), at(1), at(3)]
    assert values(ds, b) == [10.0, 12.0]
    assert times(ds, b) == [at(0), at(2)]


def test_append_table_pandas_naive_ns(ds) -> None:
    a, b = _two(ds)
    frame = pd.DataFrame(
        {
            "stream_id": [a, b],
            "timestamp": pd.to_datetime(
                ["2000-01-01 12:00:00.000001", "2000-01-01 12:00:05"], format="ISO8601"
            ),
            "value": [1, 2],
        }
    )
    ds.append_table(frame)
    assert raw(ds, a) == [{"t": at(0.000001), "v": 1}]
    assert raw(ds, b) == [{"t": at(5), "v": 2}]


def test_append_table_pandas_objects_are_kept_as_appended(ds) -> None:
    """A pandas column of Python objects holds the values themselves: no struct type adding
    missing keys, no lists of ints made floats, mixed kinds and huge ints accepted as
    append_multiple accepts them."""
    nominal = ds.ensure_stream({"a": "n"}, {}, ["count"], G.Seconds, value_type="nominal")
    graph = ds.ensure_stream({"a": "g"}, {}, ["count"], G.Seconds, value_type="graph")
    number = ds.ensure_stream({"a": "x"}, {}, ["mean"], G.Seconds)
    nominal_values = [{"a": 1}, {"b": [1, 2]}, "text", [[1, 2], [3.5]], 4]
    graph_value = {"v": [{"i": 1, "x": 2}, {"i": 2}], "e": [{"f": 1, "t": 2}], "extra": [1]}
    frame = pd.DataFrame({
        "stream_id": [nominal] * 5 + [graph] + [number] * 3,
        "timestamp": pd.to_datetime([at(s) for s in (0, 1, 2, 3, 4, 0, 0, 1, 2)], utc=True),
        "value": [*nominal_values, graph_value, 2**70, 1, 2.5],
    })
    assert frame["value"].dtype == object
    assert ds.append_table(frame) == 9
    assert values(ds, nominal) == nominal_values
    assert values(ds, graph) == [graph_value]
    stored = values(ds, number)
    assert stored == [float(2**70), 1, 2.5] and type(stored[1]) is int


def test_append_table_pandas_object_nulls(ds) -> None:
    """None, NaN and pd.NA in a column of objects are null points, as in an Arrow column."""
    nominal = ds.ensure_stream({"a": "n"}, {}, ["count"], G.Seconds, value_type="nominal")
    number = ds.ensure_stream({"a": "x"}, {}, ["mean"], G.Seconds)
    frame = pd.DataFrame({
        "stream_id": [nominal] * 3 + [number] * 3,
        "timestamp": pd.to_datetime([at(s) for s in (0, 1, 2, 0, 1, 2)], utc=True),
        "value": pd.Series([{"a": None}, float("nan"), pd.NA, 2**70, None, pd.NA],
                           dtype=object),
    })
    assert ds.append_table(frame) == 6
    assert values(ds, nominal) == [{"a": None}, None, None]
    assert values(ds, number) == [float(2**70), None, None]


def test_append_table_pandas_objects_are_validated_item_by_item(ds) -> None:
    a, b = _two(ds)
    frame = pd.DataFrame({"stream_id": [a, b], "timestamp": pd.to_datetime([at(0), at(0)]),
                          "value": [1.0, True]})
    with pytest.raises(TypeError, match=f"stream {b}: bool"):
        ds.append_table(frame)
    assert values(ds, a) == [] and values(ds, b) == []


def test_append_table_is_atomic(ds) -> None:
    a, b = _two(ds)
    derived = ds.ensure_stream(
        {"a": 3}, {}, ["mean"], G.Seconds, derive_from=[a], derive_op="derivative"
    )
    ds.append(b, 5, at(5))
    for bad in ["unknown", "inf", "older", "derived"]:
        ids = [a, a, b, b]
        stamps = [at(10), at(11), at(10), at(11)]
        data = [1.0, 2.0, 3.0, 4.0]
        if bad == "unknown":
            ids[3] = str(uuid.uuid4())
        elif bad == "inf":
            data[3] = math.inf
        elif bad == "older":
            stamps[2] = at(1)
        else:
            ids[3] = derived
        table = pa.table(
            {
                "stream_id": pa.array(ids),
                "timestamp": pa.array(stamps, pa.timestamp("us", tz="UTC")),
                "value": pa.array(data),
            }
        )
        with pytest.raises((exceptions.DatastreamException, ValueError)):
            ds.append_table(table)
        assert values(ds, a) == [], bad
        assert values(ds, b) == [5], bad
        assert values(ds, derived) == [], bad


@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 3),  # stream
            st.integers(0, 40),  # seconds
            st.one_of(st.floats(-1e15, 1e15), st.just(math.nan)),
        ),
        min_size=1, max_size=40,
    ),
    integers=st.booleans(),
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_append_table_over_many_streams_equals_appends_per_stream(rows, integers) -> None:
    """Many numeric streams in one table (converted and encoded once for all of them, then
    sliced per stream) store exactly what one append_arrays per stream stores; one stream keeps
    exact decimals."""
    stores = [datastream.Datastream(), datastream.Datastream()]
    ids = [[ds.ensure_stream({"n": n}, {}, ["mean"], G.Seconds,
                             value_type_options={"high_accuracy": n == 3}) for n in range(4)]
           for ds in stores]
    rows = sorted(rows, key=lambda row: row[1])  # in time order per stream
    numbers = [(0 if math.isnan(v) else int(v)) if integers else v for _, _, v in rows]
    stamps = np.array([second for _, second, _ in rows], dtype="datetime64[s]")
    table = pa.table({"stream_id": pa.array([ids[0][n] for n, _, _ in rows]),
                      "timestamp": pa.array(stamps.astype("datetime64[us]")),
                      "value": pa.array(numbers, pa.int64() if integers else pa.float64())})
    assert stores[0].append_table(table) == len(rows)
    for n in range(4):
        mine = [index for index, row in enumerate(rows) if row[0] == n]
        if mine:
            stores[1].append_arrays(ids[1][n], stamps[mine], np.array(numbers)[mine])
    for n in range(4):
        assert raw(stores[0], ids[0][n]) == raw(stores[1], ids[1][n])
    for ds in stores:
        ds.close()


def test_append_table_over_many_streams_names_the_bad_stream(ds) -> None:
    a, b = _two(ds)
    table = pa.table({"stream_id": pa.array([a, b, b, a]),
                      "timestamp": pa.array([at(0), at(5), at(4), at(1)],
                                            pa.timestamp("us", tz="UTC")),
                      "value": pa.array([1.0, 2.0, 3.0, 4.0])})
    with pytest.raises(exceptions.InvalidTimestamp, match=f"stream {b} must not decrease"):
        ds.append_table(table)
    infinite = table.set_column(1, "timestamp", pa.array([at(0), at(4), at(5), at(1)],
                                                         pa.timestamp("us", tz="UTC")))
    infinite = infinite.set_column(2, "value", pa.array([1.0, 2.0, math.inf, 4.0]))
    with pytest.raises(ValueError, match=b):
        ds.append_table(infinite)
    assert values(ds, a) == [] and values(ds, b) == []
