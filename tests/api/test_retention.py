"""behaviour §11: retention per level, on every backend, with the injectable clock."""

from __future__ import annotations

import datetime

import numpy as np
import pytest

import datastream
from datastream import exceptions

from .helpers import EVER, UTC, G, level, raw

T0 = datetime.datetime(2000, 1, 1, tzinfo=UTC)
DAY = 86_400
STEP = 600  # one point every 10 minutes: few rows, so mongomock stays quick
PER_DAY = DAY // STEP
DOWNSAMPLERS = ["mean", "min", "max"]


def series(ds, stream_id: str, start_s: int, end_s: int, seed: int = 0) -> None:
    """One point every STEP seconds in [start_s, end_s) after T0."""
    seconds = np.arange(start_s, end_s, STEP, dtype=np.int64)
    rng = np.random.default_rng(seed)
    t0_us = int(T0.timestamp()) * 1_000_000
    ds.append_arrays(stream_id, seconds * 1_000_000 + t0_us,
                     np.round(rng.normal(20, 5, seconds.size), 2), unit="us")


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def starts(ds, stream_id: str, granularity) -> list[datetime.datetime]:
    """Bucket starts of every datapoint a level read returns."""
    return ds.get_data(stream_id, granularity, start=EVER).to_arrow().column("t").to_pylist()


@pytest.fixture
def three_days(ds, clock):
    """A stream with one point every 10 minutes for three days, downsampled at 3 days + 1 hour."""
    stream_id = ds.ensure_stream({"n": "x"}, {}, DOWNSAMPLERS, G.Seconds)
    series(ds, stream_id, 0, 3 * DAY)
    clock.now = at(3 * DAY + 3600)
    ds.downsample_streams()
    return stream_id


def test_retention_deletes_exactly_what_it_may(ds, three_days) -> None:
    stream_id = three_days
    before_10s = level(ds, stream_id, G.Seconds10)
    ds.set_retention({"n": "x"}, {G.Seconds: datetime.timedelta(days=1), "minutes":
                                  datetime.timedelta(hours=12)})
    result = ds.apply_retention()
    # raw: older than now - 1 day (2d 1h) but only where the days level is closed (2d)
    # minutes: older than 2d 13h, but the days level has absorbed only up to 2d
    # (minutes: the buckets reads showed, empty ones between the points included)
    assert result == {"streams": 1, "deleted": {"seconds": 2 * PER_DAY, "minutes": 2 * 1440}}
    points = raw(ds, stream_id)
    assert len(points) == PER_DAY
    assert points[0]["t"] == at(2 * DAY)
    minutes = starts(ds, stream_id, G.Minutes)
    assert minutes[0] == at(2 * DAY)
    assert len(minutes) == (DAY - STEP) // 60  # up to the open bucket of the latest point
    # a level without retention keeps every bucket, from the stream's first one
    assert level(ds, stream_id, G.Seconds10) == before_10s
    tags = ds.get_tags(stream_id)
    assert tags["earliest_datapoint"] == at(2 * DAY)
    assert tags["retention"] == {"seconds": datetime.timedelta(days=1),
                                 "minutes": datetime.timedelta(hours=12)}
    assert list(ds.get_data(stream_id, G.Seconds, start=EVER, end_exclusive=at(2 * DAY))) == []
    assert list(ds.get_data(stream_id, G.Minutes, start=at(DAY),
                            end_exclusive=at(2 * DAY))) == []
    assert not ds.verify()
    # nothing more to delete until the clock moves
    assert ds.apply_retention() == {"streams": 1, "deleted": {"seconds": 0, "minutes": 0}}


def test_downsample_streams_applies_retention(ds, clock, three_days) -> None:
    stream_id = three_days
    ds.set_retention(None, {"seconds": datetime.timedelta(days=1)})
    series(ds, stream_id, 3 * DAY, 4 * DAY, seed=1)
    clock.now = at(4 * DAY + 3600)
    ds.downsample_streams()
    assert raw(ds, stream_id)[0]["t"] == at(3 * DAY)
    assert ds.get_tags(stream_id)["earliest_datapoint"] == at(3 * DAY)
    assert len(level(ds, stream_id, G.Days)) == 3  # the fourth day's bucket is still open
    assert not ds.verify()


