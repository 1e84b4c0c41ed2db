"""A columnar pass in front of the bucket-by-bucket comparison, for float-valued streams.

Comparing a level bucket by bucket builds, per bucket and label, an expectation object, a
datapoint dict and a datetime: ~30 µs of Python per raw point, so ``verify()`` of a million
points took half a minute. For numeric streams that are not high-accuracy and store no
frequency-table downsampler, this module runs the same comparisons over whole columns:

* the expected values come from the same SQL facts (``sql_oracle``) through the same
  arithmetic as ``expectations`` (Python floats, and Python integers for the exact time facts:
  the time mean rounded half to even, the interval variance as an exact ratio), one tuple per
  bucket instead of a dict of objects per bucket;
* the stored values are the finalized columns a reader gets (``downsamplers`` rules);
* agreement follows ``agreement`` rule for rule: counts exactly, floats within
  ``RELATIVE`` or ``ROUNDING`` × scale (non-finite ones only when equal), the time mean within
  1 µs, the first and last time exactly, None only against None.

A range whose every bucket agrees needs nothing more. Anything else (a disagreement, a bucket
a reader does not get, a column of an unexpected type) is handed back to the bucket-by-bucket
comparison, which decides and reports; so this pass can only save time, never change a result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .. import downsamplers
from ..units import US_PER_SECOND
from . import expectations
from .agreement import RELATIVE, ROUNDING, tolerance_scale
from .expectations import BucketOracle
from .sql_oracle import FloatValues, TimeFacts

VALUE_LABELS = ("count", "sum", "sum_squares", "min", "max", "mean", "std_dev", "median")
_FLOAT_VALUES = expectations.FLOAT_LABELS
_INTERVALS = tuple(label.removeprefix("time_") for label in expectations.INTERVAL_LABELS)
_FLOAT_LABELS = _FLOAT_VALUES + _INTERVALS
_TIMES = ("mean", "first", "last")
_COLUMNS = 1 + 2 * len(_FLOAT_LABELS) + len(_TIMES)  # of a bucket's tuple (``_bucket``)
_EMPTY_FLOATS = FloatValues(0, None, None, None, None, None)


def supported(meta: dict[str, Any]) -> bool:
    """Whether a stream's buckets can be compared here (else bucket by bucket only)."""
    options = meta.get("value_type_options") or {}
    return (meta.get("value_type") == "numeric" and not options.get("high_accuracy")
            and set(meta.get("value_downsamplers") or ()) <= set(VALUE_LABELS))


class _Expected:
    """Expected values of one width's buckets holding points, in bucket order: ``starts``,
    then per label a float column (NaN where None), its None mask and the scale of its
    tolerance; ``count`` and the three timestamps as int64."""

    def __init__(self, starts: list[int], rows: list[tuple]) -> None:
        self.starts = np.array(starts, np.int64)
        columns = list(zip(*rows, strict=True)) if rows else [()] * _COLUMNS
        self.count = np.array(columns[0], np.int64)
        self.floats: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for n, label in enumerate(_FLOAT_LABELS):
            values, scales = columns[1 + 2 * n], columns[2 + 2 * n]
            missing = np.array([v is None for v in values], bool)
            self.floats[label] = (
                np.array([math.nan if v is None else v for v in values], np.float64),
                missing, np.array(scales, np.float64))
        first_time = 1 + 2 * len(_FLOAT_LABELS)
        self.times = {name: np.array(columns[first_time + n], np.int64)
                      for n, name in enumerate(_TIMES)}


