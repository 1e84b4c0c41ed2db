"""Value types (behaviour §5.1): validation of appended values and their raw-row encoding.

Every appended value becomes one ``RAW_SCHEMA`` row ``(k, i, f, s)``: a kind and at most one
filled payload column. Validation and encoding happen together so a value is inspected once,
before anything is buffered, and a rejected value never reaches storage.

Kinds (numbered in :mod:`datastream.raw_kinds`)::

    0 null          nothing            (None, float NaN)
    1 int64         i                  default numeric mode, ints within int64
    2 float64       f                  default numeric mode, everything else numeric
    3 exact text    s                  high-accuracy mode: str(Decimal), 64 significant digits
    4 JSON          s                  nominal and graph values, canonical JSON
    5 aggregate     s                  a pre-aggregated numeric dict, canonical JSON (numbers as
                                       text in high-accuracy mode; ``f`` keys are number texts)

Decisions in detail (beyond behaviour §5.1):

* ``None`` is a null point for every value type.
* Nominal values must be pure JSON (str, int, float, bool, None, list, dict with str keys);
  tuples, sets, Decimals... raise ``TypeError`` because they could not be returned as appended.
  numpy scalars are accepted as their Python equivalents. NaN/±inf inside a nominal or graph value
  raise ``ValueError`` (not JSON). Dict key order is not kept (values are stored canonically so
  equal values have equal text); dict equality is.
* Graph: a wrong container type at any depth (``v``/``e`` not a list, a vertex or edge not a dict)
  is a ``TypeError``; missing keys, duplicate ids and unknown endpoints are ``ValueError``. Vertex
  ids are compared by canonical JSON (``1`` and ``1.0`` are different ids).
* High-accuracy mode converts a float through its shortest repr (``0.1`` → ``Decimal('0.1')``),
  so ``float(decoded) == appended``; kind 3 text of a float is that repr (``'1e-05'``), of other
  numbers ``str(Decimal)``. Complex numbers raise ``TypeError``.
* Pre-aggregated dicts may hold None for any key but ``c``; ``c`` (and the counts of ``f``) must
  be non-negative integers (``ValueError`` otherwise) and read back as ``int`` in every mode.

Limits, so that a value accepted here can never fail later (at commit, in a kernel, in an
operator; behaviour §4.1):

* A count (``c``, or a count in ``f``) is at most ``MAX_COUNT`` = 2**32 - 1. Levels keep counts
  in int64 columns and add them up per bucket, and a bucket may hold any number of
  pre-aggregated points: with counts below 2**32, an overflow needs more than 2**31 such points
  in one bucket of one stream. A bound of 2**53 - 1 (exact as a float) would overflow int64 with
  1025 points in one bucket.
* ``Decimal('sNaN')`` (signalling NaN) raises ``ValueError`` everywhere: any arithmetic on it
  signals. A quiet NaN is a null point, as a float NaN is.
* High-accuracy mode accepts the float64 range: zero, or a magnitude that converts to a finite,
  non-zero float64 (about 4.9e-324 to 1.8e308). Every level keeps float64 partials beside the
  exact Decimal state, and squares of such values stay far inside the Decimal context of the
  exact partial state, so nothing overflows or silently underflows to zero there. This applies
  to plain values, to the numbers inside pre-aggregated dicts and to the bulk path alike.
* The default mode needs no such rule: a value becomes a finite float64 or is rejected.
* Conversions that overflow (``OverflowError``, ``decimal.Overflow``, ``InvalidOperation``) or
  recurse too deeply are reported as ``ValueError`` naming the stream and value.
"""

from __future__ import annotations

import decimal
import json
import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from . import arrow_numpy, exceptions
from .lazy import pa, pc
from .messages import show
from .null_columns import null_array
from .raw_kinds import (
    HIGH_ACCURACY,
    KIND_AGGREGATE,
    KIND_EXACT,
    KIND_FLOAT,
    KIND_INT,
    KIND_JSON,
    KIND_NULL,
    canonical_json,
)
from .storage.base import raw_schema
from .units import INT64_MAX, INT64_MIN

# The kinds, HIGH_ACCURACY, canonical_json and the int64 bounds live in raw_kinds and units; other
# modules and tests also read them here (values.KIND_INT, values.canonical_json).
VALUE_TYPES = ("numeric", "graph", "nominal")  # the original API's order

