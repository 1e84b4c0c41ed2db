"""behaviour §11: reopening a downsampled range, then late points, equal a replay in order."""

from __future__ import annotations

import datetime

import numpy as np
import pytest

import datastream
from datastream import exceptions

from .helpers import EVER, UTC, G, level, raw

T0 = datetime.datetime(2000, 1, 1, tzinfo=UTC)
DAY = 86_400
DOWNSAMPLERS = ["mean", "min", "max", "median"]
LEVELS = [G.Seconds10, G.Minutes, G.Minutes10, G.Hours, G.Hours6, G.Days]


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def starts(ds, stream_id: str, granularity) -> list[datetime.datetime]:
    """Bucket starts of every datapoint a level read returns."""
    return ds.get_data(stream_id, granularity, start=EVER).to_arrow().column("t").to_pylist()


def points(start_s: int, end_s: int, step_s: int = 600, seed: int = 0) -> tuple:
    """Integer values (sums stay exact whatever the order of the additions) every step."""
    seconds = np.arange(start_s, end_s, step_s, dtype=np.int64)
    values = np.random.default_rng(seed).integers(0, 100, seconds.size)
    return seconds, values


def append(ds, stream_id: str, seconds: np.ndarray, values: np.ndarray, **kwargs) -> None:
    t0_us = int(T0.timestamp()) * 1_000_000
    ds.append_arrays(stream_id, seconds * 1_000_000 + t0_us, values, unit="us", **kwargs)


def bounds(ds, stream_id: str) -> dict:
    return ds.get_tags(stream_id)["downsampled_until"]


def same_levels(ds, one: str, other: str) -> None:
    for granularity in [G.Seconds, *LEVELS]:
        assert level(ds, one, granularity) == level(ds, other, granularity), granularity


@pytest.fixture
def stream(ds, clock):
    stream_id = ds.ensure_stream({"n": "x"}, {}, DOWNSAMPLERS, G.Seconds)
    append(ds, stream_id, *points(0, 3 * DAY))
    clock.now = at(3 * DAY + 3600)
    ds.downsample_streams()
    return stream_id


def test_reopen_moves_each_bound_back_to_start_floored(ds, stream) -> None:
    assert ds.reopen_streams({"n": "x"}, at(DAY + 1830 + 5)) == [stream]
    assert bounds(ds, stream) == {
        "10seconds": at(DAY + 1830), "minutes": at(DAY + 1800),
        "10minutes": at(DAY + 1800), "hours": at(DAY), "6hours": at(DAY), "days": at(DAY),
    }
    assert starts(ds, stream, G.Minutes)[-1] == at(DAY + 1740)
    assert starts(ds, stream, G.Days)[-1] == at(0)
    assert len(raw(ds, stream)) == 3 * DAY // 600  # raw points are never touched
    assert not ds.verify()


def test_late_points_after_reopening_equal_appending_them_in_order(ds, clock, stream) -> None:
    seconds, values = points(0, 3 * DAY)
    late_s, late_v = np.array([DAY + 1845, DAY + 1845, 2 * DAY + 7]), np.array([500, 7, -3])
    with pytest.raises(exceptions.InvalidTimestamp):
        append(ds, stream, late_s[:1], late_v[:1], check_timestamp=False)
    ds.reopen_streams({"n": "x"}, at(DAY + 1830))
    with pytest.raises(exceptions.InvalidTimestamp):  # still frozen before the start
        ds.append(stream, 1, at(DAY + 1829), check_timestamp=False)
    append(ds, stream, late_s, late_v, check_timestamp=False)
    ds.downsample_streams()
    control = ds.ensure_stream({"n": "control"}, {}, DOWNSAMPLERS, G.Seconds)
    order = np.argsort(np.concatenate([seconds, late_s]), kind="stable")
    append(ds, control, np.concatenate([seconds, late_s])[order],
           np.concatenate([values, late_v])[order])
    ds.downsample_streams({"n": "control"})
    same_levels(ds, stream, control)
    assert bounds(ds, stream) == bounds(ds, control)
    assert not ds.verify()


