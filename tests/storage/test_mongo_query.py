"""Tag queries on MongoDB: the translation must select exactly what ``tags.matches`` selects."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datastream import exceptions, tags
from datastream.storage.base import StreamRecord
from datastream.storage.mongodb import query as mongo_query
from tests.mongo_support import mongo_targets, storage_factory

STORED = [
    {"a": 1}, {"a": 1.0}, {"a": True}, {"a": False}, {"a": 0}, {"a": None}, {"a": "1"},
    {"a": [1, 2]}, {"a": [[1, 2], 3]}, {"a": [True, 5]}, {"a": [None]}, {"a": []},
    {"a": {"b": 1, "c": 2}}, {"a": {"b": [1, 3]}}, {"a": [{"b": 1}]}, {"a": {"0": "x"}},
    {"a": ["x"]}, {"a": "CPU load"}, {"a": "x.*y$"}, {"a": "$where"},
    {"a": {"b": {"c": {"d": "deep"}}}}, {"b": 1}, {},
]

QUERIES = [
    {"a": 1}, {"a": True}, {"a": False}, {"a": 0}, {"a": None}, {"a": "1"}, {"a": [1, 2]},
    {"a": []}, {"a": [None]}, {"a": {"b": 1}}, {"a": {}}, {"a": {"0": "x"}},
    {"a": {"b": {"c": {"d": "deep"}}}}, {"a": {"$eq": [1, 2]}},
    {"a": {"$eq": {"b": 1, "c": 2}}}, {"a": {"$eq": {"c": 2, "b": 1}}}, {"a": {"$ne": 1}},
    {"a": {"$ne": None}}, {"a": {"$gt": 0}}, {"a": {"$gte": 1}}, {"a": {"$lt": 1}},
    {"a": {"$lte": "1"}}, {"a": {"$gt": ""}}, {"a": {"$in": [1, "1"]}},
    {"a": {"$in": [[1, 2]]}}, {"a": {"$in": [None]}}, {"a": {"$in": []}},
    {"a": {"$all": [1, 2]}}, {"a": {"$all": [1]}}, {"a": {"$all": []}},
    {"a": {"$exists": True}}, {"a": {"$exists": False}}, {"a": {"b": {"$exists": False}}},
    {"a": {"b": {"$ne": 1}}}, {"a": {"$iexact": "cpu LOAD"}}, {"a": {"$contains": "load"}},
    {"a": {"$icontains": "LOAD"}}, {"a": {"$contains": ".*"}}, {"a": {"$contains": "$"}},
    {"a": {"$iexact": "cpu"}}, {"a": {"$gte": 0, "$lt": 2}}, {"a": 1, "b": 1},
]


@pytest.fixture
def storage(mongo_factory):
    return mongo_factory()


def store_all(storage, tag_sets: list[dict]) -> dict[str, dict]:
    stored = {}
    for position, tag_set in enumerate(tag_sets):
        stream_id = str(uuid.uuid4())
        # A unique query per stream: create_stream must not return an earlier match.
        storage.create_stream(StreamRecord(stream_id, tag_set, {}), {"n": position})
        stored[stream_id] = tag_set
    return stored


def found(storage, query) -> set[str]:
    return {record.stream_id for record in storage.find_streams(query)}


def expected(stored: dict[str, dict], query) -> set[str]:
    return {i for i, tag_set in stored.items() if tags.matches(tag_set, query)}


@pytest.mark.parametrize("query", QUERIES, ids=repr)
def test_translation_agrees_with_the_reference(storage, query):
    stored = store_all(storage, STORED)
    assert found(storage, query) == expected(stored, query)


def test_bool_and_number_are_distinct(storage):
    stored = store_all(storage, [{"a": 1}, {"a": True}, {"a": [True]}, {"a": [1]}, {"a": 1.0}])
    by_tags = {repr(v): k for k, v in stored.items()}
    assert found(storage, {"a": 1}) == {by_tags["{'a': 1}"], by_tags["{'a': [1]}"],
                                        by_tags["{'a': 1.0}"]}
    assert found(storage, {"a": True}) == {by_tags["{'a': True}"], by_tags["{'a': [True]}"]}
    assert found(storage, {"a": {"$in": [True]}}) == found(storage, {"a": True})
    assert found(storage, {"a": {"$gte": 1}}) == found(storage, {"a": 1})


def test_sub_fields_do_not_descend_into_lists_or_use_indexes(storage):
    stored = store_all(storage, [{"a": [{"b": 1}]}, {"a": {"b": 1}}, {"a": ["x"]}])
    assert found(storage, {"a": {"b": 1}}) == expected(stored, {"a": {"b": 1}})
    assert len(found(storage, {"a": {"b": 1}})) == 1
    assert found(storage, {"a": {"0": "x"}}) == set()


def test_stream_id_conditions(storage):
    stored = list(store_all(storage, [{"a": 1}, {"a": 1}, {"a": 2}]))
    assert found(storage, {"stream_id": stored[0]}) == {stored[0]}
    assert found(storage, {"stream_id": {"$in": stored[1:]}, "a": 1}) == {stored[1]}
    assert found(storage, {"stream_id": "not-a-uuid"}) == set()
    with pytest.raises(ValueError):
        storage.find_streams({"stream_id": {"$ne": stored[0]}})


class Opaque:
    """A value no query can hold; its repr is stable, so the test id is the same in every
    process (pytest-xdist's workers must collect identical ids)."""

    def __repr__(self) -> str:
        return "Opaque()"


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ({"a": {"$where": "sleep(1000)"}}, ValueError),
        ({"a": {"$regex": ".*"}}, ValueError),
        ({"a": {"$eq": {"$gt": ""}}}, exceptions.ReservedTagNameError),
        ({"a": {"$in": [{"$gt": ""}]}}, exceptions.ReservedTagNameError),
        ({"a": [{"$where": "1"}]}, exceptions.ReservedTagNameError),
        ({"a.b": 1}, exceptions.ReservedTagNameError),
        ({"$where": "1"}, exceptions.ReservedTagNameError),
        ({"a": {"b.c": 1}}, exceptions.ReservedTagNameError),
        ({"a__b": 1}, exceptions.ReservedTagNameError),
        ({"a\x00": 1}, exceptions.ReservedTagNameError),
        ({"a": {"$gt": True}}, ValueError),
        ({"a": {"$iexact": 1}}, ValueError),
        ({"a": {"$eq": Opaque()}}, TypeError),
        ({"a": {"$in": "abc"}}, ValueError),
    ],
    ids=repr,
)
def test_operator_injection_is_refused(storage, query, error):
    store_all(storage, [{"a": 1}])
    with pytest.raises(error):
        storage.find_streams(query)


