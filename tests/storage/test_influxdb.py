"""The storage contract on InfluxDB (datapoints) + PostgreSQL (metadata), below the engine.

Runs against throwaway servers (tests/servers.py); each test gets fresh databases.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import random
import threading
import warnings

import numpy as np
import psycopg2
import pyarrow as pa
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import datastream
from datastream import exceptions
from datastream import tags as tag_rules
from datastream.backends import duckdb as duckdb_backend
from datastream.backends import influxdb as influxdb_backend
from datastream.granularity import MAX_US, MIN_US
from datastream.storage.base import (
    RAW_SCHEMA,
    MetaUpdate,
    RecordConflict,
    StreamExists,
    StreamRecord,
    WriteBatch,
)
from datastream.storage.influxdb import line_protocol as lp
from datastream.storage.influxdb import query as pg_query
from datastream.storage.influxdb import storage as store
from tests import servers
from tests.storage.rows import add_stream, ids_of, new_id, raw_pairs, raw_rows, snapshot, versions

HOSTILE = [
    'quote " double',
    "quote ' single",
    "back\\slash",
    "ends with backslash\\",
    "\\",
    'back\\"quote',
    "new\nline",
    "carriage\rreturn",
    "tab\tand space ",
    " lead space",
    "comma,and=equals",
    "a\\,b\\ c\\=d",
    "#hash",
    "%41 percent",
    "_under",
    "time",
    "nul\x00byte",
    "ctrl\x01\x02",
    "ünïcødé ∑ 🚀",
    "'); DROP TABLE datastream_streams; --",
    '" OR 1=1 --',
    "x\ndatastream_raw,stream_id=victim,_epoch=0 k=1i,_batch=1i 0",
]


@pytest.fixture
def storage(influx_factory):
    return influx_factory()


# -- decoding query results ------------------------------------------------------------------------


@pytest.mark.parametrize("visible_batches", [set(), {8}, {7, 8}])
def test_level_rows_of_uncommitted_batches_only_read_as_nothing(visible_batches):
    """A killed writer leaves level points of a batch that never committed; a read that sees
    only those must give an empty table, not fail (and otherwise the latest visible version)."""
    from datastream.storage.influxdb import points

    schema = pa.schema([("t", pa.timestamp("us", tz="UTC")), ("count", pa.int64())])
    columns = {"time": [5 * 10**9, 5 * 10**9, 9 * 10**9], points.BATCH_FIELD: [7, 8, 8],
               lp.encode_name("count"): [1, 2, 3]}
    table = points.level_table(columns, 3, schema,
                               lambda batches, _: np.isin(batches, list(visible_batches)))
    assert table.schema == schema
    expected = {frozenset(): [], frozenset({8}): [(5, 2), (9, 3)],
                frozenset({7, 8}): [(5, 2), (9, 3)]}[frozenset(visible_batches)]
    got = zip(table.column("t").to_pylist(), table.column("count").to_pylist())
    assert [(t.timestamp(), c) for t, c in got] == expected


class StreamedResponse:
    """A chunked query response: ``body`` under ``content_type``, in blocks of a few bytes (so
    documents are split anywhere)."""

    def __init__(self, body: bytes, content_type: str) -> None:
        self.body, self.headers = body, {"Content-Type": content_type}

    def iter_content(self, chunk_size):
        for start in range(0, len(self.body), 7):
            yield self.body[start:start + 7]


class AnsweringSession:
    """Stands for the backend's InfluxSession: every query gets ``response``."""

    def __init__(self, response: StreamedResponse) -> None:
        self.response = response

    @contextlib.contextmanager
    def query(self, database, statement, bind, chunk_size):
        yield self.response


def _kb(batch: int, k: int | None) -> int:
    from datastream.storage.influxdb import points

    return batch << points.KIND_BITS | (points.NULL_KIND if k is None else k + points.KIND_OFFSET)


# Chunks of one raw read as InfluxDB sends them, each with its own columns: a batch whose number
# is a tag (decimal mantissas, plain floats, special floats, a second ordinal series) and a
# small batch with the number in a field (ints, text, a big int, a null kind, no value).
RAW_CHUNKS = [
    (["time", "_kb", "_d2_f", "f", "_nf_f", "_ord", "_b"], [
        [3_000, None, 2366, None, None, None, str(_kb(5, 2))],
        [5_001, None, None, 0.1 + 0.2, None, None, str(_kb(5, 2))],
        [5_002, None, None, None, "nan", None, str(_kb(5, 2))],
        [5_000, None, None, None, "-0", "1", str(_kb(5, 2))],
    ]),
    (["time", "_kb", "i", "s", "_ord"], [
        [1_000, _kb(6, 1), 7, None, None],
        [3_001, _kb(6, 3), None, "1.5", None],
        [5_003, _kb(6, 1), 2**62, None, None],
        [9_000, _kb(6, None), None, None, None],
        [9_001, _kb(7, 1), 8, None, None],
    ]),
    (["time", "_kb", "_d2_f", "_ord", "_b"], [[9_002, None, -5, None, str(_kb(5, 2))]]),
]
# (t µs, k, i, f, s) in time and insertion order; batch 7 is hidden (pending, say)
RAW_EXPECTED = [
    (1, 1, 7, None, None), (3, 2, None, 23.66, None), (3, 3, None, None, "1.5"),
    (5, 2, None, 0.1 + 0.2, None), (5, 2, None, math.nan, None), (5, 1, 2**62, None, None),
    (5, 2, None, -0.0, None), (9, None, None, None, None), (9, 2, None, -0.05, None),
]


def _documents(chunks, grouped: bool = False) -> list[dict]:
    """InfluxDB's documents of the chunks: the tags as columns of every point, or (``grouped``,
    as ``GROUP BY "_ord", "_b"`` answers) a series per tag set, its tag values given once ("":
    the tag is missing)."""
    series = [{"name": "datastream_raw", "columns": columns, "values": values, "partial": True}
              for columns, values in chunks]
    if grouped:
        series = [one for part in series for one in _by_tags(part)]
    return [{"results": [{"statement_id": 0, "series": [one], "partial": True}]}
            for one in series]


def _by_tags(series: dict) -> list[dict]:
    tags = [name for name in series["columns"] if name in ("_ord", "_b")]
    keep = [j for j, name in enumerate(series["columns"]) if name not in tags]
    groups: dict[tuple, list] = {}
    for row in series["values"]:
        key = tuple(row[series["columns"].index(tag)] or "" for tag in tags)
        groups.setdefault(key, []).append([row[j] for j in keep])
    return [{**series, "columns": [series["columns"][j] for j in keep], "values": rows,
             "tags": {"_ord": "", "_b": "", **dict(zip(tags, key))}}
            for key, rows in groups.items()]


def _joined_as_before(documents) -> tuple[dict, int]:
    """How ``points.select`` joined the chunks before it took them as tuples: a list per
    column, extended chunk by chunk (the reference the new path must equal)."""
    parts = [(series["columns"], series["values"]) for document in documents
             for result in document["results"] for series in result.get("series", [])]
    names = list(dict.fromkeys(name for columns, _ in parts for name in columns))
    result = {name: [] for name in names}
    for columns, values in parts:
        for name, column in zip(columns, zip(*values)):
            result[name].extend(column)
        for name in names:
            if name not in columns:
                result[name].extend([None] * len(values))
    result["time"] = np.array(result["time"], dtype=np.int64)
    return result, sum(len(values) for _, values in parts)


def _rows(table: pa.Table) -> list[tuple]:
    return [tuple(row.values()) for row in table.to_pylist()]


