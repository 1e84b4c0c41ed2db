"""Shared helpers of the backend contract suite (API level)."""

from __future__ import annotations

import datetime
from collections.abc import Iterable

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


def derivative_with_a_buffered_point(ds: datastream.Datastream, last: float = 3
                                     ) -> tuple[str, str]:
    """(a, d): a source ``a`` with points at 0-2 s stored and one more at ``last`` still in
    ``ds``'s buffer, and ``d``, its derivative, which holds the stored part only until ``ds``
    flushes."""
    a = ds.ensure_stream({"n": "a"}, {}, ["count"], G.Seconds)
    d = ds.ensure_stream({"n": "d"}, {}, ["count"], G.Seconds, derive_from=[a],
                         derive_op="derivative")
    for q in range(3):
        ds.append(a, q, at(q))
    ds.flush()
    ds.append(a, 9, at(last))
    return a, d


def extents(found: Iterable[dict]) -> dict[str, tuple]:
    """stream id -> (earliest, latest datapoint) of ``find_streams`` results."""
    return {tags["stream_id"]: (tags["earliest_datapoint"], tags["latest_datapoint"])
            for tags in found}