class WindowFacts:
    """The oracle's facts of one raw window as columns per width, and the check of a level
    range against them."""

    def __init__(self, oracle: BucketOracle, widths: Sequence[int]) -> None:
        sql = oracle.sql
        times = sql.times(widths)
        floats = sql.float_values(widths)
        medians = sql.medians(widths) if "median" in oracle.names else {}
        by_width: dict[int, list[tuple[int, tuple]]] = {width: [] for width in widths}
        for (width, b), fact in times.items():
            values = floats.get((width, b), _EMPTY_FLOATS)
            by_width[width].append(
                (b, _bucket(fact, values, medians.get((width, b)), width, b)))
        self.expected = {}
        for width, buckets in by_width.items():
            buckets.sort(key=_start)
            self.expected[width] = _Expected([b for b, _ in buckets],
                                             [row for _, row in buckets])
        self.names = oracle.names

    def agrees(self, rows: pa.Table, meta: dict[str, Any], width: int, lo: int, hi: int
               ) -> bool:
        """Whether every bucket of ``[lo, hi)`` as a reader sees it (``rows``: stored rows
        and generated empty ones) certainly agrees; False means "compare bucket by bucket"."""
        expected = self.expected[width]
        first, last = np.searchsorted(expected.starts, [lo, hi])
        wanted = expected.starts[first:last]
        starts = np.asarray(rows.column("t").to_numpy(), dtype=np.int64)
        if starts.size > 1 and not (starts[1:] > starts[:-1]).all():
            return False
        at = np.minimum(np.searchsorted(wanted, starts), max(wanted.size - 1, 0))
        known = wanted[at] == starts if wanted.size else np.zeros(starts.size, bool)
        if int(known.sum()) != wanted.size:  # a bucket with points that a reader lacks
            return False
        # rows of the width's columns (kept in range: they are only used where ``known``)
        at = np.minimum(at + first, max(expected.starts.size - 1, 0))
        view = downsamplers.Rows(rows, "numeric", meta.get("value_type_options"), width)
        for name in meta["value_downsamplers"]:
            stored = downsamplers.VALUE_DECLARATIONS[name].finalize(view)
            if not isinstance(stored, np.ndarray):
                return False
            if name == "count":
                want = _taken(expected.count, known, at, 0)
                if stored.dtype.kind != "i" or not (stored == want).all():
                    return False
            elif not _floats_agree(stored, known, at, expected.floats[name]):
                return False
        middles = starts + (width // US_PER_SECOND // 2) * US_PER_SECOND
        for declaration in downsamplers.TIME_DECLARATIONS.values():
            stored = declaration.finalize(view)
            if not isinstance(stored, np.ndarray):
                return False
            if declaration.is_time:
                want = _taken(expected.times[declaration.name], known, at, middles)
                slack = 1 if declaration.name == "mean" else 0
                if stored.dtype.kind != "i" or not (np.abs(stored - want) <= slack).all():
                    return False
            elif not _floats_agree(stored, known, at, expected.floats[declaration.name]):
                return False
        return True


def _taken(column: np.ndarray, known: np.ndarray, at: np.ndarray, fill) -> np.ndarray:
    """Per reader row: the expected value where the bucket has points, else ``fill``."""
    if not column.size:  # no bucket of this width has points: nothing to take
        return np.broadcast_to(np.asarray(fill, column.dtype), known.shape)
    return np.where(known, column[at], fill)


def _start(bucket: tuple[int, tuple]) -> int:
    return bucket[0]


def _bucket(fact: TimeFacts, v: FloatValues, median: float | None, width: int, b: int
            ) -> tuple:
    """One bucket's expectations as ``expectations`` computes them: count, then (value,
    scale) per float label, then the time mean, first and last in µs."""
    values: list = [v.c]
    floats = (expectations.float_values(v, median) if v.c
              else [(None, 0.0)] * len(_FLOAT_VALUES))
    for value, scale in [*floats, *expectations.interval_values(fact)]:
        values += [value, tolerance_scale(scale)]
    return (*values, *expectations.time_points(fact, width, b))


def _floats_agree(stored: np.ndarray, known: np.ndarray, at: np.ndarray,
                  expected: tuple[np.ndarray, np.ndarray, np.ndarray]) -> bool:
    """``agreement.agrees`` with ``close`` expectations over a column: rows without points
    expect None; a stored NaN is None."""
    if stored.dtype != np.float64:
        return False
    values, missing, scales = expected
    want = _taken(values, known, at, math.nan)
    want_none = _taken(missing, known, at, True)
    scale = _taken(scales, known, at, 0.0)
    stored_none = np.isnan(stored)
    if (stored_none != want_none).any():
        return False
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(stored) & np.isfinite(want)
        allowed = np.maximum(RELATIVE * np.maximum(np.abs(stored), np.abs(want)),
                             ROUNDING * scale)
        close = np.abs(stored - want) <= allowed
        fine = np.where(finite, close, stored == want) | stored_none
    return bool(fine.all())
