"""The storage contract on MongoDB (mongomock, and a real server when configured)."""

from __future__ import annotations

import threading
import time
import warnings

import numpy as np
import pyarrow as pa
import pytest

from datastream import exceptions
from datastream.backends import mongodb as mongodb_backend
from datastream.storage.base import MetaUpdate, StreamRecord, WriteBatch
from datastream.storage.mongodb import storage as store
from tests.mongo_support import storage_factory
from tests.storage.rows import new_id, raw_rows

HOUR = 3600 * 1_000_000


@pytest.fixture
def factory(mongo_factory):
    return mongo_factory


@pytest.fixture
def storage(mongo_factory):
    return mongo_factory()


def level_rows(stream_id, times, counts, sums=None) -> pa.Table:
    n = len(times)
    return pa.table(
        {
            "stream_id": pa.array([stream_id] * n, pa.string()),
            "t": pa.array(times, pa.int64()),
            "c": pa.array(counts, pa.int64()),
            "s": pa.array(sums if sums is not None else [None] * n, pa.float64()),
            "x": pa.array([None] * n, pa.string()),
        }
    )


def add_stream(storage, tags: dict | None = None, meta: dict | None = None) -> str:
    stream_id = new_id()
    tags = tags if tags is not None else {"name": stream_id}
    storage.create_stream(StreamRecord(stream_id, tags, meta or {}), tags)
    return stream_id


def times_of(storage, stream_id, start=None, end=None, reverse=False) -> list[int]:
    return storage.read_raw(stream_id, start, end, reverse).column("t").to_pylist()


def ints_of(storage, stream_id, start=None, end=None, reverse=False) -> list[int]:
    return storage.read_raw(stream_id, start, end, reverse).column("i").to_pylist()


def observable(storage, stream_ids, level_keys=("S",)) -> dict:
    """Everything a reader can see of some streams, to compare around a failed write."""
    return {
        "records": [(r.stream_id, r.tags, r.meta) for r in storage.find_streams(None)],
        "raw": {i: storage.read_raw(i, None, None).to_pylist() for i in stream_ids},
        "levels": {
            (key, i): None if (rows := storage.read_level(key, i, None, None)) is None
            else rows.to_pylist()
            for key in level_keys
            for i in stream_ids
        },
    }


def collection(storage, name):
    return storage._db[name]


# -- records -----------------------------------------------------------------------------------


def test_backend_import_path():
    assert mongodb_backend.Backend is store.MongoDBStorage


def test_plain_mongomock_client_and_unreachable_server():
    import mongomock

    storage = mongodb_backend.Backend("plain", client=mongomock.MongoClient())
    stream_id = add_stream(storage)
    storage.commit(WriteBatch(raw={stream_id: raw_rows([1], ints=[1])}))
    assert ints_of(storage, stream_id) == [1]
    storage.close()
    with pytest.raises(exceptions.DatastreamException, match="unavailable"):
        mongodb_backend.Backend("db", host="127.0.0.1", port=9, serverSelectionTimeoutMS=200)
    with pytest.raises(exceptions.DatastreamException, match="unavailable"):
        mongodb_backend.Backend("db", uri="mongodb://127.0.0.1:9/", serverSelectionTimeoutMS=200)


def test_interrupted_delete_stays_hidden_until_recovered(factory):
    storage = factory()
    ids = [add_stream(storage) for _ in range(3)]
    for stream_id in ids:
        storage.commit(WriteBatch(raw={stream_id: raw_rows([1], ints=[1])}))
    fail_on(factory, "raw", "delete_many", times=100)  # rows cannot be removed for now
    with pytest.warns(exceptions.InternalInconsistencyWarning):
        storage.delete_streams(ids[:2])
    factory.client.fault = None
    # Committed: hidden from readers, though the documents and rows are still there.
    assert [r.stream_id for r in storage.find_streams(None)] == ids[2:]
    assert storage.get_stream(ids[0]) is None
    assert storage.record_version(ids[0]) is None
    assert times_of(storage, ids[0]) == []
    assert collection(storage, "streams").count_documents({"gone": {"$exists": True}}) == 2
    assert collection(storage, "raw").count_documents({}) == 3
    with pytest.raises(exceptions.StreamNotFound):
        storage.set_tags(ids[0], {"a": 1})
    storage.recover()
    assert collection(storage, "streams").count_documents({}) == 1
    assert collection(storage, "raw").count_documents({}) == 1
    assert [r.stream_id for r in storage.find_streams(None)] == ids[2:]


# -- raw rows ----------------------------------------------------------------------------------


def test_large_batches_are_chunked_and_read_exactly(storage):
    stream_id = add_stream(storage)
    count = 20_000
    rng = np.random.default_rng(7)
    times = np.sort(rng.integers(0, 3 * HOUR, count))
    texts = [None if n % 3 else "x" * (n % 17) for n in range(count)]
    rows = raw_rows(times, floats=rng.normal(size=count), texts=texts, kinds=[2] * count)
    storage.commit(WriteBatch(raw={stream_id: rows}))
    chunks = list(collection(storage, "raw").find({"sid": stream_id}))
    assert len(chunks) >= count // store.CHUNK_ROWS
    assert all(c["n"] <= store.CHUNK_ROWS and c["t1"] - c["t0"] < store.CHUNK_SPAN_US
               for c in chunks)
    assert storage.read_raw(stream_id, None, None).equals(rows)
    start, end = int(times[5000]), int(times[15000])
    window = storage.read_raw(stream_id, start, end)
    mask = (times >= start) & (times < end)
    assert window.equals(rows.filter(pa.array(mask)))


def test_chunks_split_on_text_size(storage, monkeypatch):
    monkeypatch.setattr(store, "CHUNK_BYTES", 100)
    stream_id = add_stream(storage)
    rows = raw_rows(list(range(10)), texts=["y" * 30] * 10, kinds=[4] * 10)
    storage.commit(WriteBatch(raw={stream_id: rows}))
    assert collection(storage, "raw").count_documents({"sid": stream_id}) >= 3
    assert storage.read_raw(stream_id, None, None).equals(rows)


