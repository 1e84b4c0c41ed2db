"""Verify the materialised levels of one stream against its raw data, window by window.

For every level coarser than the stream's highest that has a ``downsampled_until`` bound, every
bucket from the level's first kept one (after retention: whose raw points are still kept) up to
the bound is read the way ``get_data`` reads it (stored rows, empty buckets generated) and
compared with what SQL computes from the raw rows of that bucket: for float streams first
column by column (:mod:`.columnar`), and bucket by bucket where that finds anything. Stored
rows a reader never sees (before the first kept bucket, at or after the bound, or in a level
that has no bound yet) are reported too: the next downsampling would expose them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import downsamplers
from ..engine.downsampling import conform
from ..engine.reading import Range, level_rows
from ..engine.state import StreamState
from ..granularity import GranularityLevel
from ..storage.base import Storage, StreamRecord
from . import columnar
from . import windows as window_sizes
from .agreement import agrees
from .expectations import TIME_LABELS, BucketOracle, value_labels
from .result import ABSENT, Verification
from .sql_oracle import WindowOracle

_STATE_COLUMNS = [f.name for f in downsamplers.LEVEL_SCHEMA if f.name not in ("t", "c", "np")]


def check_levels(
    storage: Storage,
    record: StreamRecord,
    sql: WindowOracle,
    result: Verification,
    window_points: int,
) -> None:
    """Add to ``result`` every bucket of every materialised level that disagrees with SQL."""
    meta = record.meta
    state = StreamState.from_record(record)
    raw_floor = state.raw_floor
    verified = []
    for level in state.levels:
        bound = state.bound(level)
        start = state.level_start(level)
        _check_stray(storage, record, level, start, bound, result)
        if bound is None or start is None:
            continue
        if raw_floor is not None:  # buckets whose raw points retention deleted: unverifiable
            start = max(start, level.ceil_us(raw_floor))
        if start < bound:
            verified.append((level, start, bound))
    if not verified or not meta.get("value_downsamplers"):
        return
    oracle = BucketOracle(sql, meta)
    coarsest = max((level for level, _, _ in verified), key=_width)
    finest = min((level for level, _, _ in verified), key=_width)
    spans = window_sizes.Windows(
        coarsest.floor_us(min(start for _, start, _ in verified)),
        max(bound for _, _, bound in verified),
        coarsest.width_us,
        window_points,
        longest=window_sizes.WINDOW_BUCKETS * finest.width_us,
    )
    by_columns = columnar.supported(meta)
    for a, b in spans:
        raw = storage.read_raw(record.stream_id, a, b)
        spans.observe(raw.num_rows)
        sql.load(raw)
        ranges = [(level, max(a, start), min(b, bound)) for level, start, bound in verified]
        ranges = [(level, lo, hi) for level, lo, hi in ranges if lo < hi]
        widths = [level.width_us for level, _, _ in ranges]
        facts = columnar.WindowFacts(oracle, widths) if by_columns else None
        expected = None
        for level, lo, hi in ranges:
            rows = _reader_rows(storage, record, level, lo, hi)
            result.checked["buckets"] += rows.num_rows
            if facts is not None and facts.agrees(rows, meta, level.width_us, lo, hi):
                continue  # every bucket agrees: nothing to report
            if expected is None:
                expected = oracle.expected(widths)
            _compare(record, level, lo, hi, rows, oracle, expected, result)


def _width(level: GranularityLevel) -> int:
    return level.width_us


def _reader_rows(
    storage: Storage, record: StreamRecord, level: GranularityLevel, lo: int, hi: int
) -> pa.Table:
    """The rows of ``[lo, hi)`` as a reader gets them: stored ones and generated empty ones."""
    state = StreamState.from_record(record)
    return level_rows(storage, state, level, Range(lo, False, hi, True), False)


def _compare(
    record: StreamRecord,
    level: GranularityLevel,
    lo: int,
    hi: int,
    rows: pa.Table,
    oracle: BucketOracle,
    everything: dict[tuple[int, int], dict],
    result: Verification,
) -> None:
    """Compare the buckets of ``[lo, hi)`` as a reader sees them (``rows``) with the
    oracle's, bucket by bucket, reporting every disagreement."""
    width = level.width_us
    expected = {b: e for (w, b), e in everything.items() if w == width and lo <= b < hi}
    starts = np.asarray(rows.column("t").to_numpy(), dtype=np.int64)
    interesting = ~_plainly_empty(rows) | np.isin(starts, np.fromiter(expected, np.int64))
    shown = rows.filter(pa.array(interesting))
    points = _finalize(shown, record.meta, width)
    seen = set()
    for b, point in zip(shown.column("t").to_pylist(), points, strict=True):
        seen.add(b)
        wanted = expected.get(b) or oracle.empty(b, width)
        _compare_point(record.stream_id, level, b, point, wanted, result)
    for b in sorted(set(expected) - seen):  # a reader does not even get the bucket
        wanted = {label: expectation.value for label, expectation in expected[b].items()}
        result.add(record.stream_id, level, b, None, ABSENT, wanted)


