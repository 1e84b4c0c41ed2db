"""Timestamp conversions: the exact integer paths of single appends and raw reads."""

from __future__ import annotations

import datetime

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from datastream import exceptions
from datastream.granularity import MAX_US, MIN_US, from_us, from_us_array, to_us
from datastream.timestamps import point_us, utc_us

UTC = datetime.timezone.utc
SPAN = st.integers(MIN_US, MAX_US)


@given(SPAN)
def test_utc_datetimes_convert_exactly(timestamp_us):
    stamp = from_us(timestamp_us)
    assert stamp.tzinfo is UTC
    assert utc_us(stamp) == point_us(stamp) == to_us(stamp) == timestamp_us
    naive = stamp.replace(tzinfo=None)
    assert point_us(naive) == timestamp_us
    assert point_us(stamp.astimezone(datetime.timezone(datetime.timedelta(hours=-5)))) == (
        timestamp_us)


@pytest.mark.parametrize("stamp", [
    datetime.datetime(1677, 9, 21, tzinfo=UTC), datetime.datetime(2262, 4, 12, tzinfo=UTC),
    # inside int64 nanoseconds, but its day would start before them
    datetime.datetime(1677, 9, 21, 23, 59, 59, 999999, tzinfo=UTC),
    datetime.datetime.min.replace(tzinfo=UTC), datetime.datetime.max.replace(tzinfo=UTC),
])
def test_utc_datetimes_outside_the_span_are_refused(stamp):
    with pytest.raises(exceptions.InvalidTimestamp, match="outside the supported range"):
        point_us(stamp)


@given(st.lists(SPAN, max_size=50))
def test_from_us_array_is_from_us_of_each(values):
    got = from_us_array(np.array(values, dtype=np.int64))
    assert got == [from_us(value) for value in values]
    assert all(stamp.tzinfo is UTC for stamp in got)
