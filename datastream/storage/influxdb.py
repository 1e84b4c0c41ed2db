"""InfluxDB 1.x for datapoints, PostgreSQL for stream metadata.

Layout
------
PostgreSQL (psycopg2) holds ``datastream_streams`` (creation ``seq``, ``stream_id``, tags twice:
as given in ``tags_text`` and in the GIN-indexed query form ``tags``, see
:mod:`.pg_query`; ``meta`` as exact JSON text; ``store``, this backend's bookkeeping) and the
small tables of the commit protocol below. InfluxDB holds one measurement for raw points
(``datastream_raw``: fields ``k i f s``) and one per level (``datastream_level_<key>``: the
engine's columns as fields), tagged ``stream_id`` and ``_epoch``, every point with an integer
field ``_batch``. Nulls are missing fields. Names are encoded by :mod:`.line_protocol`.

Point identities
----------------
InfluxDB keeps one point per (measurement, tag set, time) and *merges the fields* of a point
written again at the same identity, so this backend never writes over a stored point. Points
go out with nanosecond precision at ``t_us * 1000 + ordinal % 500``, plus an ``_ord`` tag
``ordinal // 500`` when that is not 0; reads floor times back to microseconds. For raw points
the ordinal is the insertion order among points sharing a microsecond (the stream's tail in
``store`` gives it for in-order appends; older times are looked up). A level row that is
written again gets the next free ordinal at its time, and readers take the visible version of
the latest batch, so the old version stays valid until the new one is committed.

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
import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import msgpack
import numpy as np
import psycopg2
import psycopg2.errors
import psycopg2.extras
import psycopg2.sql
import pyarrow as pa
import pyarrow.compute as pc
import requests
from influxdb import InfluxDBClient
from influxdb.exceptions import InfluxDBClientError, InfluxDBServerError

from .. import exceptions
from .. import tags as tag_rules
from ..granularity import MAX_US, MIN_US
from . import line_protocol as lp
from . import pg_query
from .base import RAW_SCHEMA, Storage, StreamRecord, WriteBatch

SCHEMA_VERSION = "1"
SLOTS = 500  # equal-timestamp ordinals kept in the sub-microsecond part of the time
RAW_MEASUREMENT = "datastream_raw"
LEVEL_MEASUREMENT = "datastream_level_"
STREAM_TAG, EPOCH_TAG, ORD_TAG, BATCH_FIELD = "stream_id", "_epoch", "_ord", "_batch"
MIN_NS, MAX_NS = -(2**63) + 2, 2**63 - 2  # InfluxDB's valid time range
LINES_PER_REQUEST = 10_000
BYTES_PER_REQUEST = 8 << 20
ROWS_PER_CHUNK = 5_000
LOCK_CLASS = 0x6473  # advisory lock namespace ("ds")
SCHEMA_LOCK, CREATE_LOCK = 1, 2
INFLUX_ERRORS = (InfluxDBClientError, InfluxDBServerError, requests.RequestException, OSError)

_DDL = [
    "CREATE TABLE IF NOT EXISTS datastream_info (key text PRIMARY KEY, value text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS datastream_streams (seq bigserial PRIMARY KEY,"
    " stream_id text NOT NULL UNIQUE, tags jsonb NOT NULL, tags_text json NOT NULL,"
    " meta json NOT NULL, store jsonb NOT NULL)",
    "CREATE INDEX IF NOT EXISTS datastream_streams_tags ON datastream_streams"
    " USING GIN (tags jsonb_path_ops)",
    "CREATE TABLE IF NOT EXISTS datastream_batches (id int PRIMARY KEY CHECK (id = 1),"
    " last bigint NOT NULL)",
    "INSERT INTO datastream_batches VALUES (1, 0) ON CONFLICT DO NOTHING",
    "CREATE TABLE IF NOT EXISTS datastream_pending (batch bigint PRIMARY KEY,"
    " stream_ids text[] NOT NULL, spans jsonb NOT NULL,"
    " started timestamptz NOT NULL DEFAULT now())",
    "CREATE INDEX IF NOT EXISTS datastream_pending_streams ON datastream_pending"
    " USING GIN (stream_ids)",
    "CREATE TABLE IF NOT EXISTS datastream_levels (level_key text PRIMARY KEY,"
    " arrow_schema bytea NOT NULL)",
    "CREATE TABLE IF NOT EXISTS datastream_locks (stream_id text PRIMARY KEY,"
    " owner text NOT NULL, expires timestamptz NOT NULL)",
    "CREATE TABLE IF NOT EXISTS datastream_garbage (id bigserial PRIMARY KEY,"
    " stream_id text NOT NULL, epoch bigint)",
]


class StorageUnavailable(exceptions.DatastreamException):
    """The metadata database cannot be reached or the storage was closed."""


@contextlib.contextmanager
def _reachable(what: str) -> Iterator[None]:
    """Server failures outside commits as StorageUnavailable, naming what was being done."""
    try:
        yield
    except (psycopg2.OperationalError, psycopg2.InterfaceError) as error:
        raise StorageUnavailable(f"{what}: PostgreSQL failed: {error}") from error
    except INFLUX_ERRORS as error:
        raise StorageUnavailable(f"{what}: InfluxDB failed: {error}") from error


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


@dataclasses.dataclass
class _Lease:
    owner: str
    ttl: float
    depth: int = 0


@dataclasses.dataclass
class _View:
    """What a reader needs from PostgreSQL, read in one statement: the stream's bookkeeping and
    which batch numbers are visible."""

    store: dict[str, Any]
    last: int
    pending: list[int]

    def visible(self, batches: np.ndarray) -> np.ndarray:
        mask = batches <= self.last
        if self.pending:
            mask &= ~np.isin(batches, np.array(self.pending, dtype=np.int64))
        return mask


def _new_store() -> dict[str, Any]:
    """Bookkeeping of a new stream: epoch counter, raw epoch and tail (latest committed t and
    how many points share it), level epoch and per-level high-water marks."""
    return {"next": 2, "raw": {"e": 0, "t": None, "n": 0}, "lv": {"e": 1, "hwm": {}}}


class InfluxDBStorage(Storage):
    """Datapoints in InfluxDB 1.x, metadata in PostgreSQL; safe for many processes at once.

    ``connection_influxdb``: keyword arguments of ``influxdb.InfluxDBClient`` (``host``,
    ``port``, ``username``/``user``, ``password``, ``ssl``, ``timeout``...) plus ``database``
    (created if missing). ``connection_metadata``: keyword arguments of ``psycopg2.connect``
    (``host``, ``port``, ``dbname``, ``user``, ``password``...); the database is created if
    missing and the tables on first use. See the module docstring for the commit protocol.
    """

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
        self._pg_options = dict(connection_metadata)
        self._pg: Any = None
        self._pg_aux: Any = None
        self._schemas: dict[str, pa.Schema] = {}
        self._leases: dict[tuple[int, str], _Lease] = {}
        self._garbage_due = True
        try:
            self._setup()
        except psycopg2.Error as error:
            self.close()
            raise StorageUnavailable(f"cannot use the metadata database: {error}") from error

    def __repr__(self) -> str:
        host = self._pg_options.get("host", "")
        return f"InfluxDBStorage(influxdb={self._database!r}, metadata host={host!r})"

    # -- connections -----------------------------------------------------------------------
    def _connect(self) -> Any:
        try:
            return psycopg2.connect(**self._pg_options)
        except psycopg2.OperationalError as error:
            name = self._pg_options.get("dbname") or self._pg_options.get("database")
            if not name or f'database "{name}" does not exist' not in str(error):
                raise
        self._create_database(name)
        return psycopg2.connect(**self._pg_options)

    def _create_database(self, name: str) -> None:
        options = {k: v for k, v in self._pg_options.items() if k not in ("dbname", "database")}
        con = psycopg2.connect(dbname="postgres", **options)
        try:
            con.autocommit = True
            with con.cursor() as cur:
                cur.execute(psycopg2.sql.SQL("CREATE DATABASE {}").format(
                    psycopg2.sql.Identifier(name)))
        except psycopg2.errors.DuplicateDatabase:
            pass
        finally:
            con.close()

    def _connection(self) -> Any:
        """The transaction connection, reconnected when the server dropped it."""
        if self._closed:
            raise StorageUnavailable("the InfluxDB storage is closed")
        if self._pg is None or self._pg.closed:
            self._pg = self._connect()
        return self._pg

    def _autocommit(self) -> Any:
        """A second connection for records that must commit while a transaction is open."""
        if self._closed:
            raise StorageUnavailable("the InfluxDB storage is closed")
        if self._pg_aux is None or self._pg_aux.closed:
            self._pg_aux = self._connect()
            self._pg_aux.autocommit = True
        return self._pg_aux

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        con = self._connection()
        try:
            with con.cursor() as cur:
                yield cur
            con.commit()
        except BaseException:
            _rollback(con)
            raise

    def _fetch(self, statement: str, params: list[Any] | tuple = ()) -> list[tuple]:
        """Run one read-only statement; retried once on a fresh connection if the server
        dropped the old one (a restart)."""
        for attempt in (1, 2):
            try:
                with self._transaction() as cur:
                    cur.execute(statement, params)
                    return cur.fetchall()
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                if attempt == 2 or not (self._pg is None or self._pg.closed):
                    raise
        raise AssertionError("unreachable")

    def _setup(self) -> None:
        with self._lock, self._transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_CLASS, SCHEMA_LOCK))
            cur.execute("SHOW server_encoding")
            if cur.fetchone()[0] != "UTF8":
                raise StorageUnavailable("the metadata database must use the UTF8 encoding")
            for statement in _DDL:
                cur.execute(statement)
            cur.execute("SELECT value FROM datastream_info WHERE key = 'schema_version'")
            found = cur.fetchone()
            if found is None:
                cur.execute("INSERT INTO datastream_info VALUES ('schema_version', %s)",
                            [SCHEMA_VERSION])
            elif found[0] != SCHEMA_VERSION:
                raise StorageUnavailable(
                    f"metadata schema version {found[0]}, this datastream reads {SCHEMA_VERSION}"
                )

    def _influx(self) -> InfluxDBClient:
        if not self._influx_ready:
            self._client.create_database(self._database)  # a no-op when it exists
            self._influx_ready = True
        return self._client

    def close(self) -> None:
        """Close both PostgreSQL connections and the HTTP session. Idempotent."""
        with self._lock:
            self._closed = True
            for con in (self._pg, self._pg_aux):
                if con is not None and not con.closed:
                    con.close()
            self._pg = self._pg_aux = None
            self._client.close()

    # -- stream records --------------------------------------------------------------------
    def find_streams(self, query: dict[str, Any] | None) -> list[StreamRecord]:
        where, params = pg_query.translate(query)
        with self._lock, _reachable("finding streams"):
            rows = self._fetch(
                "SELECT stream_id, tags_text, meta FROM datastream_streams"
                f" WHERE {where} ORDER BY seq", params
            )
        records = [StreamRecord(*row) for row in rows]
        return [r for r in records if tag_rules.matches(r.tags, query, r.stream_id)]

    def get_stream(self, stream_id: str) -> StreamRecord | None:
        if not isinstance(stream_id, str):
            return None
        with self._lock, _reachable(f"reading stream {stream_id!r}"):
            rows = self._fetch(
                "SELECT stream_id, tags_text, meta FROM datastream_streams WHERE stream_id = %s",
                [stream_id],
            )
        return StreamRecord(*rows[0]) if rows else None

    def create_stream(self, record: StreamRecord, query: dict[str, Any]) -> StreamRecord:
        """One advisory lock serialises every creation, so no two processes create streams
        matching each other's query (stronger than per-query locking, and creation is rare)."""
        tags_text, meta_text = _dumps(record.tags), _dumps(record.meta)
        where, params = pg_query.translate(query)
        with self._lock, _reachable("creating a stream"), self._transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_CLASS, CREATE_LOCK))
            cur.execute(
                "SELECT stream_id, tags_text, meta FROM datastream_streams"
                f" WHERE {where} ORDER BY seq", params
            )
            for row in cur.fetchall():
                existing = StreamRecord(*row)
                if tag_rules.matches(existing.tags, query, existing.stream_id):
                    return existing
            try:
                cur.execute(
                    "INSERT INTO datastream_streams (stream_id, tags, tags_text, meta, store)"
                    " VALUES (%s, %s::jsonb, %s::json, %s::json, %s::jsonb)",
                    [record.stream_id, pg_query.query_json(record.tags), tags_text, meta_text,
                     _dumps(_new_store())],
                )
            except psycopg2.errors.UniqueViolation:
                raise ValueError(f"stream id {record.stream_id!r} already exists") from None
        return StreamRecord(record.stream_id, json.loads(tags_text), json.loads(meta_text))

    def set_tags(self, stream_id: str, tags: dict[str, Any]) -> None:
        with self._lock, _reachable(f"setting tags of {stream_id!r}"), self._transaction() as cur:
            cur.execute(
                "UPDATE datastream_streams SET tags = %s::jsonb, tags_text = %s::json"
                " WHERE stream_id = %s",
                [pg_query.query_json(tags), _dumps(tags), stream_id],
            )
            if cur.rowcount == 0:
                raise exceptions.StreamNotFound(f"stream {stream_id!r} not found")

    def delete_streams(self, stream_ids: list[str]) -> None:
        """Records go in one transaction (readers no longer see the streams); their InfluxDB
        series are recorded as garbage in it and dropped right after, or later."""
        ids = sorted({i for i in stream_ids if isinstance(i, str)})
        if not ids:
            return
        with self._lock:
            with _reachable("deleting streams"), self._transaction() as cur:
                cur.execute(
                    "SELECT stream_id FROM datastream_streams WHERE stream_id = ANY(%s)"
                    " ORDER BY stream_id FOR UPDATE", [ids]
                )
                found = [row[0] for row in cur.fetchall()]
                if not found:
                    return
                cur.execute("DELETE FROM datastream_streams WHERE stream_id = ANY(%s)", [found])
                cur.execute("DELETE FROM datastream_locks WHERE stream_id = ANY(%s)", [found])
                cur.execute("DELETE FROM datastream_pending WHERE stream_ids <@ %s::text[]",
                            [found])
                cur.execute(
                    "INSERT INTO datastream_garbage (stream_id, epoch)"
                    " SELECT unnest(%s::text[]), NULL", [found]
                )
            self._garbage_due = True
            self._collect_garbage()

    # -- writing ---------------------------------------------------------------------------
    def commit(self, batch: WriteBatch) -> None:
        """Store a batch by the protocol of the module docstring."""
        if batch.is_empty():
            return
        with self._lock:
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
        raw = {sid: _raw_rows(sid, table) for sid, table in batch.raw.items()}
        raw = {sid: table for sid, table in raw.items() if table.num_rows}
        levels = {key: _level_rows(key, table) for key, table in batch.levels.items()}
        levels = {key: split for key, split in levels.items() if split[1]}
        written = sorted(set(raw) | {sid for _, rows in levels.values() for sid in rows})
        ids = sorted(set(written) | set(batch.meta) | set(batch.clear_raw)
                     | set(batch.clear_levels))
        con = self._connection()
        attempt = None
        try:
            with con.cursor() as cur:
                cur.execute(
                    "SELECT stream_id, meta, store FROM datastream_streams"
                    " WHERE stream_id = ANY(%s) ORDER BY stream_id FOR UPDATE", [ids]
                )
                rows = {sid: (meta, store) for sid, meta, store in cur.fetchall()}
                missing = [sid for sid in ids if sid not in rows]
                if missing:
                    raise exceptions.StreamNotFound(
                        f"stream {missing[0]!r} not found; nothing of the batch was stored"
                    )
                self._fence(cur, ids)
                schemas = self._level_schemas(cur, levels)
                stores = {sid: rows[sid][1] for sid in ids}
                garbage = [(sid, _clear(stores[sid], "raw")) for sid in batch.clear_raw]
                garbage += [(sid, _clear(stores[sid], "lv")) for sid in batch.clear_levels]
                if written:
                    spans = _spans(raw, levels)
                    risky = self._pending_spans(cur, written)
                    attempt = self._begin_attempt(spans)
                    lines = [self._raw_lines(raw, stores, risky, attempt)] if raw else []
                    lines += [self._level_lines(key, per_stream, stores, risky, attempt)
                              for key, (_, per_stream) in levels.items()]
                    self._write(lines)
                    cur.execute("DELETE FROM datastream_pending WHERE batch = %s", [attempt])
                updates = []
                for sid in ids:
                    meta = rows[sid][0]
                    if sid in batch.meta:
                        meta = batch.meta[sid].apply_to(meta)
                    updates.append((sid, _dumps(meta), _dumps(stores[sid])))
                psycopg2.extras.execute_values(
                    cur,
                    "UPDATE datastream_streams AS s SET meta = u.meta::json,"
                    " store = u.store::jsonb FROM (VALUES %s) AS u(stream_id, meta, store)"
                    " WHERE s.stream_id = u.stream_id", updates,
                )
                if garbage:
                    psycopg2.extras.execute_values(
                        cur, "INSERT INTO datastream_garbage (stream_id, epoch) VALUES %s", garbage
                    )
        except BaseException:
            _rollback(con)
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

    def _begin_attempt(self, spans: dict[str, list[int]]) -> int:
        """A new batch number, recorded as pending with the time span it writes per stream,
        and committed before any point is written."""
        with self._autocommit().cursor() as cur:
            cur.execute(
                "WITH b AS (UPDATE datastream_batches SET last = last + 1 WHERE id = 1"
                " RETURNING last) INSERT INTO datastream_pending (batch, stream_ids, spans)"
                " SELECT last, %s, %s::jsonb FROM b RETURNING batch",
                [sorted(spans), _dumps(spans)],
            )
            return cur.fetchone()[0]

    def _attempt_committed(self, attempt: int) -> bool:
        try:
            rows = self._fetch("SELECT 1 FROM datastream_pending WHERE batch = %s", [attempt])
        except psycopg2.Error:
            return False
        return not rows

    @staticmethod
    def _pending_spans(cur: Any, stream_ids: list[str]) -> dict[str, list[list[int]]]:
        """Time spans (µs) where failed attempts may have left invisible points, per stream.
        Under the stream locks no attempt on these streams is in flight."""
        cur.execute("SELECT spans FROM datastream_pending WHERE stream_ids && %s::text[]",
                    [stream_ids])
        result: dict[str, list[list[int]]] = {}
        for (spans,) in cur.fetchall():
            for sid, span in spans.items():
                result.setdefault(sid, []).append(span)
        return result

    def _fence(self, cur: Any, stream_ids: list[str]) -> None:
        """Inside a maintenance lock, commit only while this process still owns the lease; the
        lock row stays locked until COMMIT, so nobody can take it over meanwhile."""
        thread = threading.get_ident()
        for sid in stream_ids:
            lease = self._leases.get((thread, sid))
            if lease is None:
                continue
            cur.execute(
                "UPDATE datastream_locks SET expires = clock_timestamp() + %s * interval '1 s'"
                " WHERE stream_id = %s AND owner = %s RETURNING 1", [lease.ttl, sid, lease.owner]
            )
            if cur.fetchone() is None:
                raise exceptions.LockExpiredMidMaintenance(
                    f"the maintenance lock of stream {sid!r} expired and was taken over;"
                    " nothing of the batch was stored"
                )

    def _level_schemas(self, cur: Any, levels: dict[str, tuple]) -> dict[str, pa.Schema]:
        """Stored Arrow schema of each level written, widened by new columns. The schema row is
        locked only when it has to change, so writers of known columns never wait on it."""
        result = {}
        for key in sorted(levels):  # one lock order for every writer
            incoming = levels[key][0]
            known = self._schemas.get(key)
            if known is not None and _merge_schema(key, known, incoming) is known:
                result[key] = known
                continue
            cur.execute(
                "INSERT INTO datastream_levels VALUES (%s, %s) ON CONFLICT DO NOTHING",
                [key, incoming.serialize().to_pybytes()],
            )
            cur.execute(
                "SELECT arrow_schema FROM datastream_levels WHERE level_key = %s FOR UPDATE",
                [key],
            )
            stored = _read_schema(cur.fetchone()[0])
            merged = _merge_schema(key, stored, incoming)
            if merged is not stored:
                cur.execute("UPDATE datastream_levels SET arrow_schema = %s WHERE level_key = %s",
                            [merged.serialize().to_pybytes(), key])
            result[key] = merged
        return result

    def _raw_lines(self, raw: dict[str, pa.Table], stores: dict, risky: dict,
                   attempt: int) -> pa.Array:
        """Lines of all raw points of a batch, built column-wise in one go."""
        series, times, ordinals = [], [], []
        for sid, table in raw.items():
            state = stores[sid]["raw"]
            t = table.column("t").to_numpy()
            times.append(t)
            ordinals.append(self._raw_ordinals(sid, state, t, risky.get(sid, [])))
            series.append(_series(RAW_MEASUREMENT, sid, state["e"]))
        table = pa.concat_tables(raw.values())
        fields = [column for name in ("k", "i", "f", "s")
                  for column in lp.field_columns(name, table.column(name).combine_chunks())]
        return _lines(series, times, ordinals, fields, attempt)

    def _raw_ordinals(self, sid: str, state: dict, t: np.ndarray,
                      risky: list[list[int]]) -> np.ndarray:
        """Insertion ordinals of sorted raw times, above every point stored at the same
        microsecond; updates the stream's tail (latest time, next ordinal there) in ``state``.
        Only times before the tail or inside a failed attempt's span need a look at InfluxDB."""
        starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
        group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(t)]))
        group_t = t[starts]
        base = np.zeros(len(starts), dtype=np.int64)
        tail_t = state["t"]
        look = _within(group_t, risky)
        if tail_t is not None:
            base[group_t == tail_t] = state["n"]
            look |= group_t < tail_t
        if look.any():
            base[look] = self._occupied(RAW_MEASUREMENT, sid, state["e"], group_t[look]) + 1
        if tail_t is None or group_t[-1] >= tail_t:
            state["t"], state["n"] = int(group_t[-1]), int(base[-1] + len(t) - starts[-1])
        return np.arange(len(t)) - starts[group] + base[group]

    def _level_lines(self, key: str, per_stream: dict[str, pa.Table], stores: dict,
                     risky: dict, attempt: int) -> pa.Array:
        """A level row is never overwritten in place: a new version gets the next free ordinal
        at its time, and readers take the visible version of the latest batch."""
        measurement = _level_measurement(key)
        series, times, ordinals = [], [], []
        for sid, table in per_stream.items():
            state = stores[sid]["lv"]
            t = table.column("t").to_numpy()
            ordinal = np.zeros(len(t), dtype=np.int64)
            hwm = state["hwm"].get(key)
            look = _within(t, risky.get(sid, []))
            if hwm is not None:
                look |= t <= hwm
            if look.any():
                ordinal[look] = self._occupied(measurement, sid, state["e"], t[look]) + 1
            state["hwm"][key] = int(t.max()) if hwm is None else max(hwm, int(t.max()))
            series.append(_series(measurement, sid, state["e"]))
            times.append(t)
            ordinals.append(ordinal)
        table = pa.concat_tables(per_stream.values())
        fields = [column for name in table.column_names if name != "t"
                  for column in lp.field_columns(name, table.column(name).combine_chunks())]
        return _lines(series, times, ordinals, fields, attempt)

    def _occupied(self, measurement: str, sid: str, epoch: int, times: np.ndarray) -> np.ndarray:
        """Highest ordinal stored at each of ``times`` (-1 where none), invisible points
        included: InfluxDB merges the fields of points that share an identity, so a new point
        must never take the identity of any stored one."""
        hi = min(MAX_NS, int(times.max()) * 1000 + SLOTS - 1)
        columns, count = self._select(measurement, sid, epoch, int(times.min()) * 1000, hi)
        if not count:
            return np.full(len(times), -1, dtype=np.int64)
        t_us, ordinals = _positions(columns)
        order = np.lexsort((ordinals, t_us))
        t_us, ordinals = t_us[order], ordinals[order]
        last = np.r_[t_us[1:] != t_us[:-1], True]
        known_t, known_max = t_us[last], ordinals[last]
        index = np.clip(np.searchsorted(known_t, times), 0, len(known_t) - 1)
        return np.where(known_t[index] == times, known_max[index], -1)

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
    def _view(self, stream_id: str, level_key: str | None = None) -> tuple[_View | None, Any]:
        """The stream's visibility view and, with ``level_key``, the stored level schema
        (None when the level was never written), read in one statement."""
        rows = self._fetch(
            "SELECT s.store, b.last, ARRAY(SELECT p.batch FROM datastream_pending p"
            " WHERE p.stream_ids @> ARRAY[s.stream_id]),"
            " (SELECT arrow_schema FROM datastream_levels WHERE level_key = %s)"
            " FROM datastream_batches b LEFT JOIN datastream_streams s ON s.stream_id = %s"
            " WHERE b.id = 1", [level_key, stream_id]
        )
        store_json, last, pending, schema = rows[0]
        view = None if store_json is None else _View(store_json, last, pending)
        return view, None if schema is None else _read_schema(schema)

    def _select(self, measurement: str, sid: str, epoch: int, lo_ns: int, hi_ns: int,
                fields: list[str] = ()) -> tuple[dict[str, list], int]:
        """Points of one stream epoch with ``lo_ns <= time <= hi_ns``, as columns: the time,
        the batch number, the ``_ord`` tag and the given (encoded) fields. Values travel as
        bound parameters; the time range is always explicit."""
        names = [BATCH_FIELD, *fields, ORD_TAG]
        query = (
            f"SELECT {', '.join(map(lp.quote_identifier, names))}"
            f" FROM {lp.quote_identifier(measurement)} WHERE"
            f" {lp.quote_identifier(STREAM_TAG)} = $sid AND {lp.quote_identifier(EPOCH_TAG)} ="
            " $epoch AND time >= $lo AND time <= $hi"
        )
        bind = {"sid": lp.encode_name(sid), "epoch": str(epoch), "lo": lo_ns, "hi": hi_ns}
        parts: list[list] = []
        for series in self._query(query, bind):
            values = series.get("values")
            if values:
                if series["columns"] != ["time", *names]:
                    raise ValueError(f"unexpected columns {series['columns']} from InfluxDB")
                parts.append(values)
        rows = [row for part in parts for row in part] if len(parts) != 1 else parts[0]
        if not rows:
            return {}, 0
        return dict(zip(["time", *names], map(list, zip(*rows)))), len(rows)

    def _query(self, query: str, bind: dict[str, Any]) -> Iterator[dict]:
        """Series of a chunked InfluxQL query, streamed as MessagePack (a third of the decoding
        time of JSON, and types survive: 1.0 stays a float). The client's ``query`` cannot
        stream MessagePack and its chunked JSON reader drops errors, so this sends the request
        on the client's own session and settings."""
        client = self._influx()
        params = {"q": query, "db": self._database, "epoch": "ns", "chunked": "true",
                  "chunk_size": ROWS_PER_CHUNK, "params": json.dumps(bind)}
        headers = {**client._headers, "Accept": "application/x-msgpack"}
        auth = None
        if "Authorization" not in headers and None not in (client._username, client._password):
            auth = (client._username, client._password)
        response = client._session.get(
            f"{client._baseurl}/query", params=params, headers=headers, auth=auth, stream=True,
            verify=client._verify_ssl, timeout=client._timeout, proxies=client._proxies,
        )
        with contextlib.closing(response):
            if response.status_code != 200:
                error = InfluxDBServerError if response.status_code >= 500 else InfluxDBClientError
                raise error(f"query failed ({response.status_code}): {response.content[:500]!r}")
            if "msgpack" in response.headers.get("Content-Type", ""):
                documents = _msgpack_documents(response)
            else:
                documents = _json_lines(response)
            for data in documents:
                if "error" in data:
                    raise InfluxDBClientError(data["error"])
                for result in data.get("results", []):
                    if "error" in result:
                        raise InfluxDBClientError(result["error"])
                    yield from result.get("series", [])

    def read_raw(
        self, stream_id: str, start_us: int | None, end_us: int | None, reverse: bool = False
    ) -> pa.Table:
        with self._lock, _reachable(f"reading raw rows of stream {stream_id!r}"):
            view = self._view(stream_id)[0] if isinstance(stream_id, str) else None
            bounds = _bounds(start_us, end_us)
            if view is None or bounds is None:
                return RAW_SCHEMA.empty_table()
            columns, count = self._select(RAW_MEASUREMENT, stream_id, view.store["raw"]["e"],
                                          *bounds, fields=_stored_fields(RAW_SCHEMA))
        if not count:
            return RAW_SCHEMA.empty_table()
        t_us, ordinals = _positions(columns)
        rows = np.flatnonzero(view.visible(np.array(columns[BATCH_FIELD], dtype=np.int64)))
        order = np.lexsort((ordinals[rows], -t_us[rows] if reverse else t_us[rows]))
        rows = rows[order]
        arrays = [pa.array(t_us[rows], pa.int64())]
        for field in list(RAW_SCHEMA)[1:]:
            arrays.append(_column(columns, field, count).take(pa.array(rows)))
        return pa.Table.from_arrays(arrays, schema=RAW_SCHEMA)

    def read_level(
        self, level_key: str, stream_id: str, start_us: int | None, end_us: int | None
    ) -> pa.Table | None:
        with self._lock, _reachable(f"reading level {level_key!r} of stream {stream_id!r}"):
            view, schema = self._view(stream_id if isinstance(stream_id, str) else "", level_key)
            if schema is None:
                return None
            bounds = _bounds(start_us, end_us)
            if view is None or bounds is None:
                return schema.empty_table()
            columns, count = self._select(_level_measurement(level_key), stream_id,
                                          view.store["lv"]["e"], *bounds,
                                          fields=_stored_fields(schema))
            if not count:
                return schema.empty_table()
        t_us, rows = _latest_versions(columns, view)
        arrays = []
        for field in schema:
            if field.name == "t":
                arrays.append(pa.array(t_us[rows], pa.int64()).cast(field.type))
            else:
                arrays.append(_column(columns, field, count).take(pa.array(rows)))
        return pa.Table.from_arrays(arrays, schema=schema)

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
        lease = _Lease(uuid.uuid4().hex, float(ttl_seconds))
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

    def _take_lease(self, stream_id: str, lease: _Lease) -> bool:
        with self._lock, _reachable("taking a maintenance lock"), self._transaction() as cur:
            cur.execute(
                "INSERT INTO datastream_locks VALUES (%s, %s, clock_timestamp() + %s *"
                " interval '1 s') ON CONFLICT (stream_id) DO UPDATE SET owner = EXCLUDED.owner,"
                " expires = EXCLUDED.expires WHERE datastream_locks.expires < clock_timestamp()"
                " RETURNING owner", [stream_id, lease.owner, lease.ttl]
            )
            return cur.fetchone() is not None

    def _release_lease(self, stream_id: str, lease: _Lease) -> None:
        try:
            with self._lock, self._transaction() as cur:
                cur.execute("DELETE FROM datastream_locks WHERE stream_id = %s AND owner = %s",
                            [stream_id, lease.owner])
        except (psycopg2.Error, StorageUnavailable):
            pass  # the lease expires by itself

    # -- garbage ---------------------------------------------------------------------------
    def _collect_garbage(self) -> None:
        """Drop the InfluxDB series of deleted streams and of replaced epochs. Best effort:
        whatever fails stays recorded and is retried after a later commit or deletion."""
        try:
            rows = self._fetch("SELECT id, stream_id, epoch FROM datastream_garbage"
                               " ORDER BY id LIMIT 1000")
            for row_id, sid, epoch in rows:
                condition = f"{lp.quote_identifier(STREAM_TAG)} = $sid"
                bind = {"sid": lp.encode_name(sid)}
                if epoch is not None:
                    condition += f" AND {lp.quote_identifier(EPOCH_TAG)} = $epoch"
                    bind["epoch"] = str(epoch)
                self._influx().query(f"DROP SERIES WHERE {condition}", bind_params=bind,
                                     method="POST")
                with self._transaction() as cur:
                    cur.execute("DELETE FROM datastream_garbage WHERE id = %s", [row_id])
            self._garbage_due = len(rows) == 1000
        except (*INFLUX_ERRORS, psycopg2.Error):
            self._garbage_due = True