def _same_rows(got: list[tuple], expected: list[tuple]) -> bool:
    """Equal, NaN equal to NaN and -0.0 told from 0.0."""
    def key(value):
        if isinstance(value, float):
            return ("float", math.copysign(1, value), "nan" if math.isnan(value) else value)
        return value
    return [tuple(map(key, row)) for row in got] == [tuple(map(key, row)) for row in expected]


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("encoding", ["msgpack", "json"])
def test_raw_reads_decode_mixed_chunks_as_before(encoding, grouped):
    """A read whose chunks carry different columns (tag and field batch numbers, decimal
    mantissas, plain and special floats, ints, text, nulls, ordinals past SLOTS) decodes to
    the rows written, and to what the former list-based join of the tags-as-columns answer
    gave, whether the tags come with every point or once per series."""
    import msgpack

    from datastream.storage.influxdb import points

    documents = _documents(RAW_CHUNKS, grouped)
    if encoding == "msgpack":
        response = StreamedResponse(b"".join(msgpack.packb(d) for d in documents),
                                    "application/x-msgpack")
    else:
        response = StreamedResponse("".join(json.dumps(d) + "\n" for d in documents).encode(),
                                    "application/json")
    columns, count = points.select(AnsweringSession(response), "db", points.RAW_MEASUREMENT,
                                   "a", 0, points.MIN_NS, points.MAX_NS,
                                   points.stored_fields(RAW_SCHEMA))
    before, before_count = _joined_as_before(_documents(RAW_CHUNKS))
    assert count == before_count == 10
    assert sorted(columns["time"]) == sorted(before["time"])

    def visible(batches, _):
        return batches != 7

    table = points.raw_table(columns, count, visible)
    assert table.schema == RAW_SCHEMA
    assert _same_rows(_rows(table), _rows(points.raw_table(before, before_count, visible)))
    assert _same_rows(_rows(table), RAW_EXPECTED)
    reverse = points.raw_table(columns, count, visible, reverse=True)
    assert _same_rows(_rows(reverse),
                      _rows(points.raw_table(before, before_count, visible, reverse=True)))
    assert reverse.column("t").to_pylist() == [9, 9, 5, 5, 5, 5, 3, 3, 1]


# -- line protocol names -------------------------------------------------------------------------


@given(st.text(min_size=1))
def test_encoded_names_decode_exactly_and_need_no_backslash(name):
    encoded = lp.encode_name(name)
    assert lp.decode_name(encoded) == name
    assert not set(encoded) & set("\\\n\r\x00")
    assert not encoded.startswith(("_", "#")) and encoded != "time"


def test_string_values_and_keys_are_escaped_by_the_protocol_rules():
    assert lp.quote_string('a"b\\c\nd') == '"a\\"b\\\\c\nd"'
    assert lp.escape_key("a b,c=d") == "a\\ b\\,c\\=d"
    assert lp.escape_measurement("a b,c=d") == "a\\ b\\,c=d"
    assert lp.quote_identifier('x"y\\z') == '"x\\"y\\\\z"'


# -- stream records ------------------------------------------------------------------------------


def test_backend_is_the_influxdb_storage(storage):
    assert influxdb_backend.Backend is store.InfluxDBStorage
    assert storage.requires_downsampling is True
    assert storage.downsampled_always_exist is False


def test_tags_and_meta_round_trip_exactly(storage, influx_factory):
    tags = {
        **{text: text for text in HOSTILE if "\x00" not in text},
        "values": HOSTILE,
        "numbers": [1, 1.0, -0.0, 1e16, 1e300, 5e-324, 2**70, -(2**64), 0.1, True, False, None],
        "nested": {"deeper": {"list": [{"a": [1, "2"]}, []], "empty": {}}},
    }
    meta = {"latest_datapoint": 2**62, "args": {"max_value": 1e20, "ratio": 0.5}, "x": None}
    a = add_stream(storage, tags, meta)
    other = influx_factory()  # a second process's view
    for view in (storage, other):
        record = view.get_stream(a)
        assert record.tags == tags and record.meta == meta
        assert repr(record.tags) == repr(tags)  # float vs int and -0.0 kept
        assert repr(record.meta) == repr(meta)
    assert ids_of(storage.find_streams({"nul\x01": "x"})) == []
    for text in HOSTILE:
        assert ids_of(storage.find_streams({"values": text})) == [a], text
        if "\x00" not in text:
            assert ids_of(storage.find_streams({text: text})) == [a], text


# Stored tags covering the tricky cases of the reference matcher.
CORPUS = [
    {"n": 1}, {"n": 1.0}, {"n": True}, {"n": 0}, {"n": False}, {"n": None}, {"n": 2**53 + 1},
    {"n": float(2**53)}, {"n": 2.0**60}, {"n": 2**60 + 1}, {"n": -0.5}, {"n": 1e16}, {"n": 0.1},
    {"n": [1, 2, 3]}, {"n": [1, [2, 3]]}, {"n": [True]}, {"n": []}, {"n": [None]},
    {"n": {"a": 1}}, {"n": [{"a": 1}]}, {"n": {"a": {"b": [1, "x"]}, "c": "d"}},
    {"s": "abc"}, {"s": "ABC"}, {"s": "aBc d"}, {"s": ""}, {"s": ["x", "Abc"]},
    {"s": "a\x00b"}, {"s": "a\x01"}, {"s": "a"}, {"s": "b"}, {"s": "ÉCOLE"}, {"s": "école"},
    {"s": "\u212a"}, {"s": "ǅ"}, {"s": 5}, {"s": "10"}, {"s": "9"},
    {"n": 1, "s": "abc", "d": {"e": [1, 2], "f": "g"}}, {}, {"other": "n"},
]


def _plain(value) -> bool:
    """PostgreSQL compares this value exactly like Python (ASCII text without NUL)."""
    if isinstance(value, str):
        return value.isascii() and "\x00" not in value
    if isinstance(value, list):
        return all(map(_plain, value))
    if isinstance(value, dict):
        return all(map(_plain, value.values()))
    return True

LEAVES = [
    1, 1.0, True, False, 0, None, 2**53 + 1, float(2**53), 2.0**60, 2**60 + 1, -0.5, 0.1, 1e16,
    2, 3, "abc", "ABC", "Abc", "b", "a", "", "école", "ÉCOLE", "k", "a\x00b", "a\x01", "10", "x",
]
OPERATORS = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$all", "$exists", "$iexact",
             "$contains", "$icontains"]


def _argument(draw, operator):
    if operator in ("$in", "$all"):
        items = st.sampled_from(LEAVES) | st.lists(st.sampled_from([1, 2, 3, "x", True]),
                                                   max_size=2)
        return draw(st.lists(items, max_size=3))
    if operator == "$exists":
        return draw(st.booleans())
    if operator in ("$iexact", "$contains", "$icontains"):
        return draw(st.sampled_from([x for x in LEAVES if isinstance(x, str)]))
    if operator in ("$gt", "$gte", "$lt", "$lte"):
        return draw(st.sampled_from([x for x in LEAVES if type(x) in (int, float, str)]))
    return draw(st.sampled_from(LEAVES) | st.just([1, 2, 3]) | st.just({"a": 1}))


@st.composite
def queries(draw):
    key = draw(st.sampled_from(["n", "s", "d", "missing"]))
    kind = draw(st.sampled_from(["leaf", "list", "operator", "nested"]))
    if kind == "leaf":
        condition = draw(st.sampled_from(LEAVES))
    elif kind == "list":
        condition = draw(st.sampled_from([[1, 2, 3], [1, [2, 3]], [], [True], [None], ["x"]]))
    elif kind == "operator":
        ops = draw(st.lists(st.sampled_from(OPERATORS), min_size=1, max_size=2, unique=True))
        condition = {op: _argument(draw, op) for op in ops}
    else:
        condition = draw(st.sampled_from([{}, {"a": 1}, {"a": {"b": 1}}, {"a": {"b": "x"}},
                                          {"e": 2}, {"e": {"$all": [1, 2]}}, {"f": "g"},
                                          {"a": {"$exists": True}}, {"a": {"$ne": 1}}]))
    return {key: condition}


@pytest.fixture(scope="module")
def corpus(influx_servers):
    with servers.influx_backend_factory(influx_servers) as factory:
        storage = factory()
        records = []
        for tags in CORPUS:
            add = StreamRecord(new_id(), tags, {})
            records.append(storage.create_stream(add, {"_id": add.stream_id}))
        yield storage, records


