"""The engine: the one place that turns validated API calls into storage writes and reads.

It owns the record cache, the append buffers and the flush pipeline (raw batches, derived
streams, automatic bucket closing, one storage commit per flush).
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from .. import exceptions
from ..granularity import GranularityLevel, coarser_levels, resolve
from ..messages import show
from ..storage.base import MetaUpdate, Storage, StreamRecord, WriteBatch
from . import downsampling
from .buffers import Buffers, StreamBuffer

LEVEL_COLUMNS_KEY = "stream_id"
DOWNSAMPLE_GROUP = 64  # streams closed together in one commit


class Engine:
    """Buffers appends, flushes them, closes buckets and serves reads for one storage."""

    def __init__(
        self,
        storage: Storage,
        *,
        buffer_points: int = 10_000,
        buffer_seconds: float = 1.0,
        auto_downsample: bool = False,
    ) -> None:
        self.storage = storage
        self.buffers = Buffers(buffer_points, buffer_seconds)
        self.auto_downsample = auto_downsample
        self.lock = threading.RLock()
        self._records: dict[str, StreamRecord] = {}
        self.derive_hook: Callable[[dict[str, pa.Table], WriteBatch], None] | None = None
        self.level_hook: Callable[[str, list, WriteBatch], None] | None = None

    # -- records ---------------------------------------------------------------------------
    def record(self, stream_id: object) -> StreamRecord:
        """The record of a stream id; StreamNotFound for unknown or malformed ids."""
        cached = self._records.get(stream_id) if isinstance(stream_id, str) else None
        if cached is not None:
            return cached
        if not isinstance(stream_id, str) or not _is_uuid(stream_id):
            raise exceptions.StreamNotFound(f"stream {show(stream_id)} not found (malformed id)")
        record = self.storage.get_stream(stream_id)
        if record is None:
            raise exceptions.StreamNotFound(f"stream {stream_id!r} not found")
        self._records[stream_id] = record
        return record

    def remember(self, record: StreamRecord) -> None:
        self._records[record.stream_id] = record

    def forget(self, stream_ids: set[str]) -> None:
        for stream_id in stream_ids:
            self._records.pop(stream_id, None)

    def find(self, query: dict[str, Any] | None) -> list[StreamRecord]:
        """Matching records, as stored now; the cache takes the stored state (another process
        sharing the backend may have moved bounds or tags since)."""
        found = []
        for record in self.storage.find_streams(query):
            cached = self._records.get(record.stream_id)
            if cached is None:
                self._records[record.stream_id] = cached = record
            else:
                cached.tags, cached.meta = record.tags, record.meta
            found.append(cached)
        return found

    def pending_extent(self, stream_id: str) -> tuple[int | None, int | None]:
        """Earliest and latest timestamp of a stream including what is still buffered."""
        meta = self.record(stream_id).meta
        earliest, latest = meta.get("earliest_datapoint"), meta.get("latest_datapoint")
        buffer = self.buffers.streams.get(stream_id)
        if buffer is not None and buffer.points:
            earliest = buffer.earliest if earliest is None else min(earliest, buffer.earliest)
            latest = buffer.latest if latest is None else max(latest, buffer.latest)
        return earliest, latest

    # -- appending -------------------------------------------------------------------------
    def buffer_point(self, stream_id: str, timestamp_us: int, encoded: tuple) -> None:
        self.buffers.get(stream_id).add(timestamp_us, encoded)
        self.buffers.added(1)

    def buffer_table(self, stream_id: str, table: pa.Table, earliest: int, latest: int) -> None:
        self.buffers.get(stream_id).add_table(table, earliest, latest)
        self.buffers.added(table.num_rows)

    def maybe_flush(self) -> None:
        if self.buffers.due():
            self.flush()

    def flush(self) -> None:
        """Write everything buffered in one commit; on failure the buffers are kept."""
        with self.lock:
            taken = self.buffers.take()
            if not taken:
                return
            try:
                self._write(taken)
            except exceptions.StorageUnavailable as error:  # locks or records, before commit
                self.buffers.restore(taken)
                raise exceptions.StreamAppendFailed(
                    f"flushing failed, the points stay buffered: {error}"
                ) from error
            except BaseException:
                self.buffers.restore(taken)
                raise

    def _write(self, taken: dict[str, StreamBuffer]) -> None:
        batch = WriteBatch()
        raw_tables: dict[str, pa.Table] = {}
        for stream_id, buffer in taken.items():
            table = buffer.to_table()
            raw_tables[stream_id] = table
            batch.raw[stream_id] = table
            batch.meta[stream_id] = MetaUpdate(
                max={"latest_datapoint": buffer.latest}, min={"earliest_datapoint": buffer.earliest}
            )
        if self.derive_hook is not None:
            self.derive_hook(raw_tables, batch)
        shared = self.storage.concurrent_writers
        if not (self.auto_downsample or shared):
            self.commit(batch)
            return
        # Hold every stream's maintenance lock (sorted, so two writers cannot deadlock) and work
        # from the stored bounds: a downsampler in another process never sees its bounds moved
        # backwards, and rows it could not know about are folded into its closed buckets.
        stream_ids = sorted(batch.meta)
        with contextlib.ExitStack() as locks:
            for stream_id in stream_ids:
                locks.enter_context(self.storage.maintenance_lock(stream_id))
            for stream_id in stream_ids:
                record = self._records.get(stream_id)
                fresh = self.storage.refresh_stream(stream_id) if record is not None else None
                if fresh is None:
                    continue
                record.tags, record.meta = fresh.tags, fresh.meta
                if shared:
                    self._recompute_late(batch, record)
                if self.auto_downsample:
                    self._downsample_into(batch, record, None, include_batch=batch)
            self.commit(batch)

    def _recompute_late(self, batch: WriteBatch, record: StreamRecord) -> None:
        """Another process closed buckets that rows of this batch fall into (they were appended
        before this process saw the new bound): recompute those buckets with the rows, up to
        the stored bounds, so that no level ever diverges from its raw data."""
        level = first_level(record)
        rows = batch.raw.get(record.stream_id)
        bounds = record.meta.get("downsampled_until") or {}
        if level is None or rows is None or not rows.num_rows or bounds.get(level.key) is None:
            return
        earliest = int(np.min(rows.column("t").to_numpy()))
        first_bound = bounds[level.key]
        if earliest >= first_bound:
            return
        lowered = {
            key: None if bound is None else min(bound, resolve(key).floor_us(earliest))
            for key, bound in bounds.items()
        }
        self._downsample_into(
            batch, record, first_bound, include_batch=batch, bounds=lowered, feed_derived=False
        )

    def commit(self, batch: WriteBatch) -> None:
        """Store a batch, then bring the cached records up to date."""
        if batch.is_empty():
            return
        try:
            self.storage.commit(batch)
        except exceptions.DatastreamException:
            raise
        except Exception as error:  # a backend bug or a driver error not wrapped by it
            raise exceptions.StreamAppendFailed(f"writing a batch failed: {error}") from error
        for stream_id, update in batch.meta.items():
            record = self._records.get(stream_id)
            if record is not None:
                record.meta = update.apply_to(record.meta)

    # -- downsampling ----------------------------------------------------------------------
    def downsample(self, records: list[StreamRecord], until_us: int | None) -> list[tuple]:
        """Close buckets of each stream; returns (stream_id, level, rows, start, end) steps.

        Streams are handled in groups, each under its streams' maintenance locks (taken in id
        order so that two processes cannot deadlock) and written in one commit: per-commit
        costs are paid once per group, not once per stream."""
        self.flush()
        closed: list[tuple] = []
        for offset in range(0, len(records), DOWNSAMPLE_GROUP):
            group = records[offset : offset + DOWNSAMPLE_GROUP]
            with contextlib.ExitStack() as locks:
                for record in sorted(group, key=_stream_id):
                    locks.enter_context(self.storage.maintenance_lock(record.stream_id))
                batch = WriteBatch()
                steps_by_stream = {}
                for record in group:
                    fresh = self.storage.refresh_stream(record.stream_id)
                    if fresh is None:
                        continue
                    self.remember(fresh)
                    steps_by_stream[fresh.stream_id] = self._downsample_into(batch, fresh, until_us)
                self.commit(batch)
            for record in group:
                steps = steps_by_stream.get(record.stream_id, [])
                closed.extend((record.stream_id, *step) for step in steps)
        return closed

    def _downsample_into(
        self,
        batch: WriteBatch,
        record: StreamRecord,
        until_us: int | None,
        include_batch: WriteBatch | None = None,
        bounds: dict[str, int | None] | None = None,
        feed_derived: bool = True,
    ) -> list[tuple]:
        """Add the buckets that may close now to ``batch`` (and their new bounds to its meta).

        ``bounds`` replaces the stored bounds as the starting point (recomputing buckets);
        ``feed_derived=False`` keeps recomputed buckets away from derived streams, which saw
        them once already."""
        view = record
        storage: Storage = self.storage
        if include_batch is not None and record.stream_id in include_batch.raw:
            update = include_batch.meta.get(record.stream_id)
            meta = update.apply_to(record.meta) if update else record.meta
            view = StreamRecord(record.stream_id, record.tags, meta)
            storage = _PendingRawView(self.storage, record.stream_id, include_batch.raw)
        if bounds is not None:
            view = StreamRecord(
                record.stream_id, record.tags, {**view.meta, "downsampled_until": bounds}
            )
        steps = downsampling.close_buckets(storage, view, until_us)
        if not steps:
            return []
        bounds = dict(view.meta.get("downsampled_until") or {})
        for step in steps:
            bounds[step.level.key] = step.end_us
            if step.rows.num_rows:
                rows = step.rows.add_column(
                    0, LEVEL_COLUMNS_KEY, pa.array([record.stream_id] * step.rows.num_rows)
                )
                existing = batch.levels.get(step.level.key)
                batch.levels[step.level.key] = (
                    rows if existing is None else pa.concat_tables([existing, rows])
                )
        update = batch.meta.setdefault(record.stream_id, MetaUpdate())
        update.set["downsampled_until"] = bounds
        if feed_derived and self.level_hook and (record.meta.get("contributes_to") or {}):
            self.level_hook(record.stream_id, steps, batch)
        return [(step.level, step.rows, step.start_us, step.end_us) for step in steps]

    # -- deleting --------------------------------------------------------------------------
    def delete(self, records: list[StreamRecord]) -> None:
        ids = {record.stream_id for record in records}
        self.buffers.discard(ids)
        self.flush()
        self.storage.delete_streams([record.stream_id for record in records])
        self.forget(ids)


def first_level(record: StreamRecord) -> GranularityLevel | None:
    """The first level coarser than the stream's highest (None for Days streams)."""
    levels = coarser_levels(resolve(record.meta["highest_granularity"]))
    return levels[0] if levels else None


