"""The storage contract on the embedded DuckDB store, below the engine."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datastream import exceptions
from datastream.backends import duckdb as duckdb_backend
from datastream.granularity import MAX_US, MIN_US
from datastream.storage.base import MetaUpdate, WriteBatch
from datastream.storage.duckdb import storage as store
from tests.storage.rows import add_stream, raw_rows, snapshot


@pytest.fixture
def storage():
    instance = duckdb_backend.Backend()
    yield instance
    instance.close()


@pytest.fixture
def path(tmp_path) -> str:
    return str(tmp_path / "store.duckdb")


# -- stream records ----------------------------------------------------------------------------


def test_backend_is_the_duckdb_storage():
    assert duckdb_backend.Backend is store.DuckDBStorage
    backend = duckdb_backend.Backend()
    assert backend.requires_downsampling is True
    assert backend.downsampled_always_exist is False
    backend.close()


class FailingConnection:
    """Wraps a DuckDB connection and fails the first statement containing ``marker``."""

    def __init__(self, connection, marker: str) -> None:
        self._connection = connection
        self._marker = marker

    def execute(self, query, *args):
        if self._marker in query:
            raise RuntimeError(f"injected failure at {query!r}")
        return self._connection.execute(query, *args)

    def __getattr__(self, name):
        return getattr(self._connection, name)


def test_delete_streams_is_atomic(storage):
    a = add_stream(storage, {"n": 1})
    storage.commit(WriteBatch(raw={a: raw_rows([1, 2], ints=[1, 2])}))
    before = snapshot(storage, [a])
    real = storage._con
    storage._con = FailingConnection(real, 'DELETE FROM streams')
    with pytest.raises(exceptions.DatastreamException, match="nothing of the batch was stored"):
        storage.delete_streams([a])
    storage._con = real
    assert snapshot(storage, [a]) == before


# -- commit and reads ----------------------------------------------------------------------------


# -- atomicity -----------------------------------------------------------------------------------


def prepare_for_failure(storage):
    a = add_stream(storage, {"n": 1}, {"latest": 1})
    b = add_stream(storage, {"n": 2}, {"latest": 1})
    storage.commit(
        WriteBatch(
            raw={a: raw_rows([1], ints=[1])},
            levels={"S": pa.table({"stream_id": [a], "t": [0], "c": pa.array([1], pa.int64())})},
        )
    )
    return a, b


def big_batch(a: str, b: str, bad_level: pa.Table) -> WriteBatch:
    """A batch touching everything: raw, a new level table, a widened one, meta, clears."""
    return WriteBatch(
        raw={a: raw_rows([2, 3], ints=[2, 3]), b: raw_rows([5], floats=[0.5])},
        levels={
            "m": pa.table({"stream_id": [a], "t": [0], "c": [2]}),
            "S": bad_level,
        },
        meta={a: MetaUpdate(set={"flag": 1}, max={"latest": 3}), b: MetaUpdate(max={"latest": 5})},
        clear_levels=[a],
    )


def assert_still_usable(storage, a):
    storage.commit(WriteBatch(raw={a: raw_rows([7], ints=[7])}))
    rows = storage.read_raw(a, None, None)
    assert rows.column("t").to_pylist() == [1, 7]


@pytest.mark.parametrize("step", ["_clear", "_write_raw", "_write_levels", "_write_meta"])
def test_failure_after_a_step_leaves_nothing(storage, monkeypatch, step):
    a, b = prepare_for_failure(storage)
    before = snapshot(storage, [a, b])
    original = getattr(store.DuckDBStorage, step)

    def fail_after(self, *args):
        original(self, *args)
        raise OSError("disk on fire")

    monkeypatch.setattr(store.DuckDBStorage, step, fail_after)
    good = pa.table({"stream_id": [a], "t": [10], "c": [4], "extra": [1.0]})
    with pytest.raises(exceptions.StreamAppendFailed, match="disk on fire"):
        storage.commit(big_batch(a, b, good))
    monkeypatch.undo()
    assert snapshot(storage, [a, b]) == before
    assert_still_usable(storage, a)


def test_failing_commit_statement_leaves_nothing(storage):
    a, b = prepare_for_failure(storage)
    before = snapshot(storage, [a, b])
    real = storage._con
    storage._con = FailingConnection(real, "COMMIT")
    good = pa.table({"stream_id": [a], "t": [10], "c": [4]})
    with pytest.raises(exceptions.StreamAppendFailed):
        storage.commit(big_batch(a, b, good))
    storage._con = real
    assert snapshot(storage, [a, b]) == before


# -- files, reopening, locking -------------------------------------------------------------------

LONG_DECIMAL = "2.71828182845904523536028747135266249775724709369995957496696762"


def test_reopen_gives_identical_data(path):
    tags = {
        "name": "ünïcode ✓",
        "nested": {"list": [1, 2.5, None, True, {"deep": ["x"]}], "empty": {}},
        "big": 2**70,
        "float": 0.1,
    }
    times = [MIN_US, -1, 0, 1, 1_700_000_000_123_456, MAX_US]
    storage = duckdb_backend.Backend(path)
    a = add_stream(storage, tags, {"latest": MAX_US, "config": {"k": [1, "two"]}})
    b = add_stream(storage, {"other": 1})
    storage.commit(
        WriteBatch(
            raw={
                a: raw_rows(
                    times,
                    ints=[2**63 - 1, -(2**63), None, 0, None, None],
                    floats=[None, None, 1e308, None, -0.0, 5e-324],
                    texts=[None, None, None, LONG_DECIMAL, '{"v":[1,{"i":2}]}', str(2**128)],
                    kinds=[1, 1, 2, 3, 4, 3],
                )
            },
            levels={
                "S": pa.table(
                    {
                        "stream_id": [a, b],
                        "t": [0, 10_000_000],
                        "c": pa.array([1, 2], pa.int64()),
                        "m2": pa.array([0.1, float("nan")], pa.float64()),
                        "x": [LONG_DECIMAL, None],
                        "tiny": pa.array([1, 2], pa.int8()),
                    }
                )
            },
        )
    )
    before = snapshot(storage, [a, b])
    raw_before = storage.read_raw(a, None, None)
    level_before = storage.read_level("S", b, None, None)
    storage.close()
    storage.close()  # idempotent

    storage = duckdb_backend.Backend(path)
    try:
        assert repr(snapshot(storage, [a, b])) == repr(before)  # repr: NaN equals itself
        assert storage.read_raw(a, None, None).equals(raw_before)
        assert storage.get_stream(a).tags == tags
        assert storage.read_level("S", b, None, None).to_pylist()[0]["m2"] != 0.1  # nan kept
        assert np.isnan(storage.read_level("S", b, None, None).column("m2").to_numpy()[0])
        assert storage.read_level("S", b, None, None).schema == level_before.schema
        texts = storage.read_raw(a, None, None).column("s").to_pylist()
        assert Decimal(texts[3]) == Decimal(LONG_DECIMAL) and texts[3] == LONG_DECIMAL
        # the insertion counter continues: equal timestamps still keep append order
        storage.commit(WriteBatch(raw={a: raw_rows([0], ints=[42])}))
        rows = storage.read_raw(a, 0, 1)
        assert rows.column("i").to_pylist() == [None, 42]
        # a new stream after reopening comes after the old ones
        c = add_stream(storage, {"third": 1})
        assert [r.stream_id for r in storage.find_streams(None)] == [a, b, c]
    finally:
        storage.close()


def test_second_process_gets_a_clear_lock_error(path):
    storage = duckdb_backend.Backend(path)
    try:
        script = (
            "import sys\n"
            "from datastream.backends import duckdb\n"
            "from datastream.exceptions import DatastreamException\n"
            "try:\n"
            f"    duckdb.Backend({path!r})\n"
            "except DatastreamException as exc:\n"
            "    print(type(exc).__name__, exc)\n"
            "    sys.exit(3)\n"
        )
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 3, result.stderr
        assert result.stdout.startswith("StorageLocked")
        assert "another process" in result.stdout and path in result.stdout
        assert time.monotonic() - started < 30  # no waiting for the lock
    finally:
        storage.close()
    # once the writer is gone, the file opens again
    duckdb_backend.Backend(path).close()


def test_committed_data_survives_a_killed_process(path):
    """A commit that returned is durable even if the process dies without closing."""
    script = f"""
