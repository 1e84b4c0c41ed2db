"""behaviour §10: ``verify()`` on every backend — clean after ordinary use, and every kind of
tampering with stored levels or derived points is reported with the right coordinates."""

from __future__ import annotations

import datetime
import decimal
import json
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from datastream import exceptions
from datastream.engine.downsampling import conform
from datastream.granularity import to_us
from datastream.storage.base import RAW_SCHEMA, WriteBatch
from datastream.verification import ABSENT, Verification, describe

from .helpers import ALL_VALUE_DOWNSAMPLERS, G, at, level, raw

WIDE = decimal.Context(prec=200)
E = decimal.Decimal("2.71828182845904523536028747135266249775724709369995957496696762")
ALL = ALL_VALUE_DOWNSAMPLERS + ["most_often", "least_often", "frequencies"]
NOMINAL = ["count", "most_often", "least_often", "frequencies"]
SECONDS = [0, 1, 2, 3, 4, 10, 11]
A = [21, 25, 28, 32, 25, 70, 74]
B = [21, 25, 28, 32, 25, 42, 42]
UPTIME = [10, 23, 28, 44, 2, 17, 90, 30, 2, 5, 10, 15, 23, 1, 7, 12, 19, 25, 31, 45, 51]
DAY = 86_400
LATE = 700  # seconds: late enough to close ten-minute buckets


def clean(result: Verification) -> bool:
    """True when verify found nothing; the assertion message lists what it found."""
    assert isinstance(result, Verification)
    assert not result, "\n".join(describe(m) for m in list(result)[:20])
    assert len(result) == 0 and list(result) == []
    return True


def _aggregate(numbers: list[float]) -> dict:
    """A pre-aggregated value carrying every numeric key, as a user might append it."""
    c = len(numbers)
    mean = sum(numbers) / c
    ordered = sorted(numbers)
    half = c // 2
    median = ordered[half] if c % 2 else (ordered[half - 1] + ordered[half]) / 2
    counts: dict = {}
    for x in numbers:
        counts[x] = counts.get(x, 0) + 1
    return {
        "c": c, "s": sum(numbers), "q": sum(x * x for x in numbers), "l": min(numbers),
        "u": max(numbers), "m": mean,
        "d": (sum((x - mean) ** 2 for x in numbers) / c) ** 0.5, "n": median,
        "o": max(counts, key=counts.get), "r": min(counts, key=counts.get), "f": counts,
    }


def _points(stream_id: str, pairs) -> list[dict]:
    return [{"stream_id": stream_id, "value": v, "timestamp": t} for t, v in pairs]


