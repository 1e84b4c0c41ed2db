"""behaviour §8: one ``StorageUnavailable`` for a backend that cannot be reached or was closed.

Reads, record operations and maintenance locks raise it on every backend; a commit raises
``StreamAppendFailed`` instead, and a flush that cannot reach the backend keeps its points.
MongoDB runs on mongomock with injected pymongo failures (``ClientProxy.fault``); DuckDB is
closed. InfluxDB + PostgreSQL are covered by tests/storage/test_influxdb.py; a closed storage of
every backend by tests/storage/contract/test_failures.py.
"""

from __future__ import annotations

import contextlib
import datetime

import pymongo.errors
import pytest

import datastream
from datastream import exceptions
from datastream.backends import duckdb as duckdb_backend
from datastream.backends import influxdb as influxdb_backend
from datastream.backends import mongodb as mongodb_backend
from datastream.storage import duckdb as duckdb_store
from datastream.storage.base import MetaUpdate, WriteBatch
from datastream.storage.influxdb import metadata as pg_metadata
from tests.mongo_support import storage_factory
from tests.storage.rows import add_stream, new_id, raw_rows

UNREACHABLE = [
    pymongo.errors.ServerSelectionTimeoutError("no servers found"),
    pymongo.errors.AutoReconnect("connection reset"),
    pymongo.errors.NetworkTimeout("timed out"),
    pymongo.errors.ConnectionFailure("refused"),
    pymongo.errors.InvalidOperation("Cannot use MongoClient after close"),
]
T0 = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)


def test_one_class_under_every_old_name() -> None:
    shared = exceptions.StorageUnavailable
    assert issubclass(shared, exceptions.DatastreamException)
    assert not issubclass(shared, exceptions.StreamAppendFailed)
    assert duckdb_store.StorageUnavailable is shared
    assert pg_metadata.StorageUnavailable is shared
    for backend in (duckdb_backend, influxdb_backend, mongodb_backend):
        assert backend.StorageUnavailable is shared
    assert issubclass(duckdb_backend.StorageLocked, shared)
    assert isinstance(shared("down"), duckdb_store.StorageUnavailable)  # old isinstance checks


def _operations(storage, stream_id: str) -> dict:
    """Every storage call outside commits, on an existing stream."""
    return {
        "find_streams": lambda: storage.find_streams(None),
        "find_streams query": lambda: storage.find_streams({"name": "x"}),
        "get_stream": lambda: storage.get_stream(stream_id),
        "refresh_stream": lambda: storage.refresh_stream(stream_id),
        "set_tags": lambda: storage.set_tags(stream_id, {"name": "y"}),
        "read_raw": lambda: storage.read_raw(stream_id, None, None),
        "read_level": lambda: storage.read_level("S", stream_id, None, None),
        "maintenance_lock": lambda: contextlib.ExitStack().enter_context(
            storage.maintenance_lock(stream_id)
        ),
    }


def _batch(stream_id: str) -> WriteBatch:
    return WriteBatch(raw={stream_id: raw_rows([5], ints=[5])},
                      meta={stream_id: MetaUpdate(max={"latest": 5})})


def assert_unavailable(storage, stream_id: str, match: str) -> None:
    for name, call in _operations(storage, stream_id).items():
        with pytest.raises(exceptions.StorageUnavailable, match=match):
            call()
            pytest.fail(f"{name} did not raise")
    # creating and deleting streams are commits too
    for call in (lambda: storage.commit(_batch(stream_id)),
                 lambda: add_stream(storage, {"other": 1}),
                 lambda: storage.delete_streams([stream_id])):
        with pytest.raises(exceptions.StreamAppendFailed):
            call()


def seeded(storage) -> str:
    stream_id = add_stream(storage, {"name": "x"}, {"latest": 1})
    storage.commit(WriteBatch(raw={stream_id: raw_rows([1], ints=[1])}))
    return stream_id


@pytest.fixture
def mongo():
    with storage_factory("mongomock") as factory:
        yield factory


@pytest.mark.parametrize("error", UNREACHABLE, ids=lambda e: type(e).__name__)
def test_unreachable_mongodb(mongo, error) -> None:
    """pymongo's connection errors used to escape raw (or as a bare DatastreamException)."""
    storage = mongo()
    stream_id = seeded(storage)

    def server_down(collection, method, args, kwargs):
        raise error

    mongo.client.fault = server_down
    assert_unavailable(storage, stream_id, "unreachable")
    with pytest.raises(exceptions.StorageUnavailable, match="unavailable"):
        mongo()
    mongo.client.fault = None
    assert storage.read_raw(stream_id, None, None).column("i").to_pylist() == [1]
    assert [r.stream_id for r in storage.find_streams(None)] == [stream_id]
    storage.commit(_batch(stream_id))
    assert storage.read_raw(stream_id, None, None).column("i").to_pylist() == [1, 5]


def test_mongodb_lock_release_unreachable(mongo) -> None:
    storage = mongo()
    stream_id = seeded(storage)

    def release_fails(collection, method, args, kwargs):
        if method == "update_one" and args[1] == {"$set": {"lock": None}}:
            raise pymongo.errors.AutoReconnect("connection reset")

    with pytest.raises(exceptions.StorageUnavailable, match="releasing"):
        with storage.maintenance_lock(stream_id):
            mongo.client.fault = release_fails
    mongo.client.fault = None


def test_other_mongodb_errors_are_not_unavailability(mongo) -> None:
    storage = mongo()
    stream_id = seeded(storage)

    def refused(collection, method, args, kwargs):
        raise pymongo.errors.OperationFailure("not authorized", code=13)

    mongo.client.fault = refused
    with pytest.raises(pymongo.errors.OperationFailure):
        storage.read_raw(stream_id, None, None)
    mongo.client.fault = None


def test_datastream_over_unreachable_mongodb(mongo) -> None:
    """Through the API: reads raise StorageUnavailable; a flush raises StreamAppendFailed and
    keeps its points, which are stored exactly once when the server is back."""
    ds = datastream.Datastream(mongo(), clock=lambda: T0)
    stream_id = ds.ensure_stream({"name": "x"}, {}, ["mean"], "seconds")
    ds.append(stream_id, 1, T0)
    ds.flush()
    ds.append(stream_id, 2, T0 + datetime.timedelta(seconds=1))

    def server_down(collection, method, args, kwargs):
        raise pymongo.errors.ServerSelectionTimeoutError("no servers found")

    mongo.client.fault = server_down
    with pytest.raises(exceptions.StreamAppendFailed):
        ds.flush()
    with pytest.raises(exceptions.StorageUnavailable):
        ds.ensure_stream({"name": "y"}, {}, ["mean"], "seconds")
    with pytest.raises(exceptions.StorageUnavailable):
        ds.delete_streams({"name": "x"})
    with pytest.raises(exceptions.StorageUnavailable):
        ds.get_tags(new_id())
    mongo.client.fault = None
    ds.flush()
    points = ds.get_data(stream_id, "seconds", start=T0)
    assert [p["v"] for p in points] == [1, 2]
    ds.close()


def test_datastream_after_close_duckdb(tmp_path) -> None:
    ds = datastream.Datastream(duckdb_backend.Backend(str(tmp_path / "store.duckdb")))
    stream_id = ds.ensure_stream({"name": "x"}, {}, ["mean"], "seconds")
    ds.close()
    with pytest.raises(exceptions.StorageUnavailable, match="closed"):
        ds.find_streams()
    with pytest.raises(exceptions.StorageUnavailable, match="closed"):
        list(ds.get_data(stream_id, "seconds", start=T0))