def _reference(records, query) -> list[str]:
    return [r.stream_id for r in records if tag_rules.matches(r.tags, query)]


def _sql_only(storage, query) -> list[str]:
    where, params = pg_query.translate(query)
    rows = storage._metadata.fetch(
        f"SELECT stream_id, tags_text FROM datastream_streams WHERE {where} ORDER BY seq", params)
    return [stream_id for stream_id, _ in rows]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=queries())
def test_queries_agree_with_the_reference_matcher(corpus, query):
    storage, records = corpus
    tag_rules.validate_query(query)
    assert ids_of(storage.find_streams(query)) == _reference(records, query)
    # the SQL alone is exact wherever PostgreSQL can represent the case exactly (no NUL,
    # ASCII case folding), and never misses a match elsewhere
    found = _sql_only(storage, query)
    plain = [r for r in records if _plain(r.tags)]
    if _plain(query):
        assert [i for i in found if i in {r.stream_id for r in plain}] == _reference(plain, query)
    assert set(_reference(records, query)) <= set(found)


def test_documented_query_examples(corpus):
    storage, records = corpus

    def found(query):  # repr: in Python, 1 == True
        return [repr(r.tags) for r in storage.find_streams(query)]

    assert found({"n": True}) == ["{'n': True}", "{'n': [True]}"]
    assert found({"n": {"$in": [False, "1"]}}) == ["{'n': False}"]
    assert found({"n": [1, 2, 3]}) == [repr({"n": [1, 2, 3]})]
    assert repr({"n": [1, [2, 3]]}) not in found({"n": 2})
    assert found({"n": 2**53 + 1}) == [repr({"n": 2**53 + 1})]  # not the float 2**53
    assert found({"n": {"$gt": 2.0**60}}) == [repr({"n": 2**60 + 1})]
    assert found({"n": {"a": {"b": "x"}}}) == [repr({"n": {"a": {"b": [1, "x"]}, "c": "d"}})]
    assert repr({"s": "\u212a"}) in found({"s": {"$iexact": "k"}})  # the Kelvin sign lowers to k
    assert found({"s": "a\x00b"}) == [repr({"s": "a\x00b"})]
    below = found({"s": {"$lt": "a\x01"}})
    assert repr({"s": "a\x00b"}) in below and repr({"s": "a\x01"}) not in below


def test_query_values_and_keys_cannot_alter_sql(storage):
    a = add_stream(storage, {text: text for text in HOSTILE if "\x00" not in text})
    for text in HOSTILE:
        for condition in ({"$contains": text}, {"$gt": text}, {"$in": [text]}, {"$ne": text},
                          {"$icontains": text}, {"$iexact": text}):
            query = {"x": condition}
            assert ids_of(storage.find_streams(query)) == _reference(
                [storage.get_stream(a)], query
            )
    assert ids_of(storage.find_streams(None)) == [a]


# -- commit and reads ----------------------------------------------------------------------------


def test_many_equal_timestamps_keep_order_past_the_slot_limit(storage):
    a = add_stream(storage, {"n": 1})
    n = store.SLOTS * 2 + 17
    storage.commit(WriteBatch(raw={a: raw_rows([MAX_US] * n, ints=list(range(n)))}))
    storage.commit(WriteBatch(raw={a: raw_rows([MAX_US] * 3, ints=[-1, -2, -3])}))
    storage.commit(WriteBatch(raw={a: raw_rows([MIN_US, MIN_US, -1, -1, 0], ints=[1, 2, 3, 4, 5])}))
    values = storage.read_raw(a, None, None).column("i").to_pylist()
    assert values == [1, 2, 3, 4, 5] + list(range(n)) + [-1, -2, -3]
    times = storage.read_raw(a, None, None).column("t").to_pylist()
    assert times[:5] == [MIN_US, MIN_US, -1, -1, 0] and set(times[5:]) == {MAX_US}
    reverse = storage.read_raw(a, None, None, reverse=True).column("i").to_pylist()
    assert reverse == list(range(n)) + [-1, -2, -3] + [5, 3, 4, 1, 2]
    assert storage.read_raw(a, MAX_US, None).num_rows == n + 3
    assert raw_pairs(storage, a, -1, 0) == [(-1, 3), (-1, 4)]


