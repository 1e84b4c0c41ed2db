"""behaviour §6.1: downsampled reads over empty buckets are computed, not materialised.

A year-long gap at 10 s is 3.2 M buckets; ``len()``, indexing, slicing and reversing such a
result must cost (almost) nothing, on every backend, and give exactly the rows that
materialising every bucket gives.
"""

from __future__ import annotations

import datetime
import itertools
import tracemalloc

import pyarrow as pa
import pytest

from datastream.engine.reading import Range
from datastream.granularity import to_us
from tests import materialised

from .helpers import EVER, UTC, G, at

MB = 1 << 20
FIRST = datetime.datetime(2001, 1, 1, tzinfo=UTC)
YEAR_LATER = datetime.datetime(2002, 1, 1, tzinfo=UTC)
# (offset from FIRST or YEAR_LATER in seconds, value)
EARLY = [(0, 1), (3, 2), (25, 4)]
LATE = [(30, 8), (70, 16)]  # the point at +70 s is the latest: its bucket stays open
TIME_KEYS = ("m", "a", "z", "i", "l", "u", "q", "d")


def _gap_stream(ds) -> str:
    stream_id = ds.ensure_stream({"gap": 1}, {}, ["mean", "min", "max"], G.Seconds)
    for base, points in ((FIRST, EARLY), (YEAR_LATER, LATE)):
        for seconds, value in points:
            ds.append(stream_id, value, base + datetime.timedelta(seconds=seconds))
    ds.downsample_streams(until=YEAR_LATER + datetime.timedelta(days=1))
    return stream_id


