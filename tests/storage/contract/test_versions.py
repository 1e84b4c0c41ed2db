"""Record versions and conditional commits on every backend: a commit is all-or-nothing,
conditional on ``expect``; creations and deletions go in the same transaction."""

from __future__ import annotations

import pytest

from datastream import exceptions
from datastream.storage.base import (
    MetaUpdate,
    RecordConflict,
    StreamExists,
    StreamRecord,
    WriteBatch,
)
from tests.storage.rows import (
    add_stream,
    ids_of,
    level_rows,
    new_id,
    raw_pairs,
    raw_rows,
    snapshot,
    versions,
)


def test_versions_count_commits_and_tag_changes(storage):
    a, b = add_stream(storage, {"n": 1}, {"n": 0}), add_stream(storage, {"n": 2}, {"n": 0})
    assert versions(storage, a, b) == [0, 0]
    storage.commit(WriteBatch(raw={a: raw_rows([1])}))
    assert versions(storage, a, b) == [1, 0]
    storage.commit(WriteBatch(levels={"S": level_rows(a, [0], [1])},
                              meta={a: MetaUpdate(set={"n": 1})}))  # rows + meta: one commit
    assert versions(storage, a, b) == [2, 0]
    storage.set_tags(a, {"x": 1})
    assert versions(storage, a, b) == [3, 0]
    storage.commit(WriteBatch(raw={a: raw_rows([2]), b: raw_rows([2])},
                              meta={b: MetaUpdate(set={"n": 1})}))
    assert versions(storage, a, b) == [4, 1]
    storage.commit(WriteBatch(truncate_raw={b: 0}))
    storage.commit(WriteBatch(clear_levels=[a]))
    assert versions(storage, a, b) == [5, 2]
    storage.commit(WriteBatch())
    assert versions(storage, a, b) == [5, 2]


def test_versions_move_once_per_commit_and_per_set_tags(factory):
    storage = factory()
    a = add_stream(storage, {"n": 1})
    b = add_stream(storage, {"n": 2})
    # raw + two levels + meta + truncation of one stream in one batch: one step
    storage.commit(WriteBatch(
        raw={a: raw_rows([1, 2])},
        levels={"S": level_rows(a, [0, 10], [1, 2]), "m": level_rows(a, [0], [3])},
        meta={a: MetaUpdate(set={"x": 1})}, truncate_raw={a: 5},
    ))
    assert versions(storage, a, b) == [1, 0]
    storage.commit(WriteBatch(levels={"S": level_rows(b, [0], [1])}))
    storage.commit(WriteBatch(meta={a: MetaUpdate(max={"x": 0})}, expect={a: 1, b: 1}))
    assert versions(storage, a, b) == [2, 1]  # expected but untouched: b stays
    storage.set_tags(b, {"n": 3})
    storage.set_tags(b, {"n": 4}, expect_version=2)
    assert versions(storage, a, b) == [2, 3]
    storage.commit(WriteBatch(clear_raw=[a], clear_levels=[b]))
    assert versions(storage, a, b) == [3, 4]
    storage = factory()
    assert versions(storage, a, b) == [3, 4]  # another object reads the same


def test_a_stream_created_by_a_batch_writing_to_it_starts_at_version_0(factory):
    storage = factory()
    a = add_stream(storage, {"n": 1})
    c = new_id()
    storage.commit(WriteBatch(create=[(StreamRecord(c, {"n": 5}, {"m": 1}), {"n": 5})],
                              raw={c: raw_rows([1])}, meta={a: MetaUpdate(set={"y": 2})}))
    assert versions(storage, a, c) == [1, 0]
    assert raw_pairs(storage, c) == [(1, None)]


