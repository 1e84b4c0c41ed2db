"""The columnar pass of ``verify()`` (behaviour §10) can only save time: over float streams,
clean or tampered with, it gives exactly what the bucket-by-bucket comparison gives."""

from __future__ import annotations

import datetime
import functools
import math
from unittest import mock

import duckdb
import pyarrow as pa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import datastream
from datastream.backends import duckdb as duckdb_backend
from datastream.downsamplers import VALUE_DOWNSAMPLERS
from datastream.engine.downsampling import conform
from datastream.granularity import Granularity, to_us
from datastream.storage.base import WriteBatch
from datastream.units import US_PER_SECOND
from datastream.verification import columnar, levels
from datastream.verification.expectations import BucketOracle
from datastream.verification.result import ABSENT
from datastream.verification.sql_oracle import WindowOracle

START = datetime.datetime(2026, 3, 1, 23, 50, tzinfo=datetime.timezone.utc)
LEVEL_KEYS = ("S", "m", "M", "h", "H", "d")
DOWNSAMPLER_SETS = (
    list(columnar.VALUE_LABELS),
    ["count"],
    ["count", "sum", "mean"],
    ["count", "min", "max", "median"],
)
# stored state columns a tampering may change, with how a new value is made from the old one
FLOAT_COLUMNS = ("s", "q", "l", "u", "mu", "m2", "n", "tm", "isum", "il", "iu", "iq", "im2")
INT_COLUMNS = ("c", "np", "tn", "ta", "tz", "ic")


