"""MongoDB raw chunks: codec chunks in documents, the schema version, damage, two writers."""

from __future__ import annotations

import datetime
import math
import struct

import numpy as np
import pyarrow as pa
import pytest
from bson import Binary, ObjectId

import datastream
from datastream import exceptions
from datastream.storage import codec
from datastream.storage.base import RAW_SCHEMA, StreamRecord, WriteBatch
from datastream.storage.mongodb import chunks
from datastream.storage.mongodb import storage as store
from tests.storage.rows import new_id, raw_rows

UTC = datetime.timezone.utc


@pytest.fixture
def storage(mongo_factory):
    return mongo_factory()


def add_stream(storage) -> str:
    stream_id = new_id()
    storage.create_stream(StreamRecord(stream_id, {"name": stream_id}, {}), {"name": stream_id})
    return stream_id


def raw_docs(storage, stream_id) -> list[dict]:
    return list(storage._db["raw"].find({"sid": stream_id}).sort("t0", 1))


def float_bits(table: pa.Table) -> list:
    """The f column as bit patterns (None for nulls): NaN payloads and -0.0 compare exactly."""
    column = table.column("f").combine_chunks()
    bits = column.fill_null(0.0).to_numpy(zero_copy_only=False).view(np.int64).tolist()
    return [b if valid else None for b, valid in zip(bits, column.is_valid().to_pylist())]


def same_rows(got: pa.Table, expected: pa.Table) -> None:
    assert got.schema == RAW_SCHEMA
    for name in ("t", "k", "i", "s"):
        assert got.column(name).to_pylist() == expected.column(name).to_pylist(), name
    assert float_bits(got) == float_bits(expected)


# -- what is stored ----------------------------------------------------------------------------


def test_a_chunk_document_holds_one_codec_chunk_and_the_queried_fields(storage):
    stream_id = add_stream(storage)
    rows = raw_rows([30, 10, 20], floats=[3.5, 1.5, 2.5], kinds=[2, 2, 2])
    storage.commit(WriteBatch(raw={stream_id: rows}))
    (doc,) = raw_docs(storage, stream_id)
    assert set(doc) == {"_id", "sid", "q", "b", "p", "n", "t0", "t1", "c"}
    assert (doc["p"], doc["n"], doc["t0"], doc["t1"], doc["q"]) == (0, 3, 10, 30, 1)
    assert isinstance(doc["c"], bytes)
    assert codec.chunk_stats(doc["c"]) == (3, 10, 30)
    assert codec.decode_raw(doc["c"]).column("f").to_pylist() == [1.5, 2.5, 3.5]
    info = storage._db["datastream_info"].find_one({"_id": "schema_version"})
    assert info["value"] == store.SCHEMA_VERSION == "2"


NAN_PAYLOADS = [struct.unpack("<d", struct.pack("<Q", bits))[0]
                for bits in (0x7FF8000000000000, 0xFFF8000000000001, 0x7FF0000000000DEA)]
GRAPH = '{"e":[{"f":"a","t":2,"w":0.5}],"n":"g","v":[{"i":"a","x":1},{"i":2}]}'


def test_every_value_kind_round_trips_bit_for_bit(storage):
    stream_id = add_stream(storage)
    floats = [-0.0, 0.0, math.inf, -math.inf, 5e-324, 1e308, 0.1, *NAN_PAYLOADS]
    ints = [0, -1, 2**63 - 1, -(2**63), 12345678901234]
    texts = ['"idle"', '"busy"', "3", "true", '{"mode":"x"}', '["a",1]', GRAPH, '"é\\u0000✓"',
             '""', "12345678901234567890.123456789", '{"c":3,"s":"1.5"}']
    rows = []  # (kind, int, float, text): every kind, nulls in between
    rows += [(2, None, f, None) for f in floats]
    rows += [(1, i, None, None) for i in ints]
    rows += [(4, None, None, s) for s in texts[:6]]
    rows += [(4, None, None, texts[6]), (0, None, None, None), (4, None, None, texts[7])]
    rows += [(4, None, None, texts[8]), (3, None, None, texts[9]), (5, None, None, texts[10])]
    rows += [(0, None, None, None)] * 3
    times = [1_000 * n for n in range(len(rows))]
    kinds, i, f, s = (list(column) for column in zip(*rows))
    table = raw_rows(times, ints=i, floats=f, texts=s, kinds=kinds)
    storage.commit(WriteBatch(raw={stream_id: table}))
    same_rows(storage.read_raw(stream_id, None, None), table)
    same_rows(storage.read_raw(stream_id, times[3], times[20]), table.slice(3, 17))
    # all-null columns and a single row
    other = add_stream(storage)
    single = raw_rows([7], kinds=[0])
    storage.commit(WriteBatch(raw={other: single}))
    same_rows(storage.read_raw(other, None, None), single)


