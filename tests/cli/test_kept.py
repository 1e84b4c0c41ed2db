"""What each level of a stream keeps, as ``retention show`` and ``info`` list it."""

from __future__ import annotations

import datetime

import datastream
from datastream.cli.kept import LevelKept, shown_levels, stream_kept

from .support import START

G = datastream.Granularity


def test_levels_shown_follow_the_stream_configuration() -> None:
    with datastream.Datastream() as ds:
        hourly = ds.get_tags(ds.ensure_stream({"n": "h"}, {}, ["mean"], G.Hours))
        plain = ds.get_tags(ds.ensure_stream({"n": "p"}, {}, [], G.Seconds))
    assert shown_levels(hourly) == [G.Hours, G.Hours6, G.Days]
    assert shown_levels(plain) == [G.Seconds]  # no downsamplers: raw points only


def test_a_level_not_downsampled_yet_has_no_oldest_point() -> None:
    now = START + datetime.timedelta(hours=1)
    with datastream.Datastream(clock=lambda: now) as ds:
        stream_id = ds.ensure_stream({"n": "x"}, {}, ["mean"], G.Minutes10)
        ds.append(stream_id, 1.0, START + datetime.timedelta(minutes=5))
        ds.append(stream_id, 2.0, START + datetime.timedelta(minutes=25))
        ds.set_retention({"n": "x"}, {"days": datetime.timedelta(days=30)})
        kept = stream_kept(ds, ds.get_tags(stream_id))
    five = START + datetime.timedelta(minutes=5)
    assert kept == [
        LevelKept(G.Minutes10, True, None, five),
        LevelKept(G.Hours, False, None, None),
        LevelKept(G.Hours6, False, None, None),
        LevelKept(G.Days, False, datetime.timedelta(days=30), None),
    ]
    assert [(row.label, row.oldest_text) for row in kept[:2]] == [
        ("10minutes (raw)", "2000-01-01T00:05:00Z"), ("hours (h)", "-")]


def test_a_downsampled_level_starts_at_its_first_bucket() -> None:
    now = START + datetime.timedelta(hours=2)
    with datastream.Datastream(clock=lambda: now) as ds:
        stream_id = ds.ensure_stream({"n": "x"}, {}, ["mean"], G.Minutes10)
        ds.append(stream_id, 1.0, START + datetime.timedelta(minutes=25))
        ds.append(stream_id, 2.0, START + datetime.timedelta(minutes=75))
        ds.downsample_streams()
        kept = stream_kept(ds, ds.get_tags(stream_id))
    assert [row.oldest for row in kept[:2]] == [START + datetime.timedelta(minutes=25), START]
