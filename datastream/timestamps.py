"""Normalising user timestamps to int64 epoch microseconds (UTC).

One datapoint (``append``): a ``datetime.datetime`` (naive = UTC, aware converted), which
includes ``pandas.Timestamp``; a ``numpy.datetime64`` scalar of any unit; or an ISO-8601 string
(naive = UTC). A bare number is refused: its unit would be a guess.

Columns (``append_arrays``, ``append_table``): numpy ``datetime64`` of any unit, Arrow
timestamps, objects as above, or integer epochs together with ``unit`` in ``'s'``, ``'ms'``,
``'us'``, ``'ns'``; integers without a unit raise ``TypeError``. Every value is checked against
the supported span (int64 nanoseconds since the epoch, 1677-09-22 to 2262-04-11) *in its own
unit, before any conversion*: a conversion that overflowed would silently wrap into 1970.
Finer than microseconds is floored to the microsecond, as numpy does.
"""

from __future__ import annotations

import datetime
import numbers
from typing import Any

import numpy as np

from . import exceptions
from .granularity import EPOCH, MAX_US, MIN_US, to_us
from .lazy import pa
from .units import INT64_MAX, INT64_MIN, US_PER_SECOND
from .values import show

UTC = datetime.timezone.utc
INTEGER_UNITS = ("s", "ms", "us", "ns")
_SPAN = "1677-09-22 to 2262-04-11"
# Length of one unit of numpy's linear datetime64 units, in attoseconds (exact integers).
_ATTOSECONDS = {
    "W": 7 * 86400 * 10**18, "D": 86400 * 10**18, "h": 3600 * 10**18, "m": 60 * 10**18,
    "s": 10**18, "ms": 10**15, "us": 10**12, "ns": 10**9, "ps": 10**6, "fs": 10**3, "as": 1,
}


def utc_us(value: datetime.datetime) -> int:
    """Epoch µs of a ``datetime`` whose tzinfo is ``datetime.timezone.utc`` (the caller
    checks that), exactly: integer arithmetic on the fields of the timedelta from the epoch
    (a third faster than ``delta // timedelta(microseconds=1)``), no float. Not range checked."""
    delta = value - EPOCH
    return (delta.days * 86400 + delta.seconds) * US_PER_SECOND + delta.microseconds


def _bare_number(value: object, what: str) -> exceptions.InvalidTimestamp:
    return exceptions.InvalidTimestamp(
        f"{what} {show(value)} is a bare number: pass a datetime (or a numpy.datetime64, a pandas"
        " Timestamp, an ISO-8601 string), or use append_arrays(..., unit=) for epoch numbers"
    )


def _as_datetime(value: object, what: str) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.datetime.fromisoformat(value)
        except ValueError:
            raise exceptions.InvalidTimestamp(
                f"{what} {show(value)} is not an ISO-8601 date and time"
            ) from None
    to_pydatetime = getattr(value, "to_pydatetime", None)  # pandas Timestamp subclasses datetime
    if callable(to_pydatetime):
        return to_pydatetime()
    if isinstance(value, numbers.Number) and not isinstance(value, (bool, np.bool_)):
        raise _bare_number(value, what)
    raise exceptions.InvalidTimestamp(
        f"{what} must be a datetime.datetime, got {type(value).__name__} {show(value)}"
    )


def _outside(value: object, what: str) -> exceptions.InvalidTimestamp:
    return exceptions.InvalidTimestamp(
        f"{what} {show(value)} is outside the supported range ({_SPAN})"
    )


def _datetime_us(value: object, what: str) -> int:
    """Epoch µs of anything :func:`_as_datetime` accepts (not range checked)."""
    timestamp = _as_datetime(value, what)
    try:
        return to_us(timestamp)
    except (TypeError, ValueError, OverflowError, AttributeError):  # NaT, a broken tzinfo
        raise exceptions.InvalidTimestamp(f"{what} {show(value)} is not a valid time") from None


def point_us(value: object, what: str = "timestamp") -> int:
    """A datapoint timestamp: naive = UTC, aware converted, inside the int64-ns span."""
    if type(value) is datetime.datetime and value.tzinfo is UTC:
        timestamp_us = utc_us(value)
        if MIN_US <= timestamp_us <= MAX_US:
            return timestamp_us
        raise _outside(value, what)
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            raise exceptions.InvalidTimestamp(f"{what} must not be NaT")
        try:
            return int(_datetime64_us(np.array([value]), what)[0])
        except exceptions.InvalidTimestamp:
            raise _outside(value, what) from None
    if type(value).__name__ == "NaTType":  # pandas.NaT, without importing pandas
        raise exceptions.InvalidTimestamp(f"{what} must not be NaT")
    timestamp_us = _datetime_us(value, what)
    if not MIN_US <= timestamp_us <= MAX_US:
        raise _outside(value, what)
    return timestamp_us


def bound_us(value: object, what: str) -> int | None:
    """A query bound; None when it lies beyond the supported span (datetime.min/max)."""
    timestamp_us = _datetime_us(value, what)
    if timestamp_us < MIN_US or timestamp_us > MAX_US:
        return None
    return timestamp_us


def bound_is_low(value: object) -> bool:
    """For a bound outside the span: True when it is below it (datetime.min-like)."""
    return _datetime_us(value, "bound") < MIN_US


# -- columns ----------------------------------------------------------------------------------


