"""The tag index narrows find_streams to candidates: never missing a stream that matches."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import datastream
from datastream import tags as tag_rules
from datastream.storage.tag_index import TagIndex

KEYS = ["a", "b", "c"]
scalars = st.one_of(st.booleans(), st.integers(-3, 3), st.sampled_from([0.0, 1.0, 2.5, -1.0]),
                    st.sampled_from(["x", "y", "1"]), st.none())
values = st.one_of(scalars, st.lists(scalars, max_size=3),
                   st.dictionaries(st.sampled_from(KEYS), scalars, max_size=2))
tag_sets = st.dictionaries(st.sampled_from(KEYS), values, max_size=3)
conditions = st.one_of(
    scalars,
    st.lists(scalars, max_size=2),
    st.builds(lambda v: {"$eq": v}, scalars),
    st.builds(lambda v: {"$in": v}, st.lists(scalars, max_size=3)),
    st.builds(lambda v: {"$ne": v}, scalars),
    st.builds(lambda v: {"$exists": v}, st.booleans()),
    st.dictionaries(st.sampled_from(KEYS), scalars, min_size=1, max_size=2),
)
queries = st.dictionaries(st.sampled_from(KEYS), conditions, min_size=1, max_size=3)


@given(st.lists(tag_sets, min_size=1, max_size=8), queries, st.data())
@settings(max_examples=300, deadline=None)
def test_candidates_hold_every_match(streams, query, data):
    index = TagIndex()
    ids = [f"s{number}" for number in range(len(streams))]
    for stream_id, tags in zip(ids, streams):
        index.add(stream_id, tags)
    removed = data.draw(st.sets(st.sampled_from(ids), max_size=2))
    for stream_id in removed:
        index.remove(stream_id, streams[ids.index(stream_id)])
    candidates = index.candidates(query)
    for stream_id, tags in zip(ids, streams):
        if stream_id not in removed and tag_rules.matches(tags, query):
            assert candidates is None or stream_id in candidates, (tags, query)
    if candidates is not None:
        assert not candidates & removed


def test_numbers_and_booleans_stay_apart_through_the_index():
    index = TagIndex()
    index.add("int", {"a": 1})
    index.add("float", {"a": 1.0})
    index.add("bool", {"a": True})
    index.add("list", {"a": ["x", 1]})
    assert index.candidates({"a": 1}) == {"int", "float", "list"}
    assert index.candidates({"a": True}) == {"bool"}
    assert index.candidates({"a": {"$in": ["x", True]}}) == {"bool", "list"}
    assert index.candidates({"a": {"$gt": 0}}) is None


def test_find_streams_through_the_index_follows_renames_and_deletes(tmp_path):
    from datastream.backends import duckdb

    path = str(tmp_path / "index.duckdb")
    with datastream.Datastream(duckdb.Backend(path)) as ds:
        ids = [ds.ensure_stream({"host": f"h{n}", "kind": "cpu"}, {}, ["mean"], "seconds")
               for n in range(5)]
        ds.update_tags(ids[1], {"host": "renamed"})
        ds.delete_streams({"host": "h2"})
        assert [s["stream_id"] for s in ds.find_streams({"host": "h1"})] == []
        assert [s["stream_id"] for s in ds.find_streams({"host": "renamed"})] == [ids[1]]
        assert [s["stream_id"] for s in ds.find_streams({"kind": "cpu"})] == \
            [ids[0], ids[1], ids[3], ids[4]]
    with datastream.Datastream(duckdb.Backend(path)) as ds:  # rebuilt when the file opens
        assert [s["stream_id"] for s in ds.find_streams({"host": "renamed"})] == [ids[1]]
        assert len(ds.find_streams({"host": "h2"})) == 0
