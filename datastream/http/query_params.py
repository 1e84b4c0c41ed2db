"""Query string parameters of the read API, parsed as django-datastream parses them.

Every mistake is a 400 naming the parameter. Times are UNIX seconds (fractional allowed);
granularities and downsamplers are accepted by name or by key (``minutes`` or ``m``); limits
above their maximum are clamped rather than refused, as django-datastream's paginator does.
"""

from __future__ import annotations

import datetime
import math

from starlette.datastructures import QueryParams

from ..downsamplers import TIME_DOWNSAMPLERS, VALUE_DOWNSAMPLERS
from ..granularity import MAX_US, MIN_US, Granularity, GranularityLevel, from_us
from ..units import US_PER_SECOND
from .errors import ApiError

TRUE = ("1", "true", "yes", "y", "t")
FALSE = ("0", "false", "no", "n", "f")


def bad(name: str, problem: str) -> ApiError:
    return ApiError(400, f"parameter {name!r}: {problem}")


def last(params: QueryParams, name: str) -> str | None:
    values = params.getlist(name)
    return values[-1] if values else None


def count(params: QueryParams, name: str, default: int, maximum: int | None = None) -> int:
    """A non-negative integer; over ``maximum`` is clamped to it."""
    text = last(params, name)
    if text is None:
        return default
    try:
        value = int(text.strip())
    except ValueError:
        raise bad(name, f"{text!r} is not an integer") from None
    if value < 0:
        raise bad(name, f"{value} is negative")
    return min(value, maximum) if maximum is not None else value


def flag(params: QueryParams, name: str) -> bool:
    """django-datastream's true words; anything but them and the matching false words is a
    mistake worth saying (a typo would otherwise silently read as false)."""
    text = last(params, name)
    if text is None:
        return False
    word = text.strip().lower()
    if word not in TRUE + FALSE:
        raise bad(name, f"{text!r} is not one of {', '.join(TRUE + FALSE)}")
    return word in TRUE


def unix_time(params: QueryParams, name: str) -> datetime.datetime | None:
    """UNIX seconds (an integer or a decimal fraction) as an aware UTC datetime."""
    text = last(params, name)
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError:
        raise bad(name, f"{text!r} is not a number of UNIX seconds") from None
    if not math.isfinite(seconds) or not MIN_US <= seconds * US_PER_SECOND <= MAX_US:
        raise bad(name, f"{text!r} is outside 1677-09-22..2262-04-11")
    if text.strip().lstrip("+-").isdigit():  # whole seconds: exact, whatever their size
        return from_us(int(text) * US_PER_SECOND)
    return from_us(round(seconds * US_PER_SECOND))


def granularity(params: QueryParams, name: str,
                default: GranularityLevel) -> GranularityLevel:
    text = last(params, name)
    if text is None:
        return default
    for level in Granularity.values:
        if text in (level.name, level.key):
            return level
    choices = ", ".join(f"{level.name} ({level.key})" for level in Granularity.values)
    raise bad(name, f"unknown granularity {text!r}; use one of {choices}")


def downsamplers(params: QueryParams, name: str, known: dict[str, str]) -> list[str] | None:
    """Names (or keys), comma-separated and/or repeated; None when the parameter is absent."""
    given = params.getlist(name)
    if not given:
        return None
    by_key = {key: full for full, key in known.items()}
    names = []
    for part in (piece.strip() for text in given for piece in text.split(",")):
        if not part:
            continue
        if part in known:
            names.append(part)
        elif part in by_key:
            names.append(by_key[part])
        else:
            raise bad(name, f"unknown downsampler {part!r}; known: {', '.join(known)}")
    return list(dict.fromkeys(names)) or None


def value_downsamplers(params: QueryParams) -> list[str] | None:
    return downsamplers(params, "value_downsamplers", VALUE_DOWNSAMPLERS)


def time_downsamplers(params: QueryParams) -> list[str] | None:
    return downsamplers(params, "time_downsamplers", TIME_DOWNSAMPLERS)