@pytest.mark.parametrize(
    "bad_tags",
    [{"$where": 1}, {"a": {"$gt": ""}}, {"a.b": 1}, {"a": [{"x.y": 1}]}, {"a": 2**64}],
    ids=repr,
)
def test_unsafe_tags_are_not_stored(storage, bad_tags):
    with pytest.raises((ValueError, TypeError)):
        storage.create_stream(StreamRecord(str(uuid.uuid4()), bad_tags, {}), {"q": 1})
    assert storage.find_streams(None) == []


def test_values_that_look_like_syntax_match_literally(storage):
    texts = ["$where", "{'$gt': ''}", "x.*y$", "^a", "a\x00b", "(?i)A", "\\", "a\nb"]
    stored = store_all(storage, [{"a": text} for text in texts])
    ids = dict(zip(texts, stored))
    for text in texts:
        assert found(storage, {"a": text}) == {ids[text]}
        assert found(storage, {"a": {"$contains": text}}) == {
            i for t, i in ids.items() if text in t
        }
        assert found(storage, {"a": {"$iexact": text.upper()}}) == {
            i for t, i in ids.items() if t.lower() == text.lower()
        }
    assert found(storage, {"a": {"$iexact": "a"}}) == set()  # "a\nb" must not match "a$"


def test_literal_pattern_is_plain_text():
    assert mongo_query.literal_pattern("a.b_1") == "a\\x2eb_1"
    assert mongo_query.literal_pattern("é\x00") == "é\\x00"


# -- property: random tag sets and queries -----------------------------------------------------

KEYS = st.sampled_from(["a", "b", "c", "0"])
TEXT = st.text(alphabet="aAbé.$*", max_size=3)
NUMBER = st.one_of(st.integers(-3, 3), st.sampled_from([0.0, 1.0, 1.5, -2.5]))
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT)
# In list/dict *literals of queries*, mongomock compares with Python == (True == 1); the server
# does not. Literals there hold no numbers or bools, so both agree with the reference.
PLAIN = st.one_of(st.none(), TEXT)


def values(scalar):
    return st.recursive(
        scalar,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=2)
        ),
        max_leaves=5,
    )


TAG_SETS = st.dictionaries(KEYS, values(SCALAR), max_size=3)


def conditions(depth: int = 2):
    literal = values(PLAIN)
    operator = st.one_of(
        st.builds(lambda v: {"$eq": v}, st.one_of(SCALAR, literal)),
        st.builds(lambda v: {"$ne": v}, st.one_of(SCALAR, literal)),
        st.builds(lambda op, v: {op: v}, st.sampled_from(["$gt", "$gte", "$lt", "$lte"]),
                  st.one_of(NUMBER, TEXT)),
        st.builds(lambda op, v: {op: v}, st.sampled_from(["$in", "$all"]),
                  st.lists(st.one_of(SCALAR, literal), max_size=3)),
        st.builds(lambda v: {"$exists": v}, st.booleans()),
        st.builds(lambda op, v: {op: v}, st.sampled_from(["$iexact", "$contains", "$icontains"]),
                  TEXT),
    )
    leaf = st.one_of(SCALAR, st.lists(PLAIN, max_size=2), operator)
    if depth == 0:
        return leaf
    return st.one_of(leaf, st.dictionaries(KEYS, conditions(depth - 1), max_size=2))


QUERY = st.dictionaries(KEYS, conditions(), min_size=1, max_size=2)


@pytest.mark.parametrize("target", mongo_targets())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tag_sets=st.lists(TAG_SETS, min_size=1, max_size=8), query_list=st.lists(QUERY, max_size=6))
def test_random_queries_agree_with_the_reference(target, tag_sets, query_list):
    with storage_factory(target) as factory:
        storage = factory()
        stored = store_all(storage, tag_sets)
        for query in query_list:
            tags.validate_query(query)
            assert found(storage, query) == expected(stored, query), query