def test_range_read_uses_bounded_index_conditions(storage):
    stream_id = add_stream(storage)
    storage.commit(WriteBatch(raw={stream_id: raw_rows([0, 5 * HOUR, 10 * HOUR])}))
    snap = storage._protocol.snapshot(stream_id)
    chunks = storage._raw_chunks(stream_id, snap, 4 * HOUR, 6 * HOUR)
    assert [c["t0"] for c in chunks] == [5 * HOUR]


# -- meta ---------------------------------------------------------------------------------------


# -- levels -------------------------------------------------------------------------------------


def test_null_level_columns_are_left_out_of_the_documents(storage):
    """A null costs no field; a read gives None for it, also where a newer version of a
    bucket nulls a column the older one held."""
    stream_id = add_stream(storage)
    storage.commit(WriteBatch(levels={"S": level_rows(stream_id, [0, 10], [1, 2], [1.5, None])}))
    docs = {doc["t"]: doc for doc in collection(storage, "level_S").find({"stream_id": stream_id})}
    assert docs[0]["s"] == 1.5 and "s" not in docs[10]
    storage.commit(WriteBatch(levels={"S": level_rows(stream_id, [0], [3], [None])}))
    rows = storage.read_level("S", stream_id, None, None)
    assert rows.column("c").to_pylist() == [3, 2]
    assert rows.column("s").to_pylist() == [None, None]
    assert rows.schema.field("s").type == pa.float64()


# -- what deletes, upserts and clears leave in the collections (their rules: contract/) ---------


def test_deleted_streams_leave_no_documents(storage):
    """Deleted with another stream's meta in one commit, as the engine deletes derived ones."""
    keep, gone_a, gone_b = (add_stream(storage) for _ in range(3))
    for stream_id in (keep, gone_a, gone_b):
        storage.commit(WriteBatch(raw={stream_id: raw_rows([1, 2], ints=[1, 2])},
                                  levels={"S": level_rows(stream_id, [0], [2])}))
    storage.commit(WriteBatch(delete=[gone_a, gone_b, "unknown"],
                              meta={keep: MetaUpdate(set={"deleted": 2})}))
    assert storage.get_stream(keep).meta == {"deleted": 2}
    assert collection(storage, "raw").count_documents({"sid": {"$ne": keep}}) == 0
    assert collection(storage, "level_S").count_documents({"stream_id": {"$ne": keep}}) == 0
    assert collection(storage, "streams").count_documents({}) == 1


def test_superseded_level_rows_and_cleared_rows_are_collected(storage):
    stream_id = add_stream(storage)
    storage.commit(WriteBatch(levels={"S": level_rows(stream_id, [0, 10, 20], [1, 2, 3],
                                                      [1.0, None, 3.0])}))
    storage.commit(WriteBatch(levels={"S": level_rows(stream_id, [10, 30], [5, 6], [5.0, 6.0])}))
    assert storage.read_level("S", stream_id, None, None).column("c").to_pylist() == [1, 5, 3, 6]
    # The superseded version of bucket 10 was collected.
    assert collection(storage, "level_S").count_documents({"stream_id": stream_id}) == 4
    storage.commit(WriteBatch(raw={stream_id: raw_rows([1, 2, 3], ints=[1, 2, 3])}))
    storage.commit(WriteBatch(raw={stream_id: raw_rows([2], ints=[9])},
                              levels={"S": level_rows(stream_id, [0], [7])},
                              clear_raw=[stream_id], clear_levels=[stream_id]))
    assert ints_of(storage, stream_id) == [9]
    assert collection(storage, "raw").count_documents({"sid": stream_id}) == 1
    assert collection(storage, "level_S").count_documents({"stream_id": stream_id}) == 1


def test_refused_batches_leave_no_rows_and_no_open_write(storage):
    a, b = add_stream(storage, meta={"n": 0}), add_stream(storage, meta={"n": 0})
    with pytest.raises(exceptions.StreamAppendFailed, match="missing"):
        storage.commit(WriteBatch(raw={a: raw_rows([1]), "missing": raw_rows([1])}))
    assert collection(storage, "raw").count_documents({}) == 0
    storage.commit(WriteBatch(raw={a: raw_rows([1], ints=[1])}, meta={a: MetaUpdate(set={"n": 1})}))
    stale = WriteBatch(raw={a: raw_rows([2], ints=[2]), b: raw_rows([2], ints=[2])},
                       levels={"S": level_rows(b, [0], [1])},
                       meta={a: MetaUpdate(set={"n": 2}), b: MetaUpdate(set={"n": 2})},
                       create=[(StreamRecord(new_id(), {"new": 1}, {}), {"new": 1})],
                       expect={a: 0, b: 0})  # a is at version 1
    with pytest.raises(store.RecordConflict, match=a):
        storage.commit(stale)
    assert collection(storage, "raw").count_documents({}) == 1
    assert collection(storage, "streams").count_documents({}) == 2
    assert all(not doc["w"]["open"] for doc in collection(storage, "streams").find({}))


# -- failures -----------------------------------------------------------------------------------


def fail_on(factory, collection_name, method, when=None, times=1):
    """Make the next ``times`` calls of one kind raise (a lost connection, as pymongo
    reports it)."""
    left = [times]

    def fault(name, called, args, kwargs):
        if name == collection_name and called == method and (when is None or when(args)):
            if left[0] > 0:
                left[0] -= 1
                raise store.PyMongoError(f"injected failure in {name}.{called}")

    factory.client.fault = fault


def is_flip(args) -> bool:
    return len(args) > 1 and "$pull" in args[1] and "w.open" in args[1]["$pull"]