def _empty(start: datetime.datetime, width: int) -> dict:
    """An empty bucket as a reader sees it: times at the bucket middle, no values."""
    middle = start + datetime.timedelta(seconds=width // 2)
    times = {key: middle if key in "maz" else None for key in TIME_KEYS}
    return {"t": times, "v": {"c": 0, "s": None, "m": None, "l": None, "u": None}}


def _stored_values(values: list[int]) -> dict:
    total = float(sum(values))
    return {"c": len(values), "s": total, "m": total / len(values), "l": float(min(values)),
            "u": float(max(values))}


def _bucket(index: int, width: int) -> datetime.datetime:
    return FIRST + datetime.timedelta(seconds=index * width)


@pytest.mark.parametrize(("granularity", "far"), [(G.Seconds10, 1_000_000), (G.Minutes, 300_000)])
def test_year_gap_is_computed_not_materialised(ds, granularity, far) -> None:
    stream_id = _gap_stream(ds)
    width = granularity.duration_in_seconds()
    bound = ds.get_tags(stream_id)["downsampled_until"][granularity.name]
    assert bound == YEAR_LATER + datetime.timedelta(seconds=70 // width * width)
    total = int((bound - FIRST).total_seconds()) // width
    assert total == {10: 3_153_607, 60: 525_601}[width]

    tracemalloc.start()
    arrow_before = pa.total_allocated_bytes()
    try:
        data = ds.get_data(stream_id, granularity, start=EVER)
        newest_first = ds.get_data(stream_id, granularity, start=EVER, reverse=True)
        assert len(data) == total and data.count() == total and bool(data)
        assert len(newest_first) == total

        first = data[0]
        early = [value for seconds, value in EARLY if seconds < width]
        assert first["v"] == _stored_values(early)
        assert first["t"]["a"] == FIRST
        latest_early = max(seconds for seconds, _ in EARLY if seconds < width)
        assert first["t"]["z"] == FIRST + datetime.timedelta(seconds=latest_early)
        assert data[1] == _empty(_bucket(1, width), width)
        assert data[far] == _empty(_bucket(far, width), width)
        assert data[-far] == _empty(_bucket(total - far, width), width)

        last = data[-1]
        if width == 10:  # buckets 00:00:30 (stored) ... 00:01:00 (empty, the last closed one)
            assert last == _empty(_bucket(total - 1, width), width)
            assert data[-4]["v"] == _stored_values([8])
            assert data[-4]["t"]["a"] == YEAR_LATER + datetime.timedelta(seconds=30)
        else:  # the minute 00:00 holds the point at +30 s
            assert last["v"] == _stored_values([8])
            assert last["t"]["a"] == YEAR_LATER + datetime.timedelta(seconds=30)
        for index in (total, total + 1, -total - 1, 10**12):
            with pytest.raises(IndexError):
                data[index]

        middle = data[far : far + 5]
        assert len(middle) == 5
        assert list(middle) == [_empty(_bucket(far + i, width), width) for i in range(5)]
        assert middle[-1] == data[far + 4]
        backwards = data[far + 4 : far - 1 : -2]
        assert [p["t"]["m"] for p in backwards] == [
            _empty(_bucket(far + i, width), width)["t"]["m"] for i in (4, 2, 0)]
        assert list(data[-2:]) == [data[-2], data[-1]]
        assert len(data[::1000]) == len(range(0, total, 1000))
        assert list(itertools.islice(data, 3)) == [data[0], data[1], data[2]]

        assert newest_first[0] == last
        assert newest_first[-1] == first
        assert newest_first[far] == data[total - 1 - far]
        assert list(newest_first[far : far + 2]) == [data[total - 1 - far],
                                                     data[total - 2 - far]]
        assert list(newest_first[-1:-3:-1]) == [first, data[1]]

        peak = tracemalloc.get_traced_memory()[1]
        held = pa.total_allocated_bytes() - arrow_before  # results above are still alive
    finally:
        tracemalloc.stop()
    # materialising every bucket takes hundreds of MB (~0.1 KB per bucket)
    assert peak < 16 * MB, f"peak {peak / MB:.1f} MB of Python/numpy memory"
    assert held < 16 * MB, f"{held / MB:.1f} MB of Arrow memory held"


def test_year_gap_to_arrow_has_every_bucket(ds) -> None:
    stream_id = _gap_stream(ds)
    table = ds.get_data(stream_id, G.Minutes, start=EVER, value_downsamplers=["count"],
                        time_downsamplers=[]).to_arrow()
    assert table.column_names == ["t", "count"]
    assert table.num_rows == 525_601
    counts = table.column("count").to_numpy()
    assert counts.sum() == 4 and counts[0] == 3 and counts[-1] == 1
    assert table.column("t")[1].as_py() == _bucket(1, 60)


# -- equal to materialising every bucket, on every backend ----------------------------------


QUERIES = [
    {"start": EVER},
    {"start": at(100), "end": at(4000)},
    {"start_exclusive": at(590), "end_exclusive": at(3600)},
    {"start": at(-5000), "end": at(50)},
    {"start": at(7000)},
]


def _clustered(ds) -> str:
    """Bursts of points with gaps of minutes to an hour between them."""
    stream_id = ds.ensure_stream({"bursts": 1}, {}, ["mean", "min", "max", "median"],
                                 G.Seconds)
    value = 0
    for burst in (0, 600, 640, 3600, 3630, 5400):
        for second in range(0, 25, 4):
            value += 1
            ds.append(stream_id, value % 7 or None, at(burst + second))
    ds.downsample_streams(until=at(6000))
    return stream_id


@pytest.mark.parametrize("granularity", [G.Seconds10, G.Minutes, G.Minutes10])
@pytest.mark.parametrize("reverse", [False, True])
def test_lazy_level_reads_equal_materialised(ds, granularity, reverse) -> None:
    stream_id = _clustered(ds)
    tags = ds.get_tags(stream_id)
    meta = {
        "value_downsamplers": tags["value_downsamplers"],
        "value_type": "numeric",
        "value_type_options": {},
        "earliest_datapoint": to_us(tags["earliest_datapoint"]),
        "downsampled_until": {
            granularity.key: to_us(tags["downsampled_until"][granularity.name]),
        },
    }

    def read(start_us: int, end_us: int):
        return ds.backend.read_level(granularity.key, stream_id, start_us, end_us)

    everything = list(ds.get_data(stream_id, granularity, start=EVER))
    assert {p["v"]["c"] == 0 for p in everything} == {True, False}  # gaps and bursts
    for query in QUERIES:
        expected = materialised.level_points(
            read, meta, granularity,
            Range.from_arguments(query.get("start"), query.get("end"),
                                 query.get("start_exclusive"), query.get("end_exclusive")),
            reverse)
        data = ds.get_data(stream_id, granularity, reverse=reverse, **query)
        assert len(data) == len(expected), query
        assert list(data.batch_size(7)) == expected, query
        for cut in (slice(3, 40), slice(None, None, -3), slice(-5, None), slice(50, 2, -7)):
            assert list(data[cut]) == expected[cut], (query, cut)
        for index in (0, -1, len(expected) // 2):
            if expected:
                assert data[index] == expected[index], (query, index)
