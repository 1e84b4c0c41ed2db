"""Stream records on every backend: create, find (tags and ids), get, set tags, delete."""

from __future__ import annotations

import pyarrow as pa
import pytest

from datastream import exceptions
from datastream.storage.base import StreamRecord, WriteBatch
from tests.storage.rows import add_stream, ids_of, level_rows, new_id, raw_pairs, raw_rows


def test_create_find_get(storage):
    a = add_stream(storage, {"name": "a", "n": 1, "nested": {"x": [1, 2]}})
    b = add_stream(storage, {"name": "b", "n": 2})
    assert ids_of(storage.find_streams(None)) == [a, b]
    assert ids_of(storage.find_streams({})) == [a, b]
    assert ids_of(storage.find_streams({"name": "b"})) == [b]
    assert ids_of(storage.find_streams({"nested": {"x": 2}})) == [a]
    assert ids_of(storage.find_streams({"n": {"$gte": 1}})) == [a, b]
    assert storage.find_streams({"name": "c"}) == []
    assert storage.get_stream(a) == StreamRecord(a, {"name": "a", "n": 1, "nested": {"x": [1, 2]}},
                                                 {})
    for unknown in (new_id(), "not-a-uuid", "nope", 12, None):
        assert storage.get_stream(unknown) is None, unknown


def test_records_round_trip(factory):
    storage = factory()
    meta = {"latest_datapoint": None, "downsampled_until": {"S": None}, "value_type": "numeric",
            "config": {"k": [1, "two"]}}
    tags = {"b": {"y": [1, {"z": None}], "x": 1.5}, "a": "é", "t": True, "u": "ünïcode ✓"}
    stream_id = add_stream(storage, tags, meta)
    record = storage.get_stream(stream_id)
    assert (record.stream_id, record.tags, record.meta, record.version) == (stream_id, tags,
                                                                            meta, 0)
    assert storage.refresh_stream(stream_id) == record
    assert factory().get_stream(stream_id) == record  # as another object reads it


def test_find_streams_in_creation_order_and_set_tags(storage):
    ids = [add_stream(storage, {"n": n, "kind": "x"}) for n in range(5)]
    assert ids_of(storage.find_streams(None)) == ids
    assert ids_of(storage.find_streams({})) == ids
    assert ids_of(storage.find_streams({"kind": "x"})) == ids
    storage.set_tags(ids[2], {"kind": "y"})
    assert storage.get_stream(ids[2]).tags == {"kind": "y"}
    assert ids_of(storage.find_streams({"kind": "x"})) == ids[:2] + ids[3:]
    assert ids_of(storage.find_streams(None)) == ids  # a change keeps the creation order


def test_find_by_stream_id(storage):
    a = add_stream(storage, {"n": 1})
    b = add_stream(storage, {"n": 2})
    c = add_stream(storage, {"n": 3})
    assert ids_of(storage.find_streams({"stream_id": b})) == [b]
    found = storage.find_streams({"stream_id": {"$in": [c, a, new_id(), a]}})
    assert ids_of(found) == [a, c]  # creation order, no duplicates
    assert ids_of(storage.find_streams({"stream_id": {"$in": [a, c]}, "n": 3})) == [c]
    assert ids_of(storage.find_streams({"stream_id": {"$in": [a, b]}, "n": 2})) == [b]
    assert storage.find_streams({"stream_id": "bogus"}) == []


def test_create_stream_returns_the_existing_match(storage):
    first = StreamRecord(new_id(), {"name": "x", "extra": 1}, {"m": 1})
    assert storage.create_stream(first, {"name": "x"}) == first
    second = StreamRecord(new_id(), {"name": "x"}, {"m": 2})
    assert storage.create_stream(second, {"name": "x"}) == first
    assert ids_of(storage.find_streams(None)) == [first.stream_id]
    # an id is never reused (ValueError on DuckDB and InfluxDB, StreamAppendFailed on MongoDB)
    with pytest.raises((ValueError, exceptions.StreamAppendFailed), match="already exists"):
        storage.create_stream(StreamRecord(first.stream_id, {"other": 1}, {}), {"other": 1})
    assert ids_of(storage.find_streams(None)) == [first.stream_id]


def test_create_stream_after_the_holder_stopped_matching(storage):
    first = add_stream(storage, {"a": 1})
    storage.set_tags(first, {"a": 2})
    second = storage.create_stream(StreamRecord(new_id(), {"a": 1}, {}), {"a": 1})
    assert second.stream_id != first
    assert ids_of(storage.find_streams(None)) == [first, second.stream_id]


def test_records_are_independent_copies(storage):
    a = add_stream(storage, {"list": [1], "nested": {"x": [1, 2]}}, {"meta": {"deep": 1}})
    record = storage.get_stream(a)
    record.tags["list"].append(2)
    record.tags["nested"]["x"].append(3)
    record.meta["meta"]["deep"] = 99
    assert storage.get_stream(a) == StreamRecord(a, {"list": [1], "nested": {"x": [1, 2]}},
                                                 {"meta": {"deep": 1}})
    found = storage.find_streams(None)[0]
    found.tags["list"].append(2)
    assert storage.find_streams(None)[0].tags["list"] == [1]


def test_set_tags(storage):
    a = add_stream(storage, {"name": "a"})
    storage.set_tags(a, {"name": "renamed", "deep": {"k": [1, {"z": None}]}})
    assert storage.get_stream(a).tags == {"name": "renamed", "deep": {"k": [1, {"z": None}]}}
    assert storage.find_streams({"name": "a"}) == []
    assert ids_of(storage.find_streams({"name": "renamed"})) == [a]
    with pytest.raises(exceptions.StreamNotFound):
        storage.set_tags(new_id(), {})


def test_delete_streams_removes_records_and_rows(factory):
    storage = factory()
    keep, gone_a, gone_b = (add_stream(storage, {"n": n}) for n in range(3))
    for n, stream_id in enumerate((keep, gone_a, gone_b)):
        storage.commit(WriteBatch(raw={stream_id: raw_rows([1, 2], ints=[n, n])},
                                  levels={"S": level_rows(stream_id, [0], [n])}))
    storage.delete_streams([gone_a, gone_b, new_id()])

    def check(reader):
        assert ids_of(reader.find_streams(None)) == [keep]
        for gone in (gone_a, gone_b):
            assert reader.get_stream(gone) is None
            assert reader.record_version(gone) is None
            assert reader.read_raw(gone, None, None).num_rows == 0
            assert reader.read_level("S", gone, None, None).num_rows == 0
        assert raw_pairs(reader, keep) == [(1, 0), (2, 0)]
        assert reader.read_level("S", keep, None, None).to_pylist() == [{"t": 0, "c": 0}]

    check(storage)
    check(factory())  # as another object reads (on DuckDB: the file reopened)
    storage = factory()
    storage.delete_streams([])
    storage.delete_streams([gone_a])  # already gone: nothing to do
    with pytest.raises(exceptions.StreamNotFound):
        storage.set_tags(gone_a, {"a": 1})
    with pytest.raises(exceptions.DatastreamException):
        storage.commit(WriteBatch(raw={gone_a: raw_rows([3])}))
    assert storage.read_raw(gone_a, None, None).num_rows == 0
    # the deleted streams gave their queries up
    again = storage.create_stream(StreamRecord(new_id(), {"n": 1}, {}), {"n": 1})
    assert again.stream_id != gone_a
    assert storage.read_level("S", keep, None, None).equals(
        pa.table({"t": pa.array([0], pa.int64()), "c": pa.array([0], pa.int64())}))