@pytest.mark.parametrize(
    ("collection_name", "method", "when"),
    [
        ("level_S", "insert_many", None),
        ("raw", "insert_many", None),
        ("level_schemas", "update_one", None),
        ("streams", "update_one", is_flip),
    ],
    ids=["levels", "raw", "schema", "flip"],
)
def test_failed_commit_leaves_nothing_visible(factory, collection_name, method, when):
    storage = factory()
    ids = [add_stream(storage, meta={"latest": 1}) for _ in range(2)]
    storage.commit(WriteBatch(raw={ids[0]: raw_rows([1], ints=[1])}))
    before = observable(storage, ids)
    fail_on(factory, collection_name, method, when)
    batch = WriteBatch(
        raw={ids[0]: raw_rows([5, 6], ints=[5, 6])},
        levels={"S": level_rows(ids[0], [0], [1])},
        meta={ids[0]: MetaUpdate(max={"latest": 6})},
    )
    with pytest.raises(exceptions.StreamAppendFailed, match="injected failure"):
        storage.commit(batch)
    factory.client.fault = None
    assert observable(storage, ids) == before
    assert collection(storage, "raw").count_documents({}) == 1
    assert storage._streams.find_one({"_id": ids[0]})["w"]["open"] == []
    storage.commit(batch)  # a retry is a new batch
    assert ints_of(storage, ids[0]) == [1, 5, 6]


def test_failed_multi_stream_commit_leaves_nothing_visible(factory):
    storage = factory()
    ids = [add_stream(storage, meta={"latest": None}) for _ in range(3)]
    before = observable(storage, ids)
    fail_on(factory, "batches", "insert_one", lambda args: args[0].get("state") == "committed")
    batch = WriteBatch(raw={i: raw_rows([1], ints=[1]) for i in ids},
                       meta={i: MetaUpdate(max={"latest": 1}) for i in ids})
    with pytest.raises(exceptions.StreamAppendFailed):
        storage.commit(batch)
    factory.client.fault = None
    assert observable(storage, ids) == before
    assert collection(storage, "raw").count_documents({}) == 0


@pytest.mark.parametrize(
    "batch",
    [
        lambda i: WriteBatch(raw={i: pa.table({"t": [1]})}),
        lambda i: WriteBatch(levels={"S": pa.table({"t": [1], "c": [1]})}),
        lambda i: WriteBatch(levels={"S": pa.table({"stream_id": [i], "t": [1], "$c": [1]})}),
        lambda i: WriteBatch(levels={"a.b": level_rows(i, [0], [1])}),
        lambda i: WriteBatch(meta={i: MetaUpdate(set={"a.b": 1})}),
        lambda i: WriteBatch(meta={i: MetaUpdate(set={"big": 2**70})}),
    ],
    ids=["raw columns", "level stream_id", "column name", "level key", "meta key", "meta int"],
)
def test_malformed_batches_are_refused_before_writing(storage, batch):
    stream_id = add_stream(storage)
    before = observable(storage, [stream_id])
    with pytest.raises(exceptions.StreamAppendFailed):
        storage.commit(batch(stream_id))
    assert observable(storage, [stream_id]) == before


def test_open_batches_are_invisible_to_readers(factory):
    storage, reader = factory(), factory()
    stream_id = add_stream(storage, meta={"latest": None})
    storage.commit(WriteBatch(raw={stream_id: raw_rows([1], ints=[1])}))
    seen = []

    def read_before_flip(name, method, args, kwargs):
        if name == "streams" and method == "update_one" and is_flip(args):
            factory.client.fault = None
            seen.append((ints_of(reader, stream_id), reader.read_level("S", stream_id, None, None),
                         reader.get_stream(stream_id).meta))

    factory.client.fault = read_before_flip
    storage.commit(WriteBatch(raw={stream_id: raw_rows([2], ints=[2])},
                              levels={"S": level_rows(stream_id, [0], [2])},
                              meta={stream_id: MetaUpdate(max={"latest": 2})}))
    [(raw_seen, levels_seen, meta_seen)] = seen
    assert raw_seen == [1]
    assert levels_seen.num_rows == 0
    assert meta_seen == {"latest": None}
    assert ints_of(reader, stream_id) == [1, 2]
    assert reader.read_level("S", stream_id, None, None).num_rows == 1


def test_a_flip_that_applied_despite_an_error_counts_as_committed(factory):
    storage = factory()
    stream_id = add_stream(storage, meta={"latest": None})
    streams = factory.client.client[factory.database_name]["streams"]

    def apply_then_fail(name, method, args, kwargs):
        if name == "streams" and method == "update_one" and is_flip(args):
            factory.client.fault = None
            streams.update_one(*args, **kwargs)
            raise store.PyMongoError("reply lost")

    factory.client.fault = apply_then_fail
    storage.commit(WriteBatch(raw={stream_id: raw_rows([1], ints=[1])},
                              meta={stream_id: MetaUpdate(max={"latest": 1})}))
    assert ints_of(storage, stream_id) == [1]
    assert storage.get_stream(stream_id).meta == {"latest": 1}


@pytest.mark.parametrize("applied", [True, False])
def test_a_lost_reply_with_the_server_gone_is_settled_later(factory, applied):
    """The flip's reply is lost and the server stays unreachable for the abort too: the
    commit raises CommitOutcomeUnknown, whose settle() tells, once the server answers again,
    whether the batch was stored."""
    storage = factory()
    stream_id = add_stream(storage, meta={"latest": None})
    streams = factory.client.client[factory.database_name]["streams"]
    down = {"flipped": False}

    def lose_the_reply(name, method, args, kwargs):
        if not down["flipped"] and name == "streams" and method == "update_one" and is_flip(
                args):
            down["flipped"] = True
            if applied:
                streams.update_one(*args, **kwargs)
            raise store.PyMongoError("reply lost")
        if down["flipped"]:
            raise store.PyMongoError("still unreachable")

    factory.client.fault = lose_the_reply
    with pytest.raises(exceptions.CommitOutcomeUnknown) as raised:
        storage.commit(WriteBatch(raw={stream_id: raw_rows([1], ints=[1])},
                                  meta={stream_id: MetaUpdate(max={"latest": 1})}))
    assert raised.value.settle() is None  # still unreachable
    factory.client.fault = None
    assert raised.value.settle() is applied
    assert ints_of(storage, stream_id) == ([1] if applied else [])
    assert raised.value.settle() is applied  # asking again changes nothing


