"""behaviour §1 (public surface) and §2 (granularities), through the public API."""

from __future__ import annotations

import datetime
import pickle

import pytest

import datastream
from datastream import exceptions

from .helpers import EVER, UTC, G, at

TABLE = [
    (G.Seconds, "seconds", "s", 1),
    (G.Seconds10, "10seconds", "S", 10),
    (G.Minutes, "minutes", "m", 60),
    (G.Minutes10, "10minutes", "M", 600),
    (G.Hours, "hours", "h", 3600),
    (G.Hours6, "6hours", "H", 21600),
    (G.Days, "days", "d", 86400),
]


def test_public_names() -> None:
    for name in [
        "Datastream",
        "Granularity",
        "Stream",
        "RESERVED_TAGS",
        "VALUE_DOWNSAMPLERS",
        "TIME_DOWNSAMPLERS",
        "DERIVE_OPERATORS",
        "VALUE_TYPES",
        "Streams",
        "Datapoints",
        "exceptions",
    ]:
        assert hasattr(datastream, name), name
    for name in [
        "Granularity",
        "RESERVED_TAGS",
        "VALUE_DOWNSAMPLERS",
        "TIME_DOWNSAMPLERS",
        "DERIVE_OPERATORS",
        "VALUE_TYPES",
    ]:
        assert getattr(datastream.Datastream, name) is getattr(datastream, name), name
    assert datastream.exceptions is exceptions


def test_constants() -> None:
    assert set(datastream.VALUE_DOWNSAMPLERS) == {
        "count", "sum", "sum_squares", "min", "max", "mean", "std_dev", "median",
        "most_often", "least_often", "frequencies",
    }
    assert {name: datastream.VALUE_DOWNSAMPLERS[name] for name in datastream.VALUE_DOWNSAMPLERS} \
        == {"count": "c", "sum": "s", "sum_squares": "q", "min": "l", "max": "u", "mean": "m",
            "std_dev": "d", "median": "n", "most_often": "o", "least_often": "r",
            "frequencies": "f"}
    assert {name: datastream.TIME_DOWNSAMPLERS[name] for name in datastream.TIME_DOWNSAMPLERS} \
        == {"mean": "m", "first": "a", "last": "z", "intervals_mean": "i", "intervals_min": "l",
            "intervals_max": "u", "intervals_sum_squares": "q", "intervals_std_dev": "d"}
    assert {"sum", "derivative", "counter_reset", "counter_derivative"} <= set(
        datastream.DERIVE_OPERATORS
    )
    assert set(datastream.VALUE_TYPES) == {"numeric", "nominal", "graph"}
    assert set(datastream.RESERVED_TAGS) == {
        "stream_id", "value_downsamplers", "time_downsamplers", "highest_granularity",
        "derived_from", "contributes_to", "pending_backprocess", "latest_datapoint",
        "earliest_datapoint", "downsampled_until", "value_type", "value_type_options",
        "retention",
    }


def test_backend_flags(backend_factory, clock) -> None:
    backend = backend_factory()
    assert backend.requires_downsampling is True
    assert backend.downsampled_always_exist is False
    assert backend.requires_derived_stream_backprocess is False
    assert backend.downsampled_timestamps_start_bucket is False
    assert set(backend.value_downsamplers) == set(datastream.VALUE_DOWNSAMPLERS)
    assert set(backend.time_downsamplers) == set(datastream.TIME_DOWNSAMPLERS)
    # the class says the same, before any connection
    assert type(backend).value_downsamplers == backend.value_downsamplers
    assert type(backend).time_downsamplers == backend.time_downsamplers
    assert type(backend).requires_downsampling is True
    datastream.Datastream(backend, clock=clock).close()


@pytest.mark.parametrize(("level", "name", "key", "seconds"), TABLE)
def test_table(level, name, key, seconds) -> None:
    assert level.name == name
    assert level.key == key
    assert str(level) == name
    assert level.duration_in_seconds() == seconds


def test_values_order_and_comparison() -> None:
    assert list(G.values) == [row[0] for row in TABLE]
    levels = list(G.values)
    for finer, coarser in zip(levels, levels[1:], strict=False):
        assert finer > coarser
        assert coarser < finer
        assert finer != coarser
    assert G.Seconds > G.Days
    assert G.Seconds == G.Seconds
    assert len({*levels, *levels}) == 7
    assert {G.Minutes: 1}[G.Minutes] == 1
    assert pickle.loads(pickle.dumps(G.Hours6)) == G.Hours6


