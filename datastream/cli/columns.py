"""Vectorised conversion of input columns to epoch microseconds and numbers.

Every check runs over whole Arrow/numpy columns. When a conversion fails, the first offending
row is found by bisection over prefixes (a logarithmic number of vectorised casts), so that
the message can name its line without a per-row loop on the normal path.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..casting import first_failure
from ..granularity import MAX_US, MIN_US
from ..units import US_PER_SECOND
from .bad_input import BadInput, Positions

UNITS = {"s": US_PER_SECOND, "ms": 1_000, "us": 1, "ns": None}  # µs per unit (None: ns, divided)
_ZONE = r"\d\d:\d\d(:\d\d(\.\d*)?)?\s*(Z|z|[+-]\d\d(:?\d\d)?)$"  # an offset after a time
_SPAN = "1677-09-22..2262-04-11"


def _show(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def flat(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


def _reject_nulls(array: pa.Array, name: str, positions: Positions, what: str) -> None:
    if array.null_count:
        row = int(np.flatnonzero(pc.is_null(array).to_numpy(zero_copy_only=False))[0])
        raise BadInput(positions.describe(row), f"missing {what}", name)


def _strict_cast(array: pa.Array, target: pa.DataType, name: str, positions: Positions,
                 problem: str) -> pa.Array:
    try:
        return pc.cast(array, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        row = first_failure(array, lambda part: pc.cast(part, target))
        raise BadInput(positions.describe(row), f"{_show(array[row].as_py())} {problem}",
                       name) from None


def epochs_to_us(epochs: np.ndarray, unit: str | None, name: str, positions: Positions,
                  source: pa.Array) -> np.ndarray:
    if unit is None:
        raise BadInput(positions.describe(0),
                       f"integer epoch {source[0].as_py()} needs --unit (s, ms, us or ns): "
                       "integer timestamps are never guessed", name)
    per_unit = UNITS[unit]
    if per_unit is None:
        return np.floor_divide(epochs, 1000)  # sub-µs precision is floored, as append_arrays
    low, high = -(-MIN_US // per_unit), MAX_US // per_unit
    outside = (epochs < low) | (epochs > high)
    if outside.any():
        row = int(np.argmax(outside))
        raise BadInput(positions.describe(row),
                       f"{epochs[row]} {unit} is outside {_SPAN}", name)
    return epochs * per_unit


def iso_to_us(strings: pa.Array, name: str, positions: Positions) -> np.ndarray:
    """ISO-8601 text; naive is UTC, offsets are converted. Parsed at ns, floored to µs."""
    aware = pc.match_substring_regex(strings, _ZONE).to_numpy(zero_copy_only=False)
    result = np.empty(len(strings), dtype=np.int64)
    problem = f"is not an ISO-8601 timestamp within {_SPAN}"
    for mask, target in ((aware, pa.timestamp("ns", "UTC")), (~aware, pa.timestamp("ns"))):
        rows = np.flatnonzero(mask)
        if not len(rows):
            continue
        part = strings.take(pa.array(rows))
        try:
            parsed = pc.cast(part, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            index = first_failure(part, lambda piece, target=target: pc.cast(piece, target))
            row = int(rows[index])
            raise BadInput(positions.describe(row), f"{_show(strings[row].as_py())} {problem}",
                           name) from None
        ns = parsed.cast(pa.int64()).to_numpy(zero_copy_only=False)
        result[rows] = np.floor_divide(ns, 1000)
    return result


def timestamps_us(column: pa.Array | pa.ChunkedArray, unit: str | None, name: str,
                  positions: Positions) -> np.ndarray:
    """Epoch microseconds of a timestamp column: Arrow timestamps, integer epochs with ``unit``
    (without it: an error, never a guess) or ISO-8601 strings (integers written as text count
    as integers)."""
    array = flat(column)
    if not len(array):  # an empty file (a header only): no rows, whatever the column's type
        return np.empty(0, np.int64)
    _reject_nulls(array, name, positions, "timestamp")
    kind = array.type
    if pa.types.is_dictionary(kind):
        array, kind = array.dictionary_decode(), kind.value_type
    if pa.types.is_timestamp(kind):
        epochs = array.cast(pa.int64()).to_numpy(zero_copy_only=False)
        return epochs_to_us(epochs, kind.unit, name, positions, array)
    if pa.types.is_date(kind):
        days = array.cast(pa.date32()).cast(pa.int32()).to_numpy(zero_copy_only=False)
        return days.astype(np.int64) * 86_400_000_000
    if pa.types.is_integer(kind):
        epochs = _strict_cast(array, pa.int64(), name, positions, "is outside int64")
        return epochs_to_us(epochs.to_numpy(zero_copy_only=False), unit, name, positions,
                             array)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            epochs = pc.cast(array, pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return iso_to_us(array, name, positions)  # ``unit`` is for integers only
        return epochs_to_us(epochs.to_numpy(zero_copy_only=False), unit, name, positions,
                             array)
    raise BadInput(positions.describe(0),
                   f"{_show(array[0].as_py())} is not a timestamp (use ISO-8601 text, integer "
                   "epochs with --unit, or a timestamp column)", name)


def _check_finite(values: np.ndarray, name: str, positions: Positions) -> np.ndarray:
    infinite = np.isinf(values)
    if infinite.any():
        row = int(np.argmax(infinite))
        raise BadInput(positions.describe(row), f"{values[row]} is not a finite number", name)
    return values


def numbers(column: pa.Array | pa.ChunkedArray, name: str, positions: Positions) -> np.ndarray:
    """The values as int64 (integers without nulls) or float64 (NaN = null point)."""
    array = flat(column)
    kind = array.type
    if pa.types.is_dictionary(kind):
        array, kind = array.dictionary_decode(), kind.value_type
    if pa.types.is_null(kind):
        return np.full(len(array), np.nan)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            array = pc.cast(array, pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            array = _strict_cast(array, pa.float64(), name, positions, "is not a number")
        kind = array.type
    if pa.types.is_signed_integer(kind) or (
        pa.types.is_unsigned_integer(kind) and kind.bit_width < 64
    ):
        if array.null_count:
            return array.cast(pa.float64()).to_numpy(zero_copy_only=False)
        return array.cast(pa.int64()).to_numpy(zero_copy_only=False)
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind) or pa.types.is_integer(kind):
        floats = array.cast(pa.float64()).to_numpy(zero_copy_only=False)
        return _check_finite(floats, name, positions)
    row = int(np.argmax(pc.is_valid(array).to_numpy(zero_copy_only=False)))
    raise BadInput(positions.describe(row), f"{_show(array[row].as_py())} is not a number", name)
