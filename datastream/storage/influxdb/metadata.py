"""The PostgreSQL side of :class:`.influxdb.InfluxDBStorage`: stream records and bookkeeping.

Kept apart so that the storage class reads as the commit protocol, with the SQL of each step
here. The storage holds one :class:`PgMetadata`, which owns the connections and the cache of
level schemas; the storage's lock and its maintenance leases stay with the storage, which
serialises calls and hands the leases of a commit over (:meth:`PgMetadata.fence`).

Tables: ``datastream_streams`` (creation ``seq``, ``stream_id``, tags twice: as given in
``tags_text`` and in the GIN-indexed query form ``tags``, see :mod:`.query`; ``meta`` as
exact JSON text; ``store``, the backend's bookkeeping, see :func:`new_store`; ``version``, the
record version the engine's conditional commits compare), the batch counter
``datastream_batches``, ``datastream_pending`` (batches not committed, with the spans they
write), ``datastream_levels`` (Arrow schema per level), ``datastream_locks`` (maintenance
leases), ``datastream_garbage`` (InfluxDB series to drop) and ``datastream_trims`` (streams
whose bookkeeping holds drops by time whose points are still to be deleted, see
:func:`add_drop`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
import psycopg2
import psycopg2.errors
import psycopg2.extras
import psycopg2.sql
import pyarrow as pa

from ... import exceptions
from ... import tags as tag_rules
from ..base import RecordConflict, StreamExists, StreamRecord
from . import query as pg_query
from .points import merge_schema

# 3: raw points carry their kind in the batch field (``_kb``), short decimals are stored as
# integer mantissas (``_d<k>_<name>``); version 2 stores ``k`` and ``_batch`` as fields and
# every float as a float. Nothing converts between them: a store of another version is refused.
SCHEMA_VERSION = "3"
LOCK_CLASS = 0x6473  # advisory lock namespace ("ds")
SCHEMA_LOCK, CREATE_LOCK = 1, 2

_DDL = [
    "CREATE TABLE IF NOT EXISTS datastream_info (key text PRIMARY KEY, value text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS datastream_streams (seq bigserial PRIMARY KEY,"
    " stream_id text NOT NULL UNIQUE, tags jsonb NOT NULL, tags_text json NOT NULL,"
    " meta json NOT NULL, store jsonb NOT NULL, version bigint NOT NULL DEFAULT 0)",
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
    "CREATE TABLE IF NOT EXISTS datastream_trims (stream_id text PRIMARY KEY)",
]
_RELATIONS = [re.search(r"IF NOT EXISTS (\w+)", statement).group(1)
              for statement in _DDL if "IF NOT EXISTS" in statement]
SETUP_ATTEMPTS = 5
_RECORDS = "SELECT stream_id, tags_text, meta, version FROM datastream_streams"


StorageUnavailable = exceptions.StorageUnavailable  # its name here before it was shared


class StreamIdTaken(ValueError):
    """A stream to create has the id of an existing stream (a caller bug, not a conflict)."""


class Stored(NamedTuple):
    """A stream row as the commit locked it."""

    meta: dict[str, Any]
    store: dict[str, Any]
    version: int


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def new_store() -> dict[str, Any]:
    """Bookkeeping of a new stream: epoch counter, raw epoch, tail (latest committed t and
    how many points share it) and cut list (see :func:`add_cut`), level epoch and per-level
    high-water marks."""
    return {"next": 2, "raw": {"e": 0, "t": None, "n": 0, "cut": []},
            "lv": {"e": 1, "hwm": {}}}


def clear(store: dict, part: str) -> int:
    """Move raw (``'raw'``) or level (``'lv'``) rows of a stream to a fresh epoch; returns the
    old epoch, whose series become garbage."""
    old = store[part]["e"]
    store[part] = ({"e": store["next"], "t": None, "n": 0, "cut": []} if part == "raw"
                   else {"e": store["next"], "hwm": {}})
    store["next"] += 1
    return old


def add_cut(raw: dict, t: int, batch: int) -> None:
    """Hide the raw points at or after ``t`` written by batches before ``batch``.

    A cut ``[t, b]`` makes raw points with time >= t and batch number < b invisible: that is
    how ``truncate_raw`` stays atomic with the rows the same batch appends (InfluxDB cannot
    delete by a field, nor inside a transaction). The list is kept to its Pareto frontier
    (no cut with an earlier-or-equal time and a greater-or-equal batch than another), which
    leaves it sorted by time with batch numbers strictly rising: the cut that decides a
    point is then the last one at or before its time (see :meth:`View.raw_visible`)."""
    cuts = sorted([*raw.get("cut", []), [int(t), int(batch)]], key=lambda c: (c[0], -c[1]))
    frontier: list[list[int]] = []
    for cut in cuts:
        if not frontier or cut[1] > frontier[-1][1]:
            frontier.append(cut)
    raw["cut"] = frontier


def add_drop(store: dict, key: str | None, reopening: bool, t: int, batch: int,
             writes: tuple[int, int] | None) -> None:
    """Hide the points written by batches before ``batch`` of the raw rows (``key`` None) or
    of level ``key`` with time < ``t`` or, ``reopening``, >= ``t``.

    Like a cut, a drop is bookkeeping that readers apply, so that it is atomic with the rest
    of the batch; its points are deleted later (``InfluxDBStorage._trim``) and the drop then
    forgotten. Raw drops are kept in the raw part of the store as ``[t, batch, dirty]``, level
    drops in the level part as ``[key, reopening, t, batch, dirty]``, so that clearing either
    part forgets them with the epoch they apply to. An older drop that the new one covers
    (same kind, a range at least as wide) is forgotten at once: the new one hides all it did.
    ``dirty`` (see :func:`mark_dirty`) starts as whether the batch's own rows of that kind,
    spanning ``writes`` (µs, inclusive), fall in the range."""
    if key is None:
        kept = [drop for drop in store["raw"].get("drop", []) if drop[0] > t]
        store["raw"]["drop"] = kept + [[int(t), int(batch), int(_inside(t, False, writes))]]
        return
    kept = [drop for drop in store["lv"].get("drop", [])
            if drop[0] != key or bool(drop[1]) != reopening
            or (drop[2] < t if reopening else drop[2] > t)]
    store["lv"]["drop"] = kept + [[key, int(reopening), int(t), int(batch),
                                   int(_inside(t, reopening, writes))]]


def mark_dirty(store: dict, key: str | None, writes: tuple[int, int]) -> None:
    """A batch writes rows of the raw part (``key`` None) or of level ``key`` spanning
    ``writes``: the drops whose range that touches are *dirty*, their range now holds points
    to keep, so deleting their points must look at each (a clean drop deletes its whole time
    range at once)."""
    if key is None:
        for drop in store["raw"].get("drop", []):
            if _inside(drop[0], False, writes):
                drop[2] = 1
        return
    for drop in store["lv"].get("drop", []):
        if drop[0] == key and _inside(drop[2], bool(drop[1]), writes):
            drop[4] = 1


def _inside(t: int, reopening: bool, writes: tuple[int, int] | None) -> bool:
    """Whether rows spanning ``writes`` reach a drop's range (>= t, or < t)."""
    if writes is None:
        return False
    return writes[1] >= t if reopening else writes[0] < t


