"""The bulk append's usual case, prepared in one pass.

Most bulk appends are a column of int64 epoch microseconds (or ``datetime64[us]``) and a column
of finite float64 values for a plain numeric stream. For those, copying the columns (buffered
rows never share the caller's memory) and every check (the supported span, order, finiteness)
run in one kernel pass (:func:`datastream.kernels.intake.copy_checked`). Anything else, or
anything that fails a check, returns None: the general path then redoes the call, so its
messages stay the only ones.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from . import arrow_numpy, timestamps
from .kernels import intake
from .lazy import pa
from .null_columns import null_array
from .raw_kinds import KIND_FLOAT
from .values import raw_table

SMALL_ROWS = 4096  # as the codec's NUMPY_BELOW


class Prepared(NamedTuple):
    """Buffer-ready raw rows and what the append checks next."""

    table: pa.Table
    first: int
    earliest: int
    latest: int
    fall: int  # position of the first timestamp below its predecessor, 0 when none


def prepare(times: Any, unit: str | None, values: Any) -> Prepared | None:
    """The raw rows of ``times`` and ``values`` when they are the usual case, else None."""
    ticks = _microseconds(times, unit)
    if ticks is None or not isinstance(values, np.ndarray) or values.dtype != np.float64:
        return None
    if values.ndim != 1 or len(values) != len(ticks) or not len(ticks):
        return None
    t = np.empty(len(ticks), np.int64)
    x = np.empty(len(ticks), np.float64)
    low, high, fall, not_finite = _copy_checked(len(t))(ticks, values, t, x)
    if not_finite or not timestamps.us_supported(low, high):
        return None
    rows = len(t)
    table = raw_table(t, np.full(rows, KIND_FLOAT, np.int8), null_array(pa.int64(), rows),
                      arrow_numpy.from_numpy(x), null_array(pa.string(), rows))
    return Prepared(table, int(t[0]), low, high, fall)


def _copy_checked(rows: int) -> Callable[..., tuple[int, int, int, int]]:
    """The kernel, or for few rows while numba is not loaded its twin: a script appending a
    few points never imports numba (the chunk codec chooses the same way)."""
    if rows < SMALL_ROWS and "numba" not in sys.modules:
        return intake.copy_checked_numpy
    return intake.copy_checked


def _microseconds(times: Any, unit: str | None) -> np.ndarray | None:
    """``times`` as int64 µs without a copy, when they already are that; else None."""
    if not isinstance(times, np.ndarray) or times.ndim != 1:
        return None
    if times.dtype == np.int64 and unit == "us":
        return times
    if unit is None and times.dtype == np.dtype("datetime64[us]"):
        return times.view(np.int64)  # NaT is the lowest int64: out of the span, so refused
    return None