def test_rows_of_many_chunks_and_writes_read_in_order(storage):
    stream_id = add_stream(storage)
    hour = chunks.CHUNK_SPAN_US
    rng = np.random.default_rng(3)
    first = np.sort(rng.integers(0, 3 * hour, 9_000))
    storage.commit(WriteBatch(raw={stream_id: raw_rows(first, floats=rng.normal(size=9_000),
                                                       kinds=[2] * 9_000)}))
    second = rng.integers(hour, 2 * hour, 500)  # unsorted, inside the first write's span
    storage.commit(WriteBatch(raw={stream_id: raw_rows(second, ints=list(range(500)))}))
    docs = raw_docs(storage, stream_id)
    assert len(docs) >= 4 and all(d["n"] <= chunks.CHUNK_ROWS for d in docs)
    got = storage.read_raw(stream_id, None, None)
    t = got.column("t").to_numpy()
    assert got.num_rows == 9_500 and np.all(t[1:] >= t[:-1])
    later = got.filter(pa.compute.equal(got.column("k"), 1))
    assert sorted(later.column("i").to_pylist()) == list(range(500))
    backwards = storage.read_raw(stream_id, hour, 2 * hour, reverse=True).column("t").to_numpy()
    assert np.all(backwards[1:] <= backwards[:-1]) and backwards.min() >= hour


# -- decode against a reference ----------------------------------------------------------------


def reference(docs, start, end, reverse, cuts):
    """(t, q, position, i) of the visible rows, in the order reads promise."""
    rows = []
    for doc in docs:
        table = codec.decode_raw(doc["c"])
        for j, (t, i) in enumerate(zip(table.column("t").to_pylist(),
                                       table.column("i").to_pylist())):
            if start is not None and t < start or end is not None and t >= end:
                continue
            if any(doc["q"] < cut_q and t >= cut_t for cut_t, cut_q in cuts):
                continue
            rows.append((t, doc["q"], doc["p"] + j, i))
    rows.sort(key=lambda row: (-row[0] if reverse else row[0], row[1], row[2]))
    return [row[3] for row in rows]


@pytest.mark.parametrize("seed", range(60))
def test_decode_matches_a_reference(seed, monkeypatch):
    """Chunks in any order, of writes overlapping or not, sharing boundary times; ranges,
    cuts and reverse: the result is the reference's whichever path decode takes."""
    monkeypatch.setattr(chunks, "CHUNK_ROWS", int(np.random.default_rng(seed).integers(1, 8)))
    rng = np.random.default_rng(seed)
    docs, serial = [], 0
    last_t = 0
    for q in range(1, int(rng.integers(2, 6))):
        count = int(rng.integers(1, 20))
        style = rng.random()
        if style < 0.4:  # after the previous writes, maybe sharing a time
            times = last_t + np.cumsum(rng.integers(0, 3, count))
        elif style < 0.7:  # a narrow window, overlapping the previous ones a little
            times = max(0, last_t - int(rng.integers(0, 3))) + rng.integers(0, 4, count)
        else:
            times = rng.integers(0, 40, count)
        last_t = int(times.max())
        table = raw_rows(times, ints=list(range(serial, serial + count)))
        serial += count
        docs += [{**doc, "q": q, "_id": ObjectId()} for doc in chunks.encode("s", table)]
    rng.shuffle(docs)
    cuts = [(int(rng.integers(0, 60)), int(rng.integers(1, 6)))
            for _ in range(int(rng.integers(0, 3)))]
    bounds = [None, *map(int, rng.integers(0, 60, 2))]
    start, end = rng.choice(bounds), rng.choice(bounds)
    for reverse in (False, True):
        got = chunks.decode(docs, start, end, reverse, cuts).column("i").to_pylist()
        assert got == reference(docs, start, end, reverse, cuts)


# -- truncation -------------------------------------------------------------------------------


