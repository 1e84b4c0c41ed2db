"""InfluxDB 1.x for datapoints, PostgreSQL for stream metadata: the storage and its commit protocol.

Layout
------
PostgreSQL holds the stream records, this backend's bookkeeping and the small tables of the
commit protocol below (:mod:`.pg_metadata`). InfluxDB holds one measurement for raw points
(``datastream_raw``: fields ``k i f s``) and one per level (``datastream_level_<key>``: the
engine's columns as fields), tagged ``stream_id`` and ``_epoch``, every point with an integer
field ``_batch``. Nulls are missing fields. Names are encoded by :mod:`.line_protocol`; how rows
become points with unique identities, and points rows again, is in :mod:`.influx_points`.

Commit protocol (all-or-nothing as seen by readers)
---------------------------------------------------
1. Lock the batch's stream rows (``SELECT ... FOR UPDATE``, sorted ids) in a transaction.
2. Allocate a batch number ``b`` from a counter and record it as *pending*, with the time span
   it will write per stream, in a separate transaction that commits at once (so the record
   survives whatever follows).
3. Write every point with the field ``_batch = b`` to InfluxDB, in chunks.
4. In the transaction of step 1: apply the MetaUpdates to the locked rows, update ``store``,
   delete the pending record; COMMIT.

Readers read (counter, pending numbers of the stream, epochs) in one statement, then keep only
points with ``_batch <= counter`` whose batch is not pending. A batch that fails anywhere
(InfluxDB killed mid-flush, PostgreSQL gone, process crash) stays pending forever: its points
stay invisible and metadata is untouched. A retry is a new batch; where it writes inside a
failed attempt's span it looks up the ordinals in use there and takes fresh ones, so it is
stored exactly once and never merges with leftovers. If COMMIT itself fails ambiguously, the
pending record tells whether it happened.

``clear_raw`` / ``clear_levels`` switch the stream to a new ``_epoch`` tag in the same commit;
the old epoch's series, and those of deleted streams, are recorded in ``datastream_garbage``
and dropped (``DROP SERIES``) after the commit, retried later if InfluxDB is unreachable.

Operating notes: every stream is one InfluxDB tag value, so servers with more than 100,000
streams need ``max-values-per-tag = 0`` (and ``max-series-per-database`` above the number of
streams times levels). A failed attempt leaves a ``datastream_pending`` row (a few bytes) and
invisible points until its stream is deleted or cleared.
"""

from __future__ import annotations

import contextlib
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

from .. import exceptions
from .. import tags as tag_rules
from . import influx_points as points
from .base import RAW_SCHEMA, Storage, StreamRecord, WriteBatch
from .influx_points import RAW_MEASUREMENT, SLOTS  # noqa: F401 (SLOTS re-exported)
from .pg_metadata import Lease, PgMetadata, StorageUnavailable, clear, dumps, rollback

LINES_PER_REQUEST = 10_000
BYTES_PER_REQUEST = 8 << 20
GARBAGE_PER_ROUND = 1000
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


