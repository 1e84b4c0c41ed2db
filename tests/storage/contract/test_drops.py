"""Drops by time (``WriteBatch.drop_raw_before`` / ``drop_levels_before`` / ``drop_levels_from``)
and the raw counts that go with them (``count_raw``, ``first_raw_time``), the same on every
backend. Failures in the middle of a drop are tested per backend, in their own test files."""

from __future__ import annotations

import pyarrow as pa
import pytest

from datastream import exceptions
from datastream.backends import duckdb as duckdb_backend
from datastream.storage.base import MetaUpdate, RecordConflict, Storage, WriteBatch
from tests.storage.rows import add_stream, level_pairs, level_rows, raw_pairs, raw_rows

PART_ROWS = 4500  # rows per commit: more than a small chunk anywhere, more than a MongoDB chunk
MINUTE = 60_000_000


def write_raw_parts(storage, stream_ids, parts=3, with_ties_at=None):
    """``parts`` commits of PART_ROWS rows, t = 10 µs apart; each row's value is its number,
    so that rows sharing a time stay apart (``with_ties_at``: two more rows at that time)."""
    number = 0
    for part in range(parts):
        times = list(range(part * PART_ROWS * 10, (part + 1) * PART_ROWS * 10, 10))
        if with_ties_at is not None and times[0] <= with_ties_at <= times[-1]:
            times = sorted(times + [with_ties_at] * 2)
        values = list(range(number, number + len(times)))
        number += len(times)
        storage.commit(WriteBatch(raw={sid: raw_rows(times, ints=values) for sid in stream_ids}))


def level_part_rows(storage) -> int:
    """Level rows per commit: enough for DuckDB to keep each commit's rows in a chunk of their
    own; the other backends keep a row apiece (and mongomock checks unique keys row by row)."""
    return PART_ROWS if isinstance(storage, duckdb_backend.Backend) else 100


def write_level_parts(storage, level_keys, stream_ids, parts=2, count=1):
    """``parts`` commits of ``level_part_rows`` minute buckets per level and stream."""
    size = level_part_rows(storage)
    for part in range(parts):
        times = [minute * MINUTE for minute in range(part * size, (part + 1) * size)]
        counts = [count] * len(times)
        storage.commit(WriteBatch(levels={
            key: pa.concat_tables([level_rows(sid, times, counts) for sid in stream_ids])
            for key in level_keys}))


def test_drop_raw_before_deletes_the_rows_before_t_of_that_stream_only(factory):
    storage = factory()
    a, b = add_stream(storage, {"n": 1}), add_stream(storage, {"n": 2})
    cut = 60_000  # inside the second commit's rows (and inside a chunk of it)
    write_raw_parts(storage, [a, b], with_ties_at=cut)
    storage.commit(WriteBatch(levels={"S": level_rows(a, [0, MINUTE], [1, 2])}))
    before_a, before_b = raw_pairs(storage, a), raw_pairs(storage, b)
    version = storage.get_stream(a).version

    storage.commit(WriteBatch(drop_raw_before={a: cut}))
    kept = [row for row in before_a if row[0] >= cut]
    assert raw_pairs(storage, a) == kept
    assert raw_pairs(storage, a, 0, None) == kept  # (a read the recent rows in memory may answer)
    assert [t for t, _ in raw_pairs(storage, a, cut - 100, cut + 1)] == [cut] * 3  # t == T kept
    assert raw_pairs(storage, a, None, cut) == []
    assert raw_pairs(storage, b) == before_b
    assert level_pairs(storage, "S", a) == [(0, 1), (MINUTE, 2)]
    assert storage.get_stream(a).version == version + 1
    assert storage.count_raw(a, None, None) == len(kept)
    assert storage.count_raw(a, None, cut) == 0
    assert storage.first_raw_time(a, None) == cut
    assert storage.first_raw_time(a, 0) == cut
    assert storage.first_raw_time(a, cut + 1) == cut + 10
    assert storage.first_raw_time(b, None) == 0

    for again in (cut, cut - 500, 0):  # the same drop, or one reaching less: nothing more
        storage.commit(WriteBatch(drop_raw_before={a: again}))
        assert raw_pairs(storage, a) == kept
    # rows written after a drop are not dropped by it, earlier than its time or not
    late, last = before_a[-1][0] + 10, -1
    storage.commit(WriteBatch(raw={a: raw_rows([5, late], ints=[last, last])}))
    assert raw_pairs(storage, a) == [(5, last)] + kept + [(late, last)]
    assert storage.first_raw_time(a, None) == 5
    assert raw_pairs(factory(), a) == [(5, last)] + kept + [(late, last)]  # as another object reads