def _stream_id(record: StreamRecord) -> str:
    return record.stream_id


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower() and len(value) == 36
    except ValueError:
        return False


class _PendingRawView:
    """Storage seen as if a batch's raw rows were already committed (for auto-downsampling in
    the same commit as the raw rows that close the buckets)."""

    def __init__(self, storage: Storage, stream_id: str, raw: dict[str, pa.Table]) -> None:
        self._storage = storage
        self._stream_id = stream_id
        self._pending = raw[stream_id]

    def read_raw(self, stream_id: str, start_us, end_us, reverse: bool = False) -> pa.Table:
        stored = self._storage.read_raw(stream_id, start_us, end_us, reverse=False)
        if stream_id != self._stream_id or not self._pending.num_rows:
            return stored
        pending = downsampling.slice_t(
            self._pending,
            start_us if start_us is not None else -(2**63),
            end_us if end_us is not None else 2**63 - 1,
        )
        if not pending.num_rows:
            return stored
        combined = pa.concat_tables([stored.cast(pending.schema), pending])
        order = np.argsort(combined.column("t").to_numpy(), kind="stable")
        return combined.take(pa.array(order))

    def read_level(self, level_key, stream_id, start_us, end_us):
        return self._storage.read_level(level_key, stream_id, start_us, end_us)
