"""Tag rules, the portable query language and tag mutation (behaviour §3.2, §3.4, §3.5)."""

from __future__ import annotations

import copy
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datastream import tags
from datastream.exceptions import ReservedTagNameError

DOCUMENTED_RESERVED = (
    "stream_id",
    "value_downsamplers",
    "time_downsamplers",
    "highest_granularity",
    "derived_from",
    "contributes_to",
    "pending_backprocess",
    "latest_datapoint",
    "earliest_datapoint",
    "downsampled_until",
    "value_type",
    "value_type_options",
    "retention",
)
BAD_KEYS = ["a__b", "__", "x__", "$a", "$", "a.b", ".", "a\x00b", "", 5, None, ("a",), 1.5]
GOOD_KEYS = ["a", "a_b", "_a", "a_", "a$", "a-b", "A B", "ключ", "1"]


# -- tag rules -------------------------------------------------------------------------------


def test_reserved_tags_in_spec_order():
    assert tags.RESERVED_TAGS == DOCUMENTED_RESERVED
    assert isinstance(tags.RESERVED_TAGS, tuple)


@pytest.mark.parametrize("key", BAD_KEYS)
def test_check_key_rejects_query_syntax(key):
    with pytest.raises(ReservedTagNameError) as caught:
        tags.check_key(key, "tags")
    assert isinstance(caught.value, ValueError)
    assert repr(key) in str(caught.value)


@pytest.mark.parametrize("key", GOOD_KEYS)
def test_check_key_accepts_ordinary_names(key):
    tags.check_key(key)
    tags.validate_tags({key: {key: [{key: 1}]}})


@pytest.mark.parametrize("key", BAD_KEYS)
@pytest.mark.parametrize(
    "wrap",
    [
        lambda bad: {bad: 1},
        lambda bad: {"a": {"b": {bad: 1}}},
        lambda bad: {"a": [1, {bad: 1}]},
        lambda bad: {"a": [[{"b": {bad: None}}]]},
    ],
)
def test_bad_keys_rejected_at_any_depth(key, wrap):
    with pytest.raises(ReservedTagNameError):
        tags.validate_tags(wrap(key))
    # In a query a nested {'$a': ...} is an (unknown) operator dict: a ValueError either way.
    with pytest.raises(ValueError):
        tags.validate_query(wrap(key))


@pytest.mark.parametrize("name", DOCUMENTED_RESERVED)
def test_top_level_reserved_names(name):
    with pytest.raises(ReservedTagNameError, match=name):
        tags.validate_tags({name: 1})
    tags.validate_tags({name: 1}, top_level_reserved=False)
    tags.validate_tags({"nested": {name: 1}})


def test_valid_tags_pass():
    tags.validate_tags(
        {
            "title": "CPU",
            "n": 1,
            "big": 2**100,
            "x": -0.5,
            "on": True,
            "none": None,
            "list": [1, "a", [None], {"k": False}],
            "nested": {"a": {"b": {}}},
            "empty": {},
        }
    )


@pytest.mark.parametrize(
    "value",
    [
        (1, 2),
        {1, 2},
        Decimal(1),
        object(),
        b"x",
        np.int64(1),
        np.float32(0.5),
        [(1,)],
        {"a": {"b": {1}}},
    ],
)
def test_non_json_tag_values_are_type_errors(value):
    with pytest.raises(TypeError):
        tags.validate_tags({"v": value})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [-float("inf")], "\ud800"])
def test_non_finite_and_invalid_text_are_value_errors(value):
    with pytest.raises(ValueError):
        tags.validate_tags({"v": value})


@pytest.mark.parametrize("document", [{"\ud800": 1}, {"a": {"b\udfff": 1}}])
def test_invalid_text_in_a_key_names_where(document):
    """Not the encoder's own error: a ValueError naming the place of the key."""
    with pytest.raises(ValueError, match=r"tags.* \(a tag name\): strings must be valid Unicode"):
        tags.validate_tags(document)
    with pytest.raises(ValueError, match=r"query.* \(a tag name\): strings must be valid"):
        tags.validate_query(document)


@pytest.mark.parametrize("value", [None, [], "tags", 1])
def test_tags_must_be_a_dict(value):
    with pytest.raises(TypeError):
        tags.validate_tags(value)


# -- query validation ------------------------------------------------------------------------