# -- helpers ---------------------------------------------------------------------------------

def _msgpack_documents(response: requests.Response) -> Iterator[Any]:
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=2**31 - 1)
    for block in response.iter_content(chunk_size=1 << 20):
        unpacker.feed(block)
        yield from unpacker


def _json_lines(response: requests.Response) -> Iterator[Any]:
    """JSON documents of a chunked response, one per line (``iter_lines`` of requests is
    quadratic in the length of a line, and a chunk of 10,000 rows is one long line)."""
    pending = bytearray()
    for block in response.iter_content(chunk_size=1 << 20):
        pending += block
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            if end > start:
                yield json.loads(bytes(pending[start:end]))
            start = end + 1
        del pending[:start]
    if pending.strip():
        yield json.loads(bytes(pending))


def _rollback(con: Any) -> None:
    try:
        if not con.closed:
            con.rollback()
    except psycopg2.Error:
        pass


def _names(batch: WriteBatch) -> list[str]:
    ids = set(batch.raw) | set(batch.meta) | set(batch.clear_raw) | set(batch.clear_levels)
    return sorted(ids)[:5]


def _clear(store: dict, part: str) -> int:
    """Move raw (``'raw'``) or level (``'lv'``) rows of a stream to a fresh epoch; returns the
    old epoch, whose series become garbage."""
    old = store[part]["e"]
    store[part] = ({"e": store["next"], "t": None, "n": 0} if part == "raw"
                   else {"e": store["next"], "hwm": {}})
    store["next"] += 1
    return old


