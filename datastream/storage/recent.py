"""Raw rows this process committed lately, served to reads without asking the store.

The engine closes buckets right after it stored the raw rows that close them: reading those
rows back cost more than writing them (InfluxDB encodes every point and the client decodes it;
the embedded store decodes its chunks). A commit that appends raw rows to a stream keeps them
here; a read of a range that the kept rows cover is answered from memory. The backends using
it: :mod:`.influxdb` and :mod:`.duckdb`.

An entry claims: every visible raw row of the stream with ``t > after`` (every row when
``after`` is None) is in ``table``, in (t, insertion) order, as of the stored record
``version`` and raw ``epoch`` (a backend without epochs passes 0). It is used only while the
stored record still has that version, so a commit by any other process or storage object,
which moves the version, makes it stale. The storage's own commits move entries on: appending
rows at or after the entry's last time extends it, a commit that leaves the raw rows alone
only moves its version, and anything else (truncation, late rows before its end) replaces it
by the rows of the commit above the stream's previous tail.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import pyarrow as pa

from .. import arrow_numpy
from .base import RAW_SCHEMA

MERGE_ROWS = 65_536  # appended rows join the last part while it is smaller than this,
SMALL_ROWS = 4_096  # when they are fewer than this: larger ones are a part of their own, so
# a commit of a full buffer (10,000 points) never copies the rows kept before it


@dataclasses.dataclass
class Entry:
    """Kept rows of one stream, as parts in time order (each part's rows at or after the
    previous part's), so that appending and reading a recent range never copy the rest."""

    version: int
    epoch: int
    after: int | None
    parts: list[pa.Table] = dataclasses.field(default_factory=list)
    rows: int = 0

    def append(self, rows: pa.Table) -> None:
        if self.parts and self.parts[-1].num_rows < MERGE_ROWS and rows.num_rows < SMALL_ROWS:
            self.parts[-1] = pa.concat_tables([self.parts[-1], rows]).combine_chunks()
        elif rows.num_rows:
            self.parts.append(rows)
        self.rows += rows.num_rows

    def last_t(self) -> int | None:
        for part in reversed(self.parts):
            if part.num_rows:
                return int(part.column("t")[-1].as_py())
        return self.after

    def slice(self, start_us: int, end_us: int | None) -> pa.Table:
        """Rows with ``start_us <= t < end_us``, in order."""
        pieces = []
        for part in self.parts:
            t = part.column("t")
            if not part.num_rows or t[-1].as_py() < start_us:
                continue
            if end_us is not None and t[0].as_py() >= end_us:
                break
            times = arrow_numpy.to_numpy(t)
            lo = int(np.searchsorted(times, start_us, side="left"))
            hi = len(times) if end_us is None else int(np.searchsorted(times, end_us, "left"))
            pieces.append(part.slice(lo, hi - lo))
        if not pieces:
            return arrow_numpy.empty_table(RAW_SCHEMA)
        return pieces[0] if len(pieces) == 1 else pa.concat_tables(pieces).combine_chunks()

    def drop_oldest(self, count: int) -> int:
        """Drop at least ``count`` of the oldest rows, whole microseconds; returns how many
        went (``after`` moves up to the last one's time)."""
        dropped, cut_t = 0, None
        while self.parts and dropped + self.parts[0].num_rows <= count:
            part = self.parts.pop(0)
            dropped += part.num_rows
            if part.num_rows:
                cut_t = int(part.column("t")[-1].as_py())
        if self.parts and dropped < count:
            cut_t = int(self.parts[0].column("t")[count - dropped - 1].as_py())
        if cut_t is not None:  # rows at cut_t in the next parts go too
            while self.parts:
                times = arrow_numpy.to_numpy(self.parts[0].column("t"))
                start = int(np.searchsorted(times, cut_t, side="right"))
                dropped += start
                if start < len(times):
                    self.parts[0] = self.parts[0].slice(start)
                    break
                self.parts.pop(0)
            self.after = cut_t if self.after is None else max(self.after, cut_t)
        self.rows -= dropped
        return dropped


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
        result = entry.slice(start_us, end_us)
        if reverse and result.num_rows:
            times = arrow_numpy.to_numpy(result.column("t"))
            newest_first = np.lexsort((np.arange(times.size), -times))
            result = result.take(arrow_numpy.from_numpy(newest_first))
        return result

    def committed(self, stream_id: str, version: int, epoch: int, tail: int | None,
                  rows: pa.Table | None, hidden: bool) -> None:
        """After a commit that moved the stream's record to ``version``: ``rows`` the raw
        rows it appended (sorted by t; None for none), ``tail`` the stream's latest raw time
        before them, ``hidden`` whether it hid stored rows (truncation)."""
        if not self.limit:
            self.forget(stream_id)
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
        t = arrow_numpy.to_numpy(rows.column("t"))
        last = entry.last_t() if fresh else None
        if fresh and (last is None or int(t[0]) >= last):
            entry.version = version
            if entry.after is not None:  # rows at ``after`` are not covered: keep none there
                rows = rows.slice(int(np.searchsorted(t, entry.after, side="right")))
            entry.append(rows)
            self.rows += rows.num_rows
            self.entries.move_to_end(stream_id)
        else:
            self.forget(stream_id)
            if hidden:
                return
            if tail is not None:
                rows = rows.slice(int(np.searchsorted(t, tail, side="right")))
            entry = self.entries[stream_id] = Entry(version, epoch, tail)
            entry.append(rows)
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
        if entry is not None and entry.rows > self.limit:
            self.rows -= entry.drop_oldest(entry.rows - self.limit)
