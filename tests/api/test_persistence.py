"""Close and reopen: every value type, precision, timestamps, tags and metadata survive."""

from __future__ import annotations

import datetime
import decimal
import subprocess
import sys
import textwrap

import pytest

import datastream
from datastream import exceptions

from .helpers import EVER, G, at, level, raw, snapshot, values

E = decimal.Decimal("2.71828182845904523536028747135266249775724709369995957496696762")
WIDE = decimal.Decimal("12345678901234567890123456789012.34567890123456789012345678901234")
TAGS = {
    "title": "ünïcode ✓ 'quoted' \"double\"",
    "nested": {"deep": {"deeper": [1, 2.5, None, True, {"x": "y"}]}, "stream_id": "ordinary"},
    "empty": {},
    "list": [],
    "number": -12,
    "float": 0.1,
    "flag": False,
    "nothing": None,
}
NOMINAL = ["text", 1, 2.5, True, False, [1, [2, {"a": None}]], {"k": {"v": [1, 2]}}, "", {}]
GRAPH = {"v": [{"i": "a", "x": 1}, {"i": 2}], "e": [{"f": "a", "t": 2, "w": 0.5}], "n": "g"}


def _populate(ds) -> dict[str, str]:
    ids = {
        "numeric": ds.ensure_stream({"kind": "numeric"}, TAGS, ["mean", "min", "max", "median"],
                                    G.Seconds),
        "high": ds.ensure_stream({"kind": "high"}, {}, ["mean", "sum"], G.Seconds,
                                 value_type_options={"high_accuracy": True}),
        "nominal": ds.ensure_stream({"kind": "nominal"}, {}, ["most_often", "frequencies"],
                                    G.Seconds, value_type="nominal"),
        "graph": ds.ensure_stream({"kind": "graph"}, {}, ["count"], G.Seconds,
                                  value_type="graph"),
        "minutes": ds.ensure_stream({"kind": "minutes"}, {"n": 1}, ["std_dev"], "minutes"),
    }
    ids["derived"] = ds.ensure_stream(
        {"kind": "derived"}, {}, ["mean"], G.Seconds, derive_from=[ids["numeric"]],
        derive_op="derivative",
    )
    numeric = [7, -3, 2**62, 1.5, decimal.Decimal("0.25"), None, 2**128, 1e-300, -0.0]
    for index, value in enumerate(numeric):
        ds.append(ids["numeric"], value, at(index + 0.000001 * index))
    for index, value in enumerate([E, WIDE, decimal.Decimal("-1e-60"), 3]):
        ds.append(ids["high"], value, at(index * 0.5))
    for index, value in enumerate(NOMINAL):
        ds.append(ids["nominal"], value, at(index))
    ds.append(ids["graph"], GRAPH, at(0.999999))
    ds.append(ids["graph"], None, at(1))
    for index in range(30):
        ds.append(ids["minutes"], index * 1.5, at(index * 20))
    for stream_id in ids.values():
        if stream_id != ids["derived"]:
            ds.append(stream_id, None, at(700))
    ds.downsample_streams(until=at(650))
    return ids


def test_everything_survives_reopen(ds, reopen, request) -> None:
    ids = _populate(ds)
    before = snapshot(ds)
    tags_before = {name: ds.get_tags(i) for name, i in ids.items()}
    data_before = {name: raw(ds, i) for name, i in ids.items()}
    ds = reopen(ds)
    request.addfinalizer(ds.close)
    assert snapshot(ds) == before
    assert {name: ds.get_tags(i) for name, i in ids.items()} == tags_before
    assert {name: raw(ds, i) for name, i in ids.items()} == data_before


def test_values_after_reopen(ds, reopen, request) -> None:
    ids = _populate(ds)
    ds = reopen(ds)
    request.addfinalizer(ds.close)
    got = values(ds, ids["numeric"])
    assert got[:5] == [7, -3, 2**62, 1.5, 0.25]
    assert [type(v) for v in got[:5]] == [int, int, int, float, float]
    assert got[5] is None
    assert got[6] == 2**128 and type(got[6]) is float
    assert got[7] == 1e-300
    assert [p["t"] for p in raw(ds, ids["numeric"])][:3] == [at(0), at(1.000001), at(2.000002)]
    high = values(ds, ids["high"])
    assert high[:4] == [E, WIDE, decimal.Decimal("-1e-60"), 3]
    assert all(type(v) is decimal.Decimal for v in high[:4])
    assert str(high[0]) == str(E)
    assert str(high[1]) == str(WIDE)
    nominal = values(ds, ids["nominal"])[: len(NOMINAL)]
    assert nominal == NOMINAL
    assert [type(v) for v in nominal] == [type(v) for v in NOMINAL]
    assert values(ds, ids["graph"])[:2] == [GRAPH, None]
    assert raw(ds, ids["graph"])[0]["t"] == at(0.999999)
    tags = ds.get_tags(ids["numeric"])
    for key, value in TAGS.items():
        assert tags[key] == value
        assert type(tags[key]) is type(value)
    assert datastream.Stream(tags).tags == {"kind": "numeric", **TAGS}
    assert ds.find_streams({"nested": {"deep": {"deeper": [1, 2.5, None, True, {"x": "y"}]}}})[
        0]["stream_id"] == ids["numeric"]
    assert ds.get_tags(ids["minutes"])["highest_granularity"] == G.Minutes
    assert ds.get_tags(ids["derived"])["derived_from"]["stream_ids"] == [ids["numeric"]]
    assert set(ds.get_tags(ids["numeric"])["contributes_to"]) == {ids["derived"]}
    assert ds.get_tags(ids["high"])["value_type_options"] == {"high_accuracy": True}
    assert ds.get_tags(ids["high"])["downsampled_until"]["10seconds"] == at(650)