GOOD_OPERATORS = [
    {"$eq": 1},
    {"$eq": [1, 2]},
    {"$eq": {"a": 1}},
    {"$ne": None},
    {"$gt": 1},
    {"$gte": 1.5},
    {"$lt": "b"},
    {"$lte": -3},
    {"$in": []},
    {"$in": [1, "a", None, [1]]},
    {"$all": [1, 2]},
    {"$exists": True},
    {"$exists": False},
    {"$iexact": "CPU"},
    {"$contains": "p"},
    {"$icontains": ""},
    {"$gte": 1, "$lt": 5},
]


@pytest.mark.parametrize("condition", GOOD_OPERATORS)
def test_valid_operators(condition):
    assert tags.validate_query({"a": condition}) == {"a": condition}
    assert tags.validate_query({"a": {"b": condition}}) == {"a": {"b": condition}}


@pytest.mark.parametrize("query", [[], "a", 1, [("a", 1)], True])
def test_query_must_be_a_dict(query):
    with pytest.raises(ValueError):
        tags.validate_query(query)


def test_none_and_empty_query_mean_everything():
    assert tags.validate_query(None) == {}
    assert tags.validate_query({}) == {}


@pytest.mark.parametrize(
    "condition",
    [
        {"$regex": "a"},
        {"$where": "1"},
        {"$nin": [1]},
        {"$gt": 1, "b": 2},
        {"b": 2, "$gt": 1},
        {"$in": "abc"},
        {"$in": (1, 2)},
        {"$in": 1},
        {"$all": {"a": 1}},
        {"$exists": 1},
        {"$exists": "yes"},
        {"$exists": None},
        {"$iexact": 1},
        {"$contains": ["a"]},
        {"$icontains": None},
        {"$gt": [1]},
        {"$lt": True},
        {"$gte": None},
        {"$lte": {"a": 1}},
    ],
)
def test_invalid_operators_are_value_errors(condition):
    with pytest.raises(ValueError):
        tags.validate_query({"a": condition})
    with pytest.raises(ValueError):
        tags.validate_query({"a": {"b": condition}})


def test_unknown_operator_message_names_it():
    with pytest.raises(ValueError, match=r"\$regex"):
        tags.validate_query({"a": {"$regex": ".*"}})


@pytest.mark.parametrize(
    "query",
    [
        {"a": {"$eq": {"$gt": 1}}},
        {"a": {"$in": [{"$gt": 1}]}},
        {"a": [{"b.c": 1}]},
        {"a": {"$eq": {"x__y": 1}}},
    ],
)
def test_operator_syntax_inside_data_is_rejected(query):
    with pytest.raises(ReservedTagNameError):
        tags.validate_query(query)


@pytest.mark.parametrize("query", [{"a": (1,)}, {"a": {"$eq": Decimal(1)}}, {"a": {"$in": [{1}]}}])
def test_non_json_query_values_are_type_errors(query):
    with pytest.raises(TypeError):
        tags.validate_query(query)


def test_nan_query_value_is_rejected():
    with pytest.raises(ValueError):
        tags.validate_query({"a": float("nan")})
    with pytest.raises(ValueError):
        tags.validate_query({"a": {"$gt": float("nan")}})


def test_stream_id_selects_ids_only_where_allowed():
    """Elsewhere (find_streams) a top-level stream_id is an ordinary user-tag path
    (behaviour §3.4)."""
    sid = "0b7f4c1e-3c2a-4e8f-9a51-2d7c9e6b1f00"
    assert tags.validate_query({"stream_id": sid}) == {"stream_id": sid}
    assert tags.without_reserved({"stream_id": sid}) is None
    assert tags.without_reserved({"stream_id": {"$exists": False}, "a": 1}) == {"a": 1}
    assert tags.validate_query({"stream_id": sid}, allow_stream_id=True) == {"stream_id": sid}
    assert tags.without_reserved({"stream_id": sid}, allow_stream_id=True) == {"stream_id": sid}
    query = {"stream_id": {"$in": [sid]}, "a": 1}
    assert tags.validate_query(query, allow_stream_id=True) == query
    assert tags.validate_query({"n": {"stream_id": 1}}) == {"n": {"stream_id": 1}}
    with pytest.raises(ValueError):  # as a user-tag path it is still checked as a condition
        tags.validate_query({"stream_id": {"$in": sid}})


