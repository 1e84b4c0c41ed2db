"""Derived streams fed out of order equal a replay of their sources (late points, resets
arriving after the data they apply to, any batching)."""

from __future__ import annotations

import datetime
import math
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import datastream
from datastream import exceptions
from datastream.backends import duckdb

G = datastream.Granularity
T0 = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def values_of(ds, stream_id):
    start = T0 - datetime.timedelta(days=1)
    return [(p["t"], p["v"]) for p in ds.get_data(stream_id, G.Seconds, start=start)]


def same(left, right):
    assert len(left) == len(right), (left, right)
    for (t1, v1), (t2, v2) in zip(left, right):
        assert t1 == t2
        if v1 is None or v2 is None:
            assert v1 is v2
        else:
            assert math.isclose(v1, v2, rel_tol=1e-9, abs_tol=1e-12)


def test_derivative_of_a_late_point_equals_the_replay():
    ds = datastream.Datastream(duckdb.Backend())
    a = ds.ensure_stream({"n": "a"}, {}, [], G.Seconds)
    d = ds.ensure_stream({"n": "d"}, {}, [], G.Seconds, derive_from=[a], derive_op="derivative")
    values = [21, 25, 28, 32, 25, 70, 74]
    seconds = [0, 1, 2, 3, 4, 10, 11]
    for index in (0, 1, 2, 3, 5, 6, 4):  # the point at :04 arrives last
        ds.append(a, values[index], at(seconds[index]), check_timestamp=False)
        ds.flush()
    assert [v for _, v in values_of(ds, d)] == [4.0, 3.0, 4.0, -7.0, 7.5, 4.0]
    assert ds.get_tags(d)["latest_datapoint"] == at(11)


def test_one_source_sum_keeps_a_late_point_of_an_emitted_bucket():
    ds = datastream.Datastream(duckdb.Backend())
    a = ds.ensure_stream({"n": "a"}, {}, [], G.Seconds10)
    s = ds.ensure_stream({"n": "s"}, {}, [], G.Seconds10, derive_from=[a], derive_op="sum")
    ds.append(a, 1, at(0))
    ds.append(a, 2, at(10))
    ds.append(a, 3, at(20))
    ds.flush()
    ds.append(a, 5, at(5), check_timestamp=False)  # same bucket as the point at :00
    ds.flush()
    # sum takes each source's first point of a bucket: the bucket at :00 keeps 1
    assert [v for _, v in values_of(ds, s)] == [1.0, 2.0, 3.0]
    ds.append(a, 7, at(-10), check_timestamp=False)  # a new, earlier bucket
    ds.flush()
    assert [v for _, v in values_of(ds, s)] == [7.0, 1.0, 2.0, 3.0]


def test_sum_takes_points_after_an_emitted_bucket_without_rederiving(monkeypatch):
    """Once a bucket is emitted, later in-order points of it cannot change the sum (the first
    point of each source counts): they do not make the stream be re-derived. A late point
    before a source's first one in that bucket does."""
    from datastream.engine import operators

    calls = []
    original = operators._rederive
    monkeypatch.setattr(operators, "_rederive",
                        lambda *args: calls.append(args[2]) or original(*args))
    ds = datastream.Datastream(duckdb.Backend())
    a = ds.ensure_stream({"n": "a"}, {}, [], G.Seconds10)
    b = ds.ensure_stream({"n": "b"}, {}, [], G.Seconds10)
    s = ds.ensure_stream({"n": "s"}, {}, [], G.Seconds10, derive_from=[a, b],
                         derive_op="sum")
    ds.append(a, 1, at(1))
    ds.append(b, 10, at(4))
    ds.flush()
    for second in (5, 6, 7, 8):
        ds.append(a, second, at(second))
        ds.append(b, second, at(second + 0.5))
        ds.flush()
    assert values_of(ds, s) == [(at(0), 11.0)] and calls == []
    ds.append(b, 100, at(2), check_timestamp=False)
    ds.flush()
    assert values_of(ds, s) == [(at(0), 101.0)] and len(calls) == 1
    assert not ds.verify()


def test_counter_derivative_with_a_reset_arriving_after_its_data():
    uptime = [10, 23, 28, 44, 2, 17, 90, 30, 2]
    data = [5, 12, 7, 25, 7, 18, 33, 40, 5]
    ds = datastream.Datastream(duckdb.Backend())
    u = ds.ensure_stream({"n": "u"}, {}, [], G.Seconds)
    r = ds.ensure_stream({"n": "r"}, {}, [], G.Seconds, value_type="nominal",
                         derive_from=[u], derive_op="counter_reset")
    x = ds.ensure_stream({"n": "x"}, {}, [], G.Seconds)
    c = ds.ensure_stream({"n": "c"}, {}, [], G.Seconds, derive_op="counter_derivative",
                         derive_from=[{"stream": r, "name": "reset"}, x],
                         derive_args={"max_value": 256})
    for second in range(9):  # data first: every reset arrives after the data it applies to
        ds.append(x, data[second], at(second))
        ds.flush()
        ds.append(u, uptime[second], at(second))
        ds.flush()
    assert [v for _, v in values_of(ds, c)] == [7.0, 251.0, 18.0, 11.0, 15.0]