def test_crashed_writer_is_aborted_by_recovery(factory, monkeypatch):
    storage = factory(commit_timeout=0)
    stream_id = add_stream(storage)
    monkeypatch.setattr(store._Commit, "_undo", lambda self: None)  # the process "dies"
    monkeypatch.setattr(store._Commit, "_abort_stream", lambda self, sid: False)
    fail_on(factory, "streams", "update_one", is_flip)
    storage.commit(WriteBatch(raw={stream_id: raw_rows([1, 2], ints=[1, 2])}))
    factory.client.fault = None
    monkeypatch.undo()
    assert times_of(storage, stream_id) == []
    assert collection(storage, "raw").count_documents({}) == 1
    storage.recover()
    assert collection(storage, "raw").count_documents({}) == 0
    assert storage._streams.find_one({"_id": stream_id})["w"]["open"] == []
    storage.commit(WriteBatch(raw={stream_id: raw_rows([3], ints=[3])}))
    assert ints_of(storage, stream_id) == [3]


def test_crash_after_the_commit_point_is_rolled_forward(factory):
    storage = factory(commit_timeout=0)
    ids = [add_stream(storage, meta={"latest": None}) for _ in range(2)]
    flips = []

    def fail_second_flip(name, method, args, kwargs):
        if name == "streams" and method == "update_one" and is_flip(args):
            flips.append(args[0]["_id"])
            if len(flips) == 2:
                raise store.PyMongoError("connection lost")

    factory.client.fault = fail_second_flip
    with pytest.warns(exceptions.InternalInconsistencyWarning):
        storage.commit(WriteBatch(raw={i: raw_rows([1], ints=[1]) for i in ids},
                                  meta={i: MetaUpdate(max={"latest": 1}) for i in ids}))
    factory.client.fault = None
    # Committed: readers see the rows and the meta of both streams through the journal.
    assert [ints_of(storage, i) for i in ids] == [[1], [1]]
    assert [r.meta for r in storage.find_streams(None)] == [{"latest": 1}, {"latest": 1}]
    assert storage._streams.find_one({"_id": flips[1]})["meta"] == {}
    storage.refresh_stream(flips[1])
    assert storage._streams.find_one({"_id": flips[1]})["meta"] == {"latest": 1}
    assert [storage.get_stream(i).meta for i in ids] == [{"latest": 1}, {"latest": 1}]
    assert collection(storage, "batches").count_documents({}) == 0


def test_readers_retry_when_rows_are_collected_meanwhile(storage):
    stream_id = add_stream(storage)
    storage.commit(WriteBatch(raw={stream_id: raw_rows([1], ints=[1])}))
    bumps = []

    def read(snap):
        if len(bumps) < 2:
            bumps.append(1)
            storage._streams.update_one({"_id": stream_id}, {"$inc": {"w.gc": 1}})
        return storage._raw_chunks(stream_id, snap, None, None)

    assert len(storage._protocol.consistent(stream_id, read)) == 1
    assert len(bumps) == 2


# -- maintenance locks --------------------------------------------------------------------------


def lock_of(storage, stream_id):
    return storage._streams.find_one({"_id": stream_id})["lock"]


def test_lock_is_taken_released_and_reentrant(storage):
    stream_id = add_stream(storage)
    with storage.maintenance_lock(stream_id, ttl_seconds=30):
        held = lock_of(storage, stream_id)
        assert held["until"] > time.time() + 20
        with storage.maintenance_lock(stream_id):
            assert lock_of(storage, stream_id) == held
        assert lock_of(storage, stream_id) == held
    assert lock_of(storage, stream_id) is None
    with storage.maintenance_lock(new_id()):  # unknown stream: nothing to lock
        pass


def test_lock_is_released_when_the_work_fails(storage):
    stream_id = add_stream(storage)
    with pytest.raises(KeyError), storage.maintenance_lock(stream_id):
        raise KeyError("boom")
    assert lock_of(storage, stream_id) is None


def test_contended_lock_gives_up_after_the_wait(factory):
    holder, waiter = factory(), factory(lock_wait=0.3)
    stream_id = add_stream(holder)
    with holder.maintenance_lock(stream_id, ttl_seconds=30):
        started = time.monotonic()
        with pytest.raises(exceptions.StreamAppendContended, match=stream_id):
            with waiter.maintenance_lock(stream_id, ttl_seconds=30):
                pass
        assert 0.3 <= time.monotonic() - started < 3


def test_waiting_for_a_lock_succeeds_when_released(factory):
    holder, waiter = factory(), factory(lock_wait=5)
    stream_id = add_stream(holder)
    released = threading.Event()

    def hold():
        with holder.maintenance_lock(stream_id):
            time.sleep(0.3)
        released.set()

    thread = threading.Thread(target=hold)
    thread.start()
    time.sleep(0.05)
    with waiter.maintenance_lock(stream_id):
        assert released.is_set()
    thread.join()


def test_lock_excludes_concurrent_maintenance(factory):
    stream_id = add_stream(factory(), meta={"n": 0})
    errors = []

    def work():
        storage = factory(lock_wait=30)
        try:
            for _ in range(4):
                with storage.maintenance_lock(stream_id, ttl_seconds=30):
                    n = storage.refresh_stream(stream_id).meta["n"]
                    time.sleep(0.005)
                    storage.commit(WriteBatch(meta={stream_id: MetaUpdate(set={"n": n + 1})}))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert factory().get_stream(stream_id).meta["n"] == 16