@pytest.mark.parametrize(
    "condition",
    [
        1,
        None,
        [],
        ["a"],
        {"$in": "a"},
        {"$in": [1]},
        {"$eq": "a"},
        {"$in": ["a"], "$eq": "a"},
        {"$nin": ["a"]},
    ],
)
def test_stream_id_condition_shape(condition):
    with pytest.raises(ValueError):
        tags.validate_query({"stream_id": condition}, allow_stream_id=True)


@pytest.mark.parametrize("name", [n for n in DOCUMENTED_RESERVED if n != "stream_id"])
@pytest.mark.parametrize("allow_stream_id", [False, True])
def test_other_reserved_names_are_missing_user_tags(name, allow_stream_id):
    """Matching is on user tags only, which never hold a top-level reserved name: a condition
    on one is decided as on a missing field."""
    for condition, holds in [(1, False), ("numeric", False), ({"$exists": True}, False),
                             ({"$in": [1]}, False), ({"$exists": False}, True),
                             ({"$ne": 1}, True), ({"$eq": None}, False)]:
        query = tags.validate_query({name: condition, "a": 1}, allow_stream_id=allow_stream_id)
        expected = {"a": 1} if holds else None
        assert tags.without_reserved(query, allow_stream_id=allow_stream_id) == expected
        assert tags.matches({}, {name: condition}) is holds
    assert tags.validate_query({"x": {name: 1}}) == {"x": {name: 1}}
    assert tags.without_reserved({"x": {name: 1}}) == {"x": {name: 1}}


def _nested(depth: int, leaf=1, container="dict"):
    """A document of ``depth`` nested containers (the outer dict counts as one)."""
    value = leaf
    for _ in range(depth - 1):
        value = {"k": value} if container == "dict" else [value]
    return {"k": value}


@pytest.mark.parametrize("container", ["dict", "list"])
def test_nesting_limit(container):
    tags.validate_tags(_nested(tags.MAX_DEPTH, container=container))
    tags.validate_query(_nested(tags.MAX_DEPTH, container=container))
    for depth in (tags.MAX_DEPTH + 1, 500, 100_000):
        document = _nested(depth, container=container)
        with pytest.raises(ValueError, match="32 levels"):
            tags.validate_tags(document)
        with pytest.raises(ValueError, match="32 levels"):
            tags.validate_query(document)
        with pytest.raises(ValueError, match="32 levels"):
            tags.check_depth(document)


def test_nesting_limit_counts_operator_dicts_and_cycles():
    with pytest.raises(ValueError, match="32 levels"):
        tags.validate_query(_nested(tags.MAX_DEPTH, leaf={"$in": [1]}))
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError, match="32 levels"):
        tags.validate_tags({"a": loop})