def test_level_drops_touch_one_level_of_one_stream(factory):
    storage = factory()
    a, b = add_stream(storage, {"n": 1}), add_stream(storage, {"n": 2})
    write_level_parts(storage, ["S", "m"], [a, b])
    size = level_part_rows(storage)
    everything = [(minute * MINUTE, 1) for minute in range(2 * size)]
    # each inside the rows of one commit (and DuckDB chunk)
    before, reopen = size * 2 // 3 * MINUTE, size * 4 // 3 * MINUTE
    raw_before = raw_pairs(storage, a)

    storage.commit(WriteBatch(drop_levels_before={"S": {a: before}},
                              drop_levels_from={"m": {b: reopen}, "never": {a: 0}}))
    expected = {
        ("S", a): [row for row in everything if row[0] >= before],
        ("m", a): everything,
        ("S", b): everything,
        ("m", b): [row for row in everything if row[0] < reopen],
    }

    def check(reader):
        for (key, sid), rows in expected.items():
            assert level_pairs(reader, key, sid) == rows, (key, sid)
        assert level_pairs(reader, "never", a) is None
        assert raw_pairs(reader, a) == raw_before

    check(storage)
    storage.commit(WriteBatch(drop_levels_before={"S": {a: before}},
                              drop_levels_from={"m": {b: reopen}}))
    check(storage)
    check(factory())


def test_a_range_reopened_and_written_again_in_one_batch_shows_only_the_new_rows(factory):
    storage = factory()
    a, b = add_stream(storage, {"n": 1}), add_stream(storage, {"n": 2})
    write_level_parts(storage, ["S"], [a, b])
    size = level_part_rows(storage)
    kept = size * 4 // 3  # minutes before the reopened time, inside the second commit's rows
    reopen = kept * MINUTE
    rewritten = [reopen + minute * MINUTE for minute in range(10)]
    storage.commit(WriteBatch(drop_levels_from={"S": {a: reopen}},
                              levels={"S": level_rows(a, rewritten, [2] * 10)}))
    old = [(minute * MINUTE, 1) for minute in range(kept)]
    assert level_pairs(storage, "S", a) == old + [(t, 2) for t in rewritten]
    assert len(level_pairs(storage, "S", b)) == 2 * size

    # later writes over and after what is left merge with it, one row per bucket
    storage.commit(WriteBatch(levels={"S": level_rows(a, [rewritten[5]], [3])}))
    storage.commit(WriteBatch(levels={"S": level_rows(a, [reopen + 100 * MINUTE], [4])}))
    storage.commit(WriteBatch(levels={"S": level_rows(a, [reopen + 100 * MINUTE], [5])}))
    storage.commit(WriteBatch(levels={"S": level_rows(a, [10 * MINUTE, reopen - MINUTE], [6, 6])}))
    expected = ([(minute * MINUTE, 6 if minute in (10, kept - 1) else 1)
                 for minute in range(kept)]
                + [(t, 3 if t == rewritten[5] else 2) for t in rewritten]
                + [(reopen + 100 * MINUTE, 5)])
    assert level_pairs(storage, "S", a) == expected
    assert level_pairs(factory(), "S", a) == expected

    # reopened with nothing written yet, then written past the reopened time
    storage = factory()
    storage.commit(WriteBatch(drop_levels_from={"S": {a: reopen}}))
    storage.commit(WriteBatch(levels={"S": level_rows(a, [reopen + 50 * MINUTE], [7])}))
    storage.commit(WriteBatch(levels={"S": level_rows(a, [reopen + 50 * MINUTE], [8])}))
    assert level_pairs(storage, "S", a) == expected[:kept] + [(reopen + 50 * MINUTE, 8)]


