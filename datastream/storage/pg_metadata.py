"""The PostgreSQL side of :class:`.influxdb.InfluxDBStorage`: stream records and bookkeeping.

Kept apart so that the storage class reads as the commit protocol, with the SQL of each step
here. :class:`PgMetadata` is a mixin: the storage sets ``_lock``, ``_closed``, ``_schemas``,
``_leases`` and calls :meth:`PgMetadata._init_metadata`; the connection state stays on the
storage itself.

Tables: ``datastream_streams`` (creation ``seq``, ``stream_id``, tags twice: as given in
``tags_text`` and in the GIN-indexed query form ``tags``, see :mod:`.pg_query`; ``meta`` as
exact JSON text; ``store``, the backend's bookkeeping, see :func:`new_store`), the batch counter
``datastream_batches``, ``datastream_pending`` (batches not committed, with the spans they
write), ``datastream_levels`` (Arrow schema per level), ``datastream_locks`` (maintenance
leases) and ``datastream_garbage`` (InfluxDB series to drop).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg2
import psycopg2.errors
import psycopg2.extras
import psycopg2.sql
import pyarrow as pa

from .. import exceptions
from .. import tags as tag_rules
from . import pg_query
from .base import StreamRecord
from .influx_points import merge_schema

SCHEMA_VERSION = "1"
LOCK_CLASS = 0x6473  # advisory lock namespace ("ds")
SCHEMA_LOCK, CREATE_LOCK = 1, 2

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
_RECORDS = "SELECT stream_id, tags_text, meta FROM datastream_streams"


StorageUnavailable = exceptions.StorageUnavailable  # its name here before it was shared


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def new_store() -> dict[str, Any]:
    """Bookkeeping of a new stream: epoch counter, raw epoch and tail (latest committed t and
    how many points share it), level epoch and per-level high-water marks."""
    return {"next": 2, "raw": {"e": 0, "t": None, "n": 0}, "lv": {"e": 1, "hwm": {}}}


def clear(store: dict, part: str) -> int:
    """Move raw (``'raw'``) or level (``'lv'``) rows of a stream to a fresh epoch; returns the
    old epoch, whose series become garbage."""
    old = store[part]["e"]
    store[part] = ({"e": store["next"], "t": None, "n": 0} if part == "raw"
                   else {"e": store["next"], "hwm": {}})
    store["next"] += 1
    return old


def rollback(con: Any) -> None:
    try:
        if not con.closed:
            con.rollback()
    except psycopg2.Error:
        pass


def read_schema(data: Any) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(bytes(data)))


@dataclasses.dataclass
class Lease:
    owner: str
    ttl: float
    depth: int = 0


@dataclasses.dataclass
class View:
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


class PgMetadata:
    """Connections to the metadata database and the SQL of every step of the storage."""

    _lock: threading.RLock
    _closed: bool
    _schemas: dict[str, pa.Schema]
    _leases: dict[tuple[int, str], Lease]

    def _init_metadata(self, connection_metadata: dict[str, Any]) -> None:
        self._pg_options = dict(connection_metadata)
        self._pg: Any = None
        self._pg_aux: Any = None

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
            rollback(con)
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

    def _close_metadata(self) -> None:
        for con in (self._pg, self._pg_aux):
            if con is not None and not con.closed:
                con.close()
        self._pg = self._pg_aux = None

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

    # -- stream records --------------------------------------------------------------------
    def _find_records(self, query: dict[str, Any] | None) -> list[StreamRecord]:
        where, params = pg_query.translate(query)
        rows = self._fetch(f"{_RECORDS} WHERE {where} ORDER BY seq", params)
        return [StreamRecord(*row) for row in rows]

    def _get_record(self, stream_id: str) -> StreamRecord | None:
        rows = self._fetch(f"{_RECORDS} WHERE stream_id = %s", [stream_id])
        return StreamRecord(*rows[0]) if rows else None

    def _create_record(self, record: StreamRecord, query: dict[str, Any]) -> StreamRecord:
        """One advisory lock serialises every creation, so no two processes create streams
        matching each other's query (stronger than per-query locking, and creation is rare)."""
        tags_text, meta_text = dumps(record.tags), dumps(record.meta)
        where, params = pg_query.translate(query)
        with self._transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_CLASS, CREATE_LOCK))
            cur.execute(f"{_RECORDS} WHERE {where} ORDER BY seq", params)
            for row in cur.fetchall():
                existing = StreamRecord(*row)
                if tag_rules.matches(existing.tags, query, existing.stream_id):
                    return existing
            try:
                cur.execute(
                    "INSERT INTO datastream_streams (stream_id, tags, tags_text, meta, store)"
                    " VALUES (%s, %s::jsonb, %s::json, %s::json, %s::jsonb)",
                    [record.stream_id, pg_query.query_json(record.tags), tags_text, meta_text,
                     dumps(new_store())],
                )
            except psycopg2.errors.UniqueViolation:
                raise ValueError(f"stream id {record.stream_id!r} already exists") from None
        return StreamRecord(record.stream_id, json.loads(tags_text), json.loads(meta_text))

    def _set_tags(self, stream_id: str, tags: dict[str, Any]) -> None:
        with self._transaction() as cur:
            cur.execute(
                "UPDATE datastream_streams SET tags = %s::jsonb, tags_text = %s::json"
                " WHERE stream_id = %s",
                [pg_query.query_json(tags), dumps(tags), stream_id],
            )
            if cur.rowcount == 0:
                raise exceptions.StreamNotFound(f"stream {stream_id!r} not found")

    def _delete_records(self, ids: list[str]) -> bool:
        """Delete the records, their leases and pending batches; their InfluxDB series become
        garbage. False when none of the streams exists."""
        with self._transaction() as cur:
            cur.execute(
                "SELECT stream_id FROM datastream_streams WHERE stream_id = ANY(%s)"
                " ORDER BY stream_id FOR UPDATE", [ids]
            )
            found = [row[0] for row in cur.fetchall()]
            if not found:
                return False
            cur.execute("DELETE FROM datastream_streams WHERE stream_id = ANY(%s)", [found])
            cur.execute("DELETE FROM datastream_locks WHERE stream_id = ANY(%s)", [found])
            cur.execute("DELETE FROM datastream_pending WHERE stream_ids <@ %s::text[]",
                        [found])
            cur.execute(
                "INSERT INTO datastream_garbage (stream_id, epoch)"
                " SELECT unnest(%s::text[]), NULL", [found]
            )
        return True

    # -- commit steps (on the cursor of the commit's transaction) ---------------------------
    @staticmethod
    def _lock_streams(cur: Any, ids: list[str]) -> dict[str, tuple[Any, dict]]:
        """{stream id: (meta, store)} of the streams, locked; StreamNotFound if one is missing."""
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
        return rows

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
            if known is not None and merge_schema(key, known, incoming) is known:
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
            stored = read_schema(cur.fetchone()[0])
            merged = merge_schema(key, stored, incoming)
            if merged is not stored:
                cur.execute("UPDATE datastream_levels SET arrow_schema = %s WHERE level_key = %s",
                            [merged.serialize().to_pybytes(), key])
            result[key] = merged
        return result

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

    def _begin_attempt(self, spans: dict[str, list[int]]) -> int:
        """A new batch number, recorded as pending with the time span it writes per stream,
        and committed before any point is written."""
        with self._autocommit().cursor() as cur:
            cur.execute(
                "WITH b AS (UPDATE datastream_batches SET last = last + 1 WHERE id = 1"
                " RETURNING last) INSERT INTO datastream_pending (batch, stream_ids, spans)"
                " SELECT last, %s, %s::jsonb FROM b RETURNING batch",
                [sorted(spans), dumps(spans)],
            )
            return cur.fetchone()[0]

    @staticmethod
    def _end_attempt(cur: Any, attempt: int) -> None:
        cur.execute("DELETE FROM datastream_pending WHERE batch = %s", [attempt])

    @staticmethod
    def _save_streams(cur: Any, updates: list[tuple[str, str, str]],
                      garbage: list[tuple[str, int]]) -> None:
        """Write (stream id, meta JSON, store JSON) rows and record garbage series."""
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

    def _attempt_committed(self, attempt: int) -> bool:
        try:
            rows = self._fetch("SELECT 1 FROM datastream_pending WHERE batch = %s", [attempt])
        except psycopg2.Error:
            return False
        return not rows

    # -- reading ---------------------------------------------------------------------------
    def _view(self, stream_id: str, level_key: str | None = None) -> tuple[View | None, Any]:
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
        view = None if store_json is None else View(store_json, last, pending)
        return view, None if schema is None else read_schema(schema)

    # -- leases and garbage ----------------------------------------------------------------
    def _claim_lease(self, stream_id: str, lease: Lease) -> bool:
        """Take the lease row unless another owner holds an unexpired one."""
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO datastream_locks VALUES (%s, %s, clock_timestamp() + %s *"
                " interval '1 s') ON CONFLICT (stream_id) DO UPDATE SET owner = EXCLUDED.owner,"
                " expires = EXCLUDED.expires WHERE datastream_locks.expires < clock_timestamp()"
                " RETURNING owner", [stream_id, lease.owner, lease.ttl]
            )
            return cur.fetchone() is not None

    def _release_lease(self, stream_id: str, lease: Lease) -> None:
        try:
            with self._lock, self._transaction() as cur:
                cur.execute("DELETE FROM datastream_locks WHERE stream_id = %s AND owner = %s",
                            [stream_id, lease.owner])
        except (psycopg2.Error, StorageUnavailable):
            pass  # the lease expires by itself

    def _garbage(self, limit: int) -> list[tuple[int, str, int | None]]:
        """(id, stream id, epoch or None for every epoch) of recorded garbage series."""
        return self._fetch("SELECT id, stream_id, epoch FROM datastream_garbage"
                           " ORDER BY id LIMIT %s", [limit])

    def _garbage_dropped(self, row_id: int) -> None:
        with self._transaction() as cur:
            cur.execute("DELETE FROM datastream_garbage WHERE id = %s", [row_id])