def test_size_limit():
    fits = {"t": "x" * (tags.MAX_BYTES - len('{"t":""}'))}
    tags.validate_tags(fits)
    tags.validate_query(fits)
    for too_big in ({"t": "x" * tags.MAX_BYTES},
                    {"t": "é" * (tags.MAX_BYTES // 2)},  # two UTF-8 bytes each
                    {f"k{i}": i for i in range(10_000)}):
        with pytest.raises(ValueError, match="65536"):
            tags.validate_tags(too_big)
        with pytest.raises(ValueError, match="65536"):
            tags.validate_query(too_big)


def test_messages_of_huge_or_deep_values_are_bounded():
    deep_key: tuple = (1,)
    for _ in range(100_000):
        deep_key = (deep_key,)
    with pytest.raises(ReservedTagNameError) as caught:
        tags.validate_tags({"a": {deep_key: 1}})
    assert len(str(caught.value)) < 400
    with pytest.raises(TypeError) as caught:
        tags.validate_tags({"a": {10**5000}})
    assert len(str(caught.value)) < 400
    with pytest.raises(ValueError) as caught:
        tags.validate_query([[[[[[[[[[1]]]]]]]]]])
    assert len(str(caught.value)) < 400


def test_validate_query_returns_a_private_copy():
    query = {"a": {"b": [1, {"c": 2}]}, "d": {"$in": [[1]]}}
    result = tags.validate_query(query)
    result["a"]["b"][1]["c"] = 99
    result["d"]["$in"][0].append(2)
    assert query == {"a": {"b": [1, {"c": 2}]}, "d": {"$in": [[1]]}}


# -- matching --------------------------------------------------------------------------------

STORED = {
    "title": "CPU Load",
    "n": 3,
    "x": 2.5,
    "on": True,
    "off": False,
    "zero": 0,
    "one": 1,
    "none": None,
    "list": [1, "two", 3.5, [4, 5], {"k": "v"}],
    "flags": [True, False],
    "words": ["Alpha", "beta"],
    "nested": {"a": {"b": 1, "c": "deep"}, "d": [1, 2], "e": {}},
    "records": [{"k": 1}],
}

MATCH_CASES = [
    # plain equality, sub-fields, AND
    ({"n": 3}, True),
    ({"n": 4}, False),
    ({"n": 3.0}, True),
    ({"x": 2.5, "n": 3}, True),
    ({"x": 2.5, "n": 4}, False),
    ({"missing": 1}, False),
    ({"title": "CPU Load"}, True),
    ({"title": "cpu load"}, False),
    ({"nested": {"a": {"b": 1}}}, True),
    ({"nested": {"a": {"b": 1, "c": "deep"}, "d": [1, 2]}}, True),
    ({"nested": {"a": {"b": 2}}}, False),
    ({"nested": {"a": {"missing": 1}}}, False),
    ({"n": {"a": 1}}, False),
    ({"missing": {"a": 1}}, False),
    ({"nested": {"e": {}}}, True),
    ({"nested": {}}, True),
    ({"n": {}}, False),
    ({"missing": {}}, False),
    ({"records": {"k": 1}}, False),
    # scalars against lists, list leaves
    ({"list": 1}, True),
    ({"list": "two"}, True),
    ({"list": 4}, False),
    ({"list": [4, 5]}, False),
    ({"nested": {"d": [1, 2]}}, True),
    ({"nested": {"d": [2, 1]}}, False),
    ({"nested": {"d": [1]}}, False),
    ({"nested": {"d": 2}}, True),
    ({"n": [3]}, False),
    # bool is not a number
    ({"on": 1}, False),
    ({"one": True}, False),
    ({"off": 0}, False),
    ({"zero": False}, False),
    ({"on": True}, True),
    ({"zero": 0.0}, True),
    ({"flags": 1}, False),
    ({"flags": True}, True),
    ({"nested": {"d": [True, 2]}}, False),
    ({"list": {"$eq": 1.0}}, True),
    # None
    ({"none": None}, True),
    ({"missing": None}, False),
    ({"n": None}, False),
    # $eq / $ne
    ({"n": {"$eq": 3}}, True),
    ({"list": {"$eq": [4, 5]}}, True),
    ({"nested": {"$eq": {"a": {"b": 1, "c": "deep"}, "d": [1, 2], "e": {}}}}, True),
    ({"nested": {"$eq": {"a": {"b": 1}}}}, False),
    ({"n": {"$ne": 3}}, False),
    ({"n": {"$ne": 4}}, True),
    ({"missing": {"$ne": 4}}, True),
    ({"list": {"$ne": 1}}, False),
    ({"on": {"$ne": 1}}, True),
    ({"none": {"$ne": None}}, False),
    # ordering
    ({"n": {"$gt": 2}}, True),
    ({"n": {"$gt": 3}}, False),
    ({"n": {"$gte": 3}}, True),
    ({"n": {"$lt": 3.5}}, True),
    ({"n": {"$lte": 2}}, False),
    ({"n": {"$gte": 1, "$lt": 5}}, True),
    ({"n": {"$gte": 1, "$lt": 3}}, False),
    ({"title": {"$gt": "B"}}, True),
    ({"title": {"$lt": "CPU"}}, False),
    ({"title": {"$gt": 1}}, False),
    ({"n": {"$lt": "z"}}, False),
    ({"on": {"$gt": 0}}, False),
    ({"off": {"$lt": 1}}, False),
    ({"none": {"$lt": 1}}, False),
    ({"nested": {"$gt": 1}}, False),
    ({"missing": {"$lt": 1}}, False),
    ({"list": {"$gt": 3}}, True),
    ({"list": {"$gt": 4}}, False),
    ({"list": {"$gte": "two"}}, True),
    ({"flags": {"$gte": 0}}, False),
    # $in / $all
    ({"n": {"$in": [1, 3]}}, True),
    ({"n": {"$in": [1, 2]}}, False),
    ({"n": {"$in": []}}, False),
    ({"on": {"$in": [1]}}, False),
    ({"one": {"$in": [True]}}, False),
    ({"list": {"$in": ["two", 9]}}, True),
    ({"list": {"$in": [[4, 5]]}}, True),
    ({"nested": {"d": {"$in": [[1, 2]]}}}, True),
    ({"missing": {"$in": [None]}}, False),
    ({"none": {"$in": [None]}}, True),
    ({"list": {"$all": [1, "two"]}}, True),
    ({"list": {"$all": [1, "three"]}}, False),
    ({"list": {"$all": []}}, False),
    ({"n": {"$all": [3]}}, True),
    ({"flags": {"$all": [1, 0]}}, False),
    ({"missing": {"$all": [1]}}, False),
    # $exists
    ({"n": {"$exists": True}}, True),
    ({"none": {"$exists": True}}, True),
    ({"missing": {"$exists": True}}, False),
    ({"missing": {"$exists": False}}, True),
    ({"n": {"$exists": False}}, False),
    ({"nested": {"a": {"c": {"$exists": True}, "z": {"$exists": False}}}}, True),
    # text operators
    ({"title": {"$iexact": "cpu load"}}, True),
    ({"title": {"$iexact": "cpu"}}, False),
    ({"title": {"$contains": "PU L"}}, True),
    ({"title": {"$contains": "cpu"}}, False),
    ({"title": {"$icontains": "cpu"}}, True),
    ({"title": {"$icontains": "gpu"}}, False),
    ({"n": {"$contains": "3"}}, False),
    ({"n": {"$iexact": "3"}}, False),
    ({"on": {"$icontains": "true"}}, False),
    ({"none": {"$icontains": ""}}, False),
    ({"missing": {"$icontains": ""}}, False),
    ({"words": {"$iexact": "ALPHA"}}, True),
    ({"words": {"$contains": "et"}}, True),
    ({"words": {"$icontains": "ETA"}}, True),
    ({"words": {"$contains": "ETA"}}, False),
    ({"nested": {"a": {"c": {"$icontains": "EE"}}}}, True),
]


@pytest.mark.parametrize("query, expected", MATCH_CASES)
def test_matches(query, expected):
    assert tags.validate_query(query) == query
    assert tags.matches(STORED, query) is expected


def test_empty_query_matches_everything():
    assert tags.matches(STORED, {}) and tags.matches({}, {}) and tags.matches({}, None)


def test_matches_stream_id():
    query = {"stream_id": "abc", "n": 3}
    assert tags.matches(STORED, query, stream_id="abc")
    assert not tags.matches(STORED, query, stream_id="abd")
    assert tags.matches(STORED, {"stream_id": {"$in": ["x", "abc"]}}, stream_id="abc")
    assert not tags.matches(STORED, {"stream_id": {"$in": []}}, stream_id="abc")


def test_matches_never_raises_on_odd_stored_values():
    stored = {"a": object(), "b": (1, 2), "c": {1: "x"}, "d": Decimal("1.5"), "e": float("nan")}
    for key in stored:
        for condition in ({"$gt": 1}, {"$icontains": "x"}, 1, [1], {"x": 1}, {"$in": [1, "x"]}):
            tags.matches(stored, {key: condition})
    assert not tags.matches(stored, {"e": {"$gt": 0}})


def test_matches_rejects_unknown_operators():
    with pytest.raises(ValueError):
        tags.matches(STORED, {"n": {"$regex": "3"}})


def test_matches_does_not_modify_inputs():
    stored, query = copy.deepcopy(STORED), {"nested": {"a": {"b": {"$in": [1]}}}}
    before = copy.deepcopy(query)
    tags.matches(stored, query)
    assert stored == STORED and query == before


# -- property tests --------------------------------------------------------------------------

# A small key pool, so that merged and queried dicts overlap often.
tag_keys = st.sampled_from(["a", "b", "c_d", "x1", "ключ"])
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6).filter(lambda s: "\x00" not in s)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tag_keys, inner, max_size=3),
    max_leaves=8,
)
tag_dicts = st.dictionaries(tag_keys, json_values, max_size=4)


