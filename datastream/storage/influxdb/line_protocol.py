"""InfluxDB 1.x line protocol and InfluxQL quoting, with lines built column-wise by Arrow.

Why names are percent-encoded before they are escaped: the 1.x parser un-escapes only
``\\,`` ``\\ `` ``\\=`` and ``\\"`` in measurements, tag keys/values and field keys, so a
backslash right before a delimiter, or at the end of a key, cannot be written at all, and a
newline ends the line whatever precedes it. :func:`encode_name` turns those characters (and
``%`` itself, so that decoding is unambiguous) into ``%XX`` first; what remains is escaped by
the protocol's own rules. String field *values* need no such trick: the protocol escapes ``\\``
and ``"`` inside them and carries newlines as they are.

The backend's own tags and fields start with ``_``; an encoded name never does. A float column
becomes up to three fields: short decimals as integer mantissas (``_d<k>_<name>``, see
:func:`decimal_mantissas`), other finite values as floats (``<name>``), NaN, infinities and
-0.0 as text (``_nf_<name>``); :func:`field_pattern` selects them all in a query.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_PERCENT = {"%": "%25", "\\": "%5C", "\n": "%0A", "\r": "%0D", "\x00": "%00"}
_NEEDS_PERCENT = re.compile(r"[%\\\n\r\x00]")
_DECODE = re.compile(r"%([0-9A-F]{2})")
_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})

# Floats the protocol cannot write (NaN, infinities) or that JSON reads back wrongly (-0.0) go
# to a companion string field named SPECIAL_FLOAT_PREFIX + encoded column name.
SPECIAL_FLOAT_PREFIX = "_nf_"
SPECIAL_FLOATS = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf"), "-0": -0.0}


def encode_name(name: str) -> str:
    """A measurement, tag or field name that the line protocol carries exactly (see module
    docstring); also avoids the names 1.x rejects or treats specially (``time``, ``#...``)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"InfluxDB names must be non-empty str, got {name!r}")
    if _NEEDS_PERCENT.search(name):
        name = "".join(_PERCENT.get(char, char) for char in name)
    if name[0] in "_#":
        name = f"%{ord(name[0]):02X}{name[1:]}"
    if name == "time":
        name = "%74ime"
    return name


def decode_name(text: str) -> str:
    """Inverse of :func:`encode_name` (every ``%`` in an encoded name starts an escape)."""
    return _DECODE.sub(lambda match: chr(int(match.group(1), 16)), text) if "%" in text else text


def escape_key(text: str) -> str:
    """Tag key, tag value or field key: commas, equals signs and spaces are backslashed."""
    return text.translate(_KEY_ESCAPES)


def escape_measurement(text: str) -> str:
    return text.translate(_MEASUREMENT_ESCAPES)


def quote_string(text: str) -> str:
    """A string field value: quoted, with backslashes and double quotes backslashed."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_identifier(name: str) -> str:
    """An InfluxQL identifier (measurement, tag or field name) in double quotes."""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped + '"'


# -- column-wise encoding ----------------------------------------------------------------------


def join(*parts: pa.Array | str, separator: str = "") -> pa.Array:
    return pc.binary_join_element_wise(*parts, separator)


def quoted(array: pa.Array) -> pa.Array:
    escaped = pc.replace_substring(pc.replace_substring(array, "\\", "\\\\"), '"', '\\"')
    return join('"', escaped, '"')


def field_columns(name: str, array: pa.Array) -> list[pa.Array]:
    """``key=value`` strings of one column (null where the value is null, so that the field is
    left out of that point), plus a companion column for special floats when needed."""
    key = escape_key(encode_name(name))
    kind = array.type
    if pa.types.is_dictionary(kind):
        array = array.dictionary_decode()
        kind = array.type
    if pa.types.is_null(kind):
        return []
    if pa.types.is_integer(kind):
        text = pc.cast(array.cast(pa.int64()), pa.string())
        return [join(key + "=", text, "i")]
    if pa.types.is_boolean(kind):
        return [join(key + "=", pc.if_else(array, "true", "false"))]
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return [join(key + "=", quoted(array.cast(pa.string())))]
    if pa.types.is_floating(kind):
        return _float_columns(name, key, array.cast(pa.float64()))
    raise ValueError(f"column {name!r}: type {kind} cannot be stored in InfluxDB")


def _float_columns(name: str, key: str, array: pa.Array) -> list[pa.Array]:
    """A float column as up to three fields: the values that are short decimals as integer
    mantissas (see :func:`decimal_mantissas`), the others as floats, and the special floats
    in their companion field."""
    values = array.to_numpy(zero_copy_only=False)
    valid = ~np.asarray(array.is_null())
    with np.errstate(invalid="ignore"):
        special = valid & (~np.isfinite(values) | ((values == 0) & np.signbit(values)))
    finite = valid & ~special
    columns = []
    scale, mantissas, exact = decimal_mantissas(values, finite)
    if scale is not None:
        text = pc.cast(pa.array(mantissas, pa.int64(), mask=~exact), pa.string())
        columns.append(join(escape_key(decimal_field(encode_name(name), scale)) + "=", text, "i"))
        finite &= ~exact
    if finite.any():
        plain = pa.array(values, pa.float64(), mask=~finite)
        columns.append(join(key + "=", pc.cast(plain, pa.string())))
    if special.any():
        labels = np.where(np.isnan(values), "nan", np.where(values > 0, "inf", "-inf"))
        labels = np.where(values == 0, "-0", labels)
        companion = pa.array(np.where(special, labels, None), pa.string())
        prefix = escape_key(SPECIAL_FLOAT_PREFIX + encode_name(name))
        columns.append(join(prefix + '="', companion, '"'))
    return columns


# -- short decimals as integers ----------------------------------------------------------------
# InfluxDB compresses floats by XOR with the previous value (Gorilla), which saves little on
# decimal data such as 23.66: its mantissa bits look random. The same values as integer
# mantissas at a fixed scale (2366 at 10**-2) are delta-encoded and packed in a few bits. A
# value x goes this way only when m / 10**k == x exactly in float64 arithmetic, with |m| <= 2**53
# (so that m is exact as a float) and k <= MAX_SCALE (10**k exact): reading computes the same
# correctly rounded division and gets the same bits back. -0.0 is a special float (above).

DECIMAL_PREFIX = "_d"  # field "_d<k>_<name>": integer mantissas of column <name> at 10**-k
MAX_SCALE = 9
MIN_DECIMAL_SHARE = 0.5  # below this share of exact values a column stays all floats
_POWERS = [10.0**k for k in range(MAX_SCALE + 1)]
_LIMIT = float(2**53)


def decimal_field(encoded: str, scale: int) -> str:
    return f"{DECIMAL_PREFIX}{scale}_{encoded}"


def decimal_mantissas(values: np.ndarray, candidates: np.ndarray
                      ) -> tuple[int | None, np.ndarray, np.ndarray]:
    """(scale k, mantissas, mask of the values that are exactly ``mantissa / 10**k``) for the
    smallest k at which the most ``candidates`` are exact; scale None when fewer than
    MIN_DECIMAL_SHARE of them would be."""
    wanted = int(candidates.sum())
    none = None, np.zeros(len(values), np.int64), np.zeros(len(values), bool)
    if not wanted:
        return none
    best, best_count = None, 0
    with np.errstate(invalid="ignore", over="ignore"):
        for scale, power in enumerate(_POWERS):
            exact = _exact_at(values, candidates, power)
            count = int(exact.sum())
            if count > best_count:
                best, best_count = scale, count
            if count == wanted:
                break
        if best is None or best_count < MIN_DECIMAL_SHARE * wanted:
            return none
        power = _POWERS[best]
        exact = _exact_at(values, candidates, power)
        mantissas = np.where(exact, np.rint(values * power), 0).astype(np.int64)
    return best, mantissas, exact


def _exact_at(values: np.ndarray, candidates: np.ndarray, power: float) -> np.ndarray:
    mantissas = np.rint(values * power)
    return candidates & (np.abs(mantissas) <= _LIMIT) & (mantissas / power == values)


def decode_decimal(mantissas: np.ndarray, scale: int) -> np.ndarray:
    """Inverse of the encoding above (the same float64 division)."""
    return mantissas.astype(np.float64) / _POWERS[scale]


PIECE_PREFIX = "_p"  # field "_p<i>_<name>": piece i (from 1) of a long text of column <name>
PIECE_BYTES = 4 << 20
"""A text field holds at most this many UTF-8 bytes; a longer text (a level's frequency table
of many large values) continues in piece fields written on lines of their own, which InfluxDB
merges into the same point: a line, even escaped, then stays far below the server's request
limit (``max-body-size``, 25 MB by default)."""


def piece_name(encoded: str, index: int) -> str:
    return f"{PIECE_PREFIX}{index}_{encoded}"


def text_pieces(array: pa.Array) -> tuple[pa.Array, list[pa.Array]]:
    """A text column as its first pieces (each at most PIECE_BYTES bytes, cut between
    characters) and, for i = 1, 2, ..., a column of the i-th further pieces (null where a text
    has none). Texts this long are rare: only they are cut, in Python."""
    array = array.cast(pa.string())
    long = np.flatnonzero(pc.fill_null(pc.greater(pc.binary_length(array), PIECE_BYTES),
                                       False).to_numpy(zero_copy_only=False))
    if not long.size:
        return array, []
    first = array.to_pylist()
    further: list[list[str | None]] = []
    for row in long.tolist():
        pieces = _cut_utf8(first[row].encode())
        first[row] = pieces[0]
        for index, piece in enumerate(pieces[1:]):
            if index == len(further):
                further.append([None] * len(first))
            further[index][row] = piece
    return pa.array(first, pa.string()), [pa.array(column, pa.string()) for column in further]


def _cut_utf8(data: bytes) -> list[str]:
    pieces, start = [], 0
    while start < len(data):
        end = min(start + PIECE_BYTES, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # inside a character: step back
            end -= 1
        pieces.append(data[start:end].decode())
        start = end
    return pieces


def joined_pieces(columns: dict[str, Any], encoded: str, values: list) -> list:
    """``values`` (the first pieces of column ``encoded`` from a query) with their further
    pieces appended, in place."""
    index = 1
    while (more := columns.get(piece_name(encoded, index))) is not None:
        for row, piece in enumerate(more):
            if piece is not None:
                values[row] += piece
        index += 1
    return values


def field_pattern(encoded_names: list[str]) -> str:
    """An InfluxQL regular expression (``/.../``) matching the fields of these encoded column
    names: plain, special-float companions, decimal mantissas and text pieces. Every character
    but ASCII letters, digits, ``_`` and ``%`` is written as a hex escape, so no name can break
    out."""
    alternatives = "|".join(_regex_literal(name) for name in encoded_names)
    prefix = f"{DECIMAL_PREFIX}[0-9]_|{SPECIAL_FLOAT_PREFIX}|{PIECE_PREFIX}[0-9]+_"
    return f"/^({prefix})?({alternatives})$/"


def _regex_literal(text: str) -> str:
    out = []
    for char in text:
        if char.isascii() and (char.isalnum() or char in "_%"):
            out.append(char)
        elif char.isascii():
            out.append(f"\\x{ord(char):02X}")
        else:
            out.append(f"\\x{{{ord(char):X}}}")
    return "".join(out)


def lines(series: pa.Array | str, fields: list[pa.Array], times_ns: np.ndarray) -> pa.Array:
    """Whole lines: ``series`` (escaped measurement and tag set, per row or shared), the field
    columns (nulls skipped; at least one must be non-null in every row) and integer times."""
    field_set = pc.binary_join_element_wise(*fields, ",", null_handling="skip")
    times = pc.cast(pa.array(times_ns, pa.int64()), pa.string())
    return join(series, field_set, times, separator=" ")


def decode_special(labels: list) -> list:
    """Values of a companion column back to floats (None where absent)."""
    return [None if label is None else SPECIAL_FLOATS[label] for label in labels]