def _series(measurement: str, sid: str, epoch: int) -> str:
    """Escaped measurement and tag set of one stream epoch (``measurement`` is encoded)."""
    return (f"{lp.escape_measurement(measurement)},{STREAM_TAG}="
            f"{lp.escape_key(lp.encode_name(sid))},{EPOCH_TAG}={epoch}")


def _lines(series: list[str], times: list[np.ndarray], ordinals: list[np.ndarray],
           fields: list[pa.Array], attempt: int) -> pa.Array:
    """Points of several streams (``series[j]`` for the rows ``times[j]``) at
    ``t * 1000 + ordinal % SLOTS``, with ``_ord = ordinal // SLOTS`` when that is not 0, each
    carrying the batch number."""
    counts = [len(t) for t in times]
    prefix = pa.array(series, pa.string()).take(
        pa.array(np.repeat(np.arange(len(series)), counts)))
    t, ordinal = np.concatenate(times), np.concatenate(ordinals)
    high = ordinal // SLOTS
    if high.any():
        tag = lp.join(f",{ORD_TAG}=", pc.cast(pa.array(high), pa.string()))
        prefix = lp.join(prefix, pc.if_else(pa.array(high > 0), tag, ""))
    fields = fields + [pa.scalar(f"{BATCH_FIELD}={attempt}i")]
    return lp.lines(prefix, fields, t * 1000 + ordinal % SLOTS)


