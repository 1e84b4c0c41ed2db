"""One commit under construction, built from the stored state of every stream it touches.

A flush, a downsampling step, a backprocess, creating or deleting streams: each reads the
stored records (``StreamState``), changes working copies of them, gathers rows, and ends as one
``WriteBatch`` that storage applies all-or-nothing and only if none of those records changed
meanwhile (``WriteBatch.expect``). Readers of the pending rows (downsampling, derived streams)
go through :attr:`ChangeSet.view`.
"""

from __future__ import annotations

from .. import arrow_numpy
from ..lazy import pa
from ..null_columns import repeated_id
from ..storage.base import MetaUpdate, WriteBatch, raw_schema
from ..units import INT64_MIN
from .downsampling import LevelStep
from .state import StreamState
from .view import PendingView, conform, slice_t, sort_stable

EVERYTHING = INT64_MIN  # "changed from the beginning"


class ChangeSet:
    """Working copies of stream states plus the rows one commit will write."""

    def __init__(self, storage, states: dict[str, StreamState]) -> None:
        self.storage = storage
        self.base = dict(states)
        self.states = {stream_id: state.copy() for stream_id, state in states.items()}
        self._raw: dict[str, list[pa.Table]] = {}
        self._raw_joined: dict[str, pa.Table] = {}
        self._levels: dict[tuple[str, str], pa.Table] = {}
        self.truncated: dict[str, int] = {}
        self.cleared: set[str] = set()
        # Lifecycle deletions (behaviour §11): raw rows before a time, level rows before /
        # from a time, per (stream, level key).
        self.raw_dropped_before: dict[str, int] = {}
        self.levels_dropped_before: dict[tuple[str, str], int] = {}
        self.levels_dropped_from: dict[tuple[str, str], int] = {}
        # What changed, for the streams derived from these: new level ranges closed here, and
        # the earliest time from which stored raw or level rows were replaced.
        self.closed: dict[tuple[str, str], list[tuple[int, int]]] = {}
        self.raw_changed_from: dict[str, int] = {}
        self.level_changed_from: dict[tuple[str, str], int] = {}
        self.steps: list[tuple[str, LevelStep]] = []
        self.created: list[tuple[StreamState, dict]] = []
        self.deleted: list[str] = []
        self.dirty: set[str] = set()

    # -- reading what is pending -----------------------------------------------------------
    @property
    def view(self) -> PendingView:
        """Reads with these changes applied. Made on each use rather than kept: a kept view
        would close a reference cycle, and the rows of every commit would then stay in
        memory until the garbage collector found them (fresh pages for each flush)."""
        return PendingView(self.storage, self)

    def has_stored_rows(self, stream_id: str) -> bool:
        return stream_id not in self.cleared and stream_id not in self._created_ids()

    has_stored_levels = has_stored_rows

    def _created_ids(self) -> set[str]:
        return {state.stream_id for state, _ in self.created}

    def new_raw(self, stream_id: str) -> pa.Table | None:
        """Raw rows this change set appends to a stream, sorted by t (append order kept)."""
        joined = self._raw_joined.get(stream_id)
        if joined is None:
            parts = self._raw.get(stream_id)
            if not parts:
                return None
            joined = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
            joined = sort_stable(joined)
            self._raw[stream_id] = [joined]
            self._raw_joined[stream_id] = joined
        return joined

    def new_levels(self, stream_id: str, level_key: str) -> pa.Table | None:
        return self._levels.get((stream_id, level_key))

    # -- changing --------------------------------------------------------------------------
    def add_raw(self, stream_id: str, table: pa.Table, replace_from: int | None = None) -> None:
        """Append sorted raw rows to a stream; with ``replace_from``, stored and pending rows
        at or after that time are dropped first (a derived stream re-derived from there)."""
        state = self.states[stream_id]
        if replace_from is not None:
            self.truncated[stream_id] = min(self.truncated.get(stream_id, replace_from),
                                            replace_from)
            self.raw_changed_from[stream_id] = min(
                self.raw_changed_from.get(stream_id, replace_from), replace_from
            )
            pending = self.new_raw(stream_id)
            if pending is not None:
                self._raw[stream_id] = [slice_t(pending, None, replace_from)]
                self._raw_joined.pop(stream_id, None)
        if table.num_rows:
            self._raw.setdefault(stream_id, []).append(table.cast(raw_schema()))
            self._raw_joined.pop(stream_id, None)
            t = arrow_numpy.to_numpy(table.column("t"))
            state.extend(int(t.min()), int(t.max()))
        self.dirty.add(stream_id)

    def clear(self, stream_id: str) -> None:
        """Drop every stored raw and level row of a stream (a derived stream replayed)."""
        self.cleared.add(stream_id)
        self.raw_changed_from[stream_id] = EVERYTHING
        self._raw.pop(stream_id, None)
        self._raw_joined.pop(stream_id, None)
        for key in [key for key in self._levels if key[0] == stream_id]:
            del self._levels[key]
        self.dirty.add(stream_id)

    def add_levels(self, stream_id: str, step: LevelStep, recomputed: bool = False) -> None:
        """Level rows of buckets closed (or, ``recomputed``, closed again) in
        [step.start_us, step.end_us)."""
        key = (stream_id, step.level.key)
        rows = conform(step.rows)
        existing = self._levels.get(key)
        if existing is not None and existing.num_rows:
            outside = pa.concat_tables([
                slice_t(existing, None, step.start_us), slice_t(existing, step.end_us, None)
            ])
            rows = sort_stable(pa.concat_tables([outside, rows]))
        self._levels[key] = rows
        self.closed.setdefault(key, []).append((step.start_us, step.end_us))
        if recomputed:
            self.level_changed_from[key] = min(
                self.level_changed_from.get(key, step.start_us), step.start_us
            )
        self.states[stream_id].bounds[step.level.key] = max(
            step.end_us, self.states[stream_id].bound(step.level) or step.end_us
        )
        self.steps.append((stream_id, step))
        self.dirty.add(stream_id)

    def drop_raw_before(self, stream_id: str, time_us: int) -> None:
        """Delete the stream's raw rows before ``time_us`` (retention)."""
        previous = self.raw_dropped_before.get(stream_id, time_us)
        self.raw_dropped_before[stream_id] = max(previous, time_us)
        self.dirty.add(stream_id)

    def drop_level_before(self, stream_id: str, level_key: str, time_us: int) -> None:
        """Delete a level's rows before ``time_us`` (retention)."""
        key = (stream_id, level_key)
        self.levels_dropped_before[key] = max(self.levels_dropped_before.get(key, time_us),
                                              time_us)
        self.dirty.add(stream_id)

    def drop_level_from(self, stream_id: str, level_key: str, time_us: int) -> None:
        """Delete a level's rows at or after ``time_us`` (reopening); rows this change set
        closes later are written after the deletion."""
        key = (stream_id, level_key)
        self.levels_dropped_from[key] = min(self.levels_dropped_from.get(key, time_us), time_us)
        pending = self._levels.get(key)
        if pending is not None:
            self._levels[key] = slice_t(pending, None, time_us)
        self.level_changed_from[key] = min(self.level_changed_from.get(key, time_us), time_us)
        self.dirty.add(stream_id)

    def create(self, state: StreamState, query: dict) -> None:
        self.created.append((state, query))
        self.states[state.stream_id] = state

    def delete(self, stream_id: str) -> None:
        self.deleted.append(stream_id)

    def touch(self, stream_id: str) -> None:
        """The state of this stream changed (its record is written)."""
        self.dirty.add(stream_id)

    # -- the result ------------------------------------------------------------------------
    def batch(self) -> WriteBatch:
        """The WriteBatch of everything gathered, conditional on the versions read."""
        batch = WriteBatch()
        created = self._created_ids()
        deleted = set(self.deleted)
        for state, query in self.created:
            batch.create.append((state.record(), query))
        batch.delete = list(self.deleted)
        for stream_id in sorted(self.dirty - created - deleted):
            batch.meta[stream_id] = MetaUpdate(set=self.states[stream_id].meta())
        for stream_id in sorted((self.dirty | deleted) - created):
            if stream_id in self.base:
                batch.expect[stream_id] = self.base[stream_id].version
        for stream_id in self._raw:
            table = self.new_raw(stream_id)
            if table is not None and table.num_rows:
                batch.raw[stream_id] = table
        batch.truncate_raw = {
            stream_id: start for stream_id, start in self.truncated.items()
            if stream_id not in self.cleared
        }
        batch.drop_raw_before = {
            stream_id: t for stream_id, t in self.raw_dropped_before.items()
            if stream_id not in self.cleared and stream_id not in deleted
        }
        for target, dropped in ((batch.drop_levels_before, self.levels_dropped_before),
                                (batch.drop_levels_from, self.levels_dropped_from)):
            for (stream_id, level_key), t in sorted(dropped.items()):
                if stream_id not in self.cleared and stream_id not in deleted:
                    target.setdefault(level_key, {})[stream_id] = t
        batch.clear_raw = sorted(self.cleared)
        batch.clear_levels = sorted(self.cleared)
        by_level: dict[str, list[pa.Table]] = {}
        for (stream_id, level_key), rows in sorted(self._levels.items()):
            if rows.num_rows:
                ids = repeated_id(stream_id, rows.num_rows)
                by_level.setdefault(level_key, []).append(rows.add_column(0, "stream_id", ids))
        batch.levels = {key: pa.concat_tables(parts) for key, parts in by_level.items()}
        return batch
