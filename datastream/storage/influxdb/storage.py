"""InfluxDB 1.x for datapoints, PostgreSQL for stream metadata: the storage and its commit protocol.

Layout
------
PostgreSQL holds the stream records, this backend's bookkeeping and the small tables of the
commit protocol below (:mod:`.metadata`). InfluxDB holds one measurement for raw points
(``datastream_raw``: fields ``i f s``) and one per level (``datastream_level_<key>``: the
engine's columns as fields), tagged ``stream_id`` and ``_epoch``. Every level point has an
integer field ``_batch``, the batch number; a raw point carries the batch number and its kind
``k`` packed in one integer, as the field ``_kb`` or, for a batch writing many points to the
stream, as the tag ``_b`` (see :mod:`.points`: InfluxDB stores the timestamps again for every
field). Nulls are missing fields. Float values that are short decimals are stored exactly as
integer mantissas (``_d<k>_<name>``), which InfluxDB compresses far better than floats (see
:mod:`.line_protocol`); a level text past 4 MiB continues in piece fields (``_p<i>_<name>``) on
lines of their own, merged by InfluxDB into the same point. Names are encoded by
:mod:`.line_protocol`; how rows become points with unique identities, and points rows again, is
in :mod:`.points`. The layout is the metadata's ``SCHEMA_VERSION``: a store of another version
is refused when opened. Points are read and written over the backend's own HTTP session
(:mod:`.session`), configured like the ``InfluxDBClient`` that runs the administrative
statements.

Reads of raw rows that this object committed lately are answered from memory while the
stream's record shows no other change (:mod:`datastream.storage.recent`): the engine reads the
rows it has just stored to close buckets.

Commit protocol (all-or-nothing as seen by readers)
---------------------------------------------------
1. In a transaction, lock the rows of every stream the batch touches, expects or deletes
   (``SELECT ... FOR UPDATE``, sorted ids) and compare their ``version`` with
   ``WriteBatch.expect``: a mismatch (or a stream deleted meanwhile) is a ``RecordConflict``
   raised before anything else happens. A batch that creates streams first takes one
   advisory lock shared by all creators, then checks each query (``StreamExists``) and
   inserts the new rows in the same transaction.
2. Allocate a batch number ``b`` from a counter and record it as *pending*, with the streams
   it touches and the time span it writes per stream, in a separate transaction that commits
   at once (so the record survives whatever follows). Every commit takes one, points or not.
3. Write every point with its batch number ``b`` to InfluxDB, in chunks.
4. In the transaction of step 1: apply the MetaUpdates, increment the ``version`` of every
   touched stream by one, update ``store``, delete the streams to delete, delete the pending
   record; COMMIT. Nothing after COMMIT raises (garbage collection is best effort).

Readers read (counter, pending numbers of the stream, its bookkeeping) in one statement, then
keep only points with a batch number ``<= counter`` whose batch is not pending. A batch that fails
anywhere (InfluxDB killed mid-flush, PostgreSQL gone, process crash) stays pending forever: its
points stay invisible and metadata is untouched. A retry is a new batch; where it writes inside
a failed attempt's span it looks up the ordinals in use there and takes fresh ones, so it is
stored exactly once and never merges with leftovers. If COMMIT itself fails ambiguously, the
pending record tells whether it happened.

``clear_raw`` / ``clear_levels`` switch the stream to a new ``_epoch`` tag in the same commit;
the old epoch's series, and those of deleted streams, are recorded in ``datastream_garbage``
and dropped (``DROP SERIES``) after the commit, retried later if InfluxDB is unreachable.

``truncate_raw`` cannot delete: InfluxQL ``DELETE`` neither filters on fields nor takes part in
the transaction, and the batch's own points at the same times must appear at the same moment
as the old ones disappear. It adds a *cut* ``(t, b)`` to the stream's bookkeeping instead:
raw points at or after ``t`` from batches before ``b`` are invisible (``metadata.add_cut``
keeps the cuts to their Pareto frontier; readers apply them). The hidden points keep their
identities, so new points never reuse them. They stay on disk until their epoch is dropped
(the stream is deleted or cleared). The list stays short: past ``MAX_CUTS`` the newer cuts are
merged into one, and the batch that merges them writes again the visible points the merged cut
would hide (see ``_cut_starts``), so a stream re-derived over and over from late points pays
with a copy of its recent points now and then, never with unbounded bookkeeping.

Drops by time (``WriteBatch.drop_raw_before`` / ``drop_levels_before`` / ``drop_levels_from``)
cannot delete in the commit either. Each adds a drop ``(t, b)`` to the raw or level part of the
stream's bookkeeping (``metadata.add_drop``): points of batches before ``b`` below ``t`` (or, for
a level reopened from ``t``, at or after it) are invisible to readers from the commit on, and
the stream is noted in ``datastream_trims``. After the commit (and after later ones while
InfluxDB cannot be reached) the collector deletes the hidden points with InfluxQL ``DELETE``
and forgets the drops. It holds the stream's row lock meanwhile, so no commit writes points
where it deletes: a drop whose range no later batch wrote into goes as one time range; one
whose range holds points written since (the reopened range written again in the same batch,
late points below a retention time) is read first and only its hidden points are deleted, as
runs between the visible ones. So disk use levels off under retention, and a failed deletion
hides nothing it should not.

Operating notes: every stream is one InfluxDB tag value, so servers with more than 100,000
streams need ``max-values-per-tag = 0`` (and ``max-series-per-database`` above the number of
streams times levels). The same holds for the raw batch tag ``_b``: each commit writing at
least ``points.TAG_BATCH_POINTS`` points to a stream adds a value (per kind of value) and a
series per such stream, so past ~100,000 large commits (a billion points or more) the server
needs ``max-values-per-tag = 0`` too. A failed attempt leaves a ``datastream_pending`` row (a
few bytes) and invisible points until its stream is deleted or cleared.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg2
import pyarrow as pa
import pyarrow.compute as pc
import requests
from influxdb import InfluxDBClient
from influxdb.exceptions import InfluxDBClientError, InfluxDBServerError

from ... import arrow_numpy, exceptions
from ... import tags as tag_rules
from ..base import (
    RAW_SCHEMA,
    Storage,
    StreamRecord,
    WriteBatch,
    drop_time,
    level_drops,
    plan_windows,
)
from ..recent import RecentRaw
from . import points
from .metadata import (
    CREATE_LOCK,
    LOCK_CLASS,
    Lease,
    PgMetadata,
    StorageUnavailable,
    Stored,
    StreamIdTaken,
    View,
    add_cut,
    add_drop,
    clear,
    dumps,
    mark_dirty,
    new_store,
    rollback,
)
from .points import RAW_MEASUREMENT, SLOTS  # noqa: F401 (SLOTS re-exported)
from .session import InfluxSession, Settings

LINES_PER_REQUEST = 10_000
BYTES_PER_REQUEST = 8 << 20
GARBAGE_PER_ROUND = 1000
FIRST_POINTS = 64  # points first_raw_time reads at first
RAW_PAGE_POINTS = 100_000  # points of one page when a large raw read is planned
TRIMS_PER_ROUND = 20  # streams whose dropped points are deleted after one commit
MAX_CUTS = 32  # cuts kept per stream before the newer ones are merged (see _cut_starts)
UNALLOCATED = 2**62  # above every batch number: stands for the one a commit will take
# raw rows kept for reads (see ..recent): ~17 bytes each for plain numbers, so at most ~170 MB.
# As many as a Datastream buffers at most by default (max_buffered_points): an import of that
# many points is downsampled from memory, without reading and decoding them back.
RAW_CACHE_POINTS = 10_000_000
INFLUX_ERRORS = (InfluxDBClientError, InfluxDBServerError, requests.RequestException, OSError)


@contextlib.contextmanager
def _reachable(what: str) -> Iterator[None]:
    """Server failures outside commits as StorageUnavailable, naming what was being done."""
    try:
        yield
    except (psycopg2.OperationalError, psycopg2.InterfaceError) as error:
        raise StorageUnavailable(f"{what}: PostgreSQL failed: {error}") from error
    except INFLUX_ERRORS as error:
        raise StorageUnavailable(f"{what}: InfluxDB failed: {error}") from error


class InfluxDBStorage(Storage):
    """Datapoints in InfluxDB 1.x, metadata in PostgreSQL; safe for many processes at once.

    ``connection_influxdb``: keyword arguments of ``influxdb.InfluxDBClient`` (``host``,
    ``port``, ``username``/``user``, ``password``, ``ssl``, ``timeout``...) plus ``database``
    (created if missing). ``connection_metadata``: keyword arguments of ``psycopg2.connect``
    (``host``, ``port``, ``dbname``, ``user``, ``password``...); the database is created if
    missing and the tables on first use. See the module docstring for the commit protocol.
    ``raw_cache_points``: how many committed raw rows to keep for reads (0: none).
    """

    concurrent_writers = True

    def __init__(self, connection_influxdb: dict[str, Any], connection_metadata: dict[str, Any],
                 *, raw_cache_points: int = RAW_CACHE_POINTS):
        self._lock = threading.RLock()
        self._recent = RecentRaw(raw_cache_points)
        self._closed = False
        influx = dict(connection_influxdb)
        database = influx.pop("database", None) or influx.pop("dbname", None)
        if not database or not isinstance(database, str):
            raise ValueError("connection_influxdb needs a 'database' name")
        if "user" in influx:
            influx["username"] = influx.pop("user")
        influx.setdefault("timeout", 60)
        self._database = database
        # The same settings configure the client (administrative statements) and the
        # session of the data (queries and writes, see .session).
        self._session = InfluxSession(Settings.from_client_options(influx))
        self._client = InfluxDBClient(
            database=database, headers={"Accept": "application/json"}, **influx
        )
        self._influx_ready = False
        self._metadata = PgMetadata(connection_metadata)
        self._leases: dict[tuple[int, str], Lease] = {}
        self._garbage_due = True
        try:
            with self._lock:
                self._metadata.setup()
        except psycopg2.Error as error:
            self.close()
            raise StorageUnavailable(f"cannot use the metadata database: {error}") from error

    def __repr__(self) -> str:
        host = self._metadata.options.get("host", "")
        return f"InfluxDBStorage(influxdb={self._database!r}, metadata host={host!r})"

    def _influx(self) -> InfluxDBClient:
        """The client, once the database exists."""
        if not self._influx_ready:
            self._client.create_database(self._database)  # a no-op when it exists
            self._influx_ready = True
        return self._client

    def _data_session(self) -> InfluxSession:
        """The session of queries and writes, once the database exists."""
        self._influx()
        return self._session

    def close(self) -> None:
        """Close both PostgreSQL connections and the HTTP sessions. Idempotent."""
        with self._lock:
            self._closed = True
            self._recent.clear()
            self._metadata.close()
            self._client.close()
            self._session.close()

    # -- stream records --------------------------------------------------------------------
    def find_streams(self, query: dict[str, Any] | None) -> list[StreamRecord]:
        with self._lock, _reachable("finding streams"):
            records = self._metadata.find_records(query)
        return [r for r in records if tag_rules.matches(r.tags, query, r.stream_id)]

    def get_stream(self, stream_id: str) -> StreamRecord | None:
        if not isinstance(stream_id, str):
            return None
        with self._lock, _reachable(f"reading stream {stream_id!r}"):
            return self._metadata.get_record(stream_id)

    def set_tags(
        self, stream_id: str, tags: dict[str, Any], expect_version: int | None = None
    ) -> None:
        if not isinstance(stream_id, str):
            raise exceptions.StreamNotFound(f"stream {stream_id!r} not found")
        with self._lock, _reachable(f"setting tags of {stream_id!r}"):
            self._metadata.set_tags(stream_id, tags, expect_version)

    # -- writing ---------------------------------------------------------------------------
    def commit(self, batch: WriteBatch) -> None:
        """Store a batch by the protocol of the module docstring. Nothing after the COMMIT
        point raises: the caller would retry a batch that is already stored."""
        if batch.is_empty():
            return
        with self._lock:
            if self._closed:
                raise exceptions.StreamAppendFailed(
                    "the InfluxDB storage is closed; nothing of the batch was stored"
                )
            try:
                self._commit(batch)
            except (exceptions.DatastreamException, StreamIdTaken):
                raise
            except Exception as error:
                raise exceptions.StreamAppendFailed(
                    f"storing a batch for streams {_names(batch)} failed, nothing of it is"
                    f" visible: {type(error).__name__}: {error}"
                ) from error
            if self._garbage_due:
                self._collect_garbage()

    def _commit(self, batch: WriteBatch) -> None:
        created = {record.stream_id for record, _ in batch.create}
        gone = {sid for sid in batch.delete if isinstance(sid, str)} - created
        raw = {sid: points.raw_rows(sid, table) for sid, table in batch.raw.items()
               if sid not in gone}
        raw = {sid: table for sid, table in raw.items() if table.num_rows}
        levels = {}
        for key, table in batch.levels.items():
            schema, per_stream = points.level_rows(key, table)
            per_stream = {sid: rows for sid, rows in per_stream.items() if sid not in gone}
            if per_stream:
                levels[key] = (schema, per_stream)
        drops = _drops(batch, gone)
        touched = sorted(batch.touched() - created - gone)  # each moves one version on
        ids = sorted((set(touched) | set(batch.expect) | gone) - created)
        con = self._metadata.connection(probe=True)
        attempt, sent = None, False
        try:
            with con.cursor() as cur:
                if batch.create:
                    cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_CLASS, CREATE_LOCK))
                rows = self._metadata.lock_streams(cur, ids)
                self._metadata.check_versions(rows, batch.expect, touched)
                self._metadata.fence(cur, sorted(rows), self._held_leases())
                self._metadata.insert_streams(cur, batch.create)
                schemas = self._metadata.level_schemas(cur, levels)
                for record, _ in batch.create:
                    rows[record.stream_id] = Stored(record.meta, new_store(), 0)
                stores = {sid: row.store for sid, row in rows.items()}
                garbage = [(sid, clear(stores[sid], "raw")) for sid in batch.clear_raw
                           if sid not in gone]
                garbage += [(sid, clear(stores[sid], "lv")) for sid in batch.clear_levels
                            if sid not in gone]
                truncate = {sid: int(t) for sid, t in batch.truncate_raw.items()
                            if sid not in gone and sid not in batch.clear_raw}
                cuts = self._cut_starts(cur, truncate, stores, raw)
                written = sorted(set(raw) | {sid for _, per in levels.values() for sid in per})
                risky = self._metadata.pending_spans(cur, written) if written else {}
                spans = points.spans(raw, levels) if written else {}
                attempt = self._metadata.begin_attempt(sorted(set(ids) | created), spans)
                tails = {sid: stores[sid]["raw"]["t"] for sid in raw}
                if written:
                    lines = ([points.raw_lines(raw, stores, risky, attempt, self._occupied)]
                             if raw else [])
                    lines += [points.level_lines(key, per_stream, stores, risky, attempt,
                                                 self._occupied)
                              for key, (_, per_stream) in levels.items()]
                    sent = True
                    self._write(lines)
                for sid, start in cuts.items():
                    add_cut(stores[sid]["raw"], start, attempt)
                trims = _record_drops(drops, stores, raw, levels, attempt)
                self._metadata.note_trims(cur, trims)
                self._metadata.end_attempt(cur, attempt)
                updates = []
                for sid in sorted(set(touched) | created):
                    meta = rows[sid].meta
                    if sid in batch.meta:
                        meta = batch.meta[sid].apply_to(meta)
                    updates.append((sid, dumps(meta), dumps(stores[sid]),
                                    0 if sid in created else 1))
                self._metadata.save_streams(cur, updates, garbage)
                deleted = sorted(gone & set(rows))
                if deleted:
                    self._metadata.delete_streams(cur, deleted)
        except BaseException:
            rollback(con)
            if attempt is not None and not sent:
                self._metadata.forget_attempt(attempt)
            raise
        try:
            con.commit()
        except psycopg2.Error as error:
            committed = self._metadata.attempt_committed(attempt)
            if committed is None:
                raise exceptions.CommitOutcomeUnknown(
                    f"committing metadata for streams {ids} failed ({error}) and the server"
                    " cannot be asked whether it did",
                    functools.partial(self._metadata.attempt_committed, attempt),
                ) from error
            if not committed:
                raise exceptions.StreamAppendFailed(
                    f"committing metadata for streams {ids} failed ({error}); the server did"
                    " not commit it, so nothing of it is visible"
                ) from error
        # the batch is stored: from here on nothing may raise
        self._metadata.schemas.update(schemas)
        self._remember_raw(rows, stores, created, touched, deleted, raw, tails,
                           set(truncate) | set(cuts) | set(batch.drop_raw_before))
        self._garbage_due = self._garbage_due or bool(garbage) or bool(deleted) or bool(trims)

    def _remember_raw(self, rows: dict[str, Stored], stores: dict,
                      created: set[str], touched: list[str], deleted: list[str],
                      raw: dict[str, pa.Table], tails: dict[str, int | None],
                      hidden: set[str]) -> None:
        """Keep the raw rows of a stored batch for reads (see :mod:`.recent`); never raises."""
        try:
            for sid in deleted:
                self._recent.forget(sid)
            for sid in sorted(set(touched) | created):
                version = 0 if sid in created else rows[sid].version + 1
                self._recent.committed(sid, version, stores[sid]["raw"]["e"], tails.get(sid),
                                       raw.get(sid), sid in hidden)
        except Exception:  # a cache must never fail a stored batch
            self._recent.clear()

    def _cut_starts(self, cur: Any, truncate: dict[str, int], stores: dict[str, dict],
                    raw: dict[str, pa.Table]) -> dict[str, int]:
        """Where the cut of each truncated stream starts (see the module docstring). When the
        cut list would grow past MAX_CUTS, its newer half is merged into one cut starting
        earlier, and this batch writes again the visible points that the merged cut would
        hide (before its own rows at equal times), so readers see the same rows. That keeps
        the bookkeeping bounded at the cost of copying the points after a recent cut."""
        starts = {}
        for sid, t in sorted(truncate.items()):
            state = stores[sid]["raw"]
            planned = {"cut": list(state.get("cut", []))}
            add_cut(planned, t, UNALLOCATED)
            start = t
            if len(planned["cut"]) > MAX_CUTS:
                start = planned["cut"][MAX_CUTS // 2][0]
                view = View({"raw": state}, UNALLOCATED, self._metadata.failed_batches(cur, sid))
                columns, count = self._select(RAW_MEASUREMENT, sid, state["e"],
                                              *points.bounds(start, t),
                                              fields=points.stored_fields(RAW_SCHEMA))
                if count:
                    kept = points.raw_table(columns, count, view.raw_visible)
                    if sid in raw:
                        kept = pa.concat_tables([kept, raw[sid]])
                    if kept.num_rows:  # (every stored row there may be hidden already)
                        raw[sid] = points.raw_rows(sid, kept)
            starts[sid] = start
        return starts

    def _occupied(self, measurement: str, sid: str, epoch: int, times: np.ndarray) -> np.ndarray:
        """Highest ordinal stored at each of ``times`` (-1 where none), invisible points
        included: InfluxDB merges the fields of points that share an identity, so a new point
        must never take the identity of any stored one."""
        fields = points.stored_fields(RAW_SCHEMA) if measurement == RAW_MEASUREMENT else ()
        columns, count = self._select(measurement, sid, epoch, *points.ordinal_window(times),
                                      fields=fields)
        return points.highest_ordinals(columns, count, times)

    def _write(self, parts: list[pa.Array]) -> None:
        """POST the lines in requests of at most LINES_PER_REQUEST lines and BYTES_PER_REQUEST
        bytes (InfluxDB refuses bodies over ``max-body-size``, 25 MB by default). Each body is
        a slice of the Arrow buffer of the lines: no Python string per line."""
        lines = pa.concat_arrays([part.cast(pa.string()) for part in parts if len(part)])
        if not len(lines):
            return
        lines = pc.binary_join_element_wise(lines, "\n", "")  # every line ends with \n
        offsets = np.frombuffer(lines.buffers()[1], np.int32)[
            lines.offset:lines.offset + len(lines) + 1].astype(np.int64)
        data = memoryview(lines.buffers()[2])
        session = self._data_session()
        start = 0
        while start < len(lines):
            end = int(np.searchsorted(offsets, offsets[start] + BYTES_PER_REQUEST, side="right"))
            end = min(max(end - 1, start + 1), start + LINES_PER_REQUEST, len(lines))
            self._write_chunk(session, bytes(data[offsets[start]:offsets[end]]))
            start = end

    def _write_chunk(self, session: InfluxSession, body: bytes) -> None:
        session.write(self._database, body)

    # -- reading ---------------------------------------------------------------------------
    def _select(self, measurement: str, sid: str, epoch: int, lo_ns: int, hi_ns: int,
                fields: list[str] = (), limit: int | None = None) -> tuple[dict[str, list], int]:
        return points.select(self._data_session(), self._database, measurement, sid, epoch,
                             lo_ns, hi_ns, fields, limit)

    def read_raw(
        self, stream_id: str, start_us: int | None, end_us: int | None, reverse: bool = False
    ) -> pa.Table:
        with self._lock, _reachable(f"reading raw rows of stream {stream_id!r}"):
            view = self._metadata.view(stream_id)[0] if isinstance(stream_id, str) else None
            bounds = points.bounds(start_us, end_us)
            if view is None or bounds is None:
                return arrow_numpy.empty_table(RAW_SCHEMA)
            kept = self._recent.read(stream_id, view.version, view.store["raw"]["e"],
                                     start_us, end_us, reverse)
            if kept is not None:
                return kept
            columns, count = self._select(RAW_MEASUREMENT, stream_id, view.store["raw"]["e"],
                                          *bounds, fields=points.stored_fields(RAW_SCHEMA))
        if not count:
            return arrow_numpy.empty_table(RAW_SCHEMA)
        return points.raw_table(columns, count, view.raw_visible, reverse)

    def raw_windows(
        self, stream_id: str, start_us: int | None, end_us: int | None, max_rows: int,
        reverse: bool = False,
    ) -> tuple[pa.Table | None, list[tuple[int | None, int | None, int]]]:
        """A range whose points hold at most ``max_rows`` field values (InfluxDB counts those
        itself: an upper bound of its points) is read at once, as is one of at most
        ``max_rows`` points this object still keeps in memory. A larger one is planned in one
        pass over pages of the stream's points in time order (``RAW_PAGE_POINTS`` at a time,
        only their visibility used), or over the kept rows, so a read of any range holds at
        most a page or a window of points."""
        with self._lock, _reachable(f"planning a raw read of stream {stream_id!r}"):
            view = self._metadata.view(stream_id)[0] if isinstance(stream_id, str) else None
            bounds = points.bounds(start_us, end_us)
            if view is None or bounds is None:
                return arrow_numpy.empty_table(RAW_SCHEMA), [(start_us, end_us, 0)]
            epoch = view.store["raw"]["e"]
            small = self._recent.read(stream_id, view.version, epoch, start_us, end_us, reverse)
            if small is None and points.field_values(
                    self._data_session(), self._database, RAW_MEASUREMENT, stream_id, epoch,
                    *bounds) <= max_rows:
                small = self.read_raw(stream_id, start_us, end_us, reverse)
            if small is not None and small.num_rows <= max_rows:
                return small, [(start_us, end_us, small.num_rows)]
            if small is not None:  # rows kept in memory: planned from them, read from them
                times = [np.sort(arrow_numpy.to_numpy(small.column("t")))]
            else:
                times = self._visible_raw_pages(stream_id, epoch, view, *bounds)
            return None, plan_windows(times, start_us, end_us, max_rows)

    def _visible_raw_pages(self, stream_id: str, epoch: int, view: Any, lo_ns: int, hi_ns: int
                           ) -> Iterator[np.ndarray]:
        """The times (µs, sorted) of the visible raw points in ``[lo_ns, hi_ns]``, a page at a
        time; every page holds whole microseconds (the next page starts again at the last
        microsecond read, which may hold more points than the page did)."""
        limit = RAW_PAGE_POINTS
        while True:
            columns, count = self._select(RAW_MEASUREMENT, stream_id, epoch, lo_ns, hi_ns,
                                          fields=points.stored_fields(RAW_SCHEMA), limit=limit)
            if not count:
                return
            shown = np.sort(points.visible_raw_times(columns, view.raw_visible))
            if count < limit:
                yield shown
                return
            last = int(columns["time"].max()) // 1000
            whole = shown[: np.searchsorted(shown, last, side="left")]
            if int(columns["time"].min()) // 1000 == last:  # a page within one microsecond
                limit *= 4
                continue
            yield whole
            lo_ns, limit = last * 1000, RAW_PAGE_POINTS

    def first_raw_time(self, stream_id: str, start_us: int | None) -> int | None:
        """The first points by time from ``start_us`` on: FIRST_POINTS of them, four times as
        many each next round (from the last microsecond read, which may hold more), until a
        visible one shows up or none is left."""
        with self._lock, _reachable(f"reading raw rows of stream {stream_id!r}"):
            view = self._metadata.view(stream_id)[0] if isinstance(stream_id, str) else None
            found = points.bounds(start_us, None)
            if view is None or found is None:
                return None
            (low, high), limit = found, FIRST_POINTS
            while True:
                columns, count = self._select(RAW_MEASUREMENT, stream_id, view.store["raw"]["e"],
                                              low, high, fields=points.stored_fields(RAW_SCHEMA),
                                              limit=limit)
                if not count:
                    return None
                shown = points.visible_raw_times(columns, view.raw_visible)
                if len(shown):
                    return int(shown.min())
                if count < limit:
                    return None
                low, limit = max(low, int(columns["time"].max()) // 1000 * 1000), limit * 4

    def read_level(
        self, level_key: str, stream_id: str, start_us: int | None, end_us: int | None
    ) -> pa.Table | None:
        with self._lock, _reachable(f"reading level {level_key!r} of stream {stream_id!r}"):
            view, schema = self._metadata.view(
                stream_id if isinstance(stream_id, str) else "", level_key)
            if schema is None:
                return None
            bounds = points.bounds(start_us, end_us)
            if view is None or bounds is None:
                return arrow_numpy.empty_table(schema)
            columns, count = self._select(points.level_measurement(level_key), stream_id,
                                          view.store["lv"]["e"], *bounds,
                                          fields=points.stored_fields(schema))
            if not count:
                return arrow_numpy.empty_table(schema)
        return points.level_table(columns, count, schema, view.level_visible(level_key))

    # -- coordination ----------------------------------------------------------------------
    @contextlib.contextmanager
    def maintenance_lock(self, stream_id: str, ttl_seconds: float = 60.0) -> Iterator[None]:
        """A lease row with an expiry, waited for (polling) while another owner holds it.
        Commits made inside are fenced by the lease (see ``PgMetadata.fence``); re-entrant
        per thread."""
        key = (threading.get_ident(), stream_id)
        held = self._leases.get(key)
        if held is not None:
            held.depth += 1
            try:
                yield
            finally:
                held.depth -= 1
            return
        lease = Lease(uuid.uuid4().hex, float(ttl_seconds))
        delay = 0.01
        while not self._take_lease(stream_id, lease):
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
        self._leases[key] = lease
        try:
            yield
        finally:
            del self._leases[key]
            with self._lock:
                self._metadata.release_lease(stream_id, lease)

    def _held_leases(self) -> dict[str, Lease]:
        """The maintenance leases the calling thread holds, by stream (commits are fenced
        by them)."""
        thread = threading.get_ident()
        return {sid: lease for (owner, sid), lease in self._leases.items() if owner == thread}

    def _take_lease(self, stream_id: str, lease: Lease) -> bool:
        with self._lock, _reachable("taking a maintenance lock"):
            return self._metadata.claim_lease(stream_id, lease)

    # -- garbage ---------------------------------------------------------------------------
    def _collect_garbage(self) -> None:
        """Drop the InfluxDB series of deleted streams and of replaced epochs, and delete the
        points that drops by time hide. Best effort and never raising (it runs after commits):
        whatever fails stays recorded and is retried after a later commit."""
        try:
            rows = self._metadata.garbage(GARBAGE_PER_ROUND)
            for row_id, sid, epoch in rows:
                points.drop_series(self._influx(), sid, epoch)
                self._metadata.garbage_dropped(row_id)
            trims = self._metadata.trims(TRIMS_PER_ROUND)
            done = [self._trim(sid) for sid in trims]
            self._garbage_due = (len(rows) == GARBAGE_PER_ROUND or len(trims) == TRIMS_PER_ROUND
                                 or not all(done))
        except Exception:  # anything at all: the batch is already stored
            self._garbage_due = True

    def _trim(self, stream_id: str) -> bool:
        """Delete the points one stream's drops hide, then forget the drops (module
        docstring); False when a commit holds the stream (tried again later). The stream's
        row stays locked meanwhile, so no commit writes a point where points are deleted."""
        with self._metadata.transaction() as cur:
            view, gone = self._metadata.lock_for_trim(cur, stream_id)
            if view is None:
                if gone:
                    self._metadata.trimmed(cur, stream_id, None)
                return gone
            store = view.store
            statements = []
            for t, _, dirty in store["raw"].get("drop", []):
                statements += self._deletions(RAW_MEASUREMENT, stream_id, store["raw"]["e"],
                                              False, t, view.raw_visible if dirty else None)
            for key, reopening, t, _, dirty in store["lv"].get("drop", []):
                statements += self._deletions(points.level_measurement(key), stream_id,
                                              store["lv"]["e"], bool(reopening), t,
                                              view.level_visible(key) if dirty else None)
            points.delete(self._influx(), statements, stream_id)
            store["raw"].pop("drop", None)
            store["lv"].pop("drop", None)
            self._metadata.trimmed(cur, stream_id, store)
        return True

    def _deletions(self, measurement: str, stream_id: str, epoch: int, reopening: bool,
                   t: int, visible: points.Visible | None) -> list[str]:
        """InfluxQL DELETE statements of one drop's hidden points: its whole time range when no
        later batch wrote there (``visible`` None), else the runs of hidden points between the
        visible ones, read for that."""
        found = points.bounds(t, None) if reopening else points.bounds(None, t)
        if found is None:
            return []
        if visible is None:
            return [points.delete_statement(measurement, epoch, *found)]
        fields = points.stored_fields(RAW_SCHEMA) if measurement == RAW_MEASUREMENT else ()
        columns, count = self._select(measurement, stream_id, epoch, *found, fields=fields)
        if not count:
            return []
        return points.hidden_runs(measurement, epoch, columns, visible)


def _drops(batch: WriteBatch, gone: set[str]) -> list[tuple[str, str | None, bool, int]]:
    """The batch's drops by time as ``(stream id, level key or None for raw, reopening, t)``,
    checked before anything is written. A stream the batch deletes, or whose part it clears,
    has nothing left to drop."""
    drops = []
    for sid, t in batch.drop_raw_before.items():
        t = drop_time(t, "drop_raw_before")
        if sid not in gone and sid not in batch.clear_raw:
            drops.append((sid, None, False, t))
    for what, reopening in (("drop_levels_before", False), ("drop_levels_from", True)):
        for key, sid, t in level_drops(getattr(batch, what), what):
            if not isinstance(key, str) or not key:
                raise TypeError(f"{what}: invalid level key {key!r}")
            if sid not in gone and sid not in batch.clear_levels:
                drops.append((sid, key, reopening, t))
    return drops


def _record_drops(drops: list[tuple[str, str | None, bool, int]], stores: dict[str, dict],
                  raw: dict[str, pa.Table], levels: dict[str, tuple],
                  attempt: int) -> list[str]:
    """Record the drops in the stores the commit saves (see ``metadata.add_drop``), after
    marking the older drops the batch's own rows write into; returns the streams given new
    drops (their points are to be deleted after the commit)."""
    spans = {(sid, None): _span(table) for sid, table in raw.items()}
    for key, (_, per_stream) in levels.items():
        spans.update({(sid, key): _span(table) for sid, table in per_stream.items()})
    for (sid, key), span in spans.items():
        if span is not None and sid in stores:
            mark_dirty(stores[sid], key, span)
    for sid, key, reopening, t in drops:
        add_drop(stores[sid], key, reopening, t, attempt, spans.get((sid, key)))
    return sorted({sid for sid, *_ in drops})


def _span(table: pa.Table) -> tuple[int, int] | None:
    if not table.num_rows:
        return None
    t = table.column("t")
    return int(pc.min(t).as_py()), int(pc.max(t).as_py())


def _names(batch: WriteBatch) -> list[str]:
    ids = batch.touched() | set(batch.delete) | {r.stream_id for r, _ in batch.create}
    return sorted(i for i in ids if isinstance(i, str))[:5]

