"""The MongoDB backend: ``datastream.backends.mongodb.Backend(database_name, **connection)``.

Collections
-----------
* ``streams``: one document per stream: ``_id`` (the stream id), ``order`` (creation counter),
  ``qkey`` (unique: hash of the creating query), ``tags`` (user tags, keys sorted), ``meta``
  (the engine's dict; top-level None values are kept in ``nulls`` so that ``$max``/``$min``
  work, see :func:`_meta_ops`), ``w`` (write bookkeeping, below) and ``lock``.
* ``raw``: raw datapoints in *chunks*: per stream and commit, runs of at most 4096 rows that
  span less than an hour, each column packed as binary (``t``, ``k``, ``i``, ``f`` as
  little-endian numpy bytes, ``s`` as UTF-8 bytes plus int32 offsets; a validity bitmap only
  when a column mixes nulls and values; an all-null column is absent). Index
  ``(sid, t1, t0, q)``: a time-range read is one index range scan, bounded on both sides by
  the one-hour span limit.
* ``level_<key>``: a document per level row: ``stream_id``, ``t``, the partial columns as
  fields, ``_q``/``_b`` (version, batch). Unique index ``(stream_id, t, _q)``; the newest
  visible version of a ``(stream_id, t)`` is the row (an upsert in effect, without
  overwriting a committed row before the batch that replaces it is committed).
  ``level_schemas`` remembers column types so that reads return the written Arrow types.
* ``batches`` (commit journal), ``counters``.

Why chunks (measured here with pymongo's BSON codec, 100k float points, one stream)::

    layout                    BSON bytes/point   encode ns/point   decode to Arrow ns/point
    document per point              126             11 700              11 000
    chunk of 1 point                169             32 000              10 000
    chunk of 60 points               19.5              460                  58
    chunk of 4096 points             17                 10                   2

A document per point also costs one index entry per point (~60 bytes more). Flushes that hold
one point per stream pay about what a document per point would; anything batched (buffers of
up to 10,000 points, bulk appends, backfills) is 6-7x smaller and 100x+ cheaper to read, and a
million points export without a per-point Python loop (through this module: ~50 ms to encode
and ~110 ms to decode 1M points on a shared core). Values are opaque to the server, which is
fine: storage never computes aggregates.

Commit atomicity (no multi-document transactions needed)
-------------------------------------------------------
Every row carries the writing batch id ``b`` and the stream's write sequence number ``q``
(``_b``/``_q`` in level rows). ``streams.w`` holds ``seq`` (last reserved number), ``open``
(batches in flight: ``{b, at}``), ``raw_floor``/``level_floor`` (rows below are cleared) and
``gc`` (bumped before rows that old readers may still see are deleted).

1. Reserve: per stream, ``$inc w.seq`` and ``$push w.open`` in one atomic update.
2. Insert all raw chunks and level rows (invisible: their batch is open).
3. Commit point. One stream: the *flip* below. Several streams: inserting the journal document
   ``{_id: b, state: 'committed', streams: [their meta updates]}``.
4. Flip each stream: one update that pulls ``b`` from ``w.open`` and applies the MetaUpdate
   (``$set``/``$max``/``$min``), the floors and (when fenced) the lock lease.

A reader takes a snapshot of ``w`` and sees rows with ``floor <= q <= seq`` whose batch is not
open, or open but journalled as committed; it re-reads ``w.gc`` afterwards and retries when a
collection ran meanwhile. Records are read the same way: the meta update of a journalled batch
counts as applied before its flip, so meta never lags behind rows a reader could see.

A failure before the commit point undoes the reservation (pull, then delete the batch's rows)
and raises ``StreamAppendFailed``; nothing was ever visible. A crash leaves an open entry: rows
stay invisible and :meth:`MongoDBStorage.recover` (also run on later commits, lock acquisition
and ``refresh_stream``) aborts it once older than ``commit_timeout``, or rolls it forward when
journalled as committed. Aborting first inserts
``{_id: b, state: 'aborted'}``, so a late writer's journal insert fails instead of racing it.
Retries are new batches, so they are idempotent.

Maintenance locks
-----------------
``streams.lock = {owner, until}`` (client wall clock), taken with one conditional update
(free, or expired). Waiting retries with jittered exponential backoff up to ``lock_wait``
seconds (default: the ttl, after which a crashed holder's lock has expired), then raises
``StreamAppendContended``. Commits made by the holding thread are fenced: the flip only
applies while this owner still holds the lock and renews its lease, else the batch is undone
and ``LockExpiredMidMaintenance`` raised. Release checks the owner too and raises
``LockExpiredMidMaintenance`` when someone else took the lock meanwhile. Re-entrant per thread.

Creating streams
----------------
``create_stream`` looks for a match, then inserts with ``qkey`` = SHA-256 of the canonical
JSON of the query under a unique index: of concurrent creators with the same query exactly one
insert succeeds and the others return its record. A holder whose tags no longer match its query
gives the key up (``qkey`` becomes ``'released:<id>'``) when the next creator finds it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import random
import re
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import bson
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pymongo
from bson import Binary, ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from .. import exceptions
from . import mongo_query
from .base import RAW_SCHEMA, MetaUpdate, Storage, StreamRecord, WriteBatch

CHUNK_ROWS = 4096
CHUNK_SPAN_US = 3600 * 1_000_000
CHUNK_BYTES = 4 << 20
INT64_MAX = 2**63 - 1

_LEVEL_KEY = re.compile(r"^[A-Za-z0-9]{1,16}$")
_COLUMN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_FIXED_WIDTH = {"t": np.int64, "k": np.int8, "i": np.int64, "f": np.float64}
_READ_ATTEMPTS = 10


@dataclasses.dataclass
class _Snapshot:
    """What one reader may see of a stream (see the module docstring)."""

    seq: int
    hidden: list[Any]
    raw_floor: int
    level_floor: int
    gc: int


@dataclasses.dataclass
class _Plan:
    """A WriteBatch encoded for MongoDB before anything is written."""

    streams: list[str]
    raw: dict[str, list[dict[str, Any]]]
    levels: dict[str, dict[str, list[dict[str, Any]]]]
    level_fields: dict[str, dict[str, tuple[str, int]]]
    ops: dict[str, dict[str, Any]]
    clear_raw: set[str]
    clear_levels: set[str]


class MongoDBStorage(Storage):
    """Streams, raw chunks and level rows in one MongoDB database (module docstring: why)."""

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
        self.commit_timeout = commit_timeout
        self.lock_wait = lock_wait
        self._local = threading.local()
        self._indexed_levels: set[str] = set()
        self._streams = self._db["streams"]
        self._raw = self._db["raw"]
        self._batches = self._db["batches"]
        self._counters = self._db["counters"]
        self._schemas = self._db["level_schemas"]
        try:
            self._streams.create_index([("order", 1)])
            self._streams.create_index([("qkey", 1)], unique=True)
            self._streams.create_index([("w.open.at", 1)])
            self._raw.create_index([("sid", 1), ("t1", 1), ("t0", 1), ("q", 1)])
            self._batches.create_index([("kind", 1)])
        except PyMongoError as error:
            self.close()
            raise exceptions.DatastreamException(
                f"MongoDB database {database_name!r} is unavailable: {error}"
            ) from error

    def close(self) -> None:
        if self._owns_client and self._client is not None:
            self._client.close()
        self._client = None

    def __repr__(self) -> str:
        return f"MongoDBStorage({self.database_name!r})"

    # -- stream records --------------------------------------------------------------------
    def find_streams(self, query: dict[str, Any] | None) -> list[StreamRecord]:
        condition = mongo_query.translate(query)
        deleting = self._deleting()
        if deleting:
            condition = {"$and": [condition, {"_id": {"$nin": sorted(deleting)}}]}
        return self._records(
            lambda: list(self._streams.find(condition, _RECORD_FIELDS).sort("order", 1))
        )

    def get_stream(self, stream_id: str) -> StreamRecord | None:
        if not isinstance(stream_id, str):
            return None
        records = self._records(
            lambda: list(self._streams.find({"_id": stream_id}, _RECORD_FIELDS))
        )
        if not records or stream_id in self._deleting():
            return None
        return records[0]

    def _records(self, fetch: Callable[[], list[dict[str, Any]]]) -> list[StreamRecord]:
        """Records as readers must see them: a batch committed through its journal but not
        yet flipped on a stream counts as applied to that stream's meta, as its rows do."""
        for _ in range(_READ_ATTEMPTS):
            docs = fetch()
            open_ids = {entry["b"] for doc in docs for entry in doc["w"].get("open", [])}
            if not open_ids:
                return [_record(doc, {}) for doc in docs]
            journals = {
                journal["_id"]: journal
                for journal in self._batches.find(
                    {"_id": {"$in": list(open_ids)}, "state": "committed"}, {"streams": 1}
                )
            }
            unresolved = open_ids - set(journals)
            if unresolved:
                # Its journal may have gone because all its flips are done: then re-read.
                ids = [doc["_id"] for doc in docs]
                still_open = {
                    entry["b"]
                    for doc in self._streams.find({"_id": {"$in": ids}}, {"w.open": 1})
                    for entry in doc["w"].get("open", [])
                }
                if unresolved - still_open:
                    continue
            return [_record(doc, journals) for doc in docs]
        raise exceptions.DatastreamException("reading stream records kept racing with writers")

    def refresh_stream(self, stream_id: str) -> StreamRecord | None:
        """Re-read one record, first finishing what crashed writers left on it."""
        self._recover_stream(stream_id)
        return self.get_stream(stream_id)

    def create_stream(self, record: StreamRecord, query: dict[str, Any]) -> StreamRecord:
        condition = mongo_query.translate(query)
        qkey = _query_key(query)
        tags = mongo_query.canonical(record.tags)
        meta, nulls = _split_meta(record.meta)
        for _ in range(8):
            existing = self.find_streams(query)
            if existing:
                return existing[0]
            order = self._counters.find_one_and_update(
                {"_id": "streams"}, {"$inc": {"n": 1}}, upsert=True,
                return_document=ReturnDocument.AFTER,
            )["n"]
            doc = {
                "_id": record.stream_id, "order": order, "qkey": qkey, "tags": tags,
                "meta": meta, "nulls": nulls, "lock": None,
                "w": {"seq": 0, "open": [], "raw_floor": 0, "level_floor": 0, "gc": 0},
            }
            try:
                self._streams.insert_one(doc)
                return StreamRecord(record.stream_id, tags, dict(record.meta))
            except DuplicateKeyError:
                pass
            if self._streams.find_one({"_id": record.stream_id}, {"_id": 1}) is not None:
                raise ValueError(f"stream id {record.stream_id!r} already exists")
            holder = self._streams.find_one({"qkey": qkey}, {"_id": 1})
            if holder is None:
                continue  # the key was released meanwhile
            if self._streams.find_one({"$and": [{"_id": holder["_id"]}, condition]}, {"_id": 1}):
                continue  # a concurrent creator won: the next lookup returns its stream
            # Its tags changed since it was created with this query: it gives the key up.
            self._streams.update_one(
                {"_id": holder["_id"], "qkey": qkey},
                {"$set": {"qkey": f"released:{holder['_id']}"}},
            )
        raise exceptions.StreamAppendContended(
            f"creating a stream for query {query!r} kept racing with other writers"
        )

    def set_tags(self, stream_id: str, tags: dict[str, Any]) -> None:
        stored = mongo_query.canonical(tags)
        if not isinstance(stream_id, str):
            raise exceptions.StreamNotFound(f"stream {stream_id!r} not found")
        result = self._streams.update_one({"_id": stream_id}, {"$set": {"tags": stored}})
        if result.matched_count == 0:
            raise exceptions.StreamNotFound(f"stream {stream_id!r} not found")

    def delete_streams(self, stream_ids: list[str]) -> None:
        """Several streams: a journal entry first hides them all (readers skip journalled
        ids), then records and rows go; an interrupted delete is finished by recover()."""
        ids = sorted({i for i in stream_ids if isinstance(i, str)})
        if not ids:
            return
        journal = None
        if len(ids) > 1:
            journal = self._batches.insert_one(
                {"kind": "delete", "streams": ids, "at": time.time()}
            ).inserted_id
        try:
            self._delete_now(ids)
        except PyMongoError as error:
            if journal is None:
                raise exceptions.DatastreamException(
                    f"deleting stream {ids[0]!r} failed: {error}"
                ) from error
            warnings.warn(
                f"deleting streams {ids} is incomplete ({error}); they stay hidden and"
                " recover() finishes the deletion",
                exceptions.InternalInconsistencyWarning,
                stacklevel=2,
            )
            return
        if journal is not None:
            self._batches.delete_one({"_id": journal})

    def _delete_now(self, ids: list[str]) -> None:
        self._streams.delete_many({"_id": {"$in": ids}})
        self._raw.delete_many({"sid": {"$in": ids}})
        for key in self._level_keys():
            self._level(key).delete_many({"stream_id": {"$in": ids}})

    def _deleting(self) -> set[str]:
        ids: set[str] = set()
        for doc in self._batches.find({"kind": "delete"}, {"streams": 1}):
            ids.update(doc["streams"])
        return ids

    # -- reading ---------------------------------------------------------------------------
    def read_raw(
        self, stream_id: str, start_us: int | None, end_us: int | None, reverse: bool = False
    ) -> pa.Table:
        empty = RAW_SCHEMA.empty_table()
        if not isinstance(stream_id, str) or _empty_range(start_us, end_us):
            return empty
        chunks = self._consistent(stream_id, lambda snap: self._raw_chunks(
            stream_id, snap, start_us, end_us))
        if not chunks:
            return empty
        return _decode_chunks(chunks, start_us, end_us, reverse)

    def _raw_chunks(
        self, stream_id: str, snap: _Snapshot, start_us: int | None, end_us: int | None
    ) -> list[dict[str, Any]]:
        condition: dict[str, Any] = {
            "sid": stream_id, "q": {"$gte": snap.raw_floor, "$lte": snap.seq},
        }
        last_end: dict[str, int] = {}
        if start_us is not None:
            last_end["$gte"] = int(start_us)
        if end_us is not None:
            last_end["$lt"] = min(int(end_us) + CHUNK_SPAN_US, INT64_MAX)
            condition["t0"] = {"$lt": int(end_us)}
        if last_end:
            condition["t1"] = last_end
        if snap.hidden:
            condition["b"] = {"$nin": snap.hidden}
        return list(self._raw.find(condition, {"sid": 0, "b": 0}))

    def read_level(
        self, level_key: str, stream_id: str, start_us: int | None, end_us: int | None
    ) -> pa.Table | None:
        fields = self._level_fields(level_key)
        if fields is None:
            return None
        schema = pa.schema([(name, pa.type_for_alias(alias)) for name, alias in fields])
        docs = []
        if isinstance(stream_id, str) and not _empty_range(start_us, end_us):
            docs = self._consistent(stream_id, lambda snap: self._level_rows(
                level_key, stream_id, snap, start_us, end_us))
        if docs:
            return _level_table(docs, schema)
        # Types are registered before rows are written: a level whose only batch failed has
        # a schema but no rows, and still counts as never written.
        if self._level(level_key).find_one({}, {"_id": 1}) is None:
            return None
        return schema.empty_table()

    def _level_rows(
        self, level_key: str, stream_id: str, snap: _Snapshot,
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
        return list(self._level(level_key).find(condition, {"_id": 0, "stream_id": 0, "_b": 0}))

    def _level_fields(self, level_key: str) -> list[tuple[str, str]] | None:
        doc = self._schemas.find_one({"_id": level_key})
        if doc is None:
            return None
        fields = sorted(doc["fields"].items(), key=lambda item: (item[1]["pos"], item[0]))
        return [(name, spec["type"]) for name, spec in fields if name != "stream_id"]

    def _snapshot(self, stream_id: str) -> _Snapshot | None:
        doc = self._streams.find_one({"_id": stream_id}, {"w": 1})
        if doc is None:
            return None
        w = doc["w"]
        hidden = [entry["b"] for entry in w.get("open", [])]
        if hidden:
            committed = {
                journal["_id"]
                for journal in self._batches.find(
                    {"_id": {"$in": hidden}, "state": "committed"}, {"_id": 1}
                )
            }
            hidden = [b for b in hidden if b not in committed]
        return _Snapshot(w["seq"], hidden, w.get("raw_floor", 0), w.get("level_floor", 0),
                         w.get("gc", 0))

    def _consistent(self, stream_id: str, read: Callable[[_Snapshot], list]) -> list:
        """Run ``read`` on a snapshot; repeat when rows it could see were collected meanwhile."""
        for _ in range(_READ_ATTEMPTS):
            snap = self._snapshot(stream_id)
            if snap is None:
                return []
            result = read(snap)
            after = self._streams.find_one({"_id": stream_id}, {"w.gc": 1})
            if after is None:
                return []
            if after["w"].get("gc", 0) == snap.gc:
                return result
        raise exceptions.DatastreamException(
            f"reading stream {stream_id!r} kept racing with concurrent rewrites"
        )

    # -- writing ---------------------------------------------------------------------------
    def commit(self, batch: WriteBatch) -> None:
        if batch.is_empty():
            return
        try:
            plan = _plan(batch)
        except (ValueError, TypeError, KeyError, OverflowError, pa.ArrowException,
                bson.errors.BSONError) as error:
            raise exceptions.StreamAppendFailed(
                f"batch refused before writing: {type(error).__name__}: {error}"
            ) from error
        _Commit(self, plan).run()

    def _level(self, level_key: str) -> Any:
        collection = self._db[f"level_{level_key}"]
        if level_key not in self._indexed_levels:
            collection.create_index([("stream_id", 1), ("t", 1), ("_q", 1)], unique=True)
            self._indexed_levels.add(level_key)
        return collection

    def _level_keys(self) -> list[str]:
        return [doc["_id"] for doc in self._schemas.find({}, {"_id": 1})]

    def _register_fields(self, level_key: str, fields: dict[str, tuple[str, int]]) -> None:
        update: dict[str, Any] = {"$set": {}, "$min": {}}
        for name, (alias, position) in fields.items():
            update["$set"][f"fields.{name}.type"] = alias
            update["$min"][f"fields.{name}.pos"] = position
        self._schemas.update_one({"_id": level_key}, update, upsert=True)

    def _collect(self, stream_id: str, deletions: list[tuple[Any, dict[str, Any]]]) -> None:
        """Delete rows that readers with older snapshots may still see: bump ``w.gc`` first,
        so that such a reader notices and reads again."""
        pending = [(coll, cond) for coll, cond in deletions if coll.find_one(cond, {"_id": 1})]
        if not pending:
            return
        self._streams.update_one({"_id": stream_id}, {"$inc": {"w.gc": 1}})
        for collection, condition in pending:
            collection.delete_many(condition)

    def _collect_floors(self, stream_id: str, raw_floor: int | None, level_floor: int | None):
        deletions: list[tuple[Any, dict[str, Any]]] = []
        if raw_floor:
            deletions.append((self._raw, {"sid": stream_id, "q": {"$lt": raw_floor}}))
        if level_floor:
            for key in self._level_keys():
                deletions.append(
                    (self._level(key), {"stream_id": stream_id, "_q": {"$lt": level_floor}})
                )
        self._collect(stream_id, deletions)

    def _drop_rows_of(self, stream_id: str, batch_id: Any, level_keys: list[str]) -> None:
        """Delete the (never visible) rows one batch wrote for one stream."""
        self._raw.delete_many({"sid": stream_id, "b": batch_id})
        for key in level_keys:
            self._level(key).delete_many({"stream_id": stream_id, "_b": batch_id})

    # -- recovery --------------------------------------------------------------------------
    def recover(self) -> None:
        """Finish interrupted deletes and resolve batches left open by crashed writers
        (older than ``commit_timeout``). Safe to run at any time, from any process."""
        cutoff = time.time() - self.commit_timeout
        for doc in list(self._batches.find({"kind": "delete", "at": {"$lt": cutoff}})):
            self._delete_now(sorted(doc["streams"]))
            self._batches.delete_one({"_id": doc["_id"]})
        for doc in list(self._streams.find({"w.open.at": {"$lt": cutoff}}, {"_id": 1})):
            self._recover_stream(doc["_id"])

    def _recover_stream(self, stream_id: str) -> None:
        if not isinstance(stream_id, str):
            return
        doc = self._streams.find_one({"_id": stream_id}, {"w.open": 1})
        if doc is None:
            return
        cutoff = time.time() - self.commit_timeout
        for entry in doc["w"].get("open", []):
            if entry["at"] < cutoff:
                self._resolve(stream_id, entry["b"])

    def _resolve(self, stream_id: str, batch_id: Any) -> None:
        """Abort or roll forward one stale open batch on one stream."""
        journal = self._claim_abort(batch_id)
        if journal.get("state") == "committed":
            for part in journal.get("streams", []):
                if part["sid"] == stream_id:
                    self._streams.update_one(
                        {"_id": stream_id, "w.open.b": batch_id},
                        _flip_update(batch_id, part["ops"]),
                    )
                    self._collect_floors(stream_id, part.get("raw_floor"),
                                         part.get("level_floor"))
            if self._streams.find_one({"w.open.b": batch_id}, {"_id": 1}) is None:
                self._batches.delete_one({"_id": batch_id})
            return
        pulled = self._streams.update_one(
            {"_id": stream_id, "w.open.b": batch_id}, {"$pull": {"w.open": {"b": batch_id}}}
        )
        if pulled.modified_count:
            self._drop_rows_of(stream_id, batch_id, self._level_keys())

    def _claim_abort(self, batch_id: Any) -> dict[str, Any]:
        """The batch's journal entry; a batch without one is marked aborted first, so that
        its writer can no longer commit it."""
        journal = self._batches.find_one({"_id": batch_id})
        if journal is not None:
            return journal
        claim = {"_id": batch_id, "kind": "commit", "state": "aborted", "at": time.time()}
        try:
            self._batches.insert_one(claim)
            return claim
        except DuplicateKeyError:
            return self._batches.find_one({"_id": batch_id}) or claim

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
        if not self._acquire(stream_id, token, ttl_seconds):
            yield  # unknown stream: nothing to protect
            return
        held[stream_id] = [token, ttl_seconds, 1]
        try:
            with contextlib.suppress(PyMongoError):
                self._recover_stream(stream_id)
            yield
        except BaseException:
            held.pop(stream_id, None)
            with contextlib.suppress(PyMongoError):
                self._release(stream_id, token)
            raise
        held.pop(stream_id, None)
        if not self._release(stream_id, token):
            raise exceptions.LockExpiredMidMaintenance(
                f"maintenance lock of stream {stream_id!r} expired after {ttl_seconds} s and"
                " was taken by another process before the work finished"
            )

    def _acquire(self, stream_id: str, token: str, ttl: float) -> bool:
        """Take the lock (True), find no such stream (False) or give up with
        StreamAppendContended after ``lock_wait`` seconds of backoff."""
        wait = ttl if self.lock_wait is None else self.lock_wait
        deadline = time.monotonic() + wait
        delay = 0.01
        while True:
            now = time.time()
            taken = self._streams.update_one(
                {"_id": stream_id, "$or": [{"lock": None}, {"lock.until": {"$lte": now}}]},
                {"$set": {"lock": {"owner": token, "until": now + ttl}}},
            )
            if taken.matched_count:
                return True
            doc = self._streams.find_one({"_id": stream_id}, {"lock": 1})
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


_RECORD_FIELDS = {"tags": 1, "meta": 1, "nulls": 1, "w.open": 1}


def _record(doc: dict[str, Any], journals: dict[Any, dict[str, Any]]) -> StreamRecord:
    meta = dict(doc.get("meta") or {})
    for key in doc.get("nulls") or {}:
        meta[key] = None
    for entry in doc["w"].get("open", []):
        journal = journals.get(entry["b"])
        for part in journal["streams"] if journal else []:
            if part["sid"] == doc["_id"]:
                _apply_ops(meta, part["ops"])
    return StreamRecord(doc["_id"], doc.get("tags") or {}, meta)


def _apply_ops(meta: dict[str, Any], ops: dict[str, Any]) -> None:
    """What the flip of ``ops`` will do to ``meta`` (the nulls/unset bookkeeping aside)."""
    for path, value in ops.get("set", []):
        root, key = path.split(".", 1)
        if root in ("meta", "nulls"):
            meta[key] = value if root == "meta" else None
    for name, pick in (("max", max), ("min", min)):
        for path, value in ops.get(name, []):
            root, key = path.split(".", 1)
            if root == "meta":
                meta[key] = value if meta.get(key) is None else pick(meta[key], value)


def _split_meta(meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bool]]:
    """Meta without top-level None values, and the names of those (see _meta_ops)."""
    stored, nulls = {}, {}
    for key, value in meta.items():
        _check_meta_key(key)
        if value is None:
            nulls[key] = True
        else:
            stored[key] = value
    bson.encode({"meta": stored})  # refuses what BSON cannot hold, before anything is written
    return stored, nulls