def test_raw_not_yet_downsampled_is_never_deleted(ds, clock) -> None:
    stream_id = ds.ensure_stream({"n": "x"}, {}, DOWNSAMPLERS, G.Seconds)
    series(ds, stream_id, 0, 3 * DAY)
    clock.now = at(10 * DAY)
    ds.set_retention({"n": "x"}, {"seconds": datetime.timedelta(hours=1)})
    assert ds.apply_retention() == {"streams": 1, "deleted": {"seconds": 0}}
    assert len(raw(ds, stream_id)) == 3 * PER_DAY
    # downsampled up to 1 day only (retention follows): raw goes up to there, no further
    ds.downsample_streams(until=at(DAY))
    assert raw(ds, stream_id)[0]["t"] == at(DAY)
    assert len(raw(ds, stream_id)) == 2 * PER_DAY
    assert ds.apply_retention()["deleted"] == {"seconds": 0}


def test_a_level_keeps_what_a_coarser_level_has_not_absorbed(ds, clock) -> None:
    stream_id = ds.ensure_stream({"n": "x"}, {}, DOWNSAMPLERS, G.Seconds)
    series(ds, stream_id, 0, 20 * 3600)
    clock.now = at(DAY)
    ds.downsample_streams()  # the days level cannot close yet
    ds.set_retention({"n": "x"}, {"10seconds": datetime.timedelta(hours=1),
                                  "seconds": datetime.timedelta(hours=1)})
    assert ds.apply_retention()["deleted"] == {"seconds": 0, "10seconds": 0}
    assert len(level(ds, stream_id, G.Seconds10)) > 6 * 19 * 60


def test_a_stream_never_downsampled_keeps_its_raw_points(ds, clock) -> None:
    stream_id = ds.ensure_stream({"n": "x"}, {}, [], G.Seconds)
    series(ds, stream_id, 0, DAY)
    clock.now = at(30 * DAY)
    ds.set_retention({"n": "x"}, {"seconds": datetime.timedelta(days=1)})
    ds.downsample_streams()
    assert ds.apply_retention()["deleted"] == {"seconds": 0}
    assert len(raw(ds, stream_id)) == PER_DAY


def test_retention_is_kept_across_sessions(ds, clock, reopen, three_days) -> None:
    ds.set_retention({"n": "x"}, {"seconds": datetime.timedelta(days=1)})
    ds.apply_retention()
    ds = reopen(ds)
    tags = ds.get_tags(three_days)
    assert tags["retention"] == {"seconds": datetime.timedelta(days=1)}
    assert tags["earliest_datapoint"] == at(2 * DAY)
    assert len(level(ds, three_days, G.Minutes)) == (3 * DAY - STEP) // 60
    assert not ds.verify()
    ds.close()


def test_set_retention_merges_and_none_means_forever(ds, three_days) -> None:
    ds.set_retention({"n": "x"}, {"seconds": datetime.timedelta(days=1)})
    ds.set_retention({"n": "x"}, {"hours": datetime.timedelta(days=400), "seconds": None})
    assert ds.get_tags(three_days)["retention"] == {"seconds": None,
                                                    "hours": datetime.timedelta(days=400)}
    assert ds.apply_retention()["deleted"] == {"hours": 0}
    assert len(raw(ds, three_days)) == 3 * PER_DAY


def test_streams_without_retention_show_no_retention_tag(ds, three_days) -> None:
    assert "retention" not in ds.get_tags(three_days)
    assert ds.apply_retention() == {"streams": 1, "deleted": {}}
    assert len(raw(ds, three_days)) == 3 * PER_DAY


