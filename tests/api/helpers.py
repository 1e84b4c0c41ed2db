"""Shared helpers of the backend contract suite (API level)."""

from __future__ import annotations

import datetime

import datastream

UTC = datetime.timezone.utc
G = datastream.Granularity
ALL_VALUE_DOWNSAMPLERS = [
    "count",
    "sum",
    "sum_squares",
    "min",
    "max",
    "mean",
    "std_dev",
    "median",
]
NUMERIC_ONLY = ["sum", "sum_squares", "min", "max", "mean", "std_dev", "median"]
TIME_NAMES = [
    "mean",
    "first",
    "last",
    "intervals_mean",
    "intervals_min",
    "intervals_max",
    "intervals_sum_squares",
    "intervals_std_dev",
]
T0 = datetime.datetime(2000, 1, 1, 12, 0, 0, tzinfo=UTC)
EVER = datetime.datetime.min


def at(seconds: float = 0, base: datetime.datetime = T0) -> datetime.datetime:
    """``base`` plus ``seconds`` (aware UTC)."""
    return base + datetime.timedelta(seconds=seconds)


def raw(ds: datastream.Datastream, stream_id: str, **kwargs) -> list[dict]:
    """Every raw datapoint of a stream, oldest first."""
    highest = ds.get_tags(stream_id)["highest_granularity"]
    return list(ds.get_data(stream_id, highest, start=EVER, **kwargs))


def values(ds: datastream.Datastream, stream_id: str) -> list:
    return [point["v"] for point in raw(ds, stream_id)]


def times(ds: datastream.Datastream, stream_id: str) -> list[datetime.datetime]:
    return [point["t"] for point in raw(ds, stream_id)]


def level(ds: datastream.Datastream, stream_id: str, granularity, **kwargs) -> list[dict]:
    """Every datapoint of a stream at one granularity, oldest first."""
    return list(ds.get_data(stream_id, granularity, start=EVER, **kwargs))


def numeric(ds, query, downsamplers=("mean",), granularity=None, **kwargs) -> str:
    return ds.ensure_stream(
        query, {}, list(downsamplers), granularity or G.Seconds, **kwargs
    )


def snapshot(ds: datastream.Datastream) -> list:
    """Everything a reader can see: streams in order, their tags, data at every level."""
    state = []
    for stream in ds.find_streams():
        stream_id = stream["stream_id"]
        tags = ds.get_tags(stream_id)
        data = {}
        for granularity in G.values:
            data[granularity.name] = [
                repr(point) for point in ds.get_data(stream_id, granularity, start=EVER)
            ]
        state.append((repr(stream), repr(tags), data))
    return state
