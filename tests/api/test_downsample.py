"""behaviour §5.2–5.5: downsamplers, bucket closing, empty buckets, filters, auto_downsample."""

from __future__ import annotations

import datetime
import math
import tracemalloc

import numpy as np
import pyarrow as pa
import pytest

import datastream
from datastream import downsamplers, exceptions

from .helpers import (
    ALL_VALUE_DOWNSAMPLERS,
    EVER,
    UTC,
    G,
    at,
    derivative_with_a_buffered_point,
    level,
)

ALL = ALL_VALUE_DOWNSAMPLERS


def _middle(bucket_start: datetime.datetime, seconds: int) -> datetime.datetime:
    return bucket_start + datetime.timedelta(seconds=seconds // 2)


def test_spec_example_one_to_five(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ALL, G.Seconds)
    for second, value in enumerate([1, 2, 3, 4, 5]):
        ds.append(stream_id, value, at(second))
    ds.append(stream_id, 100, at(10))
    assert ds.downsample_streams(until=at(20)) == []
    points = level(ds, stream_id, G.Seconds10)
    assert len(points) == 1
    v = points[0]["v"]
    assert v == {"c": 5, "s": 15, "q": 55, "l": 1, "u": 5, "m": 3.0,
                 "d": 1.4142135623730951, "n": 3}
    assert type(v["m"]) is float
    t = points[0]["t"]
    assert t == {"m": at(2), "a": at(0), "z": at(4), "i": 1.0, "l": 1.0, "u": 1.0, "q": 4.0,
                 "d": 0.0}
    assert ds.get_tags(stream_id)["downsampled_until"]["10seconds"] == at(10)


def test_nulls_count_for_time_only(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ALL, G.Seconds)
    for second, value in [(0, 1), (1, None), (2, 3), (5, float("nan"))]:
        ds.append(stream_id, value, at(second))
    ds.append(stream_id, None, at(10))
    ds.append(stream_id, None, at(11))
    ds.append(stream_id, 0, at(20))
    ds.downsample_streams(until=at(30))
    first, second = level(ds, stream_id, G.Seconds10)
    assert first["v"] == {"c": 2, "s": 4, "q": 10, "l": 1, "u": 3, "m": 2.0, "d": 1.0, "n": 2.0}
    assert first["t"]["m"] == at(1)  # mean of the non-null points' timestamps
    assert first["t"]["a"] == at(0)
    assert first["t"]["z"] == at(5)  # nulls included
    assert first["t"]["i"] == pytest.approx(5 / 3)
    assert first["t"]["l"] == 1.0
    assert first["t"]["u"] == 3.0
    assert first["t"]["q"] == 11.0
    # a bucket holding only nulls: c 0, value keys None, time mean = middle
    assert second["v"] == {"c": 0, "s": None, "q": None, "l": None, "u": None, "m": None,
                           "d": None, "n": None}
    assert second["t"]["m"] == at(15)
    assert second["t"]["a"] == at(10)
    assert second["t"]["z"] == at(11)
    assert second["t"]["i"] == 1.0
    assert second["t"]["d"] == 0.0


def test_single_point_bucket(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ALL, G.Seconds)
    ds.append(stream_id, 7, at(3))
    ds.append(stream_id, 8, at(10))
    ds.downsample_streams(until=at(20))
    point = level(ds, stream_id, G.Seconds10)[0]
    assert point["v"] == {"c": 1, "s": 7, "q": 49, "l": 7, "u": 7, "m": 7.0, "d": 0, "n": 7}
    assert point["t"]["m"] == at(3) and point["t"]["a"] == at(3) and point["t"]["z"] == at(3)
    for key in "iluqd":
        assert point["t"][key] is None, key


def test_std_dev_is_numerically_stable(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["std_dev"], G.Seconds)
    rng = np.random.default_rng(3)
    data = 1e9 + rng.uniform(-1, 1, 120)
    for second, value in enumerate(data):
        ds.append(stream_id, float(value), at(second))
    ds.append(stream_id, 0.0, at(600))
    ds.downsample_streams(until=at(700))
    tens = level(ds, stream_id, G.Seconds10)
    for index, point in enumerate(tens[:12]):
        expected = np.std(data[10 * index: 10 * index + 10])
        assert abs(point["v"]["d"] - expected) / expected < 1e-9
    minutes = level(ds, stream_id, G.Minutes)
    for index, point in enumerate(minutes[:2]):
        expected = np.std(data[60 * index: 60 * index + 60])
        assert abs(point["v"]["d"] - expected) / expected < 1e-9
    whole = level(ds, stream_id, G.Minutes10)
    assert len(whole) == 1
    expected = np.std(data)
    assert abs(whole[0]["v"]["d"] - expected) / expected < 1e-9


def test_coarser_levels_compose_exactly(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ALL, G.Seconds)
    for second in range(60):
        ds.append(stream_id, second, at(second))
    ds.append(stream_id, 1000, at(60))
    ds.downsample_streams(until=at(120))
    minute = level(ds, stream_id, G.Minutes)
    assert len(minute) == 1
    v, t = minute[0]["v"], minute[0]["t"]
    assert v["c"] == 60 and v["s"] == 1770 and v["q"] == 70210
    assert v["l"] == 0 and v["u"] == 59 and v["m"] == 29.5 and v["n"] == 29.5
    assert v["d"] == pytest.approx(np.std(np.arange(60)), rel=1e-12)
    assert t["a"] == at(0) and t["z"] == at(59) and t["m"] == at(29.5)
    # the gaps between Seconds10 buckets count too: 59 gaps of one second
    assert t["i"] == 1.0 and t["l"] == 1.0 and t["u"] == 1.0 and t["q"] == 59.0
    assert t["d"] == 0.0


def test_time_mean_is_weighted_by_count(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    for second, value in [(0, 1), (10, 1), (11, 1), (12, 1), (13, None), (14, None)]:
        ds.append(stream_id, value, at(second))
    ds.append(stream_id, 0, at(60))
    ds.downsample_streams(until=at(120))
    tens = level(ds, stream_id, G.Seconds10)
    assert tens[1]["t"]["m"] == at(11)
    minute = level(ds, stream_id, G.Minutes)[0]
    # (0 + 10 + 11 + 12) / 4, not the mean of the bucket means (0 + 11) / 2; nulls excluded
    assert minute["t"]["m"] == at(8.25)
    assert minute["t"]["a"] == at(0) and minute["t"]["z"] == at(14)
    assert minute["v"] == {"c": 4, "s": 4, "m": 1.0}
    # gaps 10, 1, 1, 1, 1 (nulls included, across the child buckets)
    assert minute["t"]["i"] == pytest.approx(2.8, rel=1e-12)
    assert minute["t"]["u"] == 10.0 and minute["t"]["l"] == 1.0
    assert minute["t"]["q"] == 104.0
    assert minute["t"]["d"] == pytest.approx(3.6, rel=1e-12)


def test_median_comes_from_raw_values(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["median"], G.Seconds)
    for second, value in [(0, 1), (1, 2), (2, 3), (10, 100), (20, 4), (21, 5)]:
        ds.append(stream_id, value, at(second))
    ds.append(stream_id, 0, at(60))
    ds.downsample_streams(until=at(120))
    assert [p["v"]["n"] for p in level(ds, stream_id, G.Seconds10)][:3] == [2, 100, 4.5]
    assert level(ds, stream_id, G.Minutes)[0]["v"]["n"] == 3.5


def test_empty_buckets_between_points(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    start = datetime.datetime(2000, 1, 1, 12, tzinfo=UTC)
    end = datetime.datetime(2000, 1, 3, 12, tzinfo=UTC)
    ds.append(stream_id, 1, start)
    ds.append(stream_id, 2, end)
    ds.downsample_streams(until=end + datetime.timedelta(seconds=10))
    tens = ds.get_data(stream_id, G.Seconds10, start=EVER)
    assert len(tens) == 17280
    assert tens[0]["v"] == {"c": 1, "s": 1, "m": 1.0}
    empty = tens[1]
    bucket = start + datetime.timedelta(seconds=10)
    assert empty["v"] == {"c": 0, "s": None, "m": None}
    middle = _middle(bucket, 10)
    assert empty["t"]["m"] == middle and empty["t"]["a"] == middle and empty["t"]["z"] == middle
    assert empty["t"]["i"] is None
    assert tens[-1]["t"]["a"] == end - datetime.timedelta(seconds=5)
    counts = {g.name: len(ds.get_data(stream_id, g, start=EVER)) for g in G.values[1:]}
    assert counts == {"10seconds": 17280, "minutes": 2880, "10minutes": 288, "hours": 48,
                      "6hours": 8, "days": 2}
    days = list(ds.get_data(stream_id, G.Days, start=EVER))
    assert [d["v"]["c"] for d in days] == [1, 0]
    assert days[1]["t"]["m"] == datetime.datetime(2000, 1, 2, 12, tzinfo=UTC)
    # a range in the middle of the gap
    window = ds.get_data(stream_id, G.Minutes, start=start + datetime.timedelta(hours=5),
                         end_exclusive=start + datetime.timedelta(hours=6))
    assert len(window) == 60
    assert all(p["v"]["c"] == 0 for p in window)
    assert window[0]["t"]["a"] == start + datetime.timedelta(hours=5, seconds=30)


def test_year_long_gap_is_cheap(ds) -> None:
    """Empty buckets are computed on read: sizing and indexing a year of 10 s buckets holds
    no more than a few MB (materialising them would take hundreds)."""
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    first = datetime.datetime(2001, 1, 1, tzinfo=UTC)
    last = datetime.datetime(2002, 1, 1, 0, 0, 10, tzinfo=UTC)
    ds.append(stream_id, 1, first)
    ds.append(stream_id, 2, last)
    ds.downsample_streams(until=last + datetime.timedelta(seconds=10))
    tracemalloc.start()
    arrow_before = pa.total_allocated_bytes()
    try:
        days = ds.get_data(stream_id, G.Days, start=EVER)
        hours6 = ds.get_data(stream_id, G.Hours6, start=EVER)
        seconds10 = ds.get_data(stream_id, G.Seconds10, start=EVER)
        assert len(days) == 365
        assert len(hours6) == 1460
        assert days[0]["v"]["c"] == 1 and days[364]["v"]["c"] == 0
        # every 10 s bucket of the year; the one holding ``last`` is still open
        assert len(seconds10) == 365 * 8640 + 1
        assert seconds10.count() == 365 * 8640 + 1
        assert seconds10[0]["v"] == {"c": 1, "s": 1.0, "m": 1.0}
        assert seconds10[-1]["v"] == {"c": 0, "s": None, "m": None}
        assert seconds10[-1]["t"]["a"] == _middle(datetime.datetime(2002, 1, 1, tzinfo=UTC), 10)
        june = ds.get_data(stream_id, G.Seconds10, start=datetime.datetime(2001, 6, 1),
                           end_exclusive=datetime.datetime(2001, 6, 1, 0, 1))
        assert len(june) == 6
        assert [p["v"]["c"] for p in june] == [0] * 6
        peak = tracemalloc.get_traced_memory()[1]
        held = pa.total_allocated_bytes() - arrow_before
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MB of Python/numpy memory"
    assert held < 16 * 2**20, f"{held / 2**20:.1f} MB of Arrow memory held"


def test_bucket_closing_rules(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    for second in range(0, 25):
        ds.append(stream_id, second, at(second))
    # (a) until: nothing ends before 12:00:10
    ds.downsample_streams(until=at(9.999999))
    assert level(ds, stream_id, G.Seconds10) == []
    assert ds.get_tags(stream_id)["downsampled_until"]["10seconds"] in (None, at(0))
    ds.downsample_streams(until=at(10))
    assert len(level(ds, stream_id, G.Seconds10)) == 1
    assert ds.get_tags(stream_id)["downsampled_until"]["10seconds"] == at(10)
    # (b) the bucket of the latest datapoint stays open, whatever until says
    ds.downsample_streams(until=at(1000))
    assert [p["v"]["m"] for p in level(ds, stream_id, G.Seconds10)] == [4.5, 14.5]
    assert ds.get_tags(stream_id)["downsampled_until"]["10seconds"] == at(20)
    # (c) a minute closes only when every 10 s bucket before its end is closed
    assert level(ds, stream_id, G.Minutes) == []
    ds.append(stream_id, 60, at(60))
    ds.downsample_streams(until=at(1000))
    assert [p["v"]["m"] for p in level(ds, stream_id, G.Minutes)] == [12.0]
    assert ds.get_tags(stream_id)["downsampled_until"]["minutes"] == at(60)
    assert len(level(ds, stream_id, G.Seconds10)) == 6


def test_until_defaults_to_the_clock(ds, clock) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    for second in range(0, 21):
        ds.append(stream_id, second, at(second))
    clock.now = at(15)
    ds.downsample_streams()
    assert [p["v"]["m"] for p in level(ds, stream_id, G.Seconds10)] == [4.5]
    clock.now = at(20)
    ds.downsample_streams()
    assert [p["v"]["m"] for p in level(ds, stream_id, G.Seconds10)] == [4.5, 14.5]


def test_idempotent(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ALL, G.Seconds)
    for second in range(0, 200, 3):
        ds.append(stream_id, second % 7, at(second))
    first = ds.downsample_streams(until=at(300), return_datapoints=True)
    assert len(first) > 0
    before = {g.name: level(ds, stream_id, g) for g in G.values}
    tags = ds.get_tags(stream_id)
    assert ds.downsample_streams(until=at(300), return_datapoints=True) == []
    assert ds.downsample_streams(until=at(300)) == []
    assert {g.name: level(ds, stream_id, g) for g in G.values} == before
    assert ds.get_tags(stream_id) == tags


def test_incremental_equals_one_go(ds) -> None:
    names = ALL + ["most_often", "least_often", "frequencies"]
    once = ds.ensure_stream({"a": 1}, {}, names, G.Seconds)
    steps = ds.ensure_stream({"a": 2}, {}, names, G.Seconds)
    rng = np.random.default_rng(11)
    seconds = np.sort(rng.uniform(0, 7200, 800))
    data = rng.integers(-50, 50, 800)
    for second, value in zip(seconds, data, strict=True):
        for stream_id in (once, steps):
            ds.append(stream_id, int(value), at(float(second)))
    for until in range(0, 7300, 397):
        ds.downsample_streams({"a": 2}, until=at(until))
    ds.downsample_streams({"a": 2}, until=at(9000))
    ds.downsample_streams({"a": 1}, until=at(9000))
    for granularity in G.values[1:]:
        assert level(ds, once, granularity) == level(ds, steps, granularity), granularity
    assert len(level(ds, once, G.Minutes)) == 119
    assert len(level(ds, once, G.Hours)) == 1


def test_incremental_appends_and_downsampling(ds) -> None:
    once = ds.ensure_stream({"a": 1}, {}, ALL, G.Seconds)
    steps = ds.ensure_stream({"a": 2}, {}, ALL, G.Seconds)
    points = [(second * 7 % 3600, second) for second in range(500)]
    points = sorted((s + 0.25 * (v % 4), v) for s, v in points)
    for second, value in points:
        ds.append(steps, value, at(second))
        if value % 50 == 0:
            ds.downsample_streams({"a": 2}, until=at(second))
    for second, value in points:
        ds.append(once, value, at(second))
    ds.downsample_streams(until=at(5000))
    for granularity in G.values[1:]:
        assert level(ds, once, granularity) == level(ds, steps, granularity), granularity


def test_return_datapoints_ordering(ds) -> None:
    a = ds.ensure_stream({"n": 1}, {}, ["mean"], G.Seconds)
    b = ds.ensure_stream({"n": 2}, {}, ["max"], G.Seconds)
    for second in range(0, 130, 5):
        ds.append(b, second, at(second))
        ds.append(a, -second, at(second))
    result = ds.downsample_streams(until=at(1000), return_datapoints=True)
    assert all(set(item) == {"stream_id", "granularity", "datapoint"} for item in result)
    streams = [item["stream_id"] for item in result]
    assert set(streams) == {a, b}
    assert streams == sorted(streams, key=streams.index)  # grouped by stream
    assert streams.count(a) == streams.count(b) == 12 + 2
    for stream_id in (a, b):
        mine = [item for item in result if item["stream_id"] == stream_id]
        granularities = [item["granularity"] for item in mine]
        assert granularities == [G.Seconds10] * 12 + [G.Minutes] * 2
        for granularity in (G.Seconds10, G.Minutes):
            got = [item["datapoint"] for item in mine if item["granularity"] == granularity]
            assert got == level(ds, stream_id, granularity)
    first_b = [item["datapoint"] for item in result if item["stream_id"] == b][0]
    assert first_b["v"] == {"c": 2, "u": 5}
    assert first_b["t"]["a"] == at(0)


def test_filter_stream(ds) -> None:
    a = ds.ensure_stream({"n": 1}, {"keep": True}, ["mean"], G.Seconds)
    b = ds.ensure_stream({"n": 2}, {"keep": False}, ["mean"], G.Seconds)
    for stream_id in (a, b):
        for second in range(0, 30):
            ds.append(stream_id, second, at(second))
    seen = []

    def keep(tags: dict) -> bool:
        seen.append(tags)
        return tags["keep"]

    ds.downsample_streams(until=at(100), filter_stream=keep)
    assert sorted(tags["stream_id"] for tags in seen) == sorted([a, b])
    assert all("latest_datapoint" in tags and "n" in tags for tags in seen)
    assert len(level(ds, a, G.Seconds10)) == 2
    assert level(ds, b, G.Seconds10) == []
    assert ds.get_tags(b)["downsampled_until"]["10seconds"] is None
    ds.downsample_streams({"n": 2}, until=at(100))
    assert len(level(ds, b, G.Seconds10)) == 2


def test_skipped_streams(ds) -> None:
    never = ds.ensure_stream({"n": 1}, {}, [], G.Seconds)
    empty = ds.ensure_stream({"n": 2}, {}, ["mean"], G.Seconds)
    for second in range(0, 30):
        ds.append(never, second, at(second))
    assert ds.downsample_streams(until=at(100), return_datapoints=True) == []
    for granularity in G.values[1:]:
        assert level(ds, never, granularity) == []
        assert level(ds, empty, granularity) == []
    assert ds.get_tags(never)["downsampled_until"]["10seconds"] is None
    assert ds.get_tags(empty)["downsampled_until"]["10seconds"] is None
    ds.append(never, 1, at(5), check_timestamp=False)  # nothing is frozen
    assert len(ds.get_data(never, G.Seconds, start=EVER)) == 31


def test_appending_into_a_downsampled_range(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    for second in range(0, 25):
        ds.append(stream_id, second, at(second))
    ds.downsample_streams(until=at(100))
    assert ds.get_tags(stream_id)["downsampled_until"]["10seconds"] == at(20)
    for stamp in (at(5), at(19.999999), at(0)):
        with pytest.raises(exceptions.InvalidTimestamp):
            ds.append(stream_id, 1, stamp, check_timestamp=False)
        with pytest.raises(exceptions.InvalidTimestamp):
            ds.append_multiple([{"stream_id": stream_id, "value": 1, "timestamp": stamp}])
        with pytest.raises(exceptions.InvalidTimestamp):
            ds.append_arrays(stream_id, np.array([np.datetime64(stamp.replace(tzinfo=None))],
                                                 dtype="datetime64[us]"),
                             np.array([1.0]), check_timestamp=False)
    ds.append(stream_id, 99, at(20), check_timestamp=False)  # at the bound is fine
    assert [p["v"]["m"] for p in level(ds, stream_id, G.Seconds10)] == [4.5, 14.5]
    assert len(ds.get_data(stream_id, G.Seconds, start=EVER)) == 26


def test_filters(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean", "max"], G.Seconds)
    for second in range(0, 15):
        ds.append(stream_id, second, at(second))
    ds.downsample_streams(until=at(100))

    def one(**kwargs):
        return ds.get_data(stream_id, G.Seconds10, start=EVER, **kwargs)[0]

    assert set(one()["v"]) == {"m", "u", "s", "c"}
    assert set(one()["t"]) == set("mazilquq") | {"d"}
    assert one(value_downsamplers=["mean"]) == {"t": one()["t"], "v": {"m": 4.5}}
    assert one(value_downsamplers=("max", "count"))["v"] == {"u": 9, "c": 10}
    assert one(time_downsamplers=["first", "last"])["t"] == {"a": at(0), "z": at(9)}
    assert one(time_downsamplers=["intervals_max"])["t"] == {"u": 1.0}
    assert one(value_downsamplers=[]) == {"t": one()["t"]}
    assert one(time_downsamplers=[]) == {"v": one()["v"]}
    assert one(value_downsamplers=[], time_downsamplers=[]) == {}
    # named downsamplers the stream does not keep: no keys, but 'v' stays (only [] drops it)
    assert one(value_downsamplers=["median", "min"]) == {"t": one()["t"], "v": {}}
    assert one(value_downsamplers=["median"], time_downsamplers=[]) == {"v": {}}
    with pytest.raises(exceptions.UnsupportedDownsampler):
        one(value_downsamplers=["maximum"])
    with pytest.raises(exceptions.UnsupportedDownsampler):
        one(time_downsamplers=["median"])


def test_auto_downsample(backend_factory, clock) -> None:
    with datastream.Datastream(backend_factory(), clock=clock, auto_downsample=True) as auto:
        stream_id = auto.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
        for second in range(0, 26):
            auto.append(stream_id, second, at(second))
        auto.flush()
        # the clock (2000-01-01 00:00) is before the data: rule (a) does not apply
        assert [p["v"]["m"] for p in level(auto, stream_id, G.Seconds10)] == [4.5, 14.5]
        assert auto.get_tags(stream_id)["downsampled_until"]["10seconds"] == at(20)
        with pytest.raises(exceptions.InvalidTimestamp):
            auto.append(stream_id, 1, at(3), check_timestamp=False)
        auto.append(stream_id, 60, at(61))
        auto.flush()
        assert [p["v"]["m"] for p in level(auto, stream_id, G.Minutes)] == [12.5]
        assert len(level(auto, stream_id, G.Seconds10)) == 6


def test_auto_downsample_matches_explicit(backend_factory, clock) -> None:
    with datastream.Datastream(backend_factory(), clock=clock, auto_downsample=True) as auto:
        a = auto.ensure_stream({"a": 1}, {}, ALL, G.Seconds)
        for second in range(0, 7300, 13):
            auto.append(a, second % 11, at(second))
            if second % 1000 < 13:
                auto.flush()
        auto.flush()
        auto_levels = {g.name: level(auto, a, g) for g in G.values[1:]}
    with datastream.Datastream(backend_factory(), clock=clock) as manual:
        c = manual.ensure_stream({"a": 3}, {}, ALL, G.Seconds)
        for second in range(0, 7300, 13):
            manual.append(c, second % 11, at(second))
        manual.downsample_streams({"a": 3}, until=at(10**6))
        assert {g.name: level(manual, c, g) for g in G.values[1:]} == auto_levels
    assert len(auto_levels["hours"]) == 2


def test_negative_zero_and_zero_are_one_frequency_key(ds) -> None:
    """-0.0 == 0.0: one key, 0.0, whichever of them came first."""
    stream = ds.ensure_stream({"n": "z"}, {}, ["frequencies"], G.Seconds)
    for seconds, value in [(0, -0.0), (1, 0.0), (2, 1.0), (20, 5.0)]:
        ds.append(stream, value, at(seconds))
    ds.downsample_streams(until=at(60))
    first = level(ds, stream, G.Seconds10)[0]
    table = first["v"][downsamplers.VALUE_DOWNSAMPLERS["frequencies"]]
    assert table == {0.0: 2, 1.0: 1}
    assert all(math.copysign(1.0, key) == 1.0 for key in table)


@pytest.mark.parametrize("items, expected", [
    ([[1, 2], "[1,2]", "[1,2]"], {"[1,2]": 1, '"[1,2]"': 2}),
    (["1", 1, 1.0], {'"1"': 1, "1": 1, "1.0": 1}),
    ([{"a": 1}, '{"a":1}', "x", "x"], {'{"a":1}': 1, '"{\\"a\\":1}"': 1, "x": 2}),
])
def test_frequency_keys_never_merge_different_values(ds, items, expected) -> None:
    """A text equal to another value's canonical JSON (or a number and a text that look
    alike) keeps a key of its own: the counts always add up to ``c``."""
    stream = ds.ensure_stream({"n": "f"}, {}, ["count", "frequencies"], G.Seconds,
                              value_type="nominal")
    for seconds, value in enumerate(items):
        ds.append(stream, value, at(seconds))
    ds.append(stream, "end", at(30))
    ds.downsample_streams(until=at(60))
    value = level(ds, stream, G.Seconds10)[0]["v"]
    assert value["f"] == expected
    assert sum(value["f"].values()) == value["c"] == len(items)


def test_filter_stream_sees_derived_metadata_with_buffered_source_points(ds) -> None:
    """The tags ``filter_stream`` judges are those find_streams shows: a derived stream's
    extent includes what the object's buffered source points derive (behaviour §4.3)."""
    a, d = derivative_with_a_buffered_point(ds, last=12)
    seen = {}

    def judge(tags: dict) -> bool:
        seen[tags["stream_id"]] = tags["latest_datapoint"]
        return True

    ds.downsample_streams(until=at(60), filter_stream=judge)
    assert seen == {a: at(12), d: at(12)}
    assert ds.get_tags(d)["downsampled_until"]["10seconds"] == at(10)


SUBSETS = [["count"], ["mean"], ["min", "max"], ["mean", "min", "max"], ["sum_squares"],
           ["std_dev"], ["median", "min"]]


@pytest.mark.parametrize("names", SUBSETS, ids="+".join)
def test_a_subset_of_downsamplers_reads_what_all_of_them_read(ds, names) -> None:
    """Level rows keep only the state a stream's downsamplers need: every level of a stream
    with some downsamplers reads exactly what a stream with all of them reads for those keys,
    across incremental downsampling (stored finer rows merged into coarser ones) and nulls."""
    rng = np.random.default_rng(len(names))
    few = ds.ensure_stream({"n": "few"}, {}, names, G.Seconds)
    every = ds.ensure_stream({"n": "all"}, {}, ALL, G.Seconds)
    offsets = np.sort(rng.choice(2 * 3600 * 10, 4000, replace=False)) / 10
    data = np.round(1e6 + rng.normal(0, 3, len(offsets)), 3)
    for start in range(0, len(offsets), 700):
        for second, value in zip(offsets[start:start + 700], data[start:start + 700]):
            point = None if value < 1e6 - 5 else float(value)
            ds.append(few, point, at(second))
            ds.append(every, point, at(second))
        ds.downsample_streams(until=at(offsets[min(start + 699, len(offsets) - 1)]))
    ds.downsample_streams(until=at(3 * 3600))
    keys = set(ds.get_tags(few)["value_downsamplers"])
    keys = {downsamplers.VALUE_DOWNSAMPLERS[name] for name in keys}
    for granularity in (G.Seconds10, G.Minutes, G.Minutes10, G.Hours):
        mine, theirs = level(ds, few, granularity), level(ds, every, granularity)
        assert len(mine) == len(theirs) > 0
        for got, full in zip(mine, theirs, strict=True):
            assert got["t"] == full["t"]
            assert got["v"] == {key: full["v"][key] for key in keys}
    result = ds.verify({"n": "few"})
    assert result.checked["streams"] == 1 and not result, result


def test_a_level_source_with_min_only_still_gives_bucket_means(ds) -> None:
    """A derived stream reads a level source's bucket means (behaviour §7): count and sum stay
    in the level rows of every numeric stream, whatever its downsamplers."""
    low = ds.ensure_stream({"n": "low"}, {}, ["min"], G.Seconds)
    derived = ds.ensure_stream({"n": "sum"}, {}, ["mean"], G.Seconds10,
                               derive_from=[{"stream": low, "granularity": G.Seconds10}],
                               derive_op="sum")
    for second in range(20):
        ds.append(low, float(second), at(second))
    ds.append(low, 0.0, at(30))
    ds.downsample_streams(until=at(40))
    points = list(ds.get_data(derived, G.Seconds10, start=EVER))
    assert [(p["t"], p["v"]) for p in points] == [(at(0), 4.5), (at(10), 14.5), (at(20), None)]
