"""The body of ``POST /api/v1/stream/<id>/datapoints``: a JSON list of ``{"t": ..., "v": ...}``.

``t`` is an ISO 8601 string (naive means UTC) or UNIX seconds (a number, fractions allowed);
``v`` is the value as ``append`` takes it (a number or null; any JSON value for nominal and
graph streams). The usual body, numbers throughout, is converted by Arrow as whole columns:
``pyarrow.array`` infers one struct column from the parsed list, then times and values are
cast column-wise. Bodies Arrow cannot type as one struct (values of mixed JSON types, objects)
are checked item by item, which also finds the index named in a 400.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pyarrow as pa

from ..cli.bad_input import BadInput, Positions
from ..cli.columns import iso_to_us
from ..granularity import MAX_US, MIN_US
from ..units import INT64_MAX, INT64_MIN, US_PER_SECOND
from .errors import ApiError


class _Items(Positions):
    def __init__(self, indices: np.ndarray | None = None) -> None:
        super().__init__("body")
        self.indices = indices

    def describe(self, row: int) -> str:
        return f"item {int(self.indices[row]) if self.indices is not None else row}"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _load(body: bytes) -> list[Any]:
    try:
        items = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:
        raise ApiError(400, f"the body is not valid JSON: {error}") from None
    if not isinstance(items, list):
        raise ApiError(400, 'the body must be a JSON list of {"t": time, "v": value} objects')
    return items


def _seconds_us(seconds: np.ndarray, indices: np.ndarray) -> np.ndarray:
    if seconds.dtype.kind in "iu":
        low, high = -(-MIN_US // US_PER_SECOND), MAX_US // US_PER_SECOND
        bad = (seconds < low) | (seconds > high)
        result = seconds.astype(np.int64) * US_PER_SECOND if not bad.any() else None
    else:
        scaled = seconds * US_PER_SECOND  # float64 times an exact float64: as * 1e6
        bad = ~np.isfinite(scaled) | (scaled < MIN_US) | (scaled > MAX_US)
        result = np.rint(scaled).astype(np.int64) if not bad.any() else None
    if result is None:
        row = int(np.argmax(bad))
        raise ApiError(400, f"item {int(indices[row])}: 't' {seconds[row]} is outside "
                            "1677-09-22..2262-04-11")
    return result


def _times(column: pa.Array, indices: np.ndarray) -> np.ndarray:
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        try:
            return iso_to_us(column, "t", _Items(indices))
        except BadInput as error:
            raise ApiError(400, f"{error.where}: 't' {error.problem}") from None
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        return _seconds_us(column.to_numpy(zero_copy_only=False), indices)
    raise ApiError(400, f"item {int(indices[0])}: 't' must be an ISO 8601 string or UNIX "
                        "seconds")


def _columnar(items: list[Any]) -> tuple[np.ndarray, Any] | None:
    """(µs, values) for a body Arrow types as {t: text or number, v: number or null}."""
    try:
        array = pa.array(items)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return None
    kind = array.type
    if not pa.types.is_struct(kind) or sorted(kind.names) != ["t", "v"]:
        return None
    times, values = array.field("t"), array.field("v")
    numeric = (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)
               or pa.types.is_null(values.type))
    if array.null_count or times.null_count or not numeric:
        return None
    if values.null_count:  # Arrow reads a missing "v" as null: look at those items only
        nulls = np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))
        if not all("v" in items[row] for row in nulls.tolist()):
            return None
    t_us = _times(times, np.arange(len(items)))
    if pa.types.is_floating(values.type):
        values = values.cast(pa.float64())  # null stays null: a null point
    return t_us, values


def _item(index: int, item: Any) -> tuple[Any, Any]:
    if not isinstance(item, dict):
        raise ApiError(400, f'item {index}: expected an object {{"t": time, "v": value}}')
    unknown = sorted(set(item) - {"t", "v"})
    if unknown:
        raise ApiError(400, f"item {index}: unknown key {unknown[0]!r} (only 't' and 'v')")
    if "t" not in item or "v" not in item:
        missing = "t" if "t" not in item else "v"
        raise ApiError(400, f"item {index}: no {missing!r}")
    t = item["t"]
    number = isinstance(t, int | float) and not isinstance(t, bool)
    if not (isinstance(t, str) or number) or (isinstance(t, float) and not math.isfinite(t)):
        raise ApiError(400, f"item {index}: 't' must be an ISO 8601 string or UNIX seconds")
    return t, item["v"]


def _objects(values: list[Any]) -> np.ndarray:
    """A 1-d object array (numpy would make nested lists a 2-d one)."""
    array = np.empty(len(values), dtype=object)
    for index, value in enumerate(values):
        array[index] = value
    return array


def _itemwise(items: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [_item(index, item) for index, item in enumerate(items)]
    times = [t for t, _ in pairs]
    text = np.array([isinstance(t, str) for t in times], dtype=bool)
    t_us = np.empty(len(times), dtype=np.int64)
    if text.any():
        rows = np.flatnonzero(text)
        t_us[rows] = _times(pa.array([times[row] for row in rows.tolist()], pa.string()), rows)
    if not text.all():
        rows = np.flatnonzero(~text)
        numbers = [times[row] for row in rows.tolist()]
        exact = all(isinstance(t, int) for t in numbers) and all(
            INT64_MIN <= t <= INT64_MAX for t in numbers)
        seconds = np.array(numbers, dtype=np.int64 if exact else np.float64)
        t_us[rows] = _seconds_us(seconds, rows)
    return t_us, _objects([value for _, value in pairs])


def parse_datapoints(body: bytes) -> tuple[np.ndarray, Any]:
    """(timestamps as µs, values as an Arrow array or a list); 400 naming the bad item."""
    items = _load(body)
    if not items:
        return np.zeros(0, dtype=np.int64), pa.array([], pa.float64())
    # Arrow types [1.5, true] as doubles (true -> 1.0): a body holding a JSON boolean anywhere
    # (a rare thing, looked for in the bytes) is checked item by item, which refuses one
    columnar = None if b"true" in body or b"false" in body else _columnar(items)
    return columnar if columnar is not None else _itemwise(items)


def is_json_type(content_type: str | None) -> bool:
    if not content_type:
        return True
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")

