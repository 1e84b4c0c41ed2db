"""The embedded store: one DuckDB file (or memory), one writing process.

Layout (see the class docstring for why):

* ``streams``: integer ``stream_key`` (also the creation order), the UUID ``stream_id``, user
  tags and engine meta as JSON text, and the record ``version``. Records are cached in process
  (the store has one writing process); several ``Datastream`` objects of that process may share
  one storage object, and the versions keep their commits from overwriting each other.
* ``raw``: ``stream_key, t, seq, k, i, f, s``; ``seq`` is a global insertion counter that
  orders points sharing a timestamp.
* ``level_<hex key>``: ``stream_key`` plus whatever columns the engine writes for that level;
  ``level_tables`` remembers their Arrow schemas.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from .. import exceptions
from .. import tags as tag_rules
from . import duckdb_levels as levels
from .base import (
    RAW_SCHEMA,
    MetaUpdate,
    RecordConflict,
    Storage,
    StreamExists,
    StreamRecord,
    WriteBatch,
)

SCHEMA_VERSION = "2"
STREAM_KEY = levels.STREAM_KEY

_DDL = [
    "CREATE TABLE IF NOT EXISTS datastream_info (key VARCHAR PRIMARY KEY, value VARCHAR)",
    f"CREATE TABLE IF NOT EXISTS streams ({STREAM_KEY} INTEGER PRIMARY KEY,"
    " stream_id VARCHAR NOT NULL, tags VARCHAR NOT NULL, meta VARCHAR NOT NULL,"
    " version BIGINT NOT NULL DEFAULT 0)",
    f"CREATE TABLE IF NOT EXISTS raw ({STREAM_KEY} INTEGER NOT NULL, t BIGINT NOT NULL,"
    " seq BIGINT NOT NULL, k TINYINT, i BIGINT, f DOUBLE, s VARCHAR)",
    "CREATE TABLE IF NOT EXISTS level_tables (level_key VARCHAR PRIMARY KEY,"
    " table_name VARCHAR NOT NULL, arrow_schema BLOB NOT NULL)",
]

# Files opened by this process: DuckDB would share one database between two connections of the
# same process, but two in-process record caches would then disagree.
_OPEN_FILES: weakref.WeakValueDictionary[str, DuckDBStorage] = weakref.WeakValueDictionary()
_OPEN_FILES_LOCK = threading.Lock()


StorageUnavailable = exceptions.StorageUnavailable  # its name here before it was shared


class StorageLocked(exceptions.StorageUnavailable):
    """Another writer holds the database file (the embedded store has one writing process)."""


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclasses.dataclass
class _Entry:
    """A cached stream record; the JSON text is kept to hand out independent copies cheaply."""

    key: int
    stream_id: str
    tags: dict[str, Any]
    tags_json: str
    meta_json: str
    version: int = 0

    def record(self) -> StreamRecord:
        return StreamRecord(
            self.stream_id, json.loads(self.tags_json), json.loads(self.meta_json), self.version
        )


class DuckDBStorage(Storage):
    """Storage in one DuckDB database.

    Data tables use a small integer stream key, not the UUID text: it compresses to a few bits
    and makes the per-stream filter an integer comparison. Each commit appends its raw rows
    grouped by stream and in time order, so DuckDB's zone maps skip most row groups when one
    stream's time range is read; there is no ART index, which would slow appends and only helps
    point lookups. Level rows are upserted with a delete-by-key plus insert, bounded by the
    batch's time span so that only the recent row groups are scanned.

    ``path`` None (or ``':memory:'``) keeps everything in memory. ``options`` are DuckDB
    configuration settings (for example ``threads=1`` or ``memory_limit='1GB'``).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, **options: Any) -> None:
        self._lock = threading.RLock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._file: str | None = None
        self._entries: dict[str, _Entry] = {}
        self._levels: dict[str, levels.LevelTable] = {}
        # level key -> stream key -> latest stored bucket start; lets an append-only level write
        # (the usual case: buckets past the last closed one) skip the upsert's DELETE. Loaded
        # lazily, updated only after COMMIT, and dropped whenever rows may have been removed.
        self._level_ends: dict[str, dict[int, int]] = {}
        self._pending_ends: dict[str, dict[int, int]] = {}  # of the commit under way
        self._next_key = 1
        self._next_seq = 0
        if path is not None and os.fspath(path) != ":memory:":
            self._file = os.path.realpath(os.fspath(path))
        self._con = self._connect(options)
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    # -- lifecycle -------------------------------------------------------------------------
    def _connect(self, options: dict[str, Any]) -> duckdb.DuckDBPyConnection:
        if self._file is None:
            return _open(":memory:", options)
        with _OPEN_FILES_LOCK:
            if self._file in _OPEN_FILES:
                raise StorageLocked(
                    f"database file {self._file!r} is already open in this process;"
                    " close the other storage object first"
                )
            con = _open(self._file, options)
            _OPEN_FILES[self._file] = self
            return con

    def _load(self) -> None:
        con = self._connection()
        for statement in _DDL:
            con.execute(statement)
        version = con.sql("SELECT value FROM datastream_info WHERE key = 'schema_version'")
        found = version.fetchall()
        if not found:
            con.execute(
                "INSERT INTO datastream_info VALUES ('schema_version', ?)", [SCHEMA_VERSION]
            )
        elif found[0][0] != SCHEMA_VERSION:
            raise StorageUnavailable(
                f"database {self._file!r} has storage schema version {found[0][0]},"
                f" this datastream reads version {SCHEMA_VERSION}"
            )
        rows = con.sql(
            f"SELECT {STREAM_KEY}, stream_id, tags, meta, version FROM streams"
            f" ORDER BY {STREAM_KEY}"
        ).fetchall()
        for key, stream_id, tags_json, meta_json, version in rows:
            self._entries[stream_id] = _Entry(
                key, stream_id, json.loads(tags_json), tags_json, meta_json, version
            )
        self._next_key = (rows[-1][0] + 1) if rows else 1
        self._next_seq = con.sql("SELECT coalesce(max(seq) + 1, 0) FROM raw").fetchall()[0][0]
        for level_key, name, schema in con.sql(
            "SELECT level_key, table_name, arrow_schema FROM level_tables"
        ).fetchall():
            self._levels[level_key] = levels.LevelTable(name, levels.deserialize_schema(schema))

    def close(self) -> None:
        """Checkpoint and release the file. Idempotent."""
        with self._lock:
            con, self._con = self._con, None
            if con is None:
                return
            try:
                con.close()
            finally:
                if self._file is not None:
                    with _OPEN_FILES_LOCK:
                        if _OPEN_FILES.get(self._file) is self:
                            del _OPEN_FILES[self._file]

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise StorageUnavailable("the DuckDB storage is closed")
        return self._con

    def _check_open(self) -> None:
        """Records are cached in process; a closed store still refuses to serve them."""
        self._connection()

    def __repr__(self) -> str:
        return f"DuckDBStorage({self._file or ':memory:'!r})"

    # -- stream records --------------------------------------------------------------------
    def find_streams(self, query: dict[str, Any] | None) -> list[StreamRecord]:
        with self._lock:
            self._check_open()
            return [entry.record() for entry in self._matching(query)]

    def _matching(self, query: dict[str, Any] | None) -> list[_Entry]:
        query = dict(query or {})
        candidates: Iterable[_Entry] = self._entries.values()
        if "stream_id" in query:
            wanted = _stream_id_condition(query.pop("stream_id"))
            found = [self._entries[i] for i in dict.fromkeys(wanted) if i in self._entries]
            candidates = sorted(found, key=lambda entry: entry.key)
        if not query:
            return list(candidates)
        return [entry for entry in candidates if tag_rules.matches(entry.tags, query)]

    def get_stream(self, stream_id: str) -> StreamRecord | None:
        with self._lock:
            self._check_open()
            entry = self._entries.get(stream_id) if isinstance(stream_id, str) else None
            return entry.record() if entry is not None else None

    def record_version(self, stream_id: str) -> int | None:
        entry = self._entries.get(stream_id) if isinstance(stream_id, str) else None
        return None if entry is None else entry.version

    def set_tags(
        self, stream_id: str, tags: dict[str, Any], expect_version: int | None = None
    ) -> None:
        with self._lock:
            self._check_open()
            entry = self._entry(stream_id)
            if expect_version is not None and entry.version != expect_version:
                raise RecordConflict(f"stream {stream_id!r} changed since it was read")
            tags_json = _dumps(tags)
            self._connection().execute(
                f"UPDATE streams SET tags = ?, version = version + 1 WHERE {STREAM_KEY} = ?",
                [tags_json, entry.key],
            )
            entry.tags, entry.tags_json = json.loads(tags_json), tags_json
            entry.version += 1

    def _entry(self, stream_id: str) -> _Entry:
        entry = self._entries.get(stream_id) if isinstance(stream_id, str) else None
        if entry is None:
            raise exceptions.StreamNotFound(f"stream {stream_id!r} not found")
        return entry

    # -- writing ---------------------------------------------------------------------------
    def commit(self, batch: WriteBatch) -> None:
        """Store the batch in one DuckDB transaction; the in-process caches change only after
        COMMIT succeeded, so a failure leaves both the file and this object as they were."""
        if batch.is_empty():
            return
        with self._lock:
            if self._con is None:
                raise exceptions.StreamAppendFailed(
                    "the DuckDB storage is closed; nothing of the batch was stored"
                )
            con = self._connection()
            self._check_expectations(batch)
            created = self._new_entries(batch.create)
            deleted = [self._entries[i] for i in dict.fromkeys(batch.delete) if i in self._entries]
            touched = [self._entries[i] for i in sorted(batch.touched()) if i in self._entries]
            self._pending_ends = {}
            failure = "DuckDB commit failed, nothing of the batch was stored"
            try:
                with _transaction(con, exceptions.StreamAppendFailed, failure):
                    self._delete(con, deleted)
                    self._insert_records(con, created)
                    self._clear(con, batch)
                    next_seq = self._write_raw(con, batch.raw)
                    new_levels = self._write_levels(con, batch.levels)
                    new_meta = self._write_meta(con, batch.meta)
                    if touched:
                        keys = _key_list(entry.key for entry in touched)
                        con.execute(
                            f"UPDATE streams SET version = version + 1 WHERE {STREAM_KEY} IN {keys}"
                        )
            finally:
                _unregister(con, ("_ds_raw", "_ds_level", "_ds_meta"))
            self._next_seq = next_seq
            self._levels.update(new_levels)
            for entry in deleted:
                del self._entries[entry.stream_id]
            for entry in created:
                self._entries[entry.stream_id] = entry
            self._next_key += len(created)
            if batch.clear_levels or deleted:
                self._level_ends = {}
            for level_key, ends in self._pending_ends.items():
                self._level_ends.setdefault(level_key, {}).update(ends)
            for stream_id, meta_json in new_meta.items():
                self._entries[stream_id].meta_json = meta_json
            for entry in touched:
                entry.version += 1

    def _check_expectations(self, batch: WriteBatch) -> None:
        """RecordConflict (before anything is written) when a record changed since it was read,
        or a stream to create already exists."""
        for stream_id, version in batch.expect.items():
            entry = self._entries.get(stream_id)
            if entry is None:
                raise exceptions.StreamNotFound(
                    f"stream {stream_id!r} not found; nothing of the batch was stored"
                )
            if entry.version != version:
                raise RecordConflict(
                    f"stream {stream_id!r} changed since it was read (version {entry.version},"
                    f" expected {version})"
                )
        for record, query in batch.create:
            existing = self._matching(query)
            if existing:
                raise StreamExists(f"a stream matching {query!r} exists", existing[0].record())
            if record.stream_id in self._entries:
                raise ValueError(f"stream id {record.stream_id!r} already exists")

    def _new_entries(self, create: list[tuple[StreamRecord, dict[str, Any]]]) -> list[_Entry]:
        entries = []
        for offset, (record, _) in enumerate(create):
            tags_json, meta_json = _dumps(record.tags), _dumps(record.meta)
            entries.append(_Entry(self._next_key + offset, record.stream_id,
                                  json.loads(tags_json), tags_json, meta_json, 0))
        return entries

    def _insert_records(self, con: duckdb.DuckDBPyConnection, entries: list[_Entry]) -> None:
        for entry in entries:
            con.execute(
                "INSERT INTO streams VALUES (?, ?, ?, ?, 0)",
                [entry.key, entry.stream_id, entry.tags_json, entry.meta_json],
            )

    def _delete(self, con: duckdb.DuckDBPyConnection, entries: list[_Entry]) -> None:
        if not entries:
            return
        keys = _key_list(entry.key for entry in entries)
        for name in ["raw", "streams"] + [table.name for table in self._levels.values()]:
            con.execute(f"DELETE FROM {levels.quote(name)} WHERE {STREAM_KEY} IN {keys}")

    def _key_of(self, stream_id: str) -> int | None:
        entry = self._entries.get(stream_id) if isinstance(stream_id, str) else None
        return None if entry is None else entry.key

    def _keys_of(self, stream_ids: Iterable[str], what: str) -> list[int]:
        keys = []
        for stream_id in stream_ids:
            entry = self._entries.get(stream_id) if isinstance(stream_id, str) else None
            if entry is None:
                raise ValueError(f"{what}: unknown stream {stream_id!r}")
            keys.append(entry.key)
        return keys

    def _clear(self, con: duckdb.DuckDBPyConnection, batch: WriteBatch) -> None:
        if batch.clear_raw:
            keys = _key_list(self._keys_of(batch.clear_raw, "clear_raw"))
            con.execute(f"DELETE FROM raw WHERE {STREAM_KEY} IN {keys}")
        for stream_id, start in batch.truncate_raw.items():
            (key,) = self._keys_of([stream_id], "truncate_raw")
            con.execute(f"DELETE FROM raw WHERE {STREAM_KEY} = {key} AND t >= {int(start)}")
        if batch.clear_levels:
            keys = _key_list(self._keys_of(batch.clear_levels, "clear_levels"))
            for table in self._levels.values():
                con.execute(f"DELETE FROM {levels.quote(table.name)} WHERE {STREAM_KEY} IN {keys}")

    def _write_raw(self, con: duckdb.DuckDBPyConnection, raw: dict[str, pa.Table]) -> int:
        """Append all raw rows with one INSERT from one registered Arrow table, grouped by
        stream (tight zone maps on the stream key). Returns the next insertion counter."""
        keyed = sorted(zip(self._keys_of(raw, "raw"), raw, raw.values()), key=lambda x: x[0])
        keys, parts = [], []
        for key, stream_id, table in keyed:
            if table.num_rows:
                keys.append(key)
                parts.append(_raw_rows(stream_id, table))
        if not parts:
            return self._next_seq
        rows = pa.concat_tables(parts).combine_chunks()
        counts = [part.num_rows for part in parts]
        seq = self._next_seq
        rows = rows.add_column(0, STREAM_KEY, pa.array(np.repeat(np.int32(keys), counts)))
        rows = rows.add_column(2, "seq", pa.array(np.arange(seq, seq + rows.num_rows)))
        con.register("_ds_raw", rows)
        con.execute(f"INSERT INTO raw SELECT {STREAM_KEY}, t, seq, k, i, f, s FROM _ds_raw")
        return seq + rows.num_rows

    def _write_levels(
        self, con: duckdb.DuckDBPyConnection, batch_levels: dict[str, pa.Table]
    ) -> dict[str, levels.LevelTable]:
        """Upsert level rows; returns the level tables created or widened."""
        changed: dict[str, levels.LevelTable] = {}
        for level_key, table in batch_levels.items():
            if table.num_rows == 0:
                continue
            try:
                stored = self._write_level(con, level_key, table)
            except duckdb.Error as exc:  # name the level: DuckDB's message does not
                raise ValueError(f"level {level_key!r}: {exc}") from exc
            # not in a finally: in an aborted transaction unregister fails and hides the cause
            con.unregister("_ds_level")
            if stored is not self._levels.get(level_key):
                changed[level_key] = stored
        return changed

    def _write_level(
        self, con: duckdb.DuckDBPyConnection, level_key: str, table: pa.Table
    ) -> levels.LevelTable:
        """Upsert one level's rows: delete the stored rows with the same keys, then insert."""
        rows = levels.prepare_rows(level_key, table, self._key_of)
        con.register("_ds_level", rows)
        stored = self._ensure_level_table(con, level_key, rows)
        target = levels.quote(stored.name)
        stream_keys = rows.column(STREAM_KEY).to_numpy()
        times = rows.column("t").to_numpy()
        ends = self._stored_ends(con, level_key, target)
        # rows are sorted by (stream_key, t): the first of each key is its earliest bucket
        firsts = np.flatnonzero(np.r_[True, stream_keys[1:] != stream_keys[:-1]])
        lasts = np.r_[firsts[1:] - 1, len(stream_keys) - 1]
        if any(times[i] <= ends.get(int(stream_keys[i]), -(2**63)) for i in firsts):
            con.execute(
                f"DELETE FROM {target} USING _ds_level b"
                f" WHERE {target}.t BETWEEN {int(times.min())} AND {int(times.max())}"
                f" AND {target}.{STREAM_KEY} BETWEEN {int(stream_keys.min())}"
                f" AND {int(stream_keys.max())}"
                f" AND {target}.{STREAM_KEY} = b.{STREAM_KEY} AND {target}.t = b.t"
            )
        pending = self._pending_ends.setdefault(level_key, {})
        for i in lasts:
            key = int(stream_keys[i])
            pending[key] = max(int(times[i]), ends.get(key, -(2**63)), pending.get(key, -(2**63)))
        columns = ", ".join(levels.quote(name) for name in rows.column_names)
        con.execute(f"INSERT INTO {target} ({columns}) SELECT {columns} FROM _ds_level")
        return stored

    def _stored_ends(
        self, con: duckdb.DuckDBPyConnection, level_key: str, target: str
    ) -> dict[int, int]:
        ends = self._level_ends.get(level_key)
        if ends is None:
            found = con.execute(f"SELECT {STREAM_KEY}, max(t) FROM {target} GROUP BY 1").fetchall()
            ends = self._level_ends[level_key] = {int(k): int(t) for k, t in found}
        return ends

    def _ensure_level_table(
        self, con: duckdb.DuckDBPyConnection, level_key: str, rows: pa.Table
    ) -> levels.LevelTable:
        """The level table, created from the first rows' Arrow schema or widened by columns
        that were not written before (older rows read NULL there)."""
        stored = self._levels.get(level_key)
        if stored is None:
            stored = levels.LevelTable(levels.table_name(level_key), levels.stored_schema(rows))
            columns = ", ".join(levels.quote(name) for name in rows.column_names)
            con.execute(
                f"CREATE TABLE {levels.quote(stored.name)} AS"
                f" SELECT {columns} FROM _ds_level LIMIT 0"
            )
            con.execute(
                "INSERT INTO level_tables VALUES (?, ?, ?)",
                [level_key, stored.name, levels.serialize_schema(stored.schema)],
            )
            return stored
        missing = stored.missing_fields(levels.stored_schema(rows))
        if not missing:
            return stored
        types = dict(zip(rows.column_names, con.sql("SELECT * FROM _ds_level LIMIT 0").types))
        for field in missing:
            con.execute(
                f"ALTER TABLE {levels.quote(stored.name)}"
                f" ADD COLUMN {levels.quote(field.name)} {types[field.name]}"
            )
        stored = stored.widened(missing)
        con.execute(
            "UPDATE level_tables SET arrow_schema = ? WHERE level_key = ?",
            [levels.serialize_schema(stored.schema), level_key],
        )
        return stored

    def _write_meta(
        self, con: duckdb.DuckDBPyConnection, updates: dict[str, MetaUpdate]
    ) -> dict[str, str]:
        """Apply meta updates in one UPDATE; returns stream id -> new meta JSON."""
        if not updates:
            return {}
        keys = self._keys_of(updates, "meta")
        new_meta = {}
        for stream_id, update in updates.items():
            meta = json.loads(self._entries[stream_id].meta_json)
            new_meta[stream_id] = _dumps(update.apply_to(meta))
        table = pa.table(
            {
                STREAM_KEY: pa.array(keys, pa.int32()),
                "meta": pa.array(list(new_meta.values()), pa.string()),
            }
        )
        con.register("_ds_meta", table)
        con.execute(
            f"UPDATE streams SET meta = u.meta FROM _ds_meta u"
            f" WHERE streams.{STREAM_KEY} = u.{STREAM_KEY}"
        )
        return new_meta

    @contextlib.contextmanager
    def maintenance_lock(self, stream_id: str, ttl_seconds: float = 60.0) -> Iterator[None]:
        """One writing process: nothing to coordinate, but a closed store refuses."""
        self._check_open()
        yield

    # -- reading ---------------------------------------------------------------------------
    def read_raw(
        self, stream_id: str, start_us: int | None, end_us: int | None, reverse: bool = False
    ) -> pa.Table:
        with self._lock:
            con = self._connection()
            entry = self._entries.get(stream_id) if isinstance(stream_id, str) else None
            if entry is None:
                return RAW_SCHEMA.empty_table()
            result = con.sql(
                f"SELECT t, seq, k, i, f, s FROM raw WHERE {_range(entry.key, start_us, end_us)}"
            ).to_arrow_table()
            seq = result.column("seq").to_numpy()
            result = _ordered(result.drop_columns(["seq"]), seq, reverse)
            return result.cast(RAW_SCHEMA)

    def read_level(
        self, level_key: str, stream_id: str, start_us: int | None, end_us: int | None
    ) -> pa.Table | None:
        with self._lock:
            con = self._connection()
            stored = self._levels.get(level_key)
            if stored is None:
                return None
            entry = self._entries.get(stream_id) if isinstance(stream_id, str) else None
            if entry is None:
                return stored.schema.empty_table()
            columns = ", ".join(levels.quote(name) for name in stored.schema.names)
            result = con.sql(
                f"SELECT {columns} FROM {levels.quote(stored.name)}"
                f" WHERE {_range(entry.key, start_us, end_us)}"
            ).to_arrow_table()
            return _ordered(result, None, False).cast(stored.schema)