def test_a_batch_truncating_and_dropping_one_stream_does_both(factory):
    storage = factory()
    a = add_stream(storage, {"n": 1})
    write_raw_parts(storage, [a], parts=1)  # t 0 ... 44_990, in one chunk at most
    storage.commit(WriteBatch(raw={a: raw_rows([30_005], ints=[-1])}, truncate_raw={a: 30_000},
                              drop_raw_before={a: 20_000}))
    expected = [(t, t // 10) for t in range(20_000, 30_000, 10)] + [(30_005, -1)]
    assert raw_pairs(storage, a) == expected
    assert storage.count_raw(a, None, None) == len(expected)
    assert raw_pairs(factory(), a) == expected


def test_drops_are_all_or_nothing_with_the_rest_of_the_batch(factory):
    storage = factory()
    a = add_stream(storage, {"n": 1}, {"retained": 0})
    write_raw_parts(storage, [a], parts=1)
    storage.commit(WriteBatch(levels={"S": level_rows(a, [0, MINUTE, 2 * MINUTE], [1, 1, 1])}))
    version = storage.get_stream(a).version
    raw_before, level_before = raw_pairs(storage, a), level_pairs(storage, "S", a)
    batch = WriteBatch(drop_raw_before={a: 100}, drop_levels_before={"S": {a: MINUTE}},
                       drop_levels_from={"S": {a: 2 * MINUTE}},
                       meta={a: MetaUpdate(set={"retained": 100})}, expect={a: version - 1})
    with pytest.raises(RecordConflict):
        storage.commit(batch)
    assert (raw_pairs(storage, a), level_pairs(storage, "S", a)) == (raw_before, level_before)
    assert storage.get_stream(a).meta["retained"] == 0
    batch.expect = {a: version}
    storage.commit(batch)
    assert raw_pairs(storage, a) == [row for row in raw_before if row[0] >= 100]
    assert level_pairs(storage, "S", a) == [(MINUTE, 1)]
    assert storage.get_stream(a).meta["retained"] == 100
    assert storage.get_stream(a).version == version + 1


@pytest.mark.parametrize("batch", [
    lambda a: WriteBatch(drop_raw_before={a: 1.5}),
    lambda a: WriteBatch(drop_raw_before={a: True}),
    lambda a: WriteBatch(drop_levels_from={"S": {a: "10"}}),
    lambda a: WriteBatch(drop_raw_before={"no-such-stream": 10}),
    lambda a: WriteBatch(drop_levels_before={"S": {"no-such-stream": 10}}),
    lambda a: WriteBatch(drop_levels_before={"": {a: 10}}),
], ids=["float", "bool", "text", "unknown raw", "unknown level", "empty level key"])
def test_bad_drops_are_refused_and_change_nothing(factory, batch):
    storage = factory()
    a = add_stream(storage, {"n": 1})
    storage.commit(WriteBatch(raw={a: raw_rows([1, 20], ints=[1, 2])},
                              levels={"S": level_rows(a, [0, MINUTE], [1, 1])}))
    version = storage.get_stream(a).version
    with pytest.raises(exceptions.DatastreamException):
        storage.commit(batch(a))
    assert raw_pairs(storage, a) == [(1, 1), (20, 2)]
    assert level_pairs(storage, "S", a) == [(0, 1), (MINUTE, 1)]
    assert storage.get_stream(a).version == version


def test_counts_and_first_times_agree_with_reads(factory):
    storage = factory()
    a, empty = add_stream(storage, {"n": 1}), add_stream(storage, {"n": 2})
    write_raw_parts(storage, [a], parts=2, with_ties_at=50_000)
    storage.commit(WriteBatch(raw={a: raw_rows([7, 50_000, 99_995], ints=[0, 0, 0])}))
    storage.commit(WriteBatch(truncate_raw={a: 80_000}))
    storage.commit(WriteBatch(drop_raw_before={a: 20_005}))
    times = storage.read_raw(a, None, None).column("t").to_pylist()
    assert times[0] == 20_010 and times[-1] == 79_990
    bounds = [None, -5, 0, 7, 20_005, 20_010, 44_995, 45_000, 50_000, 50_001, 79_990, 80_000,
              99_995, 10**9]
    for start in bounds:
        following = [t for t in times if start is None or t >= start]
        first = following[0] if following else None
        assert storage.first_raw_time(a, start) == first, start
        assert Storage.first_raw_time(storage, a, start) == first, start  # the default
        for end in (None, 7, 20_010, 45_000, 50_001, 80_000):
            expected = len(storage.read_raw(a, start, end))
            assert storage.count_raw(a, start, end) == expected, (start, end)
    assert Storage.count_raw(storage, a, None, None) == len(times)
    for sid in (empty, "no-such-stream"):
        assert storage.count_raw(sid, None, None) == 0
        assert storage.first_raw_time(sid, None) is None
    assert storage.first_raw_time(a, 80_000) is None
