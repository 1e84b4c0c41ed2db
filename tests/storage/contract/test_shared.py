"""Backends shared by many writing processes (MongoDB, InfluxDB): two storage objects are two
processes; creations, conditional commits and maintenance locks hold between them."""

from __future__ import annotations

import threading
import time

import pytest

from datastream import exceptions
from datastream.storage.base import MetaUpdate, RecordConflict, StreamRecord, WriteBatch
from tests.storage.rows import add_stream, level_rows, new_id, raw_rows


def run_threads(targets) -> list[BaseException]:
    """Start one thread per callable, wait for all; the errors they raised."""
    errors: list[BaseException] = []

    def guarded(target):
        def run():
            try:
                target()
            except Exception as error:  # pragma: no cover - reported by the caller
                errors.append(error)
        return run

    threads = [threading.Thread(target=guarded(target)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    return errors


def test_concurrent_create_stream_with_one_query_creates_one(shared_factory):
    storages = [shared_factory() for _ in range(6)]
    barrier = threading.Barrier(len(storages))
    results: list[str] = []

    def creator(storage):
        def create():
            barrier.wait()
            record = StreamRecord(new_id(), {"host": "a", "extra": 1}, {})
            results.append(storage.create_stream(record, {"host": "a"}).stream_id)
        return create

    assert run_threads([creator(s) for s in storages]) == []
    assert len(results) == len(storages) and len(set(results)) == 1
    assert len(storages[0].find_streams(None)) == 1


def test_concurrent_writers_keep_every_point_and_the_largest_bound(shared_factory):
    first, second = shared_factory(), shared_factory()
    a = add_stream(first, {"n": 1}, {"latest": None})

    def writer(storage, base):
        def write():
            for step in range(10):
                rows = raw_rows([100, 100, 200 + step], ints=[base + step, base + step, -1])
                storage.commit(WriteBatch(raw={a: rows},
                                          meta={a: MetaUpdate(max={"latest": 200 + step})}))
        return write

    assert run_threads([writer(first, 1000), writer(second, 2000)]) == []
    at_100 = first.read_raw(a, 100, 101).column("i").to_pylist()
    assert sorted(at_100) == sorted([1000 + s for s in range(10) for _ in (0, 1)]
                                    + [2000 + s for s in range(10) for _ in (0, 1)])
    for base in (1000, 2000):  # each writer's points in its own order
        mine = [v for v in at_100 if base <= v < base + 100]
        assert mine == sorted(mine)
    assert first.read_raw(a, None, None).num_rows == 60
    assert shared_factory().get_stream(a).meta["latest"] == 209


def test_two_storages_racing_lose_no_update(shared_factory):
    """Read-modify-write loops of three threads through two storage objects: every increment
    and every tag survives, and the version counts them all."""
    first, second = shared_factory(), shared_factory()
    a = add_stream(first, {"n": 0}, {"count": 0})
    rounds = 10

    def bumper(storage, name):
        def bump():
            for step in range(rounds):
                # as the engine does: meta writers hold the stream's maintenance lock (MongoDB
                # checks ``expect`` when it reserves, and relies on it up to the flip)
                with storage.maintenance_lock(a):
                    while True:
                        record = storage.refresh_stream(a)
                        meta = MetaUpdate(set={"count": record.meta["count"] + 1},
                                          max={"latest": step})
                        try:
                            storage.commit(WriteBatch(raw={a: raw_rows([step], ints=[step])},
                                                      meta={a: meta},
                                                      expect={a: record.version}))
                            break
                        except RecordConflict:
                            continue
                while True:
                    record = storage.get_stream(a)
                    tags = {**record.tags, f"{name}{step}": step}
                    try:
                        storage.set_tags(a, tags, expect_version=record.version)
                        break
                    except RecordConflict:
                        continue
        return bump

    errors = run_threads([bumper(first, "x"), bumper(first, "y"), bumper(second, "z")])
    assert errors == []
    record = second.get_stream(a)
    assert record.meta == {"count": 3 * rounds, "latest": rounds - 1}
    assert record.tags == {"n": 0, **{f"{name}{s}": s for name in "xyz" for s in range(rounds)}}
    assert record.version == 2 * 3 * rounds
    assert first.read_raw(a, None, None).num_rows == 3 * rounds


def test_maintenance_lock_is_exclusive_across_processes(shared_factory):
    first, second = shared_factory(), shared_factory()
    a = add_stream(first, {"n": 1})
    events = []

    def other():
        with second.maintenance_lock(a):
            events.append("second in")

    with first.maintenance_lock(a):
        with first.maintenance_lock(a):  # re-entrant in one thread
            thread = threading.Thread(target=other)
            thread.start()
            time.sleep(0.3)
            events.append("first out")
    thread.join(5)
    assert events == ["first out", "second in"]
    with first.maintenance_lock(new_id()):  # unknown stream: nothing to lock
        pass


def test_maintenance_lock_is_released_when_the_work_fails(shared_factory):
    first, second = shared_factory(), shared_factory()
    a = add_stream(first, {"n": 1})
    with pytest.raises(KeyError), first.maintenance_lock(a):
        raise KeyError("boom")
    started = time.monotonic()
    with second.maintenance_lock(a):
        assert time.monotonic() - started < 1


def test_expired_lease_taken_over_fences_the_old_holder(shared_factory):
    first, second = shared_factory(), shared_factory()
    a = add_stream(first, {"n": 1})
    level = level_rows(a, [0], [1])
    left = []
    try:
        with first.maintenance_lock(a, ttl_seconds=0.2):
            first.commit(WriteBatch(levels={"S": level}))  # renews the lease
            time.sleep(0.3)
            with second.maintenance_lock(a, ttl_seconds=5):
                second.commit(WriteBatch(levels={"S": level}))
                # the fenced commit of the old holder is refused, and nothing of it is stored
                with pytest.raises(exceptions.LockExpiredMidMaintenance):
                    first.commit(WriteBatch(levels={"S": level_rows(a, [10], [2])},
                                            raw={a: raw_rows([1])},
                                            meta={a: MetaUpdate(set={"x": 1})}))
    except exceptions.LockExpiredMidMaintenance as error:  # MongoDB: also on leaving
        left.append(str(error))
    assert all(a in message for message in left)
    assert first.read_level("S", a, None, None).to_pylist() == [{"t": 0, "c": 1}]
    assert first.read_raw(a, None, None).num_rows == 0
    assert "x" not in first.get_stream(a).meta
