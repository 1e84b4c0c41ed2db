"""Two Datastream objects over one backend behave as if one process did all the work in some
order: operator state, contributes_to, tags and frozen ranges come from the stored records."""

from __future__ import annotations

import datetime
import threading

import pytest

import datastream
from datastream import exceptions
from tests.api import helpers

G = datastream.Granularity
T0 = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


@pytest.fixture
def pair(backend_factory, clock):
    """Two Datastream objects over one stored backend (for DuckDB: one storage object, a
    second writer of the same file is refused by design)."""
    first_backend = backend_factory()
    second_backend = first_backend if first_backend.concurrent_writers is False else (
        backend_factory())
    one = datastream.Datastream(first_backend, clock=clock)
    two = datastream.Datastream(second_backend, clock=clock)
    yield one, two
    for instance in (two, one):
        try:
            instance.close()
        except exceptions.DatastreamException:
            pass


def values(ds, stream_id, granularity=G.Seconds):
    return [p["v"] for p in ds.get_data(stream_id, granularity, start=T0)]


def test_derivative_fed_alternately_by_two_writers(pair):
    one, two = pair
    a = one.ensure_stream({"n": "a"}, {}, [], G.Seconds)
    d = one.ensure_stream({"n": "d"}, {}, [], G.Seconds, derive_from=[a],
                          derive_op="derivative")
    for index, (second, value) in enumerate(zip([0, 1, 2, 3, 4, 10, 11],
                                                [21, 25, 28, 32, 25, 70, 74])):
        writer = (one, two)[index % 2]
        writer.append(a, value, at(second))
        writer.flush()
    assert values(one, d) == [4.0, 3.0, 4.0, -7.0, 7.5, 4.0]
    assert values(two, d) == [4.0, 3.0, 4.0, -7.0, 7.5, 4.0]


def test_sum_fed_by_two_writers_one_source_each(pair):
    one, two = pair
    a = one.ensure_stream({"n": "a"}, {}, [], G.Seconds)
    b = two.ensure_stream({"n": "b"}, {}, [], G.Seconds)
    s = one.ensure_stream({"n": "s"}, {}, [], G.Seconds, derive_from=[a, b], derive_op="sum")
    seconds = [0, 1, 2, 3, 4, 10, 11]
    for second, x, y in zip(seconds, [21, 25, 28, 32, 25, 70, 74], [21, 25, 28, 32, 25, 42, 42]):
        one.append(a, x, at(second))
        one.flush()
        two.append(b, y, at(second))
        two.flush()
    assert values(two, s) == [42.0, 50.0, 56.0, 64.0, 50.0, 112.0, 116.0]


def test_sum_of_two_writers_comes_with_the_flush_completing_a_bucket(pair):
    """Points of one bucket at different times from two writers: the flush of the second
    source's point completes the bucket and brings its sum."""
    one, two = pair
    a = one.ensure_stream({"n": "a"}, {}, [], G.Seconds)
    b = two.ensure_stream({"n": "b"}, {}, [], G.Seconds)
    s = one.ensure_stream({"n": "s"}, {}, [], G.Seconds, derive_from=[a, b], derive_op="sum")
    for second in range(5):
        one.append(a, second, at(second + 0.1))
        one.flush()
        two.append(b, 10 * second, at(second + 0.7))
        two.flush()
        assert values(one, s)[-1] == 11.0 * second
        one.append(a, 99, at(second + 0.9))  # later in the bucket: changes nothing
        one.flush()
    assert values(two, s) == [0.0, 11.0, 22.0, 33.0, 44.0]
    assert not one.verify()


def test_a_derived_stream_of_the_other_writer_closes_buckets_as_its_source_advances(pair):
    one, two = pair
    uptime = one.ensure_stream({"n": "uptime"}, {}, [], G.Seconds)
    reset = one.ensure_stream({"n": "reset"}, {}, ["count"], G.Seconds, derive_from=[uptime],
                              derive_op="counter_reset", value_type="nominal")
    for second, value in enumerate([10, 23, 28, 44, 2, 17, 90, 30, 2, 5, 10, 15, 23, 1, 7, 12,
                                    19, 25, 31, 45, 51]):
        (one, two)[second % 2].append(uptime, value, at(second))
        (one, two)[second % 2].flush()
    two.downsample_streams(until=at(3600))
    counts = [p["v"]["c"] for p in one.get_data(reset, G.Seconds10, start=T0)]
    assert counts == [3, 1]