def test_aggregates_after_reopen(ds, reopen, request) -> None:
    ids = _populate(ds)
    ds = reopen(ds)
    request.addfinalizer(ds.close)
    first = level(ds, ids["high"], G.Seconds10)[0]["v"]
    assert first["c"] == 4
    context = decimal.Context(prec=64)
    exact = context.add(context.add(context.add(E, WIDE), decimal.Decimal("-1e-60")), 3)
    assert first["s"] == exact
    assert type(first["m"]) is decimal.Decimal
    nominal = level(ds, ids["nominal"], G.Seconds10)[0]["v"]
    assert nominal["c"] == len(NOMINAL)
    assert level(ds, ids["minutes"], G.Minutes10)[0]["v"]["c"] == 30


def test_rules_hold_after_reopen(ds, reopen, request) -> None:
    ids = _populate(ds)
    ds = reopen(ds)
    request.addfinalizer(ds.close)
    with pytest.raises(exceptions.InvalidTimestamp):
        ds.append(ids["numeric"], 1, at(699))
    with pytest.raises(exceptions.InvalidTimestamp):
        ds.append(ids["numeric"], 1, at(100), check_timestamp=False)
    with pytest.raises(exceptions.AppendToDerivedStreamNotAllowed):
        ds.append(ids["derived"], 1, at(800))
    with pytest.raises(exceptions.InconsistentStreamConfiguration):
        ds.ensure_stream({"kind": "numeric"}, {}, ["mean"], G.Seconds)
    assert ds.ensure_stream({"kind": "numeric"}, TAGS, ["mean", "min", "max", "median"],
                            "s") == ids["numeric"]
    ds.append(ids["numeric"], 10, at(701))
    ds.append(ids["numeric"], 12, at(702))
    assert values(ds, ids["derived"])[-1] == 2.0
    assert ds.downsample_streams(until=at(650), return_datapoints=True) == []


def test_default_in_memory(clock) -> None:
    with datastream.Datastream(clock=clock) as ds:
        stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
        ds.append(stream_id, 1)
        assert raw(ds, stream_id) == [{"t": clock.now, "v": 1}]
    with datastream.Datastream(clock=clock) as fresh:
        assert len(fresh.find_streams()) == 0


def test_second_writer_process_gets_a_clear_error(tmp_path, clock) -> None:
    from datastream.backends import duckdb

    path = str(tmp_path / "locked.duckdb")
    holder = datastream.Datastream(duckdb.Backend(path), clock=clock)
    try:
        holder.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
        holder.flush()
        script = textwrap.dedent(
            """
            import sys
            import datastream
            from datastream.backends import duckdb
            try:
                d = datastream.Datastream(duckdb.Backend(sys.argv[1]))
                d.ensure_stream({"b": 1}, {}, ["mean"], "seconds")
                d.close()
            except datastream.exceptions.DatastreamException as error:
                print("DatastreamException", type(error).__name__, error)
                sys.exit(3)
            except BaseException as error:
                print("other", type(error).__name__, error)
                sys.exit(4)
            print("opened")
            """
        )
        done = subprocess.run([sys.executable, "-c", script, path], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 3, done.stdout + done.stderr
        assert path in done.stdout or "lock" in done.stdout.lower()
    finally:
        holder.close()
    with datastream.Datastream(duckdb.Backend(path), clock=clock) as again:
        assert [s["a"] for s in again.find_streams()] == [1]
        assert len(again.get_data(again.find_streams()[0]["stream_id"], G.Seconds,
                                  start=EVER)) == 0


def test_microsecond_timestamps_across_levels(ds, reopen, request) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    stamps = [at(0.000001), at(0.499999), at(1.500001), at(9.999999), at(10)]
    for value, stamp in enumerate(stamps):
        ds.append(stream_id, value, stamp)
    ds.downsample_streams(until=at(20))
    ds = reopen(ds)
    request.addfinalizer(ds.close)
    assert [p["t"] for p in raw(ds, stream_id)] == stamps
    bucket = level(ds, stream_id, G.Seconds10)[0]["t"]
    assert bucket["a"] == at(0.000001)
    assert bucket["z"] == at(9.999999)
    assert bucket["m"] == datetime.datetime(2000, 1, 1, 12, 0, 3, tzinfo=datetime.timezone.utc)
