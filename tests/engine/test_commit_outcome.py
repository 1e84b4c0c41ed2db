"""A commit whose reply was lost (CommitOutcomeUnknown): the engine keeps its points apart and
settles the outcome before retrying them, so every point is stored exactly once."""

from __future__ import annotations

import datetime

import pytest

import datastream
from datastream import Granularity as G
from datastream import exceptions
from datastream.backends import duckdb
from tests.engine.failing import FailingStorage, two_writers

UTC = datetime.timezone.utc
T0 = datetime.datetime(2000, 1, 1, tzinfo=UTC)


def at(seconds: int) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def values(ds, stream_id):
    return [p["v"] for p in ds.get_data(stream_id, G.Seconds, start=T0)]


@pytest.mark.parametrize("outcome", ["stored", "lost"])
def test_a_batch_in_doubt_is_settled_before_its_points_are_retried(backend_factory, outcome):
    storage = FailingStorage(backend_factory())
    ds = datastream.Datastream(storage, clock=lambda: at(3600))
    a = ds.ensure_stream({"n": "a"}, {}, ["mean"], G.Seconds)
    b = ds.ensure_stream({"n": "b"}, {}, ["mean"], G.Seconds)
    total = ds.ensure_stream({"n": "sum"}, {}, ["mean"], G.Seconds, derive_from=[a, b],
                             derive_op="sum")
    for second in range(3):
        ds.append(a, second, at(second))
        ds.append(b, 10, at(second))
    ds.flush()
    for second in range(3, 6):
        ds.append(a, second, at(second))
    storage.unknown = outcome
    with pytest.raises(exceptions.StreamAppendFailed, match="lost"):
        ds.flush()
    storage.unknown = None
    ds.append(a, 6, at(6))  # waits behind the batch in doubt
    other = ds.ensure_stream({"n": "other"}, {}, ["mean"], G.Seconds)
    ds.append(other, 1, at(0))
    with pytest.raises(exceptions.StreamAppendFailed):
        ds.flush()  # still unknown: a's points wait, the other stream is stored
    assert values(ds, other) == [1]
    storage.reachable = True
    ds.flush()
    assert values(ds, a) == [0, 1, 2, 3, 4, 5, 6]
    for second in range(3, 7):
        ds.append(b, 10, at(second))
    ds.flush()
    assert values(ds, total) == [10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0]
    assert not ds.verify()
    ds.close()


@pytest.mark.parametrize("outcome", ["stored", "lost"])
def test_an_unbuffered_append_learns_the_outcome_before_it_returns(outcome):
    storage = FailingStorage(duckdb.Backend())
    ds = datastream.Datastream(storage, buffered=False)
    a = ds.ensure_stream({"n": "a"}, {}, ["mean"], G.Seconds)
    ds.append(a, 0, at(0))
    storage.unknown, storage.reachable = outcome, True
    if outcome == "stored":
        ds.append(a, 1, at(1))  # the commit went through: no error
    else:
        with pytest.raises(exceptions.StreamAppendFailed, match="nothing was stored"):
            ds.append(a, 1, at(1))
    storage.unknown = None
    if outcome == "lost":
        ds.append(a, 1, at(1))  # the caller's retry
    assert values(ds, a) == [0, 1]
    storage.reachable = False
    storage.unknown = "stored"
    with pytest.raises(exceptions.CommitOutcomeUnknown):
        ds.append(a, 2, at(2))
    ds.close()


@pytest.mark.parametrize("outcome", ["stored", "lost"])
def test_a_batch_in_doubt_while_another_writer_goes_on(backend_factory, outcome):
    """Writer one's commit is in doubt while writer two appends to the same stream and
    downsamples: once settled, each point is stored once and the levels agree."""
    storage, one, two = two_writers(backend_factory, lambda: at(3600))
    a = one.ensure_stream({"n": "a"}, {}, ["mean"], G.Seconds)
    one.append(a, 0, at(0))
    one.flush()
    one.append(a, 1, at(1))
    storage.unknown = outcome
    with pytest.raises(exceptions.StreamAppendFailed):
        one.flush()
    storage.unknown = None
    two.append(a, 2, at(2), check_timestamp=False)
    two.append(a, 3, at(12), check_timestamp=False)
    two.flush()
    storage.reachable = True
    one.flush()
    two.downsample_streams(until=at(20))
    assert sorted(values(two, a)) == [0, 1, 2, 3]
    assert [p["v"]["m"] for p in two.get_data(a, G.Seconds10, start=T0)] == [1.0]
    assert not two.verify()
    for instance in (two, one):
        instance.close()


def test_the_background_flusher_settles_a_batch_in_doubt():
    """Nothing else buffered: the flusher still asks again, and stores a lost batch's points
    by itself once the backend answers."""
    import time

    storage = FailingStorage(duckdb.Backend())
    ds = datastream.Datastream(storage, buffer_seconds=0.05)
    a = ds.ensure_stream({"n": "a"}, {}, ["mean"], G.Seconds)
    ds.append(a, 1, at(1))
    storage.unknown = "lost"
    with pytest.raises(exceptions.StreamAppendFailed):
        ds.flush()
    before = storage.commits
    storage.unknown, storage.reachable = None, True
    deadline = time.monotonic() + 30  # generous for a loaded CI: it ends at the first success
    while storage.commits == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert storage.commits == before + 1  # retried by the flusher, no call of ours
    assert values(ds, a) == [1]
    ds.close()