def _check_meta_key(key: Any) -> None:
    if not isinstance(key, str) or not key or key.startswith("$") or "." in key or "\0" in key:
        raise ValueError(f"meta key {key!r} cannot be a MongoDB field name")


def _query_key(query: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a query: equal queries give equal keys."""
    text = json.dumps(_normal_numbers(query), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _normal_numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, dict):
        return {key: _normal_numbers(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normal_numbers(item) for item in value]
    return value


def _empty_range(start_us: int | None, end_us: int | None) -> bool:
    return start_us is not None and end_us is not None and start_us >= end_us


def _bounds(start_us: int | None, end_us: int | None) -> dict[str, int]:
    bounds = {}
    if start_us is not None:
        bounds["$gte"] = int(start_us)
    if end_us is not None:
        bounds["$lt"] = int(end_us)
    return bounds


# -- meta updates ----------------------------------------------------------------------------


def _meta_ops(update: MetaUpdate) -> dict[str, Any]:
    """A MetaUpdate as storable lists of (path, value) (the journal keeps them as data).

    None is kept out of ``meta`` (its names go to ``nulls``): on the server ``$min`` would keep
    a stored null, and mongomock cannot compare None at all; ``$max``/``$min`` on a missing
    field set it, which is MetaUpdate's "None counts as absent".
    """
    ops: dict[str, list[Any]] = {"set": [], "unset": [], "max": [], "min": []}
    folded = dict(update.set)
    for key, value in update.max.items():
        if key in folded:
            folded[key] = value if folded[key] is None else max(folded[key], value)
    for key, value in update.min.items():
        if key in folded:
            folded[key] = value if folded[key] is None else min(folded[key], value)
    for key, value in folded.items():
        _check_meta_key(key)
        if value is None:
            ops["unset"].append(f"meta.{key}")
            ops["set"].append([f"nulls.{key}", True])
        else:
            ops["set"].append([f"meta.{key}", value])
            ops["unset"].append(f"nulls.{key}")
    for name in ("max", "min"):
        for key, value in getattr(update, name).items():
            if key in folded or value is None:
                continue
            _check_meta_key(key)
            if key in update.max and key in update.min:
                raise ValueError(f"meta key {key!r} has both a max and a min update")
            ops[name].append([f"meta.{key}", value])
            ops["unset"].append(f"nulls.{key}")
    bson.encode({"ops": ops})
    return ops


def _flip_update(batch_id: Any, ops: dict[str, Any], extra_set: dict | None = None) -> dict:
    """The one atomic update that makes a batch visible on one stream."""
    update: dict[str, Any] = {"$pull": {"w.open": {"b": batch_id}}}
    for name in ("set", "max", "min"):
        pairs = dict(ops.get(name, []))
        if name == "set" and extra_set:
            pairs.update(extra_set)
        if pairs:
            update[f"${name}"] = pairs
    if ops.get("unset"):
        update["$unset"] = {path: "" for path in ops["unset"]}
    return update


# -- planning (encoding before anything is written) -------------------------------------------


def _plan(batch: WriteBatch) -> _Plan:
    raw = {sid: _raw_docs(sid, table) for sid, table in batch.raw.items()}
    levels: dict[str, dict[str, list[dict[str, Any]]]] = {}
    level_fields = {}
    for key, table in batch.levels.items():
        if not isinstance(key, str) or not _LEVEL_KEY.match(key):
            raise ValueError(f"level key {key!r} cannot name a collection")
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        level_fields[key] = _level_schema(key, table.schema)
        levels[key] = _level_docs(key, table)
    ops = {sid: _meta_ops(update) for sid, update in batch.meta.items()}
    streams = set(raw) | set(ops) | set(batch.clear_raw) | set(batch.clear_levels)
    for by_stream in levels.values():
        streams |= set(by_stream)
    for sid in streams:
        if not isinstance(sid, str):
            raise ValueError(f"stream id {sid!r} is not a str")
    for sid in streams:
        ops.setdefault(sid, {"set": [], "unset": [], "max": [], "min": []})
    return _Plan(sorted(streams), raw, levels, level_fields, ops,
                 set(batch.clear_raw), set(batch.clear_levels))


def _raw_docs(stream_id: str, table: pa.Table | pa.RecordBatch) -> list[dict[str, Any]]:
    """Chunk documents (without sid/q/b) for one stream's raw rows."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    missing = set(RAW_SCHEMA.names) - set(table.column_names)
    if missing:
        raise ValueError(f"raw rows of stream {stream_id!r} lack columns {sorted(missing)}")
    table = table.select(RAW_SCHEMA.names).cast(RAW_SCHEMA).combine_chunks()
    if table.num_rows == 0:
        return []
    if table.column("t").null_count:
        raise ValueError(f"raw rows of stream {stream_id!r} have null timestamps")
    t = table.column("t").to_numpy()
    if np.any(t[1:] < t[:-1]):
        order = np.argsort(t, kind="stable")
        table = table.take(pa.array(order))
        t = t[order]
    columns = {}
    for name, dtype in _FIXED_WIDTH.items():
        column = table.column(name).chunk(0)
        valid = _validity(column, table.num_rows)
        values = pc.fill_null(column, 0).to_numpy(zero_copy_only=False).astype(dtype, copy=False)
        columns[name] = (values, valid)
    strings = table.column("s").chunk(0)
    string_valid = _validity(strings, table.num_rows)
    sizes = pc.fill_null(pc.binary_length(strings), 0).to_numpy(zero_copy_only=False)
    cumulative = np.cumsum(sizes, dtype=np.int64)
    docs = []
    for low, high in _chunk_bounds(t, cumulative):
        doc: dict[str, Any] = {"p": low, "n": high - low, "t0": int(t[low]), "t1": int(t[high - 1])}
        for name, (values, valid) in columns.items():
            _pack_fixed(doc, name, values[low:high], valid[low:high])
        _pack_strings(doc, "s", strings.slice(low, high - low), string_valid[low:high])
        docs.append(doc)
    return docs


def _validity(column: pa.Array, length: int) -> np.ndarray:
    if column.null_count == 0:
        return np.ones(length, dtype=bool)
    return column.is_valid().to_numpy(zero_copy_only=False)


def _chunk_bounds(t: np.ndarray, cumulative_bytes: np.ndarray) -> list[tuple[int, int]]:
    """[low, high) runs of at most CHUNK_ROWS rows, CHUNK_BYTES of text, CHUNK_SPAN_US."""
    bounds = []
    low, count = 0, len(t)
    while low < count:
        high = min(count, low + CHUNK_ROWS)
        high = min(high, int(np.searchsorted(t, t[low] + CHUNK_SPAN_US, "left")))
        before = int(cumulative_bytes[low - 1]) if low else 0
        high = min(high, int(np.searchsorted(cumulative_bytes, before + CHUNK_BYTES, "right")))
        high = max(high, low + 1)
        bounds.append((low, high))
        low = high
    return bounds


def _pack_fixed(doc: dict[str, Any], name: str, values: np.ndarray, valid: np.ndarray) -> None:
    """Values of the valid rows as bytes; a bitmap only when nulls and values mix."""
    if valid.all():
        doc[name] = Binary(values.tobytes())
    elif valid.any():
        doc[name] = Binary(values[valid].tobytes())
        doc[f"{name}_m"] = Binary(np.packbits(valid, bitorder="little").tobytes())


def _pack_strings(doc: dict[str, Any], name: str, array: pa.Array, valid: np.ndarray) -> None:
    if not valid.any():
        return
    if not valid.all():
        array = array.filter(pa.array(valid))
        doc[f"{name}_m"] = Binary(np.packbits(valid, bitorder="little").tobytes())
    first = array.offset
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[first : first + len(array) + 1]
    data = array.buffers()[2]
    start, end = int(offsets[0]), int(offsets[-1])
    doc[name] = Binary(data.to_pybytes()[start:end] if data is not None else b"")
    doc[f"{name}_o"] = Binary((offsets - offsets[0]).astype(np.int32).tobytes())


def _level_schema(level_key: str, schema: pa.Schema) -> dict[str, tuple[str, int]]:
    if "stream_id" not in schema.names or "t" not in schema.names:
        raise ValueError(f"level {level_key!r} rows need stream_id and t columns")
    fields = {}
    for position, field in enumerate(schema):
        if field.name != "stream_id" and not _COLUMN.match(field.name):
            raise ValueError(f"level column name {field.name!r} cannot be a field name")
        fields[field.name] = (_type_alias(field.type, field.name), position)
    return fields


def _type_alias(data_type: pa.DataType, name: str) -> str:
    if pa.types.is_dictionary(data_type):
        data_type = data_type.value_type
    for alias in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                  "float", "double", "bool", "string", "large_string", "null"):
        if data_type == pa.type_for_alias(alias):
            return alias
    raise ValueError(f"level column {name!r} has unsupported type {data_type}")