def test_counter_derivative_needs_no_reset_points():
    ds = datastream.Datastream(duckdb.Backend())
    u = ds.ensure_stream({"n": "u"}, {}, [], G.Seconds)
    r = ds.ensure_stream({"n": "r"}, {}, [], G.Seconds, value_type="nominal",
                         derive_from=[u], derive_op="counter_reset")
    x = ds.ensure_stream({"n": "x"}, {}, [], G.Seconds)
    c = ds.ensure_stream({"n": "c"}, {}, [], G.Seconds, derive_op="counter_derivative",
                         derive_from=[{"stream": r, "name": "reset"}, x],
                         derive_args={"max_value": 256})
    for second, value in enumerate([5, 12, None, 7, 25]):
        ds.append(x, value, at(second))
    ds.flush()
    assert values_of(ds, c) == [(at(1), 7.0), (at(2), None), (at(4), 18.0)]


def test_a_late_point_may_not_reach_into_a_derived_streams_closed_range():
    ds = datastream.Datastream(duckdb.Backend())
    a = ds.ensure_stream({"n": "a"}, {}, ["mean"], G.Seconds)
    d = ds.ensure_stream({"n": "d"}, {}, ["mean"], G.Seconds, derive_from=[a],
                         derive_op="derivative")
    for second in range(0, 100, 3):
        ds.append(a, second, at(second))
    ds.flush()
    ds.downsample_streams({"n": "d"}, until=at(60))  # only the derived stream is closed
    assert ds.get_tags(a)["downsampled_until"]["10seconds"] is None
    with pytest.raises(exceptions.InvalidTimestamp, match=d):
        ds.append(a, 1.5, at(31), check_timestamp=False)
    ds.append(a, 1.5, at(95), check_timestamp=False)  # after the closed range: fine
    ds.flush()
    assert not ds.get_data(a, G.Seconds, start=at(31), end=at(31))


OPS = ["derivative", "sum", "counter_reset", "counter_derivative"]


@st.composite
def histories(draw):
    count = draw(st.integers(1, 25))
    seconds = draw(st.lists(st.integers(0, 40), min_size=count, max_size=count))
    numbers = draw(st.lists(st.one_of(st.none(), st.integers(-20, 60)), min_size=count,
                            max_size=count))
    second_source = draw(st.lists(st.tuples(st.integers(0, 40),
                                            st.one_of(st.none(), st.integers(-20, 60))),
                                  max_size=15))
    order = draw(st.permutations(range(count + len(second_source))))
    flushes = draw(st.lists(st.booleans(), min_size=len(order), max_size=len(order)))
    return list(zip(seconds, numbers)), second_source, order, flushes


@pytest.mark.filterwarnings("ignore::datastream.exceptions.InvalidValueWarning")
@pytest.mark.parametrize("op", OPS)
@settings(max_examples=int(os.environ.get("DATASTREAM_LATE_EXAMPLES", "15")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(history=histories())
def test_live_equals_replay_whatever_the_arrival_order(op, history):
    first, second, order, flushes = history
    ds = datastream.Datastream(duckdb.Backend())
    a = ds.ensure_stream({"n": "a"}, {}, [], G.Seconds)
    b = ds.ensure_stream({"n": "b"}, {}, [], G.Seconds)
    if op == "sum":
        config = {"derive_from": [a, b]}
    elif op == "counter_reset":
        config = {"derive_from": [a], "value_type": "nominal"}
    elif op == "counter_derivative":
        r = ds.ensure_stream({"n": "r"}, {}, [], G.Seconds, value_type="nominal",
                             derive_from=[b], derive_op="counter_reset")
        config = {"derive_from": [{"stream": r, "name": "reset"}, a],
                  "derive_args": {"max_value": 100}}
    else:
        config = {"derive_from": [a]}
    live = ds.ensure_stream({"n": "live"}, {}, [], G.Seconds, derive_op=op, **config)
    points = [(a, s, v) for s, v in first] + [(b, s, v) for s, v in second]
    for position, index in enumerate(order):
        stream_id, second_, value = points[index]
        ds.append(stream_id, value, at(second_), check_timestamp=False)
        if flushes[position]:
            ds.flush()
    ds.flush()
    replayed = ds.ensure_stream({"n": "replay"}, {}, [], G.Seconds, derive_op=op, **config)
    ds.backprocess_streams({"n": "replay"})
    same(values_of(ds, live), values_of(ds, replayed))