MAX_COUNT = 2**32 - 1  # of one pre-aggregated count; see the module docstring

Encoded = tuple[int, int | None, float | None, str | None]
NULL: Encoded = (KIND_NULL, None, None, None)

_OPTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "numeric": {"high_accuracy": False},
    "nominal": {},
    "graph": {},
}
_COUNT_KEY = "c"
_FREQUENCIES_KEY = "f"


# -- helpers shared by every value type ------------------------------------------------------


def _fail(error: type[Exception], stream_id: Any, value: Any, reason: str) -> Exception:
    """The error to raise: names the stream and the offending value (behaviour §8)."""
    return error(f"stream {stream_id}: {reason}: {show(value)}")


def is_high_accuracy(options: dict | None) -> bool:
    """Whether a numeric stream keeps exact decimals (its ``high_accuracy`` option)."""
    return bool(options) and bool(options.get("high_accuracy", False))


def _check_value_type(value_type: Any) -> str:
    if not isinstance(value_type, str) or value_type not in VALUE_TYPES:
        raise exceptions.UnsupportedValueType(
            f"unsupported value type {show(value_type)}; expected one of {VALUE_TYPES}"
        )
    return value_type


def normalise_options(value_type: str | None, options: dict | None) -> dict:
    """The full options dict of a value type, defaults filled in (behaviour §3.3 step 5).

    Normalised options are what streams compare for InconsistentStreamConfiguration, so
    ``None``, ``{}`` and ``{'high_accuracy': False}`` must all give the same dict.
    """
    value_type = _check_value_type("numeric" if value_type is None else value_type)
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise TypeError(f"value_type_options must be a dict, got {show(options)}")
    defaults = _OPTION_DEFAULTS[value_type]
    unknown = sorted(map(str, set(options) - set(defaults)))
    if unknown:
        raise ValueError(f"unknown value_type_options for {value_type!r}: {', '.join(unknown)}")
    result = dict(defaults)
    result.update(options)
    for key, item in result.items():
        if not isinstance(item, bool):
            raise TypeError(f"value_type_options[{key!r}] must be a bool, got {show(item)}")
    return result


# -- numbers ---------------------------------------------------------------------------------


def _check_number(value: Any, stream_id: Any) -> None:
    """Reject what is not a usable number: bools, non-numbers and complex numbers."""
    if isinstance(value, (bool, np.bool_)):
        raise _fail(TypeError, stream_id, value, "bool is not a numeric value")
    if not isinstance(value, numbers.Number):
        raise _fail(TypeError, stream_id, value, "not a numeric value")
    if not isinstance(value, (numbers.Real, decimal.Decimal)):
        raise _fail(TypeError, stream_id, value, "complex numbers are not supported")


def _finite_float(value: Any, stream_id: Any) -> float | None:
    """float(value); NaN → None (a null point), ±inf or overflow → ValueError."""
    try:
        result = float(value)
    except (OverflowError, ArithmeticError):
        raise _fail(ValueError, stream_id, value, "number too large for a float") from None
    if math.isnan(result):
        return None
    if math.isinf(result):
        raise _fail(ValueError, stream_id, value, "number outside the float64 range")
    return result


def _special_decimal(value: decimal.Decimal, stream_id: Any) -> bool:
    """True for a quiet NaN (a null point); sNaN and infinities raise ValueError."""
    if value.is_snan():
        raise _fail(ValueError, stream_id, value, "a signalling NaN is not a value")
    if value.is_nan():
        return True
    if value.is_infinite():
        raise _fail(ValueError, stream_id, value, "infinite values are not allowed")
    return False


def _plain_number(value: Any, stream_id: Any) -> int | float | None:
    """Default mode: an int within int64 stays int, everything else becomes a finite float."""
    _check_number(value, stream_id)
    if isinstance(value, numbers.Integral):
        integer = int(value)
        return integer if INT64_MIN <= integer <= INT64_MAX else _finite_float(integer, stream_id)
    if isinstance(value, decimal.Decimal):
        if _special_decimal(value, stream_id):
            return None
        if INT64_MIN <= value <= INT64_MAX and value == value.to_integral_value():
            return int(value)
    return _finite_float(value, stream_id)