import os, uuid
import pyarrow as pa
from datastream.backends import duckdb
from datastream.storage.base import StreamRecord, WriteBatch
storage = duckdb.Backend({path!r})
stream_id = str(uuid.uuid4())
storage.create_stream(StreamRecord(stream_id, {{"crash": 1}}, {{}}), {{"crash": 1}})
raw = pa.table({{"t": [1, 2], "k": pa.array([1, 1], pa.int8()), "i": [10, 20],
                 "f": pa.nulls(2, pa.float64()), "s": pa.nulls(2, pa.string())}})
level = pa.table({{"stream_id": [stream_id], "t": [0], "c": [2]}})
storage.commit(WriteBatch(raw={{stream_id: raw}}, levels={{"S": level}}))
print(stream_id, flush=True)
os._exit(9)  # no close, no checkpoint
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 9, result.stderr
    stream_id = result.stdout.strip()
    storage = duckdb_backend.Backend(path)
    try:
        assert storage.get_stream(stream_id).tags == {"crash": 1}
        assert storage.read_raw(stream_id, None, None).column("i").to_pylist() == [10, 20]
        assert storage.read_level("S", stream_id, None, None).to_pylist() == [{"t": 0, "c": 2}]
    finally:
        storage.close()


def test_same_process_second_open_is_refused(path):
    storage = duckdb_backend.Backend(path)
    try:
        with pytest.raises(store.StorageLocked, match="already open in this process"):
            duckdb_backend.Backend(path)
    finally:
        storage.close()
    duckdb_backend.Backend(path).close()


