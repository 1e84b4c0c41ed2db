"""Closing buckets: which buckets of which level may be materialised, and computing them.

For each level coarser than the stream's highest, finest first, a bucket closes when (a) the
``until`` bound is at or after its end, (b) a datapoint at or after its end exists, and (c) every
finer level is closed up to its end (behaviour §5.5). Level 1 is computed from raw rows; each
coarser level combines the partial rows of the level below (stored ones plus those computed in the
same step), and the median is recomputed from raw rows because medians do not compose.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .. import arrow_numpy, downsamplers
from ..granularity import GranularityLevel
from ..lazy import pa
from .state import StreamState
from .view import conform, slice_t

__all__ = ["LevelStep", "close_buckets", "conform", "slice_t"]


@dataclasses.dataclass
class LevelStep:
    """What one downsampling step closed for one level of one stream."""

    level: GranularityLevel
    start_us: int
    end_us: int
    rows: pa.Table  # non-empty buckets in [start_us, end_us), LEVEL_SCHEMA without stream_id


def close_buckets(
    storage: Any,
    state: StreamState,
    until_us: int | None,
    caps: dict[str, int | None] | None = None,
) -> list[LevelStep]:
    """Compute every bucket that may close now, starting at each level's bound in ``state``.

    ``until_us`` None means no bound of rule (a). ``caps`` (level key → bound) limits each
    level, used to recompute an already closed range without closing anything new. ``storage``
    is anything with ``read_raw``/``read_level`` (a Storage or a PendingView).
    """
    if not state.value_downsamplers or state.earliest is None:
        return []
    latest = closing_time(state)
    value_type, options = state.value_type, state.options
    # what the declarations of the stream's downsamplers ask for beyond the kernels' columns
    with_median = downsamplers.raw_medians(state.value_downsamplers)
    with_frequencies = downsamplers.frequency_tables(state.value_downsamplers)
    kept = downsamplers.kept_value_state(value_type, options, state.value_downsamplers)
    steps: list[LevelStep] = []
    finer: LevelStep | None = None
    finer_bound: int | None = None
    levels = state.levels
    for index, level in enumerate(levels):
        width = level.width_us
        bound = state.bound(level)
        start = bound if bound is not None else state.level_start(level)
        new = level.floor_us(latest)
        if until_us is not None:
            new = min(new, level.floor_us(until_us))
        if caps is not None:
            cap = caps.get(level.key)
            new = min(new, start if cap is None else cap)
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
            raw = storage.read_raw(state.stream_id, start, new)
            rows = downsamplers.partials_from_raw(
                raw, value_type, options, width, with_median, with_frequencies=with_frequencies
            )
        else:
            child = _child_rows(storage, state, levels[index - 1], finer, start, new)
            raw = storage.read_raw(state.stream_id, start, new) if with_median else None
            rows = downsamplers.combine_partials(child, width, value_type, options, raw=raw)
        step = LevelStep(level, start, new, downsamplers.without_unkept_state(rows, kept))
        steps.append(step)
        finer, finer_bound = step, new
    return steps


def closing_time(state: StreamState) -> int:
    """The latest datapoint of rule (b): for a derived stream, the time up to which its
    outputs are final counts too, since it will emit nothing more at or before it. So a
    stream that emits rarely (counter_reset) closes its buckets as its sources advance, as
    the original API did by moving a derived stream's latest time with its sources."""
    operator = state.operator
    if state.derivation is None or operator is None or operator.final is None:
        return state.latest
    return max(state.latest, operator.final)


def _child_rows(
    storage: Any,
    state: StreamState,
    finer_level: GranularityLevel,
    finer: LevelStep | None,
    start: int,
    end: int,
) -> pa.Table:
    """Rows of the next finer level in [start, end): stored ones, then this step's new ones."""
    stored_end = end if finer is None else min(end, finer.start_us)
    parts = []
    if stored_end > start:
        stored = storage.read_level(finer_level.key, state.stream_id, start, stored_end)
        if stored is not None and stored.num_rows:
            parts.append(conform(stored))
    if finer is not None:
        parts.append(conform(slice_t(finer.rows, start, end)))
    if not parts:
        return arrow_numpy.empty_table(downsamplers.LEVEL_SCHEMA)
    return pa.concat_tables(parts)
