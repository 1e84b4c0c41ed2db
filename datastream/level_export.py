"""Finalized columns exported: Python values (behaviour §5.4) or Arrow arrays (behaviour §6.3).

Finalize rules yield float arrays (NaN = None), int arrays or lists; this is the one place that
turns them into what callers see.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .lazy import pa


@functools.cache
def utc_micros() -> pa.DataType:
    """Arrow's UTC microsecond timestamp type (``UTC_MICROS``), made on first use: pyarrow is
    imported on first use too (see datastream.lazy)."""
    return pa.timestamp("us", tz="UTC")


def __getattr__(name: str) -> Any:
    if name == "UTC_MICROS":
        return utc_micros()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def float_array(values: np.ndarray) -> pa.Array:
    """Arrow float64 with NaN as null (zero-copy when nothing is NaN)."""
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    return pa.array(values, mask=missing) if missing.any() else pa.array(values)


def python_column(column: np.ndarray | list) -> list:
    if isinstance(column, np.ndarray) and column.dtype.kind == "f":
        return [None if math.isnan(v) else v for v in column.tolist()]
    return column.tolist() if isinstance(column, np.ndarray) else list(column)


def arrow_column(column: np.ndarray | list) -> pa.Array:
    """Floats (null for NaN), int64 counts, or values as text (exact decimals, canonical JSON)."""
    if isinstance(column, np.ndarray):
        if column.dtype.kind == "f":
            return float_array(column)
        return pa.array(column, pa.int64())
    return pa.array([None if v is None else str(v) for v in column], pa.string())


def frequency_map(column: list) -> pa.Array:
    """Frequency tables as ``map<string, int64>`` keyed by canonical JSON."""
    return pa.array([None if t is None else sorted(t.items()) for t in column],
                    pa.map_(pa.string(), pa.int64()))


def time_column(result: np.ndarray, is_time: bool) -> pa.Array:
    """A time downsampler's result: UTC timestamps (``is_time``) or float seconds."""
    return pa.array(result).cast(utc_micros()) if is_time else float_array(result)