def _level_measurement(key: str) -> str:
    """Measurement of a level (already encoded: level keys may hold any character)."""
    return LEVEL_MEASUREMENT + lp.encode_name(key)


def _bounds(start_us: int | None, end_us: int | None) -> tuple[int, int] | None:
    """Inclusive nanosecond bounds of ``start_us <= t < end_us``; None when empty."""
    lo = MIN_NS if start_us is None else max(MIN_NS, int(start_us) * 1000)
    hi = MAX_NS if end_us is None else min(MAX_NS, int(end_us) * 1000 - 1)
    return (lo, hi) if lo <= hi else None


def _table(table: pa.Table | pa.RecordBatch) -> pa.Table:
    return pa.Table.from_batches([table]) if isinstance(table, pa.RecordBatch) else table


def _check_times(what: str, t: np.ndarray) -> None:
    if len(t) and (t.min() < MIN_US or t.max() > MAX_US):
        raise ValueError(f"{what}: timestamps outside the supported range")


def _raw_rows(sid: str, table: pa.Table | pa.RecordBatch) -> pa.Table:
    """Raw rows as RAW_SCHEMA, stably sorted by t."""
    if not isinstance(sid, str) or not sid:
        raise ValueError(f"invalid stream id {sid!r}")
    table = _table(table)
    missing = set(RAW_SCHEMA.names) - set(table.column_names)
    if missing:
        raise ValueError(f"raw rows of stream {sid!r} lack columns {sorted(missing)}")
    table = table.select(RAW_SCHEMA.names).cast(RAW_SCHEMA)
    if table.column("t").null_count:
        raise ValueError(f"raw rows of stream {sid!r}: null t")
    t = table.column("t").to_numpy()
    _check_times(f"raw rows of stream {sid!r}", t)
    if len(t) > 1 and (t[1:] < t[:-1]).any():
        table = table.take(pa.array(np.argsort(t, kind="stable")))
    return table