def test_hostile_strings_and_special_floats_round_trip(storage):
    a = add_stream(storage, {"n": 1})
    victim = add_stream(storage, {"n": 2})
    texts = HOSTILE + ["x" * 100_000]
    floats = [math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, 1e308, 0.1 + 0.2, -1.5]
    n = len(texts)
    rows = raw_rows(list(range(n)), texts=texts, floats=(floats * n)[:n],
                    ints=[2**63 - 1, -(2**63)] * (n // 2) + [0] * (n % 2), kinds=[4] * n)
    storage.commit(WriteBatch(raw={a: rows}))
    back = storage.read_raw(a, None, None)
    assert back.column("s").to_pylist() == texts
    assert back.column("i").to_pylist() == rows.column("i").to_pylist()
    for got, want in zip(back.column("f").to_pylist(), rows.column("f").to_pylist()):
        assert (math.isnan(got) and math.isnan(want)) or (got == want and math.copysign(
            1, got) == math.copysign(1, want))
    assert storage.read_raw(victim, None, None).num_rows == 0  # no line was injected
    # hostile level keys and column names, string and float columns
    columns = {name: pa.array([name, None], pa.string()) for name in HOSTILE}
    columns["float column"] = pa.array([math.nan, -0.0])
    level = pa.table({"stream_id": [a, a], "t": [0, 10], **columns})
    keys = ["S", "a b,c=d\\", "ü\n"]
    storage.commit(WriteBatch(levels={key: level for key in keys}))
    for key in keys:
        got = storage.read_level(key, a, None, None)
        assert got.column_names == ["t"] + HOSTILE + ["float column"]
        for name in HOSTILE:
            assert got.column(name).to_pylist() == [name, None]
        assert math.isnan(got.column("float column")[0].as_py())
        assert math.copysign(1, got.column("float column")[1].as_py()) == -1
    assert storage.read_raw(victim, None, None).num_rows == 0


def series_count(storage, stream_id) -> int:
    result = storage._client.query("SHOW SERIES WHERE stream_id = $s",
                                   bind_params={"s": stream_id})
    return len(list(result.get_points()))


def test_delete_streams_drops_series(storage):
    a = add_stream(storage, {"n": 1})
    b = add_stream(storage, {"n": 2})
    level = pa.table({"stream_id": [a, b], "t": [0, 0], "c": [1, 2]})
    storage.commit(WriteBatch(raw={a: raw_rows([1], ints=[1]), b: raw_rows([2], ints=[2])},
                              levels={"S": level}))
    assert series_count(storage, a) == 2
    storage.delete_streams([a])
    assert series_count(storage, a) == 0
    assert storage.read_raw(a, None, None).num_rows == 0
    assert storage.read_level("S", a, None, None).num_rows == 0
    assert raw_pairs(storage, b) == [(2, 2)]
    with pytest.raises(exceptions.StreamAppendFailed, match="not found"):
        storage.commit(WriteBatch(raw={a: raw_rows([3])}))


def test_series_of_deleted_streams_are_dropped_once_influxdb_is_back(storage, monkeypatch):
    a = add_stream(storage, {"n": 1})
    b = add_stream(storage, {"n": 2})
    storage.commit(WriteBatch(raw={a: raw_rows([1]), b: raw_rows([1])}))

    def unreachable(self):
        raise requests.ConnectionError("influxd is down")

    monkeypatch.setattr(store.InfluxDBStorage, "_influx", unreachable)
    storage.delete_streams([a])  # the records go at once
    assert ids_of(storage.find_streams(None)) == [b]
    monkeypatch.undo()
    assert series_count(storage, a) == 1
    storage.commit(WriteBatch(raw={b: raw_rows([2])}))  # retries the drop
    assert series_count(storage, a) == 0
    assert storage._metadata.fetch("SELECT count(*) FROM datastream_garbage") == [(0,)]


# -- atomicity -----------------------------------------------------------------------------------


def prepare_for_failure(storage):
    a = add_stream(storage, {"n": 1}, {"latest": 1})
    b = add_stream(storage, {"n": 2}, {"latest": 1})
    storage.commit(WriteBatch(
        raw={a: raw_rows([1], ints=[1])},
        levels={"S": pa.table({"stream_id": [a], "t": [0], "c": pa.array([1], pa.int64())})},
    ))
    return a, b


def big_batch(a: str, b: str, n: int = 5) -> WriteBatch:
    """Raw points of two streams (first batch ints, so a retry with floats shows any merge),
    a level rewrite and a new level, meta updates."""
    return WriteBatch(
        raw={a: raw_rows(list(range(2, n + 2)), ints=list(range(n))),
             b: raw_rows([5] * 3, ints=[1, 2, 3])},
        levels={"S": pa.table({"stream_id": [a, a], "t": [0, 10], "c": [5, 6], "l": [1.0, 2.0]}),
                "m": pa.table({"stream_id": [a], "t": [0], "c": [2]})},
        meta={a: MetaUpdate(set={"flag": 1}, max={"latest": n + 1}),
              b: MetaUpdate(max={"latest": 5})},
    )


def retry_batch(a: str, b: str, n: int = 5) -> WriteBatch:
    """The same identities as big_batch with other fields set: leftovers must not leak in."""
    return WriteBatch(
        raw={a: raw_rows(list(range(2, n + 2)), floats=[0.5] * n),
             b: raw_rows([5] * 3, floats=[0.5] * 3)},
        levels={"S": pa.table({"stream_id": [a, a], "t": [0, 10], "c": [7, 8]})},
        meta={a: MetaUpdate(max={"latest": n + 1}), b: MetaUpdate(max={"latest": 5})},
    )


def assert_retry_stored_once(storage, a, b, n):
    raw = storage.read_raw(a, None, None)
    assert raw.column("t").to_pylist() == list(range(1, n + 2))
    assert raw.column("i").to_pylist() == [1] + [None] * n
    assert raw.column("f").to_pylist() == [None] + [0.5] * n
    assert storage.read_raw(b, None, None).column("f").to_pylist() == [0.5] * 3
    assert storage.read_raw(b, None, None).column("i").to_pylist() == [None] * 3
    assert storage.read_level("S", a, None, None).to_pylist() == [{"t": 0, "c": 7},
                                                                  {"t": 10, "c": 8}]
    assert storage.get_stream(a).meta == {"latest": n + 1}


@pytest.mark.parametrize("fail_after_chunks", [0, 1])
def test_failed_write_leaves_nothing_and_a_retry_is_stored_once(storage, monkeypatch,
                                                                fail_after_chunks):
    a, b = prepare_for_failure(storage)
    before = snapshot(storage, [a, b])
    monkeypatch.setattr(store, "LINES_PER_REQUEST", 2)
    original = store.InfluxDBStorage._write_chunk
    calls = []

    def flaky(self, client, body):
        if len(calls) >= fail_after_chunks:
            raise OSError("network down")
        calls.append(body)
        original(self, client, body)

    monkeypatch.setattr(store.InfluxDBStorage, "_write_chunk", flaky)
    with pytest.raises(exceptions.StreamAppendFailed, match="network down"):
        storage.commit(big_batch(a, b))
    monkeypatch.undo()
    assert snapshot(storage, [a, b]) == before
    storage.commit(retry_batch(a, b))
    assert_retry_stored_once(storage, a, b, 5)


class CommitFailsOnce:
    """A psycopg2 connection whose next COMMIT raises, after (``reach_server``) or instead of
    committing: the two outcomes of a connection lost during COMMIT."""

    def __init__(self, connection, reach_server: bool) -> None:
        self._connection = connection
        self._reach_server = reach_server
        self.failed = False

    def commit(self):
        if self.failed:
            return self._connection.commit()
        self.failed = True
        if self._reach_server:
            self._connection.commit()
        else:
            self._connection.rollback()
        raise psycopg2.OperationalError("server closed the connection unexpectedly")

    def __getattr__(self, name):
        return getattr(self._connection, name)


@pytest.mark.parametrize("reach_server", [True, False])
def test_ambiguous_commit_is_resolved_by_the_pending_record(storage, reach_server):
    a, b = prepare_for_failure(storage)
    before = snapshot(storage, [a, b])
    real = storage._metadata.connection()
    storage._metadata.pg = CommitFailsOnce(real, reach_server)
    if reach_server:
        storage.commit(retry_batch(a, b))  # it did commit: success
    else:
        with pytest.raises(exceptions.StreamAppendFailed, match="nothing of it is visible"):
            storage.commit(retry_batch(a, b))
        storage._metadata.pg = real
        assert snapshot(storage, [a, b]) == before
        storage.commit(retry_batch(a, b))
    storage._metadata.pg = real
    assert_retry_stored_once(storage, a, b, 5)


def kill_after_the_first_chunk(influxd, monkeypatch) -> list[int]:
    """SIGKILL influxd before the second chunk of a commit is written; the sizes of the chunks
    that were written."""
    original = store.InfluxDBStorage._write_chunk
    written: list[int] = []

    def crash_after_first(self, client, body):
        if written:
            influxd.kill()
        original(self, client, body)
        written.append(len(body))

    monkeypatch.setattr(store.InfluxDBStorage, "_write_chunk", crash_after_first)
    return written


def test_influxd_killed_mid_commit_then_restarted(influx_servers, monkeypatch):
    """A real crash: SIGKILL influxd after the first chunk of a commit was written."""
    with servers.influxdb_server() as influxd, servers.fresh_databases(influx_servers) as (
        _, metadata
    ):
        storage = store.InfluxDBStorage(influxd.connection("killed"), metadata)
        try:
            a, b = prepare_for_failure(storage)
            before = snapshot(storage, [a, b])
            n = 3 * store.LINES_PER_REQUEST
            written = kill_after_the_first_chunk(influxd, monkeypatch)
            with pytest.raises(exceptions.StreamAppendFailed):
                storage.commit(big_batch(a, b, n))
            monkeypatch.undo()
            assert len(written) == 1
            assert storage.get_stream(a).meta == {"latest": 1}  # metadata untouched
            with pytest.raises(store.StorageUnavailable, match="InfluxDB failed"):
                storage.read_raw(a, None, None)
            with pytest.raises(exceptions.StreamAppendFailed):
                storage.commit(retry_batch(a, b, n))  # server still down
            influxd.start()
            assert snapshot(storage, [a, b]) == before
            storage.commit(retry_batch(a, b, n))
            assert_retry_stored_once(storage, a, b, n)
            storage.commit(WriteBatch(raw={a: raw_rows([n + 1], ints=[42])}))
            assert raw_pairs(storage, a, n + 1, None) == [(n + 1, None), (n + 1, 42)]
        finally:
            storage.close()


# -- maintenance locks ---------------------------------------------------------------------------


# -- servers -------------------------------------------------------------------------------------


def test_missing_server_binaries_fail_clearly(monkeypatch):
    monkeypatch.setattr(servers, "PG_BIN", "/nonexistent")
    with pytest.raises(servers.ServerUnavailable, match="PostgreSQL binaries not found"):
        with servers.postgres_server():
            pass
    monkeypatch.setattr(servers, "INFLUXD", "influxd-does-not-exist")
    with pytest.raises(servers.ServerUnavailable, match="not found"):
        with servers.influxdb_server():
            pass


# -- versions and conditional commits ------------------------------------------------------------


def pending_count(storage) -> int:
    return storage._metadata.fetch("SELECT count(*) FROM datastream_pending")[0][0]


def test_refused_batches_leave_no_pending_record(storage):
    """A conflict or an existing match is found before anything could become visible; a stream
    deleted since it was read is a conflict, not a missing stream."""
    a, b = prepare_for_failure(storage)
    storage.set_tags(a, {"n": 1, "moved": True})  # version 2 now
    pending = pending_count(storage)
    batch = big_batch(a, b)
    batch.truncate_raw = {a: 0}
    batch.expect = {a: 1, b: 0}
    with pytest.raises(RecordConflict, match=f"{a}.*version 2, expected version 1"):
        storage.commit(batch)
    assert pending_count(storage) == pending
    gone = add_stream(storage, {"n": 9})
    storage.delete_streams([gone])
    with pytest.raises(RecordConflict, match="deleted"):
        storage.commit(WriteBatch(raw={gone: raw_rows([1])}, expect={gone: 0}))
    c = new_id()
    with pytest.raises(StreamExists):
        storage.commit(WriteBatch(create=[(StreamRecord(c, {"n": 1}, {}), {"n": 1})],
                                  meta={b: MetaUpdate(set={"contributes": c})}, expect={b: 0}))
    assert pending_count(storage) == pending


def test_clears_and_cuts_keep_the_stored_series_and_cut_list_small(storage):
    a = add_stream(storage, {"n": 1})
    storage.commit(WriteBatch(raw={a: raw_rows([1, 2])}, levels={"S": level_table(a, [0], [1])}))
    storage.commit(WriteBatch(raw={a: raw_rows([9], ints=[9])},
                              levels={"S": level_table(a, [60], [4])},
                              clear_raw=[a], clear_levels=[a]))
    assert series_count(storage, a) == 2  # the old epochs' series were dropped
    for cut in (20, 25):
        storage.commit(WriteBatch(raw={a: raw_rows([cut, 30], ints=[cut, 30])},
                                  truncate_raw={a: cut}))
    storage.commit(WriteBatch(raw={a: raw_rows([12], ints=[12])}, truncate_raw={a: 11}))
    assert raw_pairs(storage, a) == [(9, 9), (12, 12)]
    # an earlier cut supersedes the later ones (the list is a Pareto frontier)
    assert len(storage._metadata.view(a)[0].store["raw"]["cut"]) == 1


def test_create_with_source_meta_is_one_commit(storage):
    """A derived stream and its source's meta: both or neither, whichever way COMMIT fails."""
    a = add_stream(storage, {"n": 1}, {"contributes_to": {}})
    for reach_server in (False, True):
        c = new_id()
        batch = WriteBatch(create=[(StreamRecord(c, {"d": c}, {"derived": a}), {"d": c})],
                           meta={a: MetaUpdate(set={"contributes_to": {c: {}}})},
                           expect={a: storage.get_stream(a).version})
        real = storage._metadata.connection()
        storage._metadata.pg = CommitFailsOnce(real, reach_server)
        try:
            if reach_server:
                storage.commit(batch)  # it did commit: success
            else:
                with pytest.raises(exceptions.StreamAppendFailed):
                    storage.commit(batch)
        finally:
            storage._metadata.pg = real
        created = storage.get_stream(c)
        source = storage.get_stream(a)
        assert (created is not None) == reach_server
        assert (c in source.meta["contributes_to"]) == reach_server
        if created is not None:
            assert (created.meta, created.version) == ({"derived": a}, 0)


def test_delete_with_source_meta_is_one_commit(storage):
    a = add_stream(storage, {"n": 1}, {"contributes_to": {"x": {}}})
    d = add_stream(storage, {"n": 2})
    storage.commit(WriteBatch(raw={d: raw_rows([1]), a: raw_rows([1])}))
    batch = WriteBatch(delete=[d], meta={a: MetaUpdate(set={"contributes_to": {}})},
                       expect={a: 1, d: 1})
    real = storage._metadata.connection()
    storage._metadata.pg = CommitFailsOnce(real, reach_server=False)
    with pytest.raises(exceptions.StreamAppendFailed):
        storage.commit(batch)
    storage._metadata.pg = real
    assert ids_of(storage.find_streams(None)) == [a, d]
    assert storage.get_stream(a).meta == {"contributes_to": {"x": {}}}
    assert raw_pairs(storage, d) == [(1, None)]
    storage.commit(batch)
    assert ids_of(storage.find_streams(None)) == [a]
    assert storage.get_stream(a).meta == {"contributes_to": {}}
    assert storage.get_stream(a).version == 2
    assert storage.read_raw(d, None, None).num_rows == 0
    assert series_count(storage, d) == 0
    storage.commit(WriteBatch(delete=[d]))  # already gone: nothing to do


def test_nothing_after_commit_raises(storage, monkeypatch):
    a = add_stream(storage, {"n": 1})
    d = add_stream(storage, {"n": 2})

    def broken(self, limit):
        raise RuntimeError("anything at all")

    monkeypatch.setattr(store.PgMetadata, "garbage", broken)
    storage.commit(WriteBatch(delete=[d], raw={a: raw_rows([1])}))  # stored, no error
    assert ids_of(storage.find_streams(None)) == [a] and raw_pairs(storage, a) == [(1, None)]
    assert storage._garbage_due
    monkeypatch.undo()
    storage.commit(WriteBatch(raw={a: raw_rows([2])}))
    assert series_count(storage, d) == 0 and not storage._garbage_due


def test_influxd_killed_mid_commit_of_create_delete_and_truncate(influx_servers, monkeypatch):
    """One batch creates a stream, updates its source, deletes another and truncates a third
    while writing points: a crash of InfluxDB mid-write leaves all of it undone."""
    with servers.influxdb_server() as influxd, servers.fresh_databases(influx_servers) as (
        _, metadata
    ):
        storage = store.InfluxDBStorage(influxd.connection("killed"), metadata)
        try:
            a = add_stream(storage, {"n": 1}, {"contributes_to": {}})
            d = add_stream(storage, {"n": 2})
            e = add_stream(storage, {"n": 3})
            storage.commit(WriteBatch(raw={d: raw_rows([1]), e: raw_rows([1, 5], ints=[1, 5])}))
            before = snapshot(storage, [a, d, e])
            c = new_id()
            n = 3 * store.LINES_PER_REQUEST

            def batch():
                return WriteBatch(
                    create=[(StreamRecord(c, {"d": 1}, {"from": a}), {"d": 1})],
                    meta={a: MetaUpdate(set={"contributes_to": {c: {}}})},
                    raw={a: raw_rows(list(range(n)), ints=list(range(n))),
                         e: raw_rows([5], ints=[50])},
                    truncate_raw={e: 3}, delete=[d], expect={a: 0, d: 1, e: 1},
                )

            written = kill_after_the_first_chunk(influxd, monkeypatch)
            with pytest.raises(exceptions.StreamAppendFailed):
                storage.commit(batch())
            monkeypatch.undo()
            assert written and storage.get_stream(c) is None
            assert storage.get_stream(a).meta == {"contributes_to": {}}
            assert versions(storage, a, d, e) == [0, 1, 1]
            influxd.start()
            assert snapshot(storage, [a, d, e]) == before
            storage.commit(batch())
            assert ids_of(storage.find_streams(None)) == [a, e, c]
            assert storage.get_stream(a).meta == {"contributes_to": {c: {}}}
            assert storage.read_raw(a, None, None).num_rows == n
            assert raw_pairs(storage, e) == [(1, 1), (5, 50)]
            assert storage.read_raw(d, None, None).num_rows == 0
        finally:
            storage.close()


# -- truncate_raw --------------------------------------------------------------------------------


def test_failed_truncating_commit_hides_nothing(storage, monkeypatch):
    a = add_stream(storage, {"n": 1})
    storage.commit(WriteBatch(raw={a: raw_rows([10, 20, 30], ints=[1, 2, 3])}))
    before = raw_pairs(storage, a)

    def down(self, client, body):
        raise OSError("network down")

    monkeypatch.setattr(store.InfluxDBStorage, "_write_chunk", down)
    with pytest.raises(exceptions.StreamAppendFailed):
        storage.commit(WriteBatch(raw={a: raw_rows([20], ints=[7])}, truncate_raw={a: 15}))
    monkeypatch.undo()
    assert raw_pairs(storage, a) == before
    real = storage._metadata.connection()
    storage._metadata.pg = CommitFailsOnce(real, reach_server=False)
    with pytest.raises(exceptions.StreamAppendFailed):
        storage.commit(WriteBatch(truncate_raw={a: 15}))
    storage._metadata.pg = real
    assert raw_pairs(storage, a) == before
    storage.commit(WriteBatch(raw={a: raw_rows([20], ints=[7])}, truncate_raw={a: 15}))
    assert raw_pairs(storage, a) == [(10, 1), (20, 7)]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.integers(0, 40), st.lists(st.integers(0, 40), max_size=4),
                                st.booleans()), min_size=1, max_size=12))