def _ordered(rows: pa.Table, seq: np.ndarray | None, reverse: bool) -> pa.Table:
    """Rows ordered by (t, seq), or t descending then seq with ``reverse``.

    Sorting here rather than with ORDER BY: DuckDB returns an unordered scan in insertion
    order, which for time-ordered appends is already the answer, so the common case costs one
    vectorised check; otherwise a numpy lexsort still beats DuckDB's sort (35% faster measured
    on a 100k-point stream).
    """
    t = rows.column("t").to_numpy()
    if seq is None:
        seq = np.arange(len(t))
    if not reverse and len(t) > 1:
        step = np.diff(t)
        if np.all((step > 0) | ((step == 0) & (np.diff(seq) > 0))):
            return rows
    return rows.take(np.lexsort((seq, -t if reverse else t)))


def _raw_rows(stream_id: str, table: pa.Table | pa.RecordBatch) -> pa.Table:
    """One stream's raw rows in RAW_SCHEMA (cast only when the types differ)."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if table.schema.equals(RAW_SCHEMA):
        return table
    missing = set(RAW_SCHEMA.names) - set(table.column_names)
    if missing:
        raise ValueError(f"raw rows of stream {stream_id!r} lack columns {sorted(missing)}")
    return table.select(RAW_SCHEMA.names).cast(RAW_SCHEMA)


def _open(target: str, options: dict[str, Any]) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection, with DuckDB's errors turned into datastream's."""
    try:
        return duckdb.connect(target, config=options)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise StorageLocked(
                f"database file {target!r} is in use by another process: the embedded store"
                f" allows one writing process ({exc})"
            ) from exc
        raise StorageUnavailable(f"cannot open {target!r}: {exc}") from exc
    except duckdb.Error as exc:
        raise StorageUnavailable(f"cannot open {target!r}: {exc}") from exc


