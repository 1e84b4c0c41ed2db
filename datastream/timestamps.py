"""Normalising user timestamps to int64 epoch microseconds (UTC)."""

from __future__ import annotations

import datetime

from . import exceptions
from .granularity import MAX_US, MIN_US, to_us


def _as_datetime(value: object, what: str) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        return value
    to_pydatetime = getattr(value, "to_pydatetime", None)  # pandas Timestamp subclasses datetime
    if callable(to_pydatetime):
        return to_pydatetime()
    raise exceptions.InvalidTimestamp(
        f"{what} must be a datetime.datetime, got {type(value).__name__} {value!r}"
    )


def point_us(value: object, what: str = "timestamp") -> int:
    """A datapoint timestamp: naive = UTC, aware converted, inside the int64-ns span."""
    timestamp_us = to_us(_as_datetime(value, what))
    if not MIN_US <= timestamp_us <= MAX_US:
        raise exceptions.InvalidTimestamp(
            f"{what} {value!r} is outside the supported range (1677-09-22 to 2262-04-11)"
        )
    return timestamp_us


def bound_us(value: object, what: str) -> int | None:
    """A query bound; None when it lies beyond the supported span (datetime.min/max)."""
    timestamp_us = to_us(_as_datetime(value, what))
    if timestamp_us < MIN_US or timestamp_us > MAX_US:
        return None
    return timestamp_us


def bound_is_low(value: object) -> bool:
    """For a bound outside the span: True when it is below it (datetime.min-like)."""
    return to_us(_as_datetime(value, "bound")) < MIN_US