def _level_docs(level_key: str, table: pa.Table) -> dict[str, list[dict[str, Any]]]:
    """Level rows by stream; a repeated (stream_id, t) keeps its last row."""
    by_stream: dict[str, dict[int, dict[str, Any]]] = {}
    for row in table.to_pylist():
        sid, t = row["stream_id"], row["t"]
        if not isinstance(sid, str) or not isinstance(t, int):
            raise ValueError(f"level {level_key!r} row with stream_id {sid!r} and t {t!r}")
        by_stream.setdefault(sid, {})[t] = row
    return {sid: list(rows.values()) for sid, rows in by_stream.items()}


# -- decoding ---------------------------------------------------------------------------------


def _unpack_fixed(doc: dict[str, Any], name: str, dtype: Any, count: int) -> pa.Array:
    arrow_type = RAW_SCHEMA.field(name).type
    data = doc.get(name)
    if data is None:
        return pa.nulls(count, arrow_type)
    values = np.frombuffer(data, dtype=dtype)
    mask = doc.get(f"{name}_m")
    if mask is None:
        return pa.array(values, type=arrow_type)
    valid = _unbits(mask, count)
    full = np.zeros(count, dtype=dtype)
    full[valid] = values
    return pa.array(full, type=arrow_type, mask=~valid)


