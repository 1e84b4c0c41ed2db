"""The seven granularities and bucket arithmetic on int64 epoch microseconds."""

from __future__ import annotations

import datetime
from functools import total_ordering

import numpy as np

from . import exceptions
from .messages import show
from .units import INT64_MAX, US_PER_SECOND

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


@total_ordering
class GranularityLevel:
    """One level. Finer levels compare greater (``Seconds > Days``), as in the original API."""

    __slots__ = ("name", "key", "seconds", "rank")

    def __init__(self, name: str, key: str, seconds: int, rank: int) -> None:
        self.name = name
        self.key = key
        self.seconds = seconds
        self.rank = rank  # 0 = finest

    @property
    def width_us(self) -> int:
        return self.seconds * US_PER_SECOND

    def duration_in_seconds(self) -> int:
        return self.seconds

    def floor_us(self, timestamp_us: int) -> int:
        """Start of the bucket holding ``timestamp_us`` (floor, also for pre-1970 times)."""
        return (timestamp_us // self.width_us) * self.width_us

    def ceil_us(self, timestamp_us: int) -> int:
        """Start of the first bucket at or after ``timestamp_us``."""
        return -(-timestamp_us // self.width_us) * self.width_us

    def last_us(self, timestamp_us: int) -> int:
        """Last microsecond of the bucket holding ``timestamp_us``."""
        return self.floor_us(timestamp_us) + self.width_us - 1

    def middle_us(self, bucket_start_us: int) -> int:
        return bucket_start_us + (self.seconds // 2) * US_PER_SECOND

    def round_timestamp(self, timestamp: datetime.datetime) -> datetime.datetime:
        """Aware UTC start of the bucket holding ``timestamp`` (naive input is UTC)."""
        return from_us(self.floor_us(to_us(timestamp)))

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, GranularityLevel):
            return NotImplemented
        return self.rank > other.rank

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GranularityLevel):
            return NotImplemented
        return self.rank == other.rank

    def __hash__(self) -> int:
        return hash(("granularity", self.name))

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"Granularity.{_ATTRIBUTE_NAMES[self.name]}"

    def __reduce__(self):
        return (resolve, (self.name,))


_LEVELS = [
    ("Seconds", "seconds", "s", 1),
    ("Seconds10", "10seconds", "S", 10),
    ("Minutes", "minutes", "m", 60),
    ("Minutes10", "10minutes", "M", 600),
    ("Hours", "hours", "h", 3600),
    ("Hours6", "6hours", "H", 21600),
    ("Days", "days", "d", 86400),
]
_ATTRIBUTE_NAMES = {name: attribute for attribute, name, _, _ in _LEVELS}


class Granularity:
    """Namespace of the levels: ``Granularity.Seconds`` ... ``Granularity.Days``."""

    Seconds = GranularityLevel("seconds", "s", 1, 0)
    Seconds10 = GranularityLevel("10seconds", "S", 10, 1)
    Minutes = GranularityLevel("minutes", "m", 60, 2)
    Minutes10 = GranularityLevel("10minutes", "M", 600, 3)
    Hours = GranularityLevel("hours", "h", 3600, 4)
    Hours6 = GranularityLevel("6hours", "H", 21600, 5)
    Days = GranularityLevel("days", "d", 86400, 6)

    values = [Seconds, Seconds10, Minutes, Minutes10, Hours, Hours6, Days]


_BY_NAME = {level.name: level for level in Granularity.values}
_BY_NAME.update({level.key: level for level in Granularity.values})


def resolve(value: object) -> GranularityLevel:
    """A level from a level object, its ``.name`` or its ``.key``; else UnsupportedGranularity."""
    if isinstance(value, GranularityLevel):
        return value
    if isinstance(value, str) and value in _BY_NAME:
        return _BY_NAME[value]
    raise exceptions.UnsupportedGranularity(f"unsupported granularity: {show(value)}")


def coarser_levels(level: GranularityLevel) -> list[GranularityLevel]:
    """Levels coarser than ``level``, finest first (the downsampled levels of a stream)."""
    return [g for g in Granularity.values if g.rank > level.rank]


# Supported timestamps: the span of int64 nanoseconds since the epoch, from its first whole
# day (1677-09-22), so that the bucket of every level holding a supported point starts inside
# the span too (the days before would start at 1677-09-21 00:00, which InfluxDB cannot store).
MIN_US = -9_223_286_400_000_000
MAX_US = INT64_MAX // 1000


def to_us(timestamp: datetime.datetime) -> int:
    """Epoch microseconds of a datetime; naive means UTC. Exact (no float rounding)."""
    if timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=datetime.timezone.utc)
    delta = timestamp - EPOCH
    return (delta.days * 86400 + delta.seconds) * US_PER_SECOND + delta.microseconds


def from_us(timestamp_us: int) -> datetime.datetime:
    """Aware UTC datetime of epoch microseconds."""
    return EPOCH + datetime.timedelta(microseconds=int(timestamp_us))


def from_us_array(timestamps_us: np.ndarray) -> list[datetime.datetime]:
    """:func:`from_us` of every value of an int64 array, without a Python step per value:
    numpy makes the timedeltas, ``EPOCH.__add__`` the aware datetimes (exact)."""
    deltas = np.asarray(timestamps_us, dtype=np.int64).view("timedelta64[us]").astype(object)
    return list(map(EPOCH.__add__, deltas))