class InfluxDBStorage(PgMetadata, Storage):
    """Datapoints in InfluxDB 1.x, metadata in PostgreSQL; safe for many processes at once.

    ``connection_influxdb``: keyword arguments of ``influxdb.InfluxDBClient`` (``host``,
    ``port``, ``username``/``user``, ``password``, ``ssl``, ``timeout``...) plus ``database``
    (created if missing). ``connection_metadata``: keyword arguments of ``psycopg2.connect``
    (``host``, ``port``, ``dbname``, ``user``, ``password``...); the database is created if
    missing and the tables on first use. See the module docstring for the commit protocol.
    """

    concurrent_writers = True

    def __init__(self, connection_influxdb: dict[str, Any], connection_metadata: dict[str, Any]):
        self._lock = threading.RLock()
        self._closed = False
        influx = dict(connection_influxdb)
        database = influx.pop("database", None) or influx.pop("dbname", None)
        if not database or not isinstance(database, str):
            raise ValueError("connection_influxdb needs a 'database' name")
        if "user" in influx:
            influx["username"] = influx.pop("user")
        influx.setdefault("timeout", 60)
        self._database = database
        self._client = InfluxDBClient(
            database=database, headers={"Accept": "application/json"}, **influx
        )
        self._influx_ready = False
        self._init_metadata(connection_metadata)
        self._schemas: dict[str, pa.Schema] = {}
        self._leases: dict[tuple[int, str], Lease] = {}
        self._garbage_due = True
        try:
            self._setup()
        except psycopg2.Error as error:
            self.close()
            raise StorageUnavailable(f"cannot use the metadata database: {error}") from error

    def __repr__(self) -> str:
        host = self._pg_options.get("host", "")
        return f"InfluxDBStorage(influxdb={self._database!r}, metadata host={host!r})"

    def _influx(self) -> InfluxDBClient:
        if not self._influx_ready:
            self._client.create_database(self._database)  # a no-op when it exists
            self._influx_ready = True
        return self._client

    def close(self) -> None:
        """Close both PostgreSQL connections and the HTTP session. Idempotent."""
        with self._lock:
            self._closed = True
            self._close_metadata()
            self._client.close()

    # -- stream records --------------------------------------------------------------------
    def find_streams(self, query: dict[str, Any] | None) -> list[StreamRecord]:
        with self._lock, _reachable("finding streams"):
            records = self._find_records(query)
        return [r for r in records if tag_rules.matches(r.tags, query, r.stream_id)]

    def get_stream(self, stream_id: str) -> StreamRecord | None:
        if not isinstance(stream_id, str):
            return None
        with self._lock, _reachable(f"reading stream {stream_id!r}"):
            return self._get_record(stream_id)

    def create_stream(self, record: StreamRecord, query: dict[str, Any]) -> StreamRecord:
        """Serialised with every other creation by an advisory lock (see ``_create_record``)."""
        with self._lock, _reachable("creating a stream"):
            return self._create_record(record, query)

    def set_tags(self, stream_id: str, tags: dict[str, Any]) -> None:
        with self._lock, _reachable(f"setting tags of {stream_id!r}"):
            self._set_tags(stream_id, tags)

    def delete_streams(self, stream_ids: list[str]) -> None:
        """Records go in one transaction (readers no longer see the streams); their InfluxDB
        series are recorded as garbage in it and dropped right after, or later."""
        ids = sorted({i for i in stream_ids if isinstance(i, str)})
        if not ids:
            return
        with self._lock:
            with _reachable("deleting streams"):
                if not self._delete_records(ids):
                    return
            self._garbage_due = True
            self._collect_garbage()

    # -- writing ---------------------------------------------------------------------------
    def commit(self, batch: WriteBatch) -> None:
        """Store a batch by the protocol of the module docstring."""
        if batch.is_empty():
            return
        with self._lock:
            if self._closed:
                raise exceptions.StreamAppendFailed(
                    "the InfluxDB storage is closed; nothing of the batch was stored"
                )
            try:
                self._commit(batch)
            except exceptions.DatastreamException:
                raise
            except Exception as error:
                raise exceptions.StreamAppendFailed(
                    f"storing a batch for streams {_names(batch)} failed, nothing of it is"
                    f" visible: {type(error).__name__}: {error}"
                ) from error
            if self._garbage_due:
                self._collect_garbage()

    def _commit(self, batch: WriteBatch) -> None:
        raw = {sid: points.raw_rows(sid, table) for sid, table in batch.raw.items()}
        raw = {sid: table for sid, table in raw.items() if table.num_rows}
        levels = {key: points.level_rows(key, table) for key, table in batch.levels.items()}
        levels = {key: split for key, split in levels.items() if split[1]}
        written = sorted(set(raw) | {sid for _, rows in levels.values() for sid in rows})
        ids = sorted(set(written) | set(batch.meta) | set(batch.clear_raw)
                     | set(batch.clear_levels))
        con = self._connection()
        attempt = None
        try:
            with con.cursor() as cur:
                rows = self._lock_streams(cur, ids)
                self._fence(cur, ids)
                schemas = self._level_schemas(cur, levels)
                stores = {sid: rows[sid][1] for sid in ids}
                garbage = [(sid, clear(stores[sid], "raw")) for sid in batch.clear_raw]
                garbage += [(sid, clear(stores[sid], "lv")) for sid in batch.clear_levels]
                if written:
                    spans = points.spans(raw, levels)
                    risky = self._pending_spans(cur, written)
                    attempt = self._begin_attempt(spans)
                    lines = ([points.raw_lines(raw, stores, risky, attempt, self._occupied)]
                             if raw else [])
                    lines += [points.level_lines(key, per_stream, stores, risky, attempt,
                                                 self._occupied)
                              for key, (_, per_stream) in levels.items()]
                    self._write(lines)
                    self._end_attempt(cur, attempt)
                updates = []
                for sid in ids:
                    meta = rows[sid][0]
                    if sid in batch.meta:
                        meta = batch.meta[sid].apply_to(meta)
                    updates.append((sid, dumps(meta), dumps(stores[sid])))
                self._save_streams(cur, updates, garbage)
        except BaseException:
            rollback(con)
            raise
        try:
            con.commit()
        except psycopg2.Error as error:
            if attempt is not None and self._attempt_committed(attempt):
                return  # COMMIT reached the server before the connection failed
            raise exceptions.StreamAppendFailed(
                f"committing metadata for streams {ids} failed ({error}); if the server did"
                " commit, the batch is complete, otherwise nothing of it is visible"
            ) from error
        self._schemas.update(schemas)
        self._garbage_due = self._garbage_due or bool(garbage)

    def _occupied(self, measurement: str, sid: str, epoch: int, times: np.ndarray) -> np.ndarray:
        """Highest ordinal stored at each of ``times`` (-1 where none), invisible points
        included: InfluxDB merges the fields of points that share an identity, so a new point
        must never take the identity of any stored one."""
        columns, count = self._select(measurement, sid, epoch, *points.ordinal_window(times))
        return points.highest_ordinals(columns, count, times)

    def _write(self, parts: list[pa.Array]) -> None:
        """POST the lines in requests of at most LINES_PER_REQUEST lines and BYTES_PER_REQUEST
        bytes (InfluxDB refuses bodies over ``max-body-size``, 25 MB by default)."""
        lines = pa.concat_arrays([part.cast(pa.string()) for part in parts if len(part)])
        sizes = np.cumsum(pc.binary_length(lines).to_numpy(zero_copy_only=False) + 1)
        client = self._influx()
        start = 0
        while start < len(lines):
            base = sizes[start - 1] if start else 0
            end = int(np.searchsorted(sizes, base + BYTES_PER_REQUEST, side="right"))
            end = min(max(end, start + 1), start + LINES_PER_REQUEST)
            self._write_chunk(client, "\n".join(lines.slice(start, end - start).to_pylist()))
            start = end

    def _write_chunk(self, client: InfluxDBClient, body: str) -> None:
        client.write(body, params={"db": self._database, "precision": "n"}, protocol="line")

    # -- reading ---------------------------------------------------------------------------
    def _select(self, measurement: str, sid: str, epoch: int, lo_ns: int, hi_ns: int,
                fields: list[str] = ()) -> tuple[dict[str, list], int]:
        return points.select(self._influx(), self._database, measurement, sid, epoch,
                             lo_ns, hi_ns, fields)

    def read_raw(
        self, stream_id: str, start_us: int | None, end_us: int | None, reverse: bool = False
    ) -> pa.Table:
        with self._lock, _reachable(f"reading raw rows of stream {stream_id!r}"):
            view = self._view(stream_id)[0] if isinstance(stream_id, str) else None
            bounds = points.bounds(start_us, end_us)
            if view is None or bounds is None:
                return RAW_SCHEMA.empty_table()
            columns, count = self._select(RAW_MEASUREMENT, stream_id, view.store["raw"]["e"],
                                          *bounds, fields=points.stored_fields(RAW_SCHEMA))
        if not count:
            return RAW_SCHEMA.empty_table()
        return points.raw_table(columns, count, view.visible, reverse)

    def read_level(
        self, level_key: str, stream_id: str, start_us: int | None, end_us: int | None
    ) -> pa.Table | None:
        with self._lock, _reachable(f"reading level {level_key!r} of stream {stream_id!r}"):
            view, schema = self._view(stream_id if isinstance(stream_id, str) else "", level_key)
            if schema is None:
                return None
            bounds = points.bounds(start_us, end_us)
            if view is None or bounds is None:
                return schema.empty_table()
            columns, count = self._select(points.level_measurement(level_key), stream_id,
                                          view.store["lv"]["e"], *bounds,
                                          fields=points.stored_fields(schema))
            if not count:
                return schema.empty_table()
        return points.level_table(columns, count, schema, view.visible)

    # -- coordination ----------------------------------------------------------------------
    @contextlib.contextmanager
    def maintenance_lock(self, stream_id: str, ttl_seconds: float = 60.0) -> Iterator[None]:
        """A lease row with an expiry, waited for (polling) while another owner holds it.
        Commits made inside are fenced by the lease (see ``_fence``); re-entrant per thread."""
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
            self._release_lease(stream_id, lease)

    def _take_lease(self, stream_id: str, lease: Lease) -> bool:
        with self._lock, _reachable("taking a maintenance lock"):
            return self._claim_lease(stream_id, lease)

    # -- garbage ---------------------------------------------------------------------------
    def _collect_garbage(self) -> None:
        """Drop the InfluxDB series of deleted streams and of replaced epochs. Best effort:
        whatever fails stays recorded and is retried after a later commit or deletion."""
        try:
            rows = self._garbage(GARBAGE_PER_ROUND)
            for row_id, sid, epoch in rows:
                points.drop_series(self._influx(), sid, epoch)
                self._garbage_dropped(row_id)
            self._garbage_due = len(rows) == GARBAGE_PER_ROUND
        except (*INFLUX_ERRORS, psycopg2.Error):
            self._garbage_due = True


def _names(batch: WriteBatch) -> list[str]:
    ids = set(batch.raw) | set(batch.meta) | set(batch.clear_raw) | set(batch.clear_levels)
    return sorted(ids)[:5]

