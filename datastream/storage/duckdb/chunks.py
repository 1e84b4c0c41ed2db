"""Chunks of the embedded store: rows of one stream and level cut into compressed blocks.

Points are not stored a row each: per stream and level, consecutive rows are encoded together
by the shared codec (:mod:`datastream.storage.codec`) into a chunk of at most
``RAW_CHUNK_ROWS`` (raw) or ``CHUNK_ROWS`` (levels) rows, kept with its time span ``[t0, t1]``,
its row count and a sequence number ``seq`` that orders chunks (a global counter: a later write
has a larger ``seq``).

* Raw chunks hold rows in stored order; readers take the chunks overlapping a range in ``seq``
  order and sort by time stably, so points sharing a timestamp keep their append order even
  across chunks written out of time order.
* Level chunks never overlap in time: a write over stored buckets merges into the chunks it
  overlaps (the newer row of a bucket wins). They are cut at the edges of aligned time windows
  (``WINDOW_BUCKETS``), so a day's read at 10 s decodes one chunk.
* Small chunks (a flush of a few points) are merged once ``MERGE_AFTER`` of them pile up at the
  end of a stream's chunk sequence, so storage stays dense whatever the flush rate, and each
  point is rewritten only a few times.

Level rows are the engine's partial states; their columns follow what arrives (a level's Arrow
schema is remembered and widened), encoded by the codec when they fit its level layout and as
compressed Arrow IPC otherwise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable

import numpy as np
import pyarrow as pa

from ... import arrow_numpy, downsamplers
from .. import codec
from ..base import conform

CHUNK_ROWS = 16384
RAW_CHUNK_ROWS = 4 * CHUNK_ROWS
"""Raw chunks hold up to 65536 rows: a raw read of a million points then decodes 16 chunks
instead of 62, and each chunk's fixed cost (checks, a dozen codec and kernel calls) was a third
of the decode. Level chunks stay at ``CHUNK_ROWS``: their 21 columns make a row ten times as
wide, and level reads are mostly short ranges."""
SMALL_ROWS = CHUNK_ROWS // 4
WINDOW_BUCKETS = 8640
"""Level chunks are cut at the edges of aligned windows of this many buckets (from the epoch):
one UTC day at 10 s, six days at 1 min. A read of one day at 10 s, the commonest short read,
then decodes one chunk of 8,640 rows instead of parts of two 16k-row chunks (see
:func:`level_pieces`)."""
MERGE_AFTER = 16
RAW = 0  # level code of raw chunks; level keys get codes from 1 on

_CODEC, _IPC = b"C", b"I"
_LEVEL_TYPES = {field.name: field.type for field in downsamplers.LEVEL_SCHEMA}


@dataclasses.dataclass
class Chunk:
    """One stored chunk (a row of the ``chunks`` table)."""

    stream_key: int
    level: int
    t0: int
    t1: int
    seq: int
    rows: int
    body: bytes


def pieces(table: pa.Table, max_rows: int = CHUNK_ROWS) -> list[pa.Table]:
    """``table`` cut into consecutive slices of at most ``max_rows`` rows (zero-copy)."""
    return [table.slice(start, max_rows) for start in range(0, table.num_rows, max_rows)]


def level_pieces(table: pa.Table, width_us: int | None,
                 max_rows: int = CHUNK_ROWS) -> list[pa.Table]:
    """Time-sorted level rows cut into chunks of whole aligned windows (``WINDOW_BUCKETS``
    buckets of ``width_us``): consecutive windows share a chunk while it stays within
    ``max_rows`` rows, and only a window of more rows than that is itself cut by row count.
    With one row per bucket a window holds at most 8,640 rows, so every chunk but a
    sequence's last holds more than ``max_rows - 8640``: dense days at 10 s are a chunk each,
    sparse ones share one. ``width_us`` None (a level of no known granularity): row count
    alone."""
    if width_us is None or table.num_rows <= 1:
        return pieces(table, max_rows)
    window = np.floor_divide(times(table), width_us * WINDOW_BUCKETS)
    ends = [*(np.flatnonzero(window[1:] != window[:-1]) + 1).tolist(), table.num_rows]
    cuts = [0]
    previous = 0
    for end in ends:  # one step per window, not per row
        if end - cuts[-1] > max_rows and previous > cuts[-1]:
            cuts.append(previous)
        while end - cuts[-1] > max_rows:
            cuts.append(cuts[-1] + max_rows)
        previous = end
    cuts.append(table.num_rows)
    return [table.slice(low, high - low) for low, high in zip(cuts[:-1], cuts[1:])
            if high > low]


def times(table: pa.Table) -> np.ndarray:
    return arrow_numpy.to_numpy(table.column("t")).astype(np.int64, copy=False)


def encode_raw(table: pa.Table) -> bytes:
    return codec.encode_raw(table)


def decode_raw(body: bytes) -> pa.Table:
    return codec.decode_raw(body)


def encode_level(table: pa.Table, plans: codec.LevelPlans | None = None,
                 key: Hashable = None) -> bytes:
    """A level chunk: the codec's level layout when every column fits it, else Arrow IPC.
    ``plans`` and ``key`` (the stream and level) let the codec reuse its column choices."""
    fits = all(_LEVEL_TYPES.get(field.name) == field.type for field in table.schema)
    if fits:
        return codec.encode_level(conform(table, downsamplers.LEVEL_SCHEMA), plans, key,
                                  prefix=_CODEC)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema,
                           options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(table)
    return _IPC + sink.getvalue().to_pybytes()


def decode_level(body: bytes, start_us: int | None = None, end_us: int | None = None
                 ) -> pa.Table:
    """A level chunk's rows; with a bound, codec chunks give only (or mostly) the rows with
    ``start_us <= t < end_us``, so callers still cut them with :func:`slice_range`."""
    tag, payload = body[:1], memoryview(body)[1:]  # a view: bodies are hundreds of kB
    if tag == _CODEC:
        return codec.decode_level(payload, start_us, end_us)
    if tag == _IPC:
        return pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
    raise ValueError(f"unknown level chunk format {tag!r}")


def slice_range(table: pa.Table, start_us: int | None, end_us: int | None) -> pa.Table:
    """Rows of a time-sorted table with start_us <= t < end_us (zero-copy)."""
    if start_us is None and end_us is None:
        return table
    t = times(table)
    low = 0 if start_us is None else int(np.searchsorted(t, start_us, side="left"))
    high = len(t) if end_us is None else int(np.searchsorted(t, end_us, side="left"))
    return table.slice(low, max(0, high - low))


def filter_range(table: pa.Table, start_us: int | None, end_us: int | None) -> pa.Table:
    """Rows with start_us <= t < end_us of a table in any order, keeping their order."""
    if start_us is None and end_us is None:
        return table
    t = times(table)
    keep = np.ones(len(t), dtype=bool)
    if start_us is not None:
        keep &= t >= start_us
    if end_us is not None:
        keep &= t < end_us
    return table if keep.all() else table.filter(arrow_numpy.from_numpy(keep))


def in_time_order(table: pa.Table) -> bool:
    """Whether the rows' times never decrease."""
    t = times(table)
    return bool(len(t) < 2 or (t[1:] >= t[:-1]).all())


