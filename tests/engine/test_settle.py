"""Settling a change set: a stream replayed by backprocessing ends as live derivation would
have left it (behaviour §7), also for the buckets auto_downsample closes (§5.5)."""

from __future__ import annotations

import datetime

import datastream

G = datastream.Granularity
T0 = datetime.datetime(2000, 1, 1, 12, tzinfo=datetime.timezone.utc)
EVER = datetime.datetime.min
UPTIME = [10, 23, 28, 44, 2, 17, 90, 30, 2, 5, 10, 15, 23, 1, 7, 12, 19, 25]


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def test_backprocess_with_auto_downsample_closes_the_replayed_stream(
        backend_factory, clock) -> None:
    """Resets at :04, :07, :08, :13: auto_downsample closes the 10 s bucket of :00 at once,
    whether the resets were derived live or replayed, and the next flush changes nothing."""
    with datastream.Datastream(backend_factory(), clock=clock, auto_downsample=True) as ds:
        uptime = ds.ensure_stream({"n": "uptime"}, {}, [], G.Seconds)
        live = ds.ensure_stream({"n": "live"}, {}, ["count"], G.Seconds,
                                derive_from=[uptime], derive_op="counter_reset",
                                value_type="nominal")
        for second, value in enumerate(UPTIME):
            ds.append(uptime, value, at(second))
        ds.flush()
        replayed = ds.ensure_stream({"n": "replayed"}, {}, ["count"], G.Seconds,
                                    derive_from=[uptime], derive_op="counter_reset",
                                    value_type="nominal")
        ds.backprocess_streams({"n": "replayed"})
        ds.append(uptime, 30, at(len(UPTIME)))  # no reset: neither stream gets a point
        ds.flush()
        for stream_id in (live, replayed):
            assert ds.get_tags(stream_id)["downsampled_until"]["10seconds"] == at(10)
            assert [p["v"]["c"] for p in ds.get_data(stream_id, G.Seconds10, start=EVER)] == [3]
