"""The reference for level reads: every bucket materialised at once, as reads worked before
level results became lazy. Tests compare the lazy results against it row for row."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from datastream import downsamplers
from datastream.engine.downsampling import conform
from datastream.engine.reading import Range
from datastream.granularity import GranularityLevel

LevelReader = Callable[[int, int], pa.Table | None]


def level_table(
    read: LevelReader, meta: dict[str, Any], level: GranularityLevel, query: Range, reverse: bool
) -> pa.Table:
    """Stored rows of the range plus one row per empty bucket (``fill_empty``), newest first
    with ``reverse``."""
    bound = (meta.get("downsampled_until") or {}).get(level.key)
    earliest = meta.get("earliest_datapoint")
    if query.empty or bound is None or earliest is None:
        return downsamplers.LEVEL_SCHEMA.empty_table()
    lo, hi = query.bucket_bounds(level)
    first = level.floor_us(earliest)
    lo = first if lo is None else max(lo, first)
    hi = bound if hi is None else min(hi, bound)
    if lo >= hi:
        return downsamplers.LEVEL_SCHEMA.empty_table()
    stored = read(lo, hi)
    rows = downsamplers.LEVEL_SCHEMA.empty_table() if stored is None else conform(stored)
    rows = downsamplers.fill_empty(rows, lo, hi, level.width_us)
    if reverse:
        rows = rows.take(pa.array(np.arange(rows.num_rows - 1, -1, -1, dtype=np.int64)))
    return rows


def level_points(
    read: LevelReader,
    meta: dict[str, Any],
    level: GranularityLevel,
    query: Range,
    reverse: bool,
    value_names: list[str] | None = None,
    time_names: list[str] | None = None,
) -> list[dict]:
    """The datapoint dicts of :func:`level_table` (``finalize`` over every row)."""
    table = level_table(read, meta, level, query, reverse)
    stored = meta["value_downsamplers"]
    names = stored if value_names is None else [n for n in value_names if n in stored]
    times = list(downsamplers.TIME_DOWNSAMPLERS) if time_names is None else time_names
    return downsamplers.finalize(
        table, meta["value_type"], meta["value_type_options"],
        [downsamplers.VALUE_DOWNSAMPLERS[n] for n in names],
        [downsamplers.TIME_DOWNSAMPLERS[n] for n in times],
        level.width_us,
    )
