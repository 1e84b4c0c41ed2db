"""Reader of InfluxDB line protocol files into validated ``Parsed`` rows.

``measurement[,tag=value...] field=value[,field=value...] timestamp``: each field of a series
becomes its own stream, with query tags ``measurement``, the tag set and ``field``. Values are
floats or integers (``1i``, ``1u``); strings and booleans are refused (numeric streams only).
Timestamps are required, in ``precision`` units (ns by default). Parsing is per line, in plain
string operations; lines without escapes or quotes take a split-only fast path.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pyarrow as pa

from .bad_input import BadInput, Positions
from .columns import epochs_to_us
from .readers import Advance
from .series import Parsed, check_query_tags

BOOLEANS = {"t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"}
ADDED_TAGS = ("measurement", "field")
_PROGRESS_LINES = 10_000


def _split(text: str, separator: str, limit: int = -1) -> list[str]:
    """Split on ``separator`` outside backslash escapes and double-quoted strings."""
    parts, current, quoted, index = [], [], False, 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            current.append(text[index:index + 2])
            index += 2
            continue
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted and (limit < 0 or len(parts) < limit):
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out, index = [], 0
    while index < len(text):
        if text[index] == "\\" and index + 1 < len(text) and text[index + 1] in ' ,="\\':
            out.append(text[index + 1])
            index += 2
        else:
            out.append(text[index])
            index += 1
    return "".join(out)


def _number(text: str, where: str, field: str) -> int | float:
    problem = None
    if not text:
        problem = "no value"
    elif text[0] == '"':
        problem = "string values are not imported (numeric streams only)"
    elif text in BOOLEANS:
        problem = f"boolean {text} is not imported (numeric streams only)"
    elif text[-1] in "iu":
        try:
            number: int | float = int(text[:-1])
        except ValueError:
            problem = f"{text!r} is not an integer"
        else:
            if not -(2**63) <= number < 2**63:
                problem = f"{text!r} is outside int64"
    else:
        try:
            number = float(text)
        except ValueError:
            problem = f"{text!r} is not a number"
        else:
            if not math.isfinite(number):
                problem = f"{text!r} is not a finite number"
    if problem:
        raise BadInput(where, f"field {field!r}: {problem}")
    return number


def _series_tags(series: str, where: str) -> dict[str, Any]:
    parts = _split(series, ",")
    measurement = _unescape(parts[0])
    if not measurement:
        raise BadInput(where, "no measurement name")
    tags: dict[str, Any] = {"measurement": measurement}
    for pair in parts[1:]:
        key_value = _split(pair, "=", 1)
        if len(key_value) != 2 or not key_value[0] or not key_value[1]:
            raise BadInput(where, f"tag {pair!r} is not key=value")
        key = _unescape(key_value[0])
        if key in ADDED_TAGS:
            raise BadInput(where, f"tag {key!r} clashes with the query tag the importer adds")
        tags[key] = _unescape(key_value[1])
    return tags


class _Collector:
    """Columns being built, one row per field of each line."""

    def __init__(self, constant: dict[str, Any], source: str) -> None:
        self.constant = constant
        self.source = source
        self.streams: dict[tuple[str, str], int] = {}  # (series text, field) → stream index
        self.series: list[dict[str, Any]] = []
        self.canonical: dict[str, int] = {}  # sorted query → stream (tag order may differ)
        self.stream: list[int] = []
        self.times: list[int] = []
        self.values: list[int | float] = []
        self.lines: list[int] = []

    def stream_of(self, series: str, field: str, where: str) -> int:
        found = self.streams.get((series, field))
        if found is not None:
            return found
        query = {**self.constant, **_series_tags(series, where), "field": field}
        check_query_tags(query, where)
        key = repr(sorted(query.items()))
        index = self.canonical.setdefault(key, len(self.series))
        if index == len(self.series):
            self.series.append(query)
        self.streams[(series, field)] = index
        return index

    def add_line(self, line: str, number: int) -> None:
        where = f"{self.source}:{number}"
        if "\\" in line or '"' in line:
            parts = _split(line, " ")
        else:
            parts = line.split(" ")
        if len(parts) == 2:
            raise BadInput(where, "no timestamp (import needs one on every line)")
        if len(parts) != 3:
            raise BadInput(where, "expected 'measurement[,tags] fields timestamp'")
        series, fields, stamp = parts
        try:
            timestamp = int(stamp)
        except ValueError:
            raise BadInput(where, f"timestamp {stamp!r} is not an integer") from None
        if not -(2**63) <= timestamp < 2**63:
            raise BadInput(where, f"timestamp {stamp!r} is outside int64")
        pairs = fields.split(",") if '"' not in fields and "\\" not in fields \
            else _split(fields, ",")
        for pair in pairs:
            key, equals, text = pair.partition("=") if "\\" not in pair else _key_value(pair)
            if not equals or not key:
                raise BadInput(where, f"field {pair!r} is not key=value")
            field = _unescape(key)
            self.stream.append(self.stream_of(series, field, where))
            self.values.append(_number(text, where, field))
            self.times.append(timestamp)
            self.lines.append(number)


def _key_value(pair: str) -> tuple[str, str, str]:
    parts = _split(pair, "=", 1)
    return (parts[0], "=", parts[1]) if len(parts) == 2 else (parts[0], "", "")


def read_line_protocol(path: str, precision: str, constant: dict[str, Any],
                       advance: Advance) -> Parsed:
    source = os.path.basename(path)
    collector = _Collector(constant, source)
    pending = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            pending += len(raw)
            if number % _PROGRESS_LINES == 0:
                advance(pending)
                pending = 0
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise BadInput(f"{source}:{number}", "not UTF-8 text") from None
            if line.strip() and not line.lstrip().startswith("#"):
                collector.add_line(line, number)
    advance(pending)
    lines = np.asarray(collector.lines, dtype=np.int64)
    positions = Positions(source, lines=lines)
    epochs = np.asarray(collector.times, dtype=np.int64)
    t_us = epochs_to_us(epochs, precision, "timestamp", positions, pa.array(epochs))
    values = np.asarray(collector.values)
    if values.dtype == object:  # ints beyond int64 were refused, so only a mix is left
        values = values.astype(np.float64)
    return Parsed(positions, collector.series, np.asarray(collector.stream, dtype=np.int64),
                  t_us, values)
