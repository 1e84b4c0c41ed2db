"""Raw rows this process committed lately, served to reads without asking InfluxDB.

The engine closes buckets right after it stored the raw rows that close them: reading those
rows back from InfluxDB cost more than writing them (the server encodes every point, the
client decodes it). A commit that appends raw rows to a stream keeps them here; a read of a
range that the kept rows cover is answered from memory.

An entry claims: every visible raw row of the stream with ``t > after`` (every row when
``after`` is None) is in ``table``, in (t, insertion) order, as of the stored record
``version`` and raw ``epoch``. It is used only while the stored record still has that version
(readers read it from PostgreSQL with the bookkeeping they need anyway), so a commit by any
other process or storage object, which moves the version, makes it stale. This storage's own
commits move entries on: appending rows at or after the entry's last time extends it, a commit
that leaves the raw rows alone only moves its version, and anything else (truncation, late
rows before its end) replaces it by the rows of the commit above the stream's previous tail.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import pyarrow as pa

from ..base import RAW_SCHEMA


@dataclasses.dataclass
class Entry:
    version: int
    epoch: int
    after: int | None
    parts: list[pa.Table]
    rows: int

    def table(self) -> pa.Table:
        if len(self.parts) != 1:
            self.parts = [pa.concat_tables(self.parts).combine_chunks()
                          if self.parts else RAW_SCHEMA.empty_table()]
        return self.parts[0]

    def last_t(self) -> int | None:
        for part in reversed(self.parts):
            if part.num_rows:
                return int(part.column("t")[-1].as_py())
        return self.after


class RecentRaw:
    """At most ``limit`` rows over all streams; the least recently used streams go first."""

    def __init__(self, limit: int) -> None:
        self.limit = max(0, int(limit))
        self.entries: collections.OrderedDict[str, Entry] = collections.OrderedDict()
        self.rows = 0

    def clear(self) -> None:
        self.entries.clear()
        self.rows = 0

    def forget(self, stream_id: str) -> None:
        entry = self.entries.pop(stream_id, None)
        if entry is not None:
            self.rows -= entry.rows

    def read(self, stream_id: str, version: int, epoch: int, start_us: int | None,
             end_us: int | None, reverse: bool) -> pa.Table | None:
        """Rows with ``start_us <= t < end_us`` when the entry covers them, else None. Only
        ranges with a start are answered (reads of a whole stream go to the server)."""
        entry = self.entries.get(stream_id)
        if entry is None or start_us is None:
            return None
        if entry.version != version or entry.epoch != epoch:
            self.forget(stream_id)
            return None
        if entry.after is not None and start_us <= entry.after:
            return None
        self.entries.move_to_end(stream_id)
        table = entry.table()
        t = table.column("t").to_numpy()
        lo = int(np.searchsorted(t, start_us, side="left"))
        hi = len(t) if end_us is None else int(np.searchsorted(t, end_us, side="left"))
        result = table.slice(lo, max(0, hi - lo))
        if reverse and result.num_rows:
            times = result.column("t").to_numpy()
            result = result.take(pa.array(np.lexsort((np.arange(times.size), -times))))
        return result

    def committed(self, stream_id: str, version: int, epoch: int, tail: int | None,
                  rows: pa.Table | None, hidden: bool) -> None:
        """After a commit that moved the stream's record to ``version``: ``rows`` the raw
        rows it appended (sorted by t; None for none), ``tail`` the stream's latest raw time
        before them, ``hidden`` whether it hid stored rows (truncation)."""
        if not self.limit:
            return
        entry = self.entries.get(stream_id)
        fresh = (entry is not None and entry.version == version - 1 and entry.epoch == epoch
                 and not hidden)
        if rows is None or not rows.num_rows:
            if fresh:
                entry.version = version
            else:
                self.forget(stream_id)
            return
        t = rows.column("t").to_numpy()
        last = entry.last_t() if fresh else None
        if fresh and (last is None or int(t[0]) >= last):
            entry.version = version
            entry.parts.append(rows)
            entry.rows += rows.num_rows
            self.rows += rows.num_rows
            self.entries.move_to_end(stream_id)
        else:
            self.forget(stream_id)
            if hidden:
                return
            if tail is not None:
                rows = rows.slice(int(np.searchsorted(t, tail, side="right")))
            self.entries[stream_id] = Entry(version, epoch, tail, [rows], rows.num_rows)
            self.rows += rows.num_rows
        self._shrink(stream_id)

    def _shrink(self, keep: str) -> None:
        """Drop the least recently used entries past the limit; when ``keep`` alone is over
        it, its oldest rows (whole microseconds: ``after`` moves up to the last one dropped)."""
        while self.rows > self.limit and len(self.entries) > 1:
            oldest = next(iter(self.entries))
            if oldest == keep:
                self.entries.move_to_end(keep)
                continue
            self.forget(oldest)
        entry = self.entries.get(keep)
        if entry is None or entry.rows <= self.limit:
            return
        table = entry.table()
        t = table.column("t").to_numpy()
        cut_t = int(t[table.num_rows - self.limit - 1])  # the last dropped row's time
        start = int(np.searchsorted(t, cut_t, side="right"))
        entry.parts = [table.slice(start)]
        entry.after = cut_t if entry.after is None else max(entry.after, cut_t)
        self.rows -= start
        entry.rows -= start