def test_not_a_database_file(tmp_path):
    bogus = tmp_path / "bogus.duckdb"
    bogus.write_bytes(b"this is not a database" * 1000)
    with pytest.raises(store.StorageUnavailable):
        duckdb_backend.Backend(str(bogus))


def test_duckdb_options_are_settings(path):
    storage = duckdb_backend.Backend(path, threads=1)
    try:
        assert storage._con.sql("SELECT current_setting('threads')").fetchall() == [(1,)]
    finally:
        storage.close()


# -- property: ordering against a model --------------------------------------------------------

commits = st.lists(
    st.dictionaries(
        st.sampled_from([0, 1]),
        st.lists(st.integers(-3, 3), min_size=0, max_size=6).map(sorted),
        max_size=2,
    ),
    min_size=1,
    max_size=5,
)
bounds = st.one_of(st.none(), st.integers(-4, 4))


def test_unknown_duckdb_option_is_a_datastream_error():
    with pytest.raises(store.StorageUnavailable, match="no_such_setting"):
        duckdb_backend.Backend(no_such_setting=1)


# -- the write path's in-process caches and settings --------------------------------------------


def test_checkpoint_threshold_default_and_override(path):
    def threshold(storage) -> str:
        return storage._con.sql("SELECT current_setting('checkpoint_threshold')").fetchall()[0][0]

    storage = duckdb_backend.Backend(path)
    assert threshold(storage) == "61.0 MiB"  # 64 MB: rarer checkpoints (see connection.py)
    storage.close()
    storage = duckdb_backend.Backend(path, checkpoint_threshold="8MB")
    assert threshold(storage) == "7.6 MiB"
    storage.close()


RAW_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.lists(st.integers(-3, 6), min_size=1, max_size=6)),
        st.tuples(st.just("truncate"), st.integers(0, 40)),
        st.tuples(st.just("clear"), st.lists(st.integers(0, 40), max_size=3)),
        st.tuples(st.just("meta"), st.none()),
        st.tuples(st.just("reopen"), st.none()),
    ),
    min_size=1, max_size=10,
)