def test_reopening_before_the_retained_raw_points_is_refused(ds, stream) -> None:
    ds.set_retention({"n": "x"}, {"seconds": datetime.timedelta(hours=30)})
    ds.apply_retention()
    assert raw(ds, stream)[0]["t"] == at(DAY + 19 * 3600)  # now (3 d 1 h) - 30 h
    before = bounds(ds, stream)
    minutes = level(ds, stream, G.Minutes)
    with pytest.raises(exceptions.InvalidTimestamp):
        ds.reopen_streams({"n": "x"}, at(DAY))
    # after the first kept point, but the median of the 6-hour bucket from 1 d 18 h (and of
    # the day) would be recomputed from raw points that are gone
    with pytest.raises(exceptions.InvalidTimestamp):
        ds.reopen_streams({"n": "x"}, at(DAY + 20 * 3600))
    assert bounds(ds, stream) == before
    assert level(ds, stream, G.Minutes) == minutes
    assert not ds.verify()


def test_reopening_within_retained_raw_recomputes_what_retention_left(ds, clock) -> None:
    stream_id = ds.ensure_stream({"n": "x"}, {}, ["mean", "min", "max"], G.Seconds)
    append(ds, stream_id, *points(0, 3 * DAY))
    clock.now = at(3 * DAY + 3600)
    ds.downsample_streams()
    ds.set_retention({"n": "x"}, {"seconds": datetime.timedelta(days=1),
                                  "minutes": datetime.timedelta(hours=1)})
    ds.apply_retention()
    assert starts(ds, stream_id, G.Minutes)[0] == at(2 * DAY)
    ds.reopen_streams({"n": "x"}, at(2 * DAY + 7200))
    ds.append(stream_id, 1000, at(2 * DAY + 7230), check_timestamp=False)
    ds.downsample_streams()
    hours = ds.get_data(stream_id, G.Hours, start=at(2 * DAY + 7200)).to_arrow()
    assert hours.column("max")[0].as_py() == 1000
    assert not ds.verify()


def test_nothing_downsampled_after_start_changes_nothing(ds, stream) -> None:
    before = bounds(ds, stream)
    version = ds.get_tags(stream)
    assert ds.reopen_streams({"n": "x"}, at(10 * DAY)) == []
    assert ds.reopen_streams({"n": "nothing"}, at(0)) == []
    assert bounds(ds, stream) == before
    assert ds.get_tags(stream) == version


def test_reopening_a_source_reopens_its_derived_streams(ds, clock) -> None:
    a = ds.ensure_stream({"n": "a"}, {}, ["mean"], G.Seconds)
    b = ds.ensure_stream({"n": "b"}, {}, ["mean"], G.Seconds)
    total = ds.ensure_stream({"n": "sum"}, {}, ["mean"], G.Seconds, derive_from=[a, b],
                             derive_op="sum")
    rate = ds.ensure_stream({"n": "rate"}, {}, ["mean"], G.Seconds, derive_from=[total],
                            derive_op="derivative")
    slope = ds.ensure_stream({"n": "slope"}, {}, ["mean"], G.Seconds, derive_from=[a],
                             derive_op="derivative")
    seconds, values = points(0, DAY, step_s=600)
    append(ds, a, seconds, values)
    append(ds, b, seconds, values[::-1].copy())
    clock.now = at(DAY + 3600)
    ds.downsample_streams()
    reopened = ds.reopen_streams({"n": "a"}, at(12 * 3600 + 15))
    assert sorted(reopened) == sorted([a, total, rate, slope])
    assert reopened[0] == a and reopened.index(total) < reopened.index(rate)  # sources first
    for stream_id in (a, total, rate, slope):  # transitively
        assert bounds(ds, stream_id)["10seconds"] == at(12 * 3600 + 10)
    assert bounds(ds, b)["10seconds"] == at(DAY - 600)  # not derived from a: untouched
    ds.append(a, 1000, at(12 * 3600 + 20), check_timestamp=False)
    ds.downsample_streams()
    assert at(12 * 3600 + 20) in {p["t"] for p in raw(ds, slope)}
    assert bounds(ds, slope)["10seconds"] == at(DAY - 600)
    assert not ds.verify()