def test_expected_version_mismatch_stores_nothing(storage):
    a, b = add_stream(storage, {"n": 1}, {"n": 0}), add_stream(storage, {"n": 2}, {"n": 0})
    storage.commit(WriteBatch(raw={a: raw_rows([1], ints=[1])}, meta={a: MetaUpdate(set={"n": 1})}))
    new = new_id()
    before = snapshot(storage, [a, b, new])
    stale = WriteBatch(
        raw={a: raw_rows([2], ints=[2]), b: raw_rows([2], ints=[2])},
        levels={"S": level_rows(b, [0], [1]), "m": level_rows(a, [0], [1])},
        meta={a: MetaUpdate(set={"n": 2}), b: MetaUpdate(set={"n": 2})},
        create=[(StreamRecord(new, {"new": 1}, {}), {"new": 1})],
        truncate_raw={a: 0},
        expect={a: 0, b: 0},  # a is at version 1
    )
    with pytest.raises(RecordConflict, match=f"{a}.*version 1, expected( version)? 0"):
        storage.commit(stale)
    assert snapshot(storage, [a, b, new]) == before
    assert versions(storage, a, b, new) == [1, 0, None]
    storage.set_tags(a, {"n": 1, "moved": True})  # version 2 now
    stale.expect = {a: 1, b: 0}
    with pytest.raises(RecordConflict):
        storage.commit(stale)
    assert versions(storage, a, b, new) == [2, 0, None]
    stale.expect = {a: 2, b: 0}
    stale.truncate_raw = {}
    storage.commit(stale)
    assert (raw_pairs(storage, a), raw_pairs(storage, b)) == ([(1, 1), (2, 2)], [(2, 2)])
    assert versions(storage, a, b, new) == [3, 1, 0]
    assert storage.get_stream(a).meta == {"n": 2}


def test_expected_version_of_a_missing_stream_fails_the_batch(storage):
    a = add_stream(storage, {"n": 1})
    with pytest.raises(exceptions.DatastreamException, match="gone-id"):
        storage.commit(WriteBatch(raw={a: raw_rows([1])}, meta={"gone-id": MetaUpdate()},
                                  expect={a: 0, "gone-id": 0}))
    assert raw_pairs(storage, a) == [] and versions(storage, a) == [0]
    # a stream deleted since it was read fails the batch too
    gone = add_stream(storage, {"n": 9})
    storage.delete_streams([gone])
    with pytest.raises(exceptions.DatastreamException, match=gone):
        storage.commit(WriteBatch(raw={gone: raw_rows([1]), a: raw_rows([1])},
                                  expect={gone: 0, a: 0}))
    assert raw_pairs(storage, a) == [] and versions(storage, a) == [0]


def test_set_tags_is_a_compare_and_set(storage):
    a = add_stream(storage, {"k": 1})
    storage.set_tags(a, {"k": 2}, expect_version=0)
    with pytest.raises(RecordConflict, match=a):
        storage.set_tags(a, {"k": 3}, expect_version=0)
    assert (storage.get_stream(a).tags, versions(storage, a)) == ({"k": 2}, [1])
    assert ids_of(storage.find_streams({"k": 3})) == []
    storage.commit(WriteBatch(raw={a: raw_rows([1])}))
    with pytest.raises(RecordConflict):
        storage.set_tags(a, {"k": 3}, expect_version=1)
    storage.set_tags(a, {"k": 3}, expect_version=2)
    assert (storage.get_stream(a).tags, versions(storage, a)) == ({"k": 3}, [3])
    storage.set_tags(a, {"k": 4})  # unconditional
    assert (storage.get_stream(a).tags, versions(storage, a)) == ({"k": 4}, [4])
    for expect in (None, 0):
        with pytest.raises(exceptions.StreamNotFound):
            storage.set_tags(new_id(), {"k": 1}, expect_version=expect)