@settings(max_examples=40, deadline=None)
@given(tag_dicts)
def test_tags_match_themselves_as_a_query(stored):
    tags.validate_tags(stored)
    assert tags.matches(stored, tags.validate_query(stored))


@settings(max_examples=40, deadline=None)
@given(tag_dicts, tag_dicts)
def test_merged_tags_match_the_overlaid_query(base, query):
    """ensure_stream stores ``tags`` overlaid by ``query_tags``: it must match its query."""
    assert tags.matches(tags.deep_merge(base, query), query)


@settings(max_examples=40, deadline=None)
@given(tag_dicts, tag_keys, json_values)
def test_ne_is_the_negation_of_eq(stored, key, value):
    equal = tags.matches(stored, {key: {"$eq": value}})
    assert tags.matches(stored, {key: {"$ne": value}}) is not equal
    exists = tags.matches(stored, {key: {"$exists": True}})
    assert exists is (key in stored)
    assert tags.matches(stored, {key: {"$exists": False}}) is not exists


# -- mutation --------------------------------------------------------------------------------


def test_deep_merge():
    base = {"a": {"b": 1, "c": {"d": 2}}, "e": [1], "f": 1, "g": {"h": 1}}
    update = {"a": {"c": {"x": 3}, "b": 5}, "e": [2], "f": {"new": 1}, "g": 7, "i": None}
    assert tags.deep_merge(base, update) == {
        "a": {"b": 5, "c": {"d": 2, "x": 3}},
        "e": [2],
        "f": {"new": 1},
        "g": 7,
        "i": None,
    }