def _level_rows(key: str, table: pa.Table | pa.RecordBatch) -> tuple[pa.Schema, dict]:
    """(schema of the value columns incl. ``t``, {stream id: rows sorted by t, one per t (the
    last given, as an upsert), without ``stream_id``})."""
    table = _table(table)
    if table.num_rows == 0:
        return pa.schema([]), {}
    for required in ("stream_id", "t"):
        if required not in table.column_names:
            raise ValueError(f"level {key!r}: rows lack the {required!r} column")
    keep = [name for name in table.column_names
            if name != "stream_id" and not pa.types.is_null(table.schema.field(name).type)]
    values = table.select(keep)
    values = values.set_column(keep.index("t"), "t", values.column("t").cast(pa.int64()))
    if values.column("t").null_count or table.column("stream_id").null_count:
        raise ValueError(f"level {key!r}: null stream_id or t")
    encoded = pc.dictionary_encode(table.column("stream_id").combine_chunks())
    codes, names = encoded.indices.to_numpy(), encoded.dictionary.to_pylist()
    t = values.column("t").to_numpy()
    _check_times(f"level {key!r}", t)
    order = np.lexsort((t, codes))  # stable: by stream, then time, then arrival
    codes, times = codes[order], t[order]
    last = np.r_[(codes[1:] != codes[:-1]) | (times[1:] != times[:-1]), True]
    order, codes = order[last], codes[last]
    bounds = np.flatnonzero(np.diff(codes)) + 1
    per_stream = {}
    for rows, code in zip(np.split(order, bounds), codes[np.r_[0, bounds]]):
        per_stream[names[code]] = values.take(pa.array(rows))
    return values.schema, per_stream


