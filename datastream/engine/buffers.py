"""Per-stream append buffers.

Single appends land in two Python lists, the timestamp in one and the value's slot in the other
(the cheapest thing a per-call path can do: a plain float or int is its own slot, anything else
its encoded tuple, see :func:`datastream.values.encode_slots`); bulk appends land as ready Arrow
tables. Single points always follow the tables in append order (a table seals the points before
it). A flush turns each stream's buffer into one RAW_SCHEMA table sorted by time, keeping append
order among equal timestamps.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from .. import arrow_numpy, values
from ..lazy import pa
from ..storage.base import raw_schema

_monotonic = time.monotonic


@dataclasses.dataclass(slots=True)
class StreamBuffer:
    timestamps: list[int] = dataclasses.field(default_factory=list)
    slots: list[Any] = dataclasses.field(default_factory=list)
    tables: list[pa.Table] = dataclasses.field(default_factory=list)
    points: int = 0
    earliest: int | None = None
    latest: int | None = None

    def add_table(self, table: pa.Table, earliest: int, latest: int) -> None:
        self._seal()
        self.tables.append(table)
        self._extend(earliest, latest, table.num_rows)

    def _extend(self, earliest: int, latest: int, count: int) -> None:
        self.points += count
        self.earliest = earliest if self.earliest is None else min(self.earliest, earliest)
        self.latest = latest if self.latest is None else max(self.latest, latest)

    def _seal(self) -> None:
        if self.slots:
            self.tables.append(values.encode_slots(self.timestamps, self.slots))
            self.timestamps, self.slots = [], []

    def to_table(self) -> pa.Table:
        """All buffered points as one table sorted by t (stable: append order kept)."""
        self._seal()
        if not self.tables:
            return arrow_numpy.empty_table(raw_schema())
        if len(self.tables) == 1 and self.tables[0].schema.equals(raw_schema()):
            table = self.tables[0]
        else:
            table = pa.concat_tables([t.cast(raw_schema()) for t in self.tables])
        timestamps = arrow_numpy.to_numpy(table.column("t"))
        if timestamps.size > 1 and np.any(timestamps[1:] < timestamps[:-1]):
            order = np.argsort(timestamps, kind="stable")
            table = table.take(arrow_numpy.from_numpy(order))
        self.tables = [table]  # a retried flush reuses the work
        return table


class Buffers:
    """All streams' buffers, with the size and age that trigger an automatic flush."""

    def __init__(self, max_points: int, max_age_seconds: float) -> None:
        self.max_points = max_points
        self.max_age_seconds = max_age_seconds
        self.streams: dict[str, StreamBuffer] = {}
        self.points = 0
        self.started: float | None = None

    def get(self, stream_id: str) -> StreamBuffer:
        buffer = self.streams.get(stream_id)
        if buffer is None:
            buffer = self.streams[stream_id] = StreamBuffer()
        if self.started is None:
            self.started = time.monotonic()
        return buffer

    def add_point(
        self, stream_id: str, timestamp_us: int, slot: Any, buffer: StreamBuffer | None = None
    ) -> bool:
        """Buffer one validated point; True when the buffers are due for a flush now (the
        per-point path: adding and :meth:`due` in one call). ``buffer``: the stream's buffer
        when the caller already looked it up (``streams.get(stream_id)``)."""
        if buffer is None:
            buffer = self.streams.get(stream_id)
        if buffer is None or self.started is None:
            buffer = self.get(stream_id)
        buffer.timestamps.append(timestamp_us)
        buffer.slots.append(slot)
        buffer.points += 1
        latest = buffer.latest
        if latest is None:
            buffer.earliest = buffer.latest = timestamp_us
        elif timestamp_us >= latest:
            buffer.latest = timestamp_us
        elif timestamp_us < buffer.earliest:
            buffer.earliest = timestamp_us
        self.points += 1
        return (self.points >= self.max_points
                or _monotonic() - self.started >= self.max_age_seconds)
    def add_table(self, stream_id: str, table: pa.Table, earliest: int, latest: int) -> None:
        self.get(stream_id).add_table(table, earliest, latest)
        self.points += table.num_rows

    def due(self) -> bool:
        """True when the buffers should be flushed now (size or age limit reached)."""
        if not self.points:
            return False
        if self.points >= self.max_points:
            return True
        return time.monotonic() - (self.started or 0.0) >= self.max_age_seconds

    def take(self) -> dict[str, StreamBuffer]:
        """Detach everything buffered (put back with :meth:`restore` if the write fails)."""
        taken = {sid: buf for sid, buf in self.streams.items() if buf.points}
        self.streams, self.points, self.started = {}, 0, None
        return taken

    def restore(self, taken: dict[str, StreamBuffer]) -> None:
        """Put detached buffers back in front of anything appended since."""
        for stream_id, old in taken.items():
            newer = self.streams.get(stream_id)
            if newer is not None:
                old._seal()
                newer._seal()
                old.tables.extend(newer.tables)
                if newer.points:
                    old._extend(newer.earliest, newer.latest, newer.points)
            self.streams[stream_id] = old
        self.points = sum(buf.points for buf in self.streams.values())
        if self.points and self.started is None:
            self.started = time.monotonic()

    def discard(self, stream_ids: set[str]) -> None:
        self.detach(stream_ids)

    def detach(self, stream_ids: set[str]) -> dict[str, StreamBuffer]:
        """Take the buffers of some streams out (put back with :meth:`restore`)."""
        taken = {}
        for stream_id in stream_ids:
            buffer = self.streams.pop(stream_id, None)
            if buffer is not None:
                self.points -= buffer.points
                taken[stream_id] = buffer
        if not self.points:
            self.started = None
        return taken