def _alive(con: Any) -> bool:
    """Whether ``con`` can run a statement, probed with ``SELECT 1``: after a server restart a
    connection looks open until a statement fails, and that must not be a commit's first."""
    if con is None or con.closed:
        return False
    try:
        with con.cursor() as cur:
            cur.execute("SELECT 1")
        if not con.autocommit:
            con.rollback()
        return True
    except (psycopg2.OperationalError, psycopg2.InterfaceError):
        with contextlib.suppress(Exception):
            con.close()
        return False


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
    version: int | None = None  # the stream record's version

    def visible(self, batches: np.ndarray) -> np.ndarray:
        mask = batches <= self.last
        if self.pending:
            mask &= ~np.isin(batches, np.array(self.pending, dtype=np.int64))
        return mask

    def raw_visible(self, batches: np.ndarray, t_us: np.ndarray) -> np.ndarray:
        """``visible`` minus the raw points hidden by the stream's cuts (see add_cut) and
        drops (see add_drop)."""
        mask = self.visible(batches)
        for t, batch, _ in self.store["raw"].get("drop", []):
            mask &= (t_us >= t) | (batches >= batch)
        cuts = self.store["raw"].get("cut")
        if cuts:
            cut_t = np.array([c[0] for c in cuts], dtype=np.int64)
            cut_b = np.array([c[1] for c in cuts], dtype=np.int64)
            index = np.searchsorted(cut_t, t_us, side="right") - 1
            limit = np.where(index >= 0, cut_b[np.maximum(index, 0)], np.iinfo(np.int64).min)
            mask &= batches >= limit
        return mask

    def level_visible(self, level_key: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """Which points of a level are visible, given their batches and times: ``visible``
        minus the points the level's drops hide (see add_drop)."""
        drops = [drop for drop in self.store["lv"].get("drop", []) if drop[0] == level_key]

        def visible(batches: np.ndarray, t_us: np.ndarray) -> np.ndarray:
            mask = self.visible(batches)
            for _, reopening, t, batch, _ in drops:
                mask &= ((t_us < t) if reopening else (t_us >= t)) | (batches >= batch)
            return mask

        return visible


class PgMetadata:
    """Connections to the metadata database and the SQL of every step of the storage.

    ``connection_metadata``: keyword arguments of ``psycopg2.connect``. ``pg`` is the
    connection of transactions, ``pg_aux`` one in autocommit mode (see :meth:`begin_attempt`);
    ``schemas`` caches the level schemas of committed batches.
    """

    def __init__(self, connection_metadata: dict[str, Any]) -> None:
        self.options = dict(connection_metadata)
        self.pg: Any = None
        self.pg_aux: Any = None
        self.closed = False
        self.schemas: dict[str, pa.Schema] = {}

    # -- connections -----------------------------------------------------------------------
    def _connect(self) -> Any:
        try:
            return psycopg2.connect(**self.options)
        except psycopg2.OperationalError as error:
            name = self.options.get("dbname") or self.options.get("database")
            if not name or f'database "{name}" does not exist' not in str(error):
                raise
        self._create_database(name)
        return psycopg2.connect(**self.options)

    def _create_database(self, name: str) -> None:
        options = {k: v for k, v in self.options.items() if k not in ("dbname", "database")}
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

    def connection(self, probe: bool = False) -> Any:
        """The transaction connection, reconnected when the server dropped it (``probe``:
        also when it only looks open; reads instead retry once, see ``_fetch``)."""
        if self.closed:
            raise StorageUnavailable("the InfluxDB storage is closed")
        if self.pg is None or self.pg.closed or (probe and not _alive(self.pg)):
            self.pg = self._connect()
        return self.pg

    def _autocommit(self) -> Any:
        """A second connection for records that must commit while a transaction is open."""
        if self.closed:
            raise StorageUnavailable("the InfluxDB storage is closed")
        if not _alive(self.pg_aux):
            self.pg_aux = self._connect()
            self.pg_aux.autocommit = True
        return self.pg_aux

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        con = self.connection()
        try:
            with con.cursor() as cur:
                yield cur
            con.commit()
        except BaseException:
            rollback(con)
            raise

    def fetch(self, statement: str, params: list[Any] | tuple = ()) -> list[tuple]:
        """Run one read-only statement; retried once on a fresh connection if the server
        dropped the old one (a restart)."""
        for attempt in (1, 2):
            try:
                with self.transaction() as cur:
                    cur.execute(statement, params)
                    return cur.fetchall()
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                if attempt == 2 or not (self.pg is None or self.pg.closed):
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close both connections; every later use raises StorageUnavailable."""
        self.closed = True
        for con in (self.pg, self.pg_aux):
            if con is not None and not con.closed:
                con.close()
        self.pg = self.pg_aux = None

    def setup(self) -> None:
        """Create the tables if missing and check the schema version of the store.

        An existing store is only read: the DDL (even with IF NOT EXISTS) takes table locks
        that deadlock with another process's commit in progress, so it runs only when a
        relation or the version record is missing, and is retried if it lost a deadlock."""
        with self.transaction() as cur:
            cur.execute("SHOW server_encoding")
            if cur.fetchone()[0] != "UTF8":
                raise StorageUnavailable("the metadata database must use the UTF8 encoding")
            found = self._stored_version(cur)
        for attempt in range(1, SETUP_ATTEMPTS + 1):
            if found is not None:
                break
            try:
                with self.transaction() as cur:
                    cur.execute("SELECT pg_advisory_xact_lock(%s, %s)",
                                (LOCK_CLASS, SCHEMA_LOCK))
                    for statement in _DDL:
                        cur.execute(statement)
                    cur.execute("INSERT INTO datastream_info VALUES ('schema_version', %s)"
                                " ON CONFLICT DO NOTHING", [SCHEMA_VERSION])
                    found = self._stored_version(cur)
            except (psycopg2.errors.DeadlockDetected,
                    psycopg2.errors.SerializationFailure):
                if attempt == SETUP_ATTEMPTS:
                    raise
                time.sleep(0.05 * attempt)
        if found != SCHEMA_VERSION:
            raise StorageUnavailable(
                f"metadata schema version {found}, this datastream reads {SCHEMA_VERSION}:"
                " the InfluxDB point layout changed between them (see metadata."
                "SCHEMA_VERSION); use the datastream version that wrote this store, or"
                " copy its streams into fresh databases"
            )

    @staticmethod
    def _stored_version(cur: Any) -> str | None:
        """The schema version recorded in the store, or None while any of its relations
        (tables and indexes) is missing."""
        cur.execute("SELECT count(to_regclass(name)) = cardinality(%s::text[])"
                    " FROM unnest(%s::text[]) AS name", [_RELATIONS, _RELATIONS])
        if not cur.fetchone()[0]:
            return None
        cur.execute("SELECT value FROM datastream_info WHERE key = 'schema_version'")
        row = cur.fetchone()
        return None if row is None else row[0]

    # -- stream records --------------------------------------------------------------------
    def find_records(self, query: dict[str, Any] | None) -> list[StreamRecord]:
        where, params = pg_query.translate(query)
        rows = self.fetch(f"{_RECORDS} WHERE {where} ORDER BY seq", params)
        return [StreamRecord(*row) for row in rows]

    def get_record(self, stream_id: str) -> StreamRecord | None:
        rows = self.fetch(f"{_RECORDS} WHERE stream_id = %s", [stream_id])
        return StreamRecord(*rows[0]) if rows else None

    def set_tags(self, stream_id: str, tags: dict[str, Any],
                  expect_version: int | None) -> None:
        """Compare-and-set on the version: a commit holding the row makes this wait, and the
        condition is checked again on the row it leaves behind."""
        with self.transaction() as cur:
            cur.execute(
                "UPDATE datastream_streams SET tags = %s::jsonb, tags_text = %s::json,"
                " version = version + 1 WHERE stream_id = %s"
                " AND (%s::bigint IS NULL OR version = %s::bigint) RETURNING version",
                [pg_query.query_json(tags), dumps(tags), stream_id, expect_version,
                 expect_version],
            )
            if cur.fetchone() is not None:
                return
            cur.execute("SELECT version FROM datastream_streams WHERE stream_id = %s",
                        [stream_id])
            found = cur.fetchone()
        if found is None:
            raise exceptions.StreamNotFound(f"stream {stream_id!r} not found")
        raise RecordConflict(
            f"stream {stream_id!r} changed since it was read (version {found[0]}, expected"
            f" {expect_version}); its tags were not changed"
        )

    # -- commit steps (on the cursor of the commit's transaction) ---------------------------
    @staticmethod
    def lock_streams(cur: Any, ids: list[str]) -> dict[str, Stored]:
        """The stored rows of those streams that exist, locked until the end of the
        transaction (in id order, the one lock order of every writer)."""
        cur.execute(
            "SELECT stream_id, meta, store, version FROM datastream_streams"
            " WHERE stream_id = ANY(%s) ORDER BY stream_id FOR UPDATE", [ids]
        )
        return {sid: Stored(meta, store, version) for sid, meta, store, version in cur.fetchall()}

    @staticmethod
    def check_versions(rows: dict[str, Stored], expect: dict[str, int],
                        touched: list[str]) -> None:
        """RecordConflict when a record is not at the version the batch was built from (a
        missing record counts as changed: it was deleted meanwhile); StreamAppendFailed, like
        every failed commit, when the batch writes to a stream that does not exist."""
        for sid, version in sorted(expect.items()):
            row = rows.get(sid)
            if row is None or row.version != version:
                found = "deleted" if row is None else f"at version {row.version}"
                raise RecordConflict(
                    f"stream {sid!r} changed since it was read ({found}, expected version"
                    f" {version}); nothing of the batch was stored"
                )
        missing = [sid for sid in touched if sid not in rows]
        if missing:
            raise exceptions.StreamAppendFailed(
                f"stream {missing[0]!r} not found; nothing of the batch was stored"
            )

    @staticmethod
    def insert_streams(cur: Any, create: list[tuple[StreamRecord, dict[str, Any]]]) -> None:
        """Insert new records unless a stream matching their query exists (StreamExists).
        The caller holds the creation lock: one advisory lock serialises every transaction
        that creates streams, so no two processes create streams matching each other's
        query (stronger than per-query locking, and creation is rare). Records inserted
        earlier in the batch count as existing for the later ones."""
        for record, query in create:
            where, params = pg_query.translate(query)
            cur.execute(f"{_RECORDS} WHERE {where} ORDER BY seq", params)
            for row in cur.fetchall():
                existing = StreamRecord(*row)
                if tag_rules.matches(existing.tags, query, existing.stream_id):
                    raise StreamExists(f"a stream matching {query!r} exists", existing)
            try:
                cur.execute(
                    "INSERT INTO datastream_streams (stream_id, tags, tags_text, meta, store,"
                    " version) VALUES (%s, %s::jsonb, %s::json, %s::json, %s::jsonb, 0)",
                    [record.stream_id, pg_query.query_json(record.tags), dumps(record.tags),
                     dumps(record.meta), dumps(new_store())],
                )
            except psycopg2.errors.UniqueViolation:
                raise StreamIdTaken(f"stream id {record.stream_id!r} already exists") from None

    @staticmethod
    def delete_streams(cur: Any, ids: list[str]) -> None:
        """Delete records (locked by the caller), their leases and the pending batches that
        wrote only to them; their InfluxDB series become garbage."""
        cur.execute("DELETE FROM datastream_streams WHERE stream_id = ANY(%s)", [ids])
        cur.execute("DELETE FROM datastream_locks WHERE stream_id = ANY(%s)", [ids])
        cur.execute("DELETE FROM datastream_pending WHERE stream_ids <@ %s::text[]", [ids])
        cur.execute("DELETE FROM datastream_trims WHERE stream_id = ANY(%s)", [ids])
        cur.execute("INSERT INTO datastream_garbage (stream_id, epoch)"
                    " SELECT unnest(%s::text[]), NULL", [ids])

    @staticmethod
    def fence(cur: Any, stream_ids: list[str], leases: dict[str, Lease]) -> None:
        """Inside a maintenance lock (``leases``: those the committing thread holds, by
        stream), commit only while this process still owns the lease; the lock row stays
        locked until COMMIT, so nobody can take it over meanwhile."""
        for sid in stream_ids:
            lease = leases.get(sid)
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

    def level_schemas(self, cur: Any, levels: dict[str, tuple]) -> dict[str, pa.Schema]:
        """Stored Arrow schema of each level written, widened by new columns. The schema row is
        locked only when it has to change, so writers of known columns never wait on it."""
        result = {}
        for key in sorted(levels):  # one lock order for every writer
            incoming = levels[key][0]
            known = self.schemas.get(key)
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
    def pending_spans(cur: Any, stream_ids: list[str]) -> dict[str, list[list[int]]]:
        """Time spans (µs) where failed attempts may have left invisible points, per stream.
        Under the stream locks no attempt on these streams is in flight."""
        cur.execute("SELECT spans FROM datastream_pending WHERE stream_ids && %s::text[]",
                    [stream_ids])
        result: dict[str, list[list[int]]] = {}
        for (spans,) in cur.fetchall():
            for sid, span in spans.items():
                result.setdefault(sid, []).append(span)
        return result

    @staticmethod
    def failed_batches(cur: Any, stream_id: str) -> list[int]:
        """Pending batches that wrote to a stream; under its row lock, all of them failed."""
        cur.execute("SELECT batch FROM datastream_pending WHERE stream_ids @> ARRAY[%s]",
                    [stream_id])
        return [row[0] for row in cur.fetchall()]

    def begin_attempt(self, stream_ids: list[str], spans: dict[str, list[int]]) -> int:
        """A new batch number, recorded as pending with the streams the batch touches and the
        time span it writes per stream, and committed before any point is written. Every
        commit takes one, also without points: a cut needs it, and an ambiguous COMMIT is
        resolved by it."""
        with self._autocommit().cursor() as cur:
            cur.execute(
                "WITH b AS (UPDATE datastream_batches SET last = last + 1 WHERE id = 1"
                " RETURNING last) INSERT INTO datastream_pending (batch, stream_ids, spans)"
                " SELECT last, %s, %s::jsonb FROM b RETURNING batch",
                [stream_ids, dumps(spans)],
            )
            return cur.fetchone()[0]

    def forget_attempt(self, attempt: int) -> None:
        """Best effort: drop the pending record of an attempt that wrote no point and
        surely did not commit (left behind, it is harmless)."""
        try:
            with self._autocommit().cursor() as cur:
                cur.execute("DELETE FROM datastream_pending WHERE batch = %s", [attempt])
        except (psycopg2.Error, StorageUnavailable):
            pass

    @staticmethod
    def end_attempt(cur: Any, attempt: int) -> None:
        cur.execute("DELETE FROM datastream_pending WHERE batch = %s", [attempt])

    @staticmethod
    def save_streams(cur: Any, updates: list[tuple[str, str, str, int]],
                      garbage: list[tuple[str, int]]) -> None:
        """Write (stream id, meta JSON, store JSON, version increment) rows and record garbage
        series."""
        if updates:
            psycopg2.extras.execute_values(
                cur,
                "UPDATE datastream_streams AS s SET meta = u.meta::json,"
                " store = u.store::jsonb, version = s.version + u.bump"
                " FROM (VALUES %s) AS u(stream_id, meta, store, bump)"
                " WHERE s.stream_id = u.stream_id", updates,
            )
        if garbage:
            psycopg2.extras.execute_values(
                cur, "INSERT INTO datastream_garbage (stream_id, epoch) VALUES %s", garbage
            )

    def attempt_committed(self, attempt: int) -> bool | None:
        """Whether the metadata commit of ``attempt`` went through (its pending row is gone);
        None while the server cannot be asked."""
        try:
            rows = self.fetch("SELECT 1 FROM datastream_pending WHERE batch = %s", [attempt])
        except (psycopg2.Error, StorageUnavailable):
            return None
        return not rows

    # -- reading ---------------------------------------------------------------------------
    def view(self, stream_id: str, level_key: str | None = None) -> tuple[View | None, Any]:
        """The stream's visibility view and, with ``level_key``, the stored level schema
        (None when the level was never written), read in one statement."""
        rows = self.fetch(
            "SELECT s.store, b.last, ARRAY(SELECT p.batch FROM datastream_pending p"
            " WHERE p.stream_ids @> ARRAY[s.stream_id]),"
            " (SELECT arrow_schema FROM datastream_levels WHERE level_key = %s), s.version"
            " FROM datastream_batches b LEFT JOIN datastream_streams s ON s.stream_id = %s"
            " WHERE b.id = 1", [level_key, stream_id]
        )
        store_json, last, pending, schema, version = rows[0]
        view = None if store_json is None else View(store_json, last, pending, version)
        return view, None if schema is None else read_schema(schema)

    # -- leases and garbage ----------------------------------------------------------------
    def claim_lease(self, stream_id: str, lease: Lease) -> bool:
        """Take the lease row unless another owner holds an unexpired one."""
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO datastream_locks VALUES (%s, %s, clock_timestamp() + %s *"
                " interval '1 s') ON CONFLICT (stream_id) DO UPDATE SET owner = EXCLUDED.owner,"
                " expires = EXCLUDED.expires WHERE datastream_locks.expires < clock_timestamp()"
                " RETURNING owner", [stream_id, lease.owner, lease.ttl]
            )
            return cur.fetchone() is not None

    def release_lease(self, stream_id: str, lease: Lease) -> None:
        try:
            with self.transaction() as cur:
                cur.execute("DELETE FROM datastream_locks WHERE stream_id = %s AND owner = %s",
                            [stream_id, lease.owner])
        except (psycopg2.Error, StorageUnavailable):
            pass  # the lease expires by itself

    def garbage(self, limit: int) -> list[tuple[int, str, int | None]]:
        """(id, stream id, epoch or None for every epoch) of recorded garbage series."""
        return self.fetch("SELECT id, stream_id, epoch FROM datastream_garbage"
                           " ORDER BY id LIMIT %s", [limit])

    @staticmethod
    def note_trims(cur: Any, stream_ids: list[str]) -> None:
        """Record streams whose new drops leave points to delete (``datastream_trims``)."""
        if stream_ids:
            cur.execute("INSERT INTO datastream_trims SELECT unnest(%s::text[])"
                        " ON CONFLICT DO NOTHING", [stream_ids])

    def trims(self, limit: int) -> list[str]:
        return [row[0] for row in self.fetch(
            "SELECT stream_id FROM datastream_trims ORDER BY stream_id LIMIT %s", [limit])]

    @staticmethod
    def lock_for_trim(cur: Any, stream_id: str) -> tuple[View | None, bool]:
        """In the caller's transaction: the view of a stream to trim, its row locked (None
        when the stream is gone or a commit holds it), and whether it is gone. A commit on the
        stream waits until the trim is over, so no point is written under it meanwhile."""
        cur.execute("SELECT s.store, b.last, ARRAY(SELECT p.batch FROM datastream_pending p"
                    " WHERE p.stream_ids @> ARRAY[s.stream_id]) FROM datastream_streams s,"
                    " datastream_batches b WHERE s.stream_id = %s AND b.id = 1"
                    " FOR UPDATE OF s SKIP LOCKED", [stream_id])
        row = cur.fetchone()
        if row is not None:
            return View(row[0], row[1], row[2]), False
        cur.execute("SELECT 1 FROM datastream_streams WHERE stream_id = %s", [stream_id])
        return None, cur.fetchone() is None

    @staticmethod
    def trimmed(cur: Any, stream_id: str, store: dict | None) -> None:
        """The stream's drops are done: save its store without them (the version stays: no
        visible row changed) and forget the trim."""
        if store is not None:
            cur.execute("UPDATE datastream_streams SET store = %s::jsonb WHERE stream_id = %s",
                        [dumps(store), stream_id])
        cur.execute("DELETE FROM datastream_trims WHERE stream_id = %s", [stream_id])

    def garbage_dropped(self, row_id: int) -> None:
        with self.transaction() as cur:
            cur.execute("DELETE FROM datastream_garbage WHERE id = %s", [row_id])
