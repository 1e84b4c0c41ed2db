"""The MongoDB backend: ``datastream.backends.mongodb.Backend(database_name, **connection)``.

:class:`MongoDBStorage` wires the parts, each in its own module: :mod:`.query` (tag
queries as filters), :mod:`.chunks` (raw rows as codec chunks in documents, and why),
:mod:`.levels` (level rows), :mod:`.meta` (meta and MetaUpdates as update
operators), :mod:`.database` (the collections), :mod:`.commit` (atomic conditional commits)
and :mod:`.protocol` (readers' snapshots, rolling forward, recovery). The parts are objects
given what they work on (a commit gets a ``commit.Context``); none of them imports this module.

Collections
-----------
* ``streams``: one document per stream: ``_id`` (the stream id), ``order`` (creation counter),
  ``qkey`` (unique: hash of the creating query), ``tags`` (user tags, keys sorted), ``meta``
  (the engine's dict; top-level None values are kept in ``nulls``, see :mod:`.meta`),
  ``v`` (version), ``w`` (write bookkeeping, see :mod:`.commit`), ``lock``, and while
  a batch creates or has deleted the stream, ``new`` or ``gone`` (the stream is invisible).
* ``raw``: raw datapoints in chunks (:mod:`.chunks`): per stream and commit, runs of at
  most 4096 rows that span less than an hour, each encoded by the shared codec into one binary
  field. Index ``(sid, t1, t0, q)``: a time-range read is one index range scan, bounded on both
  sides by the one-hour span limit.
* ``level_<key>``: a document per level row (:mod:`.levels`). Unique index
  ``(stream_id, t, _q)``; the newest visible version of a ``(stream_id, t)`` is the row (an
  upsert in effect, without overwriting a committed row before the batch that replaces it is
  committed). ``level_schemas`` remembers column types so that reads return the written types.
* ``batches`` (commit journal, see :mod:`.commit`), ``counters``.
* ``datastream_info``: ``{_id: 'schema_version', value}``, the stored layout's version
  (``SCHEMA_VERSION``), written when a database is first opened. Opening a database of another
  version raises ``StorageUnavailable``; a database from before the version was stored counts
  as version 1 when it holds raw chunks of that layout (each column packed apart), and is
  adopted when it holds none (nothing else changed).

Maintenance locks
-----------------
``streams.lock = {owner, until}`` (client wall clock), taken with one conditional update
(free, or expired). Waiting retries with jittered exponential backoff up to ``lock_wait``
seconds (default: the ttl, after which a crashed holder's lock has expired), then raises
``StreamAppendContended``. Commits made by the holding thread are fenced: the flip only
applies while this owner still holds the lock and renews its lease, else the batch is undone
and ``LockExpiredMidMaintenance`` raised. Release checks the owner too and raises
``LockExpiredMidMaintenance`` when someone else took the lock meanwhile; a release the server
fails raises ``StorageUnavailable`` and the storage object frees that lock when it next takes it
(instead of waiting for the lease). Re-entrant per thread.

Creating and deleting streams
-----------------------------
A stream is created by a commit (``WriteBatch.create``): after looking for a visible match, its
document is inserted with ``qkey`` = SHA-256 of the canonical JSON of the query under a unique
index, so of concurrent creators with the same query exactly one insert succeeds and the others
get ``StreamExists`` (``create_stream`` returns the existing record). Inside a larger batch the
document is inserted pending (``new``) and appears with the batch's commit point; on abort it
is removed. A stream created alone is one plain insert. A holder whose tags no longer match its
query gives the key up (``qkey`` becomes ``'released:<id>'``) when the next creator finds it.

Deleting (``WriteBatch.delete``) is part of a commit too: the flip marks the document ``gone``
(and releases its key), which hides it and its rows from the commit point on; rows and document
are removed after the commit, and ``recover()`` finishes a removal that was interrupted.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import bson
import pyarrow as pa
import pymongo
from pymongo import ReturnDocument
from pymongo.errors import ConnectionFailure, DuplicateKeyError, InvalidOperation, PyMongoError

from ... import arrow_numpy, exceptions
from ...granularity import Granularity
from ...raw_kinds import canonical_json
from ...units import INT64_MAX
from ..base import (
    RAW_SCHEMA,
    Storage,
    StreamExists,
    StreamRecord,
    WriteBatch,
    drop_time,
    level_drops,
    version_conflict,
)
from ..base import RecordConflict as RecordConflict  # re-exported: importable from here
from . import chunks as mongo_chunks
from . import levels as mongo_levels
from . import meta as mongo_meta
from . import query as mongo_query
from .chunks import CHUNK_BYTES
from .chunks import CHUNK_ROWS as CHUNK_ROWS  # re-exported: the chunking limits
from .chunks import CHUNK_SPAN_US as CHUNK_SPAN_US
from .commit import Commit, Context, Creation, Plan
from .database import Database, shard_key
from .protocol import LIVE, RECORD_FIELDS, VERSION_FIELDS, CommitProtocol, Snapshot

# Version of the stored layout, kept in ``datastream_info``; opening a database of another
# version raises StorageUnavailable. 1: raw chunks packed column by column; 2: one codec chunk
# per raw chunk document (see .chunks).
SCHEMA_VERSION = "2"
_Commit = Commit  # its name before the split, still importable from here
# The server cannot be reached (selection timeouts, lost connections, network timeouts) or the
# client was closed (InvalidOperation: "cannot use MongoClient after close").
UNREACHABLE = (ConnectionFailure, InvalidOperation)


class MongoDBStorage(Storage):
    """Streams, raw chunks and level rows in one MongoDB database (module docstrings: why)."""

    concurrent_writers = True

    def __init__(
        self,
        database_name: str,
        client: Any = None,
        *,
        commit_timeout: float = 600.0,
        lock_wait: float | None = None,
        **connection_settings: Any,
    ) -> None:
        """``client``: an existing (py)mongo(mock) client, not closed by :meth:`close`.
        Otherwise ``uri`` or ``host``/``port`` and any ``pymongo.MongoClient`` option."""
        if client is None:
            uri = connection_settings.pop("uri", None)
            if uri is not None:
                connection_settings["host"] = uri
            client = pymongo.MongoClient(**connection_settings)
            self._owns_client = True
        else:
            self._owns_client = False
        self._client = client
        self._db = client[database_name]
        self.database_name = database_name
        self.lock_wait = lock_wait
        # Locks this object took and could not release (the server failed at that moment):
        # stream id -> owner token. Only this object can free them before their lease ends.
        self._unreleased: dict[str, str] = {}
        self._unreleased_guard = threading.Lock()
        self._local = threading.local()
        self._database = Database(self._db)
        # the two collections this class reads and locks on most
        self._streams, self._raw = self._database.streams, self._database.raw
        self._protocol = CommitProtocol(self._database, commit_timeout)
        try:
            found = self._schema_version()
            if found != SCHEMA_VERSION:
                self.close()
                raise exceptions.StorageUnavailable(
                    f"MongoDB database {database_name!r} has storage schema version {found},"
                    f" this datastream reads version {SCHEMA_VERSION}"
                )
            self._database.create_indexes()
        except PyMongoError as error:
            self.close()
            raise exceptions.StorageUnavailable(
                f"MongoDB database {database_name!r} is unavailable: {error}"
            ) from error

    def _schema_version(self) -> str:
        """The database's storage schema version; a new database gets ours. A database from
        before the version was stored is version 1 if it holds raw chunks of that layout
        (columns packed apart, no ``c``); without any it has nothing we cannot read."""
        info = self._database.info
        doc = info.find_one({"_id": "schema_version"})
        if doc is None:
            if self._raw.find_one({"c": {"$exists": False}}, {"_id": 1}) is not None:
                return "1"
            with contextlib.suppress(DuplicateKeyError):  # a concurrent opener did it
                info.update_one({"_id": "schema_version"},
                                {"$setOnInsert": {"value": SCHEMA_VERSION}}, upsert=True)
            doc = info.find_one({"_id": "schema_version"}) or {}
        return str(doc.get("value"))

    def shard_keys(self) -> dict[str, dict[str, int]]:
        """The shard key of every collection of this database that grows with data (the raw
        collection and each level collection), for ``sh.shardCollection`` on a sharded
        cluster; the other collections stay small and unsharded (see ``database.SHARD_KEYS``
        and docs/guide/backends.md)."""
        names = ["raw", *(f"level_{level.key}" for level in Granularity.values[1:])]
        return {name: key for name in names if (key := shard_key(name)) is not None}

    @property
    def commit_timeout(self) -> float:
        """Seconds after which a batch still open on a stream counts as crashed."""
        return self._protocol.commit_timeout

    def close(self) -> None:
        if self._owns_client and self._client is not None:
            self._client.close()
        self._client = None

    @contextlib.contextmanager
    def _reachable(self, what: str) -> Iterator[None]:
        """StorageUnavailable when closed or when the server cannot be reached (outside
        commits), naming what was being done."""
        if self._client is None:
            raise exceptions.StorageUnavailable(f"{what}: the MongoDB storage is closed")
        try:
            yield
        except UNREACHABLE as error:
            raise exceptions.StorageUnavailable(
                f"{what}: MongoDB database {self.database_name!r} is unreachable: {error}"
            ) from error

    def __repr__(self) -> str:
        return f"MongoDBStorage({self.database_name!r})"

    # -- stream records --------------------------------------------------------------------
    def find_streams(self, query: dict[str, Any] | None) -> list[StreamRecord]:
        condition = mongo_query.translate(query)
        with self._reachable("finding streams"):
            return self._protocol.records(
                lambda: list(self._streams.find(condition, RECORD_FIELDS).sort("order", 1))
            )

    def get_stream(self, stream_id: str) -> StreamRecord | None:
        return self._one_record(stream_id, RECORD_FIELDS)

    def record_version(self, stream_id: str) -> int | None:
        """The logical version without reading tags and meta."""
        record = self._one_record(stream_id, VERSION_FIELDS)
        return None if record is None else record.version

    def _one_record(self, stream_id: str, fields: dict[str, int]) -> StreamRecord | None:
        """One logical record, read with only ``fields`` of its document."""
        if not isinstance(stream_id, str):
            return None
        with self._reachable(f"reading stream {stream_id!r}"):
            records = self._protocol.records(
                lambda: list(self._streams.find({"_id": stream_id}, fields))
            )
        return records[0] if records else None

    def recover(self) -> None:
        """Finish interrupted deletes and resolve batches left open by crashed writers (see
        :meth:`CommitProtocol.recover`); StorageUnavailable when the server is unreachable."""
        with self._reachable("recovering interrupted writes"):
            self._protocol.recover()

    def refresh_stream(self, stream_id: str) -> StreamRecord | None:
        """Re-read one record, first finishing what other writers left on it."""
        with self._reachable(f"reading stream {stream_id!r}"):
            self._protocol.settle_stream(stream_id, abort_stale=True)
        return self.get_stream(stream_id)

    def _insert_stream(self, creation: Creation, batch_id: Any, now: float) -> None:
        """Insert a stream document unless a stream matching its query exists (StreamExists).
        With ``batch_id`` the document is pending: invisible until that batch commits.

        The unique ``qkey`` makes concurrent creators with the same query meet; the holder of
        the key decides: a committed creation or deletion is rolled forward and a crashed one
        aborted first; one still pending in another writer means StreamExists (with its
        pending record); a holder whose tags no longer match its query gives the key up."""
        sid, qkey = creation.doc["_id"], creation.qkey
        for _ in range(8):
            existing = self.find_streams(creation.query)
            if existing:
                raise StreamExists(
                    f"a stream matching {creation.query!r} exists: {existing[0].stream_id}",
                    existing[0],
                )
            order = self._database.counters.find_one_and_update(
                {"_id": "streams"}, {"$inc": {"n": 1}}, upsert=True,
                return_document=ReturnDocument.AFTER,
            )["n"]
            w: dict[str, Any] = {"seq": 0, "open": [], "raw_floor": 0, "level_floor": 0,
                                 "gc": 0, "cuts": []}
            doc = {**creation.doc, "order": order, "w": w}
            if batch_id is not None:
                doc["new"] = batch_id
                w.update(seq=1, open=[{"b": batch_id, "at": now}])
            try:
                self._streams.insert_one(doc)
                return
            except DuplicateKeyError:
                pass
            if self._streams.find_one({"_id": sid}, {"_id": 1}) is not None:
                raise exceptions.StreamAppendFailed(f"stream id {sid!r} already exists")
            holder = self._streams.find_one({"qkey": qkey}, {"_id": 1})
            if holder is None:
                continue  # the key was released meanwhile
            self._protocol.settle_stream(holder["_id"], abort_stale=True)
            holder = self._streams.find_one(
                {"_id": holder["_id"], "qkey": qkey},
                {"new": 1, "gone": 1, "tags": 1, "meta": 1, "nulls": 1},
            )
            if holder is None:
                continue  # aborted, deleted or released meanwhile
            if holder.get("new") is not None:
                meta = dict(holder.get("meta") or {})
                meta.update(dict.fromkeys(holder.get("nulls") or {}))
                raise StreamExists(
                    f"a stream matching {creation.query!r} is being created by another writer:"
                    f" {holder['_id']}",
                    StreamRecord(holder["_id"], holder.get("tags") or {}, meta),
                )
            if holder.get("gone") is None and self._streams.find_one(
                {"$and": [{"_id": holder["_id"]}, creation.condition]}, {"_id": 1}
            ):
                continue  # a concurrent creator won: the next lookup returns its stream
            # Its tags changed since it was created with this query: it gives the key up.
            self._streams.update_one(
                {"_id": holder["_id"], "qkey": qkey},
                {"$set": {"qkey": f"released:{holder['_id']}"}},
            )
        raise exceptions.StreamAppendContended(
            f"creating a stream for query {creation.query!r} kept racing with other writers"
        )

    def set_tags(
        self, stream_id: str, tags: dict[str, Any], expect_version: int | None = None
    ) -> None:
        """A compare-and-set on the version when ``expect_version`` is given; batches
        journalled as committed on the stream are rolled forward first, so that the stored
        version is the logical one."""
        stored = mongo_query.canonical(tags)
        if not isinstance(stream_id, str):
            raise exceptions.StreamNotFound(f"stream {stream_id!r} not found")
        with self._reachable(f"setting tags of stream {stream_id!r}"):
            self._protocol.settle_stream(stream_id, abort_stale=False)
            condition: dict[str, Any] = {"_id": stream_id, **LIVE}
            if expect_version is not None:
                condition["v"] = int(expect_version)
            update = {"$set": {"tags": stored}, "$inc": {"v": 1}}
            if self._streams.update_one(condition, update).matched_count:
                return
        version = self.record_version(stream_id)
        if version is None:
            raise exceptions.StreamNotFound(f"stream {stream_id!r} not found")
        raise version_conflict(stream_id, version, expect_version)

    # -- reading ---------------------------------------------------------------------------
    def read_raw(
        self, stream_id: str, start_us: int | None, end_us: int | None, reverse: bool = False
    ) -> pa.Table:
        empty = arrow_numpy.empty_table(RAW_SCHEMA)
        if not isinstance(stream_id, str) or _empty_range(start_us, end_us):
            return empty
        seen: list[Snapshot] = []

        def read(snap: Snapshot) -> list[dict[str, Any]]:
            seen[:] = [snap]
            return self._raw_chunks(stream_id, snap, start_us, end_us)

        with self._reachable(f"reading raw rows of stream {stream_id!r}"):
            chunks = self._protocol.consistent(stream_id, read)
        if not chunks:
            return empty
        return mongo_chunks.decode(chunks, start_us, end_us, reverse, seen[0].cuts, stream_id,
                                   seen[0].floors)

    def _raw_chunks(
        self, stream_id: str, snap: Snapshot, start_us: int | None, end_us: int | None,
        headers: bool = False,
    ) -> list[dict[str, Any]]:
        """The visible chunks that may hold rows in the range (``headers``: without rows)."""
        projection = {"sid": 0, "b": 0, "c": 0} if headers else {"sid": 0, "b": 0}
        return list(self._raw.find(_raw_condition(stream_id, snap, start_us, end_us),
                                   projection))

    def count_raw(self, stream_id: str, start_us: int | None, end_us: int | None) -> int:
        """Row counts from the chunk headers; only chunks straddling a bound of the range, a
        cut or a drop are fetched and decoded."""
        if not isinstance(stream_id, str) or _empty_range(start_us, end_us):
            return 0

        def count(snap: Snapshot) -> list[int]:
            total, partial = 0, []
            for doc in self._raw_chunks(stream_id, snap, start_us, end_us, headers=True):
                if self._partial(doc, snap, start_us, end_us):
                    partial.append(doc["_id"])
                else:
                    total += doc["n"]
            if partial:
                chunks = list(self._raw.find({"_id": {"$in": partial}}, {"sid": 0, "b": 0}))
                total += mongo_chunks.decode(chunks, start_us, end_us, False, snap.cuts,
                                             stream_id, snap.floors).num_rows
            return [total]

        with self._reachable(f"counting raw rows of stream {stream_id!r}"):
            counted = self._protocol.consistent(stream_id, count)
        return counted[0] if counted else 0

    @staticmethod
    def _partial(doc: dict[str, Any], snap: Snapshot, start_us: int | None,
                 end_us: int | None) -> bool:
        """Whether some rows of a visible chunk may be outside the range or hidden."""
        if (start_us is not None and doc["t0"] < start_us) or (
                end_us is not None and doc["t1"] >= end_us):
            return True
        return any(doc["q"] < q and doc["t1"] >= t for t, q in snap.cuts) or any(
            doc["q"] < q and doc["t0"] < t for t, q in snap.floors)

    def first_raw_time(self, stream_id: str, start_us: int | None) -> int | None:
        """Chunk headers in order of their last time: a chunk spans less than CHUNK_SPAN_US,
        so once a chunk's last time is that far past the best first time found, no later
        chunk can hold an earlier one. Only chunks straddling ``start_us``, a cut or a drop
        are decoded."""
        if not isinstance(stream_id, str):
            return None

        def first(snap: Snapshot) -> list[int]:
            condition = _raw_condition(stream_id, snap, start_us, None)
            best: int | None = None
            for doc in self._raw.find(condition, {"c": 0, "sid": 0, "b": 0}).sort("t1", 1):
                if best is not None and doc["t1"] - CHUNK_SPAN_US >= best:
                    break
                if best is not None and doc["t0"] >= best:
                    continue
                if not self._partial(doc, snap, start_us, None):
                    best = doc["t0"]
                    continue
                chunk = self._raw.find_one({"_id": doc["_id"]}, {"sid": 0, "b": 0})
                if chunk is None:
                    continue  # collected meanwhile: consistent() reads again
                rows = mongo_chunks.decode([chunk], start_us, None, False, snap.cuts,
                                           stream_id, snap.floors)
                if rows.num_rows:
                    found = int(rows.column("t")[0].as_py())
                    best = found if best is None else min(best, found)
            return [] if best is None else [best]

        with self._reachable(f"reading raw rows of stream {stream_id!r}"):
            found = self._protocol.consistent(stream_id, first)
        return found[0] if found else None

    def read_level(
        self, level_key: str, stream_id: str, start_us: int | None, end_us: int | None
    ) -> pa.Table | None:
        with self._reachable(f"reading level {level_key!r} of stream {stream_id!r}"):
            return self._read_level(level_key, stream_id, start_us, end_us)

    def _read_level(
        self, level_key: str, stream_id: str, start_us: int | None, end_us: int | None
    ) -> pa.Table | None:
        fields = self._level_fields(level_key)
        if fields is None:
            return None
        schema = pa.schema([(name, pa.type_for_alias(alias)) for name, alias in fields])
        docs = []
        if isinstance(stream_id, str) and not _empty_range(start_us, end_us):
            docs = self._protocol.consistent(stream_id, lambda snap: self._level_rows(
                level_key, stream_id, snap, start_us, end_us))
        if docs:
            return mongo_levels.decode(docs, schema)
        # Types are registered before rows are written: a level whose only batch failed has
        # a schema but no rows, and still counts as never written.
        if self._database.level(level_key).find_one({}, {"_id": 1}) is None:
            return None
        return arrow_numpy.empty_table(schema)

    def _level_rows(
        self, level_key: str, stream_id: str, snap: Snapshot,
        start_us: int | None, end_us: int | None,
    ) -> list[dict[str, Any]]:
        condition: dict[str, Any] = {
            "stream_id": stream_id, "_q": {"$gte": snap.level_floor, "$lte": snap.seq},
        }
        bounds = _bounds(start_us, end_us)
        if bounds:
            condition["t"] = bounds
        if snap.hidden:
            condition["_b"] = {"$nin": snap.hidden}
        dropped = snap.level_hidden(level_key)
        if dropped:
            condition["$nor"] = dropped
        return list(self._database.level(level_key).find(
            condition, {"_id": 0, "stream_id": 0, "_b": 0}))

    def _level_fields(self, level_key: str) -> list[tuple[str, str]] | None:
        doc = self._database.schemas.find_one({"_id": level_key})
        if doc is None:
            return None
        fields = sorted(doc["fields"].items(), key=lambda item: (item[1]["pos"], item[0]))
        return [(name, spec["type"]) for name, spec in fields if name != "stream_id"]

    # -- writing ---------------------------------------------------------------------------
    def commit(self, batch: WriteBatch) -> None:
        if batch.is_empty():
            return
        if self._client is None:
            raise exceptions.StreamAppendFailed(
                "the MongoDB storage is closed; nothing of the batch was stored"
            )
        try:
            self._commit(batch)
        except exceptions.StorageUnavailable as error:  # a read inside the commit failed
            raise exceptions.StreamAppendFailed(
                f"MongoDB commit failed, nothing of the batch was stored: {error}"
            ) from error

    def _commit(self, batch: WriteBatch) -> None:
        # Tags and queries of new streams are the caller's input: their errors (ValueError,
        # TypeError, ReservedTagNameError) are raised as they are.
        creations = {record.stream_id: _creation(record, query) for record, query in batch.create}
        try:
            plan = _plan(batch, creations)
        except (ValueError, TypeError, KeyError, OverflowError, pa.ArrowException,
                bson.errors.BSONError) as error:
            raise exceptions.StreamAppendFailed(
                f"batch refused before writing: {type(error).__name__}: {error}"
            ) from error
        if _plain_creation(plan):
            # A stream created on its own is one insert: it needs no commit protocol.
            try:
                self._insert_stream(plan.create[plan.streams[0]], None, time.time())
            except PyMongoError as error:
                raise exceptions.StreamAppendFailed(
                    f"creating stream {plan.streams[0]!r} failed: {error}"
                ) from error
            return
        context = Context(self._database, self._protocol, self._held(), self.get_stream,
                          self._insert_stream)
        Commit(context, plan).run()

    # -- coordination ----------------------------------------------------------------------
    def _held(self) -> dict[str, list[Any]]:
        held = getattr(self._local, "locks", None)
        if held is None:
            held = self._local.locks = {}
        return held

    @contextlib.contextmanager
    def maintenance_lock(self, stream_id: str, ttl_seconds: float = 60.0) -> Iterator[None]:
        held = self._held()
        if stream_id in held:  # re-entrant within one thread
            held[stream_id][2] += 1
            try:
                yield
            finally:
                held[stream_id][2] -= 1
            return
        token = uuid.uuid4().hex
        with self._reachable(f"taking the maintenance lock of stream {stream_id!r}"):
            acquired = self._acquire(stream_id, token, ttl_seconds)
        if not acquired:
            yield  # unknown stream: nothing to protect
            return
        held[stream_id] = [token, ttl_seconds, 1]
        try:
            with contextlib.suppress(PyMongoError):
                self._protocol.settle_stream(stream_id, abort_stale=True)
            yield
        except BaseException:
            held.pop(stream_id, None)
            try:
                self._release(stream_id, token)
            except PyMongoError:
                with self._unreleased_guard:
                    self._unreleased[stream_id] = token
            raise
        held.pop(stream_id, None)
        try:
            released = self._release(stream_id, token)
        except PyMongoError as error:
            with self._unreleased_guard:
                self._unreleased[stream_id] = token
            raise exceptions.StorageUnavailable(
                f"releasing the maintenance lock of stream {stream_id!r} failed ({error}); it"
                " is released at the next attempt to take it, or when its lease ends"
            ) from error
        if not released:
            raise exceptions.LockExpiredMidMaintenance(
                f"maintenance lock of stream {stream_id!r} expired after {ttl_seconds} s and"
                " was taken by another process before the work finished"
            )

    def _acquire(self, stream_id: str, token: str, ttl: float) -> bool:
        """Take the lock (True), find no such stream (False) or give up with
        StreamAppendContended after ``lock_wait`` seconds of backoff."""
        with self._unreleased_guard:
            stale = self._unreleased.pop(stream_id, None)
        if stale is not None:
            try:
                self._release(stream_id, stale)
            except PyMongoError:
                with self._unreleased_guard:
                    self._unreleased.setdefault(stream_id, stale)
                raise
        wait = ttl if self.lock_wait is None else self.lock_wait
        deadline = time.monotonic() + wait
        delay = 0.01
        while True:
            now = time.time()
            taken = self._streams.update_one(
                {"_id": stream_id, "gone": {"$exists": False},
                 "$or": [{"lock": None}, {"lock.until": {"$lte": now}}]},
                {"$set": {"lock": {"owner": token, "until": now + ttl}}},
            )
            if taken.matched_count:
                return True
            doc = self._streams.find_one({"_id": stream_id, "gone": {"$exists": False}},
                                         {"lock": 1})
            if doc is None:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                holder = doc.get("lock") or {}
                raise exceptions.StreamAppendContended(
                    f"maintenance lock of stream {stream_id!r} is held by another process"
                    f" (lease ends in {holder.get('until', now) - now:.1f} s); gave up after"
                    f" {wait} s"
                )
            time.sleep(min(remaining, delay * (0.5 + random.random())))
            delay = min(delay * 2, 0.5)

    def _release(self, stream_id: str, token: str) -> bool:
        """False when the lock was lost to another owner (not when the stream is gone)."""
        released = self._streams.update_one(
            {"_id": stream_id, "lock.owner": token}, {"$set": {"lock": None}}
        )
        if released.matched_count:
            return True
        return self._streams.find_one({"_id": stream_id}, {"_id": 1}) is None


def _query_key(query: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a query: equal queries give equal keys."""
    text = canonical_json(_normal_numbers(query))  # tag queries are finite: validated first
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _normal_numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) <= INT64_MAX:
        return int(value)
    if isinstance(value, dict):
        return {key: _normal_numbers(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normal_numbers(item) for item in value]
    return value


def _raw_condition(stream_id: str, snap: Snapshot, start_us: int | None,
                   end_us: int | None) -> dict[str, Any]:
    """The filter of the chunks of a stream visible in a snapshot that may hold rows in
    [start_us, end_us)."""
    condition: dict[str, Any] = {
        "sid": stream_id, "q": {"$gte": snap.raw_floor, "$lte": snap.seq},
    }
    condition.update(mongo_chunks.time_condition(start_us, end_us))
    if snap.hidden:
        condition["b"] = {"$nin": snap.hidden}
    condition.update(mongo_chunks.visible_condition(snap.cuts, snap.floors))
    return condition


def _empty_range(start_us: int | None, end_us: int | None) -> bool:
    return start_us is not None and end_us is not None and start_us >= end_us


def _bounds(start_us: int | None, end_us: int | None) -> dict[str, int]:
    bounds = {}
    if start_us is not None:
        bounds["$gte"] = int(start_us)
    if end_us is not None:
        bounds["$lt"] = int(end_us)
    return bounds


# -- planning (encoding before anything is written) -------------------------------------------


def _plan(batch: WriteBatch, creations: dict[str, Creation]) -> Plan:
    deleted = {sid for sid in batch.delete if isinstance(sid, str)}
    # CHUNK_BYTES is looked up here, at call time, so that it can be tuned on this module.
    raw = {
        sid: mongo_chunks.encode(sid, table, max_bytes=CHUNK_BYTES)
        for sid, table in batch.raw.items() if sid not in deleted
    }
    levels: dict[str, dict[str, list[dict[str, Any]]]] = {}
    level_fields = {}
    for key, table in batch.levels.items():
        mongo_levels.check_key(key)
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        level_fields[key] = mongo_levels.schema_fields(key, table.schema)
        by_stream = mongo_levels.encode(key, table)
        levels[key] = {sid: rows for sid, rows in by_stream.items() if sid not in deleted}
    ops = {
        sid: mongo_meta.meta_ops(update) for sid, update in batch.meta.items()
        if sid not in deleted
    }
    truncate = {
        sid: int(t) for sid, t in batch.truncate_raw.items()
        if sid not in deleted and sid not in batch.clear_raw
    }
    drops = _drops(batch, deleted)
    streams = set(raw) | set(ops) | set(batch.clear_raw) | set(batch.clear_levels) | set(truncate)
    streams |= set(drops)
    for by_stream in levels.values():
        streams |= set(by_stream)
    streams = (streams - deleted) | set(creations) | deleted
    for sid in streams | set(batch.expect):
        if not isinstance(sid, str):
            raise ValueError(f"stream id {sid!r} is not a str")
    return Plan(
        sorted(streams), raw, levels, level_fields, ops,
        set(batch.clear_raw) - deleted, set(batch.clear_levels) - deleted,
        truncate=truncate,
        drops=drops,
        expect={sid: int(version) for sid, version in batch.expect.items()
                if sid not in creations},
        create=creations,
        delete=deleted - set(creations),
    )


def _drops(batch: WriteBatch, deleted: set[str]) -> dict[str, list[dict[str, Any]]]:
    """The batch's drops by time per stream, ``{k, f, t}`` each (see :mod:`.protocol`);
    none for streams the batch deletes, or whose rows of that kind it clears."""
    drops: dict[str, list[dict[str, Any]]] = {}
    for sid, t in batch.drop_raw_before.items():
        t = drop_time(t, "drop_raw_before")
        if sid not in deleted and sid not in batch.clear_raw:
            drops.setdefault(sid, []).append({"k": None, "f": False, "t": t})
    for what, reopening in (("drop_levels_before", False), ("drop_levels_from", True)):
        for key, sid, t in level_drops(getattr(batch, what), what):
            mongo_levels.check_key(key)
            if sid not in deleted and sid not in batch.clear_levels:
                drops.setdefault(sid, []).append({"k": key, "f": reopening, "t": t})
    return drops


def _creation(record: StreamRecord, query: dict[str, Any]) -> Creation:
    """A stream document to insert, validated and encoded before anything is written."""
    if not isinstance(record.stream_id, str):
        raise ValueError(f"stream id {record.stream_id!r} is not a str")
    meta, nulls = mongo_meta.split_meta(record.meta)
    doc = {
        "_id": record.stream_id, "qkey": _query_key(query),
        "tags": mongo_query.canonical(record.tags), "meta": meta, "nulls": nulls,
        "lock": None, "v": 0,
    }
    return Creation(doc, query, mongo_query.translate(query), doc["qkey"])


def _plain_creation(plan: Plan) -> bool:
    """One stream created and nothing else written."""
    if len(plan.streams) != 1 or plan.streams[0] not in plan.create:
        return False
    sid = plan.streams[0]
    return not (plan.raw.get(sid) or any(sid in rows for rows in plan.levels.values())
                or sid in plan.ops or plan.expect)
