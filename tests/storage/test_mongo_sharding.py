"""The MongoDB layout fits a sharded cluster (behaviour §9): every collection that grows with
data has a documented shard key led by the stream, then time, backed by an index that starts
with it, and the backend writes those collections only in ways a sharded collection accepts
without the shard key in the filter. (No sharded cluster runs here: the rules are MongoDB's,
checked on every call the backend makes during a workload of every kind of change.)"""

from __future__ import annotations

import datetime

import numpy as np

import datastream
from datastream.storage.mongodb.database import SHARD_KEYS, shard_key

UTC = datetime.timezone.utc
T0 = datetime.datetime(2000, 1, 1, tzinfo=UTC)
# single-document writes need the full shard key (or _id) in their filter on a sharded
# collection; these multi-document ones and inserts of documents carrying it do not
SHARD_SAFE = {"insert_many", "insert_one", "delete_many", "update_many", "find", "aggregate",
              "count_documents", "create_index", "index_information", "find_one",
              "estimated_document_count", "list_indexes", "drop"}


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def _workload(ds: datastream.Datastream) -> None:
    a = ds.ensure_stream({"n": "a"}, {}, ["mean", "max"], "seconds")
    b = ds.ensure_stream({"n": "b"}, {}, ["mean"], "seconds")
    ds.ensure_stream({"n": "sum"}, {}, ["mean"], "seconds", derive_op="sum",
                     derive_from=[a, b])
    seconds = np.arange(0, 2 * 86_400, 600, dtype=np.int64)
    for stream_id in (a, b):
        ds.append_arrays(stream_id, seconds + int(T0.timestamp()), seconds % 97, unit="s")
    ds.downsample_streams(until=at(2 * 86_400))
    ds.set_retention({"n": "a"}, {"seconds": datetime.timedelta(days=1)})
    ds.apply_retention()
    ds.reopen_streams({"n": "b"}, at(86_400 + 3600))
    ds.append(b, 5.0, at(86_400 + 3601), check_timestamp=False)
    ds.downsample_streams(until=at(2 * 86_400))
    ds.ensure_stream({"n": "later"}, {}, ["mean"], "seconds", derive_op="derivative",
                     derive_from=[b])
    ds.backprocess_streams({"n": "later"})
    ds.delete_streams({"n": "later"})
    ds.update_tags(a, {"site": "x"})


def test_shard_keys_are_led_by_the_stream_then_time(mongo_factory) -> None:
    storage = mongo_factory()
    keys = storage.shard_keys()
    assert keys["raw"] == {"sid": 1, "t1": 1}
    assert {name for name in keys if name.startswith("level_")} == {
        f"level_{g.key}" for g in datastream.Granularity.values[1:]}
    for name, key in keys.items():
        if name.startswith("level_"):
            assert key == {"stream_id": 1, "t": 1}
    for small in ("streams", "batches", "counters", "level_schemas", "datastream_info"):
        assert shard_key(small) is None
    assert set(SHARD_KEYS) == {"raw", "level_"}


def test_growing_collections_are_written_as_a_sharded_cluster_allows(mongo_factory) -> None:
    calls: list[tuple] = []
    mongo_factory.client.fault = lambda name, method, args, kwargs: calls.append(
        (name, method, args, kwargs))
    storage = mongo_factory()
    with datastream.Datastream(storage, clock=lambda: at(2 * 86_400 + 60)) as ds:
        _workload(ds)
    mongo_factory.client.fault = None
    growing = [(name, method, args, kwargs) for name, method, args, kwargs in calls
               if shard_key(name) is not None]
    methods = {method for _, method, _, _ in growing}
    assert {"insert_many", "delete_many", "find"} <= methods  # the workload wrote and read
    assert methods <= SHARD_SAFE, methods - SHARD_SAFE
    for name, method, args, _ in growing:
        key = shard_key(name)
        if method in ("insert_many", "insert_one"):
            documents = args[0] if method == "insert_many" else [args[0]]
            for document in documents:
                assert set(key) <= set(document), (name, sorted(document))
        if method in ("find", "delete_many", "update_many", "count_documents"):
            condition = args[0] if args else {}
            stream_field = next(iter(key))
            if set(condition) != {"_id"}:  # documents named by id are fetched from any shard
                assert stream_field in condition, (name, method, condition)  # routed by stream
    database = mongo_factory.client.client[mongo_factory.database_name]
    for name in database.list_collection_names():
        key = shard_key(name)
        if key is None:
            continue
        indexes = database[name].index_information().values()
        prefix = list(key.items())
        assert any(index["key"][:len(prefix)] == prefix for index in indexes), name
        for index in indexes:
            if index.get("unique"):
                assert index["key"][:len(prefix)] == prefix, (name, index)
    assert database["batches"].count_documents({}) == 0  # the journal does not grow
