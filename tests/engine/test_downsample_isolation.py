"""A stream whose closed buckets the backend refuses (a level row too large for it, say) does
not hold back the other streams of the same ``downsample_streams`` call."""

from __future__ import annotations

import datetime

import pytest

import datastream
from datastream import Granularity as G
from datastream import exceptions
from tests.engine.failing import FailingStorage, two_writers

UTC = datetime.timezone.utc
T0 = datetime.datetime(2000, 1, 1, tzinfo=UTC)


def at(seconds: int) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def test_one_refused_stream_leaves_the_others_downsampled(backend_factory):
    storage = FailingStorage(backend_factory())
    ds = datastream.Datastream(storage, clock=lambda: at(3600))
    ids = [ds.ensure_stream({"n": n}, {}, ["mean"], G.Seconds) for n in range(4)]
    source = ids[0]
    total = ds.ensure_stream({"n": "sum"}, {}, ["mean"], G.Seconds, derive_from=[source],
                             derive_op="sum")
    for second in range(25):
        for stream_id in ids:
            ds.append(stream_id, second, at(second))
    ds.flush()
    bad = ids[2]
    storage.fail = {bad}
    with pytest.raises(exceptions.StreamAppendFailed, match="other streams were downsampled"):
        ds.downsample_streams()
    for stream_id in (*ids[:2], ids[3], total):
        assert ds.get_tags(stream_id)["downsampled_until"]["10seconds"] == at(20), stream_id
        assert [p["v"]["m"] for p in ds.get_data(stream_id, G.Seconds10, start=T0)] == [4.5,
                                                                                     14.5]
    assert ds.get_tags(bad)["downsampled_until"]["10seconds"] is None
    storage.fail = False
    assert ds.downsample_streams(return_datapoints=True)[0]["stream_id"] == bad
    assert ds.get_tags(bad)["downsampled_until"]["10seconds"] == at(20)
    assert not ds.verify()
    ds.close()


def test_a_lone_refused_stream_raises_as_before(backend_factory):
    storage = FailingStorage(backend_factory())
    ds = datastream.Datastream(storage, clock=lambda: at(3600))
    stream_id = ds.ensure_stream({"n": 1}, {}, ["mean"], G.Seconds)
    for second in range(25):
        ds.append(stream_id, second, at(second))
    ds.flush()
    storage.fail = True
    with pytest.raises(exceptions.StreamAppendFailed):
        ds.downsample_streams()
    storage.fail = False
    ds.downsample_streams()
    assert ds.get_tags(stream_id)["downsampled_until"]["10seconds"] == at(20)
    ds.close()


def test_two_writers_one_refused_stream(backend_factory):
    """Writer two's streams are closed by writer one's call although one of writer one's
    streams is refused; each writer then sees the other's levels."""
    storage, one, two = two_writers(backend_factory, lambda: at(3600))
    bad = one.ensure_stream({"n": "bad"}, {}, ["mean"], G.Seconds)
    good = two.ensure_stream({"n": "good"}, {}, ["mean"], G.Seconds)
    for second_ in range(25):
        one.append(bad, second_, at(second_))
        two.append(good, second_ * 2, at(second_))
    one.flush()
    two.flush()
    storage.fail = {bad}
    with pytest.raises(exceptions.StreamAppendFailed):
        one.downsample_streams()
    assert [p["v"]["m"] for p in two.get_data(good, G.Seconds10, start=T0)] == [9.0, 29.0]
    assert two.get_tags(bad)["downsampled_until"]["10seconds"] is None
    storage.fail = False
    two.downsample_streams()
    assert [p["v"]["m"] for p in one.get_data(bad, G.Seconds10, start=T0)] == [4.5, 14.5]
    assert not one.verify() and not two.verify()
    for instance in (two, one):
        instance.close()
