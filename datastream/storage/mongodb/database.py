"""The MongoDB backend's database: its collections, shared by the storage, its commits
(:mod:`.commit`) and the protocol (:mod:`.protocol`).

One object owns them, and the index cache of the level collections, so that each of those
parts is given exactly the collections it works on instead of reaching into the storage.
"""

from __future__ import annotations

from typing import Any

from ... import exceptions

_KINDS = {
    **dict.fromkeys(("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "float",
                     "double"), "number"),
    "string": "text", "large_string": "text", "bool": "boolean",
}


SHARD_KEYS = {"raw": {"sid": 1, "t1": 1}, "level_": {"stream_id": 1, "t": 1}}
"""The shard key of each collection that grows with data (``level_`` stands for every
``level_<key>``), led by the stream, then time: a range read of one stream is routed to the
shards holding its range, and writes of many streams spread. Each is the prefix of an index
the backend creates (the unique level index starts with it, as MongoDB requires), and the
backend writes these collections only with ``insert_many`` and ``delete_many``, which need no
shard key in their filters. ``streams``, ``batches`` (the commit journal, emptied as commits
finish), ``counters``, ``level_schemas`` and ``datastream_info`` stay small: leave them
unsharded."""


def shard_key(collection: str) -> dict[str, int] | None:
    """The documented shard key of a collection (None: not meant to be sharded)."""
    if collection.startswith("level_") and collection != "level_schemas":
        return dict(SHARD_KEYS["level_"])
    key = SHARD_KEYS.get(collection)
    return None if key is None else dict(key)


def _same_kind(stored: str, given: str) -> bool:
    """Whether values of type ``given`` may join a column stored as ``stored``."""
    return "null" in (stored, given) or _KINDS.get(stored) == _KINDS.get(given)


class Database:
    """``streams``, ``raw``, ``batches``, ``counters``, ``level_schemas`` (``schemas``),
    ``datastream_info`` (``info``) and the ``level_<key>`` collections, made on first use.
    The collection layout is described in :mod:`.storage`."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.streams = db["streams"]
        self.raw = db["raw"]
        self.batches = db["batches"]
        self.counters = db["counters"]
        self.schemas = db["level_schemas"]
        self.info = db["datastream_info"]
        self._indexed_levels: set[str] = set()
        self._column_types: dict[tuple[str, str], str] = {}  # (level, column) -> a stored type

    def create_indexes(self) -> None:
        """The indexes every opener makes sure of (the level ones are made by :meth:`level`)."""
        self.streams.create_index([("order", 1)])
        self.streams.create_index([("qkey", 1)], unique=True)
        self.streams.create_index([("w.open.b", 1)])
        self.streams.create_index([("gone", 1)], sparse=True)
        self.raw.create_index([("sid", 1), ("t1", 1), ("t0", 1), ("q", 1)])
        self.batches.create_index([("kind", 1)])

    def level(self, level_key: str) -> Any:
        """The collection of one level's rows, its unique index made on first use."""
        collection = self.db[f"level_{level_key}"]
        if level_key not in self._indexed_levels:
            collection.create_index([("stream_id", 1), ("t", 1), ("_q", 1)], unique=True)
            self._indexed_levels.add(level_key)
        return collection

    def level_keys(self) -> list[str]:
        """Keys of the levels ever registered (by :meth:`register_fields`)."""
        return [doc["_id"] for doc in self.schemas.find({}, {"_id": 1})]

    def check_fields(self, level_key: str, fields: dict[str, tuple[str, int]]) -> None:
        """StreamAppendFailed when a column would change kind (number, text, boolean): the
        stored values of the level could then no longer be read as one Arrow column. A null
        column takes any kind, and numbers of another width are cast on read. A column's
        kind never changes once it holds values, so the kinds seen are remembered."""
        known = self._column_types
        if any((level_key, name) not in known for name in fields):
            stored = (self.schemas.find_one({"_id": level_key}) or {}).get("fields", {})
            for name, field in stored.items():
                if field.get("type", "null") != "null":
                    known[level_key, name] = field["type"]
        for name, (alias, _) in sorted(fields.items()):
            before = known.get((level_key, name))
            if before is not None and not _same_kind(before, alias):
                raise exceptions.StreamAppendFailed(
                    f"nothing of the batch was stored: level {level_key!r} column {name!r}"
                    f" holds {before} values, the batch gives {alias}"
                )

    def register_fields(self, level_key: str, fields: dict[str, tuple[str, int]]) -> None:
        """Remember a level's column types (``name -> (type alias, position)``) before its
        rows are written, so that reads return the written types."""
        update: dict[str, Any] = {"$set": {}, "$min": {}}
        for name, (alias, position) in fields.items():
            update["$set"][f"fields.{name}.type"] = alias
            update["$min"][f"fields.{name}.pos"] = position
        self.schemas.update_one({"_id": level_key}, update, upsert=True)