@given(RAW_STEPS, st.integers(0, 12), st.integers(-2, 45), st.integers(0, 50))
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_raw_reads_served_from_memory_match_the_stored_chunks(tmp_path, steps, limit, start,
                                                              length):
    """Appends in and out of time order, truncations, clears, meta-only commits and reopening,
    on a store keeping recent raw rows in memory (as few as ``limit``): every read agrees with
    one from a store keeping none; level rows written after and over stored ones agree too."""
    folder = tmp_path / f"case{time.monotonic_ns()}"
    folder.mkdir()
    cached = duckdb_backend.Backend(str(folder / "cached.duckdb"), raw_cache_points=limit)
    plain = duckdb_backend.Backend(str(folder / "plain.duckdb"), raw_cache_points=0)
    stores = [cached, plain]
    ids = [add_stream(s, {"n": 1}) for s in stores]
    last, serial = 0, 0
    level_model: dict[int, int] = {}  # t -> c: the last row given for a bucket wins
    try:
        for kind, arg in steps:
            if kind == "reopen":
                cached.close()
                cached = stores[0] = duckdb_backend.Backend(str(folder / "cached.duckdb"),
                                                            raw_cache_points=limit)
                continue
            batches = []
            for sid in ids:
                batch = WriteBatch(meta={sid: MetaUpdate(set={"step": serial})})
                if kind == "append":
                    times = sorted(max(0, last + gap) for gap in arg)
                    ints = list(range(serial, serial + len(times)))
                    batch.raw = {sid: raw_rows(times, ints=ints)}
                    batch.levels = {"S": pa.table({"stream_id": [sid] * len(times),
                                                   "t": times, "c": ints})}
                elif kind == "truncate":
                    batch.truncate_raw = {sid: arg}
                elif kind == "clear":
                    batch.clear_raw = [sid]
                    if arg:
                        batch.raw = {sid: raw_rows(sorted(arg), ints=[serial] * len(arg))}
                batches.append(batch)
            for storage, batch in zip(stores, batches):
                storage.commit(batch)
            if kind == "append":
                last = max(last, *times)
                serial += len(times)
                level_model.update(zip(times, ints))
            for reverse in (False, True):
                got = [s.read_raw(sid, start, start + length, reverse) for s, sid in zip(stores,
                                                                                           ids)]
                assert got[0].equals(got[1])
            levels = [s.read_level("S", sid, None, None) for s, sid in zip(stores, ids)]
            assert (levels[0] is None) == (levels[1] is None)
            if levels[0] is not None:
                assert levels[0].equals(levels[1])
                assert levels[0].select(["t", "c"]).to_pylist() == [
                    {"t": t, "c": c} for t, c in sorted(level_model.items())]
    finally:
        for storage in stores:
            storage.close()


# -- drops by time (retention, reopening) ---------------------------------------------------------


def level_pairs(storage, stream_id, key="S") -> list[tuple]:
    rows = storage.read_level(key, stream_id, None, None)
    return list(zip(rows.column("t").to_pylist(), rows.column("c").to_pylist()))


@pytest.mark.parametrize("step", ["_drop", "_write_levels", "_write_meta"])
def test_a_failure_after_dropping_leaves_everything_and_every_cache(storage, monkeypatch,
                                                                    step):
    a = add_stream(storage, {"n": 1})
    times = list(range(0, 100_000, 10))
    counts = pa.array([1] * len(times), pa.int64())
    storage.commit(WriteBatch(raw={a: raw_rows(times, ints=times)},
                              levels={"S": pa.table({"stream_id": [a] * len(times),
                                                     "t": times, "c": counts})}))
    storage.read_raw(a, 99_000, None)  # served from the recent rows kept in memory
    before, ends = snapshot(storage, [a], ("S",)), dict(storage._ends)
    original = getattr(store.DuckDBStorage, step)

    def fail_after(self, *args):
        original(self, *args)
        raise OSError("disk on fire")

    batch = WriteBatch(drop_raw_before={a: 50_005}, drop_levels_from={"S": {a: 40_005}},
                       levels={"S": pa.table({"stream_id": [a], "t": [40_010], "c": [2]})},
                       meta={a: MetaUpdate(set={"dropped": True})})
    monkeypatch.setattr(store.DuckDBStorage, step, fail_after)
    with pytest.raises(exceptions.StreamAppendFailed, match="disk on fire"):
        storage.commit(batch)
    monkeypatch.undo()
    assert snapshot(storage, [a], ("S",)) == before
    assert storage._ends == ends
    assert storage.read_raw(a, 99_000, None).num_rows == 100
    storage.commit(batch)
    assert storage.read_raw(a, None, None).column("t").to_pylist() == times[5001:]
    assert level_pairs(storage, a) == [(t, 1) for t in times[:4001]] + [(40_010, 2)]
    assert storage._ends[(storage._entries[a].key, storage._levels["S"].code)] == 40_010
    assert storage.get_stream(a).meta == {"dropped": True}