def _check_span(low: int, high: int, lowest: int, highest: int, what: str) -> None:
    if low < lowest or high > highest:
        raise exceptions.InvalidTimestamp(
            f"{what} outside the supported range ({_SPAN}): from {low} to {high} in their unit"
        )


def us_supported(low: int, high: int) -> bool:
    """Whether epoch microseconds from ``low`` to ``high`` lie in the supported span."""
    lowest, highest = _span_in(_ATTOSECONDS["us"])
    return max(lowest, INT64_MIN + 1) <= low and high <= min(highest, INT64_MAX)


def _unit_needed(what: str, kind: str) -> TypeError:
    return TypeError(
        f"{what} are integers ({kind}): say which epoch unit they count with"
        f" unit= one of {INTEGER_UNITS}; integers are never guessed to be a unit"
    )


def _span_in(step: int) -> tuple[int, int]:
    """First and last tick of ``step`` attoseconds whose microsecond (floored) is supported."""
    return -(-MIN_US * 10**12 // step), ((MAX_US + 1) * 10**12 - 1) // step


def _datetime64_us(array: np.ndarray, what: str = "timestamps") -> np.ndarray:
    """int64 µs of a datetime64 array of any unit, range checked before converting."""
    if np.isnat(array).any():
        raise exceptions.InvalidTimestamp(f"{what} must not contain NaT")
    unit, count = np.datetime_data(array.dtype)
    if unit == "generic":
        raise exceptions.InvalidTimestamp(f"{what} of a datetime64 without a unit")
    if array.size:
        ticks = array.view(np.int64)
        low, high = int(ticks.min()), int(ticks.max())
        if unit in _ATTOSECONDS:
            lowest, highest = _span_in(_ATTOSECONDS[unit] * count)
        else:  # years and months: floor the span's ends to the unit (a coarser one: no overflow)
            ends = np.array([MIN_US, MAX_US], dtype="datetime64[us]").astype(array.dtype)
            lowest, highest = (int(end) for end in ends.view(np.int64))
        _check_span(low, high, max(lowest, INT64_MIN + 1), min(highest, INT64_MAX), what)
    result = array.astype("datetime64[us]").view(np.int64)
    if result.size:
        _check_span(int(result.min()), int(result.max()), MIN_US, MAX_US, what)
    return result


def _integers_us(array: np.ndarray, unit: Any, what: str) -> np.ndarray:
    """int64 µs of integer epochs in ``unit``, range checked before scaling."""
    if unit is None:
        raise _unit_needed(what, str(array.dtype))
    if unit not in INTEGER_UNITS:
        raise ValueError(f"unit must be one of {INTEGER_UNITS}, got {unit!r}")
    step = _ATTOSECONDS[unit]
    lowest, highest = _span_in(step)
    if array.size:  # within int64 too: nanoseconds past it would wrap in the cast below
        _check_span(int(array.min()), int(array.max()), max(lowest, INT64_MIN + 1),
                    min(highest, INT64_MAX), what)
    ticks = array.astype(np.int64)  # a copy: buffered rows never share the caller's memory
    if unit == "ns":
        return ticks // 1000
    factor = step // 10**12
    return ticks if factor == 1 else ticks * factor


def array_us(timestamps: Any, unit: str | None = None, what: str = "timestamps") -> np.ndarray:
    """int64 epoch µs of a timestamp column (see the module docstring)."""
    if isinstance(timestamps, pa.ChunkedArray):
        timestamps = timestamps.combine_chunks()
    if isinstance(timestamps, pa.Array):
        if timestamps.null_count:
            raise exceptions.InvalidTimestamp(f"{what} must not contain nulls")
        if pa.types.is_timestamp(timestamps.type):
            if unit is not None:
                raise TypeError(f"unit= applies to integer epochs, not to Arrow {timestamps.type}")
            ticks = timestamps.cast(pa.int64()).to_numpy(zero_copy_only=False)
            return _integers_us(ticks, timestamps.type.unit, what)
        timestamps = timestamps.to_numpy(zero_copy_only=False)
    array = np.asarray(timestamps)
    if array.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {array.shape}")
    if np.issubdtype(array.dtype, np.datetime64):
        if unit is not None:
            raise TypeError(f"unit= applies to integer epochs, not to {array.dtype}")
        return _datetime64_us(array, what)
    if np.issubdtype(array.dtype, np.integer):
        return _integers_us(array, unit, what)
    if array.dtype.kind in "US":  # numpy's own type for a list of only strings
        array = array.astype(object)
    if array.dtype == object:
        integers = len(array) and all(isinstance(v, int) and not isinstance(v, bool)
                                      for v in array)
        if integers and unit is None:  # ints beyond int64: refused as any integers are
            raise _unit_needed(what, "Python ints")
        if unit is not None:
            if integers:
                raise exceptions.InvalidTimestamp(  # ints that no numpy integer could hold
                    f"{what} hold integers beyond int64: outside the supported range ({_SPAN})"
                )
            raise TypeError("unit= applies to integer epochs, not to Python objects")
        return np.fromiter((point_us(v, "timestamp") for v in array), np.int64, len(array))
    if array.size == 0:
        return np.empty(0, dtype=np.int64)
    raise exceptions.InvalidTimestamp(
        f"{what} must be datetime64, Arrow timestamps, datetimes or integer epochs with unit=,"
        f" got {array.dtype}"
    )
