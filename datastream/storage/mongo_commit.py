"""The MongoDB backend's commit and visibility protocol (no multi-document transactions needed).

Every row carries the writing batch id ``b`` and the stream's write sequence number ``q``
(``_b``/``_q`` in level rows). ``streams.w`` holds ``seq`` (last reserved number), ``open``
(batches in flight: ``{b, at}``), ``raw_floor``/``level_floor`` (rows below are cleared) and
``gc`` (bumped before rows that old readers may still see are deleted).

1. Reserve: per stream, ``$inc w.seq`` and ``$push w.open`` in one atomic update.
2. Insert all raw chunks and level rows (invisible: their batch is open).
3. Commit point. One stream: the *flip* below. Several streams: inserting the journal document
   ``{_id: b, state: 'committed', streams: [their meta updates]}`` into ``batches``.
4. Flip each stream: one update that pulls ``b`` from ``w.open`` and applies the MetaUpdate
   (``$set``/``$max``/``$min``), the floors and (when fenced) the lock lease.

A reader takes a snapshot of ``w`` and sees rows with ``floor <= q <= seq`` whose batch is not
open, or open but journalled as committed; it re-reads ``w.gc`` afterwards and retries when a
collection ran meanwhile. Records are read the same way: the meta update of a journalled batch
counts as applied before its flip, so meta never lags behind rows a reader could see.

A failure before the commit point undoes the reservation (pull, then delete the batch's rows)
and raises ``StreamAppendFailed``; nothing was ever visible. A crash leaves an open entry: rows
stay invisible and :meth:`CommitProtocol.recover` (also run on later commits, lock acquisition
and ``refresh_stream``) aborts it once older than ``commit_timeout``, or rolls it forward when
journalled as committed. Aborting first inserts
``{_id: b, state: 'aborted'}``, so a late writer's journal insert fails instead of racing it.
Retries are new batches, so they are idempotent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from .. import exceptions
from .base import StreamRecord
from .mongo_meta import apply_ops

if TYPE_CHECKING:
    from .mongodb import MongoDBStorage

READ_ATTEMPTS = 10
RECORD_FIELDS = {"tags": 1, "meta": 1, "nulls": 1, "w.open": 1}


@dataclasses.dataclass
class Snapshot:
    """What one reader may see of a stream (see the module docstring)."""

    seq: int
    hidden: list[Any]
    raw_floor: int
    level_floor: int
    gc: int


@dataclasses.dataclass
class Plan:
    """A WriteBatch encoded for MongoDB before anything is written."""

    streams: list[str]
    raw: dict[str, list[dict[str, Any]]]
    levels: dict[str, dict[str, list[dict[str, Any]]]]
    level_fields: dict[str, dict[str, tuple[str, int]]]
    ops: dict[str, dict[str, Any]]
    clear_raw: set[str]
    clear_levels: set[str]


class CommitProtocol:
    """The readers' and the collector's side of the protocol, mixed into MongoDBStorage.

    Needs the ``streams``, ``raw`` and ``batches`` collections, ``_level(key)`` and
    ``_level_keys()`` for level collections, ``_delete_now(ids)`` and ``commit_timeout``.
    """

    _streams: Any
    _raw: Any
    _batches: Any
    commit_timeout: float
    _level: Callable[[str], Any]
    _level_keys: Callable[[], list[str]]
    _delete_now: Callable[[list[str]], None]

    # -- readers ---------------------------------------------------------------------------
    def _records(self, fetch: Callable[[], list[dict[str, Any]]]) -> list[StreamRecord]:
        """Records as readers must see them: a batch committed through its journal but not
        yet flipped on a stream counts as applied to that stream's meta, as its rows do."""
        for _ in range(READ_ATTEMPTS):
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

    def _snapshot(self, stream_id: str) -> Snapshot | None:
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
        return Snapshot(w["seq"], hidden, w.get("raw_floor", 0), w.get("level_floor", 0),
                         w.get("gc", 0))

    def _consistent(self, stream_id: str, read: Callable[[Snapshot], list]) -> list:
        """Run ``read`` on a snapshot; repeat when rows it could see were collected meanwhile."""
        for _ in range(READ_ATTEMPTS):
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

    # -- collecting rows -------------------------------------------------------------------
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
                        flip_update(batch_id, part["ops"]),
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


def _record(doc: dict[str, Any], journals: dict[Any, dict[str, Any]]) -> StreamRecord:
    meta = dict(doc.get("meta") or {})
    for key in doc.get("nulls") or {}:
        meta[key] = None
    for entry in doc["w"].get("open", []):
        journal = journals.get(entry["b"])
        for part in journal["streams"] if journal else []:
            if part["sid"] == doc["_id"]:
                apply_ops(meta, part["ops"])
    return StreamRecord(doc["_id"], doc.get("tags") or {}, meta)


def flip_update(batch_id: Any, ops: dict[str, Any], extra_set: dict | None = None) -> dict:
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


class Commit:
    """One batch through reserve → write → commit point → flip (module docstring)."""

    def __init__(self, storage: MongoDBStorage, plan: Plan) -> None:
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
        update = flip_update(self.batch_id, self._ops(sid), extra_set)
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