def test_a_store_dropping_its_oldest_day_stops_growing(path):
    """Retention in a loop: append a day, drop the oldest; deleted chunks free blocks that
    DuckDB reuses after its checkpoints, so the file levels off."""
    storage = duckdb_backend.Backend(path, checkpoint_threshold="256kB")
    day, points = 86_400_000_000, 8_000
    ids = [add_stream(storage, {"n": n}) for n in range(2)]
    rng = np.random.default_rng(7)
    sizes = []
    for number in range(24):
        t = number * day + np.arange(points, dtype=np.int64) * (day // points)
        raw = {sid: pa.table({"t": t, "k": pa.array(np.full(points, 2), pa.int8()),
                              "i": pa.nulls(points, pa.int64()), "f": rng.normal(size=points),
                              "s": pa.nulls(points, pa.string())}) for sid in ids}
        batch = WriteBatch(raw=raw)
        if number >= 3:
            batch.drop_raw_before = dict.fromkeys(ids, (number - 3) * day)
        storage.commit(batch)
        sizes.append(os.path.getsize(path))
    assert storage.count_raw(ids[0], None, None) == 4 * points
    storage.close()
    half = len(sizes) // 2  # (without the drops, the second half is 60 % larger)
    assert max(sizes[half:]) <= max(sizes[:half]) * 1.1, sizes


def test_short_level_reads_fetch_rows_and_give_the_same_chunks(storage):
    """A level read of at most FEW_BUCKETS buckets takes the chunk pieces as DB-API rows; any
    range gives the rows a read of everything gives there, pieces joined in order."""
    a = add_stream(storage, {"n": 1})
    width = 10_000_000  # level "S": 10 s
    times = np.arange(0, 40_000 * width, width // 1000 * 1000 * 3, dtype=np.int64)[:40_000]
    rng = np.random.default_rng(3)
    storage.commit(WriteBatch(levels={"S": pa.table({
        "stream_id": [a] * len(times), "t": times, "c": pa.array(rng.integers(1, 9, len(times))),
        "s": pa.array(rng.normal(size=len(times))), "x": [f"{n:x}" * 3 for n in range(len(times))],
    })}))
    everything = storage.read_level("S", a, None, None)
    t = np.asarray(everything.column("t").to_numpy())
    key, code = storage._entries[a].key, storage._levels["S"].code
    for low, high in [(0, 5), (16_380, 16_390), (1000, 1000 + 8640), (0, len(t)),
                      (39_990, len(t)), (7, 7)]:
        start = int(t[low]) if low < len(t) else int(t[-1]) + 1
        end = int(t[high]) if high < len(t) else int(t[-1]) + 1
        assert store._few_buckets("S", start, end) == (end - start <= store.FEW_BUCKETS * width)
        assert storage.read_level("S", a, start, end).equals(everything.slice(low, high - low))
        few = storage._few_chunk_bodies(key, code, start, end)
        assert [bytes(b) for b in storage._chunk_bodies(key, code, start, end)] == few
    assert not store._few_buckets("S", None, 10) and not store._few_buckets("??", 0, 10)