def _unpack_strings(doc: dict[str, Any], name: str, count: int) -> pa.Array:
    data = doc.get(name)
    if data is None:
        return pa.nulls(count, pa.string())
    offsets = doc[f"{name}_o"]
    values = pa.StringArray.from_buffers(
        len(offsets) // 4 - 1, pa.py_buffer(offsets), pa.py_buffer(data)
    )
    mask = doc.get(f"{name}_m")
    if mask is None:
        return values
    valid = _unbits(mask, count)
    positions = np.cumsum(valid) - 1
    return values.take(pa.array(positions, mask=~valid))


def _unbits(mask: bytes, count: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(mask, dtype=np.uint8), count=count, bitorder="little")
    return bits.astype(bool)


def _decode_chunks(
    chunks: list[dict[str, Any]], start_us: int | None, end_us: int | None, reverse: bool
) -> pa.Table:
    """Rows of the chunks inside [start, end), by (t, q, position) or t descending."""
    columns: dict[str, list[pa.Array]] = {name: [] for name in RAW_SCHEMA.names}
    batch_seq, position = [], []
    for doc in chunks:
        count = doc["n"]
        for name, dtype in _FIXED_WIDTH.items():
            columns[name].append(_unpack_fixed(doc, name, dtype, count))
        columns["s"].append(_unpack_strings(doc, "s", count))
        batch_seq.append(np.full(count, doc["q"], dtype=np.int64))
        position.append(doc["p"] + np.arange(count, dtype=np.int64))
    table = pa.table(
        {name: pa.concat_arrays(parts) for name, parts in columns.items()}, schema=RAW_SCHEMA
    )
    t = table.column("t").to_numpy()
    keep = np.ones(len(t), dtype=bool)
    if start_us is not None:
        keep &= t >= start_us
    if end_us is not None:
        keep &= t < end_us
    seq, pos = np.concatenate(batch_seq)[keep], np.concatenate(position)[keep]
    t = t[keep]
    if not reverse and _in_order(t, seq, pos):
        rows = np.flatnonzero(keep)
    else:
        rows = np.flatnonzero(keep)[np.lexsort((pos, seq, -t if reverse else t))]
    if len(rows) and rows[-1] - rows[0] == len(rows) - 1 and np.all(rows[1:] > rows[:-1]):
        return table.slice(int(rows[0]), len(rows))  # already in order: no copy
    return table.take(pa.array(rows))