@pytest.mark.parametrize(
    ("level", "timestamp", "expected"),
    [
        (G.Seconds, datetime.datetime(2000, 1, 1, 12, 34, 56, 789), (12, 34, 56)),
        (G.Seconds10, datetime.datetime(2000, 1, 1, 12, 34, 56, 789), (12, 34, 50)),
        (G.Minutes, datetime.datetime(2000, 1, 1, 12, 34, 56), (12, 34, 0)),
        (G.Minutes10, datetime.datetime(2000, 1, 1, 12, 34, 56), (12, 30, 0)),
        (G.Hours, datetime.datetime(2000, 1, 1, 12, 34, 56), (12, 0, 0)),
        (G.Hours6, datetime.datetime(2000, 1, 1, 17, 59, 59), (12, 0, 0)),
        (G.Hours6, datetime.datetime(2000, 1, 1, 5, 0, 0), (0, 0, 0)),
        (G.Days, datetime.datetime(2000, 1, 1, 23, 59, 59, 999999), (0, 0, 0)),
    ],
)
def test_round_timestamp_naive_is_utc(level, timestamp, expected) -> None:
    rounded = level.round_timestamp(timestamp)
    assert rounded == datetime.datetime(2000, 1, 1, *expected, tzinfo=UTC)
    assert rounded.utcoffset() == datetime.timedelta(0)


def test_round_timestamp_converts_aware() -> None:
    plus2 = datetime.timezone(datetime.timedelta(hours=2))
    local = datetime.datetime(2000, 1, 1, 1, 30, tzinfo=plus2)  # 1999-12-31 23:30 UTC
    assert G.Days.round_timestamp(local) == datetime.datetime(1999, 12, 31, tzinfo=UTC)
    assert G.Hours6.round_timestamp(local) == datetime.datetime(1999, 12, 31, 18, tzinfo=UTC)
    assert G.Hours.round_timestamp(local).utcoffset() == datetime.timedelta(0)


def test_round_timestamp_floors_before_epoch() -> None:
    before = datetime.datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC)
    assert G.Seconds.round_timestamp(before) == datetime.datetime(
        1969, 12, 31, 23, 59, 59, tzinfo=UTC
    )
    assert G.Seconds10.round_timestamp(before) == datetime.datetime(
        1969, 12, 31, 23, 59, 50, tzinfo=UTC
    )
    assert G.Days.round_timestamp(before) == datetime.datetime(1969, 12, 31, tzinfo=UTC)


def test_name_and_key_accepted_everywhere(ds) -> None:
    for level, name, key, _ in TABLE:
        by_name = ds.ensure_stream({"g": name}, {}, ["mean"], name)
        by_key = ds.ensure_stream({"g": key}, {}, ["mean"], key)
        assert ds.get_tags(by_name)["highest_granularity"] == level
        assert ds.get_tags(by_key)["highest_granularity"] == level
        ds.append(by_name, 1, at(0))
        assert [p["v"] for p in ds.get_data(by_name, name, start=EVER)] == [1]
        assert [p["v"] for p in ds.get_data(by_name, key, start=EVER)] == [1]
        assert [p["v"] for p in ds.get_data(by_name, level, start=EVER)] == [1]


def test_invalid_granularity(ds) -> None:
    stream_id = ds.ensure_stream({"ok": 1}, {}, ["mean"], G.Seconds)
    deep: list = []
    for _ in range(100_000):  # its repr used to raise RecursionError in the message
        deep = [deep]
    for bad in ["weeks", "SECONDS", "", 10, None, 1.5, object(), deep, 10**5000]:
        with pytest.raises(exceptions.UnsupportedGranularity):
            ds.ensure_stream({"bad": "granularity"}, {}, ["mean"], bad)
        with pytest.raises(exceptions.UnsupportedGranularity):
            ds.get_data(stream_id, bad, start=EVER)
    assert len(ds.find_streams()) == 1


def test_invalid_granularity_is_not_attribute_error(ds) -> None:
    stream_id = ds.ensure_stream({"ok": 1}, {}, ["mean"], G.Seconds)
    try:
        ds.get_data(stream_id, "fortnight", start=EVER)
    except AttributeError as error:  # pragma: no cover - the failure being tested
        pytest.fail(f"AttributeError instead of UnsupportedGranularity: {error}")
    except exceptions.UnsupportedGranularity:
        pass
    else:
        pytest.fail("no error for an invalid granularity")


@pytest.mark.parametrize("level", G.values, ids=lambda g: g.name)
def test_bucket_edges_in_microseconds(level) -> None:
    """floor, ceil and last microsecond of a bucket, also before 1970."""
    width = level.width_us
    for t in (-3 * width - 1, -width, -1, 0, 1, width - 1, width, 5 * width + 7):
        start = level.floor_us(t)
        assert start <= t < start + width and start % width == 0
        assert level.last_us(t) == start + width - 1
        assert level.ceil_us(t) == (start if t == start else start + width)
