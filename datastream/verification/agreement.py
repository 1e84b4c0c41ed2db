"""When a stored value agrees with the value the oracle expects.

* Counts and high-accuracy Decimals: exactly (by value: ``Decimal('3.0') == Decimal('3')``).
* Floats: ``|stored - expected| <= max(1e-9 * max(|stored|, |expected|), 1e-12 * scale)``.
  The absolute floor is for values near 0: a sum or a spread that cancels to almost nothing
  carries the rounding of its terms, which no order of computation avoids, so it is judged
  against ``scale``, the magnitude of those terms (e.g. ``c * max(|min|, |max|)`` for a sum).
  1e-12 of it is thousands of units in the last place: room for correct computations done in a
  different order, far too little for a wrong formula. Values computed by one correctly rounded
  operation from exact inputs (a min, a median, a derivative of raw points) get scale 0.
* Timestamps: exactly, except the time mean, a float mean rounded to the microsecond, which may
  land on either side of a rounding boundary (1 µs slack).
* Values, most/least often and frequency tables: strictly equal (same types, so ``1`` is not
  ``1.0`` and a dict key ``1`` is not ``'1'``).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from decimal import Decimal
from typing import Any

RELATIVE = 1e-9
ROUNDING = 1e-12


@dataclasses.dataclass(frozen=True)
class Expected:
    """An expected value and how to compare with it: ``'exact'``, ``'float'`` (with ``scale``),
    ``'time'`` (with ``slack_us``) or ``'strict'``."""

    value: Any
    how: str = "strict"
    scale: float = 0.0
    slack_us: int = 0


def exact(value: Any) -> Expected:
    return Expected(value, "exact")


def close(value: float | None, scale: float = 0.0) -> Expected:
    return Expected(value, "float", tolerance_scale(scale))


def tolerance_scale(scale: float | None) -> float:
    """The scale a float is judged against: its magnitude, 0 when not finite."""
    return abs(scale) if scale is not None and math.isfinite(scale) else 0.0


def timestamp(value: datetime.datetime, slack_us: int = 0) -> Expected:
    return Expected(value, "time", slack_us=slack_us)


def strict(value: Any) -> Expected:
    return Expected(value, "strict")


def agrees(stored: Any, expected: Expected) -> bool:
    want = expected.value
    if stored is None or want is None:
        return stored is None and want is None
    if expected.how == "float":
        return _close(stored, want, expected.scale)
    if expected.how == "time":
        if not isinstance(stored, datetime.datetime):
            return False
        slack = datetime.timedelta(microseconds=expected.slack_us)
        return abs(stored - want) <= slack
    if expected.how == "exact":
        return _same_number_family(stored, want) and stored == want
    return strictly_equal(stored, want)


def _close(stored: Any, want: float, scale: float) -> bool:
    if isinstance(stored, bool) or not isinstance(stored, (int, float)):
        return False
    stored, want = float(stored), float(want)
    if not (math.isfinite(stored) and math.isfinite(want)):
        return stored == want  # a sum of squares can overflow: equal infinities agree
    allowed = max(RELATIVE * max(abs(stored), abs(want)), ROUNDING * scale)
    return abs(stored - want) <= allowed


def _same_number_family(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        return isinstance(a, Decimal) and isinstance(b, Decimal)
    return isinstance(a, int) and isinstance(b, int)


def strictly_equal(a: Any, b: Any) -> bool:
    """Equality that also requires equal types at every depth (Decimals by their text)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        keyed = {_tag(key): value for key, value in b.items()}
        return all(
            _tag(key) in keyed and strictly_equal(value, keyed[_tag(key)])
            for key, value in a.items()
        )
    if isinstance(a, list):
        return len(a) == len(b) and all(strictly_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Decimal):
        return str(a) == str(b)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def _tag(key: Any) -> tuple[str, str]:
    return type(key).__name__, repr(key)