def test_expired_lock_taken_by_another_fails_the_holder(factory):
    slow, fast = factory(), factory(lock_wait=5)
    stream_id = add_stream(slow)
    taken = threading.Event()

    def take_over():
        with fast.maintenance_lock(stream_id, ttl_seconds=30):
            taken.set()
            time.sleep(0.3)

    with pytest.raises(exceptions.LockExpiredMidMaintenance, match=stream_id):
        with slow.maintenance_lock(stream_id, ttl_seconds=0.2):
            thread = threading.Thread(target=take_over)
            thread.start()
            assert taken.wait(5)
            # The fenced commit of the old holder is refused, and nothing of it is stored.
            with pytest.raises(exceptions.LockExpiredMidMaintenance):
                slow.commit(WriteBatch(raw={stream_id: raw_rows([1])},
                                       meta={stream_id: MetaUpdate(set={"x": 1})}))
    thread.join()
    assert times_of(slow, stream_id) == []
    assert "x" not in slow.get_stream(stream_id).meta
    assert lock_of(slow, stream_id) is None


def test_expired_lock_not_taken_is_released_quietly(storage):
    stream_id = add_stream(storage)
    with storage.maintenance_lock(stream_id, ttl_seconds=0.05):
        time.sleep(0.1)
        storage.commit(WriteBatch(raw={stream_id: raw_rows([1])}))  # renews the lease
    assert times_of(storage, stream_id) == [1]
    assert lock_of(storage, stream_id) is None


def test_lost_lock_refuses_a_multi_stream_batch(storage):
    locked, other = add_stream(storage), add_stream(storage)
    with pytest.raises(exceptions.LockExpiredMidMaintenance, match=locked):
        with storage.maintenance_lock(locked, ttl_seconds=30):
            storage._streams.update_one({"_id": locked},
                                        {"$set": {"lock.owner": "someone else"}})
            with pytest.raises(exceptions.LockExpiredMidMaintenance):
                storage.commit(WriteBatch(raw={locked: raw_rows([1]), other: raw_rows([1])}))
            storage._streams.update_one({"_id": locked}, {"$set": {"lock.owner": "x"}})
    assert times_of(storage, locked) == times_of(storage, other) == []
    assert collection(storage, "raw").count_documents({}) == 0


def test_readers_never_see_part_of_a_batch(factory):
    ids = [add_stream(factory(), meta={"latest": 0}) for _ in range(2)]
    stop = threading.Event()
    problems, reads = [], []

    def slow_flips(name, method, args, kwargs):
        # Widen the windows between writing rows, the commit point and the flips.
        if (name == "streams" and method == "update_one" and is_flip(args)) or (
            name == "batches" and method == "insert_one"
        ):
            time.sleep(0.01)

    def write():
        storage = factory()
        for n in range(1, 15):
            rows = raw_rows([n] * 3, ints=[n] * 3)
            storage.commit(WriteBatch(raw={i: rows for i in ids},
                                      levels={"S": level_rows(ids[0], [n], [n])},
                                      meta={i: MetaUpdate(max={"latest": n}) for i in ids}))
        stop.set()

    def read():
        storage = factory()
        while not stop.is_set():
            for stream_id in ids:
                values = ints_of(storage, stream_id)
                levels = storage.read_level("S", stream_id, None, None)
                latest = storage.get_stream(stream_id).meta["latest"]
                counts = {v: values.count(v) for v in values}
                if any(c != 3 for c in counts.values()) or max(values, default=0) > latest:
                    problems.append((values, latest))
                if levels is not None and max(levels.column("c").to_pylist(), default=0) > latest:
                    problems.append((levels.to_pydict(), latest))
                reads.append(len(values))

    factory.client.fault = slow_flips
    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not problems
    assert len(reads) > 10


def test_crashed_multi_stream_writer_is_aborted(factory, monkeypatch):
    storage = factory(commit_timeout=0)
    ids = [add_stream(storage) for _ in range(2)]
    monkeypatch.setattr(store._Commit, "_undo", lambda self: None)
    fail_on(factory, "batches", "insert_one", lambda args: args[0].get("state") == "committed")
    monkeypatch.setattr(store.CommitProtocol, "claim_abort",
                        lambda self, b: (_ for _ in ()).throw(store.PyMongoError("down")))
    with pytest.raises(exceptions.StreamAppendFailed, match="unknown"):
        storage.commit(WriteBatch(raw={i: raw_rows([1]) for i in ids}))
    factory.client.fault = None
    monkeypatch.undo()
    assert [times_of(storage, i) for i in ids] == [[], []]
    storage.recover()
    assert collection(storage, "raw").count_documents({}) == 0
    assert all(storage._streams.find_one({"_id": i})["w"]["open"] == [] for i in ids)
    assert collection(storage, "batches").find_one({})["state"] == "aborted"


# -- versions and conditional commits ------------------------------------------------------------


def version_of(storage, stream_id):
    record = storage.get_stream(stream_id)
    assert storage.record_version(stream_id) == record.version
    return record.version


def leave_unflipped(factory, stream_id):
    """Fail the flip of one stream (a crash between the journal and that flip)."""
    fail_on(factory, "streams", "update_one",
            lambda args: is_flip(args) and args[0]["_id"] == stream_id, times=1)


