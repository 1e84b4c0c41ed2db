"""behaviour §9: MongoDB and InfluxDB are safe for many writers appending and downsampling at once.

Two ``Datastream`` objects on two backend instances over the same database; two threads append
disjoint time ranges to different streams (one through each object) while two threads keep
downsampling through both objects with increasing ``until``. Afterwards no point is lost and
every bucket is materialised exactly once.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import datastream
from datastream import exceptions

UTC = datetime.timezone.utc
G = datastream.Granularity
T0 = datetime.datetime(2000, 1, 1, 12, 0, 0, tzinfo=UTC)
EVER = datetime.datetime.min
NOW = datetime.datetime(2000, 1, 2, tzinfo=UTC)
POINTS = 240  # per stream
STEP = 1.7  # seconds between points of one stream
DEADLINE = 20.0  # seconds for all threads together
LEVELS = [G.Seconds10, G.Minutes]


def _at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def _value(stream: int, index: int) -> Any:
    if index % 11 == 0:
        return None
    return index * 3 + stream if index % 2 else (index + stream) / 4


def _points(stream: int) -> list[tuple[datetime.datetime, Any]]:
    """Stream 0 covers the first half of the time range, stream 1 the second half."""
    offset = stream * POINTS * STEP
    return [(_at(offset + index * STEP), _value(stream, index)) for index in range(POINTS)]


def test_concurrent_appends_and_downsampling(shared_factory) -> None:
    first = datastream.Datastream(shared_factory(), clock=lambda: NOW, buffered=False)
    second = datastream.Datastream(shared_factory(), clock=lambda: NOW, buffered=False)
    try:
        _exercise(first, second)
    finally:
        first.close()
        second.close()


def _exercise(first: datastream.Datastream, second: datastream.Datastream) -> None:
    downsamplers = ["count", "sum", "min", "max", "mean"]
    ids = [first.ensure_stream({"name": f"s{n}"}, {}, downsamplers) for n in range(2)]
    assert [second.ensure_stream({"name": f"s{n}"}, {}, downsamplers) for n in range(2)] == ids
    expected = {ids[n]: _points(n) for n in range(2)}
    end = _at(2 * POINTS * STEP + 60)
    deadline = time.monotonic() + DEADLINE
    errors: list[BaseException] = []
    appended = {stream_id: 0 for stream_id in ids}

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as error:  # noqa: BLE001 - reported by the main thread
                errors.append(error)

        return run

    def appender(ds: datastream.Datastream, stream_id: str) -> Callable[[], None]:
        def work() -> None:
            points = expected[stream_id]
            index = 0
            while index < len(points) and time.monotonic() < deadline:
                size = 1 + index % 4
                batch = points[index:index + size]
                if size == 1:
                    ds.append(stream_id, batch[0][1], batch[0][0])
                else:
                    ds.append_multiple(
                        {"stream_id": stream_id, "value": v, "timestamp": t} for t, v in batch
                    )
                index += len(batch)
                appended[stream_id] = index

        return work

    def downsampler(rounds: int) -> Callable[[], None]:
        def work() -> None:
            for step in range(rounds):
                if time.monotonic() >= deadline:
                    return
                until = _at(step * 2 * POINTS * STEP / rounds)
                for ds in (first, second):
                    ds.downsample_streams(until=until)

        return work

    threads = [
        threading.Thread(target=guarded(appender(first, ids[0]))),
        threading.Thread(target=guarded(appender(second, ids[1]))),
        threading.Thread(target=guarded(downsampler(40))),
        threading.Thread(target=guarded(downsampler(55))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE + 10)
    assert not any(thread.is_alive() for thread in threads), "a worker did not finish in time"
    assert not errors, errors
    assert appended == {stream_id: POINTS for stream_id in ids}, "appends did not finish"

    for ds in (first, second):
        ds.flush()
    for ds in (first, second):
        ds.downsample_streams(until=end)

    for ds in (first, second):
        for stream_id in ids:
            _check_stream(ds, stream_id, expected[stream_id])


def _check_stream(
    ds: datastream.Datastream, stream_id: str, points: list[tuple[datetime.datetime, Any]]
) -> None:
    raw = list(ds.get_data(stream_id, G.Seconds, start=EVER))
    assert [(p["t"], p["v"]) for p in raw] == points
    tags = ds.get_tags(stream_id)
    for level in LEVELS:
        bound = tags["downsampled_until"][level.name]
        assert bound is not None, level
        # the bucket of the latest datapoint stays open; every earlier bucket is closed
        assert bound == level.round_timestamp(points[-1][0])
        rows = list(ds.get_data(stream_id, level, start=EVER))
        starts = [level.round_timestamp(row["t"]["a"]) for row in rows]
        assert len(set(starts)) == len(starts), f"duplicate buckets at {level}"
        first_bucket = level.round_timestamp(points[0][0])
        width = datetime.timedelta(seconds=level.duration_in_seconds())
        assert len(rows) == (bound - first_bucket) // width, level
        non_null = [v for t, v in points if t < bound and v is not None]
        assert sum(row["v"]["c"] for row in rows) == len(non_null), level
        assert sum(row["v"]["s"] or 0 for row in rows) == pytest.approx(sum(non_null))
        stored = ds.backend.read_level(level.key, stream_id, None, None)
        assert stored is not None, level
        t = stored.column("t").to_pylist()
        assert len(set(t)) == len(t), f"duplicate stored rows at {level}"
        assert sum(c or 0 for c in stored.column("c").to_pylist()) == len(non_null), level


def test_rows_behind_another_writers_bound_are_folded_into_its_buckets(shared_factory) -> None:
    """A stale writer may not append into a range another process closed (the check uses the
    stored bound); a point it accepted *before* that range closed and commits after is folded
    into the closed buckets, so that they never diverge from raw."""
    first = datastream.Datastream(shared_factory(), clock=lambda: NOW, buffered=False)
    second = datastream.Datastream(shared_factory(), clock=lambda: NOW, buffer_seconds=3600)
    try:
        stream = first.ensure_stream({"n": "late"}, {}, ["mean", "median"], G.Seconds)
        second.get_tags(stream)  # the second writer now caches the stream, no bound yet
        for second_offset in range(60):
            first.append(stream, 1.0, _at(second_offset))
        second.append(stream, 100.0, _at(25.5), check_timestamp=False)  # buffered
        first.downsample_streams(until=_at(60))
        with pytest.raises(exceptions.InvalidTimestamp, match="downsampled"):
            second.append(stream, 100.0, _at(26.5), check_timestamp=False)
        second.flush()

        buckets = first.get_data(stream, G.Seconds10, start=EVER)
        by_start = {point["t"]["a"].replace(second=point["t"]["a"].second // 10 * 10,
                                            microsecond=0): point["v"] for point in buckets}
        assert len(buckets) == 5
        assert by_start[_at(20)]["c"] == 11
        assert by_start[_at(20)]["s"] == 110.0
        assert by_start[_at(20)]["n"] == 1.0
        assert by_start[_at(10)]["c"] == 10 and by_start[_at(30)]["c"] == 10
        assert len(first.get_data(stream, G.Seconds, start=EVER)) == 61
        assert first.get_tags(stream)["downsampled_until"]["10seconds"] == _at(50)
    finally:
        first.close()
        second.close()