_KINDS = (
    ("integer", pa.types.is_integer),
    ("float", pa.types.is_floating),
    ("string", lambda kind: pa.types.is_string(kind) or pa.types.is_large_string(kind)),
    ("boolean", pa.types.is_boolean),
)


def _kind(data_type: pa.DataType) -> str:
    if pa.types.is_dictionary(data_type):
        data_type = data_type.value_type
    for name, test in _KINDS:
        if test(data_type):
            return name
    return str(data_type)


def _merge_schema(key: str, stored: pa.Schema, incoming: pa.Schema) -> pa.Schema:
    """``stored`` itself when it covers ``incoming``, else widened by the new columns. The same
    column with another InfluxDB field type would be rejected by InfluxDB: ValueError."""
    added = []
    for field in incoming:
        index = stored.get_field_index(field.name)
        if index < 0:
            added.append(field)
        elif _kind(stored.field(index).type) != _kind(field.type):
            raise ValueError(f"level {key!r}: column {field.name!r} was stored as"
                             f" {stored.field(index).type}, now given as {field.type}")
    return pa.schema(list(stored) + added) if added else stored


def _read_schema(data: Any) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(bytes(data)))


def _positions(columns: dict[str, list]) -> tuple[np.ndarray, np.ndarray]:
    """(microsecond times, ordinals) of queried points."""
    t_ns = np.array(columns["time"], dtype=np.int64)
    t_us = t_ns // 1000
    ordinals = t_ns - t_us * 1000
    high = columns.get(ORD_TAG)
    if high is not None and any(value is not None for value in high):
        ordinals = ordinals + SLOTS * np.array([int(v or 0) for v in high], dtype=np.int64)
    return t_us, ordinals