def test_committed_unflipped_batch_counts_and_is_rolled_forward_first(factory):
    storage = factory()
    a, b = add_stream(storage, meta={"n": 0}), add_stream(storage, meta={"n": 0})
    leave_unflipped(factory, b)
    with pytest.warns(exceptions.InternalInconsistencyWarning):
        storage.commit(WriteBatch(meta={a: MetaUpdate(set={"n": 1}), b: MetaUpdate(set={"n": 1})}))
    factory.client.fault = None
    assert collection(storage, "streams").find_one({"_id": b})["v"] == 0  # stored
    assert (version_of(storage, b), storage.get_stream(b).meta) == (1, {"n": 1})  # logical
    with pytest.raises(store.RecordConflict):
        storage.commit(WriteBatch(meta={b: MetaUpdate(set={"n": 5})}, expect={b: 0}))
    storage.commit(WriteBatch(meta={b: MetaUpdate(set={"n": 2})}, expect={b: 1}))
    assert (version_of(storage, b), storage.get_stream(b).meta) == (2, {"n": 2})
    assert (version_of(storage, a), storage.get_stream(a).meta) == (1, {"n": 1})
    storage.recover()  # rolls forward on a too, if its flip came after b's (ids order them)
    assert collection(storage, "batches").count_documents({}) == 0
    assert collection(storage, "streams").find_one({"_id": a})["v"] == 1
    # The same for set_tags.
    leave_unflipped(factory, b)
    with pytest.warns(exceptions.InternalInconsistencyWarning):
        storage.commit(WriteBatch(meta={a: MetaUpdate(set={"n": 3}), b: MetaUpdate(set={"n": 3})}))
    factory.client.fault = None
    storage.set_tags(b, {"t": 1}, expect_version=3)
    assert (version_of(storage, b), storage.get_stream(b).meta) == (4, {"n": 3})


def change_tags(storage, stream_id, key, value) -> int:
    """Read-modify-write of one tag, retried on conflict; returns the conflicts met."""
    conflicts = 0
    while True:
        record = storage.get_stream(stream_id)
        try:
            storage.set_tags(stream_id, {**record.tags, key: value},
                             expect_version=record.version)
            return conflicts
        except store.RecordConflict:
            conflicts += 1


def test_two_processes_changing_tags_lose_nothing(factory):
    first, second = factory(), factory()  # two storage objects: two "processes"
    stream_id = add_stream(first, {"base": 0})
    interfere = []

    def second_writes_first(name, method, args, kwargs):
        # Right before the first process's compare-and-set, the second process changes
        # another key: the first one's read is stale.
        if interfere and name == "streams" and method == "update_one" and (
            "tags" in args[1].get("$set", {})
        ):
            n = interfere.pop()
            factory.client.fault = None
            change_tags(second, stream_id, f"second{n}", n)
            factory.client.fault = second_writes_first

    factory.client.fault = second_writes_first
    conflicts = []
    for n in range(3):
        interfere.append(n)
        conflicts.append(change_tags(first, stream_id, f"first{n}", n))
    factory.client.fault = None
    assert conflicts == [1, 1, 1]
    record = first.get_stream(stream_id)
    assert record.tags == {"base": 0, **{f"first{n}": n for n in range(3)},
                           **{f"second{n}": n for n in range(3)}}
    assert record.version == 6


# -- creating, deleting and truncating inside a commit -------------------------------------------


def test_creation_pending_in_another_writer_is_reported(factory):
    writer, other = factory(), factory()
    source = add_stream(writer)
    pending, seen = new_id(), []

    def meanwhile(name, method, args, kwargs):
        if name == "batches" and method == "insert_one":  # the writer's commit point
            factory.client.fault = None
            assert other.find_streams({"q": 1}) == [] and other.get_stream(pending) is None
            with pytest.raises(store.StreamExists) as exists:
                other.commit(WriteBatch(create=[(StreamRecord(new_id(), {"q": 1}, {}),
                                                 {"q": 1})]))
            seen.append(exists.value.existing.stream_id)
            seen.append(other.create_stream(StreamRecord(new_id(), {"q": 1}, {}), {"q": 1}))

    factory.client.fault = meanwhile
    writer.commit(WriteBatch(create=[(StreamRecord(pending, {"q": 1}, {}), {"q": 1})],
                             meta={source: MetaUpdate(set={"c": 1})}))
    assert seen[0] == pending and seen[1].stream_id == pending
    assert [r.stream_id for r in other.find_streams({"q": 1})] == [pending]


def test_crashed_creation_is_removed_and_its_query_freed(factory):
    storage = factory(commit_timeout=0)
    source = add_stream(storage)
    crash_from(factory, lambda name, method, args: name == "batches")
    with pytest.raises(Crash):
        storage.commit(WriteBatch(create=[(StreamRecord(new_id(), {"q": 1}, {}), {"q": 1})],
                                  raw={source: raw_rows([1])}))
    factory.client.fault = None
    assert collection(storage, "streams").count_documents({"new": {"$exists": True}}) == 1
    assert storage.find_streams({"q": 1}) == []
    # A later creator with the same query clears the crashed one (stale: commit_timeout=0).
    again = storage.create_stream(StreamRecord(new_id(), {"q": 1}, {}), {"q": 1})
    assert [r.stream_id for r in storage.find_streams(None)] == [source, again.stream_id]
    assert times_of(storage, source) == []
    storage.recover()  # the crashed batch's rows on the source go too
    assert collection(storage, "raw").count_documents({}) == 0
    assert collection(storage, "streams").find_one({"_id": source})["w"]["open"] == []


def test_truncated_chunks_and_cuts_are_collected(storage):
    a = add_stream(storage)
    for start in range(0, 40, 10):  # four chunks: t 0-9, 10-19, ...
        times = list(range(start, start + 10))
        storage.commit(WriteBatch(raw={a: raw_rows(times, ints=times)}))
    for cut in (35, 25, 15):
        storage.commit(WriteBatch(truncate_raw={a: cut}))
    assert ints_of(storage, a) == list(range(15))
    chunks = sorted(c["t0"] for c in collection(storage, "raw").find({"sid": a}))
    assert chunks == [0, 10]  # the chunks starting at 20 and 30 were wholly cut
    assert [c["t"] for c in collection(storage, "streams").find_one({"_id": a})["w"]["cuts"]] \
        == [15]
    storage.commit(WriteBatch(truncate_raw={a: 10}))
    assert ints_of(storage, a) == list(range(10))
    assert collection(storage, "streams").find_one({"_id": a})["w"]["cuts"] == []
    assert collection(storage, "raw").count_documents({"sid": a}) == 1