def test_a_derived_stream_fed_by_a_reopened_level_is_rederived(ds, clock) -> None:
    a = ds.ensure_stream({"n": "a"}, {}, ["mean"], G.Seconds)
    slope = ds.ensure_stream({"n": "slope"}, {}, ["mean"], G.Minutes,
                             derive_from=[{"stream": a, "granularity": G.Minutes}],
                             derive_op="derivative")
    append(ds, a, *points(0, 12 * 3600, step_s=60))
    clock.now = at(DAY + 3600)
    ds.downsample_streams()
    before = raw(ds, slope)
    ds.reopen_streams({"n": "a"}, at(6 * 3600))
    assert raw(ds, slope)[-1]["t"] < at(6 * 3600)  # its input is not final any more there
    assert not ds.verify()
    ds.downsample_streams()
    assert raw(ds, slope) == before
    ds.reopen_streams({"n": "a"}, at(6 * 3600))
    ds.append(a, 5000, at(6 * 3600 + 5), check_timestamp=False)
    ds.downsample_streams()
    after = {p["t"]: p["v"] for p in raw(ds, slope)}
    assert after != {p["t"]: p["v"] for p in before}
    assert not ds.verify()


@pytest.mark.parametrize("reopen_s", [0, 60, 120, 150, 179])
def test_a_sum_fed_by_a_reopened_level_emits_each_bucket_once(ds, clock, reopen_s) -> None:
    """The replay of a sum whose source level was reopened emits nothing before that level
    closes again; the buckets before the reopened range stay processed (found with a start
    on, and inside, a bucket)."""
    a = ds.ensure_stream({"n": "a"}, {}, ["mean"], G.Seconds)
    total = ds.ensure_stream({"n": "sum"}, {}, ["mean"], G.Minutes, derive_op="sum",
                             derive_from=[{"stream": a, "granularity": G.Minutes}])
    append(ds, a, np.arange(0, 300, 10, dtype=np.int64), np.arange(30))
    clock.now = at(DAY)
    ds.downsample_streams()
    before = raw(ds, total)
    assert [p["v"] for p in before] == [2.5, 8.5, 14.5, 20.5]
    ds.reopen_streams({"n": "a"}, at(reopen_s))
    ds.downsample_streams()
    assert raw(ds, total) == before
    assert not ds.verify()


def test_a_second_object_appends_into_a_range_the_first_reopened(backend_factory,
                                                                 clock) -> None:
    first = backend_factory()
    second = first if first.concurrent_writers is False else backend_factory()
    one = datastream.Datastream(first, clock=clock)
    two = datastream.Datastream(second, clock=clock)
    try:
        stream_id = one.ensure_stream({"n": "x"}, {}, ["mean"], G.Seconds)
        append(one, stream_id, *points(0, DAY))
        clock.now = at(DAY + 3600)
        one.downsample_streams()
        with pytest.raises(exceptions.InvalidTimestamp):
            two.append(stream_id, 1, at(3600 + 5), check_timestamp=False)
        one.reopen_streams(None, at(3600))
        two.append(stream_id, 1, at(3600 + 5), check_timestamp=False)
        two.flush()
        two.downsample_streams()
        assert bounds(one, stream_id) == bounds(two, stream_id)
        assert len(list(one.get_data(stream_id, G.Seconds, start=EVER))) == DAY // 600 + 1
        assert not one.verify()
    finally:
        two.close()
        one.close()
