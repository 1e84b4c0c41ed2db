"""MongoDB test support: storages on mongomock or, when ``DATASTREAM_MONGODB_URI`` is set, on
a real server (a fresh uniquely named database per use, dropped afterwards).

mongomock applies ``find_one_and_update`` and conditional updates without any lock, so two
threads can both match the same filter; the server makes each single-document update atomic.
:class:`ClientProxy` restores that guarantee by serialising calls (only for mongomock), and
lets tests inject faults: ``proxy.fault = callable(collection, method, args, kwargs)`` runs
before every call and may raise.
"""

from __future__ import annotations

import contextlib
import operator
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import mongomock
import pymongo

from datastream.storage.mongodb import MongoDBStorage

URI_VARIABLE = "DATASTREAM_MONGODB_URI"
Fault = Callable[[str, str, tuple, dict], None]


def mongo_targets() -> list[str]:
    """Where MongoDB tests run: always mongomock, plus the server named by the environment."""
    return ["mongomock", "server"] if os.environ.get(URI_VARIABLE) else ["mongomock"]


class ClientProxy:
    """A client whose collections call ``fault`` first and, for mongomock, one at a time."""

    def __init__(self, client: Any, serialise: bool) -> None:
        self.client = client
        self.lock: Any = threading.RLock() if serialise else contextlib.nullcontext()
        self.fault: Fault | None = None

    def __getitem__(self, name: str) -> _DatabaseProxy:
        return _DatabaseProxy(self.client[name], self)

    def close(self) -> None:
        self.client.close()


class _DatabaseProxy:
    def __init__(self, database: Any, owner: ClientProxy) -> None:
        self._database = database
        self._owner = owner

    def __getitem__(self, name: str) -> _CollectionProxy:
        return _CollectionProxy(self._database[name], self._owner, name)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._database, attribute)


class _CollectionProxy:
    def __init__(self, collection: Any, owner: ClientProxy, name: str) -> None:
        self._collection = collection
        self._owner = owner
        self.name = name

    def __getattr__(self, attribute: str) -> Any:
        target = getattr(self._collection, attribute)
        if not callable(target):
            return target
        owner, name = self._owner, self.name

        def call(*args: Any, **kwargs: Any) -> Any:
            if owner.fault is not None:
                owner.fault(name, attribute, args, kwargs)
            with owner.lock:
                result = target(*args, **kwargs)
            if attribute == "find":
                return _CursorProxy(result, owner)
            return result

        return call


class _CursorProxy:
    """Sorts and iterates a cursor under the proxy's lock (documents read all at once)."""

    def __init__(self, cursor: Any, owner: ClientProxy) -> None:
        self._cursor = cursor
        self._owner = owner

    def sort(self, *args: Any, **kwargs: Any) -> _CursorProxy:
        with self._owner.lock:
            self._cursor = self._cursor.sort(*args, **kwargs)
        return self

    def __iter__(self) -> Iterator[dict[str, Any]]:
        with self._owner.lock:
            documents = list(self._cursor)
        return iter(documents)


class StorageFactory:
    """Callable returning MongoDBStorage objects on one database (one shared client)."""

    def __init__(self, target: str) -> None:
        self.database_name = f"datastream_test_{uuid.uuid4().hex[:12]}"
        if target == "server":
            raw_client: Any = pymongo.MongoClient(
                os.environ[URI_VARIABLE], serverSelectionTimeoutMS=5000
            )
            self.client = ClientProxy(raw_client, serialise=False)
        else:
            self.client = ClientProxy(mongomock.MongoClient(), serialise=True)
        self.target = target
        self.storages: list[MongoDBStorage] = []

    def __call__(self, **options: Any) -> MongoDBStorage:
        storage = MongoDBStorage(self.database_name, client=self.client, **options)
        self.storages.append(storage)
        return storage

    def cleanup(self) -> None:
        for storage in self.storages:
            storage.close()
        self.client.fault = None
        self.client.client.drop_database(self.database_name)
        self.client.close()


@contextlib.contextmanager
def storage_factory(target: str) -> Iterator[StorageFactory]:
    factory = StorageFactory(target)
    try:
        yield factory
    finally:
        factory.cleanup()


@contextlib.contextmanager
def mongo_backend_factory() -> Iterator[StorageFactory]:
    """For the backend contract suite: the server when configured, else mongomock."""
    with storage_factory(mongo_targets()[-1]) as factory:
        yield factory


def quicken_unique_checks() -> None:
    """Make mongomock's unique-index check compare key values directly.

    mongomock checks a unique index after every insert by running the index key as a query
    over the whole collection, through its general filter engine: a level commit of a few
    thousand rows then spends most of a test's time there. The same check done as a plain
    comparison of key tuples is an order of magnitude faster and, for the scalar keys our
    storage indexes, decides exactly alike; anything else (partial indexes, array or document
    key values) still goes through mongomock's own check.
    """
    collection_class = mongomock.collection.Collection
    original = collection_class._ensure_uniques
    if getattr(original, "quickened", False):
        return

    def ensure_uniques(self: Any, new_data: dict) -> None:
        for index in self._store.indexes.values():
            if not index.get("unique"):
                continue
            if index.get("partialFilterExpression") is not None or any(
                "." in key for key, _ in index["key"]
            ):
                return original(self, new_data)
            keys = [key for key, _ in index["key"]]
            wanted = tuple(new_data.get(key) for key in keys)
            if any(isinstance(value, (list, dict)) for value in wanted):
                return original(self, new_data)
            if index.get("sparse") and set(wanted) == {None}:
                continue
            if self._store._ttl_indexes:  # expiry runs when documents are listed
                return original(self, new_data)
            key_of = operator.itemgetter(*keys)  # a tuple, or the value for one key
            wanted_key = wanted if len(keys) > 1 else wanted[0]
            matches = 0
            for document in self._store._documents.values():
                try:
                    key = key_of(document)
                except KeyError:  # a missing key field reads as null
                    key = tuple(document.get(name) for name in keys)
                    key = key if len(keys) > 1 else key[0]
                if key == wanted_key:
                    matches += 1
                    if matches > 1:  # the new document itself is already stored
                        raise pymongo.errors.DuplicateKeyError("E11000 Duplicate Key Error",
                                                               11000)
        return None

    ensure_uniques.quickened = True  # type: ignore[attr-defined]
    collection_class._ensure_uniques = ensure_uniques