def test_chunks_sharing_a_boundary_time_keep_write_order():
    """Rows at one time come in write order, also when a later write's chunk starts first."""
    docs = []
    for q, times in ((1, [5, 5]), (2, [3, 5]), (3, [5, 6])):
        table = raw_rows(times, ints=[10 * q + n for n in range(len(times))])
        docs += [{**doc, "q": q, "_id": ObjectId()} for doc in chunks.encode("s", table)]
    assert chunks.decode(docs, None, None, False).column("i").to_pylist() \
        == [20, 10, 11, 21, 30, 31]
    overlapping = [{**doc, "q": 4, "_id": ObjectId()}
                   for doc in chunks.encode("s", raw_rows([2, 4], ints=[40, 41]))]
    assert chunks.decode(docs[1:2] + overlapping, None, None, False).column("i").to_pylist() \
        == [40, 20, 41, 21]


def test_cuts_hide_rows_inside_codec_chunks(storage, monkeypatch):
    monkeypatch.setattr(chunks, "CHUNK_ROWS", 4)
    a = add_stream(storage)
    storage.commit(WriteBatch(raw={a: raw_rows(list(range(10)), ints=list(range(10)))}))
    storage.commit(WriteBatch(raw={a: raw_rows([5, 6], ints=[50, 60])}, truncate_raw={a: 6}))
    # the cut at 6 falls inside the chunk t 4-7 of the first write; the new rows stay
    assert storage.read_raw(a, None, None).column("i").to_pylist() == [0, 1, 2, 3, 4, 5, 50, 60]
    assert storage.read_raw(a, 5, 7, reverse=True).column("i").to_pylist() == [60, 5, 50]
    stored = [(d["t0"], d["q"]) for d in raw_docs(storage, a)]
    assert (8, 1) not in stored and (4, 1) in stored  # wholly cut chunks are collected
    storage.commit(WriteBatch(truncate_raw={a: 5}))
    assert storage.read_raw(a, None, None).column("i").to_pylist() == [0, 1, 2, 3, 4]
    storage.commit(WriteBatch(raw={a: raw_rows([9], ints=[9])}))  # later rows are not cut
    assert storage.read_raw(a, 4, None).column("i").to_pylist() == [4, 9]
    assert storage.read_raw(a, None, None, reverse=True).column("i").to_pylist() \
        == [9, 4, 3, 2, 1, 0]


# -- damage and other formats -----------------------------------------------------------------


def damage(storage, stream_id, change) -> None:
    doc = raw_docs(storage, stream_id)[0]
    storage._db["raw"].update_one({"_id": doc["_id"]}, change(doc))


def test_a_damaged_chunk_raises_a_clear_error(storage):
    stream_id = add_stream(storage)
    storage.commit(WriteBatch(raw={stream_id: raw_rows(list(range(100)),
                                                       ints=list(range(100)))}))

    def flip(doc):
        body = bytearray(doc["c"])
        body[-3] ^= 0x10
        return {"$set": {"c": Binary(bytes(body))}}

    damage(storage, stream_id, flip)
    with pytest.raises(exceptions.DatastreamException,
                       match=rf"raw chunk \w+ of stream '{stream_id}' is damaged: corrupted"
                             r" chunk: body checksum mismatch"):
        storage.read_raw(stream_id, None, None)
    damage(storage, stream_id, lambda doc: {"$set": {"c": Binary(doc["c"][:20])}})
    with pytest.raises(exceptions.DatastreamException, match="is damaged: not a datastream"):
        storage.read_raw(stream_id, 10, 20)


@pytest.mark.parametrize("field, value, claimed", [
    ("n", 2, r"\(2, 1, 3\)"), ("t0", 0, r"\(3, 0, 3\)"), ("t1", 2, r"\(3, 1, 2\)")])
def test_a_document_that_disagrees_with_its_chunk_is_damaged(storage, field, value, claimed):
    stream_id = add_stream(storage)
    storage.commit(WriteBatch(raw={stream_id: raw_rows([1, 2, 3])}))
    damage(storage, stream_id, lambda doc: {"$set": {field: value}})
    with pytest.raises(exceptions.DatastreamException,
                       match=rf"is damaged: it holds \(rows, first t, last t\) = \(3, 1, 3\),"
                             rf" its document says {claimed}"):
        storage.read_raw(stream_id, None, None)


def test_a_chunk_in_the_old_layout_is_refused_when_read(storage):
    """Written by an older datastream into a database of this version (it never checks)."""
    stream_id = add_stream(storage)
    storage.commit(WriteBatch(raw={stream_id: raw_rows([1, 2, 3])}))
    damage(storage, stream_id, lambda doc: {"$unset": {"c": ""},
                                            "$set": {"t": Binary(b"\0" * 24)}})
    with pytest.raises(exceptions.DatastreamException,
                       match="holds no codec chunk: it was written in another storage format"):
        storage.read_raw(stream_id, None, None)