@pytest.mark.parametrize(
    ("retention", "error"),
    [
        ([("seconds", datetime.timedelta(days=1))], TypeError),
        ({"seconds": 3600}, TypeError),
        ({"seconds": datetime.timedelta(0)}, ValueError),
        ({"seconds": datetime.timedelta(seconds=-1)}, ValueError),
        ({"weeks": datetime.timedelta(days=1)}, exceptions.UnsupportedGranularity),
    ],
)
def test_bad_retention_is_refused_before_anything_changes(ds, three_days, retention,
                                                          error) -> None:
    with pytest.raises(error):
        ds.set_retention({"n": "x"}, retention)
    assert "retention" not in ds.get_tags(three_days)


def test_a_granularity_finer_than_raw_is_refused_for_every_stream(ds) -> None:
    fine = ds.ensure_stream({"n": "fine"}, {}, DOWNSAMPLERS, G.Seconds)
    coarse = ds.ensure_stream({"n": "coarse"}, {}, DOWNSAMPLERS, G.Minutes)
    with pytest.raises(ValueError, match="finer"):
        ds.set_retention(None, {"10seconds": datetime.timedelta(days=1)})
    assert "retention" not in ds.get_tags(fine)
    assert "retention" not in ds.get_tags(coarse)


def test_derived_sources_keep_what_their_derived_streams_still_need(ds, clock) -> None:
    a = ds.ensure_stream({"n": "a"}, {}, DOWNSAMPLERS, G.Seconds)
    d = ds.ensure_stream({"n": "d"}, {}, DOWNSAMPLERS, G.Seconds, derive_from=[a],
                         derive_op="derivative")
    series(ds, a, 0, 3 * DAY)
    clock.now = at(3 * DAY + 3600)
    ds.downsample_streams()
    ds.set_retention({"n": "a"}, {"seconds": datetime.timedelta(days=1)})
    deleted = ds.apply_retention()["deleted"]["seconds"]
    # the derived stream has processed all of it; the point before the cut stays
    assert deleted == 2 * PER_DAY - 1
    assert raw(ds, a)[0]["t"] == at(2 * DAY - STEP)
    # a late point after the cut is re-derived from the kept point before it
    ds.reopen_streams({"n": "a"}, at(2 * DAY + 600))
    ds.append(a, 99.0, at(2 * DAY + 630), check_timestamp=False)
    ds.flush()
    derived = {point["t"]: point["v"] for point in raw(ds, d)}
    assert at(2 * DAY + 630) in derived  # (99 - v(2d+600)) / 30 s
    assert at(2 * DAY + 2 * STEP) in derived
    assert not ds.verify()


def _minutes_fed(ds, clock, backprocess: bool = False) -> tuple[str, str]:
    """Source ``a`` (a point a minute for two days) and ``md``, the derivative of its minutes
    level; the days level closes up to day 1, so retention can cut the minutes there."""
    a = ds.ensure_stream({"n": "a"}, {}, DOWNSAMPLERS, G.Seconds)
    if backprocess:
        series_per_minute(ds, a, 2 * DAY)
        ds.flush()
    md = ds.ensure_stream({"n": "md"}, {}, DOWNSAMPLERS, G.Minutes, derive_op="derivative",
                          derive_from=[{"stream": a, "granularity": G.Minutes}])
    if not backprocess:
        series_per_minute(ds, a, 2 * DAY)
    clock.now = at(2 * DAY + 3600)
    ds.downsample_streams()
    return a, md


def series_per_minute(ds, stream_id: str, end_s: int) -> None:
    seconds = np.arange(0, end_s, 60, dtype=np.int64)
    values = np.round(20 + 5 * np.sin(seconds / 3600.0), 2)
    ds.append_arrays(stream_id, seconds * 1_000_000 + int(T0.timestamp()) * 1_000_000, values,
                     unit="us")


def test_a_level_read_by_a_derived_stream_keeps_the_bucket_before_the_cut(ds, clock) -> None:
    """derivative restarts from the input before the first one it re-derives: after the
    minutes were cut at day 1, reopening there must find the bucket before it."""
    a, md = _minutes_fed(ds, clock)
    before = raw(ds, md)
    assert len(before) == 2 * 1440 - 2  # the first and the open last minute give nothing
    ds.set_retention({"n": "a"}, {"minutes": datetime.timedelta(hours=6)})
    assert ds.apply_retention()["deleted"] == {"minutes": 1440 - 1}
    assert starts(ds, a, G.Minutes)[0] == at(DAY - 60)
    assert ds.reopen_streams({"n": "a"}, at(DAY)) == [a, md]
    ds.downsample_streams()
    assert raw(ds, md) == before
    assert not ds.verify()