def test_deep_merge_does_not_alias_or_modify_inputs():
    base = {"a": {"b": [1]}, "keep": {"x": [1]}}
    update = {"a": {"c": {"d": [2]}}, "n": [3]}
    before_base, before_update = copy.deepcopy(base), copy.deepcopy(update)
    merged = tags.deep_merge(base, update)
    assert base == before_base and update == before_update
    merged["a"]["b"].append(9)
    merged["a"]["c"]["d"].append(9)
    merged["keep"]["x"].append(9)
    merged["n"].append(9)
    assert base == before_base and update == before_update
    base["a"]["b"].append(8)
    update["n"].append(8)
    assert merged["a"]["b"] == [1, 9] and merged["n"] == [3, 9]


def test_deep_merge_with_empty_dicts():
    assert tags.deep_merge({"a": {"b": 1}}, {"a": {}}) == {"a": {"b": 1}}
    assert tags.deep_merge({"a": 1}, {"a": {}}) == {"a": {}}
    assert tags.deep_merge({}, {}) == {}


def test_remove_paths():
    stored = {"a": 1, "b": {"c": 2, "d": {"e": 3, "f": 4}}, "g": [1], "h": {"i": 1}}
    assert tags.remove_paths(stored, {"a": None}) == {k: v for k, v in stored.items() if k != "a"}
    assert tags.remove_paths(stored, {"b": {"d": {"e": "ignored"}}, "g": 123}) == {
        "a": 1,
        "b": {"c": 2, "d": {"f": 4}},
        "h": {"i": 1},
    }
    assert tags.remove_paths(stored, {"b": {"d": {"e": 1, "f": 1}}})["b"] == {"c": 2, "d": {}}
    assert tags.remove_paths(stored, {"b": True}) == {"a": 1, "g": [1], "h": {"i": 1}}
    assert tags.remove_paths(stored, {"h": {}}) == {"a": 1, "b": stored["b"], "g": [1]}


def test_remove_paths_ignores_missing_paths():
    stored = {"a": 1, "b": {"c": 2}}
    assert tags.remove_paths(stored, {"x": 1, "b": {"y": {"z": 1}}}) == stored
    assert tags.remove_paths(stored, {"a": {"deeper": 1}}) == stored
    assert tags.remove_paths(stored, {}) == stored


def test_remove_paths_does_not_modify_or_alias_input():
    stored = {"a": {"b": 1, "c": [1]}}
    result = tags.remove_paths(stored, {"a": {"b": 1}})
    assert stored == {"a": {"b": 1, "c": [1]}}
    result["a"]["c"].append(2)
    assert stored["a"]["c"] == [1]


def test_remove_paths_needs_a_dict():
    with pytest.raises(TypeError):
        tags.remove_paths({"a": 1}, ["a"])


def test_numpy_floats_compare_with_huge_ints():
    """numpy.float64 (a float) compared with an int beyond float range used to raise
    OverflowError inside the matcher."""
    huge = 10**400
    assert not tags.matches({"q": huge}, {"q": np.float64(1.5)})
    assert not tags.matches({"q": np.float64(1.5)}, {"q": huge})
    assert not tags.matches({"q": [np.float64(1.5)]}, {"q": {"$in": [huge]}})
    assert tags.matches({"q": huge}, {"q": {"$gt": np.float64(1e300)}})
    assert not tags.matches({"q": np.float64(1e300)}, {"q": {"$gte": huge}})
    assert tags.matches({"q": np.float64(2.0)}, {"q": 2})