def test_many_truncations_read_like_deletions(storage, monkeypatch, steps):
    """Against a list model; a small MAX_CUTS makes the cut list merge (and copy) often."""
    monkeypatch.setattr(store, "MAX_CUTS", 2)
    a = add_stream(storage, {"stream": new_id()})
    model: list[tuple[int, int]] = []
    for number, (cut, times, truncate) in enumerate(steps):
        times = sorted(times)
        values = [number * 10 + k for k in range(len(times))]
        batch = WriteBatch(raw={a: raw_rows(times, ints=values)})
        if truncate:
            batch.truncate_raw = {a: cut}
            model = [(t, v) for t, v in model if t < cut]
        model += list(zip(times, values))
        storage.commit(batch)
        assert raw_pairs(storage, a) == sorted(model, key=lambda pair: pair[0])
        assert len(storage._metadata.view(a)[0].store["raw"]["cut"]) <= 2


def test_derived_streams_fed_late_points_read_as_on_duckdb(influx_factory, monkeypatch):
    """End to end through the engine: late points re-derive derived streams (truncate_raw),
    and the result equals the embedded store's, also while cuts merge."""
    monkeypatch.setattr(store, "MAX_CUTS", 2)
    chance = random.Random(5)
    appends = [(chance.randint(0, 1), chance.randint(0, 200) / 4, chance.randint(0, 9),
                chance.random() < 0.3) for _ in range(80)]
    start = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
    now = start + datetime.timedelta(days=1)

    def replay(backend):
        ds = datastream.Datastream(backend, clock=lambda: now)
        a = ds.ensure_stream({"n": "a"}, {}, ["mean"])
        b = ds.ensure_stream({"n": "b"}, {}, ["mean"])
        slope = ds.ensure_stream({"n": "d"}, {}, ["mean"], derive_from=a,
                                 derive_op="derivative")
        total = ds.ensure_stream({"n": "s"}, {}, ["mean"], derive_from=[a, b], derive_op="sum")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", exceptions.InvalidValueWarning)
            for source, seconds, value, flush in appends:
                ds.append([a, b][source], value, start + datetime.timedelta(seconds=seconds),
                          check_timestamp=False)
                if flush:
                    ds.flush()
            ds.flush()
        result = [[(p["t"], p["v"]) for p in ds.get_data(x, datastream.Granularity.Seconds,
                                                          start=datetime.datetime.min)]
                  for x in (slope, total)]
        cuts = [len(backend._metadata.view(x)[0].store["raw"]["cut"]) for x in (slope, total)
                if isinstance(backend, store.InfluxDBStorage)]
        ds.close()
        return result, cuts

    expected, _ = replay(duckdb_backend.Backend())
    got, cuts = replay(influx_factory())
    assert all(expected) and got == expected
    assert 0 < max(cuts) <= 2  # truncations happened; the cut list stayed bounded


