"""Storage as it will be once a commit under construction is stored.

Downsampling and derived streams read their inputs while the commit that holds new rows is
still being built (raw rows closing buckets, level rows feeding derived streams, derived
outputs feeding other derived streams). :class:`PendingView` answers the storage read calls
with the stored rows, minus what the commit truncates or clears, plus what it adds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import arrow_numpy, downsamplers
from ..lazy import pa, pc
from ..storage.base import Storage, raw_schema
from ..storage.base import conform as conform_to
from ..units import INT64_MIN

if TYPE_CHECKING:
    from .changes import ChangeSet

NO_TIME = INT64_MIN


def slice_t(table: pa.Table, start_us: int | None, end_us: int | None) -> pa.Table:
    """Rows with start_us <= t < end_us (None = unbounded). Rows sorted by t, as level rows
    and appended batches nearly always are, are sliced without copying; others are filtered."""
    if not table.num_rows or (start_us is None and end_us is None):
        return table
    times = _sorted_times(table)
    if times is not None:
        low = 0 if start_us is None else int(np.searchsorted(times, start_us, side="left"))
        high = len(times) if end_us is None else int(np.searchsorted(times, end_us, side="left"))
        return table.slice(low, max(0, high - low))
    t = table.column("t")
    if start_us is None:
        mask = pc.less(t, end_us)
    elif end_us is None:
        mask = pc.greater_equal(t, start_us)
    else:
        mask = pc.and_(pc.greater_equal(t, start_us), pc.less(t, end_us))
    return table.filter(mask)


def _sorted_times(table: pa.Table) -> np.ndarray | None:
    """The t column as int64 numpy when it is non-decreasing and has no nulls, else None."""
    column = table.column("t")
    if column.null_count:
        return None
    times = arrow_numpy.to_numpy(column).astype(np.int64, copy=False)
    if times.size > 1 and not (times[1:] >= times[:-1]).all():
        return None
    return times


def conform(table: pa.Table) -> pa.Table:
    """Level rows in LEVEL_SCHEMA column order and types (storage may return extra/missing
    columns)."""
    return conform_to(table, downsamplers.LEVEL_SCHEMA)


def sort_stable(table: pa.Table) -> pa.Table:
    """Rows ordered by t, keeping the given order among equal times."""
    t = arrow_numpy.to_numpy(table.column("t"))
    if t.size > 1 and np.any(t[1:] < t[:-1]):
        return table.take(arrow_numpy.from_numpy(np.argsort(t, kind="stable")))
    return table


class PendingView:
    """Read access to ``storage`` with the change set ``changes`` applied."""

    def __init__(self, storage: Storage, changes: ChangeSet) -> None:
        self.storage = storage
        self.changes = changes

    def read_raw(
        self, stream_id: str, start_us: int | None, end_us: int | None, reverse: bool = False
    ) -> pa.Table:
        changes = self.changes
        stored = arrow_numpy.empty_table(raw_schema())
        if changes.has_stored_rows(stream_id):
            cut = changes.truncated.get(stream_id)
            stored_end = end_us if cut is None else (cut if end_us is None else min(end_us, cut))
            dropped = changes.raw_dropped_before.get(stream_id)
            stored_start = start_us if dropped is None else (
                dropped if start_us is None else max(start_us, dropped))
            if stored_start is None or stored_end is None or stored_start < stored_end:
                stored = self.storage.read_raw(stream_id, stored_start, stored_end)
        new = changes.new_raw(stream_id)
        if new is None:
            result = stored
        else:
            new = slice_t(new, start_us, end_us)
            if not new.num_rows:
                result = stored
            elif not stored.num_rows:
                result = new
            else:
                result = pa.concat_tables([stored.cast(raw_schema()), new.cast(raw_schema())])
                # stored rows come first among equal times: they were appended earlier
                result = sort_stable(result)
        if reverse and result.num_rows:
            t = arrow_numpy.to_numpy(result.column("t"))
            order = np.lexsort((np.arange(t.size), -t))
            result = result.take(arrow_numpy.from_numpy(order))
        return result

    def read_level(
        self, level_key: str, stream_id: str, start_us: int | None, end_us: int | None
    ) -> pa.Table | None:
        changes = self.changes
        stored = None
        if changes.has_stored_levels(stream_id):
            low = changes.levels_dropped_before.get((stream_id, level_key))
            high = changes.levels_dropped_from.get((stream_id, level_key))
            low = start_us if low is None else (low if start_us is None else max(low, start_us))
            high = end_us if high is None else (high if end_us is None else min(high, end_us))
            if low is None or high is None or low < high:
                found = self.storage.read_level(level_key, stream_id, low, high)
                stored = None if found is None else conform(found)
        new = changes.new_levels(stream_id, level_key)
        if new is None:
            return stored
        new = slice_t(new, start_us, end_us)
        if stored is None or not stored.num_rows:
            return new
        if not new.num_rows:
            return stored
        replaced = pc.is_in(stored.column("t"), value_set=new.column("t"))
        kept = stored.filter(pc.invert(replaced))
        return sort_stable(pa.concat_tables([kept, new]))
