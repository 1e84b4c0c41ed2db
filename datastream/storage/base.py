"""The storage contract: what a backend stores and returns. No semantics live here.

A backend keeps three things and computes nothing:

* stream records: ``StreamRecord`` (id, user tags, an opaque JSON ``meta`` dict owned by the
  engine, a version incremented by every stored change, a creation order);
* raw datapoints: per stream, Arrow rows ``RAW_SCHEMA`` returned in (t, insertion) order;
* level rows: per level key (``'S'``, ``'m'``, ...), Arrow rows whose schema the engine chooses
  (``stream_id`` + ``t`` + partial-state columns), keyed by (stream_id, t).

Everything that changes data goes through :meth:`Storage.commit` with a :class:`WriteBatch`:
all-or-nothing, conditional on the versions the engine read (``WriteBatch.expect``). That is how
several processes sharing a backend never lose each other's updates: a commit built from a
stale record is refused with :class:`RecordConflict`, and the engine re-reads and rebuilds it.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import functools
import numbers
import sys
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from .. import exceptions
from ..lazy import pa, pc
from ..units import US_PER_SECOND


# Raw datapoints. ``k`` is the value kind (numbered in datastream.raw_kinds): 0 null, 1 int
# (``i``), 2 float (``f``), 3 exact number as text (``s``: Decimal or big int), 4 JSON (``s``:
# nominal or graph value), 5 pre-aggregated numeric dict as JSON (``s``).
@functools.cache
def raw_schema() -> pa.Schema:
    """The Arrow schema of raw rows (``RAW_SCHEMA``), built on first use: it needs pyarrow,
    which ``import datastream`` leaves for later (see datastream.lazy)."""
    return pa.schema(
        [
            ("t", pa.int64()),
            ("k", pa.int8()),
            ("i", pa.int64()),
            ("f", pa.float64()),
            ("s", pa.string()),
        ]
    )


def __getattr__(name: str) -> Any:
    if name == "RAW_SCHEMA":
        value = globals()[name] = raw_schema()
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The first window the default ``Storage.first_raw_time`` reads (each next one is twice as long).
FIRST_WINDOW_US = 3600 * US_PER_SECOND


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Rows in the columns and types of ``schema`` (absent columns read null); storage and
    engine both meet tables written under an older or narrower schema."""
    if table.schema.equals(schema):
        return table
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


@dataclasses.dataclass
class StreamRecord:
    """A stream as stored. ``meta`` is opaque to the backend (JSON-serialisable dict);
    ``version`` counts the stored changes of the record (0 when created)."""

    stream_id: str
    tags: dict[str, Any]
    meta: dict[str, Any]
    version: int = 0


class RecordConflict(exceptions.DatastreamException):
    """A conditional write found a stored version other than the expected one (another
    writer changed the record since it was read). Nothing was stored; re-read and retry."""


def version_conflict(stream_id: str, found: int, expected: int | None,
                     consequence: str = "") -> RecordConflict:
    """The RecordConflict of a record found at another version than expected, worded alike by
    every backend; ``consequence`` tells what was (not) stored."""
    message = (f"stream {stream_id!r} changed since it was read (version {found},"
               f" expected {expected})")
    return RecordConflict(f"{message}; {consequence}" if consequence else message)


class StreamExists(RecordConflict):
    """A stream to create matches an existing one's query; ``existing`` is that record."""

    def __init__(self, message: str, existing: StreamRecord) -> None:
        super().__init__(message)
        self.existing = existing


@dataclasses.dataclass
class MetaUpdate:
    """Changes to one stream's ``meta``: ``set`` replaces top-level keys; ``max``/``min`` keep
    the larger/smaller of stored and given number (None stored counts as absent), so that
    concurrent writers never move ``latest_datapoint`` backwards."""

    set: dict[str, Any] = dataclasses.field(default_factory=dict)
    max: dict[str, int] = dataclasses.field(default_factory=dict)
    min: dict[str, int] = dataclasses.field(default_factory=dict)

    def apply_to(self, meta: dict[str, Any]) -> dict[str, Any]:
        """The meta dict after this update (used by backends that update in process)."""
        result = dict(meta)
        result.update(self.set)
        for key, value in self.max.items():
            result[key] = value if result.get(key) is None else max(result[key], value)
        for key, value in self.min.items():
            result[key] = value if result.get(key) is None else min(result[key], value)
        return result