def _latest_versions(columns: dict[str, list], view: _View) -> tuple[np.ndarray, np.ndarray]:
    """(microsecond times, indices of the row version to show per time): among the visible
    versions of a level row, the one of the latest batch."""
    t_us, _ = _positions(columns)
    batches = np.array(columns[BATCH_FIELD], dtype=np.int64)
    rows = np.flatnonzero(view.visible(batches))
    rows = rows[np.lexsort((batches[rows], t_us[rows]))]
    last = np.r_[t_us[rows][1:] != t_us[rows][:-1], True]
    return t_us, rows[last]


def _within(times: np.ndarray, spans: list[list[int]]) -> np.ndarray:
    mask = np.zeros(len(times), dtype=bool)
    for lo, hi in spans:
        mask |= (times >= lo) & (times <= hi)
    return mask


def _spans(raw: dict[str, pa.Table], levels: dict[str, tuple]) -> dict[str, list[int]]:
    """Per stream, the time span (µs) a batch writes at, over raw and level rows."""
    spans: dict[str, list[int]] = {}
    tables = list(raw.items()) + [item for _, rows in levels.values() for item in rows.items()]
    for sid, table in tables:
        t = table.column("t").to_numpy()
        lo, hi = int(t.min()), int(t.max())
        old = spans.get(sid)
        spans[sid] = [lo, hi] if old is None else [min(old[0], lo), max(old[1], hi)]
    return spans


