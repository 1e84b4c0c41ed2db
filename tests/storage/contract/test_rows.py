"""Raw and level rows on every backend: ranges and order, value kinds, level upserts and
schemas, clears, truncation, meta updates, many-stream reads."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datastream import exceptions
from datastream.granularity import MAX_US, MIN_US
from datastream.storage.base import MetaUpdate, WriteBatch
from tests.storage.rows import (
    add_stream,
    level_pairs,
    level_rows,
    new_id,
    raw_pairs,
    raw_rows,
    snapshot,
)


def is_mongodb(storage) -> bool:
    return type(storage).__module__.startswith("datastream.storage.mongodb")


LONG_DECIMAL = "2.71828182845904523536028747135266249775724709369995957496696762"


# -- raw rows ------------------------------------------------------------------------------------


def test_raw_ranges_order_and_equal_timestamps(factory):
    storage = factory()
    a = add_stream(storage, {"n": 1})
    b = add_stream(storage, {"n": 2})
    storage.commit(WriteBatch(raw={a: raw_rows([10, 20, 20, 30], ints=[1, 2, 3, 4])}))
    storage.commit(WriteBatch(raw={a: raw_rows([20, 40], ints=[5, 6]),
                              b: raw_rows([20], ints=[7])}))
    storage.commit(WriteBatch(raw={a: raw_rows([30, 30], ints=[8, 9])}))  # tail = 30 still
    storage.commit(WriteBatch(raw={a: raw_rows([40, 20], ints=[10, 11])}))  # unsorted, older
    expected = [(10, 1), (20, 2), (20, 3), (20, 5), (20, 11), (30, 4), (30, 8), (30, 9),
                (40, 6), (40, 10)]
    newest_first = sorted(expected, key=lambda pair: -pair[0])  # stable: append order kept

    def check(reader):
        assert raw_pairs(reader, a) == expected
        assert raw_pairs(reader, a, 20, 40) == expected[1:8]
        assert raw_pairs(reader, a, 21, None) == expected[5:]
        assert raw_pairs(reader, a, None, 20) == [(10, 1)]
        assert raw_pairs(reader, a, 20, 20) == []
        assert raw_pairs(reader, a, 40, 10) == []
        assert raw_pairs(reader, a, reverse=True) == newest_first
        assert raw_pairs(reader, a, 20, 31, reverse=True) == newest_first[2:9]
        assert raw_pairs(reader, b) == [(20, 7)]
        assert raw_pairs(reader, new_id()) == []
        with np.errstate(all="raise"):
            assert reader.read_raw(a, 5, 1).num_rows == 0
            assert reader.read_raw(b, 5, 1, reverse=True).num_rows == 0
            assert reader.read_raw(new_id(), None, None, reverse=True).num_rows == 0

    check(storage)
    check(factory())


def test_rows_of_one_batch_out_of_time_order_are_read_by_time(storage):
    """The engine sends raw rows sorted; others may not: rows are read by time, rows of one
    time in the order given."""
    a = add_stream(storage, {"n": 1})
    storage.commit(WriteBatch(raw={a: raw_rows([5, 1, 5, 3, 1], ints=[0, 1, 2, 3, 4])}))
    assert raw_pairs(storage, a) == [(1, 1), (1, 4), (3, 3), (5, 0), (5, 2)]
    assert raw_pairs(storage, a, 0, 10, reverse=True) == [(5, 0), (5, 2), (3, 3), (1, 1), (1, 4)]
    storage.commit(WriteBatch(raw={a: raw_rows([6, 7], ints=[5, 6])}))
    assert [i for _, i in raw_pairs(storage, a, 0, 10)] == [1, 4, 3, 0, 2, 5, 6]


def test_every_value_kind_round_trips(factory):
    storage = factory()
    stream_id = add_stream(storage, {"n": 1})
    rows = raw_rows(
        [MIN_US, -1, 0, 0, 1, 2, 3, 4, 5, 6, 1_700_000_000_123_456, MAX_US],
        kinds=[0, 1, 2, 3, 4, 5, 2, 2, 2, 3, 3, 1],
        ints=[None, -(2**63), None, None, None, None, None, None, None, None, None, 2**63 - 1],
        floats=[None, None, -0.5, None, None, None, 1e308, -0.0, 5e-324, None, None, None],
        texts=[None, None, None, "3.14159265358979323846264338327950288419716939937510",
               '{"v":[{"i":"é\\u0000"}],"e":[]}', "", None, None, None, LONG_DECIMAL,
               str(2**128), None],
    )
    storage.commit(WriteBatch(raw={stream_id: rows}))

    def check(reader):
        back = reader.read_raw(stream_id, None, None)
        assert back.equals(rows)
        assert np.signbit(back.column("f").to_pylist()[7])  # -0.0 kept
        assert Decimal(back.column("s").to_pylist()[9]) == Decimal(LONG_DECIMAL)

    check(storage)
    check(factory())


def test_raw_accepts_other_arrow_types_and_record_batches(storage):
    a = add_stream(storage, {"n": 1})
    batch = pa.record_batch(
        {
            "s": pa.array(["x"], pa.large_string()),
            "t": pa.array([5], pa.int32()),
            "k": pa.array([4], pa.int64()),
            "i": pa.nulls(1, pa.int64()),
            "f": pa.nulls(1, pa.float32()),
        }
    )
    storage.commit(WriteBatch(raw={a: batch}))
    assert storage.read_raw(a, None, None).to_pylist() == [
        {"t": 5, "k": 4, "i": None, "f": None, "s": "x"}
    ]


# -- level rows ----------------------------------------------------------------------------------


def test_levels_upsert_subset_and_new_columns(factory):
    storage = factory()
    a = add_stream(storage, {"n": 1})
    b = add_stream(storage, {"n": 2})
    assert storage.read_level("S", a, None, None) is None
    first = pa.table({
        "stream_id": [a, a, b],
        "t": [20, 10, 10],
        "c": pa.array([2, 1, 5], pa.int64()),
        "l": pa.array([1.5, 0.5, None], pa.float32()),
        "x": pa.array(['{"a":1}', None, None], pa.string()),
        "ok": pa.array([True, False, None]),
    })
    storage.commit(WriteBatch(levels={"S": first}))
    rows = storage.read_level("S", a, None, None)
    assert rows.schema == pa.schema([("t", pa.int64()), ("c", pa.int64()), ("l", pa.float32()),
                                     ("x", pa.string()), ("ok", pa.bool_())])
    assert rows.to_pylist() == [
        {"t": 10, "c": 1, "l": 0.5, "x": None, "ok": False},
        {"t": 20, "c": 2, "l": 1.5, "x": '{"a":1}', "ok": True},
    ]
    # a subset of columns replaces the whole row (no field of the old version leaks into the
    # new one); a new column widens the schema
    second = pa.table({"stream_id": [a, a], "t": [20, 30], "c": [7, 8], "np": [3, 4]})
    storage.commit(WriteBatch(levels={"S": second}))
    expected = [
        {"t": 10, "c": 1, "l": 0.5, "x": None, "ok": False, "np": None},
        {"t": 20, "c": 7, "l": None, "x": None, "ok": None, "np": 3},
        {"t": 30, "c": 8, "l": None, "x": None, "ok": None, "np": 4},
    ]
    rows = storage.read_level("S", a, None, None)
    if is_mongodb(storage):  # its column order is its own (t first)
        assert rows.column_names[0] == "t"
        assert sorted(rows.column_names) == sorted(["t", "c", "l", "x", "ok", "np"])
    else:  # a new column comes after the stored ones
        assert rows.column_names == ["t", "c", "l", "x", "ok", "np"]
    assert rows.to_pylist() == expected
    storage.commit(WriteBatch(levels={"S": level_rows(a, [20], [9])}))
    expected[1] = {"t": 20, "c": 9, "l": None, "x": None, "ok": None, "np": None}
    assert storage.read_level("S", a, None, None).to_pylist() == expected
    assert storage.read_level("S", a, 11, 30).column("t").to_pylist() == [20]
    assert storage.read_level("S", a, 10, 30).column("t").to_pylist() == [10, 20]
    assert storage.read_level("S", b, None, None).column("c").to_pylist() == [5]
    assert storage.read_level("S", new_id(), None, None).num_rows == 0
    assert storage.read_level("m", a, None, None) is None
    assert factory().read_level("S", a, None, None).to_pylist() == expected


def test_an_all_null_column_of_type_null(storage):
    """Such a column carries no type: DuckDB and InfluxDB skip it, MongoDB keeps it as nulls
    (the engine reads either way through ``conform``)."""
    a = add_stream(storage, {"n": 1})
    storage.commit(WriteBatch(levels={"S": level_rows(a, [0, 10], [1, 2], n=pa.nulls(2))}))
    rows = storage.read_level("S", a, None, None)
    kept = is_mongodb(storage)
    assert rows.column_names == (["t", "c", "n"] if kept else ["t", "c"])
    assert rows.select(["t", "c"]).to_pylist() == [{"t": 0, "c": 1}, {"t": 10, "c": 2}]
    if kept:
        assert rows.column("n").null_count == 2


def test_a_level_column_of_another_type_is_refused(factory):
    """Text into the int column c: refused, nothing of the batch stored, the level readable."""
    storage = factory()
    a, b = add_stream(storage, {"n": 1}), add_stream(storage, {"n": 2})
    storage.commit(WriteBatch(raw={a: raw_rows([1], ints=[1])},
                              levels={"S": level_rows(a, [0, 10], [1, 2])}))
    before = snapshot(storage, [a, b], ("S", "m"))
    with pytest.raises(exceptions.StreamAppendFailed,
                       match="nothing of (the batch|it).*level 'S'.*column 'c'"):
        storage.commit(WriteBatch(
            raw={a: raw_rows([2], ints=[2]), b: raw_rows([2], ints=[2])},
            levels={"m": level_rows(a, [0], [1]),
                    "S": pa.table({"stream_id": [a], "t": [20], "new": [1.0], "c": ["text"]})},
            meta={a: MetaUpdate(set={"flag": 1})}))
    assert snapshot(storage, [a, b], ("S", "m")) == before
    assert level_pairs(factory(), "S", a) == [(0, 1), (10, 2)]


def test_another_object_refuses_a_column_kind_the_first_one_stored(factory):
    """The kinds a level's columns hold are decided by what is stored, not by what one
    storage object has seen: a second object (another process) is refused alike."""
    first = factory()
    a = add_stream(first, {"n": 1})
    first.commit(WriteBatch(levels={"S": level_rows(a, [0, 10], [1, 2])}))
    second = factory()
    with pytest.raises(exceptions.StreamAppendFailed, match="column 'c'"):
        second.commit(WriteBatch(levels={"S": pa.table({"stream_id": [a], "t": [20],
                                                        "c": ["text"]})}))
    second.commit(WriteBatch(levels={"S": level_rows(a, [20], [3])}))  # the same kind is fine
    assert level_pairs(factory(), "S", a) == [(0, 1), (10, 2), (20, 3)]


def test_level_keys_differing_by_case_are_separate(storage):
    a = add_stream(storage, {"n": 1})
    storage.commit(WriteBatch(levels={"s": level_rows(a, [0], [1]),
                                      "S": level_rows(a, [0], [10])}))
    assert storage.read_level("s", a, None, None).column("c").to_pylist() == [1]
    assert storage.read_level("S", a, None, None).column("c").to_pylist() == [10]


def test_level_rows_repeated_in_one_batch_keep_the_last(storage):
    a = add_stream(storage, {"n": 1})
    storage.commit(WriteBatch(levels={"S": level_rows(a, [5, 5, 1, 10], [1, 2, 3, 4])}))
    assert storage.read_level("S", a, None, None).to_pylist() == [
        {"t": 1, "c": 3}, {"t": 5, "c": 2}, {"t": 10, "c": 4}]


def test_level_types_are_kept(storage):
    stream_id = add_stream(storage, {"n": 1})
    table = pa.table({"stream_id": [stream_id], "t": pa.array([0], pa.int64()),
                      "flag": [True], "ratio": pa.array([0.5], pa.float32()),
                      "text": ["é"], "tiny": pa.array([1], pa.int8()),
                      "x": [LONG_DECIMAL], "m2": pa.array([float("nan")])})
    storage.commit(WriteBatch(levels={"h": table}))
    back = storage.read_level("h", stream_id, None, None)
    assert repr(back.to_pylist()) == repr(table.drop(["stream_id"]).to_pylist())  # NaN kept
    assert back.schema.field("ratio").type == pa.float32()
    assert back.schema.field("flag").type == pa.bool_()
    assert back.schema.field("text").type == pa.string()


# -- clears, truncation, meta --------------------------------------------------------------------


def test_clear_raw_and_levels_happen_before_the_writes(storage):
    a = add_stream(storage, {"n": 1})
    b = add_stream(storage, {"n": 2})
    level = pa.table({"stream_id": [a, a, b], "t": [0, 10, 0], "c": [3, 1, 1]})
    storage.commit(WriteBatch(raw={a: raw_rows([1, 2, 3], ints=[1, 2, 3]), b: raw_rows([1])},
                              levels={"S": level}))
    storage.commit(WriteBatch(
        raw={a: raw_rows([2], ints=[9])},
        levels={"S": pa.table({"stream_id": [a, a], "t": [0, 60], "c": [7, 4]})},
        clear_raw=[a], clear_levels=[a],
    ))
    assert raw_pairs(storage, a) == [(2, 9)]
    assert level_pairs(storage, "S", a) == [(0, 7), (60, 4)]
    assert storage.read_raw(b, None, None).num_rows == 1
    assert storage.read_level("S", b, None, None).num_rows == 1
    storage.commit(WriteBatch(clear_raw=[a], clear_levels=[a]))  # nothing written after
    assert raw_pairs(storage, a) == []
    assert storage.read_level("S", a, None, None).num_rows == 0


def test_truncate_hides_older_rows_from_t_and_keeps_the_batch_rows(factory):
    storage = factory()
    a = add_stream(storage, {"n": 1})
    b = add_stream(storage, {"n": 2})
    storage.commit(WriteBatch(raw={a: raw_rows([1, 3, 5, 7], ints=[1, 3, 5, 7]),
                                   b: raw_rows([5], ints=[99])}))
    storage.commit(WriteBatch(raw={a: raw_rows([5, 6, 9], ints=[50, 60, 90])}))
    # the batch re-writes from 5 on, with a row before the cut and rows at its instant
    storage.commit(WriteBatch(raw={a: raw_rows([4, 5, 5, 8], ints=[-4, -5, -6, -8])},
                              truncate_raw={a: 5}))
    expected = [(1, 1), (3, 3), (4, -4), (5, -5), (5, -6), (8, -8)]
    assert raw_pairs(storage, a) == expected
    assert [i for _, i in raw_pairs(storage, a, reverse=True)] == [-8, -5, -6, -4, 3, 1]
    assert raw_pairs(storage, a, 3, 6) == expected[1:5]
    assert raw_pairs(storage, a, 5, None) == expected[3:]
    assert raw_pairs(storage, b) == [(5, 99)]  # other streams untouched
    # later rows at or after the cut are not cut; a truncation writing nothing hides
    storage.commit(WriteBatch(raw={a: raw_rows([5, 50], ints=[55, 11])}))
    assert raw_pairs(storage, a) == expected[:5] + [(5, 55), (8, -8), (50, 11)]
    storage.commit(WriteBatch(truncate_raw={a: 8}))
    assert raw_pairs(storage, a) == expected[:5] + [(5, 55)]
    # an earlier cut supersedes the later ones
    storage.commit(WriteBatch(raw={a: raw_rows([2], ints=[12])}, truncate_raw={a: 2}))
    assert raw_pairs(storage, a) == [(1, 1), (2, 12)]
    # new rows never take anything of a hidden one
    storage.commit(WriteBatch(raw={a: raw_rows([3, 3, 3, 5], floats=[0.5] * 4, kinds=[2] * 4)}))
    rows = storage.read_raw(a, 3, 6)
    assert rows.column("i").to_pylist() == [None] * 4
    assert rows.column("f").to_pylist() == [0.5] * 4
    assert raw_pairs(factory(), a) == [(1, 1), (2, 12)] + [(3, None)] * 3 + [(5, None)]


def test_truncation_keeps_the_earlier_rows_of_the_same_commit_in_place(storage):
    a = add_stream(storage, {"n": 1})
    storage.commit(WriteBatch(raw={a: raw_rows([1, 2, 3, 4], ints=[1, 2, 3, 4])}))
    storage.commit(WriteBatch(raw={a: raw_rows([2], ints=[22])}))  # equal time, later
    storage.commit(WriteBatch(raw={a: raw_rows([3], ints=[33])}, truncate_raw={a: 3}))
    assert raw_pairs(storage, a) == [(1, 1), (2, 2), (2, 22), (3, 33)]


def test_meta_updates(storage):
    a = add_stream(storage, {"n": 1}, {"keep": "yes", "latest": 10, "earliest": None})
    storage.commit(
        WriteBatch(meta={a: MetaUpdate(set={"flag": True}, max={"latest": 5}, min={"earliest": 7})})
    )
    assert storage.get_stream(a).meta == {"keep": "yes", "latest": 10, "earliest": 7, "flag": True}
    storage.commit(WriteBatch(meta={a: MetaUpdate(max={"latest": 12}, min={"earliest": 3})}))
    assert storage.get_stream(a).meta["latest"] == 12
    assert storage.get_stream(a).meta["earliest"] == 3


def test_meta_updates_never_move_bounds_backwards(storage):
    stream_id = add_stream(storage, {"n": 1}, {"earliest": None, "latest": None, "other": 1})
    for latest, earliest in ((50, 9), (40, 20)):
        update = MetaUpdate(max={"latest": latest}, min={"earliest": earliest})
        storage.commit(WriteBatch(meta={stream_id: update}))
    storage.commit(WriteBatch(meta={stream_id: MetaUpdate(set={"other": None, "new": [1]})}))
    assert storage.get_stream(stream_id).meta == {
        "earliest": 9, "latest": 50, "other": None, "new": [1]
    }
    storage.commit(WriteBatch(meta={stream_id: MetaUpdate(set={"latest": None},
                                                          max={"latest": 7})}))
    assert storage.get_stream(stream_id).meta["latest"] == 7


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
    level_rows_ = pa.table({
        "stream_id": [ids[0], ids[0], ids[1]],
        "t": pa.array([0, 60_000_000, 0], pa.int64()),
        "c": pa.array([1, 2, 3], pa.int64()),
    })
    storage.commit(WriteBatch(raw=raw, levels={"m": level_rows_}))
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


# -- property: ordering and truncation against a model -------------------------------------------

commits = st.lists(
    st.tuples(
        st.dictionaries(
            st.sampled_from([0, 1]),
            st.lists(st.integers(-3, 3), min_size=0, max_size=6).map(sorted),
            max_size=2,
        ),
        st.one_of(st.none(), st.integers(-4, 4)),  # a truncation of stream 0 from t
    ),
    min_size=1,
    max_size=5,
)
bounds = st.one_of(st.none(), st.integers(-4, 4))


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(commits=commits, start=bounds, end=bounds, reverse=st.booleans())
def test_raw_reads_match_a_model(storage, commits, start, end, reverse):
    ids = [add_stream(storage, {"model": new_id()}) for _ in range(2)]
    model: dict[int, list[tuple[int, int]]] = {0: [], 1: []}
    counter = 0
    for commit, cut in commits:
        batch = WriteBatch()
        if cut is not None:
            batch.truncate_raw = {ids[0]: cut}
            model[0] = [p for p in model[0] if p[0] < cut]
        for stream, times in commit.items():
            labels = list(range(counter, counter + len(times)))
            counter += len(times)
            model[stream] += list(zip(times, labels))
            batch.raw[ids[stream]] = raw_rows(times, ints=labels)
        storage.commit(batch)
    for stream in (0, 1):
        expected = [
            p
            for p in model[stream]
            if (start is None or p[0] >= start) and (end is None or p[0] < end)
        ]
        # sorted() is stable: equal timestamps keep append order in both directions
        expected.sort(key=lambda p: -p[0] if reverse else p[0])
        assert raw_pairs(storage, ids[stream], start, end, reverse) == expected