def old_layout_chunk(stream_id: str) -> dict:
    """A raw chunk document of storage schema version 1 (each column packed apart)."""
    t = np.array([1, 2], np.int64)
    return {"sid": stream_id, "q": 1, "b": ObjectId(), "p": 0, "n": 2, "t0": 1, "t1": 2,
            "t": Binary(t.tobytes()), "k": Binary(b"\x01\x01"), "i": Binary(t.tobytes())}


def test_a_database_of_schema_version_1_is_refused(mongo_factory):
    client = mongo_factory.client
    stream_id = new_id()
    database = client[mongo_factory.database_name]
    database["streams"].insert_one({"_id": stream_id, "order": 1, "qkey": "k", "tags": {},
                                    "meta": {}, "v": 0, "w": {"seq": 1, "open": []}})
    database["raw"].insert_one(old_layout_chunk(stream_id))
    with pytest.raises(exceptions.StorageUnavailable,
                       match="has storage schema version 1, this datastream reads version 2"):
        mongo_factory()
    assert database["datastream_info"].find_one({}) is None  # nothing written


def test_another_stored_version_is_refused(mongo_factory):
    mongo_factory().close()
    info = mongo_factory.client[mongo_factory.database_name]["datastream_info"]
    info.update_one({"_id": "schema_version"}, {"$set": {"value": "3"}})
    with pytest.raises(exceptions.StorageUnavailable, match="has storage schema version 3"):
        mongo_factory()


def test_a_database_without_raw_chunks_is_adopted(mongo_factory):
    """A version-1 database that holds no raw chunk has nothing this version cannot read."""
    first = mongo_factory()
    stream_id = add_stream(first)
    first.commit(WriteBatch(raw={stream_id: raw_rows([1, 2], ints=[1, 2])}))
    database = mongo_factory.client[mongo_factory.database_name]
    database["datastream_info"].delete_many({})  # as before the version was stored
    second = mongo_factory()  # codec chunks only: adopted
    assert second.read_raw(stream_id, None, None).column("i").to_pylist() == [1, 2]
    assert database["datastream_info"].find_one({})["value"] == "2"


def test_an_owned_client_is_closed_when_the_version_is_refused(monkeypatch):
    import mongomock

    closed = []
    client = mongomock.MongoClient()
    client["old"]["raw"].insert_one(old_layout_chunk("s"))
    monkeypatch.setattr(store.pymongo, "MongoClient", lambda **options: client)
    monkeypatch.setattr(client, "close", lambda: closed.append(1), raising=False)
    with pytest.raises(exceptions.StorageUnavailable, match="schema version 1"):
        store.MongoDBStorage("old", host="example.invalid")
    assert closed == [1]


# -- two Datastream objects over one client -----------------------------------------------------


def test_chunks_written_by_one_datastream_are_read_by_another(mongo_factory):
    first = datastream.Datastream(mongo_factory())
    second = datastream.Datastream(mongo_factory())
    try:
        base = datetime.datetime(2026, 1, 1, tzinfo=UTC)
        stream_id = first.ensure_stream({"n": 1}, {}, ["mean"], "seconds")
        graph_id = first.ensure_stream({"n": 2}, {}, ["count"], "seconds", value_type="graph")
        values = [1, -0.0, 2.5, None, 2**62, 1e-300, 0.01]
        for n, value in enumerate(values):
            first.append(stream_id, value, base + datetime.timedelta(seconds=n))
        graph = {"v": [{"i": "a"}, {"i": 2}], "e": [{"f": "a", "t": 2}]}
        first.append(graph_id, graph, base)
        first.flush()
        assert second.find_streams({"n": 1})[0]["stream_id"] == stream_id
        got = [p["v"] for p in second.get_data(stream_id, "seconds", start=base)]
        assert got == values
        assert math.copysign(1, got[1]) == -1 and type(got[4]) is int
        assert [p["v"] for p in second.get_data(graph_id, "seconds", start=base)] == [graph]
        # and back: the second writes, the first reads both writes
        second.append(stream_id, 7, base + datetime.timedelta(seconds=100))
        second.flush()
        got = [p["v"] for p in first.get_data(stream_id, "seconds", start=base)]
        assert got == [*values, 7]
        database = mongo_factory.client[mongo_factory.database_name]
        chunk_docs = list(database["raw"].find({"sid": stream_id}))
        assert len(chunk_docs) == 2 and all("c" in doc for doc in chunk_docs)
    finally:
        first.close()
        second.close()
