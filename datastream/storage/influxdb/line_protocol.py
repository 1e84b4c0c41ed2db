"""InfluxDB 1.x line protocol and InfluxQL quoting, with lines built column-wise by Arrow.

Why names are percent-encoded before they are escaped: the 1.x parser un-escapes only
``\\,`` ``\\ `` ``\\=`` and ``\\"`` in measurements, tag keys/values and field keys, so a
backslash right before a delimiter, or at the end of a key, cannot be written at all, and a
newline ends the line whatever precedes it. :func:`encode_name` turns those characters (and
``%`` itself, so that decoding is unambiguous) into ``%XX`` first; what remains is escaped by
the protocol's own rules. String field *values* need no such trick: the protocol escapes ``\\``
and ``"`` inside them and carries newlines as they are.

The backend's own tags and fields start with ``_``; an encoded name never does.
"""

from __future__ import annotations

import re

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


def _quoted(array: pa.Array) -> pa.Array:
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
        return [join(key + "=", _quoted(array.cast(pa.string())))]
    if pa.types.is_floating(kind):
        return _float_columns(name, key, array.cast(pa.float64()))
    raise ValueError(f"column {name!r}: type {kind} cannot be stored in InfluxDB")


def _float_columns(name: str, key: str, array: pa.Array) -> list[pa.Array]:
    values = array.to_numpy(zero_copy_only=False)
    valid = ~np.asarray(array.is_null())
    with np.errstate(invalid="ignore"):
        special = valid & (~np.isfinite(values) | ((values == 0) & np.signbit(values)))
    plain = pc.if_else(pa.array(special), pa.scalar(None, pa.float64()), array)
    columns = [join(key + "=", pc.cast(plain, pa.string()))]
    if special.any():
        labels = np.where(np.isnan(values), "nan", np.where(values > 0, "inf", "-inf"))
        labels = np.where(values == 0, "-0", labels)
        companion = pa.array(np.where(special, labels, None), pa.string())
        prefix = escape_key(SPECIAL_FLOAT_PREFIX + encode_name(name))
        columns.append(join(prefix + '="', companion, '"'))
    return columns


def lines(series: pa.Array | str, fields: list[pa.Array], times_ns: np.ndarray) -> pa.Array:
    """Whole lines: ``series`` (escaped measurement and tag set, per row or shared), the field
    columns (nulls skipped; at least one must be non-null in every row) and integer times."""
    field_set = pc.binary_join_element_wise(*fields, ",", null_handling="skip")
    times = pc.cast(pa.array(times_ns, pa.int64()), pa.string())
    return join(series, field_set, times, separator=" ")


def decode_special(labels: list) -> list:
    """Values of a companion column back to floats (None where absent)."""
    return [None if label is None else SPECIAL_FLOATS[label] for label in labels]
