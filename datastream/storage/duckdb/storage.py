"""The embedded store: one DuckDB file (or memory), one writing process.

Tables:

* ``streams``: integer ``stream_key`` (also the creation order), the UUID ``stream_id``, user
  tags and engine meta as JSON text, and the record ``version``. Records are cached in process
  (the store has one writing process); several ``Datastream`` objects of that process may share
  one storage object, and the versions keep their commits from overwriting each other.
* ``chunks``: the datapoints, compressed per stream and level (:mod:`.chunks`): ``stream_key``,
  ``level`` (0 raw, else the code of a level key), ``t0``/``t1`` (time span), ``seq`` (write
  order), ``rows`` and the encoded ``body``, stored as consecutive pieces of at most
  ``PIECE_BYTES`` (``part`` 0, 1, ...; every piece row repeats the chunk's other columns).
  Why pieces: DuckDB keeps blobs beyond ~16 kB out of line, and a checkpoint that appends to a
  row group rewrites every out-of-line blob of it, so whole chunks made each checkpoint copy the
  whole store (and left that much free space in the file). Inline pieces are rewritten only
  within the table's last 2048 rows (16 MB of pieces at most); the body is stored uncompressed
  because it is compressed already. A large commit's pieces are sized to fill whole row
  groups (:func:`piece_counts`), which DuckDB writes into the file once, bypassing its log.
* ``levels``: level key → code and the Arrow schema its rows are read back in.

DuckDB is the ACID container: every commit is one transaction, so a crash leaves either the
whole batch or nothing, and an independent SQL engine is at hand to check the stored data.

Two in-process caches spare the write path reads (the store has one writing process, so they
see every change): the latest stored time per stream and level (an upper bound: level rows
after it need no merge with stored chunks), and the raw rows committed lately
(:mod:`datastream.storage.recent`), which the engine reads back right away to close buckets.

Drops by time (``WriteBatch.drop_raw_before`` / ``drop_levels_before`` / ``drop_levels_from``)
delete the chunks wholly inside the dropped range and rewrite the one straddling its bound, in
the commit's transaction, before the batch's own rows are written. A drop from a time lowers
the latest stored time of that level (still an upper bound), a raw drop replaces the stream's
kept recent rows like a truncation. The freed blocks are reused by DuckDB after checkpoints,
so a store under retention levels off in size.
"""

from __future__ import annotations

import bisect
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

from ... import arrow_numpy, exceptions, granularity
from ... import tags as tag_rules
from .. import codec, raw_columns
from ..base import (
    RAW_SCHEMA,
    MetaUpdate,
    RecordConflict,
    Storage,
    StreamExists,
    StreamRecord,
    WriteBatch,
    drop_time,
    id_runs,
    level_drops,
    version_conflict,
)
from ..recent import RecentRaw
from ..tag_index import TagIndex
from . import chunks as chunking
from .chunks import RAW, Chunk
from .connection import (
    ROW_GROUP_ROWS,
    StorageLocked,
    StorageUnavailable,
    key_list,
    open_database,
    transaction,
    unregister,
)

SCHEMA_VERSION = "4"
PIECE_BYTES = 8_000  # inline in DuckDB, and 2048 of them are 16 MB (module docstring)
# Large commits: pieces of about this size, never below the minimum (``piece_counts``)
PLANNED_PIECE_BYTES = 6_000
MIN_PIECE_BYTES = 1_000
FEW_ROWS = 4  # up to this many rows are written by parameterised statements, not an Arrow view
# Up to this many chunk pieces are inserted by one multi-row VALUES statement: cheaper than
# registering an Arrow view up to ~16 rows (1 row 1.3 vs 3.7 ms, 5 rows 2.1 vs 3.3 ms, 16 rows
# about even), and than a statement per row from 2 rows on.
FEW_PIECES = 12
STREAM_KEY = "stream_key"
# raw rows kept for reads (see ..recent): ~17 bytes each for plain numbers, so at most ~170 MB.
# As many as a Datastream buffers at most by default (max_buffered_points): an import of that
# many points is downsampled from memory, without reading and decoding them back.
RAW_CACHE_POINTS = 10_000_000
FEW_BUCKETS = 2 * chunking.CHUNK_ROWS  # level reads up to this span fetch rows, not Arrow
_WIDTHS = {level.key: level.width_us for level in granularity.Granularity.values}

_DDL = [
    "CREATE TABLE IF NOT EXISTS datastream_info (key VARCHAR PRIMARY KEY, value VARCHAR)",
    f"CREATE TABLE IF NOT EXISTS streams ({STREAM_KEY} INTEGER PRIMARY KEY,"
    " stream_id VARCHAR NOT NULL, tags VARCHAR NOT NULL, meta VARCHAR NOT NULL,"
    " version BIGINT NOT NULL DEFAULT 0)",
    f"CREATE TABLE IF NOT EXISTS chunks ({STREAM_KEY} INTEGER NOT NULL, level SMALLINT NOT NULL,"
    " t0 BIGINT NOT NULL, t1 BIGINT NOT NULL, seq BIGINT NOT NULL, part SMALLINT NOT NULL,"
    " rows INTEGER NOT NULL, body BLOB NOT NULL USING COMPRESSION uncompressed)",
    "CREATE TABLE IF NOT EXISTS levels (level_key VARCHAR PRIMARY KEY, code SMALLINT NOT NULL,"
    " arrow_schema BLOB NOT NULL)",
]
_CHUNK_SCHEMA = pa.schema([
    (STREAM_KEY, pa.int32()), ("level", pa.int16()), ("t0", pa.int64()), ("t1", pa.int64()),
    ("seq", pa.int64()), ("part", pa.int16()), ("rows", pa.int32()),
    ("body", pa.large_binary()),  # 64-bit offsets: one commit may hold more than 2 GB
])

# Files opened by this process: DuckDB would share one database between two connections of the
# same process, but two in-process record caches would then disagree.
_OPEN_FILES: weakref.WeakValueDictionary[str, DuckDBStorage] = weakref.WeakValueDictionary()
_OPEN_FILES_LOCK = threading.Lock()

__all__ = ["DuckDBStorage", "StorageLocked", "StorageUnavailable"]


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


@dataclasses.dataclass
class _Level:
    code: int
    schema: pa.Schema  # stored columns in order, ``t`` included, ``stream_id`` excluded
    width_us: int | None = None  # the bucket width of a known granularity: chunks align to it