def _check_float_range(exact: decimal.Decimal, value: Any, stream_id: Any) -> None:
    """High accuracy: zero or a magnitude inside the float64 range (module docstring)."""
    as_float = float(exact)  # correctly rounded; never raises for a finite Decimal
    if math.isinf(as_float) or (as_float == 0.0 and not exact.is_zero()):
        raise _fail(ValueError, stream_id, value,
                    "high-accuracy values must be 0 or of a magnitude within the float64 range"
                    " (about 4.9e-324 to 1.8e308)")


def _exact_decimal(value: Any, stream_id: Any) -> decimal.Decimal | None:
    """The Decimal a high-accuracy value stands for, before rounding (None: a null point)."""
    if isinstance(value, numbers.Integral):
        return decimal.Decimal(int(value))
    if isinstance(value, decimal.Decimal):
        return None if _special_decimal(value, stream_id) else value
    if isinstance(value, numbers.Rational):
        numerator = decimal.Decimal(value.numerator)
        return HIGH_ACCURACY.divide(numerator, decimal.Decimal(value.denominator))
    return None


def _exact_text(value: Any, stream_id: Any) -> str | None:
    """High-accuracy mode: the number as Decimal text of at most 64 significant digits.

    Floats keep their shortest repr (at most 17 digits, valid Decimal input), which is also
    what the vectorised bulk path produces, so both paths store identical text.
    """
    _check_number(value, stream_id)
    if isinstance(value, (numbers.Rational, decimal.Decimal)):
        try:
            exact = _exact_decimal(value, stream_id)
            if exact is None:
                return None
            _check_float_range(exact, value, stream_id)
            return str(HIGH_ACCURACY.create_decimal(exact))
        except (ArithmeticError, OverflowError):  # decimal.Overflow, InvalidOperation...
            raise _fail(ValueError, stream_id, value, "number out of the Decimal range") from None
    as_float = _finite_float(value, stream_id)
    return None if as_float is None else repr(as_float)


def _encode_number(value: Any, high_accuracy: bool, stream_id: Any) -> Encoded:
    if high_accuracy:
        text = _exact_text(value, stream_id)
        return NULL if text is None else (KIND_EXACT, None, None, text)
    plain = _plain_number(value, stream_id)
    if plain is None:
        return NULL
    if isinstance(plain, int):
        return (KIND_INT, plain, None, None)
    return (KIND_FLOAT, None, plain, None)


# -- pre-aggregated numeric dicts ------------------------------------------------------------


def _count(value: Any, stream_id: Any, what: str) -> int:
    """A count (``c`` or a frequency): an integral number from 0 to ``MAX_COUNT``."""
    _check_number(value, stream_id)
    plain = _plain_number(value, stream_id)
    if plain is None or plain < 0 or plain != int(plain):
        raise _fail(ValueError, stream_id, value, f"{what} must be a non-negative integer")
    if plain > MAX_COUNT:
        raise _fail(ValueError, stream_id, value,
                    f"{what} must be at most {MAX_COUNT} (2**32 - 1), so that the counts of a"
                    " bucket cannot overflow")
    return int(plain)


def _aggregate_number(value: Any, high_accuracy: bool, stream_id: Any) -> Any:
    """A number inside a pre-aggregated dict as stored in JSON (text in high-accuracy mode)."""
    if value is None:
        return None
    if high_accuracy:
        return _exact_text(value, stream_id)
    return _plain_number(value, stream_id)


def _frequency_key(value: Any, high_accuracy: bool, stream_id: Any) -> str:
    number = _aggregate_number(value, high_accuracy, stream_id)
    if number is None:
        raise _fail(ValueError, stream_id, value, "a frequency key must be a number")
    return number if high_accuracy else canonical_json(number)


def _encode_frequencies(table: Any, high_accuracy: bool, stream_id: Any) -> dict | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise _fail(TypeError, stream_id, table, "frequencies must be a dict number → count")
    result: dict[str, int] = {}
    for key, count in table.items():
        text = _frequency_key(key, high_accuracy, stream_id)
        result[text] = result.get(text, 0) + _count(count, stream_id, "a frequency")
        if result[text] > MAX_COUNT:  # keys that became the same number were merged
            _count(result[text], stream_id, "a frequency")
    return result