# -- every step of a commit: a failure, a crash, and what readers see meanwhile -------------------


class Crash(BaseException):
    """The writing process dies: this call and every later one never happen."""


def crash_from(factory, when):
    """From the first call for which ``when(name, method, args)`` holds, every call raises
    Crash (nothing the dying writer tries afterwards reaches the server)."""
    dead = []

    def fault(name, method, args, kwargs):
        if dead or when(name, method, args):
            dead.append(1)
            raise Crash(f"{name}.{method}")

    factory.client.fault = fault


def scenario_create(storage):
    source = add_stream(storage, {"src": 1}, {"contributes_to": {}})
    derived = new_id()
    batch = WriteBatch(
        create=[(StreamRecord(derived, {"d": 1}, {"k": 1}), {"d": 1})],
        meta={source: MetaUpdate(set={"contributes_to": {derived: {"op": "sum"}}})},
        expect={source: 0},
    )

    def state(reader):
        src = reader.get_stream(source)
        return (reader.get_stream(derived) is not None,
                [r.stream_id for r in reader.find_streams({"d": 1})] == [derived],
                bool(src.meta["contributes_to"]), src.version)

    return batch, state, (False, False, False, 0), (True, True, True, 1)


def scenario_delete(storage):
    source = add_stream(storage, {"src": 1}, {"contributes_to": {}})
    doomed = add_stream(storage, {"d": 1})
    storage.commit(WriteBatch(raw={doomed: raw_rows([1, 2], ints=[1, 2])},
                              levels={"S": level_rows(doomed, [0], [2])},
                              meta={source: MetaUpdate(set={"contributes_to": {doomed: {}}})}))
    batch = WriteBatch(delete=[doomed], meta={source: MetaUpdate(set={"contributes_to": {}})},
                       expect={source: 1, doomed: 1})

    def state(reader):
        src = reader.get_stream(source)
        level = reader.read_level("S", doomed, None, None)
        return (reader.get_stream(doomed) is not None, len(reader.find_streams(None)),
                ints_of(reader, doomed), 0 if level is None else level.num_rows,
                bool(src.meta["contributes_to"]),
                src.version)

    return batch, state, (True, 2, [1, 2], 1, True, 1), (False, 1, [], 0, False, 2)


def scenario_truncate(storage, with_other=True):
    a, other = add_stream(storage, meta={"n": 0}), add_stream(storage, meta={"n": 0})
    storage.commit(WriteBatch(raw={a: raw_rows([1, 4, 6], ints=[1, 4, 6])}))
    storage.commit(WriteBatch(raw={a: raw_rows([5, 9], ints=[5, 9])}))
    meta = {a: MetaUpdate(set={"n": 1})}
    if with_other:
        meta[other] = MetaUpdate(set={"n": 1})
    batch = WriteBatch(raw={a: raw_rows([5, 7], ints=[50, 70])}, truncate_raw={a: 5},
                       meta=meta, expect={a: 2, other: 0} if with_other else {a: 2})

    def state(reader):
        return (ints_of(reader, a), ints_of(reader, a, 4, 8, reverse=True),
                reader.get_stream(a).meta["n"], reader.get_stream(other).meta["n"])

    after_other = 1 if with_other else 0
    return batch, state, ([1, 4, 5, 6, 9], [6, 5, 4], 0, 0), ([1, 4, 50, 70], [70, 50, 4], 1,
                                                               after_other)


def scenario_drop(storage):
    a, other = add_stream(storage, meta={"n": 0}), add_stream(storage, meta={"n": 0})
    storage.commit(WriteBatch(raw={a: raw_rows([1, 4, 6], ints=[1, 4, 6])},
                              levels={"S": level_rows(a, [0, 10, 20, 30], [1, 1, 1, 1])}))
    storage.commit(WriteBatch(raw={a: raw_rows([5, 9], ints=[5, 9])}))
    batch = WriteBatch(raw={a: raw_rows([10], ints=[10])}, drop_raw_before={a: 5},
                       drop_levels_before={"S": {a: 10}}, drop_levels_from={"S": {a: 20}},
                       levels={"S": level_rows(a, [20], [2])},
                       meta={a: MetaUpdate(set={"n": 1}), other: MetaUpdate(set={"n": 1})},
                       expect={a: 2, other: 0})

    def state(reader):
        level = reader.read_level("S", a, None, None)
        return (ints_of(reader, a), ints_of(reader, a, 4, 8, reverse=True),
                list(zip(level.column("t").to_pylist(), level.column("c").to_pylist())),
                reader.count_raw(a, None, None), reader.first_raw_time(a, None),
                reader.get_stream(a).meta["n"], reader.get_stream(other).meta["n"])

    before = ([1, 4, 5, 6, 9], [6, 5, 4], [(0, 1), (10, 1), (20, 1), (30, 1)], 5, 1, 0, 0)
    after = ([5, 6, 9, 10], [6, 5], [(10, 1), (20, 2)], 4, 5, 1, 1)
    return batch, state, before, after


SCENARIOS = {
    "create": scenario_create,
    "delete": scenario_delete,
    "drop": scenario_drop,
    "truncate": scenario_truncate,
    "truncate one stream": lambda storage: scenario_truncate(storage, with_other=False),
}


def no_leftovers(storage):
    streams = collection(storage, "streams")
    assert streams.count_documents({"new": {"$exists": True}}) == 0
    assert streams.count_documents({"gone": {"$exists": True}}) == 0
    assert all(not doc["w"]["open"] for doc in streams.find({}))
    known = [doc["_id"] for doc in streams.find({})]
    assert collection(storage, "raw").count_documents({"sid": {"$nin": known}}) == 0
    assert collection(storage, "raw").count_documents({"b": {"$exists": False}}) == 0