@dataclasses.dataclass
class WriteBatch:
    """Everything one flush or maintenance step writes, stored all-or-nothing.

    ``raw``: stream id → table of RAW_SCHEMA rows to append (already sorted by t).
    ``levels``: level key → table with ``stream_id`` and ``t`` columns plus partial columns;
    rows replace any stored row with the same (stream_id, t).
    ``clear_levels`` / ``clear_raw``: stream ids whose level rows / raw rows are deleted first
    (backprocessing a derived stream).
    ``truncate_raw``: stream id → t; raw rows at or after t are deleted first (a derived stream
    re-derived from t).
    ``drop_raw_before``: stream id → T; raw rows with t < T are deleted (retention).
    ``drop_levels_before``: level key → {stream id → T}; level rows with t < T are deleted.
    ``drop_levels_from``: level key → {stream id → T}; level rows with t >= T are deleted
    (reopening a downsampled range).
    The drops, like the clears and the truncation, apply to the rows stored before the batch:
    the batch's own rows are written after them, so one batch may drop levels from T and write
    new rows at or after T. They never touch other streams or levels, and repeating a drop
    changes nothing more (a level never written, or a range already empty, is no error).
    ``meta``: stream id → MetaUpdate applied in the same transaction.
    ``expect``: stream id → version the stored record must have, else :class:`RecordConflict`
    and nothing is stored.
    ``create``: (record, query) pairs of new streams, refused with :class:`StreamExists` when a
    stream matching the query exists (atomic with respect to concurrent creators).
    ``delete``: stream ids deleted with all their rows.

    Every existing stream the batch touches gets its version incremented.
    """

    raw: dict[str, pa.Table] = dataclasses.field(default_factory=dict)
    levels: dict[str, pa.Table] = dataclasses.field(default_factory=dict)
    meta: dict[str, MetaUpdate] = dataclasses.field(default_factory=dict)
    clear_raw: list[str] = dataclasses.field(default_factory=list)
    clear_levels: list[str] = dataclasses.field(default_factory=list)
    truncate_raw: dict[str, int] = dataclasses.field(default_factory=dict)
    drop_raw_before: dict[str, int] = dataclasses.field(default_factory=dict)
    drop_levels_before: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    drop_levels_from: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    expect: dict[str, int] = dataclasses.field(default_factory=dict)
    create: list[tuple[StreamRecord, dict[str, Any]]] = dataclasses.field(default_factory=list)
    delete: list[str] = dataclasses.field(default_factory=list)

    def is_empty(self) -> bool:
        return not (
            self.raw or self.levels or self.meta or self.clear_raw or self.clear_levels
            or self.truncate_raw or self.create or self.delete or self.drop_raw_before
            or any(self.drop_levels_before.values()) or any(self.drop_levels_from.values())
        )

    def touched(self) -> set[str]:
        """Existing streams whose stored record or rows this batch changes."""
        ids = set(self.raw) | set(self.meta) | set(self.clear_raw) | set(self.clear_levels)
        ids |= set(self.truncate_raw) | set(self.drop_raw_before)
        for drops in (self.drop_levels_before, self.drop_levels_from):
            for per_stream in drops.values():
                ids.update(per_stream)
        for table in self.levels.values():
            if table.num_rows:
                runs = id_runs(table.column("stream_id"))
                if runs is None:
                    ids.update(table.column("stream_id").unique().to_pylist())
                else:
                    ids.update(stream_id for stream_id, _, _ in runs)
        return ids - set(self.delete)


