"""InfluxDB 1.x line protocol parsed into columns: one parser serves ``datastream import`` (files)
and the HTTP service's ``/write`` (request bodies).

``measurement[,tag=value...] field=value[,field=value...] [timestamp]``: each field of a series
is its own stream, named by the query tags ``measurement``, the tag set and ``field`` (plus
constant tags the caller adds). Values are floats (``1.5``, ``-2e3``), integers (``7i``),
unsigned integers (``7u``, up to the int64 maximum), double-quoted strings and booleans
(``t``, ``true``, ``F``, ``False``...); strings and booleans make nominal streams and are
refused unless the caller allows them. Blank lines and ``#`` comments are skipped. Escapes
follow InfluxDB: a backslash makes the next space, comma or ``=`` literal in names, and ``\\"``
/ ``\\\\`` are a quote / a backslash inside strings. A line without a timestamp gets the
caller's default time (the server's receive time, as InfluxDB does) or is refused.

Why columnar: an ingest batch is thousands of lines, and a per-line Python parser costs more
than storing them. Lines without backslashes or double quotes (nearly all) are cut into series,
fields and timestamps by pyarrow compute functions over the whole block; only the distinct
series texts (a handful per batch) are parsed in Python. The few lines with escapes or quoted
strings go through a small per-line scanner and then join the same columnar steps. Casts that
fail are bisected to name the first bad line (:mod:`datastream.casting`). Any error raises
:class:`LineProtocolError` naming the line, and nothing is returned for the block.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import tags as tag_rules
from .casting import first_failure
from .granularity import MAX_US, MIN_US
from .units import US_PER_SECOND

BOOLEANS = ("t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE")
ADDED_TAGS = ("measurement", "field")
# epoch units a timestamp may count in, as microseconds per unit (None: nanoseconds, divided)
PRECISIONS = {"ns": None, "us": 1, "ms": 1_000, "s": US_PER_SECOND, "m": 60 * US_PER_SECOND,
              "h": 3600 * US_PER_SECOND}
INT, FLOAT, TEXT, BOOL = 0, 1, 2, 3  # value kinds: the type codes of :meth:`ParsedLines.arrow`
_KIND_NAMES = ("integer", "float", "string", "boolean")


class LineProtocolError(ValueError):
    """A malformed line: ``line`` is its 1-based number in the body or file."""

    def __init__(self, line: int, problem: str) -> None:
        self.line = line
        self.problem = problem
        super().__init__(f"line {line}: {problem}")


@dataclasses.dataclass
class ParsedLines:
    """One row per field of every line, in input order. ``stream`` indexes ``series`` (query
    tags, in order of first appearance) and ``value_types`` ('numeric' or 'nominal'). The value
    of a row sits in the column of its kind (``kinds``: INT, FLOAT, TEXT, BOOL)."""

    series: list[dict[str, Any]]
    value_types: list[str]
    stream: np.ndarray
    lines: np.ndarray
    t_us: np.ndarray
    kinds: np.ndarray
    ints: np.ndarray
    floats: np.ndarray
    texts: pa.Array
    bools: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.stream)

    def numbers(self) -> np.ndarray:
        """The values of an all-numeric batch: int64 when every value is an integer, else
        float64 (the integers converted)."""
        if np.any(self.kinds >= TEXT):
            raise ValueError("the batch holds string or boolean values")
        if not np.any(self.kinds == FLOAT):
            return self.ints.copy()
        return np.where(self.kinds == INT, self.ints.astype(np.float64), self.floats)

    def arrow(self) -> pa.Array:
        """The values as one sparse union column (int64, float64, string, bool): rows of one
        stream hold one kind, so each stream's slice is its kind's plain array."""
        return pa.UnionArray.from_sparse(
            pa.array(self.kinds, pa.int8()),
            [pa.array(self.ints), pa.array(self.floats), self.texts, pa.array(self.bools)],
            ["integer", "float", "string", "boolean"],
        )


@dataclasses.dataclass
class _Pairs:
    """Columns of one block, one row per ``field=value`` pair."""

    lines: np.ndarray
    series: pa.Array
    keys: pa.Array
    values: pa.Array
    stamps: pa.Array  # timestamp text, null when the line has none
    texts: pa.Array  # the unescaped content of quoted string values, else null


# -- the per-line scanner (lines with escapes or quotes) -----------------------------------------

def _skip_escaped(text: str, index: int, stops: str) -> int:
    """Index of the first character of ``stops`` at or after ``index`` that no backslash
    escapes (``len(text)`` when there is none)."""
    while index < len(text) and text[index] not in stops:
        index += 2 if text[index] == "\\" else 1
    return min(index, len(text))


def _unescape(text: str, escapable: str = ' ,="\\') -> str:
    if "\\" not in text:
        return text
    out, index = [], 0
    while index < len(text):
        if text[index] == "\\" and index + 1 < len(text) and text[index + 1] in escapable:
            out.append(text[index + 1])
            index += 2
        else:
            out.append(text[index])
            index += 1
    return "".join(out)


def _quoted_end(text: str, start: int, line: int) -> int:
    """Index just past the closing quote of the string value opening at ``start``."""
    index = start + 1
    while index < len(text):
        if text[index] == "\\":
            index += 2
        elif text[index] == '"':
            return index + 1
        else:
            index += 1
    raise LineProtocolError(line, "unterminated string value")


def _scan_line(text: str, line: int) -> tuple[str, list[tuple[str, str, str | None]], str | None]:
    """(series text, [(field key, value text, string content)], timestamp text or None)."""
    end = _skip_escaped(text, 0, " ")
    series, index, pairs = text[:end], end + 1, []
    if index >= len(text):
        raise LineProtocolError(line, "no fields (expected 'measurement[,tags] field=value')")
    while True:
        equals = _skip_escaped(text, index, "= ,")
        key = text[index:equals]
        if equals >= len(text) or text[equals] != "=" or not key:
            raise LineProtocolError(line, f"field {text[index:equals]!r} is not key=value")
        start = equals + 1
        if text.startswith('"', start):
            stop = _quoted_end(text, start, line)
            content = _unescape(text[start + 1:stop - 1], '"\\')
        else:
            stop = _skip_escaped(text, start, " ,")
            content = None
        pairs.append((_unescape(key), text[start:stop], content))
        if stop >= len(text) or text[stop] == " ":
            break
        if text[stop] != ",":
            raise LineProtocolError(line, f"unexpected {text[stop]!r} after field {key!r}")
        index = stop + 1
    stamp = text[stop + 1:] if stop < len(text) else None
    return series, pairs, stamp


def _scan(texts: list[str], lines: np.ndarray) -> _Pairs:
    pair_lines, series, keys, values, stamps, contents = [], [], [], [], [], []
    for text, line in zip(texts, lines.tolist()):
        line_series, pairs, stamp = _scan_line(text, line)
        for key, value, content in pairs:
            pair_lines.append(line)
            series.append(line_series)
            keys.append(key)
            values.append(value)
            stamps.append(stamp)
            contents.append(content)
    return _Pairs(np.asarray(pair_lines, dtype=np.int64), pa.array(series, pa.large_string()),
                  pa.array(keys, pa.large_string()), pa.array(values, pa.large_string()),
                  pa.array(stamps, pa.large_string()), pa.array(contents, pa.large_string()))


# -- the columnar path (plain lines) -------------------------------------------------------------

def _first(mask: np.ndarray, lines: np.ndarray) -> int:
    return int(lines[int(np.argmax(mask))])


def _split_plain(texts: pa.Array, lines: np.ndarray) -> _Pairs:
    """Lines without escapes or quotes, cut by spaces, commas and ``=`` over the whole block."""
    parts = pc.split_pattern(texts, " ")
    counts = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
    if np.any(counts < 2):
        raise LineProtocolError(_first(counts < 2, lines),
                                "no fields (expected 'measurement[,tags] field=value')")
    if np.any(counts > 3):
        raise LineProtocolError(_first(counts > 3, lines),
                                "expected 'measurement[,tags] field=value[,...] [timestamp]'"
                                " (a space too many?)")
    series = pc.list_element(parts, 0)
    fields = pc.list_element(parts, 1)
    stamps = pc.if_else(pa.array(counts == 3), pc.list_element(pc.list_slice(parts, 0, 3, 1,
                                                                             True), 2),
                        pa.nulls(len(texts), pa.large_string()))
    pairs = pc.split_pattern(fields, ",")
    owner = pc.list_parent_indices(pairs).to_numpy(zero_copy_only=False)
    pair_text = pc.list_flatten(pairs)
    halves = pc.split_pattern(pair_text, "=", max_splits=1)
    whole = pc.list_value_length(halves).to_numpy(zero_copy_only=False) == 2
    if whole.all():
        keys = pc.list_element(halves, 0)
        whole &= pc.utf8_length(keys).to_numpy(zero_copy_only=False) > 0
    if not whole.all():
        row = int(np.argmax(~whole))
        raise LineProtocolError(int(lines[owner[row]]),
                                f"field {pair_text[row].as_py()!r} is not key=value")
    take = pa.array(owner)
    return _Pairs(lines[owner], series.take(take), keys, pc.list_element(halves, 1),
                  stamps.take(take), pa.nulls(len(owner), pa.large_string()))


# -- the parser ----------------------------------------------------------------------------------

def _series_tags(series: str, line: int) -> dict[str, Any]:
    """Measurement and tag set of one series text (escapes resolved)."""
    cut = _skip_escaped(series, 0, ",")
    measurement = _unescape(series[:cut])
    if not measurement:
        raise LineProtocolError(line, "no measurement name")
    tags: dict[str, Any] = {"measurement": measurement}
    while cut < len(series):
        start = cut + 1
        cut = _skip_escaped(series, start, ",")
        pair = series[start:cut]
        equals = _skip_escaped(pair, 0, "=")
        if equals >= len(pair) - 1 or equals == 0:
            raise LineProtocolError(line, f"tag {pair!r} is not key=value")
        key = _unescape(pair[:equals])
        if key in ADDED_TAGS:
            raise LineProtocolError(line, f"tag {key!r} clashes with the query tag {key!r} "
                                          "that each stream gets")
        if key in tags:  # as InfluxDB refuses it: which value would the series have?
            raise LineProtocolError(line, f"tag {key!r} is given twice")
        tags[key] = _unescape(pair[equals + 1:])
    return tags


class LineProtocolParser:
    """Parses blocks of whole lines (:meth:`feed`) into one :class:`ParsedLines` (:meth:`result`).

    ``precision``: unit of the timestamps (a key of PRECISIONS). ``constant``: query tags added
    to every stream. ``text_values``: accept strings and booleans (nominal streams); refused
    otherwise. ``default_time_us``: the time of lines without a timestamp; None refuses them.
    """

    def __init__(self, precision: str = "ns", constant: dict[str, Any] | None = None,
                 text_values: bool = False, default_time_us: int | None = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got "
                             f"{precision!r}")
        self.precision = precision
        self.constant = dict(constant or {})
        self.text_values = text_values
        self.default_time_us = default_time_us
        self._known: dict[str, int] = {}  # canonical query → stream index
        self._series: list[dict[str, Any]] = []
        self._types: list[str] = []
        self._parts: list[tuple[np.ndarray, ...]] = []
        self._texts: list[pa.Array] = []

    def feed(self, block: bytes, first_line: int = 1) -> None:
        """Parse whole lines; ``first_line`` is the number of the block's first line."""
        texts, lines = _lines(block, first_line)
        plain = ~(pc.match_substring(texts, "\\").to_numpy(zero_copy_only=False)
                  | pc.match_substring(texts, '"').to_numpy(zero_copy_only=False))
        parts = []
        if plain.any():
            parts.append(_split_plain(texts.filter(pa.array(plain)), lines[plain]))
        if not plain.all():
            special = np.flatnonzero(~plain)
            parts.append(_scan(texts.take(pa.array(special)).to_pylist(), lines[special]))
        if parts:
            self._add(_merge(parts))

    def _add(self, pairs: _Pairs) -> None:
        kinds, ints, floats, bools = self._values(pairs)
        stream = self._streams(pairs)
        kinds, floats = self._check_types(stream, kinds, ints, floats, pairs)
        t_us = self._times(pairs.stamps, pairs.lines)
        self._parts.append((stream, pairs.lines, t_us, kinds, ints, floats, bools))
        self._texts.append(pairs.texts)

    def _values(self, pairs: _Pairs) -> tuple[np.ndarray, ...]:
        values, lines = pairs.values, pairs.lines
        count = len(values)
        quoted = pc.is_valid(pairs.texts).to_numpy(zero_copy_only=False)
        boolean = pc.is_in(values, value_set=pa.array(BOOLEANS, pa.large_string()))
        boolean = boolean.to_numpy(zero_copy_only=False) & ~quoted
        suffix = pc.utf8_slice_codeunits(values, -1).to_numpy(zero_copy_only=False)
        integer = (suffix == "i") & ~quoted
        unsigned = (suffix == "u") & ~quoted
        real = ~(quoted | boolean | integer | unsigned)
        if not self.text_values and (quoted.any() or boolean.any()):
            row = int(np.argmax(quoted | boolean))
            field = pairs.keys[row].as_py()
            what = ("string values are not imported" if quoted[row]
                    else f"boolean {values[row].as_py()} is not imported")
            raise LineProtocolError(int(lines[row]), f"field {field!r}: {what} "
                                                     "(numeric streams only)")
        kinds = np.full(count, FLOAT, dtype=np.int8)
        kinds[integer | unsigned] = INT
        kinds[quoted] = TEXT
        kinds[boolean] = BOOL
        ints = np.zeros(count, dtype=np.int64)
        floats = np.zeros(count, dtype=np.float64)
        whole = integer | unsigned
        if whole.any():
            rows = np.flatnonzero(whole)
            ints[rows] = self._cast(pc.utf8_slice_codeunits(values.take(pa.array(rows)), 0, -1),
                                    pa.int64(), rows, pairs, "is not an integer within int64")
            negative = unsigned & (ints < 0)
            if negative.any():
                row = int(np.argmax(negative))
                raise LineProtocolError(int(lines[row]), f"field {pairs.keys[row].as_py()!r}:"
                                        f" {values[row].as_py()!r} is not an unsigned integer")
        if real.any():
            rows = np.flatnonzero(real)
            floats[rows] = self._cast(values.take(pa.array(rows)), pa.float64(), rows, pairs,
                                      "is not a number")
            infinite = real & ~np.isfinite(floats)
            if infinite.any():
                row = int(np.argmax(infinite))
                raise LineProtocolError(int(lines[row]), f"field {pairs.keys[row].as_py()!r}:"
                                        f" {values[row].as_py()!r} is not a finite number")
        bools = np.isin(pc.utf8_slice_codeunits(values, 0, 1).to_numpy(zero_copy_only=False),
                        ["t", "T"]) & boolean
        return kinds, ints, floats, bools

    @staticmethod
    def _cast(texts: pa.Array, target: pa.DataType, rows: np.ndarray, pairs: _Pairs,
              problem: str) -> np.ndarray:
        try:
            return pc.cast(texts, target).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            bad = int(rows[first_failure(texts, lambda part: pc.cast(part, target))])
        raise LineProtocolError(int(pairs.lines[bad]), f"field {pairs.keys[bad].as_py()!r}: "
                                f"{pairs.values[bad].as_py()!r} {problem}")

    def _streams(self, pairs: _Pairs) -> np.ndarray:
        """Stream index of every pair; new (series, field) combinations are registered."""
        series = pc.dictionary_encode(pairs.series)
        keys = pc.dictionary_encode(pairs.keys)
        series_codes = series.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        key_codes = keys.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        combined = series_codes * len(keys.dictionary) + key_codes
        unique, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
        parsed: dict[int, dict[str, Any]] = {}
        indices = np.empty(len(unique), dtype=np.int64)
        for position in np.argsort(first, kind="stable").tolist():  # distinct streams only
            row = int(first[position])
            line = int(pairs.lines[row])
            code = int(series_codes[row])
            if code not in parsed:
                parsed[code] = _series_tags(series.dictionary[code].as_py(), line)
            query = {**self.constant, **parsed[code],
                     "field": keys.dictionary[int(key_codes[row])].as_py()}
            indices[position] = self._register(query, line)
        return indices[inverse.reshape(-1)]

    def _register(self, query: dict[str, Any], line: int) -> int:
        key = json.dumps(query, sort_keys=True)
        found = self._known.get(key)
        if found is not None:
            return found
        try:
            tag_rules.validate_tags(query)
        except (ValueError, TypeError) as error:
            raise LineProtocolError(line, f"query tags {query}: {error}") from None
        self._known[key] = len(self._series)
        self._series.append(query)
        self._types.append("")
        return len(self._series) - 1

    def _check_types(self, stream: np.ndarray, kinds: np.ndarray, ints: np.ndarray,
                     floats: np.ndarray, pairs: _Pairs) -> tuple[np.ndarray, np.ndarray]:
        """A stream is numeric or nominal throughout; integers of a stream that also has
        floats become floats."""
        nominal = kinds >= TEXT
        streams = len(self._series)
        counts = np.bincount(stream, minlength=streams)
        present, first_rows = np.unique(stream, return_index=True)
        first_nominal = np.zeros(streams, dtype=bool)
        first_nominal[present] = nominal[first_rows]
        known = np.array([{"": 0, "numeric": 1, "nominal": 2}[kind] for kind in self._types],
                         dtype=np.int8)
        wanted_nominal = np.where(known == 0, first_nominal, known == 2)
        conflict = nominal != wanted_nominal[stream]
        if conflict.any():
            row = int(np.argmax(conflict))
            holds = "string/boolean" if wanted_nominal[stream[row]] else "numeric"
            raise LineProtocolError(int(pairs.lines[row]), f"field {pairs.keys[row].as_py()!r}:"
                                    f" {_KIND_NAMES[kinds[row]]} value, but the field holds "
                                    f"{holds} values (a field keeps one type)")
        for index in np.flatnonzero(counts).tolist():
            self._types[index] = "nominal" if wanted_nominal[index] else "numeric"
        floating = np.bincount(stream, weights=kinds == FLOAT, minlength=streams) > 0
        promote = (kinds == INT) & floating[stream]
        if promote.any():
            kinds = np.where(promote, FLOAT, kinds).astype(np.int8)
            floats = np.where(promote, ints.astype(np.float64), floats)
        return kinds, floats

    def _times(self, stamps: pa.Array, lines: np.ndarray) -> np.ndarray:
        missing = pc.is_null(stamps).to_numpy(zero_copy_only=False)
        t_us = np.empty(len(stamps), dtype=np.int64)
        if missing.any():
            if self.default_time_us is None:
                raise LineProtocolError(_first(missing, lines),
                                        "no timestamp (import needs one on every line)")
            t_us[missing] = self.default_time_us
        rows = np.flatnonzero(~missing)
        if not len(rows):
            return t_us
        texts = stamps.take(pa.array(rows))
        try:
            epochs = pc.cast(texts, pa.int64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            bad = first_failure(texts, lambda part: pc.cast(part, pa.int64()))
            raise LineProtocolError(int(lines[rows[bad]]), f"timestamp {texts[bad].as_py()!r} "
                                    "is not an integer within int64") from None
        t_us[rows] = _epochs_us(epochs, self.precision, lines[rows])
        return t_us

    def result(self) -> ParsedLines:
        """Everything fed so far, rows in input order."""
        columns = list(zip(*self._parts)) if self._parts else [[]] * 7
        dtypes = (np.int64, np.int64, np.int64, np.int8, np.int64, np.float64, np.bool_)
        stream, lines, t_us, kinds, ints, floats, bools = (
            np.concatenate(parts).astype(dtype) if len(parts) else np.zeros(0, dtype)
            for parts, dtype in zip(columns, dtypes)
        )
        texts = (pa.concat_arrays(self._texts).cast(pa.string()) if self._texts
                 else pa.array([], pa.string()))
        return ParsedLines(list(self._series), list(self._types), stream, lines, t_us, kinds,
                           ints, floats, texts, bools)


def _epochs_us(epochs: np.ndarray, precision: str, lines: np.ndarray) -> np.ndarray:
    per_unit = PRECISIONS[precision]
    if per_unit is None:
        return np.floor_divide(epochs, 1000)  # finer than a microsecond is floored
    low, high = -(-MIN_US // per_unit), MAX_US // per_unit
    outside = (epochs < low) | (epochs > high)
    if outside.any():
        row = int(np.argmax(outside))
        raise LineProtocolError(int(lines[row]), f"timestamp {epochs[row]} ({precision}) is "
                                "outside 1677-09-22..2262-04-11")
    return epochs * per_unit


def _lines(block: bytes, first_line: int) -> tuple[pa.Array, np.ndarray]:
    """The non-blank, non-comment lines of a block (whitespace trimmed) and their numbers."""
    whole = pa.LargeStringArray.from_buffers(
        1, pa.py_buffer(np.array([0, len(block)], dtype=np.int64)), pa.py_buffer(block))
    try:
        whole.validate(full=True)
    except pa.ArrowInvalid:
        raise _not_utf8(block, first_line) from None
    texts = pc.utf8_trim_whitespace(pc.list_flatten(pc.split_pattern(whole, "\n")))
    lines = np.arange(first_line, first_line + len(texts), dtype=np.int64)
    keep = pc.and_(pc.greater(pc.utf8_length(texts), 0),
                   pc.invert(pc.starts_with(texts, "#"))).to_numpy(zero_copy_only=False)
    return texts.filter(pa.array(keep)), lines[keep]


def _not_utf8(block: bytes, first_line: int) -> LineProtocolError:
    try:
        block.decode("utf-8")
    except UnicodeDecodeError as error:
        return LineProtocolError(first_line + block.count(b"\n", 0, error.start), "not UTF-8 text")
    return LineProtocolError(first_line, "not UTF-8 text")


def _merge(parts: list[_Pairs]) -> _Pairs:
    """Pairs of the plain and the scanned lines, back in line order."""
    if len(parts) == 1:
        return parts[0]
    lines = np.concatenate([part.lines for part in parts])
    order = pa.array(np.argsort(lines, kind="stable"))

    def joined(name: str) -> pa.Array:
        return pa.concat_arrays([getattr(part, name) for part in parts]).take(order)

    return _Pairs(lines[order.to_numpy()], joined("series"), joined("keys"), joined("values"),
                  joined("stamps"), joined("texts"))


def parse(body: bytes, precision: str = "ns", constant: dict[str, Any] | None = None,
          text_values: bool = False, default_time_us: int | None = None) -> ParsedLines:
    """Parse a whole body at once (see :class:`LineProtocolParser`)."""
    parser = LineProtocolParser(precision, constant, text_values, default_time_us)
    parser.feed(body)
    return parser.result()