def _aggregate(numbers: list[float], names: list[str]) -> dict:
    """A pre-aggregated value of ``numbers``: the keys of the stream's downsamplers."""
    c, mean = len(numbers), sum(numbers) / len(numbers)
    ordered = sorted(numbers)
    median = (ordered[(c - 1) // 2] + ordered[c // 2]) / 2
    every = {"c": c, "s": sum(numbers), "q": sum(x * x for x in numbers), "l": ordered[0],
             "u": ordered[-1], "m": mean,
             "d": (sum((x - mean) ** 2 for x in numbers) / c) ** 0.5, "n": median}
    return {key: every[key] for key in map(VALUE_DOWNSAMPLERS.get, names)}


def _points(draw, names: list[str]) -> list[tuple[datetime.datetime, object]]:
    """Irregular points over about a day from ten to midnight: gaps of 0-9000 s with µs parts,
    values ints, floats over many magnitudes, pre-aggregated dicts, or None."""
    value = st.one_of(
        st.none(), st.integers(-1000, 1000),
        st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
        st.floats(-1e-3, 1e-3, allow_nan=False, allow_infinity=False),
        st.sampled_from([0.1, 0.2, 0.3, 1e150, -1e150]),
        st.lists(st.floats(-100, 100, allow_nan=False), min_size=1, max_size=4).map(
            functools.partial(_aggregate, names=names)),
    )
    gaps = draw(st.lists(st.tuples(st.integers(0, 9000), st.integers(0, 999_999)),
                         min_size=2, max_size=80))
    at, points = START, []
    for seconds, micros in gaps:
        at += datetime.timedelta(seconds=seconds, microseconds=micros)
        points.append((at, draw(value)))
    return points


def _tampered(rng, old, column: str):
    """A new value for a stored state column: slightly or grossly off, null, NaN, infinite."""
    if column in INT_COLUMNS:  # (an earlier tamper of the same row may have nulled it)
        return rng.choice([1, 0] if old is None else [old + 1, old - 1, old + 2, 0, None])
    if old is None:
        return rng.choice([1.0, 0.0])
    return rng.choice([
        old * (1 + 1e-12), old * (1 + 1e-8), old + 1e-300, -old, None, math.nan, math.inf,
    ])


@st.composite
def cases(draw):
    names = draw(st.sampled_from(DOWNSAMPLER_SETS))
    return (names, _points(draw, names),
            draw(st.lists(st.tuples(st.sampled_from(LEVEL_KEYS[:3]), st.integers(0, 10**6),
                                    st.sampled_from(FLOAT_COLUMNS + INT_COLUMNS),
                                    st.randoms()), min_size=1, max_size=3)))


def _tamper(ds, stream_id: str, key: str, pick: int, column: str, new) -> bool:
    """Overwrite one column of one stored level row (through the storage contract)."""
    stored = ds.backend.read_level(key, stream_id, None, None)
    if stored is None or not stored.num_rows:
        return False
    rows = conform(stored)
    if column not in rows.column_names:
        return False
    row = rows.slice(pick % rows.num_rows, 1)
    position = row.column_names.index(column)
    old = row.column(column)[0].as_py()
    row = row.set_column(position, column, pa.array([new(old)], row.schema.field(column).type))
    row = row.add_column(0, "stream_id", pa.array([stream_id], pa.string()))
    ds.backend.commit(WriteBatch(levels={key: row}))
    return True


def _both_ways(ds) -> tuple[list, list, dict, dict]:
    with mock.patch.object(columnar, "supported", return_value=False):
        slow = ds.verify()
    fast = ds.verify()
    return [repr(m) for m in slow], [repr(m) for m in fast], slow.checked, fast.checked


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_the_columnar_pass_reports_exactly_what_the_bucket_comparison_reports(case):
    names, points, tamperings = case
    with datastream.Datastream(duckdb_backend.Backend()) as ds:
        stream_id = ds.ensure_stream({"n": 1}, {}, names, "seconds")
        for when, value in points:
            ds.append(stream_id, value, when)
        ds.downsample_streams(until=points[-1][0] + datetime.timedelta(days=2))
        calls = []
        agrees = columnar.WindowFacts.agrees

        def counted(self, *args):
            calls.append(agrees(self, *args))
            return calls[-1]

        with mock.patch.object(columnar.WindowFacts, "agrees", counted):
            slow, fast, slow_checked, fast_checked = _both_ways(ds)
        assert slow == fast == [] and slow_checked == fast_checked
        # clean: the columnar pass decided every range compared (none when no bucket closed)
        assert all(calls) and bool(calls) == (fast_checked["buckets"] > 0)
        changed = 0
        for key, pick, column, rng in tamperings:
            changed += _tamper(ds, stream_id, key, pick, column,
                               functools.partial(_tampered, rng, column=column))
        slow, fast, slow_checked, fast_checked = _both_ways(ds)
        assert slow == fast and slow_checked == fast_checked
        event("tampered, reported" if slow else "tampered, all agree" if changed else "clean")


def test_a_value_beyond_the_tolerance_is_found_by_both_passes():
    """The columnar pass declines a range with a wrong sum, so the report is the usual one."""
    with datastream.Datastream(duckdb_backend.Backend()) as ds:
        stream_id = ds.ensure_stream({"n": 1}, {}, list(columnar.VALUE_LABELS), "seconds")
        for second, value in [(0, 1.5), (1, 2.25), (2, 4.0), (3, 8.5), (9000, 1.0)]:
            ds.append(stream_id, value, START + datetime.timedelta(seconds=second))
        ds.downsample_streams(until=START + datetime.timedelta(days=2))
        assert not ds.verify()
        _tamper(ds, stream_id, "S", 0, "s", lambda old: old * (1 + 2e-9))
        result = ds.verify()
        assert {(m["granularity"].key, m["downsampler"]) for m in result} == {
            ("S", "sum"), ("S", "mean")}
        _tamper(ds, stream_id, "S", 0, "s", lambda old: old / (1 + 2e-9) * (1 + 5e-10))
        assert not ds.verify()  # within 1e-9 relative: agrees


def _counted_stream(ds) -> str:
    """A stream of counts with three points in its first 10 s bucket, downsampled."""
    stream_id = ds.ensure_stream({"n": 1}, {}, ["count"], "seconds")
    for second in (0, 3, 7, 9000):
        ds.append(stream_id, 1, START + datetime.timedelta(seconds=second))
    ds.downsample_streams(until=START + datetime.timedelta(days=2))
    return stream_id


def test_the_time_mean_may_be_one_microsecond_off_but_not_two():
    with datastream.Datastream(duckdb_backend.Backend()) as ds:
        stream_id = _counted_stream(ds)
        _tamper(ds, stream_id, "S", 0, "tm", lambda old: old + 1)
        assert not ds.verify()
        _tamper(ds, stream_id, "S", 0, "tm", lambda old: old + 1)
        (mismatch,) = ds.verify()
        assert (mismatch["downsampler"], mismatch["stored"] is ABSENT) == ("time_mean", False)


def test_an_infinite_time_mean_offset_is_reported_not_raised():
    """A damaged time mean no datetime can hold reads as None and is a mismatch."""
    with datastream.Datastream(duckdb_backend.Backend()) as ds:
        stream_id = _counted_stream(ds)
        _tamper(ds, stream_id, "S", 0, "tm", lambda old: math.inf)
        first = ds.get_data(stream_id, "10seconds", start=START)[0]
        assert first["t"]["m"] is None and first["v"]["c"] == 3
        (mismatch,) = ds.verify()
        assert (mismatch["downsampler"], mismatch["stored"]) == ("time_mean", None)


def test_a_range_after_every_bucket_with_points_must_read_empty():
    """A level range past the last bucket of the window's raw points (the facts of its width
    end before it): its empty buckets agree, a count stored there does not."""
    with datastream.Datastream(duckdb_backend.Backend()) as ds:
        stream_id = ds.ensure_stream({"n": 1}, {}, ["count", "mean"], "seconds")
        for second in (0, 1, 2, 9000):
            ds.append(stream_id, 1.5, START + datetime.timedelta(seconds=second))
        ds.downsample_streams(until=START + datetime.timedelta(days=2))
        record = ds.backend.get_stream(stream_id)
        connection = duckdb.connect()
        try:
            sql = WindowOracle(connection)
            start = to_us(START)
            sql.load(ds.backend.read_raw(stream_id, start, start + 100 * US_PER_SECOND))
            width = Granularity.Seconds10.width_us
            facts = columnar.WindowFacts(BucketOracle(sql, record.meta), [width])
            assert facts.expected[width].starts.tolist() == [start]
            lo, hi = start + 100 * US_PER_SECOND, start + 600 * US_PER_SECOND
            rows = levels._reader_rows(ds.backend, record, Granularity.Seconds10, lo, hi)
            assert rows.num_rows == 50
            assert facts.agrees(rows, record.meta, width, lo, hi)
            counted = rows.set_column(rows.column_names.index("c"), "c",
                                      pa.array([0] * 49 + [1], pa.int64()))
            assert not facts.agrees(counted, record.meta, width, lo, hi)
        finally:
            connection.close()