def _encode_aggregate(
    value: dict, high_accuracy: bool, value_keys: Iterable[str] | None, stream_id: Any
) -> Encoded:
    """A downsampled value appended by the user: exactly the stream's downsampler keys."""
    expected = set(value_keys or ())
    missing = sorted(map(str, expected - set(value)))
    extra = sorted(map(repr, set(value) - expected))
    if missing or extra:
        reason = "a downsampled value must carry exactly the keys " + repr(sorted(expected))
        if missing:
            reason += f"; missing {', '.join(missing)}"
        if extra:
            reason += f"; unexpected {', '.join(extra)}"
        raise _fail(ValueError, stream_id, value, reason)
    encoded: dict[str, Any] = {}
    for key, item in value.items():
        if key == _COUNT_KEY:
            if item is None and any(other is not None for other in value.values()):
                raise _fail(ValueError, stream_id, value,
                            "a count 'c' of None (an empty bucket) needs every key None")
            encoded[key] = 0 if item is None else _count(item, stream_id, "count 'c'")
        elif key == _FREQUENCIES_KEY:
            encoded[key] = _encode_frequencies(item, high_accuracy, stream_id)
        else:
            encoded[key] = _aggregate_number(item, high_accuracy, stream_id)
    frequencies = encoded.get(_FREQUENCIES_KEY)
    if frequencies is not None and sum(frequencies.values()) != encoded.get(_COUNT_KEY):
        raise _fail(ValueError, stream_id, value,
                    f"the frequencies 'f' count {sum(frequencies.values())} values, the count"
                    f" 'c' {encoded.get(_COUNT_KEY)}: a bucket's frequencies add up to its count")
    text = canonical_json(encoded)
    _check_size(len(text.encode("utf-8")), stream_id)
    return (KIND_AGGREGATE, None, None, text)


# -- JSON values (nominal, graph) ------------------------------------------------------------


