"""Storage-contract tests that read the same on every backend (one body, three stores)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from datastream.backends import duckdb as duckdb_backend
from datastream.storage.base import MetaUpdate, WriteBatch
from tests.storage.rows import add_stream, raw_rows


@pytest.fixture(params=["duckdb", "mongodb", "influxdb"])
def storage(request):
    """A fresh storage of each backend kind."""
    if request.param == "duckdb":
        instance = duckdb_backend.Backend()
        yield instance
        instance.close()
    elif request.param == "mongodb":
        from tests.mongo_support import mongo_backend_factory

        with mongo_backend_factory() as factory:
            yield factory()
    else:
        from tests.servers import influx_backend_factory

        with influx_backend_factory(request.getfixturevalue("influx_servers")) as factory:
            yield factory()


def test_meta_updates(storage):
    a = add_stream(storage, {"n": 1}, {"keep": "yes", "latest": 10, "earliest": None})
    storage.commit(
        WriteBatch(meta={a: MetaUpdate(set={"flag": True}, max={"latest": 5}, min={"earliest": 7})})
    )
    assert storage.get_stream(a).meta == {"keep": "yes", "latest": 10, "earliest": 7, "flag": True}
    storage.commit(WriteBatch(meta={a: MetaUpdate(max={"latest": 12}, min={"earliest": 3})}))
    assert storage.get_stream(a).meta["latest"] == 12
    assert storage.get_stream(a).meta["earliest"] == 3


def test_empty_batch_and_empty_tables_are_noops(storage):
    a = add_stream(storage, {"n": 1})
    storage.commit(WriteBatch())
    storage.commit(
        WriteBatch(raw={a: raw_rows([])}, levels={"S": pa.table({"stream_id": [], "t": []})})
    )
    assert storage.read_raw(a, None, None).num_rows == 0
    assert storage.read_level("S", a, None, None) is None


def test_reads_of_many_streams_equal_reads_of_each(storage):
    """read_raw_many / read_level_many (many-stream tables) answer as read_raw / read_level
    of each stream, unknown ids included."""
    ids = [add_stream(storage, {"n": n}) for n in range(3)]
    raw = {sid: raw_rows(list(range(n * 10, n * 10 + 5)), ints=list(range(5)))
           for n, sid in enumerate(ids[:2])}
    level_rows = pa.table({
        "stream_id": [ids[0], ids[0], ids[1]],
        "t": pa.array([0, 60_000_000, 0], pa.int64()),
        "c": pa.array([1, 2, 3], pa.int64()),
    })
    storage.commit(WriteBatch(raw=raw, levels={"m": level_rows}))
    wanted = [*ids, "no-such-stream"]
    for lo, hi in ((None, None), (12, None), (None, 12), (3, 13), (13, 13)):
        many = storage.read_raw_many(wanted, lo, hi)
        assert set(many) == set(wanted)
        for sid in wanted:
            assert many[sid].equals(storage.read_raw(sid, lo, hi)), (sid, lo, hi)
        levels = storage.read_level_many("m", wanted, lo, hi)
        for sid in wanted:
            one = storage.read_level("m", sid, lo, hi)
            assert (levels[sid] is None) == (one is None)
            if one is not None:
                assert levels[sid].equals(one), (sid, lo, hi)
    assert storage.read_level_many("never-written", ids, None, None) == dict.fromkeys(ids)