def _in_order(t: np.ndarray, seq: np.ndarray, pos: np.ndarray) -> bool:
    """Already ordered by (t, seq, pos)? (The usual case: chunks come in index order.)"""
    if len(t) < 2:
        return True
    same_t, same_seq = t[1:] == t[:-1], seq[1:] == seq[:-1]
    later = (t[1:] > t[:-1]) | (same_t & (seq[1:] > seq[:-1])) | (
        same_t & same_seq & (pos[1:] > pos[:-1])
    )
    return bool(later.all())


def _level_table(docs: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Newest visible version of each bucket, ordered by t, in the registered types."""
    t = np.array([doc["t"] for doc in docs], dtype=np.int64)
    version = np.array([doc["_q"] for doc in docs], dtype=np.int64)
    order = np.lexsort((version, t))
    last = np.ones(len(order), dtype=bool)
    last[:-1] = t[order][1:] != t[order][:-1]
    chosen = [docs[i] for i in order[last]]
    return pa.table(
        {field.name: pa.array([doc.get(field.name) for doc in chosen], type=field.type)
         for field in schema},
        schema=schema,
    )


# -- the commit protocol ----------------------------------------------------------------------


class _Commit:
    """One batch through reserve → write → commit point → flip (module docstring)."""

    def __init__(self, storage: MongoDBStorage, plan: _Plan) -> None:
        self.storage = storage
        self.plan = plan
        self.batch_id = ObjectId()
        self.seq: dict[str, int] = {}
        self.stale: list[tuple[str, Any]] = []
        self.held = storage._held()
        self.level_keys = sorted(plan.levels)

    def run(self) -> None:
        storage, plan = self.storage, self.plan
        try:
            self._reserve_all()
            for key, fields in plan.level_fields.items():
                storage._register_fields(key, fields)
            self._write_rows()
        except BaseException as error:
            self._undo()
            if isinstance(error, exceptions.DatastreamException):
                raise
            if not isinstance(error, Exception):
                raise
            raise exceptions.StreamAppendFailed(
                f"MongoDB commit failed, nothing of the batch is visible:"
                f" {type(error).__name__}: {error}"
            ) from error
        if len(plan.streams) == 1:
            self._commit_one(plan.streams[0])
        else:
            self._commit_many()
        self._after()

    # reservation and rows
    def _reserve_all(self) -> None:
        now = time.time()
        cutoff = now - self.storage.commit_timeout
        for sid in self.plan.streams:
            doc = self.storage._streams.find_one_and_update(
                {"_id": sid},
                {"$inc": {"w.seq": 1}, "$push": {"w.open": {"b": self.batch_id, "at": now}}},
                projection={"w": 1},
                return_document=ReturnDocument.AFTER,
            )
            if doc is None:
                raise exceptions.StreamAppendFailed(
                    f"stream {sid!r} not found: nothing of the batch was stored"
                )
            self.seq[sid] = doc["w"]["seq"]
            self.stale.extend(
                (sid, entry["b"]) for entry in doc["w"]["open"]
                if entry["at"] < cutoff and entry["b"] != self.batch_id
            )

    def _write_rows(self) -> None:
        storage, b = self.storage, self.batch_id
        chunks = []
        for sid, docs in self.plan.raw.items():
            for doc in docs:
                chunks.append({"sid": sid, "q": self.seq[sid], "b": b, **doc})
        if chunks:
            storage._raw.insert_many(chunks)
        for key, by_stream in self.plan.levels.items():
            rows = []
            for sid, docs in by_stream.items():
                rows.extend({**doc, "_q": self.seq[sid], "_b": b} for doc in docs)
            if rows:
                storage._level(key).insert_many(rows)

    def _undo(self) -> None:
        """Best effort: pull this batch's open entries and delete its rows. What fails here
        stays invisible and is cleaned up by recover()."""
        for sid in self.seq:
            with contextlib.suppress(PyMongoError):
                self._abort_stream(sid)

    def _abort_stream(self, sid: str) -> bool:
        """Pull this batch's open entry; True when this call removed it (then, or when the
        stream is gone, the batch's rows are deleted: nobody can ever see them)."""
        streams = self.storage._streams
        pulled = streams.update_one(
            {"_id": sid, "w.open.b": self.batch_id},
            {"$pull": {"w.open": {"b": self.batch_id}}},
        )
        if pulled.modified_count or streams.find_one({"_id": sid}, {"_id": 1}) is None:
            self.storage._drop_rows_of(sid, self.batch_id, self.level_keys)
        return bool(pulled.modified_count)

    # commit points
    def _fence(self, sid: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Extra filter and $set of a flip made while this thread holds the stream's lock."""
        if sid not in self.held:
            return {}, {}
        token, ttl, _ = self.held[sid]
        return {"lock.owner": token}, {"lock.until": time.time() + ttl}

    def _flip(self, sid: str, fenced: bool) -> bool:
        condition: dict[str, Any] = {"_id": sid, "w.open.b": self.batch_id}
        extra_set: dict[str, Any] = {}
        if fenced:
            fence, extra_set = self._fence(sid)
            condition.update(fence)
        update = _flip_update(self.batch_id, self._ops(sid), extra_set)
        return bool(self.storage._streams.update_one(condition, update).matched_count)

    def _ops(self, sid: str) -> dict[str, Any]:
        ops = {name: list(values) for name, values in self.plan.ops[sid].items()}
        if sid in self.plan.clear_raw:
            ops["max"].append(["w.raw_floor", self.seq[sid]])
        if sid in self.plan.clear_levels:
            ops["max"].append(["w.level_floor", self.seq[sid]])
        return ops

    def _commit_one(self, sid: str) -> None:
        try:
            if self._flip(sid, fenced=True):
                return
        except PyMongoError as error:
            # Outcome unknown: whoever removes the open entry decides it.
            try:
                aborted = self._abort_stream(sid)
            except PyMongoError:
                raise exceptions.StreamAppendFailed(
                    f"MongoDB commit of stream {sid!r} failed and its outcome is unknown"
                    f" until recover() runs: {error}"
                ) from error
            if not aborted:
                return  # the flip did apply before the error was reported
            raise exceptions.StreamAppendFailed(
                f"MongoDB commit of stream {sid!r} failed, nothing stored: {error}"
            ) from error
        with contextlib.suppress(PyMongoError):  # leftovers stay invisible until recover()
            self._abort_stream(sid)
        raise self._flip_refused(sid)

    def _flip_refused(self, sid: str) -> exceptions.DatastreamException:
        try:
            doc = self.storage._streams.find_one({"_id": sid}, {"lock": 1})
        except PyMongoError as error:
            return exceptions.StreamAppendFailed(
                f"MongoDB commit of stream {sid!r} was refused; nothing stored: {error}"
            )
        if doc is None:
            return exceptions.StreamAppendFailed(
                f"stream {sid!r} was deleted while writing; nothing of the batch was stored"
            )
        if sid in self.held and (doc.get("lock") or {}).get("owner") != self.held[sid][0]:
            return exceptions.LockExpiredMidMaintenance(
                f"maintenance lock of stream {sid!r} expired and was taken by another process;"
                " nothing of the batch was stored"
            )
        return exceptions.StreamAppendFailed(
            f"batch on stream {sid!r} was aborted by recovery (older than"
            f" {self.storage.commit_timeout} s); nothing of it was stored"
        )

    def _commit_many(self) -> None:
        storage = self.storage
        try:
            for sid in self.plan.streams:
                if sid in self.held:
                    fence, renew = self._fence(sid)
                    if not storage._streams.update_one({"_id": sid, **fence},
                                                       {"$set": renew}).matched_count:
                        raise self._flip_refused(sid)
        except BaseException as error:
            self._undo()
            if isinstance(error, PyMongoError):
                raise exceptions.StreamAppendFailed(f"MongoDB commit failed: {error}") from error
            raise
        journal = {
            "_id": self.batch_id, "kind": "commit", "state": "committed", "at": time.time(),
            "streams": [
                {"sid": sid, "ops": self._ops(sid),
                 "raw_floor": self.seq[sid] if sid in self.plan.clear_raw else None,
                 "level_floor": self.seq[sid] if sid in self.plan.clear_levels else None}
                for sid in self.plan.streams
            ],
        }
        try:
            storage._batches.insert_one(journal)
        except PyMongoError as error:
            # Committed only if our journal entry is there; otherwise claim it aborted.
            state = None
            with contextlib.suppress(PyMongoError):
                state = storage._claim_abort(self.batch_id).get("state")
            if state is None:
                raise exceptions.StreamAppendFailed(
                    f"MongoDB commit failed and its outcome is unknown until recover() runs:"
                    f" {error}"
                ) from error
            if state != "committed":
                self._undo()
                raise exceptions.StreamAppendFailed(
                    f"MongoDB commit failed, nothing of the batch is visible: {error}"
                ) from error
        for sid in self.plan.streams:
            try:
                if not self._flip(sid, fenced=False):
                    # Deleted meanwhile (or rolled forward by recovery): drop orphan rows.
                    if storage._streams.find_one({"_id": sid}, {"_id": 1}) is None:
                        storage._drop_rows_of(sid, self.batch_id, self.level_keys)
            except PyMongoError as error:
                warnings.warn(
                    f"batch committed but stream {sid!r} not yet updated ({error});"
                    " recover() completes it",
                    exceptions.InternalInconsistencyWarning,
                    stacklevel=4,
                )
                return
        with contextlib.suppress(PyMongoError):
            storage._batches.delete_one({"_id": self.batch_id})

    # after the commit
    def _after(self) -> None:
        """Collect rows the batch superseded and resolve stale batches seen while reserving.
        Failures here lose nothing: they only leave garbage for a later pass."""
        storage = self.storage
        try:
            for sid in self.plan.streams:
                seq = self.seq[sid]
                storage._collect_floors(
                    sid,
                    seq if sid in self.plan.clear_raw else None,
                    seq if sid in self.plan.clear_levels else None,
                )
            for key, by_stream in self.plan.levels.items():
                for sid, docs in by_stream.items():
                    if sid in self.plan.clear_levels:
                        continue
                    condition = {"stream_id": sid, "t": {"$in": [doc["t"] for doc in docs]},
                                 "_q": {"$lt": self.seq[sid]}}
                    storage._collect(sid, [(storage._level(key), condition)])
            for sid, batch_id in self.stale:
                storage._resolve(sid, batch_id)
        except PyMongoError as error:
            warnings.warn(f"cleanup after a MongoDB commit failed: {error}",
                          exceptions.InternalInconsistencyWarning, stacklevel=3)
