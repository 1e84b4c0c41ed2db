"""Finalized columns as Python values: time downsamplers become aware datetimes."""

from __future__ import annotations

import datetime

import numpy as np

from datastream.granularity import from_us
from datastream.level_export import FIRST_DATETIME_US, LAST_DATETIME_US, datetime_column

UTC = datetime.timezone.utc


def test_the_ends_of_the_datetime_span_convert_exactly():
    column = np.array([FIRST_DATETIME_US, 0, LAST_DATETIME_US], np.int64)
    assert datetime_column(column) == [
        datetime.datetime.min.replace(tzinfo=UTC),
        datetime.datetime(1970, 1, 1, tzinfo=UTC),
        datetime.datetime.max.replace(tzinfo=UTC),
    ]


def test_values_no_datetime_holds_become_none_and_the_rest_convert():
    """Only a damaged stored state gives such a value (an infinite time mean offset wraps to
    near the int64 minimum): the rest of the column still reads."""
    column = np.array([946728000000000, np.iinfo(np.int64).min + 10**15, LAST_DATETIME_US + 1,
                       FIRST_DATETIME_US - 1], np.int64)
    assert datetime_column(column) == [from_us(946728000000000), None, None, None]
    assert datetime_column(np.array([946728000000000.0, np.nan])) == [
        from_us(946728000000000), None]