# -- two processes -------------------------------------------------------------------------------


@pytest.mark.parametrize("old", ["1", "2"])
def test_a_metadata_schema_of_another_version_is_refused(storage, influx_factory, old):
    """Version 2 stored ``k`` and ``_batch`` as fields and floats only as floats: its points
    would read wrongly with the version 3 layout, so its stores are refused by name."""
    with storage._metadata.transaction() as cur:
        cur.execute("UPDATE datastream_info SET value = %s WHERE key = 'schema_version'", [old])
    with pytest.raises(store.StorageUnavailable,
                       match=f"schema version {old}, this datastream reads 3: the InfluxDB point"
                             " layout changed"):
        influx_factory()


def test_opening_a_store_waits_for_no_commit_in_progress(storage, influx_factory):
    """Another process's commit holds row locks on the metadata tables: opening the store
    next to it only reads the schema (its DDL, even IF NOT EXISTS, would queue behind the
    commit for table locks and could deadlock with it)."""
    opened: list = []

    def open_store() -> None:
        try:
            opened.append(influx_factory())
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            opened.append(error)

    with pytest.raises(RuntimeError, match="rolled back"):
        with storage._metadata.transaction() as cur:
            cur.execute("LOCK TABLE datastream_info, datastream_streams, datastream_batches,"
                        " datastream_pending, datastream_levels, datastream_locks,"
                        " datastream_garbage, datastream_trims IN ROW EXCLUSIVE MODE")
            opener = threading.Thread(target=open_store, daemon=True)
            opener.start()
            opener.join(timeout=20)
            assert opened and isinstance(opened[0], store.InfluxDBStorage), opened
            raise RuntimeError("rolled back")
    opener.join(timeout=20)
    opened[0].close()


def test_a_missing_relation_is_created_at_the_next_open(storage, influx_factory):
    with storage._metadata.transaction() as cur:
        cur.execute("DROP INDEX datastream_pending_streams")
        cur.execute("DROP TABLE datastream_trims")
    influx_factory().close()
    with storage._metadata.transaction() as cur:
        cur.execute("SELECT to_regclass('datastream_pending_streams') IS NOT NULL,"
                    " to_regclass('datastream_trims') IS NOT NULL")
        assert cur.fetchone() == (True, True)


# -- the point layout (schema version 3) and the recent raw rows ----------------------------------


def show_field_keys(storage, measurement: str) -> dict[str, str]:
    result = storage._influx().query(f"SHOW FIELD KEYS FROM {lp.quote_identifier(measurement)}")
    return {row["fieldKey"]: row["fieldType"] for row in result.get_points()}


