"""Retention and reopening as engine steps: request parsing, the bounds they compute, and a
failed commit that changes nothing (behaviour §11)."""

from __future__ import annotations

import datetime

import numpy as np
import pytest

import datastream
from datastream import exceptions
from datastream.backends import duckdb
from datastream.engine import reopening, retention
from datastream.engine.state import StreamState
from datastream.granularity import Granularity as G
from datastream.storage.base import StreamRecord
from tests.engine.failing import FailingStorage

UTC = datetime.timezone.utc
T0 = datetime.datetime(2000, 1, 1, tzinfo=UTC)
DAY_US = 86_400 * 1_000_000
HOUR_US = 3_600 * 1_000_000


def test_parse_accepts_levels_names_and_keys() -> None:
    parsed = retention.parse({G.Seconds: datetime.timedelta(days=7), "minutes": None,
                              "h": datetime.timedelta(microseconds=1)})
    assert parsed == {G.Seconds: 7 * DAY_US, G.Minutes: None, G.Hours: 1}


@pytest.mark.parametrize("bad", [None, [], {"seconds": 1.5}, {"seconds": "7d"}])
def test_parse_refuses_what_is_not_a_span(bad) -> None:
    with pytest.raises(TypeError):
        retention.parse(bad)


def state_with(bounds: dict[str, int], *, floors: dict[str, int] | None = None,
               raw_floor: int | None = None, downsamplers=("mean",)) -> StreamState:
    record = StreamRecord("00000000-0000-4000-8000-000000000000", {}, {
        "value_downsamplers": list(downsamplers), "highest_granularity": "seconds",
        "value_type": "numeric", "value_type_options": {}, "earliest_datapoint": 0,
        "latest_datapoint": 5 * DAY_US, "downsampled_until": bounds,
        "level_floors": floors or {}, "raw_floor": raw_floor,
    })
    return StreamState.from_record(record)


ALL_CLOSED = {"S": 3 * DAY_US, "m": 3 * DAY_US, "M": 3 * DAY_US, "h": 3 * DAY_US,
              "H": 3 * DAY_US, "d": 3 * DAY_US}


def test_reopen_points_floor_start_per_level() -> None:
    start = DAY_US + 90 * 60 * 1_000_000 + 15_000_000  # 1 d 1 h 30 min 15 s
    points = reopening.reopen_points(state_with(ALL_CLOSED), start)
    assert points == {"d": DAY_US, "H": DAY_US, "h": DAY_US + HOUR_US,
                      "M": DAY_US + 90 * 60_000_000, "m": DAY_US + 90 * 60_000_000,
                      "S": start - 5_000_000}


def test_reopen_points_go_back_where_a_finer_level_lost_its_rows() -> None:
    # hours kept only from 1 d 13 h: the 6-hour bucket recomputed from 1 d 12 h needs the
    # hour from 1 d 12 h again, so hours reopen from there (and the 10-minute rows it is
    # computed from are all kept)
    state = state_with(ALL_CLOSED, floors={"h": DAY_US + 13 * HOUR_US})
    points = reopening.reopen_points(state, DAY_US + 14 * HOUR_US)
    assert points["d"] == DAY_US and points["H"] == DAY_US + 12 * HOUR_US
    assert points["h"] == DAY_US + 12 * HOUR_US
    assert points["M"] == points["m"] == points["S"] == DAY_US + 14 * HOUR_US


def test_reopen_points_refuse_when_raw_points_are_gone() -> None:
    state = state_with(ALL_CLOSED, raw_floor=2 * DAY_US)
    with pytest.raises(exceptions.InvalidTimestamp, match="raw points are kept only"):
        reopening.reopen_points(state, 2 * DAY_US - 1)
    assert reopening.reopen_points(state, 2 * DAY_US + HOUR_US)["S"] == 2 * DAY_US + HOUR_US
    with_median = state_with(ALL_CLOSED, raw_floor=2 * DAY_US + 1,
                             downsamplers=("mean", "median"))
    with pytest.raises(exceptions.InvalidTimestamp):
        reopening.reopen_points(with_median, 2 * DAY_US + HOUR_US)


@pytest.fixture
def failing():
    storage = FailingStorage(duckdb.Backend())
    clock_now = [T0]
    ds = datastream.Datastream(storage, clock=lambda: clock_now[0])
    stream_id = ds.ensure_stream({"n": "x"}, {}, ["mean"], G.Seconds)
    seconds = np.arange(0, 3 * 86_400, 60, dtype=np.int64)
    ds.append_arrays(stream_id, seconds * 1_000_000 + 946_684_800_000_000,
                     (seconds % 97).astype(np.float64), unit="us")
    clock_now[0] = T0 + datetime.timedelta(days=3, hours=1)
    ds.downsample_streams()
    yield storage, ds, stream_id
    storage.fail = False
    ds.close()


def snapshot(ds, stream_id):
    return (ds.get_tags(stream_id),
            ds.get_data(stream_id, G.Seconds, start=datetime.datetime.min).to_arrow(),
            ds.get_data(stream_id, G.Minutes, start=datetime.datetime.min).to_arrow())


def test_a_failed_retention_changes_nothing_and_a_retry_completes(failing) -> None:
    storage, ds, stream_id = failing
    ds.set_retention(None, {"seconds": datetime.timedelta(days=1),
                            "minutes": datetime.timedelta(days=1)})
    before = snapshot(ds, stream_id)
    storage.fail = True
    with pytest.raises(exceptions.StreamAppendFailed):
        ds.apply_retention()
    storage.fail = False
    assert snapshot(ds, stream_id) == before
    assert not ds.verify()
    assert ds.apply_retention()["deleted"] == {"seconds": 2 * 1440, "minutes": 2 * 1440}
    assert not ds.verify()


def test_a_failed_reopen_changes_nothing(failing) -> None:
    storage, ds, stream_id = failing
    before = snapshot(ds, stream_id)
    storage.fail = True
    with pytest.raises(exceptions.StreamAppendFailed):
        ds.reopen_streams(None, T0 + datetime.timedelta(days=1))
    storage.fail = False
    assert snapshot(ds, stream_id) == before
    with pytest.raises(exceptions.InvalidTimestamp):
        ds.append(stream_id, 1.0, T0 + datetime.timedelta(days=1, seconds=1),
                  check_timestamp=False)