def _plainly_empty(rows: pa.Table) -> np.ndarray:
    """Rows that hold nothing at all: what a reader gets for a bucket without points."""
    empty = pc.and_(pc.equal(rows.column("c"), 0), pc.equal(rows.column("np"), 0))
    for name in _STATE_COLUMNS:
        empty = pc.and_(empty, pc.is_null(rows.column(name)))
    return np.asarray(empty.to_numpy(zero_copy_only=False), dtype=bool)


def _finalize(rows: pa.Table, meta: dict[str, Any], width: int) -> list[dict]:
    """The rows as get_data returns them, every stored value and time downsampler."""
    keys = list(value_labels(meta["value_downsamplers"]).values())
    return downsamplers.finalize(
        rows, meta["value_type"], meta["value_type_options"], keys,
        list(downsamplers.TIME_DOWNSAMPLERS.values()), width,
    )


def _compare_point(
    stream_id: str,
    level: GranularityLevel,
    b: int,
    point: dict,
    wanted: dict,
    result: Verification,
) -> None:
    stored_values, stored_times = point.get("v", {}), point.get("t", {})
    for label, expectation in wanted.items():
        if label in TIME_LABELS:
            stored = stored_times.get(TIME_LABELS[label], ABSENT)
        else:
            stored = stored_values.get(downsamplers.VALUE_DOWNSAMPLERS[label], ABSENT)
        if stored is ABSENT or not agrees(stored, expectation):
            result.add(stream_id, level, b, label, stored, expectation.value)


def _check_stray(
    storage: Storage,
    record: StreamRecord,
    level: GranularityLevel,
    start: int | None,
    bound: int | None,
    result: Verification,
) -> None:
    """Report stored rows outside what a reader can see of this level (before its first
    kept bucket, at or after its bound)."""
    if bound is None or start is None:
        ranges = [(None, None)]
    else:
        ranges = [(None, start), (bound, None)]
    for lo, hi in ranges:
        rows = storage.read_level(level.key, record.stream_id, lo, hi)
        if rows is None or not rows.num_rows:
            continue
        if lo is not None:  # past the bound: another writer may have moved it meanwhile
            rows = _past_fresh_bound(storage, record.stream_id, level, rows)
        rows = conform(rows)
        for b, point in zip(rows.column("t").to_pylist(),
                            _finalize(rows, record.meta, level.width_us), strict=True):
            result.add(record.stream_id, level, b, None, point, ABSENT)


def _past_fresh_bound(
    storage: Storage, stream_id: str, level: GranularityLevel, rows: pa.Table
) -> pa.Table:
    fresh = storage.refresh_stream(stream_id)
    bound = ((fresh.meta.get("downsampled_until") or {}) if fresh else {}).get(level.key)
    if bound is None:
        return rows
    return rows.filter(pc.greater_equal(rows.column("t"), bound))