def populate(ds, everything: bool = False) -> dict[str, str]:
    """Streams of every kind, appended and downsampled the way an application would, with
    the behaviour §7 derived-stream examples among them. ``everything`` adds more kinds of streams
    (a day-long gap, a Minutes stream, chains, level sources, a replayed stream...) on top of
    the few that the tampering tests need. Returns name → stream id."""
    ids: dict[str, str] = {}

    def stream(name: str, names: list[str], granularity=G.Seconds, **kwargs) -> str:
        ids[name] = ds.ensure_stream({"n": name}, {}, names, granularity, **kwargs)
        return ids[name]

    stream("plain", ALL)
    stream("exact", ALL, value_type_options={"high_accuracy": True})
    stream("nominal", NOMINAL, value_type="nominal")
    stream("never", [])
    a, b = stream("a", ["mean"]), stream("b", ["mean"])
    total = stream("sum", ["mean", "max"], derive_from=[a, b], derive_op="sum")
    stream("uptime", ["mean"])
    stream("data", ["mean"])
    stream("reset", ["count"], derive_from=[ids["uptime"]], derive_op="counter_reset",
           value_type="nominal")
    stream("rate", ["mean"], derive_op="counter_derivative",
           derive_from=[{"stream": ids["reset"], "name": "reset"}, {"stream": ids["data"]}],
           derive_args={"max_value": 256})
    if everything:
        stream("gappy", ALL)
        stream("stable", ["std_dev", "median"])
        stream("graph", ["count"], value_type="graph")
        stream("minutes", ["mean", "min"], G.Minutes)
        stream("unused", ["mean"])
        stream("slope", ["mean"], derive_from=a, derive_op="derivative")
        stream("slope_of_sum", ["mean"], derive_from=total, derive_op="derivative")
        stream("tens", ["mean"], G.Seconds10, derive_op="sum",
               derive_from=[{"stream": a, "granularity": G.Seconds10},
                            {"stream": b, "granularity": "10seconds"}])

    # behaviour §7 examples, then more history with nulls and equal timestamps
    ds.append_multiple(
        _points(a, [(at(s), v) for s, v in zip(SECONDS, A, strict=True)])
        + _points(b, [(at(s), v) for s, v in zip(SECONDS, B, strict=True)])
        + _points(ids["uptime"], [(at(s), v) for s, v in enumerate(UPTIME)])
        + _points(ids["data"], [(at(s), v) for s, v in
                                enumerate([5, 12, 7, 25, 7, 18, 33, 40, 5])])
    )
    ds.append_multiple(
        _points(a, [(at(12), 3), (at(12), None), (at(13), 4.5), (at(13), 5), (at(40), None),
                    (at(41), 2**70)])
        + _points(b, [(at(12), 1), (at(13), None), (at(13), 7), (at(40), 2), (at(41), -1.25)])
        + _points(ids["data"], [(at(9), None), (at(10), 9), (at(11), 30)])
    )
    plain = [(at(s / 4), v) for s, v in enumerate(
        [1, 2, 3, 4, 5, None, 2.5, -7, 0, 0.1, 0.2, 0.30000000000000004, 1e15, 2**128,
         _aggregate([1, 2, 2, 9]), None, 7, 7, 7])]
    plain += [(at(30), 1), (at(30), 2), (at(30), _aggregate([4.0])), (at(31), 3)]
    ds.append_multiple(_points(ids["plain"], plain))
    ds.append_multiple(_points(ids["exact"], [(at(s / 10), E) for s in range(40)]))
    ds.append_multiple(_points(ids["exact"], [
        (at(15), decimal.Decimal("1e-60")), (at(15), -E), (at(16), 2**200), (at(16), None),
        (at(17), decimal.Decimal("0.1")), (at(17), 0.1), (at(18), E * 3),
    ]))
    nominal = ["x", "y", "x", {"k": [1, 2]}, [1, "a"], 1, 1.0, True, None, "é", "x", 1]
    ds.append_multiple(_points(ids["nominal"], [(at(s / 2), v) for s, v in
                                                enumerate(nominal)]))
    ds.append_multiple(_points(ids["never"], [(at(0), 1), (at(100), 2)]))
    if everything:
        ds.append_multiple(_points(ids["gappy"], plain))
        spread = np.random.default_rng(7).normal(1e9, 1.0, 600)
        ds.append_arrays(ids["stable"], np.array([to_us(at(s / 10)) for s in range(600)]),
                         spread, unit="us")
        graph = {"v": [{"i": 1}, {"i": 2, "w": 0.5}], "e": [{"f": 1, "t": 2}]}
        ds.append_multiple(_points(ids["graph"], [(at(0), graph), (at(3), None),
                                                  (at(3), graph)]))
        ds.append_multiple(_points(ids["minutes"], [(at(s * 7), s % 5) for s in range(120)]))
    ds.downsample_streams(until=at(20))  # a first, partial pass

    # derived streams created over sources that hold data: replayed, pending, live only
    if everything:
        stream("replayed", ["mean"], derive_from=[a], derive_op="derivative")
        stream("pending", ["mean"], derive_from=[a, b], derive_op="sum")
    stream("live_only", ["mean"], derive_from=[a, b], derive_op="sum",
           derive_backprocess=False)
    ds.append_multiple(
        _points(a, [(at(42), 8), (at(50), 9), (at(LATE), 1), (at(LATE + 1), 2)])
        + _points(b, [(at(42), 3), (at(LATE), 4), (at(LATE + 1), 5)])
    )
    for name in ("plain", "exact", "nominal", "stable", "graph"):
        if name in ids:
            ds.append(ids[name], None, at(LATE))
    if everything:
        ds.backprocess_streams({"n": "replayed"})
        ds.append(ids["gappy"], None, at(DAY))  # a day-long gap: every level gets a bucket
        ds.append(ids["minutes"], 1, at(DAY))
    ds.downsample_streams(until=at(60))
    ds.downsample_streams(until=at(DAY))
    return ids