def _plain_json(value: Any, stream_id: Any) -> Any:
    """``value`` as pure JSON data (numpy scalars unwrapped); TypeError/ValueError otherwise."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(ValueError, stream_id, value, "NaN and infinity are not JSON values")
        return value
    if isinstance(value, list):
        return [_plain_json(item, stream_id) for item in value]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise _fail(TypeError, stream_id, key, "JSON object keys must be str")
        return {key: _plain_json(item, stream_id) for key, item in value.items()}
    raise _fail(TypeError, stream_id, value, "not a JSON value")


MAX_VALUE_BYTES = 8 * 1024 * 1024
"""Largest canonical JSON of one value (UTF-8): every backend stores it in one write
(MongoDB documents hold 16 MB, an InfluxDB write body 25 MB by default, escaping included), so
a larger value is refused when appended, not left buffered by commits that always fail."""


def _json_encoded(value: Any, stream_id: Any) -> tuple[Any, str]:
    """(pure JSON data, its canonical text) of a nominal or graph value."""
    try:
        plain = _plain_json(value, stream_id)
        text = canonical_json(plain)
        _check_size(len(text.encode("utf-8")), stream_id)
    except RecursionError:
        raise _fail(ValueError, stream_id, value, "value nested too deeply") from None
    except UnicodeEncodeError:
        raise _fail(ValueError, stream_id, value, "strings must be valid Unicode") from None
    return plain, text


def _check_size(size: int, stream_id: Any) -> None:
    if size > MAX_VALUE_BYTES:
        raise ValueError(
            f"stream {stream_id}: a value takes {size} bytes as canonical JSON, over the limit"
            f" of {MAX_VALUE_BYTES} (8 MiB)"
        )


def _encode_nominal(value: Any, stream_id: Any) -> Encoded:
    if value is None:
        return NULL
    return (KIND_JSON, None, None, _json_encoded(value, stream_id)[1])


def _items(graph: dict, key: str, stream_id: Any) -> list[dict]:
    """The vertex or edge list of a graph: a list of dicts."""
    if key not in graph:
        raise _fail(ValueError, stream_id, graph, f"a graph needs the key {key!r}")
    items = graph[key]
    if not isinstance(items, list):
        raise _fail(TypeError, stream_id, items, f"graph {key!r} must be a list")
    for item in items:
        if not isinstance(item, dict):
            raise _fail(TypeError, stream_id, item, f"every item of graph {key!r} must be a dict")
    return items


def _check_graph(graph: dict, stream_id: Any) -> None:
    """Vertices have unique ids under 'i'; edges join existing vertices by 'f' and 't'."""
    ids: set[str] = set()
    for vertex in _items(graph, "v", stream_id):
        if "i" not in vertex:
            raise _fail(ValueError, stream_id, vertex, "a vertex needs an id 'i'")
        vertex_id = canonical_json(vertex["i"])
        if vertex_id in ids:
            raise _fail(ValueError, stream_id, vertex["i"], "duplicate vertex id")
        ids.add(vertex_id)
    for edge in _items(graph, "e", stream_id):
        for end in ("f", "t"):
            if end not in edge:
                raise _fail(ValueError, stream_id, edge, f"an edge needs the key {end!r}")
            if canonical_json(edge[end]) not in ids:
                raise _fail(ValueError, stream_id, edge[end], "edge names an unknown vertex")


def _encode_graph(value: Any, stream_id: Any) -> Encoded:
    if value is None:
        return NULL
    if not isinstance(value, dict):
        raise _fail(TypeError, stream_id, value, "a graph value must be a dict or None")
    plain, text = _json_encoded(value, stream_id)
    _check_graph(plain, stream_id)
    return (KIND_JSON, None, None, text)


# -- encoding --------------------------------------------------------------------------------


def encode_value(
    value: Any,
    value_type: str,
    options: dict | None,
    value_keys: Iterable[str] | None,
    stream_id: Any,
) -> Encoded:
    """Validate one appended value (behaviour §5.1) and return its raw row ``(k, i, f, s)``.

    ``value_keys`` are the stream's value downsampler keys, needed for pre-aggregated dicts.
    """
    if value_type == "numeric":
        if value is None:
            return NULL
        high_accuracy = is_high_accuracy(options)
        if isinstance(value, dict):
            return _encode_aggregate(value, high_accuracy, value_keys, stream_id)
        return _encode_number(value, high_accuracy, stream_id)
    if value_type == "nominal":
        return _encode_nominal(value, stream_id)
    if value_type == "graph":
        return _encode_graph(value, stream_id)
    _check_value_type(value_type)
    raise AssertionError("unreachable: every known value type is handled above")


def _timestamps(timestamps_us: Any) -> np.ndarray:
    array = np.asarray(timestamps_us)
    if array.ndim != 1 or not (array.dtype.kind in "iu" or array.size == 0):
        raise TypeError(f"timestamps must be a 1-d integer array of epoch µs, got {array.dtype}")
    return array.astype(np.int64, copy=False)


def raw_table(timestamps: np.ndarray, kinds: Any, ints: Any, floats: Any, texts: Any
              ) -> pa.Table:
    """RAW_SCHEMA rows of already encoded columns."""
    return pa.Table.from_arrays(
        [
            arrow_numpy.from_numpy(np.asarray(timestamps, np.int64)),
            arrow_numpy.from_numpy(np.asarray(kinds, np.int8)),
            ints,
            floats,
            texts,
        ],
        schema=raw_schema(),
    )


def encode_table(timestamps_us: np.ndarray, encoded: Sequence[Encoded]) -> pa.Table:
    """RAW_SCHEMA rows from timestamps and the tuples of :func:`encode_value`."""
    timestamps = _timestamps(timestamps_us)
    if len(timestamps) != len(encoded):
        raise ValueError(f"{len(timestamps)} timestamps for {len(encoded)} values")
    if not len(encoded):
        return arrow_numpy.empty_table(raw_schema())
    kinds, ints, floats, texts = zip(*encoded)
    count = len(kinds)
    text_column = (null_array(pa.string(), count) if texts.count(None) == count
                   else arrow_numpy.texts(texts))
    return raw_table(timestamps, kinds, _numbers(ints, np.int64), _numbers(floats, np.float64),
                  text_column)


def _numbers(items: tuple, dtype: type) -> pa.Array:
    """An Arrow column of Python numbers within ``dtype`` and Nones (nulls), built by numpy:
    ``pa.array`` of Python values would import pandas on its first use."""
    mask = np.fromiter((item is None for item in items), bool, len(items))
    values = np.array([0 if item is None else item for item in items], dtype)
    return arrow_numpy.from_numpy(values, mask=mask)


def slot(encoded: Encoded) -> Any:
    """What a buffer keeps of one encoded value: a plain float (kind 2) or int (kind 1) is
    kept as itself, anything else as its tuple (see :func:`encode_slots`)."""
    kind = encoded[0]
    if kind == KIND_FLOAT:
        return encoded[2]
    if kind == KIND_INT:
        return encoded[1]
    return encoded


def _slot_encoded(item: Any) -> Encoded:
    kind = type(item)
    if kind is float:
        return (KIND_FLOAT, None, item, None)
    if kind is int:
        return (KIND_INT, item, None, None)
    return item


def encode_slots(timestamps_us: Sequence[int], slots: Sequence[Any]) -> pa.Table:
    """RAW_SCHEMA rows of buffered single appends, in order. A slot is a finite ``float``
    (kind 2), an ``int`` within int64 (kind 1), both already validated, or the tuple of
    :func:`encode_value`. Columns of plain floats or plain ints are built without a per-point
    Python step."""
    count = len(slots)
    if len(timestamps_us) != count:
        raise ValueError(f"{len(timestamps_us)} timestamps for {count} values")
    if not count:
        return arrow_numpy.empty_table(raw_schema())
    timestamps = np.array(timestamps_us, dtype=np.int64)
    kinds = set(map(type, slots))
    if len(kinds) == 1:
        (kind,) = kinds
        if kind is float:
            floats = arrow_numpy.from_numpy(np.array(slots, dtype=np.float64))
            return raw_table(timestamps, np.full(count, KIND_FLOAT, np.int8),
                          null_array(pa.int64(), count), floats, null_array(pa.string(), count))
        if kind is int:
            ints = arrow_numpy.from_numpy(np.array(slots, dtype=np.int64))
            return raw_table(timestamps, np.full(count, KIND_INT, np.int8),
                          ints, null_array(pa.float64(), count), null_array(pa.string(), count))
    return encode_table(timestamps, [_slot_encoded(item) for item in slots])


def _numeric_array(values: Any, stream_id: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(numbers, null mask) of a numeric numpy/Arrow array; None when it needs the slow path."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        kind = values.type
        if pa.types.is_boolean(kind):
            raise _fail(TypeError, stream_id, values[:3].to_pylist(), "bool is not a numeric value")
        if pa.types.is_null(kind):
            return np.zeros(len(values)), np.ones(len(values), dtype=bool)
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            return None
        nulls = values.is_null().to_numpy(zero_copy_only=False)
        return pc.fill_null(values, 0).to_numpy(zero_copy_only=False), nulls
    array = np.asarray(values)
    if array.ndim != 1:
        raise _fail(ValueError, stream_id, array.shape, "values must be a 1-d array")
    if array.dtype.kind == "b":
        raise _fail(TypeError, stream_id, array[:3].tolist(), "bool is not a numeric value")
    if array.dtype.kind == "O":
        return None
    if not isinstance(values, np.ndarray) and any(
            isinstance(item, (bool, np.bool_)) for item in values):
        return None  # numpy made [7, True] ints: each item is validated, and True refused
    if array.dtype.kind not in "iuf":
        sample = array[:3].tolist()
        raise _fail(TypeError, stream_id, sample, f"unsupported value dtype {array.dtype}")
    return array, np.zeros(len(array), dtype=bool)


def _encode_int_array(
    timestamps: np.ndarray, array: np.ndarray, nulls: np.ndarray, high_accuracy: bool
) -> pa.Table:
    count = len(array)
    if high_accuracy:
        texts = pa.array(array.astype(str), mask=nulls, type=pa.string())
        kinds = np.where(nulls, KIND_NULL, KIND_EXACT)
        return raw_table(timestamps, kinds, null_array(pa.int64(), count), pa.nulls(count), texts)
    big = array > INT64_MAX if array.dtype.kind == "u" else np.zeros(count, dtype=bool)
    kinds = np.where(nulls, KIND_NULL, np.where(big, KIND_FLOAT, KIND_INT))
    if big.any():
        ints = arrow_numpy.from_numpy(np.where(big, 0, array).astype(np.int64), mask=nulls | big)
        floats = arrow_numpy.from_numpy(array.astype(np.float64), mask=~big)
    else:  # the usual case: every value fits int64, and the float column holds nulls only
        ints = arrow_numpy.from_numpy(array.astype(np.int64), mask=nulls)
        floats = null_array(pa.float64(), count)
    return raw_table(timestamps, kinds, ints, floats, null_array(pa.string(), count))


def _encode_float_array(
    timestamps: np.ndarray,
    array: np.ndarray,
    nulls: np.ndarray,
    high_accuracy: bool,
    stream_id: Any,
) -> pa.Table:
    array = np.array(array, dtype=np.float64)  # a copy: kept rows never share the caller's memory
    if not np.isfinite(array).all():  # one pass for the usual case: every value finite
        infinite = np.isinf(array) & ~nulls
        if infinite.any():
            bad = array[np.flatnonzero(infinite)[0]]
            raise _fail(ValueError, stream_id, float(bad), "infinite values are not allowed")
        nulls = nulls | np.isnan(array)
    count = len(array)
    kind = KIND_EXACT if high_accuracy else KIND_FLOAT
    if nulls.any():
        kinds = np.where(nulls, KIND_NULL, kind)
    else:
        kinds, nulls = np.full(count, kind, np.int8), None
    no_ints = null_array(pa.int64(), count)
    if high_accuracy:
        texts = pa.array(array.astype(str), mask=nulls, type=pa.string())
        return raw_table(timestamps, kinds, no_ints, pa.nulls(count), texts)
    floats = arrow_numpy.from_numpy(array, mask=nulls)
    return raw_table(timestamps, kinds, no_ints, floats, null_array(pa.string(), count))


def _columnar(values: Any) -> Any:
    """A polars Series, or a pandas column of an extension type (nullable ``Int64``,
    ``Float64``, Arrow-backed), as Arrow: their numpy conversion turns nullable integers into
    floats, rounding those past 2**53. Anything else is returned as it is."""
    module = type(values).__module__
    if module.startswith("polars"):
        to_arrow = getattr(values, "to_arrow", None)
        return to_arrow() if callable(to_arrow) else values
    if module.startswith("pandas") and not isinstance(getattr(values, "dtype", None),
                                                      np.dtype):
        return pa.array(values)
    return values


def _single_kind(values: Any) -> Any:
    """A union column whose rows all hold one kind is that kind's plain array, so the rows of
    one stream in a table mixing integer, float and text streams (the HTTP service's line
    protocol batches) take the vectorised path. Anything else is returned as it is."""
    if isinstance(values, pa.ChunkedArray) and pa.types.is_union(values.type):
        values = values.combine_chunks()
    if not isinstance(values, pa.UnionArray) or not len(values):
        return values
    codes = values.type_codes.to_numpy(zero_copy_only=False)
    if np.any(codes != codes[0]):
        return values
    child = list(values.type.type_codes).index(int(codes[0]))
    if values.type.mode == "sparse":
        return values.field(child)
    return values.field(child).take(values.offsets)


def plain_numbers(values: Any) -> pa.Array | None:
    """A value column of plain integers or floats, as one Arrow array (a union whose rows are
    all of one such kind included); None for anything else (text, objects, booleans)."""
    values = _single_kind(values)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        return None
    kind = values.type
    return values if pa.types.is_integer(kind) or pa.types.is_floating(kind) else None


def _as_list(values: Any) -> list:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values.to_pylist()
    if isinstance(values, np.ndarray):
        return values.tolist() if values.dtype.kind != "O" else list(values)
    return list(values)


def encode_arrays(
    timestamps_us: np.ndarray,
    values: np.ndarray | pa.Array | pa.ChunkedArray,
    value_type: str,
    options: dict | None,
    stream_id: Any,
    value_keys: Iterable[str] | None = None,
) -> pa.Table:
    """The bulk path (behaviour §4.4): numeric numpy/Arrow arrays are encoded without a per-point
    Python loop (ints → kind 1, floats → kind 2, NaN → null, ±inf → ValueError); object arrays
    and non-numeric types go through :func:`encode_value` one by one."""
    timestamps = _timestamps(timestamps_us)
    _check_value_type(value_type)
    values = _single_kind(_columnar(values))
    numeric = _numeric_array(values, stream_id) if value_type == "numeric" else None
    if numeric is None:
        items = _as_list(values)
        if len(items) != len(timestamps):
            raise ValueError(
                f"stream {stream_id}: {len(timestamps)} timestamps, {len(items)} values"
            )
        encoded = [encode_value(v, value_type, options, value_keys, stream_id) for v in items]
        return encode_table(timestamps, encoded)
    array, nulls = numeric
    if len(array) != len(timestamps):
        raise ValueError(f"stream {stream_id}: {len(timestamps)} timestamps, {len(array)} values")
    high_accuracy = is_high_accuracy(options)
    if array.dtype.kind in "iu":
        return _encode_int_array(timestamps, array, nulls, high_accuracy)
    return _encode_float_array(timestamps, array, nulls, high_accuracy, stream_id)


# -- decoding --------------------------------------------------------------------------------


def _decode_exact(text: str, high_accuracy: bool) -> Any:
    exact = decimal.Decimal(text)
    return exact if high_accuracy else _plain_number(exact, None)


def _decode_aggregate_number(value: Any, high_accuracy: bool) -> Any:
    if value is None:
        return None
    return decimal.Decimal(value) if high_accuracy else value


def _decode_aggregate(text: str, high_accuracy: bool) -> dict:
    """A pre-aggregated dict: numbers (Decimal in high accuracy), ``c`` and counts as int."""
    result = {}
    for key, item in json.loads(text).items():
        if key == _FREQUENCIES_KEY and item is not None:
            read_key = decimal.Decimal if high_accuracy else json.loads
            result[key] = {read_key(number): count for number, count in item.items()}
        elif key == _COUNT_KEY:
            result[key] = item
        else:
            result[key] = _decode_aggregate_number(item, high_accuracy)
    return result


def _decode_one(kind: int, integer: Any, real: Any, text: Any, high_accuracy: bool) -> Any:
    if kind == KIND_NULL:
        return None
    if kind == KIND_INT:
        return decimal.Decimal(integer) if high_accuracy else integer
    if kind == KIND_FLOAT:
        return decimal.Decimal(repr(real)) if high_accuracy else real
    if kind == KIND_EXACT:
        return _decode_exact(text, high_accuracy)
    if kind == KIND_JSON:
        return json.loads(text)
    if kind == KIND_AGGREGATE:
        return _decode_aggregate(text, high_accuracy)
    raise ValueError(f"unknown raw value kind {kind}")


def decode_value(encoded: Encoded, value_type: str, options: dict | None) -> Any:
    """The Python value of one :func:`encode_value` tuple (what a single append returns)."""
    high_accuracy = value_type == "numeric" and is_high_accuracy(options)
    return _decode_one(*encoded, high_accuracy)


def decode_values(table: pa.Table, value_type: str, options: dict | None) -> list:
    """Python values of RAW_SCHEMA rows, as they were appended (behaviour §5.1 round trip)."""
    high_accuracy = value_type == "numeric" and is_high_accuracy(options)
    kinds = kinds_of(table)
    if not len(kinds):
        return []
    if not high_accuracy and (kinds == KIND_FLOAT).all():
        return _python_list(table.column("f"))
    if not high_accuracy and (kinds == KIND_INT).all():
        return _python_list(table.column("i"))
    columns = zip(
        kinds.tolist(),
        table.column("i").to_pylist(),
        table.column("f").to_pylist(),
        table.column("s").to_pylist(),
    )
    return [_decode_one(k, i, f, s, high_accuracy) for k, i, f, s in columns]


def kinds_of(table: pa.Table) -> np.ndarray:
    """The ``k`` column of raw rows as int8 (null: ``KIND_NULL``), the kernels' input type."""
    return arrow_numpy.to_numpy(table.column("k"), KIND_NULL).astype(np.int8, copy=False)


def _python_list(column: pa.ChunkedArray) -> list:
    """Python ints or floats of a numeric column (None for nulls); through numpy, which makes
    them several times faster than Arrow scalars, when there is no null."""
    if column.null_count:
        return column.to_pylist()
    return arrow_numpy.to_numpy(column).tolist()
