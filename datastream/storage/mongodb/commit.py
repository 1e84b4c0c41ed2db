"""The MongoDB backend's commit and visibility protocol (no multi-document transactions needed).

Every row carries the writing batch id ``b`` and the stream's write sequence number ``q``
(``_b``/``_q`` in level rows). A stream document holds ``v`` (its version), ``w`` with ``seq``
(last reserved number), ``open`` (batches in flight: ``{b, at}``), ``raw_floor``/``level_floor``
(rows below are cleared), ``cuts`` (truncations, see :mod:`.chunks`), ``drops`` (drops by
time not yet collected, see :mod:`.protocol`) and ``gc`` (bumped
before rows that old readers may still see are deleted); while a batch creates it, ``new`` (that
batch), and once a batch deleted it, ``gone``.

1. Reserve. An existing stream: one conditional update that requires the version the engine
   read (``WriteBatch.expect``) and pushes the batch on ``w.open`` (``$inc w.seq``). A stream
   to create: its document is inserted with ``new`` set and the batch open on it, under the
   unique query key (so of two creators one gets ``StreamExists``).
2. Insert all raw chunks and level rows (invisible: their batch is open).
3. Commit point. One stream: the *flip* below. Several streams: inserting the journal document
   ``{_id: b, state: 'committed', streams: [parts]}`` into ``batches``
   (parts: :mod:`.protocol`).
4. Flip each stream: one update that pulls ``b`` from ``w.open`` and applies the part: meta
   update, floors, cut, drops by time, ``$inc v`` (or, for a created stream, ``$unset new``;
   for a deleted one, ``gone``); when fenced, the lock lease too. Then, outside the commit,
   rows the batch made unreachable are collected and deleted streams physically removed;
   failures there only warn (recover() finishes them).

Readers see rows with ``floor <= q <= seq`` whose batch is not open, or open but journalled as
committed, minus what cuts and drops hide; records the same way (a journalled batch counts as
applied before its flip: meta, version, creation, deletion), so nothing lags behind anything
else.

Versions: ``v`` counts flips and ``set_tags`` calls; the logical version adds one per batch
journalled as committed and not yet flipped on the stream. A reservation conditional on the
version is refused while such a batch exists: it is rolled forward first (its flip would
otherwise overwrite newer meta), and the reservation is retried. Between reservation and flip
no other meta writer exists (the engine holds the streams' maintenance locks), so the
reservation's check holds at the flip.

A failure before the commit point undoes the reservations (pull, or remove a created stream,
then delete the batch's rows) and raises ``StreamAppendFailed`` (``RecordConflict`` /
``StreamExists`` when refused); nothing was ever visible. A crash leaves an open entry: rows
stay invisible and :meth:`CommitProtocol.recover` (also run on later commits, lock acquisition
and ``refresh_stream``) aborts it once older than ``commit_timeout``, or rolls it forward when
journalled as committed. Aborting first inserts ``{_id: b, state: 'aborted'}``, so a late
writer's journal insert fails instead of racing it. Retries are new batches, so they are
idempotent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import PyMongoError

from ... import exceptions
from ..base import RecordConflict, StreamRecord, version_conflict, warn_after_commit
from .database import Database
from .protocol import LIVE, CommitProtocol, flip_update

RESERVE_ATTEMPTS = 4
NOTHING_STORED = "nothing of the batch was stored"
NO_OPS: dict[str, list[Any]] = {"set": [], "unset": [], "max": [], "min": []}


@dataclasses.dataclass
class Creation:
    """A stream to create: its document (without bookkeeping) and the query it answers."""

    doc: dict[str, Any]
    query: dict[str, Any]
    condition: dict[str, Any]
    qkey: str


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
    truncate: dict[str, int] = dataclasses.field(default_factory=dict)
    drops: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    expect: dict[str, int] = dataclasses.field(default_factory=dict)
    create: dict[str, Creation] = dataclasses.field(default_factory=dict)
    delete: set[str] = dataclasses.field(default_factory=set)


@dataclasses.dataclass(frozen=True)
class Context:
    """What a commit works with, handed over by the storage: the collections, the protocol
    shared with readers, the maintenance locks the committing thread holds (stream id ->
    ``[owner token, ttl, depth]``), and two record operations of the storage: reading a
    record and inserting a stream document (given a batch id, the document stays pending
    until that batch commits; StreamExists when a stream matches its query)."""

    db: Database
    protocol: CommitProtocol
    held: dict[str, list[Any]]
    get_stream: Callable[[str], StreamRecord | None]
    insert_stream: Callable[[Creation, Any, float], None]


class Commit:
    """One batch through reserve → write → commit point → flip (module docstring)."""

    def __init__(self, context: Context, plan: Plan) -> None:
        self.db = context.db
        self.protocol = context.protocol
        self.context = context
        self.plan = plan
        self.batch_id = ObjectId()
        self.seq: dict[str, int] = {}
        self.stale: list[tuple[str, Any]] = []
        self.held = context.held
        self.level_keys = sorted(plan.levels)

    def run(self) -> None:
        plan = self.plan
        try:
            self._check_unreserved()
            for key, fields in plan.level_fields.items():
                self.db.check_fields(key, fields)
            self._reserve_all()
            for key, fields in plan.level_fields.items():
                self.db.register_fields(key, fields)
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
        live = [sid for sid in plan.streams if sid in self.seq]
        if not live:
            return  # only streams to delete, all gone already
        if len(live) == 1:
            self._commit_one(live[0])
        else:
            self._commit_many(live)
        try:
            self._after(live)
        except Exception as error:  # noqa: BLE001 - the batch is stored: never raise now
            warn_after_commit(f"cleanup after a MongoDB commit failed: {error}", stacklevel=3)

    # reservation and rows
    def _check_unreserved(self) -> None:
        """Expected versions of streams the batch does not otherwise touch (the engine sends
        none): checked by reading, since nothing of them is written."""
        for sid, version in self.plan.expect.items():
            if sid in self.plan.streams:
                continue
            record = self.context.get_stream(sid)
            if record is None:
                raise exceptions.StreamAppendFailed(
                    f"stream {sid!r} not found: nothing of the batch was stored"
                )
            if record.version != version:
                raise version_conflict(sid, record.version, version, NOTHING_STORED)

    def _reserve_all(self) -> None:
        now = time.time()
        created = [sid for sid in self.plan.streams if sid in self.plan.create]
        for sid in created:
            self.seq[sid] = 1  # first, so that _undo removes it even if the reply is lost
            self.context.insert_stream(self.plan.create[sid], self.batch_id, now)
        for sid in self.plan.streams:
            if sid not in self.plan.create:
                self._reserve(sid, now)

    def _reserve(self, sid: str, now: float) -> None:
        """Push this batch on an existing stream whose version is the expected one, never on
        top of a batch journalled as committed and not yet flipped there (rolled forward
        first). A stream to delete that no longer exists is skipped."""
        protocol, expected = self.protocol, self.plan.expect.get(sid)
        condition: dict[str, Any] = {"_id": sid, **LIVE}
        if expected is not None:
            condition["v"] = expected
        cutoff = now - protocol.commit_timeout
        for _ in range(RESERVE_ATTEMPTS):
            doc = self.db.streams.find_one_and_update(
                condition,
                {"$inc": {"w.seq": 1}, "$push": {"w.open": {"b": self.batch_id, "at": now}}},
                projection={"w": 1},
                return_document=ReturnDocument.AFTER,
            )
            if doc is None:
                if protocol.settle_stream(sid, abort_stale=False):
                    continue
                self._refused(sid, expected)
                return
            self.seq[sid] = doc["w"]["seq"]
            others = [entry for entry in doc["w"]["open"] if entry["b"] != self.batch_id]
            if not others or not protocol.committed(entry["b"] for entry in others):
                self.stale.extend((sid, entry["b"]) for entry in others if entry["at"] < cutoff)
                return
            del self.seq[sid]
            protocol.abort_entry(sid, self.batch_id, self.level_keys)
            protocol.settle_stream(sid, abort_stale=False)
        raise RecordConflict(
            f"stream {sid!r} kept changing while reserving it; nothing of the batch was stored"
        )

    def _refused(self, sid: str, expected: int | None) -> None:
        """Why a reservation matched nothing: the stream is missing (skipped when only to be
        deleted) or its version is not the expected one."""
        doc = self.db.streams.find_one({"_id": sid, **LIVE}, {"v": 1})
        if doc is None:
            if sid in self.plan.delete and expected is None:
                return
            raise exceptions.StreamAppendFailed(
                f"stream {sid!r} not found: nothing of the batch was stored"
            )
        raise version_conflict(sid, doc.get("v", 0), expected, NOTHING_STORED)

    def _write_rows(self) -> None:
        b = self.batch_id
        chunks = []
        for sid, docs in self.plan.raw.items():
            for doc in docs:
                chunks.append({"sid": sid, "q": self.seq[sid], "b": b, **doc})
        if chunks:
            self.db.raw.insert_many(chunks)
        for key, by_stream in self.plan.levels.items():
            rows = []
            for sid, docs in by_stream.items():
                rows.extend({**doc, "_q": self.seq[sid], "_b": b} for doc in docs)
            if rows:
                self.db.level(key).insert_many(rows)

    def _undo(self) -> None:
        """Best effort: take this batch off every stream it reserved and delete its rows.
        What fails here stays invisible and is cleaned up by recover()."""
        for sid in self.seq:
            with contextlib.suppress(PyMongoError):
                self._abort_stream(sid)

    def _abort_stream(self, sid: str) -> bool:
        return self.protocol.abort_entry(sid, self.batch_id, self.level_keys)

    # commit points
    def _part(self, sid: str) -> dict[str, Any]:
        """What this batch does to one stream (module docstring of protocol.py)."""
        plan, seq = self.plan, self.seq[sid]
        role = "new" if sid in plan.create else "delete" if sid in plan.delete else None
        part: dict[str, Any] = {"sid": sid, "ops": plan.ops.get(sid, NO_OPS), "role": role}
        if sid in plan.clear_raw:
            part["raw_floor"] = seq
        elif sid in plan.truncate:
            part["cut"] = {"t": plan.truncate[sid], "q": seq}
        if sid in plan.clear_levels:
            part["level_floor"] = seq
        if plan.drops.get(sid):
            part["drops"] = [{**drop, "q": seq} for drop in plan.drops[sid]]
        return part

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
        update = flip_update(self.batch_id, self._part(sid), extra_set)
        return bool(self.db.streams.update_one(condition, update).matched_count)

    def _commit_one(self, sid: str) -> None:
        try:
            if self._flip(sid, fenced=True):
                return
        except PyMongoError as error:
            # Outcome unknown: whoever removes the open entry decides it.
            try:
                aborted = self._abort_stream(sid)
            except PyMongoError:
                raise exceptions.CommitOutcomeUnknown(
                    f"MongoDB commit of stream {sid!r} failed and its outcome is unknown"
                    f" until the server answers again: {error}",
                    functools.partial(self._settle_one, sid),
                ) from error
            if not aborted:
                return  # the flip did apply before the error was reported
            raise exceptions.StreamAppendFailed(
                f"MongoDB commit of stream {sid!r} failed, nothing stored: {error}"
            ) from error
        with contextlib.suppress(PyMongoError):  # leftovers stay invisible until recover()
            self._abort_stream(sid)
        raise self._flip_refused(sid)

    def _settle_one(self, sid: str) -> bool | None:
        """Whether a one-stream commit whose reply was lost went through: whoever removes its
        open entry decides (None while the server cannot be asked)."""
        try:
            return not self._abort_stream(sid)
        except PyMongoError:
            return None

    def _settle_many(self, live: list[str]) -> bool | None:
        """Whether a commit whose journal insert lost its reply went through: its journal
        entry says so, else it is claimed aborted now (None while the server cannot be
        asked). A committed one is rolled forward here as recover() would."""
        try:
            state = self.protocol.claim_abort(self.batch_id).get("state")
        except PyMongoError:
            return None
        if state != "committed":
            with contextlib.suppress(PyMongoError):
                self._undo()
            return False
        for sid in live:
            with contextlib.suppress(PyMongoError):
                self.protocol.settle_stream(sid, abort_stale=False)
        return True

    def _flip_refused(self, sid: str) -> exceptions.DatastreamException:
        try:
            doc = self.db.streams.find_one({"_id": sid}, {"lock": 1})
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
            f" {self.protocol.commit_timeout} s); nothing of it was stored"
        )

    def _commit_many(self, live: list[str]) -> None:
        db, protocol = self.db, self.protocol
        try:
            for sid in live:
                if sid in self.held:
                    fence, renew = self._fence(sid)
                    if not db.streams.update_one({"_id": sid, **fence},
                                                       {"$set": renew}).matched_count:
                        raise self._flip_refused(sid)
        except BaseException as error:
            self._undo()
            if isinstance(error, PyMongoError):
                raise exceptions.StreamAppendFailed(f"MongoDB commit failed: {error}") from error
            raise
        journal = {
            "_id": self.batch_id, "kind": "commit", "state": "committed", "at": time.time(),
            "streams": [self._part(sid) for sid in live],
        }
        try:
            db.batches.insert_one(journal)
        except PyMongoError as error:
            # Committed only if our journal entry is there; otherwise claim it aborted.
            state = None
            with contextlib.suppress(PyMongoError):
                state = protocol.claim_abort(self.batch_id).get("state")
            if state is None:
                raise exceptions.CommitOutcomeUnknown(
                    f"MongoDB commit failed and its outcome is unknown until the server answers"
                    f" again: {error}", functools.partial(self._settle_many, live)
                ) from error
            if state != "committed":
                self._undo()
                raise exceptions.StreamAppendFailed(
                    f"MongoDB commit failed, nothing of the batch is visible: {error}"
                ) from error
        # Committed. From here on nothing may raise: a caller would retry a stored batch.
        for sid in live:
            try:
                if not self._flip(sid, fenced=False):
                    # Deleted meanwhile (or rolled forward by someone else): drop orphan rows.
                    if db.streams.find_one({"_id": sid}, {"_id": 1}) is None:
                        protocol.drop_rows_of(sid, self.batch_id, self.level_keys)
            except Exception as error:  # noqa: BLE001 - see above
                warn_after_commit(
                    f"batch committed but stream {sid!r} not yet updated ({error});"
                    " recover() completes it",
                    stacklevel=4,
                )
                return
        with contextlib.suppress(PyMongoError):
            db.batches.delete_one({"_id": self.batch_id})

    # after the commit
    def _after(self, live: list[str]) -> None:
        """Collect rows the batch superseded, remove deleted streams and resolve stale
        batches seen while reserving. Failures here lose nothing: they leave garbage for a
        later pass (and deleted streams, hidden, for recover())."""
        protocol = self.protocol
        for sid in live:
            protocol.after_flip(sid, self._part(sid))
        for key, by_stream in self.plan.levels.items():
            for sid, docs in by_stream.items():
                if sid in self.plan.clear_levels or sid not in self.seq:
                    continue
                condition = {"stream_id": sid, "t": {"$in": [doc["t"] for doc in docs]},
                             "_q": {"$lt": self.seq[sid]}}
                protocol.collect(sid, [(self.db.level(key), condition)])
        for sid, batch_id in self.stale:
            protocol.resolve(sid, batch_id)