class _Writes:
    """What one commit does to the chunks table: chunks to insert, chunks to delete."""

    def __init__(self, next_seq: int) -> None:
        self.next_seq = next_seq
        self.new: list[Chunk] = []
        self.drop: list[int] = []  # seq numbers
        self.widths: dict[int, int | None] = {}  # bucket width of each level code written

    def seq(self) -> int:
        self.next_seq += 1
        return self.next_seq - 1

    def add(self, key: int, level: int, rows: pa.Table, body: bytes, seq: int | None = None):
        t = chunking.times(rows)
        self.new.append(Chunk(key, level, int(t.min()), int(t.max()),
                              self.seq() if seq is None else seq, rows.num_rows, body))


class DuckDBStorage(Storage):
    """Storage in one DuckDB database (module docstring: the layout and why).

    ``path`` None (or ``':memory:'``) keeps everything in memory. ``options`` are DuckDB
    configuration settings (for example ``threads=1`` or ``memory_limit='1GB'``).
    ``raw_cache_points`` bounds the raw rows kept in memory for reads (0 keeps none).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 raw_cache_points: int = RAW_CACHE_POINTS, **options: Any) -> None:
        self._lock = threading.RLock()
        self._recent = RecentRaw(raw_cache_points)
        self._tag_index = TagIndex()  # candidates of tag queries (find_streams)
        self._ends: dict[tuple[int, int], int] = {}  # (stream key, level) -> max stored t1
        # (stream key, level) -> the codec's column choices for its last level chunk
        self._level_plans = codec.LevelPlans()
        # (stream key, level) -> the lowest seq its run of small chunks can start at, as far as
        # this process knows: merges look no further back (a hint: too low only costs a longer
        # scan, too high only merges less; the file holds no other writer)
        self._tail_from: dict[tuple[int, int], int] = {}
        self._con: duckdb.DuckDBPyConnection | None = None
        self._file: str | None = None
        self._entries: dict[str, _Entry] = {}
        self._creating: dict[str, _Entry] = {}  # during a commit: the streams it creates
        self._keys: dict[int, _Entry] = {}
        self._levels: dict[str, _Level] = {}
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
            return open_database(":memory:", options)
        with _OPEN_FILES_LOCK:
            if self._file in _OPEN_FILES:
                raise StorageLocked(
                    f"database file {self._file!r} is already open in this process;"
                    " close the other storage object first"
                )
            con = open_database(self._file, options)
            _OPEN_FILES[self._file] = self
            return con

    def _load(self) -> None:
        con = self._connection()
        try:
            for statement in _DDL:
                con.execute(statement)
            found = con.sql(
                "SELECT value FROM datastream_info WHERE key = 'schema_version'"
            ).fetchall()
        except duckdb.Error as error:
            raise StorageUnavailable(f"cannot use {self._file!r}: {error}") from error
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
            entry = _Entry(key, stream_id, json.loads(tags_json), tags_json, meta_json, version)
            self._entries[stream_id] = entry
            self._keys[key] = entry
            self._tag_index.add(stream_id, entry.tags)
        self._next_key = (rows[-1][0] + 1) if rows else 1
        self._next_seq = con.sql("SELECT coalesce(max(seq) + 1, 0) FROM chunks").fetchall()[0][0]
        self._ends = {(key, level): end for key, level, end in con.sql(
            f"SELECT {STREAM_KEY}, level, max(t1) FROM chunks GROUP BY {STREAM_KEY}, level"
        ).fetchall()}
        for level_key, code, schema in con.sql(
            "SELECT level_key, code, arrow_schema FROM levels"
        ).fetchall():
            self._levels[level_key] = _Level(code, pa.ipc.read_schema(pa.py_buffer(schema)),
                                             _WIDTHS.get(level_key))

    def close(self) -> None:
        """Checkpoint and release the file. Idempotent."""
        with self._lock:
            con, self._con = self._con, None
            if con is None:
                return
            self._recent.clear()
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
        by_id = "stream_id" in query
        if by_id:
            wanted = _stream_id_condition(query.pop("stream_id"))
            found = [self._entries[i] for i in dict.fromkeys(wanted) if i in self._entries]
            candidates = sorted(found, key=lambda entry: entry.key)
        if not query:
            return list(candidates)
        narrowed = self._tag_index.candidates(query)
        if narrowed is not None:
            if not by_id:
                candidates = sorted((self._entries[i] for i in narrowed),
                                    key=lambda entry: entry.key)
            else:
                candidates = [entry for entry in candidates if entry.stream_id in narrowed]
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
            self._tag_index.remove(stream_id, entry.tags)
            entry.tags, entry.tags_json = json.loads(tags_json), tags_json
            self._tag_index.add(stream_id, entry.tags)
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
            con = self._con
            self._check_expectations(batch)
            created = self._new_entries(batch.create)
            deleted = [self._entries[i] for i in dict.fromkeys(batch.delete) if i in self._entries]
            touched = [self._entries[i] for i in sorted(batch.touched()) if i in self._entries]
            writes = _Writes(self._next_seq)
            failure = "DuckDB commit failed, nothing of the batch was stored"
            self._creating = {entry.stream_id: entry for entry in created}
            try:
                with transaction(con, exceptions.StreamAppendFailed, failure):
                    self._delete(con, deleted)
                    self._insert_records(con, created)
                    lowered = self._drop(con, batch)
                    self._clear(con, batch, writes)
                    raw = self._write_raw(con, batch.raw, writes)
                    new_levels = self._write_levels(con, batch.levels, writes)
                    self._compact(con, writes)
                    self._store_chunks(con, writes)
                    new_meta = self._write_meta(con, batch.meta,
                                                {entry.key for entry in touched})
            finally:
                self._creating = {}
            self._next_seq = writes.next_seq
            self._levels.update(new_levels)
            for entry in deleted:
                del self._entries[entry.stream_id]
                self._keys.pop(entry.key, None)
                self._tag_index.remove(entry.stream_id, entry.tags)
            for entry in created:
                self._entries[entry.stream_id] = entry
                self._keys[entry.key] = entry
                self._tag_index.add(entry.stream_id, entry.tags)
            self._next_key += len(created)
            for stream_id, meta_json in new_meta.items():
                self._entries[stream_id].meta_json = meta_json
            for entry in touched:
                entry.version += 1
            self._remember(batch, writes, raw, [*created, *touched], deleted, lowered)

    def _remember(self, batch: WriteBatch, writes: _Writes, raw: dict[str, pa.Table],
                  changed: list[_Entry], deleted: list[_Entry],
                  lowered: dict[tuple[int, int], int]) -> None:
        """After COMMIT: move the stored ends (down where levels were dropped from a time, then
        up by the new chunks) and keep the raw rows of the batch for reads (module docstring).
        A cache must never fail a stored batch: on error it is emptied."""
        tails = {entry.stream_id: self._ends.get((entry.key, RAW)) for entry in changed}
        for pair, end in lowered.items():
            if pair in self._ends:
                self._ends[pair] = min(self._ends[pair], end)
        for chunk in writes.new:
            pair = (chunk.stream_key, chunk.level)
            self._ends[pair] = max(chunk.t1, self._ends.get(pair, chunk.t1))
        try:
            for entry in deleted:
                self._recent.forget(entry.stream_id)
            hidden = {*batch.clear_raw, *batch.truncate_raw, *batch.drop_raw_before}
            for entry in changed:
                rows = raw.get(entry.stream_id)
                if rows is not None and not chunking.in_time_order(rows):
                    self._recent.forget(entry.stream_id)  # the cache holds rows by time only
                    continue
                self._recent.committed(entry.stream_id, entry.version, 0, tails[entry.stream_id],
                                       rows, entry.stream_id in hidden)
        except Exception:
            self._recent.clear()

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
                raise version_conflict(stream_id, entry.version, version)
        earlier: list[StreamRecord] = []  # created by this batch: they count as existing
        for record, query in batch.create:
            existing = [entry.record() for entry in self._matching(query)]
            existing += [other for other in earlier
                         if tag_rules.matches(other.tags, query, other.stream_id)]
            if existing:
                raise StreamExists(f"a stream matching {query!r} exists", existing[0])
            if record.stream_id in self._entries:
                raise ValueError(f"stream id {record.stream_id!r} already exists")
            earlier.append(record)

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
        keys = key_list(entry.key for entry in entries)
        con.execute(f"DELETE FROM chunks WHERE {STREAM_KEY} IN {keys}")
        con.execute(f"DELETE FROM streams WHERE {STREAM_KEY} IN {keys}")

    def _key_of(self, stream_id: Any, what: str) -> int:
        """The integer key of a stored stream, or of one the batch being written creates."""
        entry = None
        if isinstance(stream_id, str):
            entry = self._entries.get(stream_id) or self._creating.get(stream_id)
        if entry is None:
            raise ValueError(f"{what}: unknown stream {stream_id!r}")
        return entry.key

    def _clear(self, con: duckdb.DuckDBPyConnection, batch: WriteBatch, writes: _Writes) -> None:
        """clear_raw / clear_levels / truncate_raw: before the batch's own rows are written."""
        if batch.clear_raw:
            keys = key_list(self._key_of(sid, "clear_raw") for sid in batch.clear_raw)
            con.execute(f"DELETE FROM chunks WHERE {STREAM_KEY} IN {keys} AND level = {RAW}")
        if batch.clear_levels:
            keys = key_list(self._key_of(sid, "clear_levels") for sid in batch.clear_levels)
            con.execute(f"DELETE FROM chunks WHERE {STREAM_KEY} IN {keys} AND level <> {RAW}")
        for stream_id, start in batch.truncate_raw.items():
            key = self._key_of(stream_id, "truncate_raw")
            start = int(start)
            straddling = whole_chunks(con.execute(
                f"SELECT seq, part, body FROM chunks WHERE {STREAM_KEY} = ? AND level = {RAW}"
                " AND t0 < ? AND t1 >= ?", [key, start, start]
            ).fetchall())
            con.execute(
                f"DELETE FROM chunks WHERE {STREAM_KEY} = ? AND level = {RAW} AND t1 >= ?",
                [key, start],
            )
            for seq, body in straddling:  # keep the part before the cut, in its place
                kept = chunking.slice_range(chunking.decode_raw(body), None, start)
                if kept.num_rows:
                    writes.add(key, RAW, kept, chunking.encode_raw(kept), seq=seq)

    def _drop(self, con: duckdb.DuckDBPyConnection,
              batch: WriteBatch) -> dict[tuple[int, int], int]:
        """drop_raw_before / drop_levels_before / drop_levels_from, first of all: the chunks
        wholly inside a dropped range are deleted and a chunk straddling its bound is rewritten
        with the rows kept, in its place (same seq). Each is stored at once, so that the next
        drop, the clears, the truncation and the batch's own rows meet what is left.
        Returns the new upper bound of the latest stored time of each (stream key, level)
        dropped from a time."""
        for stream_id, t in batch.drop_raw_before.items():
            key = self._key_of(stream_id, "drop_raw_before")
            self._cut_chunks(con, key, RAW, drop_time(t, "drop_raw_before"), True)
        lowered = {}
        for drops, before in ((batch.drop_levels_before, True), (batch.drop_levels_from, False)):
            what = "drop_levels_before" if before else "drop_levels_from"
            for level_key, stream_id, t in level_drops(drops, what):
                key = self._key_of(stream_id, what)
                if not isinstance(level_key, str) or not level_key:
                    raise ValueError(f"{what}: invalid level key {level_key!r}")
                level = self._levels.get(level_key)
                if level is None:
                    continue  # never written: nothing to drop
                self._cut_chunks(con, key, level.code, t, before)
                if not before:
                    lowered[(key, level.code)] = t - 1
        return lowered

    def _cut_chunks(self, con: duckdb.DuckDBPyConnection, key: int, level: int, t: int,
                    before: bool) -> None:
        """Delete one stream's rows of one level with t < ``t`` (``before``) or t >= ``t``."""
        rewrites = _Writes(self._next_seq)  # (rewritten chunks keep their seq: none is taken)
        straddling = whole_chunks(con.execute(
            f"SELECT seq, part, body FROM chunks WHERE {STREAM_KEY} = ? AND level = ?"
            " AND t0 < ? AND t1 >= ?", [key, level, t, t]
        ).fetchall())
        con.execute(
            f"DELETE FROM chunks WHERE {STREAM_KEY} = ? AND level = ?"
            f" AND {'t0 < ?' if before else 't1 >= ?'}", [key, level, t],
        )
        for seq, body in straddling:
            rows = chunking.decode_raw(body) if level == RAW else chunking.decode_level(body)
            kept = chunking.filter_range(rows, t, None) if before else \
                chunking.filter_range(rows, None, t)
            if kept.num_rows:
                encode = chunking.encode_raw if level == RAW else chunking.encode_level
                rewrites.add(key, level, kept, encode(kept), seq=seq)
        if rewrites.new:
            self._store_chunks(con, rewrites)

    def _write_raw(
        self, con: duckdb.DuckDBPyConnection, raw: dict[str, pa.Table], writes: _Writes
    ) -> dict[str, pa.Table]:
        """Each stream's rows (sorted by t) as chunks, in stream order; returns the rows as
        stored (RAW_SCHEMA) per stream."""
        stored = {}
        for stream_id in sorted(raw, key=lambda sid: self._key_of(sid, "raw")):
            table = stored[stream_id] = _raw_rows(stream_id, raw[stream_id])
            key = self._key_of(stream_id, "raw")
            for piece in chunking.pieces(table, chunking.RAW_CHUNK_ROWS):
                writes.add(key, RAW, piece, chunking.encode_raw(piece))
        return stored

    def _write_levels(
        self, con: duckdb.DuckDBPyConnection, batch_levels: dict[str, pa.Table], writes: _Writes
    ) -> dict[str, _Level]:
        """Upsert level rows; returns the levels registered or widened by this batch."""
        changed: dict[str, _Level] = {}
        for level_key, table in batch_levels.items():
            if table.num_rows == 0:
                continue
            try:
                level, by_stream = self._level_rows(con, level_key, table, changed)
                for key, rows in by_stream:
                    self._upsert_level(con, key, level, rows, writes)
            except (ValueError, TypeError, pa.ArrowException, duckdb.Error) as exc:
                raise ValueError(f"level {level_key!r}: {exc}") from exc
        return changed

    def _level_rows(
        self, con: duckdb.DuckDBPyConnection, level_key: str, table: pa.Table,
        changed: dict[str, _Level],
    ) -> tuple[_Level, list[tuple[int, pa.Table]]]:
        """The level (registered or widened by the incoming columns) and its rows per stream
        key, sorted by t with one row per t (the last given)."""
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        names = table.column_names
        for required in ("stream_id", "t"):
            if required not in names:
                raise ValueError(f"rows lack the {required!r} column")
        columns = {"t": table.column("t").cast(pa.int64())}
        if columns["t"].null_count:
            raise ValueError("null t")
        for name in names:
            if name in ("stream_id", "t") or pa.types.is_null(table.schema.field(name).type):
                continue  # an all-null column of type null carries no type: absent
            columns[name] = table.column(name)
        rows = pa.table(columns)
        level = self._registered_level(con, level_key, rows.schema, changed)
        per_stream = []
        for stream_id, group in _rows_by_stream(table.column("stream_id"), rows):
            key = self._key_of(stream_id, "levels")
            per_stream.append((key, chunking.keep_last_per_time(group)))
        return level, sorted(per_stream, key=lambda item: item[0])

    def _registered_level(
        self, con: duckdb.DuckDBPyConnection, level_key: str, incoming: pa.Schema,
        changed: dict[str, _Level],
    ) -> _Level:
        """The stored level, created from the first rows' schema or widened by new columns;
        a column arriving with another type than stored is refused."""
        if not isinstance(level_key, str) or not level_key:
            raise ValueError(f"invalid level key {level_key!r}")
        known = changed.get(level_key) or self._levels.get(level_key)
        if known is None:
            codes = [level.code for level in (*self._levels.values(), *changed.values())]
            level = _Level(max(codes, default=RAW) + 1, incoming, _WIDTHS.get(level_key))
            con.execute("INSERT INTO levels VALUES (?, ?, ?)",
                        [level_key, level.code, incoming.serialize().to_pybytes()])
            changed[level_key] = level
            return level
        stored = {field.name: field for field in known.schema}
        added = []
        for field in incoming:
            if field.name not in stored:
                added.append(field)
            elif stored[field.name].type != field.type and not _safe_cast(
                field.type, stored[field.name].type
            ):
                raise ValueError(
                    f"column {field.name!r} is {stored[field.name].type}, got {field.type}"
                )
        if not added:
            return known
        level = _Level(known.code, pa.schema(list(known.schema) + added), known.width_us)
        con.execute("UPDATE levels SET arrow_schema = ? WHERE level_key = ?",
                    [level.schema.serialize().to_pybytes(), level_key])
        changed[level_key] = level
        return level

    def _upsert_level(
        self, con: duckdb.DuckDBPyConnection, key: int, level: _Level, rows: pa.Table,
        writes: _Writes,
    ) -> None:
        """Write one stream's level rows, merging into the stored chunks they overlap (none
        when they all come after the stored ones, the usual case)."""
        rows = chunking.conform(rows, level.schema)
        t = chunking.times(rows)
        writes.widths[level.code] = level.width_us
        stored_end = self._ends.get((key, level.code))
        if stored_end is None or t[0] > stored_end:
            for piece in chunking.level_pieces(rows, level.width_us):
                writes.add(key, level.code, piece, self._encode_level(piece, key, level.code))
            return
        overlapping = whole_chunks(con.execute(
            f"SELECT seq, part, body FROM chunks WHERE {STREAM_KEY} = ? AND level = ?"
            " AND t1 >= ? AND t0 <= ?", [key, level.code, int(t[0]), int(t[-1])]
        ).fetchall())
        if overlapping:
            stored = [chunking.conform(chunking.decode_level(body), level.schema)
                      for _, body in overlapping]
            rows = chunking.keep_last_per_time(pa.concat_tables([*stored, rows]))
            writes.drop.extend(seq for seq, _ in overlapping)
        for piece in chunking.level_pieces(rows, level.width_us):
            writes.add(key, level.code, piece, self._encode_level(piece, key, level.code))

    def _encode_level(self, rows: pa.Table, key: int, level: int) -> bytes:
        return chunking.encode_level(rows, self._level_plans, (key, level))

    def _compact(self, con: duckdb.DuckDBPyConnection, writes: _Writes) -> None:
        """Merge the small chunks piled up at the end of a stream's (and level's) chunk
        sequence into full ones (module docstring of :mod:`.chunks`)."""
        fresh: dict[tuple[int, int], int] = {}
        for c in writes.new:
            if c.rows < chunking.SMALL_ROWS:
                fresh[(c.stream_key, c.level)] = fresh.get((c.stream_key, c.level), 0) + 1
        if not fresh:
            return
        hints = [self._tail_from.get(pair, 0) for pair in fresh]
        pairs = pa.table({STREAM_KEY: arrow_numpy.of_type([p[0] for p in fresh], pa.int32()),
                          "level": arrow_numpy.of_type([p[1] for p in fresh], pa.int16()),
                          "tail_from": arrow_numpy.of_type(hints, pa.int64())})
        con.register("_ds_pairs", pairs)
        try:
            # The small chunks after each pair's last full one, looking back only as far as
            # its run can reach: the constant lower bound on seq lets DuckDB skip the row
            # groups of older chunks, so a flush costs the same however long the file is.
            found = con.execute(
                f"WITH tail AS (SELECT c.{STREAM_KEY}, c.level, c.seq, c.rows, c.t0, c.t1,"
                f" max(CASE WHEN c.rows >= {chunking.SMALL_ROWS} THEN c.seq END)"
                f" OVER (PARTITION BY c.{STREAM_KEY}, c.level) AS last_full"
                f" FROM chunks c JOIN _ds_pairs p"
                f" ON c.{STREAM_KEY} = p.{STREAM_KEY} AND c.level = p.level"
                f" WHERE c.part = 0 AND c.seq >= {min(hints)} AND c.seq >= p.tail_from)"
                f" SELECT {STREAM_KEY}, level, seq, rows, t0, t1 FROM tail"
                f" WHERE rows < {chunking.SMALL_ROWS} AND seq > coalesce(last_full, -1)"
            ).fetchall()
        finally:
            unregister(con, ("_ds_pairs",))
        dropped = set(writes.drop)
        tails: dict[tuple[int, int], list[tuple[int, int, int, int, bytes | None]]] = {}
        for key, level, seq, rows, t0, t1 in found:
            if seq not in dropped:
                tails.setdefault((key, level), []).append((seq, rows, t0, t1, None))
        for chunk in writes.new:
            pair = (chunk.stream_key, chunk.level)
            if pair in fresh and chunk.rows < chunking.SMALL_ROWS:
                tails.setdefault(pair, []).append(
                    (chunk.seq, chunk.rows, chunk.t0, chunk.t1, chunk.body))
        for pair, entries in tails.items():
            self._tail_from[pair] = min(entry[0] for entry in entries)
        stored = {pair: entries for pair, entries in tails.items()
                  if len(entries) >= chunking.MERGE_AFTER}
        runs = {pair: run for pair, entries in stored.items()
                if len(run := _tail_run(sorted(entries))) >= chunking.MERGE_AFTER}
        if not runs:
            return
        # one query for the stored bodies of every run: streams written together (a batch of
        # many series) reach their merge in the same commit
        stored_seqs = [seq for run in runs.values() for seq, *_, body in run if body is None]
        bodies = dict(whole_chunks(con.execute(
            f"SELECT seq, part, body FROM chunks WHERE seq IN {key_list(stored_seqs)}"
        ).fetchall())) if stored_seqs else {}
        merged_new: set[int] = set()
        before = len(writes.new)
        for (key, level), run in runs.items():
            run_bodies = [body if body is not None else bodies[seq] for seq, *_, body in run]
            if level == RAW:
                merged = raw_columns.decode(run_bodies).table
            else:
                merged = chunking.keep_last_per_time(pa.concat_tables(
                    [chunking.decode_level(body) for body in run_bodies],
                    promote_options="default"))
            run_seqs = [seq for seq, *_ in run]
            merged_new.update(seq for seq, *_, body in run if body is not None)
            if level == RAW:
                cut = chunking.pieces(merged, chunking.RAW_CHUNK_ROWS)
            else:
                cut = chunking.level_pieces(merged, writes.widths.get(level))
            # the merged pieces take over the run's seq numbers (a run of small chunks makes
            # fewer full ones; more would take new numbers)
            seqs = run_seqs + [None] * (len(cut) - len(run_seqs))
            for seq, piece in zip(seqs, cut):
                body = (chunking.encode_raw(piece) if level == RAW
                        else self._encode_level(piece, key, level))
                writes.add(key, level, piece, body, seq=seq)
        # the chunks the runs replace go; the merged ones (appended after ``before``) stay
        writes.new = [c for c in writes.new[:before] if c.seq not in merged_new] + \
            writes.new[before:]
        writes.drop.extend(stored_seqs)

    def _store_chunks(self, con: duckdb.DuckDBPyConnection, writes: _Writes) -> None:
        if writes.drop:
            con.execute(f"DELETE FROM chunks WHERE seq IN {key_list(writes.drop)}")
        if not writes.new:
            return
        count = sum(max(1, -(-len(c.body) // PIECE_BYTES)) for c in writes.new)
        if count <= FEW_PIECES:  # one statement costs less than registering a table
            values = [
                value
                for c in writes.new
                for part, piece in enumerate(pieces_of(c.body))
                for value in (c.stream_key, c.level, c.t0, c.t1, c.seq, part, c.rows, piece)
            ]
            rows = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * (len(values) // 8))
            con.execute(f"INSERT INTO chunks VALUES {rows}", values)
            return
        table = _pieces_table(writes.new)
        con.register("_ds_chunks", table)
        try:
            con.execute("INSERT INTO chunks SELECT * FROM _ds_chunks")
        finally:
            unregister(con, ("_ds_chunks",))

    def _write_meta(
        self, con: duckdb.DuckDBPyConnection, updates: dict[str, MetaUpdate], touched: set[int]
    ) -> dict[str, str]:
        """Apply meta updates and increment the version of every ``touched`` stream key;
        returns stream id -> new meta JSON."""
        new_meta = {}
        for stream_id, update in updates.items():
            self._key_of(stream_id, "meta")
            meta = json.loads(self._entries[stream_id].meta_json)
            new_meta[stream_id] = _dumps(update.apply_to(meta))
        bumped: set[int] = set()
        if 0 < len(new_meta) <= FEW_ROWS:
            for stream_id, meta_json in new_meta.items():
                key = self._entries[stream_id].key
                bump = ", version = version + 1" if key in touched else ""
                con.execute(f"UPDATE streams SET meta = ?{bump} WHERE {STREAM_KEY} = ?",
                            [meta_json, key])
                if bump:
                    bumped.add(key)
        elif new_meta:
            table = pa.table(
                {
                    STREAM_KEY: arrow_numpy.of_type([self._entries[sid].key for sid in new_meta],
                                                    pa.int32()),
                    "meta": arrow_numpy.texts(list(new_meta.values())),
                }
            )
            con.register("_ds_meta", table)
            try:
                con.execute(
                    f"UPDATE streams SET meta = u.meta FROM _ds_meta u"
                    f" WHERE streams.{STREAM_KEY} = u.{STREAM_KEY}"
                )
            finally:
                unregister(con, ("_ds_meta",))
        if touched - bumped:
            con.execute(f"UPDATE streams SET version = version + 1 WHERE {STREAM_KEY} IN"
                        f" {key_list(sorted(touched - bumped))}")
        return new_meta

    @contextlib.contextmanager
    def maintenance_lock(self, stream_id: str, ttl_seconds: float = 60.0) -> Iterator[None]:
        """One writing process: nothing to coordinate, but a closed store says so."""
        self._check_open()
        yield

    # -- reading ---------------------------------------------------------------------------
    def stored_bytes(self, stream_id: str) -> dict[str, int] | None:
        """Compressed chunk bytes per level (what the file spends on them, pages aside)."""
        with self._lock:
            self._check_open()
            entry = self._entries.get(stream_id) if isinstance(stream_id, str) else None
            if entry is None:
                return {}
            sizes = self._connection().execute(
                f"SELECT level, sum(octet_length(body)) FROM chunks WHERE {STREAM_KEY} = ?"
                " GROUP BY level", [entry.key],
            ).fetchall()
            names = {level.code: key for key, level in self._levels.items()}
        return {"raw" if code == RAW else names.get(code, str(code)): int(size)
                for code, size in sizes}

    def _chunk_bodies(
        self, key: int, level: int, start_us: int | None, end_us: int | None
    ) -> list[memoryview]:
        clause, params = _overlapping(start_us, end_us)
        params = [key, level, *params]
        found = self._connection().sql(  # ordered here: DuckDB would sort the bodies too
            f"SELECT seq, part, body FROM chunks WHERE {STREAM_KEY} = ? AND level = ?{clause}",
            params=params,
        ).to_arrow_table()
        return whole_chunk_views(found)

    def _few_chunk_bodies(
        self, key: int, level: int, start_us: int | None, end_us: int | None
    ) -> list[bytes]:
        """``_chunk_bodies`` as DB-API rows: for a few chunks (a short level read) they cost
        half what an Arrow result does; for many, joining the pieces would cost more."""
        clause, params = _overlapping(start_us, end_us)
        found = self._connection().execute(
            f"SELECT seq, part, body FROM chunks WHERE {STREAM_KEY} = ? AND level = ?{clause}",
            [key, level, *params],
        ).fetchall()
        return [body for _, body in whole_chunks(found)]

    def _chunk_bodies_of(
        self, keys: list[int], level: int, start_us: int | None, end_us: int | None
    ) -> dict[int, list[bytes]]:
        """``_chunk_bodies`` of many streams in one query (many-stream tables)."""
        clause, params = _overlapping(start_us, end_us)
        params = [level, *params]
        found = self._connection().execute(
            f"SELECT {STREAM_KEY}, seq, part, body FROM chunks WHERE level = ?"
            f" AND {STREAM_KEY} IN {key_list(keys)}{clause}", params,
        ).fetchall()
        bodies: dict[int, list[bytes]] = {}
        for key, _, body in whole_chunks(found):  # in seq order, so each stream's in order
            bodies.setdefault(key, []).append(body)
        return bodies

    def _entries_of(self, stream_ids: list[str]) -> dict[str, _Entry]:
        return {sid: self._entries[sid] for sid in stream_ids
                if isinstance(sid, str) and sid in self._entries}

    def read_raw_many(
        self, stream_ids: list[str], start_us: int | None, end_us: int | None
    ) -> dict[str, pa.Table]:
        # one empty table for all: tables are immutable
        result = dict.fromkeys(stream_ids, arrow_numpy.empty_table(RAW_SCHEMA))
        with self._lock:
            self._check_open()
            entries = self._entries_of(stream_ids)
            if not entries or (start_us is not None and end_us is not None
                               and start_us >= end_us):
                return result
            bodies = self._chunk_bodies_of([e.key for e in entries.values()], RAW, start_us,
                                           end_us)
        for stream_id, entry in entries.items():
            result[stream_id] = self._raw_of(bodies.get(entry.key, []), start_us, end_us)
        return result

    def read_level_many(
        self, level_key: str, stream_ids: list[str], start_us: int | None, end_us: int | None
    ) -> dict[str, pa.Table | None]:
        with self._lock:
            self._check_open()
            level = self._levels.get(level_key)
            if level is None:
                return dict.fromkeys(stream_ids)
            # one empty table for all: tables are immutable
            result = dict.fromkeys(stream_ids, arrow_numpy.empty_table(level.schema))
            entries = self._entries_of(stream_ids)
            if not entries or (start_us is not None and end_us is not None
                               and start_us >= end_us):
                return result
            bodies = self._chunk_bodies_of([e.key for e in entries.values()], level.code,
                                           start_us, end_us)
        for stream_id, entry in entries.items():
            result[stream_id] = self._level_of(level, bodies.get(entry.key, []), start_us,
                                               end_us)
        return result

    def read_raw(
        self, stream_id: str, start_us: int | None, end_us: int | None, reverse: bool = False
    ) -> pa.Table:
        with self._lock:
            self._check_open()
            entry = self._entries.get(stream_id) if isinstance(stream_id, str) else None
            if entry is None or (start_us is not None and end_us is not None
                                 and start_us >= end_us):
                return arrow_numpy.empty_table(RAW_SCHEMA)
            kept = self._recent.read(stream_id, entry.version, 0, start_us, end_us, reverse)
            if kept is not None:
                return kept
            bodies = self._chunk_bodies(entry.key, RAW, start_us, end_us)
        return self._raw_of(bodies, start_us, end_us, reverse)

    def count_raw(self, stream_id: str, start_us: int | None, end_us: int | None) -> int:
        """Row counts of the chunks wholly inside the range, plus the rows in range of the
        few chunks straddling its bounds (the only ones decoded)."""
        with self._lock:
            self._check_open()
            entry = self._entries.get(stream_id) if isinstance(stream_id, str) else None
            if entry is None or _empty(start_us, end_us):
                return 0
            inside, inside_params = _inside(start_us, end_us)
            clause, params = _overlapping(start_us, end_us)
            con = self._connection()
            counted = con.execute(
                f"SELECT coalesce(sum(rows), 0) FROM chunks WHERE {STREAM_KEY} = ?"
                f" AND level = {RAW} AND part = 0 AND {inside}", [entry.key, *inside_params],
            ).fetchall()[0][0]
            straddling = whole_chunks(con.execute(
                f"SELECT seq, part, body FROM chunks WHERE {STREAM_KEY} = ? AND level = {RAW}"
                f"{clause} AND NOT ({inside})", [entry.key, *params, *inside_params],
            ).fetchall())
        for _, body in straddling:
            t = chunking.times(chunking.decode_raw(body))
            counted += int(np.count_nonzero(_in_range(t, start_us, end_us)))
        return int(counted)

    def first_raw_time(self, stream_id: str, start_us: int | None) -> int | None:
        """The first time of the chunks starting at or after ``start_us`` is a candidate read
        from their headers; only chunks straddling ``start_us`` are decoded."""
        with self._lock:
            self._check_open()
            entry = self._entries.get(stream_id) if isinstance(stream_id, str) else None
            if entry is None:
                return None
            con = self._connection()
            if start_us is None:
                return con.execute(
                    f"SELECT min(t0) FROM chunks WHERE {STREAM_KEY} = ? AND level = {RAW}",
                    [entry.key],
                ).fetchall()[0][0]
            start = int(start_us)
            found = con.execute(
                f"SELECT min(t0) FROM chunks WHERE {STREAM_KEY} = ? AND level = {RAW}"
                " AND t0 >= ?", [entry.key, start],
            ).fetchall()[0][0]
            straddling = whole_chunks(con.execute(
                f"SELECT seq, part, body FROM chunks WHERE {STREAM_KEY} = ? AND level = {RAW}"
                " AND t0 < ? AND t1 >= ?", [entry.key, start, start],
            ).fetchall())
        candidates = [] if found is None else [int(found)]
        for _, body in straddling:
            t = chunking.times(chunking.decode_raw(body))
            later = t[t >= start]
            if len(later):
                candidates.append(int(later.min()))
        return min(candidates, default=None)

    @staticmethod
    def _raw_of(bodies: list[bytes], start_us: int | None, end_us: int | None,
                reverse: bool = False) -> pa.Table:
        """The rows in [start_us, end_us) of one stream's raw chunks (in ``seq`` order) by
        time, stably: decoded into one array per column, sorted only when they are not."""
        if not bodies:
            return arrow_numpy.empty_table(RAW_SCHEMA)
        decoded = raw_columns.decode(bodies)
        if decoded.in_time_order:
            table = chunking.slice_range(decoded.table, start_us, end_us)
            return chunking.stable_by_time(table, reverse) if reverse else table
        return chunking.stable_by_time(chunking.filter_range(decoded.table, start_us, end_us),
                                       reverse)

    def read_level(
        self, level_key: str, stream_id: str, start_us: int | None, end_us: int | None
    ) -> pa.Table | None:
        with self._lock:
            self._check_open()
            level = self._levels.get(level_key)
            if level is None:
                return None
            entry = self._entries.get(stream_id) if isinstance(stream_id, str) else None
            if entry is None or (start_us is not None and end_us is not None
                                 and start_us >= end_us):
                return arrow_numpy.empty_table(level.schema)
            if _few_buckets(level_key, start_us, end_us):
                bodies = self._few_chunk_bodies(entry.key, level.code, start_us, end_us)
            else:
                bodies = self._chunk_bodies(entry.key, level.code, start_us, end_us)
        return self._level_of(level, bodies, start_us, end_us)

    @staticmethod
    def _level_of(level: _Level, bodies: list[bytes], start_us: int | None,
                  end_us: int | None) -> pa.Table:
        parts = [
            chunking.slice_range(chunking.conform(chunking.decode_level(body, start_us, end_us),
                                                  level.schema), start_us, end_us)
            for body in bodies
        ]
        parts = [part for part in parts if part.num_rows]
        if not parts:
            return arrow_numpy.empty_table(level.schema)
        return chunking.joined_by_time(parts)


def _overlapping(start_us: int | None, end_us: int | None) -> tuple[str, list[int]]:
    """The SQL condition (and its parameters) of chunks overlapping [start_us, end_us)."""
    clause, params = "", []
    if start_us is not None:
        clause += " AND t1 >= ?"
        params.append(int(start_us))
    if end_us is not None:
        clause += " AND t0 < ?"
        params.append(int(end_us))
    return clause, params


def _inside(start_us: int | None, end_us: int | None) -> tuple[str, list[int]]:
    """The SQL condition (and its parameters) of chunks wholly inside [start_us, end_us)."""
    conditions, params = ["TRUE"], []
    if start_us is not None:
        conditions.append("t0 >= ?")
        params.append(int(start_us))
    if end_us is not None:
        conditions.append("t1 < ?")
        params.append(int(end_us))
    return " AND ".join(conditions), params


def _few_buckets(level_key: str, start_us: int | None, end_us: int | None) -> bool:
    """Whether a level read spans at most ``FEW_BUCKETS`` buckets (a few chunks at most)."""
    width = _WIDTHS.get(level_key)
    if start_us is None or end_us is None or width is None:
        return False
    return end_us - start_us <= FEW_BUCKETS * width


def _empty(start_us: int | None, end_us: int | None) -> bool:
    return start_us is not None and end_us is not None and start_us >= end_us


def _in_range(t: np.ndarray, start_us: int | None, end_us: int | None) -> np.ndarray:
    keep = np.ones(len(t), dtype=bool)
    if start_us is not None:
        keep &= t >= start_us
    if end_us is not None:
        keep &= t < end_us
    return keep


def piece_counts(sizes: np.ndarray) -> np.ndarray:
    """How many pieces each chunk body of one commit is cut into.

    Bodies are cut into pieces of ``PIECE_BYTES`` (the last one shorter), unless the commit
    holds enough bytes to fill whole row groups of ``ROW_GROUP_ROWS`` pieces of at least
    ``MIN_PIECE_BYTES``: then its pieces are sized so that their number is an exact multiple
    of ``ROW_GROUP_ROWS``, each body getting a share in proportion to its bytes. DuckDB writes
    full row groups of a transaction straight into the file, and everything else first to its
    log and again at the next checkpoint; a commit whose rows end in a partial row group also
    leaves that group to be merged with its neighbours at the checkpoint, a rewrite of the
    neighbours too. Exact multiples write each byte of a large commit once."""
    fixed = np.maximum(1, -(-sizes // PIECE_BYTES))
    total = int(sizes.sum())
    if total < ROW_GROUP_ROWS * MIN_PIECE_BYTES:
        return fixed
    groups = -(-total // (ROW_GROUP_ROWS * PLANNED_PIECE_BYTES))
    rows = groups * ROW_GROUP_ROWS
    if sizes.size * 4 > rows:  # many small bodies: equal shares would not hold
        return fixed
    # one piece each, the rest in proportion to size, leftovers to the largest remainders
    share = sizes * (rows - sizes.size) / total
    counts = 1 + np.floor(share).astype(np.int64)
    short = rows - int(counts.sum())
    if short:
        counts[np.argsort(np.floor(share) - share, kind="stable")[:short]] += 1
    return np.minimum(counts, np.maximum(sizes, 1))  # never an empty piece


def _pieces_table(chunks: list[Chunk]) -> pa.Table:
    """Rows of the chunks table for ``chunks``, each body cut into its pieces
    (:func:`piece_counts`): built column by column over one joined buffer, without a Python
    object per piece."""
    sizes = np.array([len(c.body) for c in chunks], np.int64)
    counts = piece_counts(sizes)
    first = np.repeat(np.cumsum(counts) - counts, counts)  # each piece's chunk's first row
    part = np.arange(len(first)) - first
    chunk_of = np.repeat(np.arange(len(chunks)), counts)
    # piece j of a body of s bytes in c pieces starts at j * s // c: sizes differ by ≤ 1 byte
    within = part * sizes[chunk_of] // counts[chunk_of]
    starts = np.repeat(np.cumsum(sizes) - sizes, counts) + within
    offsets = np.append(starts, sizes.sum())
    data = pa.py_buffer(b"".join(c.body for c in chunks))

    def column(values: list[int], type_: pa.DataType) -> pa.Array:
        return arrow_numpy.of_type(np.asarray(values)[chunk_of], type_)

    return pa.Table.from_arrays(
        [
            column([c.stream_key for c in chunks], pa.int32()),
            column([c.level for c in chunks], pa.int16()),
            column([c.t0 for c in chunks], pa.int64()),
            column([c.t1 for c in chunks], pa.int64()),
            column([c.seq for c in chunks], pa.int64()),
            arrow_numpy.of_type(part, pa.int16()),
            column([c.rows for c in chunks], pa.int32()),
            pa.Array.from_buffers(pa.large_binary(), len(part),
                                  [None, pa.py_buffer(offsets), data]),
        ],
        schema=_CHUNK_SCHEMA,
    )


def pieces_of(body: bytes) -> list[bytes]:
    """A chunk body cut into the pieces it is stored as (module docstring)."""
    if len(body) <= PIECE_BYTES:
        return [body]
    view = memoryview(body)
    return [bytes(view[at:at + PIECE_BYTES]) for at in range(0, len(body), PIECE_BYTES)]


def _tail_run(
    entries: list[tuple[int, int, int, int, bytes | None]],
) -> list[tuple[int, int, int, int, bytes | None]]:
    """The run of small, time-ordered chunks at the end of one sequence (``(seq, rows, t0, t1,
    body or None when stored)`` in seq order), oldest first."""
    run: list[tuple[int, int, int, int, bytes | None]] = []
    for entry in reversed(entries):
        if entry[1] >= chunking.SMALL_ROWS or (run and entry[3] > run[-1][2]):
            break
        run.append(entry)
    run.reverse()
    return run


def whole_chunks(found: list[tuple]) -> list[tuple]:
    """Rows ``(..., seq, part, piece)`` as one row per chunk ``(..., seq, body)``, in seq
    order, each body put back together from its pieces."""
    found.sort(key=_seq_and_part)
    whole: list[tuple] = []
    pieces: list[bytes] = []
    for number, row in enumerate(found):
        pieces.append(row[-1])
        if number + 1 == len(found) or found[number + 1][-3] != row[-3]:
            body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            whole.append((*row[:-2], body))
            pieces = []
    return whole


def _rows_by_stream(ids: pa.ChunkedArray, rows: pa.Table) -> list[tuple[str, pa.Table]]:
    """``rows`` grouped by stream id, in their given order within a stream. The engine sends
    each stream's rows together (one chunk of ids each): then every group is a zero-copy
    slice, found without hashing the ids."""
    if pa.types.is_string(ids.type) or pa.types.is_dictionary(ids.type):
        runs = id_runs(ids)
        if runs is not None and len({stream_id for stream_id, _, _ in runs}) == len(runs):
            return [(stream_id, rows.slice(offset, length)) for stream_id, offset, length in runs]
    ids = ids.cast(pa.string()).combine_chunks()
    if ids.null_count:
        raise ValueError("null stream_id")
    encoded = ids.dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    return [(encoded.dictionary[code].as_py(), group)
            for code, group in _runs_by_code(codes, rows)]


def _runs_by_code(codes: np.ndarray, rows: pa.Table) -> list[tuple[int, pa.Table]]:
    """``rows`` grouped by ``codes`` (one code per row), in their given order within a group:
    zero-copy slices when each code's rows are together, a gather otherwise."""
    starts = np.concatenate(([0], np.flatnonzero(codes[1:] != codes[:-1]) + 1))
    if len(np.unique(codes[starts])) == len(starts):
        ends = np.append(starts[1:], len(codes))
        return [(int(codes[start]), rows.slice(int(start), int(end - start)))
                for start, end in zip(starts, ends)]
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    return [(int(codes[group[0]]), rows.take(arrow_numpy.from_numpy(group)))
            for group in np.split(order, bounds)]


def whole_chunk_views(found: pa.Table) -> list[memoryview]:
    """The bodies of rows ``seq, part, body`` (an Arrow result, any order) in seq order, each
    a view of the result's own bytes: once sorted, a chunk's pieces lie end to end there, so
    no piece becomes a Python object and no body is joined (a copy whose fresh pages cost
    as much as the copy for the largest chunks)."""
    if not found.num_rows:
        return []
    seq = arrow_numpy.to_numpy(found.column("seq"))
    order = np.lexsort((arrow_numpy.to_numpy(found.column("part")), seq))
    if (order[1:] < order[:-1]).any():  # stored out of order (chunks rewritten in place)
        found, seq = found.take(arrow_numpy.from_numpy(order)), seq[order]
    starts = np.flatnonzero(np.concatenate(([True], seq[1:] != seq[:-1])))
    rows = np.append(starts, len(seq)).tolist()  # each body's first row, then the end
    column = found.column("body")
    if column.num_chunks == 1:  # the usual result: no copy at all
        return _views(column.chunk(0), rows)
    # A result in several batches: a body whose pieces share a batch is a view of it; one
    # whose pieces straddle two (rare) is joined.
    edges = np.cumsum([0] + [len(batch) for batch in column.chunks]).tolist()
    views = []
    for low, high in zip(rows[:-1], rows[1:]):
        batch = bisect.bisect_right(edges, low) - 1
        if high <= edges[batch + 1]:
            base = edges[batch]
            views += _views(column.chunk(batch), [low - base, high - base])
        else:
            views.append(memoryview(b"".join(column[low:high].to_pylist())))
    return views


def _views(body: pa.Array, rows: list[int]) -> list[memoryview]:
    """Views of the joined pieces between consecutive ``rows`` of a binary array (the pieces
    of one row range lie end to end in its data buffer)."""
    _, offsets, data = body.buffers()
    width = np.int64 if pa.types.is_large_binary(body.type) else np.int32
    ends = np.frombuffer(offsets, width)[body.offset:body.offset + len(body) + 1]
    bounds = ends[rows].tolist()
    view = memoryview(data)
    return [view[low:high] for low, high in zip(bounds[:-1], bounds[1:])]


def _seq_and_part(row: tuple) -> tuple:
    return row[-3], row[-2]


def _safe_cast(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether values of ``source`` can be stored in a column of ``target`` without loss of
    meaning (numbers into numbers, text into text)."""
    numeric = (pa.types.is_integer, pa.types.is_floating)
    if any(check(source) for check in numeric) and any(check(target) for check in numeric):
        return True
    return (pa.types.is_string(source) or pa.types.is_large_string(source)) and (
        pa.types.is_string(target) or pa.types.is_large_string(target))


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