def test_two_writers_deriving_from_one_source_both_get_data_and_protection(pair):
    one, two = pair
    source = one.ensure_stream({"n": "src"}, {}, [], G.Seconds)
    two.get_tags(source)  # the second writer has the source cached
    d1 = one.ensure_stream({"n": "d1"}, {}, [], G.Seconds, derive_from=[source],
                           derive_op="derivative")
    d2 = two.ensure_stream({"n": "d2"}, {}, [], G.Seconds, derive_from=[source],
                           derive_op="derivative")
    assert set(one.get_tags(source)["contributes_to"]) == {d1, d2}
    for second in range(4):
        one.append(source, second * 2, at(second))
    one.flush()
    assert values(two, d1) == values(two, d2) == [2.0, 2.0, 2.0]
    with pytest.raises(exceptions.OutstandingDependenciesError):
        two.delete_streams({"n": "src"})
    one.delete_streams({"n": "d1"})
    assert set(two.get_tags(source)["contributes_to"]) == {d2}


def test_concurrent_tag_updates_of_different_keys_are_all_kept(pair):
    one, two = pair
    sid = one.ensure_stream({"n": 1}, {"keep": True}, [], G.Seconds)
    two.get_tags(sid)

    def update(ds, prefix):
        for index in range(10):
            ds.update_tags(sid, {f"{prefix}{index}": index})

    threads = [threading.Thread(target=update, args=(ds, prefix))
               for ds, prefix in ((one, "a"), (two, "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tags = one.get_tags(sid)
    assert all(tags[f"a{i}"] == i and tags[f"b{i}"] == i for i in range(10))
    assert tags["keep"] is True


def _before_tag_write(ds, action) -> None:
    """Run ``action`` (the other writer's) just before ``ds`` writes a stream's tags."""
    engine = ds._engine
    original = engine.change_tags

    def interleaved(stream_id, change):
        engine.change_tags = original
        action()
        return original(stream_id, change)

    engine.change_tags = interleaved


def test_ensure_stream_racing_a_tag_change_that_unmatches_its_query(pair):
    """The other writer retags the stream so that the query no longer matches it: as if that
    came first, ensure_stream creates a new stream and the retag is kept."""
    one, two = pair
    sid = one.ensure_stream({"n": 1}, {"t": 0}, [], G.Seconds)
    _before_tag_write(one, lambda: two.update_tags(sid, {"n": 2}))
    new = one.ensure_stream({"n": 1}, {"t": 1}, [], G.Seconds)
    assert new != sid
    assert one.get_tags(sid)["n"] == 2 and one.get_tags(sid)["t"] == 0
    assert one.get_tags(new)["n"] == 1 and one.get_tags(new)["t"] == 1


def test_ensure_stream_racing_an_unrelated_tag_change(pair):
    """A retag that keeps the stream matching: the stream is reused, its tags replaced."""
    one, two = pair
    sid = one.ensure_stream({"n": 1}, {"t": 0}, [], G.Seconds)
    _before_tag_write(one, lambda: two.update_tags(sid, {"other": 5}))
    assert one.ensure_stream({"n": 1}, {"t": 1}, [], G.Seconds) == sid
    tags = one.get_tags(sid)
    assert tags["n"] == 1 and tags["t"] == 1 and "other" not in tags


def test_ensure_stream_racing_a_delete(pair):
    one, two = pair
    sid = one.ensure_stream({"n": 1}, {"t": 0}, [], G.Seconds)
    _before_tag_write(one, lambda: two.delete_streams({"n": 1}))
    new = one.ensure_stream({"n": 1}, {"t": 1}, [], G.Seconds)
    assert new != sid
    assert [s["stream_id"] for s in two.find_streams({"n": 1})] == [new]


def test_a_stale_point_behind_the_others_retention_is_dropped_not_folded(backend_factory,
                                                                          clock):
    """The other writer downsampled and deleted the raw points the levels hold: a point
    buffered before that cannot be folded in (its buckets would be recomputed from raw points
    that are gone). It is dropped with a warning, and the levels keep everything."""
    first_backend = backend_factory()
    second_backend = first_backend if first_backend.concurrent_writers is False else (
        backend_factory())
    one = datastream.Datastream(first_backend, clock=clock)
    # no flush by age: the point stays buffered until the explicit flush below
    two = datastream.Datastream(second_backend, clock=clock, buffer_seconds=10**6)
    hour = 3600
    sid = one.ensure_stream({"n": 1}, {}, ["mean"], G.Hours)
    one.append(sid, 1, at(0))
    one.flush()
    two.append(sid, 1, at(5))  # valid now; stays buffered in the second object
    for second in range(hour, 5 * 24 * hour + 1, hour):
        one.append(sid, 1, at(second))
    one.flush()
    clock.now = at(5 * 24 * hour)
    one.downsample_streams(until=clock.now)
    one.set_retention({"n": 1}, {G.Hours: datetime.timedelta(days=1)})
    assert one.apply_retention()["deleted"] == {"hours": 96}
    with pytest.warns(exceptions.InternalInconsistencyWarning, match="dropped"):
        two.flush()
    days = [p["v"]["c"] for p in one.get_data(sid, G.Days, start=T0)]
    assert days == [24, 24, 24, 24, 24]
    assert sum(p["v"]["c"] for p in one.get_data(sid, G.Hours6, start=T0)) == 120
    assert one.get_tags(sid)["earliest_datapoint"] == at(4 * 24 * hour)
    assert not one.verify()
    two.close()
    one.close()


def test_a_stale_writer_cannot_append_into_a_range_the_other_downsampled(pair):
    one, two = pair
    sid = one.ensure_stream({"n": 1}, {}, ["mean"], G.Seconds)
    for second in range(0, 120, 5):
        one.append(sid, second, at(second))
    one.flush()
    two.get_tags(sid)  # cached before the other writer downsamples
    one.downsample_streams(until=at(60))
    with pytest.raises(exceptions.InvalidTimestamp, match="downsampled"):
        two.append(sid, 1, at(30), check_timestamp=False)
    two.flush()
    assert [p["v"] for p in one.get_data(sid, G.Seconds, start=at(30), end=at(30))] == [30]


def test_a_stale_writer_sees_the_latest_datapoint_of_the_other(pair):
    one, two = pair
    sid = one.ensure_stream({"n": 1}, {}, [], G.Seconds)
    two.get_tags(sid)
    one.append(sid, 1, at(10))
    one.flush()
    with pytest.raises(exceptions.InvalidTimestamp, match="older"):
        two.append(sid, 2, at(5))


def test_buffered_points_behind_the_others_new_bound_are_folded_in(pair):
    """A point accepted before the other writer closed its range (and committed after)
    becomes part of the closed buckets: levels never diverge from raw rows."""
    one, two = pair
    sid = one.ensure_stream({"n": 1}, {}, ["mean", "count"], G.Seconds)
    for second in range(0, 120, 10):
        one.append(sid, 10, at(second))
    one.flush()
    two.append(sid, 40, at(125))  # buffered by the second writer only
    two.append(sid, 70, at(130))
    one.append(sid, 10, at(200))
    one.flush()
    one.downsample_streams(until=at(190))  # closes up to 180 without the buffered points
    two.flush()
    minute = one.get_data(sid, G.Minutes, start=at(120), end=at(120))
    assert [(p["v"]["c"], p["v"]["m"]) for p in minute] == [(2, 55.0)]
    ten = one.get_data(sid, G.Seconds10, start=at(120), end=at(130))
    assert [(p["v"]["c"], p["v"]["m"]) for p in ten] == [(1, 40.0), (1, 70.0)]


def test_closing_one_of_two_objects_leaves_the_other_working(pair):
    """Either order of close: the object closed last still stores its buffered points (for
    DuckDB both share one storage object, which the last one releases)."""
    one, two = pair
    a = one.ensure_stream({"n": "a"}, {}, ["count"], G.Seconds)
    one.append(a, 1, at(0))
    two.append(a, 2, at(1))
    one.close()
    assert values(two, a) == [1, 2]
    two.append(a, 3, at(2))
    two.close()
    with pytest.raises(exceptions.StorageUnavailable):
        two.append(a, 4, at(3))


def test_a_writer_alone_at_first_sees_what_a_later_one_changed(backend_factory, clock):
    """The append lane trusts its cached state only while no other Datastream uses the
    backend object; once one joined, also after it left, it checks the stored state."""
    first_backend = backend_factory()
    one = datastream.Datastream(first_backend, clock=clock)
    sid = one.ensure_stream({"n": 1}, {}, ["mean"], G.Seconds)
    for second in range(0, 120, 5):
        one.append(sid, second, at(second))
    one.flush()
    one.append(sid, 120, at(120))  # the lane of this state, built while alone
    one.flush()
    second_backend = first_backend if first_backend.concurrent_writers is False else (
        backend_factory())
    two = datastream.Datastream(second_backend, clock=clock)
    two.append(sid, 1, at(200))
    two.flush()
    two.downsample_streams(until=at(60))
    two.close()  # the other writer leaves: what it changed is not in the first one's cache
    with pytest.raises(exceptions.InvalidTimestamp, match="older"):
        one.append(sid, 1, at(150))  # after its own latest point, before the other's
    with pytest.raises(exceptions.InvalidTimestamp, match="downsampled"):
        one.append(sid, 1, at(30), check_timestamp=False)
    one.append(sid, 2, at(200))
    assert values(one, sid)[-3:] == [120, 1, 2]
    one.close()


def test_get_table_of_one_object_sees_what_the_other_stored(pair):
    """behaviour §6.4 over a shared backend: a many-stream table reads the stored streams and
    points (another writer's flushed appends, a stream it created, its downsampling), never a
    stale view of them."""
    one, two = pair
    a = one.ensure_stream({"site": "x", "n": 1}, {}, ["mean"], G.Seconds)
    one.append(a, 1.0, at(0))
    one.flush()
    assert two.get_table({"site": "x"}, G.Seconds).column("v").to_pylist() == [1.0]
    b = two.ensure_stream({"site": "x", "n": 2}, {}, ["mean"], G.Seconds)
    two.append(b, 2.0, at(1))
    two.append(a, 3.0, at(70))
    two.flush()
    table = one.get_table({"site": "x"}, G.Seconds, tags=("n",))
    assert sorted(zip(table.column("n").to_pylist(), table.column("v").to_pylist())) == [
        (1, 1.0), (1, 3.0), (2, 2.0)]
    two.downsample_streams(until=at(120))
    minutes = one.get_table({"site": "x", "n": 1}, G.Minutes, value_downsamplers=["mean"])
    assert minutes.column("mean").to_pylist()[0] == 1.0


def test_metadata_of_a_derived_stream_shows_only_what_is_stored_or_ones_own_buffer(pair):
    """A derived stream's extent includes the asking object's buffered source points (it
    flushes them first), never another object's: those are not stored yet, and asking does
    not flush them (behaviour §4.1, §4.3)."""
    one, two = pair
    a, d = helpers.derivative_with_a_buffered_point(one)
    query, noon = {"n": {"$in": ["a", "d"]}}, helpers.at
    stored = {a: (noon(0), noon(2)), d: (noon(1), noon(2))}
    assert helpers.extents(two.find_streams(query)) == stored
    assert two.get_tags(d)["latest_datapoint"] == noon(2)
    assert one.get_tags(a)["latest_datapoint"] == noon(3)  # a's own buffer: no flush needed
    assert helpers.extents(two.find_streams(query)) == stored
    flushed = {a: (noon(0), noon(3)), d: (noon(1), noon(3))}
    assert helpers.extents(one.find_streams(query)) == flushed
    assert helpers.extents(two.find_streams(query)) == flushed


def test_lean_level_rows_of_two_writers_read_as_one_writers(pair):
    """Level rows keep only the state a stream's downsamplers read. One object closes the
    10 s buckets, the other later merges those stored rows into minutes and hours: the result
    is what a stream keeping every downsampler gives for the same keys."""
    one, two = pair
    lean = one.ensure_stream({"n": "lean"}, {}, ["std_dev", "max"], G.Seconds)
    full = one.ensure_stream({"n": "full"}, {}, helpers.ALL_VALUE_DOWNSAMPLERS, G.Seconds)
    for second in range(0, 2 * 3600, 7):
        writer = one if second < 3600 else two
        value = 1e9 + (second * 7919) % 101 / 10  # huge values: M2 needs the mean offsets
        writer.append(lean, value, at(second))
        writer.append(full, value, at(second))
        if second in (1799, 3605):
            writer.flush()
            writer.downsample_streams(until=at(second - 300))
    two.downsample_streams(until=at(2 * 3600))
    keys = {"c", "s", "q", "u", "d"}
    for granularity in (G.Seconds10, G.Minutes, G.Hours):
        for reader in (one, two):
            got, expected = values(reader, lean, granularity), values(reader, full, granularity)
            assert got == [{key: v[key] for key in keys} for v in expected] and got


def test_a_late_reset_from_the_other_writer_recomputes_the_closed_buckets(backend_factory,
                                                                          clock):
    """A reset committed by one writer after the other writer's points were derived and their
    buckets auto-closed: the counter_derivative is derived again from the reset on (its point
    behind the reset goes), and its closed buckets are computed again from where that starts,
    including the buckets before its new first point (found by the state machine)."""
    first_backend = backend_factory()
    second_backend = first_backend if first_backend.concurrent_writers is False else (
        backend_factory())
    one = datastream.Datastream(first_backend, clock=clock, auto_downsample=True,
                                buffer_seconds=3600)
    two = datastream.Datastream(second_backend, clock=clock, auto_downsample=True,
                                buffered=False)
    try:
        uptime = one.ensure_stream({"n": "uptime"}, {}, ["mean"], G.Seconds)
        data = two.ensure_stream({"n": "data"}, {}, ["mean"], G.Seconds)
        reset = one.ensure_stream({"n": "reset"}, {}, ["count"], G.Seconds,
                                  derive_from=[uptime], derive_op="counter_reset",
                                  value_type="nominal")
        rate = one.ensure_stream({"n": "rate"}, {}, ["mean"], G.Seconds,
                                 derive_from=[{"stream": reset, "name": "reset"}, data],
                                 derive_op="counter_derivative",
                                 derive_args={"max_value": 256})
        one.append(uptime, 284, at(65))
        one.append(uptime, 200, at(126))  # a reset at 126 s, still buffered in `one`
        for seconds, value in [(70, 19.75), (669, 23.75), (1268, 18.0), (1273, 38),
                               (1275, None), (1285, 11.75)]:
            two.append(data, value, at(seconds))  # committed and derived at once
        # 4/599 at 669 s, while the reset is unknown
        assert closed_with_points(two, rate) == [at(660), at(1260), at(1270)]
        one.flush()
        # replayed: the reset clears the point before 669 s, so 669 s emits nothing
        assert [p["t"] for p in values_at(two, rate)] == [at(1268), at(1273), at(1275)]
        assert closed_with_points(two, rate) == [at(1260), at(1270)]
        assert not one.verify() and not two.verify()
    finally:
        for instance in (two, one):
            try:
                instance.close()
            except exceptions.DatastreamException:
                pass


def values_at(ds, stream_id):
    return list(ds.get_data(stream_id, G.Seconds, start=datetime.datetime.min))


def closed_with_points(ds, stream_id) -> list[datetime.datetime]:
    """Starts of the closed 10 s buckets of a stream that hold points."""
    table = ds.get_data(stream_id, G.Seconds10, start=datetime.datetime.min).to_arrow()
    return [t for t, count in zip(table.column("t").to_pylist(),
                                  table.column("count").to_pylist()) if count]
