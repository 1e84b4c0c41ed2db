"""The answer of ``Datastream.verify()``: the mismatches found, and how much was compared."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

from ..granularity import GranularityLevel, from_us


class _Absent:
    """Marks a datapoint or bucket that exists on one side of a comparison only."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()


class Verification:
    """Mismatches between stored data and what its raw data (or its sources) say it must be.

    Falsy and empty when everything agrees. Each mismatch is a dict with ``stream_id``,
    ``granularity`` (a ``Granularity`` level), ``t`` (bucket start or point time, aware UTC),
    ``downsampler`` (a value downsampler name such as ``'mean'``; a time downsampler as
    ``'time_<name>'`` such as ``'time_first'``, the names of the columnar export; None for a
    whole bucket or a raw point), ``stored`` and ``expected`` (``ABSENT`` where one side has
    nothing). ``checked`` counts what was compared: ``streams``, ``buckets`` and derived
    ``points``, so a caller can tell "all agree" from "nothing was looked at". How values are
    compared (exactly, or floats within 1e-9 relative) is described in ``agreement``.
    """

    def __init__(self) -> None:
        self._mismatches: list[dict[str, Any]] = []
        self.checked = {"streams": 0, "buckets": 0, "points": 0}

    def add(
        self,
        stream_id: str,
        granularity: GranularityLevel,
        t_us: int,
        downsampler: str | None,
        stored: Any,
        expected: Any,
    ) -> None:
        self._mismatches.append(
            {
                "stream_id": stream_id,
                "granularity": granularity,
                "t": from_us(t_us),
                "downsampler": downsampler,
                "stored": stored,
                "expected": expected,
            }
        )

    def __len__(self) -> int:
        return len(self._mismatches)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._mismatches)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._mismatches[index]

    def __bool__(self) -> bool:
        return bool(self._mismatches)

    def __repr__(self) -> str:
        if not self._mismatches:
            return f"<Verification: all agree ({self._summary()})>"
        return f"<Verification: {len(self._mismatches)} mismatches ({self._summary()})>"

    def _summary(self) -> str:
        return ", ".join(f"{count} {what}" for what, count in self.checked.items())


def describe(mismatch: dict[str, Any]) -> str:
    """One line for a mismatch (handy in assertion messages and logs)."""
    when = mismatch["t"]
    shown = when.isoformat() if isinstance(when, datetime.datetime) else when
    return (
        f"{mismatch['stream_id']} {mismatch['granularity']} {shown} "
        f"{mismatch['downsampler']}: stored {mismatch['stored']!r}, "
        f"expected {mismatch['expected']!r}"
    )
