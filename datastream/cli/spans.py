"""Spans of history as the command line writes them: ``90s``, ``30m``, ``12h``, ``7d``, ``1y``
(365 days) or ``forever``. Whole numbers of one unit only, so that what ``retention show``
prints can be typed back into ``retention set`` unchanged."""

from __future__ import annotations

import datetime
import re

FOREVER = "forever"
# largest first: a span is shown in the largest unit that divides it exactly
UNIT_SECONDS = {"y": 365 * 86_400, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
SPAN_FORMS = "a whole number and a unit: 90s, 30m, 12h, 7d, 1y (365 days), or forever"
_SPAN = re.compile(r"([0-9]+)([ydhms])")
_LONGEST = datetime.timedelta.max.days * 86_400


def parse_span(text: str) -> datetime.timedelta | None:
    """The span ``text`` names (None for ``forever``); ValueError saying what is accepted."""
    if text == FOREVER:
        return None
    match = _SPAN.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a span; use {SPAN_FORMS}")
    seconds = int(match.group(1)) * UNIT_SECONDS[match.group(2)]
    if seconds == 0:
        raise ValueError(f"{text!r}: a span must be longer than zero")
    if seconds > _LONGEST:
        raise ValueError(f"{text!r} is longer than Python's datetime.timedelta can hold")
    return datetime.timedelta(seconds=seconds)


def format_span(span: datetime.timedelta | None) -> str:
    """``span`` in the notation of :func:`parse_span`; a span set through the library with a
    fraction of a second falls back to ``datetime.timedelta``'s own text."""
    if span is None:
        return FOREVER
    if span.microseconds:
        return str(span)
    seconds = span.days * 86_400 + span.seconds
    unit = next(unit for unit, width in UNIT_SECONDS.items() if seconds % width == 0)
    return f"{seconds // UNIT_SECONDS[unit]}{unit}"