def drop_time(value: Any, what: str) -> int:
    """A drop's time bound as an int (µs); TypeError for anything but an integer, so that a
    float or a datetime never silently deletes the wrong rows."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what}: the time bound must be an integer of µs, got {value!r}")
    return int(value)


def level_drops(
    drops: dict[str, dict[str, int]], what: str
) -> list[tuple[str, str, int]]:
    """``(level key, stream id, T)`` of ``drop_levels_before`` / ``drop_levels_from``, the
    times checked (:func:`drop_time`), in a stable order."""
    found = []
    for level_key in sorted(drops, key=str):
        for stream_id, t in sorted(drops[level_key].items(), key=lambda item: str(item[0])):
            found.append((level_key, stream_id, drop_time(t, f"{what}[{level_key!r}]")))
    return found


def id_runs(column: pa.ChunkedArray | pa.Array) -> list[tuple[str, int, int]] | None:
    """``(stream_id, offset, length)`` per run of equal ids when every chunk of ``column`` holds
    one id, as the engine builds level batches (a stream's rows together); None otherwise.
    Comparing with one value costs far less than hashing every string."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    runs: list[tuple[str, int, int]] = []
    offset = 0
    for chunk in chunks:
        if not len(chunk):
            continue
        if chunk.null_count:
            return None
        if pa.types.is_dictionary(chunk.type) and len(chunk.dictionary) == 1:
            stream_id = chunk.dictionary[0].as_py()  # every index is 0: one id, no compare
        else:
            first = chunk[0]
            if not pc.all(pc.equal(chunk, first)).as_py():
                return None
            stream_id = first.as_py()
        if runs and runs[-1][0] == stream_id:
            runs[-1] = (stream_id, runs[-1][1], runs[-1][2] + len(chunk))
        else:
            runs.append((stream_id, offset, len(chunk)))
        offset += len(chunk)
    return runs


def warn_after_commit(message: str, stacklevel: int = 2) -> None:
    """An InternalInconsistencyWarning about work already committed. Under a filter that
    turns warnings into errors it is written to stderr instead of raised: raising it would
    tell the caller the commit failed, and a retry would store its points twice."""
    try:
        warnings.warn(message, exceptions.InternalInconsistencyWarning, stacklevel=stacklevel + 1)
    except Warning:
        print(f"datastream: InternalInconsistencyWarning: {message}", file=sys.stderr)


class _DownsamplerNames:
    """A frozenset of downsampler names read from :mod:`datastream.downsamplers` on access
    (that module imports this one), the same on a backend class and on its instances."""

    def __init__(self, attribute: str) -> None:
        self.attribute = attribute

    def __get__(self, instance: object, owner: type | None = None) -> frozenset[str]:
        from .. import downsamplers

        return frozenset(getattr(downsamplers, self.attribute))


class Storage(abc.ABC):
    """Base class of every backend (``datastream.backends.<name>.Backend``).

    Errors: when the backend cannot be reached or has been closed, every method but
    :meth:`commit` raises ``exceptions.StorageUnavailable`` (or a subclass); :meth:`commit`
    raises ``StreamAppendFailed`` whatever went wrong, so that callers can keep the batch.
    """

    # Every backend of this project materialises its levels.
    requires_downsampling = True
    downsampled_always_exist = False
    # Derived streams follow their sources live: backprocess_streams is only for the history
    # sources held when a derived stream was created.
    requires_derived_stream_backprocess = False
    # A downsampled point's time mean ('m') is the mean of its points' times, not the bucket
    # start.
    downsampled_timestamps_start_bucket = False
    # True when other processes may write the same streams: the engine then takes the stream
    # locks around each flush and folds rows into buckets another process has closed meanwhile.
    concurrent_writers = False

    # the downsampler names every backend supports, on the class and its instances
    value_downsamplers = _DownsamplerNames("VALUE_DOWNSAMPLERS")
    time_downsamplers = _DownsamplerNames("TIME_DOWNSAMPLERS")

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Release connections and files. Idempotent."""

    # -- stream records --------------------------------------------------------------------
    @abc.abstractmethod
    def find_streams(self, query: dict[str, Any] | None) -> list[StreamRecord]:
        """Records whose user tags match ``query`` (portable query language of
        ``datastream.tags``, already validated; None or {} = all), in creation order.
        A top-level ``stream_id`` condition (an id or ``{'$in': [...]}``) filters on ids."""

    @abc.abstractmethod
    def get_stream(self, stream_id: str) -> StreamRecord | None:
        """One record, or None when unknown."""

    def create_stream(self, record: StreamRecord, query: dict[str, Any]) -> StreamRecord:
        """Insert ``record`` unless a stream matching ``query`` exists; atomic with respect to
        concurrent calls with the same query. Returns the stored record (new or existing).
        If more than one existing stream matches, returns the first; the engine then raises."""
        try:
            self.commit(WriteBatch(create=[(record, query)]))
        except StreamExists as exists:
            return exists.existing
        return self.get_stream(record.stream_id) or record

    @abc.abstractmethod
    def set_tags(
        self, stream_id: str, tags: dict[str, Any], expect_version: int | None = None
    ) -> None:
        """Replace the user tags of one stream (and increment its version). With
        ``expect_version``, only if the stored version is that one, else RecordConflict.
        StreamNotFound when the stream does not exist."""

    def delete_streams(self, stream_ids: list[str]) -> None:
        """Delete the records and all raw and level rows of these streams, atomically."""
        self.commit(WriteBatch(delete=list(stream_ids)))

    def record_version(self, stream_id: str) -> int | None:
        """The stored version of a record (None when unknown). Backends that can answer
        without reading the whole record override this: the engine asks before trusting a
        cached record."""
        record = self.get_stream(stream_id)
        return None if record is None else record.version

    # -- datapoints ------------------------------------------------------------------------
    @abc.abstractmethod
    def commit(self, batch: WriteBatch) -> None:
        """Store a WriteBatch all-or-nothing. On failure raise StreamAppendFailed (or
        RecordConflict / StreamExists, see WriteBatch) with nothing of the batch stored. Once
        the batch is stored, nothing may raise: a caller that sees an error retries, and a
        stored batch must never be stored twice."""

    @abc.abstractmethod
    def read_raw(
        self, stream_id: str, start_us: int | None, end_us: int | None, reverse: bool = False
    ) -> pa.Table:
        """Raw rows with ``start_us <= t < end_us`` (None = unbounded), RAW_SCHEMA, ordered by
        (t, insertion order); with ``reverse`` by t descending, insertion order ascending."""

    @abc.abstractmethod
    def read_level(
        self, level_key: str, stream_id: str, start_us: int | None, end_us: int | None
    ) -> pa.Table | None:
        """Level rows with ``start_us <= t < end_us``, ordered by t, without the ``stream_id``
        column; None when the level has never been written."""

    def read_raw_many(
        self, stream_ids: list[str], start_us: int | None, end_us: int | None
    ) -> dict[str, pa.Table]:
        """``read_raw`` of several streams (many-stream tables). A backend that can fetch them
        in one round trip overrides this; the result is the same."""
        return {stream_id: self.read_raw(stream_id, start_us, end_us) for stream_id in stream_ids}

    def read_level_many(
        self, level_key: str, stream_ids: list[str], start_us: int | None, end_us: int | None
    ) -> dict[str, pa.Table | None]:
        """``read_level`` of several streams, as ``read_raw_many``."""
        return {stream_id: self.read_level(level_key, stream_id, start_us, end_us)
                for stream_id in stream_ids}

    def count_raw(self, stream_id: str, start_us: int | None, end_us: int | None) -> int:
        """How many raw rows have ``start_us <= t < end_us`` (None = unbounded); 0 for an
        unknown stream. Backends that can count from chunk headers override this."""
        return self.read_raw(stream_id, start_us, end_us).num_rows

    def first_raw_time(self, stream_id: str, start_us: int | None) -> int | None:
        """The smallest raw ``t >= start_us`` (None = unbounded), None when there is none.
        This default reads windows that double in length from ``start_us``, so that a row
        near the start costs a short read; backends override it with a cheaper lookup."""
        from ..granularity import MAX_US, MIN_US

        low, width = MIN_US if start_us is None else max(MIN_US, int(start_us)), FIRST_WINDOW_US
        while low <= MAX_US:
            high = min(low + width, MAX_US + 1)
            found = self.read_raw(stream_id, low, high).column("t")
            if len(found):
                return int(pc.min(found).as_py())
            low, width = high, width * 2
        return None

    def raw_windows(
        self, stream_id: str, start_us: int | None, end_us: int | None, max_rows: int,
        reverse: bool = False,
    ) -> tuple[pa.Table | None, list[tuple[int | None, int | None, int]]]:
        """The raw rows with ``start_us <= t < end_us`` planned as consecutive time windows
        ``(low, high, rows)`` (time order; the first starts at ``start_us``, the last ends at
        ``end_us``) of at most ``max_rows`` rows each, unless a window is one microsecond wide.
        Returns ``(table, windows)``: ``table`` holds the rows (in ``reverse`` order when asked)
        when they were read to plan (then one window), None when only windows were planned.

        For backends that cannot count rows without reading them (``count_raw`` is the
        default); the engine plans the others itself from ``count_raw``. This default reads
        the range once, whatever its size; a backend that can page through its rows plans
        without holding them."""
        table = self.read_raw(stream_id, start_us, end_us, reverse=reverse)
        return table, [(start_us, end_us, table.num_rows)]

    # -- statistics ------------------------------------------------------------------------
    def stored_bytes(self, stream_id: str) -> dict[str, int] | None:
        """Bytes held for one stream, per level key (``'raw'`` for raw points), for reports such
        as ``datastream info``; read-only. None when the backend cannot tell cheaply."""
        return None

    # -- coordination ----------------------------------------------------------------------
    @contextlib.contextmanager
    def maintenance_lock(self, stream_id: str, ttl_seconds: float = 60.0) -> Iterator[None]:
        """Exclusive right to downsample/backprocess one stream across processes. Backends
        shared by many processes override this; the embedded store is single-writer."""
        yield

    def refresh_stream(self, stream_id: str) -> StreamRecord | None:
        """Re-read one record from the server (used after taking a maintenance lock)."""
        return self.get_stream(stream_id)


def plan_windows(pages: Iterable[np.ndarray], start_us: int | None, end_us: int | None,
                 max_rows: int) -> list[tuple[int | None, int | None, int]]:
    """Consecutive windows ``(low, high, rows)`` covering ``[start_us, end_us)`` over row
    times given a sorted page at a time (a microsecond never split between pages): a window
    ends before the microsecond that would take it past ``max_rows`` rows, and a microsecond
    holding more than that is a window of its own. One step per window, not per row."""
    windows: list[tuple[int | None, int | None, int]] = []
    low, rows = start_us, 0
    for times in pages:
        if not len(times):
            continue
        stamps, counts = np.unique(times, return_counts=True)
        total = np.cumsum(counts)
        base = 0
        while True:
            before = int(total[base - 1]) if base else 0  # rows of the page already placed
            over = int(np.searchsorted(total, max_rows - rows + before, side="right"))
            if over >= len(stamps):
                break
            if over == base and rows == 0:  # one microsecond beyond max_rows: its own window
                windows.append((low, int(stamps[over]) + 1, int(counts[over])))
                low, base = int(stamps[over]) + 1, over + 1
            else:
                placed = int(total[over - 1]) - before if over > base else 0
                windows.append((low, int(stamps[over]), rows + placed))
                low, base = int(stamps[over]), over
            rows = 0
            if base >= len(stamps):
                break
        rows += int(total[-1]) - (int(total[base - 1]) if base else 0)
    if rows or not windows:
        windows.append((low, end_us, rows))
    else:
        last_low, _, last_rows = windows[-1]
        windows[-1] = (last_low, end_us, last_rows)
    return windows