def _unregister(con: duckdb.DuckDBPyConnection, views: Iterable[str]) -> None:
    """Drop the batch's Arrow views; never hides the error being raised."""
    for view in views:
        try:
            con.unregister(view)
        except duckdb.Error:
            pass


@contextlib.contextmanager
def _transaction(
    con: duckdb.DuckDBPyConnection, error: type[Exception], failure: str
) -> Iterator[None]:
    """BEGIN ... COMMIT; on any error roll back and raise ``error`` naming the cause (an
    interrupt is rolled back and re-raised as it is)."""
    try:
        con.execute("BEGIN TRANSACTION")
        yield
        con.execute("COMMIT")
    except BaseException as exc:
        _rollback(con)
        if not isinstance(exc, Exception):
            raise
        raise error(f"{failure}: {type(exc).__name__}: {exc}") from exc


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass  # no transaction was open (BEGIN itself failed)


def _key_list(keys: Iterable[int]) -> str:
    return "(" + ", ".join(str(int(key)) for key in keys) + ")"


def _range(key: int, start_us: int | None, end_us: int | None) -> str:
    """WHERE clause of one stream's time range; bounds are formatted as integers (never text)
    so that DuckDB prunes row groups with its zone maps."""
    clause = f"{STREAM_KEY} = {int(key)}"
    if start_us is not None:
        clause += f" AND t >= {int(start_us)}"
    if end_us is not None:
        clause += f" AND t < {int(end_us)}"
    return clause


def _stream_id_condition(condition: Any) -> list[str]:
    """Ids named by a top-level ``stream_id`` query condition (an id, ``$eq`` or ``$in``)."""
    if isinstance(condition, str):
        return [condition]
    if isinstance(condition, dict) and len(condition) == 1:
        ((operator, value),) = condition.items()
        if operator == "$eq" and isinstance(value, str):
            return [value]
        if operator == "$in" and isinstance(value, (list, tuple, set, frozenset)):
            return [item for item in value if isinstance(item, str)]
    raise ValueError(f"unsupported stream_id condition: {condition!r}")