def test_create_refuses_a_stream_matching_an_existing_one(storage):
    a = add_stream(storage, {"host": "a", "n": 1}, {"m": 1})
    b = add_stream(storage, {"host": "b"})
    before = snapshot(storage, [a, b])
    c = new_id()
    batch = WriteBatch(create=[(StreamRecord(c, {"host": "a", "n": 2}, {}), {"host": "a"})],
                       raw={b: raw_rows([1])},
                       meta={b: MetaUpdate(set={"contributes": c})}, expect={b: 0})
    with pytest.raises(StreamExists) as raised:
        storage.commit(batch)
    assert raised.value.existing == StreamRecord(a, {"host": "a", "n": 1}, {"m": 1}, 0)
    assert snapshot(storage, [a, b]) == before and versions(storage, b) == [0]
    assert storage.create_stream(StreamRecord(c, {"host": "a"}, {}), {"host": "a"}).stream_id == a
    assert ids_of(storage.find_streams(None)) == [a, b]


def test_two_creations_in_one_batch_see_each_other(factory):
    storage = factory()
    a = add_stream(storage, {"host": "a"})
    d, e = new_id(), new_id()
    with pytest.raises(StreamExists) as raised:
        storage.commit(WriteBatch(create=[(StreamRecord(d, {"host": "d"}, {}), {"host": "d"}),
                                          (StreamRecord(e, {"host": "d"}, {}), {"host": "d"})]))
    # InfluxDB names the first as the existing one, MongoDB the second
    assert raised.value.existing.stream_id in (d, e)
    assert ids_of(storage.find_streams(None)) == [a]


def test_create_with_another_streams_meta_in_one_commit(storage):
    source = add_stream(storage, {"src": 1}, {"contributes_to": {}})
    derived = new_id()
    storage.commit(WriteBatch(
        create=[(StreamRecord(derived, {"d": 1}, {"derived_from": [source], "none": None}),
                 {"d": 1})],
        meta={source: MetaUpdate(set={"contributes_to": {derived: {"op": "sum"}}})},
        expect={source: 0},
    ))
    record = storage.get_stream(derived)
    assert (record.tags, record.meta, record.version) == (
        {"d": 1}, {"derived_from": [source], "none": None}, 0)
    assert storage.get_stream(source).meta == {"contributes_to": {derived: {"op": "sum"}}}
    assert versions(storage, source) == [1]
    assert ids_of(storage.find_streams(None)) == [source, derived]
    with pytest.raises(StreamExists) as exists:
        storage.commit(WriteBatch(create=[(StreamRecord(new_id(), {"d": 1}, {}), {"d": 1})],
                                  meta={source: MetaUpdate(set={"x": 1})}))
    assert exists.value.existing.stream_id == derived
    assert versions(storage, source) == [1] and "x" not in storage.get_stream(source).meta
    assert len(storage.find_streams(None)) == 2


def test_deleting_a_stream_and_updating_another_in_one_commit(factory):
    storage = factory()
    source = add_stream(storage, {"s": 1}, {"contributes_to": {}})
    doomed = add_stream(storage, {"d": 1})
    storage.commit(WriteBatch(raw={doomed: raw_rows([1, 2])},
                              levels={"S": level_rows(doomed, [0], [2])},
                              meta={source: MetaUpdate(set={"contributes_to": {doomed: {}}})}))
    storage.commit(WriteBatch(delete=[doomed, new_id()],
                              meta={source: MetaUpdate(set={"contributes_to": {}})},
                              expect={source: 1, doomed: 1}))
    storage = factory()
    assert ids_of(storage.find_streams(None)) == [source]
    assert storage.get_stream(source).meta == {"contributes_to": {}}
    assert versions(storage, source, doomed) == [2, None]
    assert storage.read_raw(doomed, None, None).num_rows == 0
    level = storage.read_level("S", doomed, None, None)  # MongoDB: None, no stream has S rows
    assert level is None or level.num_rows == 0
    storage.commit(WriteBatch(delete=[doomed]))  # already gone: nothing to do
    again = storage.create_stream(StreamRecord(new_id(), {"d": 1}, {}), {"d": 1})
    assert again.stream_id != doomed  # the deleted stream gave its query up