def calls_of_commit(scenario) -> int:
    with storage_factory("mongomock") as made:
        storage = made()
        batch, *_ = SCENARIOS[scenario](storage)
        calls = []
        made.client.fault = lambda *call: calls.append(call[:2])
        storage.commit(batch)
        made.client.fault = None
    return len(calls)


def run_step(scenario, mode, step):
    """Commit the scenario's batch with a failure (``mode``) at call ``step``; a reader looks
    before every earlier call. Returns what went wrong, for the assertion message."""
    with storage_factory("mongomock") as made:
        storage, reader = made(), made(commit_timeout=0)
        batch, state, before, after = SCENARIOS[scenario](storage)
        assert state(reader) == before
        calls, mixes = [], []

        def fault(name, method, args, kwargs):
            calls.append((name, method))
            if len(calls) - 1 >= step:
                if mode == "crash":
                    raise Crash(f"{name}.{method}")
                if len(calls) - 1 == step:
                    if mode == "lost reply":  # applied, but the client sees an error
                        target = made.client.client[made.database_name][name]
                        getattr(target, method)(*args, **kwargs)
                    raise store.PyMongoError(f"injected at {name}.{method}")
                return
            made.client.fault = None
            try:
                if state(reader) not in (before, after):
                    mixes.append((name, method, state(reader)))
            finally:
                made.client.fault = fault

        made.client.fault = fault
        raised = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", exceptions.InternalInconsistencyWarning)
            try:
                storage.commit(batch)
            except (exceptions.DatastreamException, Crash) as error:
                raised = error
        made.client.fault = None
        where = f"step {step} {calls[step]}, {mode}, raised {raised!r}"
        assert not mixes, where
        seen = state(reader)
        if mode != "crash":
            assert seen == (before if raised else after), where
        else:
            assert seen in (before, after), where
        reader.recover()
        assert state(reader) == seen, where
        no_leftovers(reader)
        return seen == after


@pytest.mark.parametrize("mode", ["error", "lost reply", "crash"])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_step_of_a_commit_is_all_or_nothing(scenario, mode):
    """For each call the commit makes: readers before it see the state before or after the
    batch, never a mix; a failure of that call (before or after it applied) leaves the batch
    stored without an error or not stored with one; a crash there is finished or undone by
    recover()."""
    steps = calls_of_commit(scenario)
    outcomes = [run_step(scenario, mode, step) for step in range(steps)]
    # Early failures undo the batch, late ones (after the commit point) keep it.
    assert outcomes[0] is False and outcomes[-1] is True


# -- drops by time (retention, reopening) ---------------------------------------------------------


def four_chunks_and_levels(storage) -> str:
    a = add_stream(storage)
    for start in range(0, 40, 10):  # four chunks: t 0-9, 10-19, ...
        times = list(range(start, start + 10))
        storage.commit(WriteBatch(raw={a: raw_rows(times, ints=times)}))
    storage.commit(WriteBatch(levels={"S": level_rows(a, [0, 10, 20, 30], [1, 1, 1, 1])}))
    return a


def drop_batch(a) -> WriteBatch:
    return WriteBatch(drop_raw_before={a: 15}, drop_levels_before={"S": {a: 10}},
                      drop_levels_from={"S": {a: 30}})


def stored(storage, a) -> tuple[list[int], list[int], list[tuple]]:
    """First times of the raw chunks, times of the level rows, drops kept: as stored."""
    chunks = sorted(c["t0"] for c in collection(storage, "raw").find({"sid": a}))
    levels = sorted(r["t"] for r in collection(storage, "level_S").find({"stream_id": a}))
    drops = collection(storage, "streams").find_one({"_id": a})["w"].get("drops") or []
    return chunks, levels, [(d["k"], d["f"], d["t"]) for d in drops]


def test_dropped_rows_are_collected_and_drops_forgotten(storage):
    a = four_chunks_and_levels(storage)
    storage.commit(drop_batch(a))
    assert ints_of(storage, a) == list(range(15, 40))
    assert storage.read_level("S", a, None, None).column("t").to_pylist() == [10, 20]
    # the chunk of 10-19 straddles the raw drop: kept, with the drop that hides part of it
    assert stored(storage, a) == ([10, 20, 30], [10, 20], [(None, False, 15)])
    assert storage.count_raw(a, None, None) == 25
    assert storage.count_raw(a, 12, 25) == 10
    assert storage.first_raw_time(a, None) == 15
    storage.commit(WriteBatch(drop_raw_before={a: 20}))
    assert stored(storage, a) == ([20, 30], [10, 20], [])
    assert ints_of(storage, a) == list(range(20, 40))


def test_a_crash_before_dropped_rows_are_collected_hides_them_until_recovered(factory):
    storage = factory()
    a = four_chunks_and_levels(storage)

    def no_deletes(name, method, args, kwargs):
        if method == "delete_many":
            raise store.PyMongoError(f"injected failure in {name}.{method}")

    factory.client.fault = no_deletes
    with pytest.warns(exceptions.InternalInconsistencyWarning):
        storage.commit(drop_batch(a))  # stored: only the collection after the flip failed
    factory.client.fault = None
    for reader in (storage, factory()):
        assert ints_of(reader, a) == list(range(15, 40))
        assert reader.read_level("S", a, None, None).column("t").to_pylist() == [10, 20]
        assert reader.count_raw(a, None, None) == 25
        assert reader.first_raw_time(a, 0) == 15
    assert stored(storage, a) == ([0, 10, 20, 30], [0, 10, 20, 30],
                                  [(None, False, 15), ("S", False, 10), ("S", True, 30)])
    factory().recover()
    assert stored(storage, a) == ([10, 20, 30], [10, 20], [(None, False, 15)])
    assert ints_of(storage, a) == list(range(15, 40))
