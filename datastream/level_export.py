"""Finalized columns exported: Python values (behaviour §5.4) or Arrow arrays (behaviour §6.3).

Finalize rules yield float arrays (NaN = None), int arrays or lists; this is the one place that
turns them into what callers see.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from . import arrow_numpy
from .granularity import from_us, from_us_array
from .lazy import pa

# µs since the epoch of datetime.min and datetime.max (UTC): the span a datetime can hold
FIRST_DATETIME_US = -62135596800 * 10**6
LAST_DATETIME_US = 253402300800 * 10**6 - 1


@functools.cache
def utc_micros() -> pa.DataType:
    """Arrow's UTC microsecond timestamp type (``UTC_MICROS``), made on first use: pyarrow is
    imported on first use too (see datastream.lazy)."""
    return pa.timestamp("us", tz="UTC")


def __getattr__(name: str) -> Any:
    if name == "UTC_MICROS":
        return utc_micros()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def float_array(values: np.ndarray) -> pa.Array:
    """Arrow float64 with NaN as null (zero-copy when nothing is NaN)."""
    values = np.asarray(values, dtype=np.float64)
    return arrow_numpy.from_numpy(values, mask=np.isnan(values))


def python_column(column: np.ndarray | list) -> list:
    """Python values of a finalized column: floats with None for NaN, ints, or the list's
    items. The NaNs are found by numpy and replaced in an object array, so no Python step runs
    per value (the floats are those ``tolist`` gives)."""
    if not isinstance(column, np.ndarray):
        return list(column)
    if column.dtype.kind == "f":
        missing = np.isnan(column)
        if missing.any():
            boxed = column.astype(object)
            boxed[missing] = None
            return boxed.tolist()
    return column.tolist()


def datetime_column(column: np.ndarray) -> list:
    """Aware UTC datetimes of a time downsampler's µs (``granularity.from_us`` of each value),
    made by numpy and ``EPOCH.__add__`` rather than a Python step per value. A value no
    datetime can hold (only a damaged stored state gives one, e.g. an infinite time mean
    offset) is None: the reader gets the rest of the data and ``verify()`` reports it."""
    if column.dtype.kind == "i" and (not column.size or (
            column.min() >= FIRST_DATETIME_US and column.max() <= LAST_DATETIME_US)):
        return from_us_array(column)
    return [from_us(v) if _holds_datetime(v) else None for v in column.tolist()]


def _holds_datetime(value: Any) -> bool:
    return value is not None and FIRST_DATETIME_US <= value <= LAST_DATETIME_US


def arrow_column(column: np.ndarray | list) -> pa.Array:
    """Floats (null for NaN), int64 counts, or values as text (exact decimals, canonical JSON)."""
    if isinstance(column, np.ndarray):
        if column.dtype.kind == "f":
            return float_array(column)
        return arrow_numpy.from_numpy(column.astype(np.int64, copy=False))
    return pa.array([None if v is None else str(v) for v in column], pa.string())


def frequency_map(column: list) -> pa.Array:
    """Frequency tables as ``map<string, int64>`` keyed by canonical JSON."""
    return pa.array([None if t is None else sorted(t.items()) for t in column],
                    pa.map_(pa.string(), pa.int64()))


def time_column(result: np.ndarray, is_time: bool) -> pa.Array:
    """A time downsampler's result: UTC timestamps (``is_time``) or float seconds."""
    if not is_time:
        return float_array(result)
    if result.dtype.kind == "f" and np.isfinite(result).all():  # bucket starts as floats
        whole = result.astype(np.int64)
        if np.array_equal(whole, result):  # whole µs, as the cast below would take them
            result = whole
    if result.dtype.kind in "iu":
        return arrow_numpy.from_numpy(result.astype(np.int64, copy=False), utc_micros())
    return pa.array(result).cast(utc_micros())
