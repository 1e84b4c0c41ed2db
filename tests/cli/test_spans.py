"""Spans of ``--keep LEVEL=SPAN``: parsing, display, and display read back."""

from __future__ import annotations

import datetime

import pytest

from datastream.cli.spans import format_span, parse_span

DAY = datetime.timedelta(days=1)


@pytest.mark.parametrize(("text", "span"), [
    ("90s", datetime.timedelta(seconds=90)),
    ("30m", datetime.timedelta(minutes=30)),
    ("12h", datetime.timedelta(hours=12)),
    ("7d", 7 * DAY),
    ("1y", 365 * DAY),
    ("0010d", 10 * DAY),
    ("forever", None),
])
def test_parse(text, span) -> None:
    assert parse_span(text) == span


@pytest.mark.parametrize(("text", "problem"), [
    ("", "'' is not a span"),
    ("7", "'7' is not a span"),
    ("d", "'d' is not a span"),
    ("1.5h", "'1.5h' is not a span"),
    ("-3d", "'-3d' is not a span"),
    ("7D", "'7D' is not a span"),
    ("1w", "'1w' is not a span"),
    ("7 d", "'7 d' is not a span"),
    ("1d12h", "'1d12h' is not a span"),
    ("\u0663d", "'\u0663d' is not a span"),  # an Arabic-Indic digit is not a number here
    ("Forever", "'Forever' is not a span"),
    ("0s", "'0s': a span must be longer than zero"),
    ("0y", "'0y': a span must be longer than zero"),
    ("9999999y", "'9999999y' is longer than Python's datetime.timedelta can hold"),
])
def test_bad_spans_say_what_is_accepted(text, problem) -> None:
    with pytest.raises(ValueError) as raised:
        parse_span(text)
    assert str(raised.value).startswith(problem)
    if "is not a span" in problem:
        assert str(raised.value).endswith("use a whole number and a unit: 90s, 30m, 12h, 7d,"
                                          " 1y (365 days), or forever")


@pytest.mark.parametrize(("span", "text"), [
    (None, "forever"),
    (datetime.timedelta(seconds=90), "90s"),
    (datetime.timedelta(minutes=90), "90m"),
    (datetime.timedelta(hours=36), "36h"),
    (400 * DAY, "400d"),
    (730 * DAY, "2y"),
    (datetime.timedelta(days=1, seconds=1), "86401s"),
    (datetime.timedelta(seconds=1, microseconds=500_000), "0:00:01.500000"),
])
def test_format_uses_the_largest_exact_unit(span, text) -> None:
    assert format_span(span) == text


@pytest.mark.parametrize("text", ["1s", "59s", "61m", "25h", "364d", "365d", "3y", "forever"])
def test_what_is_shown_reads_back_as_the_same_span(text) -> None:
    assert parse_span(format_span(parse_span(text))) == parse_span(text)