def test_a_level_waiting_for_backprocess_keeps_all_its_buckets(ds, clock) -> None:
    a, md = _minutes_fed(ds, clock, backprocess=True)
    assert ds.get_tags(md)["pending_backprocess"]
    ds.set_retention({"n": "a"}, {"minutes": datetime.timedelta(hours=6)})
    assert ds.apply_retention()["deleted"] == {"minutes": 0}
    ds.backprocess_streams({"n": "md"})
    assert len(raw(ds, md)) == 2 * 1440 - 2
    assert not ds.verify()


def test_reopening_before_a_cut_level_that_a_derived_stream_reads_is_refused(ds, clock) -> None:
    """The derived stream would restart without the deleted bucket before the reopened one
    and differ from a replay: refused, nothing changes."""
    a, md = _minutes_fed(ds, clock)
    ds.set_retention({"n": "a"}, {"minutes": datetime.timedelta(hours=6)})
    ds.apply_retention()
    tags = ds.get_tags(a)
    with pytest.raises(exceptions.InvalidTimestamp, match="derived streams read its minutes"):
        ds.reopen_streams({"n": "a"}, at(DAY - 60))
    with pytest.raises(exceptions.InvalidTimestamp, match="derived streams read its minutes"):
        ds.reopen_streams({"n": "a"}, at(DAY / 2))
    assert ds.get_tags(a) == tags
    assert ds.reopen_streams({"n": "a"}, at(DAY)) == [a, md]  # the bucket before is kept


def test_a_level_read_by_a_derived_stream_over_two_objects(backend_factory, clock) -> None:
    """The derived stream's progress that protects the level is the stored one: an object
    that never saw the derived stream applies retention and reopens correctly."""
    first = backend_factory()
    second = first if first.concurrent_writers is False else backend_factory()
    one = datastream.Datastream(first, clock=clock)
    try:
        a, md = _minutes_fed(one, clock)
        before = raw(one, md)
        one.flush()
        two = datastream.Datastream(second, clock=clock)
        try:
            two.set_retention({"n": "a"}, {"minutes": datetime.timedelta(hours=6)})
            assert two.apply_retention()["deleted"] == {"minutes": 1440 - 1}
            with pytest.raises(exceptions.InvalidTimestamp, match="derived streams read"):
                one.reopen_streams({"n": "a"}, at(DAY - 60))
            assert two.reopen_streams({"n": "a"}, at(DAY)) == [a, md]
            one.downsample_streams()
            assert raw(two, md) == before
            assert not two.verify()
        finally:
            two.close()
    finally:
        one.close()


def test_two_objects_over_one_backend_share_retention(backend_factory, clock) -> None:
    first = backend_factory()
    second = first if first.concurrent_writers is False else backend_factory()
    one = datastream.Datastream(first, clock=clock)
    two = datastream.Datastream(second, clock=clock)
    try:
        stream_id = one.ensure_stream({"n": "x"}, {}, DOWNSAMPLERS, G.Seconds)
        series(one, stream_id, 0, 3 * DAY)
        one.flush()
        clock.now = at(3 * DAY + 3600)
        two.downsample_streams()
        one.set_retention({"n": "x"}, {"seconds": datetime.timedelta(days=1)})
        assert two.apply_retention()["deleted"] == {"seconds": 2 * PER_DAY}
        assert one.get_tags(stream_id)["earliest_datapoint"] == at(2 * DAY)
        assert raw(one, stream_id)[0]["t"] == at(2 * DAY)
        # the first object's cached state must not let it append into the deleted range
        with pytest.raises(exceptions.InvalidTimestamp):
            one.append(stream_id, 1.0, at(DAY), check_timestamp=False)
        assert not one.verify()
    finally:
        two.close()
        one.close()