def _stored_fields(schema: pa.Schema) -> list[str]:
    """Encoded field names holding the columns of ``schema`` (``t`` is the point's time)."""
    names = []
    for field in schema:
        if field.name != "t":
            names.append(lp.encode_name(field.name))
            if _kind(field.type) == "float":
                names.append(lp.SPECIAL_FLOAT_PREFIX + names[-1])
    return names


def _column(columns: dict[str, list], field: pa.Field, count: int) -> pa.Array:
    """One stored column from query results (absent = all null), as ``field.type``."""
    name = lp.encode_name(field.name)
    values = columns.get(name)
    special = columns.get(lp.SPECIAL_FLOAT_PREFIX + name)
    kind = _kind(field.type)
    if values is None:
        values = [None] * count
    if kind == "float":
        values = [None if v is None else float(v) for v in values]
        if special is not None:
            values = [v if s is None else f for v, s, f in
                      zip(values, special, lp.decode_special(special))]
        return pa.array(values, pa.float64()).cast(field.type)
    arrow_type = {"integer": pa.int64(), "string": pa.string(), "boolean": pa.bool_()}.get(kind)
    if arrow_type is None:
        raise ValueError(f"column {field.name!r}: unsupported type {field.type}")
    return pa.array(values, arrow_type).cast(field.type)
