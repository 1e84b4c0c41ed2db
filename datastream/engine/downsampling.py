"""Closing buckets: which buckets of which level may be materialised, and computing them.

For each level coarser than the stream's highest, finest first, a bucket closes when (a) the
``until`` bound is at or after its end, (b) a datapoint at or after its end exists, and (c) every
finer level is closed up to its end (SPEC §5.5). Level 1 is computed from raw rows; each coarser
level combines the partial rows of the level below (stored ones plus those computed in the same
step), and the median is recomputed from raw rows because medians do not compose.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .. import downsamplers
from ..granularity import GranularityLevel, coarser_levels, resolve
from ..storage.base import Storage, StreamRecord


@dataclasses.dataclass
class LevelStep:
    """What one downsampling step closed for one level of one stream."""

    level: GranularityLevel
    start_us: int
    end_us: int
    rows: pa.Table  # non-empty buckets in [start_us, end_us), LEVEL_SCHEMA without stream_id


def slice_t(table: pa.Table, start_us: int, end_us: int) -> pa.Table:
    t = table.column("t")
    mask = pc.and_(pc.greater_equal(t, start_us), pc.less(t, end_us))
    return table.filter(mask)


def close_buckets(storage: Storage, record: StreamRecord, until_us: int | None) -> list[LevelStep]:
    """Compute every bucket that may close now (``until_us`` None = no bound: rules b and c)."""
    meta = record.meta
    if not meta.get("value_downsamplers") or meta.get("earliest_datapoint") is None:
        return []
    earliest, latest = meta["earliest_datapoint"], meta["latest_datapoint"]
    bounds: dict[str, Any] = meta.get("downsampled_until") or {}
    value_type, options = meta["value_type"], meta["value_type_options"]
    with_median = "median" in meta["value_downsamplers"]
    # Frequency tables are costly for continuous numbers: only when a downsampler needs them.
    with_frequencies = bool(
        {"most_often", "least_often", "frequencies"} & set(meta["value_downsamplers"])
    )
    steps: list[LevelStep] = []
    finer: LevelStep | None = None
    finer_bound: int | None = None
    levels = coarser_levels(resolve(meta["highest_granularity"]))
    for index, level in enumerate(levels):
        width = level.width_us
        bound = bounds.get(level.key)
        start = bound if bound is not None else level.floor_us(earliest)
        new = level.floor_us(latest)
        if until_us is not None:
            new = min(new, level.floor_us(until_us))
        if index > 0:
            if finer_bound is None:
                break
            new = min(new, level.floor_us(finer_bound))
        if new <= start:
            finer, finer_bound = None, bound
            if index > 0 and bound is None:
                break
            continue
        if index == 0:
            raw = storage.read_raw(record.stream_id, start, new)
            rows = downsamplers.partials_from_raw(
                raw, value_type, options, width, with_median, with_frequencies=with_frequencies
            )
        else:
            child = _child_rows(storage, record, levels[index - 1], finer, start, new)
            raw = storage.read_raw(record.stream_id, start, new) if with_median else None
            rows = downsamplers.combine_partials(child, width, value_type, options, raw=raw)
        step = LevelStep(level, start, new, rows)
        steps.append(step)
        finer, finer_bound = step, new
    return steps


def _child_rows(
    storage: Storage,
    record: StreamRecord,
    finer_level: GranularityLevel,
    finer: LevelStep | None,
    start: int,
    end: int,
) -> pa.Table:
    """Rows of the next finer level in [start, end): stored ones, then this step's new ones."""
    stored_end = end if finer is None else min(end, finer.start_us)
    parts = []
    if stored_end > start:
        stored = storage.read_level(finer_level.key, record.stream_id, start, stored_end)
        if stored is not None and stored.num_rows:
            parts.append(conform(stored))
    if finer is not None:
        parts.append(conform(slice_t(finer.rows, start, end)))
    if not parts:
        return downsamplers.LEVEL_SCHEMA.empty_table()
    return pa.concat_tables(parts)


def conform(table: pa.Table) -> pa.Table:
    """Rows in LEVEL_SCHEMA column order and types (storage may return extra/missing columns)."""
    schema = downsamplers.LEVEL_SCHEMA
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)