def keep_last_per_time(table: pa.Table) -> pa.Table:
    """Rows sorted by t with one row per t, the last given (an upsert)."""
    t = times(table)
    if len(t) < 2 or (t[1:] > t[:-1]).all():  # the usual case: already strictly increasing
        return table
    order = np.argsort(t, kind="stable")
    ordered = t[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = ordered[1:] != ordered[:-1]
    if last.all() and np.array_equal(order, np.arange(len(order))):
        return table
    return table.take(arrow_numpy.from_numpy(order[last]))


def joined_by_time(parts: list[pa.Table], reverse: bool = False) -> pa.Table:
    """The rows of non-empty ``parts`` (chunks in ``seq`` order) as :func:`stable_by_time`
    orders them. When every part is sorted and each starts at or after the end of the one
    before, as chunks written in time order are, they are joined as they are, without copying
    the time column to find that out."""
    table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
    if reverse or not _in_order(parts):
        return stable_by_time(table, reverse)
    return table


def _in_order(parts: list[pa.Table]) -> bool:
    previous = None
    for part in parts:
        t = times(part)
        if previous is not None and t[0] < previous:
            return False
        if len(t) > 1 and not (t[1:] >= t[:-1]).all():
            return False
        previous = t[-1]
    return True


def stable_by_time(table: pa.Table, reverse: bool = False) -> pa.Table:
    """Rows by t (descending with ``reverse``), keeping the given order among equal times."""
    t = times(table)
    if len(t) < 2:
        return table
    ordered = bool(np.all(t[1:] >= t[:-1]))
    if not reverse:
        if ordered:
            return table
        return table.take(arrow_numpy.from_numpy(np.argsort(t, kind="stable")))
    if ordered:  # the usual case: no sort needed, only the runs of equal times kept in order
        return table.take(arrow_numpy.from_numpy(newest_first(t)))
    return table.take(pa.array(np.lexsort((np.arange(len(t)), -t))))


def newest_first(t: np.ndarray) -> np.ndarray:
    """Row positions of non-decreasing times from the newest, equal times in their given order:
    the runs of equal times in reverse, each run as it is (linear, where a sort is not)."""
    n = len(t)
    starts = np.flatnonzero(np.concatenate(([True], t[1:] != t[:-1])))
    lengths = np.diff(np.append(starts, n))
    starts, lengths = starts[::-1], lengths[::-1]
    placed = np.cumsum(lengths) - lengths  # where each run starts in the output
    return np.repeat(starts - placed, lengths) + np.arange(n)
