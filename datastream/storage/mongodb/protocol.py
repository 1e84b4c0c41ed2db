"""The side of the MongoDB commit protocol that every process shares (the protocol itself is
described in :mod:`.commit`): what readers see of records and rows, how a batch
journalled as committed is rolled forward on a stream by whoever meets it first, how rows are
collected without pulling them from under a reader, and recovery after crashed writers.

A *part* is what one batch does to one stream (stored in the journal for multi-stream
batches): ``{sid, ops, role, raw_floor?, level_floor?, cut?, drops?}``. ``ops`` are the meta
update operators (:mod:`.meta`); ``role`` is None for an existing stream, ``'new'`` for a
stream the batch creates and ``'delete'`` for one it deletes; ``cut`` is ``{t, q}`` (see
:mod:`.chunks`); ``drops`` are the batch's drops by time, ``{k, f, t, q}`` each: rows of
level ``k`` (None: raw rows) written before ``q`` with time ``>= t`` (``f`` true, a level
reopened from ``t``) or ``< t`` (``f`` false, retention) are gone. :func:`flip_update` turns
a part into the one update that applies it.

Drops by time are kept in the stream's ``w.drops`` and applied by readers (:class:`Snapshot`)
from the flip on; the collector then deletes the rows they hide completely and forgets the
drops that hide nothing any more. A drop stays applied until its rows are gone, so a crash
between the flip and the collection leaves nothing visible, and whoever flips, recovers or
drops rows of that stream next collects again (:meth:`CommitProtocol.collect_drops`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import Any

from pymongo.errors import DuplicateKeyError

from ... import exceptions
from ..base import StreamRecord
from . import chunks as mongo_chunks
from .database import Database
from .meta import apply_ops

READ_ATTEMPTS = 10
RECORD_FIELDS = {"tags": 1, "meta": 1, "nulls": 1, "v": 1, "new": 1, "gone": 1, "w.open": 1}
VERSION_FIELDS = {"v": 1, "new": 1, "gone": 1, "w.open": 1}
# Streams a batch may reserve: neither still being created nor deleted.
LIVE: dict[str, Any] = {"new": {"$exists": False}, "gone": {"$exists": False}}


@dataclasses.dataclass
class Snapshot:
    """What one reader may see of a stream: rows with ``floor <= q <= seq`` whose batch is not
    in ``hidden`` and that no cut or drop hides; ``gc`` tells whether rows were collected
    meanwhile."""

    seq: int
    hidden: list[Any]
    raw_floor: int
    level_floor: int
    gc: int
    cuts: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    drops: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    floors: list[tuple[int, int]] = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        # the drops of raw rows before a time, as the floors of :mod:`.chunks`
        self.floors = mongo_chunks.floor_frontier(
            [(d["t"], d["q"]) for d in self.drops if d["k"] is None])

    def level_hidden(self, level_key: str) -> list[dict[str, Any]]:
        """Filters of the level rows that drops hide (to exclude with ``$nor``)."""
        return [level_drop_condition(d) for d in self.drops if d["k"] == level_key]


def level_drop_condition(drop: dict[str, Any]) -> dict[str, Any]:
    """The level rows one drop hides."""
    return {"t": {"$gte" if drop["f"] else "$lt": drop["t"]}, "_q": {"$lt": drop["q"]}}


def drop_key(drop: dict[str, Any]) -> dict[str, Any]:
    """A drop as stored (fields in one order: ``$pull`` compares documents field by field)."""
    return {"k": drop["k"], "f": bool(drop["f"]), "t": int(drop["t"]), "q": int(drop["q"])}


def part_of(journal: dict[str, Any] | None, stream_id: str) -> dict[str, Any] | None:
    for part in journal.get("streams", []) if journal else []:
        if part["sid"] == stream_id:
            return part
    return None


def flip_update(batch_id: Any, part: dict[str, Any], extra_set: dict | None = None) -> dict:
    """The one atomic update that applies a batch to one stream: it leaves ``w.open``, its
    meta update, floors and cut apply, and the version moves on (a created stream stays at 0
    and becomes visible; a deleted one is marked gone and gives its query key up)."""
    sid, ops, role = part["sid"], part.get("ops") or {}, part.get("role")
    update: dict[str, Any] = {"$pull": {"w.open": {"b": batch_id}}}
    sets = dict(ops.get("set", []))
    maxes = dict(ops.get("max", []))
    mins = dict(ops.get("min", []))
    unset = {path: "" for path in ops.get("unset", [])}
    for name in ("raw_floor", "level_floor"):
        if part.get(name):
            maxes[f"w.{name}"] = part[name]
    if role == "new":
        unset["new"] = ""
    else:
        update["$inc"] = {"v": 1}
    if role == "delete":
        sets.update({"gone": batch_id, "qkey": f"released:{sid}"})
    if extra_set:
        sets.update(extra_set)
    pushes: dict[str, Any] = {}
    if part.get("cut"):
        pushes["w.cuts"] = part["cut"]
    if part.get("drops"):
        pushes["w.drops"] = {"$each": [drop_key(drop) for drop in part["drops"]]}
    if pushes:
        update["$push"] = pushes
    for name, pairs in (("$set", sets), ("$max", maxes), ("$min", mins), ("$unset", unset)):
        if pairs:
            update[name] = pairs
    return update


class CommitProtocol:
    """Readers, collector and recovery over the backend's collections; the storage and each
    commit are given one (it knows nothing of either). ``commit_timeout``: age in seconds
    after which a batch still open on a stream counts as crashed."""

    def __init__(self, db: Database, commit_timeout: float) -> None:
        self.db = db
        self.streams = db.streams
        self.raw = db.raw
        self.batches = db.batches
        self.commit_timeout = commit_timeout

    # -- readers ---------------------------------------------------------------------------
    def committed(self, batch_ids: Iterable[Any]) -> dict[Any, dict[str, Any]]:
        """Journal entries of those batches that are committed, by batch id."""
        ids = list(batch_ids)
        if not ids:
            return {}
        return {
            journal["_id"]: journal
            for journal in self.batches.find(
                {"_id": {"$in": ids}, "state": "committed"}, {"streams": 1}
            )
        }

    def records(self, fetch: Callable[[], list[dict[str, Any]]]) -> list[StreamRecord]:
        """Records as readers must see them: a batch committed through its journal but not
        yet flipped on a stream counts as applied to it (meta, version, creation, deletion),
        as its rows do. Streams being created or deleted are left out."""
        for _ in range(READ_ATTEMPTS):
            docs = fetch()
            open_ids = {entry["b"] for doc in docs for entry in doc["w"].get("open", [])}
            journals = self.committed(open_ids)
            unresolved = open_ids - set(journals)
            if unresolved:
                # Its journal may have gone because all its flips are done: then re-read.
                ids = [doc["_id"] for doc in docs]
                still_open = {
                    entry["b"]
                    for doc in self.streams.find({"_id": {"$in": ids}}, {"w.open": 1})
                    for entry in doc["w"].get("open", [])
                }
                if unresolved - still_open:
                    continue
            records = (_record(doc, journals) for doc in docs)
            return [record for record in records if record is not None]
        raise exceptions.DatastreamException("reading stream records kept racing with writers")

    def snapshot(self, stream_id: str) -> Snapshot | None:
        """None when the stream is unknown, not yet created or deleted."""
        doc = self.streams.find_one({"_id": stream_id}, {"w": 1, "new": 1, "gone": 1})
        if doc is None or doc.get("gone") is not None:
            return None
        w = doc["w"]
        open_ids = [entry["b"] for entry in w.get("open", [])]
        journals = self.committed(open_ids)
        if doc.get("new") is not None and doc["new"] not in journals:
            return None
        raw_floor, level_floor = w.get("raw_floor", 0), w.get("level_floor", 0)
        cuts = [(cut["t"], cut["q"]) for cut in w.get("cuts") or []]
        drops = list(w.get("drops") or [])
        for batch_id in open_ids:
            part = part_of(journals.get(batch_id), stream_id)
            if part is None:
                continue
            if part.get("role") == "delete":
                return None
            raw_floor = max(raw_floor, part.get("raw_floor") or 0)
            level_floor = max(level_floor, part.get("level_floor") or 0)
            if part.get("cut"):
                cuts.append((part["cut"]["t"], part["cut"]["q"]))
            drops.extend(part.get("drops") or [])
        hidden = [b for b in open_ids if b not in journals]
        return Snapshot(w["seq"], hidden, raw_floor, level_floor, w.get("gc", 0),
                        mongo_chunks.frontier(cuts), drops)

    def consistent(self, stream_id: str, read: Callable[[Snapshot], list]) -> list:
        """Run ``read`` on a snapshot; repeat when rows it could see were collected meanwhile."""
        for _ in range(READ_ATTEMPTS):
            snap = self.snapshot(stream_id)
            if snap is None:
                return []
            result = read(snap)
            after = self.streams.find_one({"_id": stream_id}, {"w.gc": 1})
            if after is None:
                return []
            if after["w"].get("gc", 0) == snap.gc:
                return result
        raise exceptions.DatastreamException(
            f"reading stream {stream_id!r} kept racing with concurrent rewrites"
        )

    # -- collecting rows -------------------------------------------------------------------
    def collect(self, stream_id: str, deletions: list[tuple[Any, dict[str, Any]]]) -> None:
        """Delete rows that readers with older snapshots may still see: bump ``w.gc`` first,
        so that such a reader notices and reads again."""
        pending = [(coll, cond) for coll, cond in deletions if coll.find_one(cond, {"_id": 1})]
        if not pending:
            return
        self.streams.update_one({"_id": stream_id}, {"$inc": {"w.gc": 1}})
        for collection, condition in pending:
            collection.delete_many(condition)

    def after_flip(self, stream_id: str, part: dict[str, Any]) -> None:
        """Work a part leaves once applied: rows below new floors or under its cut, and the
        rows and record of a deleted stream."""
        if part.get("role") == "delete":
            self.delete_now([stream_id])
            return
        deletions: list[tuple[Any, dict[str, Any]]] = []
        if part.get("raw_floor"):
            deletions.append((self.raw, {"sid": stream_id, "q": {"$lt": part["raw_floor"]}}))
        if part.get("level_floor"):
            for key in self.db.level_keys():
                deletions.append((self.db.level(key), {"stream_id": stream_id,
                                                     "_q": {"$lt": part["level_floor"]}}))
        self.collect(stream_id, deletions)
        if part.get("cut"):
            self.compact_cuts(stream_id)
        if part.get("drops"):
            self.collect_drops(stream_id)

    def collect_drops(self, stream_id: str) -> None:
        """Delete the rows the stream's drops by time hide completely (raw chunks below a
        floor, level rows), then forget the drops that hide nothing any more (floors still
        hiding part of a straddling chunk stay, unless a later floor covers them). Safe to
        repeat at any time; forgetting waits until no batch is open (one reserved before a
        drop could still write rows it hides)."""
        doc = self.streams.find_one({"_id": stream_id}, {"w.drops": 1, "w.open": 1})
        drops = [drop_key(d) for d in (doc or {}).get("w", {}).get("drops") or []]
        if not drops:
            return
        floors = mongo_chunks.floor_frontier([(d["t"], d["q"]) for d in drops if d["k"] is None])
        deletions: list[tuple[Any, dict[str, Any]]] = []
        if floors:
            deletions.append((self.raw, {"sid": stream_id, "$or": [
                mongo_chunks.hidden_below(t, q) for t, q in floors]}))
        written = set(self.db.level_keys())
        for key in sorted({d["k"] for d in drops if d["k"] in written}):
            deletions.append((self.db.level(key), {"stream_id": stream_id, "$or": [
                level_drop_condition(d) for d in drops if d["k"] == key]}))
        self.collect(stream_id, deletions)
        if doc["w"].get("open"):
            return
        needed = [
            (t, q) for t, q in floors
            if self.raw.find_one({"sid": stream_id, **mongo_chunks.partly_below(t, q)},
                                  {"_id": 1})
        ]
        dropped = [d for d in drops if d["k"] is not None or (d["t"], d["q"]) not in needed]
        if dropped:
            self.streams.update_one({"_id": stream_id, "w.open": {"$size": 0}},
                                     {"$pull": {"w.drops": {"$in": dropped}}})

    def compact_cuts(self, stream_id: str) -> None:
        """Delete the chunks cuts hide completely and keep only the cuts that still hide
        something: the frontier, minus cuts no stored chunk reaches. Dropping those needs no
        batch in flight (one reserved before the cut could still write such chunks)."""
        doc = self.streams.find_one({"_id": stream_id}, {"w.cuts": 1, "w.open": 1})
        cuts = [(cut["t"], cut["q"]) for cut in (doc or {}).get("w", {}).get("cuts") or []]
        if not cuts:
            return
        kept = mongo_chunks.frontier(cuts)
        self.collect(stream_id, [(self.raw, {
            "sid": stream_id, "$or": [mongo_chunks.hidden_by(t, q) for t, q in kept]})])
        condition: dict[str, Any] = {"_id": stream_id}
        if not doc["w"].get("open"):
            needed = [
                (t, q) for t, q in kept
                if self.raw.find_one({"sid": stream_id, "q": {"$lt": q}, "t1": {"$gte": t}},
                                      {"_id": 1})
            ]
            if len(needed) < len(kept):
                condition["w.open"] = {"$size": 0}
                kept = needed
        dropped = [{"t": t, "q": q} for t, q in dict.fromkeys(cuts) if (t, q) not in kept]
        if dropped:
            self.streams.update_one(condition, {"$pull": {"w.cuts": {"$in": dropped}}})

    def drop_rows_of(self, stream_id: str, batch_id: Any, level_keys: list[str]) -> None:
        """Delete the (never visible) rows one batch wrote for one stream."""
        self.raw.delete_many({"sid": stream_id, "b": batch_id})
        for key in level_keys:
            self.db.level(key).delete_many({"stream_id": stream_id, "_b": batch_id})

    def delete_now(self, ids: list[str]) -> None:
        """Physically remove streams whose deletion is committed: rows first, then the
        record, so that an interruption leaves a record recover() finds."""
        self.raw.delete_many({"sid": {"$in": ids}})
        for key in self.db.level_keys():
            self.db.level(key).delete_many({"stream_id": {"$in": ids}})
        self.streams.delete_many({"_id": {"$in": ids}, "gone": {"$exists": True}})

    # -- rolling forward, aborting, recovery ------------------------------------------------
    def settle_stream(self, stream_id: str, abort_stale: bool) -> bool:
        """Roll forward every batch open on a stream that is journalled as committed (safe at
        any time: a flip applies once), and with ``abort_stale`` abort the ones older than
        ``commit_timeout`` that are not. True when something changed."""
        if not isinstance(stream_id, str):
            return False
        doc = self.streams.find_one({"_id": stream_id}, {"w.open": 1})
        entries = doc["w"].get("open", []) if doc is not None else []
        if not entries:
            return False
        journals = self.committed(entry["b"] for entry in entries)
        cutoff = time.time() - self.commit_timeout
        changed = False
        for entry in entries:
            if entry["b"] in journals:
                self.roll_forward(stream_id, entry["b"], journals[entry["b"]])
                changed = True
            elif abort_stale and entry["at"] < cutoff:
                self.resolve(stream_id, entry["b"])
                changed = True
        return changed

    def roll_forward(self, stream_id: str, batch_id: Any, journal: dict[str, Any]) -> None:
        part = part_of(journal, stream_id)
        if part is not None:
            flipped = self.streams.update_one(
                {"_id": stream_id, "w.open.b": batch_id}, flip_update(batch_id, part)
            )
            if flipped.modified_count:
                self.after_flip(stream_id, part)
        if self.streams.find_one({"w.open.b": batch_id}, {"_id": 1}) is None:
            self.batches.delete_one({"_id": batch_id})

    def resolve(self, stream_id: str, batch_id: Any) -> None:
        """Abort or roll forward one stale open batch on one stream."""
        journal = self.claim_abort(batch_id)
        if journal.get("state") == "committed":
            self.roll_forward(stream_id, batch_id, journal)
        else:
            self.abort_entry(stream_id, batch_id, self.db.level_keys())

    def abort_entry(self, stream_id: str, batch_id: Any, level_keys: list[str]) -> bool:
        """Take an uncommitted batch off a stream (remove the stream if the batch was creating
        it); True when this call did. Then, or when the stream is gone, the batch's rows there
        are deleted: nobody can ever see them."""
        streams = self.streams
        removed = streams.delete_one({"_id": stream_id, "new": batch_id}).deleted_count
        if not removed:
            removed = streams.update_one(
                {"_id": stream_id, "w.open.b": batch_id},
                {"$pull": {"w.open": {"b": batch_id}}},
            ).modified_count
        if removed or streams.find_one({"_id": stream_id}, {"_id": 1}) is None:
            self.drop_rows_of(stream_id, batch_id, level_keys)
        return bool(removed)

    def claim_abort(self, batch_id: Any) -> dict[str, Any]:
        """The batch's journal entry; a batch without one is marked aborted first, so that
        its writer can no longer commit it."""
        journal = self.batches.find_one({"_id": batch_id})
        if journal is not None:
            return journal
        claim = {"_id": batch_id, "kind": "commit", "state": "aborted", "at": time.time()}
        try:
            self.batches.insert_one(claim)
            return claim
        except DuplicateKeyError:
            return self.batches.find_one({"_id": batch_id}) or claim

    def recover(self) -> None:
        """Finish committed deletions and resolve batches left open by crashed writers (older
        than ``commit_timeout``; committed ones are rolled forward whatever their age), and
        collect the rows that drops by time hide. Safe to run at any time, from any process."""
        for doc in list(self.streams.find({"gone": {"$exists": True}}, {"_id": 1})):
            self.delete_now([doc["_id"]])
        for doc in list(self.streams.find({"w.open.b": {"$exists": True}}, {"_id": 1})):
            self.settle_stream(doc["_id"], abort_stale=True)
        for doc in list(self.streams.find({"w.drops": {"$exists": True, "$ne": []},
                                            "gone": {"$exists": False}}, {"_id": 1})):
            self.collect_drops(doc["_id"])


def _record(doc: dict[str, Any], journals: dict[Any, dict[str, Any]]) -> StreamRecord | None:
    """The logical record of a stream document, None while it is invisible."""
    if doc.get("gone") is not None:
        return None
    if doc.get("new") is not None and doc["new"] not in journals:
        return None
    meta = dict(doc.get("meta") or {})
    for key in doc.get("nulls") or {}:
        meta[key] = None
    version = doc.get("v", 0)
    for entry in doc["w"].get("open", []):
        part = part_of(journals.get(entry["b"]), doc["_id"])
        if part is None:
            continue
        if part.get("role") == "delete":
            return None
        apply_ops(meta, part.get("ops") or {})
        if part.get("role") != "new":
            version += 1
    return StreamRecord(doc["_id"], doc.get("tags") or {}, meta, version)