@given(st.lists(st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.builds(round, st.floats(-1e12, 1e12), st.integers(0, 12)),
    st.integers(-(2**60), 2**60).map(float),
), max_size=60))
@settings(max_examples=300, deadline=None)
def test_decimal_mantissas_decode_to_the_same_bits(values):
    array = np.array(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(array) & ~((array == 0) & np.signbit(array))
    scale, mantissas, exact = lp.decimal_mantissas(array, finite)
    if scale is None:
        assert not exact.any()
        return
    assert not (exact & ~finite).any()
    assert exact.sum() >= lp.MIN_DECIMAL_SHARE * finite.sum()
    back = lp.decode_decimal(mantissas[exact], scale)
    assert back.view(np.int64).tolist() == array[exact].view(np.int64).tolist()


def test_raw_kinds_and_decimal_floats_round_trip_bit_exactly(storage):
    a = add_stream(storage, {"n": 1})
    rng = np.random.default_rng(3)
    decimals = np.round(rng.normal(20, 5, 400), 2)  # most values: mantissas at 10**-2
    full = rng.normal(0, 1, 200)
    odd = [0.1 + 0.2, 1e300, 5e-324, -0.0, 2.0**53, 1e15 + 0.3, math.nan, -math.inf]
    floats = np.concatenate([decimals, full, odd])
    n = len(floats)
    kinds = ([-128, 127, None, 0, 1, 3, 4, 5] * n)[:n]
    rows = raw_rows(list(range(n)), floats=floats.tolist(), kinds=kinds)
    storage.commit(WriteBatch(raw={a: rows}))
    fields = show_field_keys(storage, "datastream_raw")
    assert "k" not in fields and "_batch" not in fields
    assert fields["_kb"] == "integer" and fields["_d2_f"] == "integer" and fields["f"] == "float"
    storage._recent.clear()
    back = storage.read_raw(a, None, None)
    assert back.column("k").to_pylist() == kinds
    got = back.column("f").to_numpy(zero_copy_only=False)
    assert got.view(np.int64).tolist() == floats.view(np.int64).tolist()
    # a level column of short decimals goes the same way
    level = pa.table({"stream_id": [a] * 4, "t": [0, 10, 20, 30],
                      "l": pa.array([23.66, 23.7, None, -1e-9]),
                      "s": pa.array([0.1 + 0.2, 1.5, 2.25, math.inf])})
    storage.commit(WriteBatch(levels={"S": level}))
    got = storage.read_level("S", a, None, None)
    assert got.column("l").to_pylist() == [23.66, 23.7, None, -1e-9]
    assert got.column("s").to_pylist() == [0.1 + 0.2, 1.5, 2.25, math.inf]
    assert show_field_keys(storage, "datastream_level_S")["_d9_l"] == "integer"


def test_recent_raw_rows_read_like_the_server(storage, influx_factory):
    """Reads answered from the rows this storage committed equal what InfluxDB returns, and
    stop being used as soon as anything else changed the stream."""
    server = influx_factory()
    server._recent.limit = 0  # always asks InfluxDB
    a = add_stream(storage, {"n": 1})

    def same(start, end=None):
        for reverse in (True, False):
            mine = storage.read_raw(a, start, end, reverse=reverse)
            assert mine.equals(server.read_raw(a, start, end, reverse=reverse))
        return mine  # in time order

    storage.commit(WriteBatch(raw={a: raw_rows([5, 1, 5, 9], ints=[1, 2, 3, 4])}))
    assert a in storage._recent.entries and storage._recent.entries[a].after is None
    assert same(0).column("i").to_pylist() == [2, 1, 3, 4]
    storage.commit(WriteBatch(raw={a: raw_rows([9, 12], ints=[5, 6])}))  # extends the entry
    assert storage._recent.entries[a].rows == 6
    assert same(9, 13).column("i").to_pylist() == [4, 5, 6]
    storage.commit(WriteBatch(meta={a: MetaUpdate(set={"x": 1})}))  # moves the version only
    assert storage._recent.entries[a].version == storage.get_stream(a).version
    storage.commit(WriteBatch(raw={a: raw_rows([3, 20], ints=[7, 8])}))  # late row: above tail
    entry = storage._recent.entries[a]
    assert entry.after == 12 and entry.rows == 1
    assert same(13).column("i").to_pylist() == [8]
    assert same(0).column("i").to_pylist() == [2, 7, 1, 3, 4, 5, 6, 8]  # from the server
    server.commit(WriteBatch(raw={a: raw_rows([30], ints=[9])}))  # another writer
    assert same(13).column("i").to_pylist() == [8, 9]
    assert a not in storage._recent.entries
    storage.commit(WriteBatch(raw={a: raw_rows([40], ints=[10])}, truncate_raw={a: 20}))
    assert a not in storage._recent.entries
    assert same(0).column("i").to_pylist() == [2, 7, 1, 3, 4, 5, 6, 10]
    storage.commit(WriteBatch(raw={a: raw_rows([1, 2], ints=[11, 12])}, clear_raw=[a]))
    assert storage._recent.entries[a].after is None
    assert same(0).column("i").to_pylist() == [11, 12]
    storage.commit(WriteBatch(delete=[a]))
    assert a not in storage._recent.entries


def test_recent_raw_rows_are_bounded(influx_factory):
    storage = influx_factory()
    storage._recent.limit = 5
    a, b = add_stream(storage, {"n": 1}), add_stream(storage, {"n": 2})
    storage.commit(WriteBatch(raw={a: raw_rows([1, 2, 3], ints=[1, 2, 3])}))
    storage.commit(WriteBatch(raw={b: raw_rows([1, 2, 3], ints=[4, 5, 6])}))
    assert list(storage._recent.entries) == [b] and storage._recent.rows == 3
    storage.commit(WriteBatch(raw={b: raw_rows([4, 4, 5, 6], ints=[7, 8, 9, 10])}))
    entry = storage._recent.entries[b]
    assert entry.after == 2 and entry.rows == 5 and storage._recent.rows == 5
    storage._recent.limit = 4
    storage.commit(WriteBatch(raw={b: raw_rows([7], ints=[11])}))
    assert entry.after == 4 and entry.rows == 3  # both rows at 4 went
    assert storage.read_raw(b, 4, None).column("i").to_pylist() == [7, 8, 9, 10, 11]  # server
    assert storage.read_raw(b, 5, None).column("i").to_pylist() == [9, 10, 11]
    assert storage.read_raw(a, 0, None).column("i").to_pylist() == [1, 2, 3]


def test_large_batches_carry_their_number_in_a_tag(storage, influx_factory, monkeypatch):
    """Past TAG_BATCH_POINTS points of a stream in one batch, the batch number and kind move
    from a field per point to a tag (a point without any value field keeps the field); a
    failed write of such a batch stays invisible and truncation still hides by batch."""
    from datastream.storage.influxdb import points

    monkeypatch.setattr(points, "TAG_BATCH_POINTS", 4)
    server = influx_factory()
    server._recent.limit = 0
    a, b = add_stream(storage, {"n": 1}), add_stream(storage, {"n": 2})
    kinds = [2, 2, 0, 1, 4, None]
    rows = raw_rows([1, 2, 3, 3, 4, 5], ints=[None, None, None, 7, None, None],
                    floats=[1.25, 2.5, None, None, None, None],
                    texts=[None, None, None, None, '"x"', None], kinds=kinds)
    storage.commit(WriteBatch(raw={a: rows, b: raw_rows([1, 2], ints=[1, 2])}))
    tags = storage._influx().query('SHOW TAG VALUES FROM "datastream_raw" WITH KEY = "_b"')
    assert len(list(tags.get_points())) == 5  # one per kind of the large batch
    assert show_field_keys(storage, "datastream_raw")["_kb"] == "integer"  # b's and the nulls
    back = server.read_raw(a, None, None)
    assert back.column("k").to_pylist() == kinds
    assert back.column("i").to_pylist() == [None, None, None, 7, None, None]
    assert back.column("f").to_pylist() == [1.25, 2.5, None, None, None, None]
    assert server.read_raw(b, None, None).column("i").to_pylist() == [1, 2]

    before = snapshot(server, [a, b])
    original = store.InfluxDBStorage._write_chunk
    monkeypatch.setattr(store, "LINES_PER_REQUEST", 3)
    calls = []

    def flaky(self, client, body):
        if calls:
            raise OSError("network down")
        calls.append(body)
        original(self, client, body)

    monkeypatch.setattr(store.InfluxDBStorage, "_write_chunk", flaky)
    with pytest.raises(exceptions.StreamAppendFailed, match="network down"):
        storage.commit(WriteBatch(raw={a: raw_rows([5, 6, 7, 8, 9], ints=[1, 2, 3, 4, 5])}))
    monkeypatch.setattr(store.InfluxDBStorage, "_write_chunk", original)
    assert snapshot(server, [a, b]) == before
    storage.commit(WriteBatch(raw={a: raw_rows([5, 6, 7, 8, 9], floats=[0.5] * 5, kinds=[2] * 5)},
                              truncate_raw={a: 3}))
    back = server.read_raw(a, None, None)
    assert back.column("t").to_pylist() == [1, 2, 5, 6, 7, 8, 9]
    assert back.column("f").to_pylist() == [1.25, 2.5] + [0.5] * 5
    assert back.column("i").to_pylist() == [None] * 7  # no leftover of the failed attempt
    assert storage.read_raw(a, 5, None).equals(server.read_raw(a, 5, None))


# -- drops by time (retention, reopening) ---------------------------------------------------------


def stored_points(storage, stream_id, measurement=store.RAW_MEASUREMENT) -> list[int]:
    """Times (µs) of every point of a stream epoch in InfluxDB, hidden ones included."""
    from datastream.storage.influxdb import points

    view = storage._metadata.view(stream_id)[0]
    raw = measurement == store.RAW_MEASUREMENT
    epoch = view.store["raw" if raw else "lv"]["e"]
    fields = points.stored_fields(RAW_SCHEMA) if raw else ()
    columns, count = storage._select(measurement, stream_id, epoch, points.MIN_NS,
                                     points.MAX_NS, fields=fields)
    return sorted((np.asarray(columns["time"]) // 1000).tolist()) if count else []


def pending_drops(storage, stream_id) -> list:
    store_ = storage._metadata.view(stream_id)[0].store
    return store_["raw"].get("drop", []) + store_["lv"].get("drop", [])


def level_table(stream_id, times, counts):
    return pa.table({"stream_id": [stream_id] * len(times), "t": pa.array(times, pa.int64()),
                     "c": pa.array(counts, pa.int64())})


def test_dropped_points_are_deleted_after_the_commit(storage):
    a, b = add_stream(storage, {"n": 1}), add_stream(storage, {"n": 2})
    times = list(range(0, 100, 10))
    storage.commit(WriteBatch(raw={a: raw_rows(times, ints=times), b: raw_rows(times, ints=times)},
                              levels={"S": level_table(a, times, times)}))
    storage.commit(WriteBatch(drop_raw_before={a: 45}, drop_levels_from={"S": {a: 70}}))
    assert stored_points(storage, a) == times[5:]
    assert stored_points(storage, b) == times
    assert stored_points(storage, a, "datastream_level_S") == times[:7]
    assert pending_drops(storage, a) == []
    assert storage._metadata.fetch("SELECT count(*) FROM datastream_trims") == [(0,)]
    assert raw_pairs(storage, a) == [(t, t) for t in times[5:]]


def test_dropped_points_stay_hidden_until_influxdb_can_delete_them(storage, monkeypatch):
    from datastream.storage.influxdb import points

    a, b = add_stream(storage, {"n": 1}), add_stream(storage, {"n": 2})
    times = list(range(0, 100, 10))
    storage.commit(WriteBatch(raw={a: raw_rows(times, ints=times)},
                              levels={"S": level_table(a, times, times)}))

    def unreachable(*args, **kwargs):
        raise requests.ConnectionError("influxd is down")

    monkeypatch.setattr(points, "delete", unreachable)
    storage.commit(WriteBatch(drop_raw_before={a: 45}, drop_levels_before={"S": {a: 30}}))
    assert raw_pairs(storage, a) == [(t, t) for t in times[5:]]
    assert storage.read_level("S", a, None, None).column("t").to_pylist() == times[3:]
    assert stored_points(storage, a) == times  # still on disk, hidden
    # rows written meanwhile where the drop hides the old ones stay visible for good
    storage.commit(WriteBatch(raw={a: raw_rows([20, 20], ints=[-1, -2])},
                              levels={"S": level_table(a, [10], [-1])}))
    monkeypatch.undo()
    storage.commit(WriteBatch(raw={b: raw_rows([1])}))  # any commit tries again
    assert stored_points(storage, a) == [20, 20] + times[5:]
    assert stored_points(storage, a, "datastream_level_S") == [10] + times[3:]
    assert raw_pairs(storage, a) == [(20, -1), (20, -2)] + [(t, t) for t in times[5:]]
    assert storage.read_level("S", a, None, None).column("c").to_pylist() == [-1, *times[3:]]
    assert pending_drops(storage, a) == []


def test_reopened_levels_keep_only_the_new_versions_on_disk(storage):
    a = add_stream(storage, {"n": 1})
    times = list(range(0, 100, 10))
    storage.commit(WriteBatch(levels={"S": level_table(a, times, [1] * 10),
                                      "m": level_table(a, times, [1] * 10)}))
    storage.commit(WriteBatch(drop_levels_from={"S": {a: 50}},
                              levels={"S": level_table(a, [50, 60, 75], [2, 2, 2])}))
    rows = storage.read_level("S", a, None, None)
    assert list(zip(rows.column("t").to_pylist(), rows.column("c").to_pylist())) == \
        [(t, 1) for t in times[:5]] + [(50, 2), (60, 2), (75, 2)]
    assert stored_points(storage, a, "datastream_level_S") == times[:5] + [50, 60, 75]
    assert stored_points(storage, a, "datastream_level_m") == times
    assert pending_drops(storage, a) == []


def test_a_failed_dropping_commit_hides_nothing(storage, monkeypatch):
    a = add_stream(storage, {"n": 1})
    storage.commit(WriteBatch(raw={a: raw_rows([10, 20, 30], ints=[1, 2, 3])},
                              levels={"S": level_table(a, [10, 20], [1, 1])}))
    before = snapshot(storage, [a], ("S",))

    def down(self, client, body):
        raise OSError("network down")

    batch = WriteBatch(raw={a: raw_rows([40], ints=[4])}, drop_raw_before={a: 25},
                       drop_levels_from={"S": {a: 20}},
                       levels={"S": level_table(a, [20], [5])})
    monkeypatch.setattr(store.InfluxDBStorage, "_write_chunk", down)
    with pytest.raises(exceptions.StreamAppendFailed):
        storage.commit(batch)
    monkeypatch.undo()
    assert snapshot(storage, [a], ("S",)) == before
    assert pending_drops(storage, a) == []
    storage.commit(batch)  # a retry is a new batch
    assert raw_pairs(storage, a) == [(30, 3), (40, 4)]
    assert storage.read_level("S", a, None, None).column("c").to_pylist() == [1, 5]


def test_long_level_texts_are_stored_in_pieces(influx_factory, monkeypatch):
    """A level text longer than one field may hold (a frequency table of many large values)
    continues in piece fields on lines of their own, merged by InfluxDB into the same point;
    it reads back whole, at every level and after a rewrite of the bucket, as on DuckDB."""
    monkeypatch.setattr(lp, "PIECE_BYTES", 1000)
    start = datetime.datetime(2000, 1, 1, 12, tzinfo=datetime.timezone.utc)

    def run(ds):
        stream = ds.ensure_stream({"n": "texts"}, {}, ["frequencies", "most_often"],
                                  datastream.Granularity.Seconds, value_type="nominal")
        values = [chr(0x41 + n) * 700 for n in range(5)] + ["é€😀" * 300, "short"]
        for index, value in enumerate(values * 2):
            ds.append(stream, value, start + datetime.timedelta(seconds=index * 0.5))
        ds.append(stream, "end", start + datetime.timedelta(seconds=30))
        ds.downsample_streams(until=start + datetime.timedelta(seconds=30))
        ds.reopen_streams({"n": "texts"}, start)  # the buckets are written again
        ds.downsample_streams(until=start + datetime.timedelta(seconds=30))
        return {level: [p["v"] for p in ds.get_data(stream, level, start=start)]
                for level in ("10seconds", "minutes")}

    with datastream.Datastream() as embedded:
        expected = run(embedded)
    with datastream.Datastream(influx_factory()) as ds:
        assert run(ds) == expected
    with datastream.Datastream(influx_factory()) as reader:  # another object, same store
        stream = reader.find_streams({"n": "texts"})[0]["stream_id"]
        assert [p["v"] for p in reader.get_data(stream, "minutes", start=start)] == (
            expected["minutes"])
        assert not reader.verify()
    assert sum(expected["10seconds"][0]["f"].values()) == 14
    pieces, rest = lp.text_pieces(pa.array(["é€😀" * 300, None, "x"]))
    assert [len(p.encode()) <= 1000 for p in pieces.to_pylist() if p] == [True, True]
    assert "".join(p for p in [pieces[0].as_py(), *(r[0].as_py() for r in rest)] if p) == (
        "é€😀" * 300)
    assert all(r[1].as_py() is None and r[2].as_py() is None for r in rest)