@pytest.fixture
def streams(ds) -> dict[str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", exceptions.InvalidValueWarning)
        return populate(ds)


def test_ordinary_use_verifies_clean(ds) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", exceptions.InvalidValueWarning)
        streams = populate(ds, everything=True)
    # the behaviour §7 examples really are in the store being verified
    assert [p["v"] for p in raw(ds, streams["sum"])][:7] == [42, 50, 56, 64, 50, 112, 116]
    assert [p["v"] for p in raw(ds, streams["slope"])][:6] == [4.0, 3.0, 4.0, -7.0, 7.5, 4.0]
    assert [p["t"] for p in raw(ds, streams["reset"])][:4] == [at(4), at(7), at(8), at(13)]
    assert [p["v"] for p in raw(ds, streams["rate"])][:5] == [7.0, 251.0, 18.0, 11.0, 15.0]
    assert level(ds, streams["gappy"], G.Days)  # levels are materialised up to days
    assert ds.get_tags(streams["pending"])["pending_backprocess"] is True
    result = ds.verify()
    assert clean(result)
    assert result.checked["streams"] == len(streams)
    # every Seconds10 bucket of "gappy" from its first point to its bound: a day of them
    assert result.checked["buckets"] >= DAY // 10
    assert result.checked["points"] >= 7 + 6 + 4 + 5


def test_verify_flushes_buffered_points_first(ds, streams) -> None:
    ds.append(streams["a"], 5, at(LATE + 20))
    ds.append(streams["b"], 6, at(LATE + 20))
    result = ds.verify({"n": "sum"})  # no flush in between: verify sees them
    assert clean(result)
    assert [p["v"] for p in raw(ds, streams["sum"])][-1] == 11


def test_query_selects_streams_like_downsample_streams(ds, streams) -> None:
    _set_level_value(ds, streams["plain"], "S", at(0), s=1000.0)
    assert ds.verify({"n": "exact"}).checked["streams"] == 1
    assert clean(ds.verify({"n": "exact"}))
    assert len(ds.verify({"n": {"$in": ["plain", "exact"]}})) > 0
    assert len(ds.verify({"stream_id": streams["plain"]})) > 0
    assert ds.verify({"n": "no such stream"}).checked["streams"] == 0
    with pytest.raises(exceptions.ReservedTagNameError):
        ds.verify({"$where": 1})
    with pytest.raises(ValueError):
        ds.verify({"n": {"$regex": "p"}})


# -- tampering --------------------------------------------------------------------------------


def _level_rows(ds, stream_id: str, key: str, start=None, end=None) -> pa.Table:
    rows = ds.backend.read_level(key, stream_id, start, end)
    return conform(rows)


def _with_id(rows: pa.Table, stream_id: str) -> pa.Table:
    return rows.add_column(0, "stream_id", pa.array([stream_id] * rows.num_rows, pa.string()))


def _set_level_value(ds, stream_id: str, key: str, when: datetime.datetime, **columns) -> None:
    """Overwrite columns of one stored level row, straight through the storage contract."""
    start = to_us(when)
    row = _level_rows(ds, stream_id, key, start, start + 1)
    assert row.num_rows == 1
    for name, value in columns.items():
        position = row.column_names.index(name)
        row = row.set_column(position, name, pa.array([value], row.schema.field(name).type))
    ds.backend.commit(WriteBatch(levels={key: _with_id(row, stream_id)}))


def _drop_level_row(ds, stream_id: str, key: str, when: datetime.datetime) -> None:
    """Delete one stored level row: clear the stream's levels, write back all the others."""
    levels = {}
    for level_key in ("S", "m", "M", "h", "H", "d"):
        stored = ds.backend.read_level(level_key, stream_id, None, None)
        if stored is not None and stored.num_rows:
            rows = conform(stored)
            if level_key == key:
                rows = rows.filter(pc.not_equal(rows.column("t"), to_us(when)))
            levels[level_key] = _with_id(rows, stream_id)
    ds.backend.commit(WriteBatch(levels=levels, clear_levels=[stream_id]))


def _rewrite_raw(ds, stream_id: str, change) -> None:
    """Replace a stream's raw rows by ``change(rows)``."""
    rows = ds.backend.read_raw(stream_id, None, None).cast(RAW_SCHEMA)
    ds.backend.commit(WriteBatch(raw={stream_id: change(rows)}, clear_raw=[stream_id]))


def _coordinates(result: Verification) -> set[tuple]:
    return {(m["stream_id"], m["granularity"], m["t"], m["downsampler"]) for m in result}


def test_wrong_level_value_is_reported(ds, streams) -> None:
    plain = streams["plain"]
    right = level(ds, plain, G.Seconds10)[0]["v"]
    _set_level_value(ds, plain, "S", at(0), s=123.0, l=-50.0)
    result = ds.verify({"n": "plain"})
    assert _coordinates(result) == {
        (plain, G.Seconds10, at(0), "sum"),
        (plain, G.Seconds10, at(0), "mean"),
        (plain, G.Seconds10, at(0), "min"),
    }
    by_name = {m["downsampler"]: m for m in result}
    assert by_name["sum"]["stored"] == 123.0
    assert by_name["sum"]["expected"] == pytest.approx(right["s"], rel=1e-12)
    assert by_name["min"]["stored"] == -50.0
    assert by_name["min"]["expected"] == right["l"] == -7
    assert by_name["mean"]["expected"] == pytest.approx(right["m"], rel=1e-12)


def test_wrong_time_statistic_and_count_are_reported(ds, streams) -> None:
    nominal = streams["nominal"]
    right = level(ds, nominal, G.Minutes)[0]
    _set_level_value(ds, nominal, "m", at(0), c=3, ta=to_us(at(1)))
    result = ds.verify({"n": "nominal"})
    assert _coordinates(result) == {
        (nominal, G.Minutes, at(0), "count"),
        (nominal, G.Minutes, at(0), "time_first"),
    }
    by_name = {m["downsampler"]: m for m in result}
    assert (by_name["count"]["stored"], by_name["count"]["expected"]) == (3, right["v"]["c"])
    assert by_name["time_first"]["stored"] == at(1)
    assert by_name["time_first"]["expected"] == right["t"]["a"] == at(0)


def test_float_stream_values_and_time_mean_are_checked_on_every_backend(ds, streams) -> None:
    """Float streams are compared a column at a time first (and bucket by bucket only where
    that finds something): a wrong sum (and so mean) and a time mean 2 µs off still come out
    at their coordinates, a time mean 1 µs off does not."""
    a = streams["a"]
    assert clean(ds.verify({"n": "a"}))
    right = level(ds, a, G.Seconds10)[0]
    stored = _level_rows(ds, a, "S", to_us(at(0)), to_us(at(0)) + 1)
    s, tm = stored.column("s")[0].as_py(), stored.column("tm")[0].as_py()
    _set_level_value(ds, a, "S", at(0), tm=tm + 1)
    assert clean(ds.verify({"n": "a"}))
    _set_level_value(ds, a, "S", at(0), s=s + 1.0, tm=tm + 2)
    result = ds.verify({"n": "a"})
    assert _coordinates(result) == {  # "mean" stores "sum" with it
        (a, G.Seconds10, at(0), label) for label in ("sum", "mean", "time_mean")}
    by_name = {m["downsampler"]: m for m in result}
    assert by_name["mean"]["expected"] == pytest.approx(right["v"]["m"], rel=1e-12)
    assert by_name["time_mean"]["expected"] == right["t"]["m"]
    assert by_name["time_mean"]["stored"] - right["t"]["m"] == datetime.timedelta(
        microseconds=2)


@pytest.mark.parametrize("values", [[0.0, 1e-168], [1e-168, 2e-168, 0.0], [5e-169, -5e-169],
                                    [1e-160, 1e-160 + 1e-175]])
def test_a_spread_whose_squares_underflow_verifies_clean(ds, values) -> None:
    """The std of 0 and 1e-168 is stored as 0: its squared deviations are below the smallest
    double. Both passes judge a std to that absolute floor, and a wrong one is still found."""
    stream_id = ds.ensure_stream({"n": "tiny"}, {}, ["mean", "std_dev"], G.Seconds)
    for second, value in enumerate(values):
        ds.append(stream_id, value, at(second))
    ds.append(stream_id, 1.0, at(DAY))  # closes the first buckets
    ds.downsample_streams(until=at(DAY))
    assert level(ds, stream_id, G.Seconds10)[0]["v"]["d"] == 0.0
    assert clean(ds.verify({"n": "tiny"}))
    _set_level_value(ds, stream_id, "S", at(0), m2=1e-290)  # a std of about 7e-146
    assert _coordinates(ds.verify({"n": "tiny"})) == {
        (stream_id, G.Seconds10, at(0), "std_dev")}


def test_high_accuracy_values_are_compared_exactly(ds, streams) -> None:
    exact = streams["exact"]
    start = to_us(at(0))
    state = json.loads(_level_rows(ds, exact, "S", start, start + 1).column("x")[0].as_py())
    total = decimal.Decimal(state["s"])
    assert total == WIDE.multiply(E, 40)
    # one unit in the 64th significant digit: far below any float tolerance
    bump = decimal.Decimal(1).scaleb(total.adjusted() - 63)
    state["s"] = str(WIDE.add(total, bump))
    _set_level_value(ds, exact, "S", at(0), x=json.dumps(state))
    result = ds.verify({"n": "exact"})
    assert _coordinates(result) == {
        (exact, G.Seconds10, at(0), "sum"),
        (exact, G.Seconds10, at(0), "mean"),
    }
    by_name = {m["downsampler"]: m for m in result}
    assert by_name["mean"]["expected"] == E
    assert by_name["sum"]["expected"] == WIDE.multiply(E, 40)  # 64 digits: exact here
    assert isinstance(by_name["sum"]["stored"], decimal.Decimal)


def test_deleted_level_row_is_reported(ds, streams) -> None:
    plain = streams["plain"]
    right = level(ds, plain, G.Seconds10)[3]["v"]  # 12:00:30-40: three numbers, one aggregate
    assert right["c"] == 4
    _drop_level_row(ds, plain, "S", at(30))
    result = ds.verify({"n": "plain"})
    assert {(m["granularity"], m["t"]) for m in result} == {(G.Seconds10, at(30))}
    count = next(m for m in result if m["downsampler"] == "count")
    assert (count["stored"], count["expected"]) == (0, 4)
    first = next(m for m in result if m["downsampler"] == "time_first")
    assert (first["stored"], first["expected"]) == (at(35), at(30))  # empty reads its middle


def test_bucket_without_raw_points_must_read_empty(ds, streams) -> None:
    plain = streams["plain"]
    assert level(ds, plain, G.Seconds10)[2]["v"]["c"] == 0  # 12:00:20-30 holds nothing
    row = _level_rows(ds, plain, "S", to_us(at(0)), to_us(at(0)) + 1)
    moved = row.set_column(0, "t", pa.array([to_us(at(20))], pa.int64()))
    ds.backend.commit(WriteBatch(levels={"S": _with_id(moved, plain)}))
    result = ds.verify({"n": "plain"})
    assert {(m["granularity"], m["t"]) for m in result} == {(G.Seconds10, at(20))}
    count = next(m for m in result if m["downsampler"] == "count")
    assert count["expected"] == 0 and count["stored"] > 0
    median = next(m for m in result if m["downsampler"] == "median")
    assert median["expected"] is None


def test_stored_row_past_the_bound_is_reported(ds, streams) -> None:
    plain = streams["plain"]
    bound = ds.get_tags(plain)["downsampled_until"]["10seconds"]
    row = _level_rows(ds, plain, "S", to_us(at(0)), to_us(at(0)) + 1)
    stray = row.set_column(0, "t", pa.array([to_us(bound) + 10_000_000], pa.int64()))
    ds.backend.commit(WriteBatch(levels={"S": _with_id(stray, plain)}))
    result = ds.verify({"n": "plain"})
    assert len(result) == 1
    (mismatch,) = result
    assert mismatch["stream_id"] == plain
    assert mismatch["granularity"] == G.Seconds10
    assert mismatch["t"] == bound + datetime.timedelta(seconds=10)
    assert mismatch["downsampler"] is None
    assert mismatch["expected"] is ABSENT
    assert mismatch["stored"]["v"]["c"] == level(ds, plain, G.Seconds10)[0]["v"]["c"]


def test_rows_of_a_level_without_bound_are_reported(ds, streams) -> None:
    never = streams["never"]
    row = _level_rows(ds, streams["plain"], "S", to_us(at(0)), to_us(at(0)) + 1)
    ds.backend.commit(WriteBatch(levels={"S": _with_id(row, never)}))
    result = ds.verify({"n": "never"})
    assert [(m["granularity"], m["t"], m["expected"]) for m in result] == [
        (G.Seconds10, at(0), ABSENT)
    ]


def test_changed_derived_point_is_reported(ds, streams) -> None:
    total = streams["sum"]

    def change(rows: pa.Table) -> pa.Table:
        f = rows.column("f").to_pylist()
        f[2] = 57.0  # 12:00:02 should be 28 + 28
        return rows.set_column(rows.column_names.index("f"), "f", pa.array(f, pa.float64()))

    _rewrite_raw(ds, total, change)
    result = ds.verify({"n": "sum"})
    points, levels = _split(result)
    assert len(points) == 1
    (mismatch,) = points
    assert mismatch["stream_id"] == total
    assert mismatch["granularity"] == G.Seconds
    assert mismatch["t"] == at(2)
    assert mismatch["downsampler"] is None
    assert (mismatch["stored"], mismatch["expected"]) == (57.0, 56.0)
    # its levels were computed from the point as it was: they disagree with the new one now
    assert {(m["granularity"], m["t"], m["downsampler"]) for m in levels} == {
        (G.Seconds10, at(0), "sum"), (G.Seconds10, at(0), "mean"),
    }


def _split(result: Verification) -> tuple[list[dict], list[dict]]:
    """Mismatches of derived points (at the raw level) and of level buckets."""
    points = [m for m in result if m["downsampler"] is None]
    return points, [m for m in result if m["downsampler"] is not None]


def test_missing_and_extra_derived_points_are_reported(ds, streams) -> None:
    reset = streams["reset"]

    def drop_first_add_one(rows: pa.Table) -> pa.Table:
        extra = rows.slice(0, 1).set_column(0, "t", pa.array([to_us(at(5))], pa.int64()))
        kept = pa.concat_tables([rows.slice(1), extra])
        order = np.argsort(kept.column("t").to_numpy(), kind="stable")
        return kept.take(pa.array(order))

    _rewrite_raw(ds, reset, drop_first_add_one)
    points, levels = _split(ds.verify({"n": "reset"}))
    found = {(m["t"], repr(m["stored"]), repr(m["expected"])) for m in points}
    assert found == {(at(4), "ABSENT", "1"), (at(5), "1", "ABSENT")}
    assert {m["granularity"] for m in points} == {G.Seconds}
    assert {(m["granularity"], m["t"]) for m in levels} == {(G.Seconds10, at(0))}


def test_counter_derivative_value_is_checked(ds, streams) -> None:
    rate = streams["rate"]

    def change(rows: pa.Table) -> pa.Table:
        f = rows.column("f").to_pylist()
        f[1] = 250.0
        return rows.set_column(rows.column_names.index("f"), "f", pa.array(f, pa.float64()))

    _rewrite_raw(ds, rate, change)
    points, _ = _split(ds.verify({"n": "rate"}))
    assert [(m["t"], m["stored"], m["expected"]) for m in points] == [(at(2), 250.0, 251.0)]


def test_live_only_stream_is_compared_after_its_first_point(ds, streams) -> None:
    live = streams["live_only"]
    got = [(p["t"], p["v"]) for p in raw(ds, live)]
    assert got[0] == (at(42), 11)  # history before its creation was never processed
    assert clean(ds.verify({"n": "live_only"}))

    def change(rows: pa.Table) -> pa.Table:
        f = rows.column("f").to_pylist()
        f[-1] = 0.0
        return rows.set_column(rows.column_names.index("f"), "f", pa.array(f, pa.float64()))

    _rewrite_raw(ds, live, change)
    points, _ = _split(ds.verify({"n": "live_only"}))
    assert [(m["t"], m["stored"], m["expected"]) for m in points] == [(at(LATE + 1), 0.0, 7.0)]
