"""The one-pass bulk path gives the general path's rows, and leaves everything else to it."""

from __future__ import annotations

import datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import datastream
from datastream import exceptions, plain_floats
from datastream import values as value_types
from datastream.kernels import intake, jit
from datastream.timestamps import array_us

START_US = 946_684_800_000_000


def general(times, unit, values):
    t = array_us(times, unit)
    return value_types.encode_arrays(t, values, "numeric", {"high_accuracy": False}, "s")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(-10**9, 10**9),
                          st.floats(allow_nan=False, allow_infinity=False)),
                min_size=1, max_size=50),
       st.booleans())
def test_rows_and_checks_equal_the_general_path(points, as_datetime64):
    offsets, numbers = zip(*points)
    times = START_US + np.array(offsets, np.int64)
    values = np.array(numbers, np.float64)
    given_times, unit = (times.astype("datetime64[us]"), None) if as_datetime64 else (times, "us")
    prepared = plain_floats.prepare(given_times, unit, values)
    assert prepared is not None
    assert prepared.table.equals(general(given_times, unit, values))
    assert (prepared.earliest, prepared.latest, prepared.first) == (
        int(times.min()), int(times.max()), int(times[0]))
    falls = np.flatnonzero(times[1:] < times[:-1])
    assert prepared.fall == (int(falls[0]) + 1 if falls.size else 0)


def test_the_rows_are_a_copy():
    times = START_US + np.arange(5, dtype=np.int64)
    values = np.arange(5, dtype=np.float64)
    prepared = plain_floats.prepare(times, "us", values)
    times[:] = 0
    values[:] = -1.0
    assert prepared.table.column("t").to_pylist() == list(START_US + np.arange(5))
    assert prepared.table.column("f").to_pylist() == [0.0, 1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("times, unit, values", [
    (START_US + np.arange(3), "us", np.array([1.0, np.nan, 2.0])),  # a null: general path
    (START_US + np.arange(3), "us", np.array([1.0, np.inf, 2.0])),
    (START_US + np.arange(3), "ms", np.array([1.0, 2.0, 3.0])),
    (START_US + np.arange(3), "us", np.array([1, 2, 3])),
    (START_US + np.arange(3), "us", np.array([1.0, 2.0], np.float64)),
    (np.array([START_US, -2**63], np.int64), "us", np.array([1.0, 2.0])),
    (np.array(["2000-01-01", "NaT"], "datetime64[us]"), None, np.array([1.0, 2.0])),
    (np.array([], np.int64), "us", np.array([], np.float64)),
    ([START_US, START_US + 1], "us", np.array([1.0, 2.0])),
])
def test_anything_unusual_is_left_to_the_general_path(times, unit, values):
    assert plain_floats.prepare(times, unit, values) is None


def test_kernel_and_reference_agree():
    rng = np.random.default_rng(3)
    for size in (1, 2, 17, 1000):
        t = START_US + np.cumsum(rng.integers(-5, 100, size)).astype(np.int64)
        x = rng.normal(size=size)
        x[rng.integers(0, size, size // 10)] = np.nan
        outputs = []
        for run in (intake.copy_checked.dispatcher(), intake.copy_checked_numpy):
            t_out, x_out = np.empty_like(t), np.empty_like(x)
            result = run(jit.readonly(t, np.int64), jit.readonly(x, np.float64), t_out, x_out)
            outputs.append((tuple(result), [type(r) for r in result], t_out, x_out))
        (got, got_types, got_t, got_x), (expected, expected_types, t_ref, x_ref) = outputs
        assert got == expected and got_types == expected_types
        assert np.array_equal(got_t, t_ref) and np.array_equal(got_x, x_ref, equal_nan=True)


def test_append_arrays_through_the_plain_path_refuses_as_before():
    with datastream.Datastream() as ds:
        sid = ds.ensure_stream({"n": 1}, {}, ["mean"], "seconds")
        times = START_US + np.array([0, 2_000_000, 1_000_000], np.int64)
        with pytest.raises(exceptions.InvalidTimestamp, match="position 2"):
            ds.append_arrays(sid, times, np.array([1.0, 2.0, 3.0]), unit="us")
        assert ds.append_arrays(sid, times, np.array([1.0, 2.0, 3.0]), unit="us",
                                check_timestamp=False) == 3
        tags = ds.get_tags(sid)
        assert tags["earliest_datapoint"] == datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
        assert tags["latest_datapoint"] == datetime.datetime(2000, 1, 1, 0, 0, 2,
                                                             tzinfo=datetime.UTC)
        with pytest.raises(exceptions.InvalidTimestamp):  # older than the latest
            ds.append_arrays(sid, times[:1], np.array([5.0]), unit="us")
        assert [p["v"] for p in ds.get_data(sid, "seconds", start=datetime.datetime.min)] == [
            1.0, 3.0, 2.0]
