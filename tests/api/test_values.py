"""behaviour §5.1: value types through the public API (validation, read-back, aggregates)."""

from __future__ import annotations

import decimal
import fractions
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import datastream
from datastream import exceptions
from tests import nasty

from .helpers import EVER, G, at, level, raw, values

E = decimal.Decimal("2.71828182845904523536028747135266249775724709369995957496696762")
ALL_NUMERIC = ["count", "sum", "sum_squares", "min", "max", "mean", "std_dev", "median"]


# -- numeric, default mode -------------------------------------------------------------------


def test_numeric_values_read_back(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    appended = [
        (7, 7, int),
        (-3, -3, int),
        (2**63 - 1, 2**63 - 1, int),
        (-(2**63), -(2**63), int),
        (1.5, 1.5, float),
        (decimal.Decimal("1.25"), 1.25, float),
        (fractions.Fraction(1, 4), 0.25, float),
        (np.int64(12), 12, int),
        (np.float64(0.5), 0.5, float),
        (np.float32(0.75), 0.75, float),
        (2**63, float(2**63), float),
        (2**128, float(2**128), float),
        (-(2**100), float(-(2**100)), float),
        (None, None, type(None)),
        (float("nan"), None, type(None)),
    ]
    for second, (value, _, _) in enumerate(appended):
        ds.append(stream_id, value, at(second))
    got = values(ds, stream_id)
    assert len(got) == len(appended)
    for read, (value, expected, kind) in zip(got, appended, strict=True):
        assert read == expected, value
        assert type(read) is kind, (value, read)
    assert got[11] == 2**128


def test_numeric_rejections(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    for value in [True, False, np.bool_(True), "1", b"1", [1], (1,), {1, 2}, object()]:
        with pytest.raises(TypeError):
            ds.append(stream_id, value, at(0))
            pytest.fail(f"{value!r} accepted")
    for value in [math.inf, -math.inf, np.float64("inf")]:
        with pytest.raises(ValueError):
            ds.append(stream_id, value, at(0))
    assert values(ds, stream_id) == []
    assert ds.get_tags(stream_id)["latest_datapoint"] is None


def test_big_ints_aggregate_as_floats(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ALL_NUMERIC, G.Seconds)
    for second in range(10):
        ds.append(stream_id, 2**128, at(second))
    ds.append(stream_id, 1, at(10))
    ds.downsample_streams(until=at(20))
    points = level(ds, stream_id, G.Seconds10)
    assert len(points) == 1
    v = points[0]["v"]
    assert v["c"] == 10
    assert v["s"] == 10 * 2**128
    assert v["q"] == 10 * 2**256
    assert v["l"] == 2**128
    assert v["u"] == 2**128
    assert v["m"] == 2**128
    assert v["n"] == 2**128
    assert v["d"] == 0.0


def test_pre_aggregated_dict(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)  # keys c, s, m
    ds.append(stream_id, 4, at(0))
    ds.append(stream_id, {"c": 2, "s": 10, "m": 5.0}, at(1))
    ds.append(stream_id, 0, at(10))
    got = raw(ds, stream_id)
    assert got[1]["v"] == {"c": 2, "s": 10, "m": 5.0}
    ds.downsample_streams(until=at(20))
    bucket = level(ds, stream_id, G.Seconds10)[0]["v"]
    assert bucket["c"] == 3
    assert bucket["s"] == 14
    assert bucket["m"] == pytest.approx(14 / 3, rel=1e-15)


def test_pre_aggregated_empty_buckets_with_a_null_count(ds) -> None:
    """An all-None dict (the original API's empty bucket, c None) adds nothing."""
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean", "sum_squares", "std_dev", "min", "max"],
                                 G.Seconds)
    empty = dict.fromkeys(["c", "s", "m", "q", "d", "l", "u"])
    full = {"c": 1, "s": 42, "m": 42, "q": None, "d": 0, "l": 42, "u": 42}
    for second in range(30):
        ds.append(stream_id, full if second % 3 == 0 else empty, at(second))
    ds.append(stream_id, empty, at(40))
    ds.downsample_streams(until=at(60))
    buckets = [p["v"] for p in level(ds, stream_id, G.Seconds10)[:3]]
    assert [(b["c"], b["s"], b["m"], b["l"], b["u"]) for b in buckets] == [(4, 168, 42, 42, 42),
                                                                         (3, 126, 42, 42, 42),
                                                                         (3, 126, 42, 42, 42)]
    assert all(b["q"] is None for b in buckets)
    with pytest.raises(ValueError, match="None"):
        ds.append(stream_id, {**empty, "s": 1}, at(50))


def test_pre_aggregated_dict_rejections(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    for value in [{"c": 2, "s": 10}, {"c": 2, "s": 10, "m": 5, "u": 6}, {}, {"x": 1}]:
        with pytest.raises(ValueError):
            ds.append(stream_id, value, at(0))
            pytest.fail(f"{value!r} accepted")
    for value in [{"c": 2, "s": "10", "m": 5}, {"c": 2, "s": [10], "m": 5}]:
        with pytest.raises(TypeError):
            ds.append(stream_id, value, at(0))
    assert values(ds, stream_id) == []


# -- numeric, high accuracy ------------------------------------------------------------------


def test_values_that_would_fail_later_are_refused_at_append(ds) -> None:
    """behaviour §4.1: these used to be buffered and to fail at commit or in a kernel, jamming the
    stream; now append refuses them and nothing of them is buffered."""
    plain = ds.ensure_stream({"a": 1}, {}, ["mean", "std_dev", "frequencies"], G.Seconds)
    high = ds.ensure_stream({"a": 2}, {}, ["mean", "std_dev"], G.Seconds,
                            value_type_options={"high_accuracy": True})
    cases = [
        (plain, {"c": 2**63, "s": 1, "m": 1, "q": 1, "d": 0, "f": None}),
        (plain, {"c": 2**32, "s": 1, "m": 1, "q": 1, "d": 0, "f": None}),
        (plain, {"c": 1, "s": 1, "m": 1, "q": 1, "d": 0, "f": {1: 2**64}}),
        (plain, decimal.Decimal("sNaN")),
        (high, decimal.Decimal("1e999999")),
        (high, decimal.Decimal("-1e400")),
        (high, decimal.Decimal("1e-400")),
        (high, decimal.Decimal("sNaN")),
        (high, {"c": 1, "s": decimal.Decimal("1e999999"), "m": 1, "q": 1, "d": 0}),
    ]
    for second, (stream_id, value) in enumerate(cases):
        with pytest.raises(ValueError):
            ds.append(stream_id, value, at(second))
        with pytest.raises(ValueError):
            ds.append_multiple([{"stream_id": stream_id, "value": value, "timestamp": at(0)}])
        if isinstance(value, decimal.Decimal):
            with pytest.raises(ValueError):
                ds.append_arrays(stream_id, np.array([np.datetime64("2000-01-01T12:00")]),
                                 np.array([value], dtype=object))
    ds.append(plain, 1, at(0))
    ds.append(plain, 3, at(1))
    ds.append(high, decimal.Decimal("1e308"), at(0))
    ds.append(high, decimal.Decimal(3), at(20))
    ds.append(plain, 5, at(20))
    ds.flush()
    ds.downsample_streams(until=at(20))
    assert level(ds, plain, G.Seconds10)[0]["v"] == {
        "c": 2, "s": 4, "q": 10, "m": 2.0, "d": 1.0, "f": {1: 1, 3: 1}
    }
    assert level(ds, high, G.Seconds10)[0]["v"]["m"] == decimal.Decimal("1e308")
    assert values(ds, plain) == [1, 3, 5]


def test_largest_counts_add_up_exactly(ds) -> None:
    """Counts up to 2**32 - 1 cannot overflow the int64 count of a bucket, even when a
    thousand such points share one."""
    stream_id = ds.ensure_stream({"a": 1}, {}, ["count", "frequencies"], G.Seconds)
    largest = 2**32 - 1
    ds.append_multiple([
        {"stream_id": stream_id, "value": {"c": largest, "f": {7: largest}},
         "timestamp": at(second / 100)}
        for second in range(1000)
    ])
    ds.append(stream_id, 1, at(86400))
    ds.downsample_streams(until=at(86400))
    for granularity in (G.Seconds10, G.Minutes, G.Days):
        total = sum(point["v"]["c"] for point in level(ds, stream_id, granularity))
        assert total == 1000 * largest, granularity
    day = level(ds, stream_id, G.Days)
    assert day[0]["v"] == {"c": 1000 * largest, "f": {7: 1000 * largest}}


def test_high_accuracy_reads_back_exactly_and_means_exactly(ds) -> None:
    stream_id = ds.ensure_stream(
        {"a": 1}, {}, ["mean", "min", "max", "median", "std_dev"], G.Seconds,
        value_type_options={"high_accuracy": True},
    )
    for i in range(40):
        ds.append(stream_id, E, at(i / 10))  # 40 copies in one Seconds10 bucket
    ds.append(stream_id, E, at(60))
    got = values(ds, stream_id)
    assert got == [E] * 41
    assert all(type(v) is decimal.Decimal for v in got)
    assert [str(v) for v in got] == [str(E)] * 41
    ds.downsample_streams(until=at(120))
    for granularity in (G.Seconds10, G.Minutes):
        bucket = level(ds, stream_id, granularity)[0]["v"]
        assert bucket["c"] == 40
        assert bucket["m"] == E
        assert type(bucket["m"]) is decimal.Decimal
        assert bucket["l"] == E and bucket["u"] == E and bucket["n"] == E
        assert type(bucket["s"]) is decimal.Decimal
        assert bucket["s"] == decimal.Context(prec=64).multiply(E, 40)
        assert bucket["d"] == 0
        assert type(bucket["d"]) is decimal.Decimal


def test_high_accuracy_keeps_64_significant_digits(ds) -> None:
    stream_id = ds.ensure_stream(
        {"a": 1}, {}, ["sum"], G.Seconds, value_type_options={"high_accuracy": True}
    )
    long = decimal.Decimal("1." + "1" * 70)
    digits64 = decimal.Decimal("9" * 30 + "." + "1" * 34)
    ds.append(stream_id, long, at(0))
    ds.append(stream_id, digits64, at(1))
    ds.append(stream_id, 3, at(2))
    ds.append(stream_id, decimal.Decimal("1e-40"), at(3))
    got = values(ds, stream_id)
    assert got[0] == decimal.Decimal("1." + "1" * 63)
    assert got[1] == digits64
    assert got[2] == 3 and type(got[2]) is decimal.Decimal
    assert got[3] == decimal.Decimal("1e-40")
    assert all(type(v) is decimal.Decimal for v in got)


def test_high_accuracy_sum_is_decimal_arithmetic(ds) -> None:
    stream_id = ds.ensure_stream(
        {"a": 1}, {}, ["sum", "mean"], G.Seconds, value_type_options={"high_accuracy": True}
    )
    tenth = decimal.Decimal("0.1")
    for i in range(10):
        ds.append(stream_id, tenth, at(i))
    ds.append(stream_id, 0, at(10))
    ds.downsample_streams(until=at(20))
    bucket = level(ds, stream_id, G.Seconds10)[0]["v"]
    assert bucket["s"] == decimal.Decimal("1.0")  # a float sum gives 0.9999999999999999
    assert bucket["m"] == tenth


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("order", [(0, 1, 2), (0, 2, 1), (1, 0, 2)])
def test_high_accuracy_levels_compose_exactly_in_any_order(ds, order) -> None:
    """Bucket sums of 1E+300, 0.1 and -1E+300 make a minute summing to 0.1 whichever bucket
    comes first (a 256-digit partial sum lost the 0.1 behind 1E+300), quietly."""
    stream_id = ds.ensure_stream(
        {"a": 1}, {}, ["sum", "mean"], G.Seconds, value_type_options={"high_accuracy": True}
    )
    numbers = [decimal.Decimal("1E+300"), decimal.Decimal("0.1"), decimal.Decimal("-1E+300")]
    for position, index in enumerate(order):
        ds.append(stream_id, numbers[index], at(10 * position))
    ds.append(stream_id, 0, at(4000))
    ds.downsample_streams(until=at(4000))
    minute = level(ds, stream_id, G.Minutes)[0]["v"]
    assert minute["s"] == decimal.Decimal("0.1")
    assert minute["m"] == decimal.Context(prec=64).divide(decimal.Decimal("0.1"), 3)
    assert not ds.verify()


# -- nominal ---------------------------------------------------------------------------------


def test_a_value_too_large_for_one_write_is_refused_when_appended(ds) -> None:
    """8 MiB of canonical JSON is the most one value takes: every backend stores that in one
    write (InfluxDB refused a 30 MB one at every commit, leaving it buffered for good)."""
    from datastream.values import MAX_VALUE_BYTES

    stream_id = ds.ensure_stream({"a": 1}, {}, ["count"], G.Seconds, value_type="nominal")
    largest = "x" * (MAX_VALUE_BYTES - 2)  # with its two quotes, exactly the limit
    with pytest.raises(ValueError, match="8 MiB"):
        ds.append(stream_id, largest + "x", at(0))
    with pytest.raises(ValueError, match="8 MiB"):
        ds.append_multiple([{"stream_id": stream_id, "value": "small", "timestamp": at(0)},
                            {"stream_id": stream_id, "value": [largest], "timestamp": at(1)}])
    ds.append(stream_id, largest, at(2))
    ds.flush()
    assert [len(p["v"]) for p in raw(ds, stream_id)] == [MAX_VALUE_BYTES - 2]


def test_nominal_values_returned_exactly(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["most_often"], G.Seconds, value_type="nominal")
    appended = ["text", "", "ünïcode ✓", 0, 1, -5, 2.5, True, False, [1, "a", None, [2]],
                {"k": {"nested": [1, 2, {"x": None}]}, "b": False}, [], {}]
    for second, value in enumerate(appended):
        ds.append(stream_id, value, at(second))
    got = values(ds, stream_id)
    assert got == appended
    for read, value in zip(got, appended, strict=True):
        assert type(read) is type(value), (read, value)


def test_nominal_downsamplers(ds) -> None:
    stream_id = ds.ensure_stream(
        {"a": 1}, {}, ["most_often", "least_often", "frequencies"], G.Seconds,
        value_type="nominal",
    )
    assert set(ds.get_tags(stream_id)["value_downsamplers"]) == {
        "count", "most_often", "least_often", "frequencies",
    }
    buckets = [["b", "a", "c", "a"], [[1, 2], {"x": 1}, [1, 2]], ["a", "a", "a"]]
    for index, bucket in enumerate(buckets):
        for offset, value in enumerate(bucket):
            ds.append(stream_id, value, at(10 * index + offset))
    ds.append(stream_id, "z", at(60))
    ds.downsample_streams(until=at(120))
    seconds10 = [p["v"] for p in level(ds, stream_id, G.Seconds10)]
    assert seconds10[0] == {"c": 4, "o": "a", "r": "b", "f": {"a": 2, "b": 1, "c": 1}}
    assert seconds10[1] == {"c": 3, "o": [1, 2], "r": {"x": 1}, "f": {"[1,2]": 2,
                                                                      '{"x":1}': 1}}
    assert seconds10[2] == {"c": 3, "o": "a", "r": "a", "f": {"a": 3}}
    assert [v["c"] for v in seconds10[3:]] == [0, 0, 0]
    minutes = level(ds, stream_id, G.Minutes)
    assert len(minutes) == 1
    assert minutes[0]["v"] == {
        "c": 10, "o": "a", "r": "b",
        "f": {"a": 5, "b": 1, "c": 1, "[1,2]": 2, '{"x":1}': 1},
    }


def test_nominal_tie_rule_uses_canonical_json(ds) -> None:
    stream_id = ds.ensure_stream(
        {"a": 1}, {}, ["most_often", "least_often"], G.Seconds, value_type="nominal"
    )
    for offset, value in enumerate([5, "z", 5, "z", {"b": 1, "a": 2}, [0]]):
        ds.append(stream_id, value, at(offset))
    ds.append(stream_id, 0, at(10))
    ds.downsample_streams(until=at(20))
    bucket = level(ds, stream_id, G.Seconds10)[0]["v"]
    # canonical JSON: '"z"' < '5' and '[0]' < '{"a":2,"b":1}'
    assert bucket["o"] == "z"
    assert bucket["r"] == [0]


@pytest.mark.parametrize("value_type", ["nominal", "graph"])
def test_numeric_downsamplers_rejected_for_other_types(ds, value_type) -> None:
    allowed = {"nominal": {"count", "most_often", "least_often", "frequencies"},
               "graph": {"count"}}[value_type]
    for name in ["sum", "sum_squares", "min", "max", "mean", "std_dev", "median",
                 "most_often", "least_often", "frequencies"]:
        if name in allowed:
            continue
        with pytest.raises(exceptions.UnsupportedDownsampler):
            ds.ensure_stream({"a": name}, {}, [name], G.Seconds, value_type=value_type)
    for name in allowed:
        ds.ensure_stream({"a": name}, {}, [name], G.Seconds, value_type=value_type)
    assert len(ds.find_streams()) == len(allowed)


def test_numeric_accepts_all_eleven(ds) -> None:
    import datastream

    stream_id = ds.ensure_stream({"a": 1}, {}, list(datastream.VALUE_DOWNSAMPLERS), G.Seconds)
    for offset, value in enumerate([3, 1, 3, 2]):
        ds.append(stream_id, value, at(offset))
    ds.append(stream_id, 0, at(10))
    ds.downsample_streams(until=at(20))
    v = level(ds, stream_id, G.Seconds10)[0]["v"]
    assert v["c"] == 4 and v["s"] == 9 and v["q"] == 23 and v["l"] == 1 and v["u"] == 3
    assert v["m"] == 2.25
    assert v["n"] == 2.5
    assert v["o"] == 3
    assert v["r"] == 1
    assert sum(v["f"].values()) == 4
    assert sorted(v["f"].values()) == [1, 1, 2]


def test_unknown_downsampler_and_value_type(ds) -> None:
    for names in [["average"], ["mean", "bogus"], ["MEAN"]]:
        with pytest.raises(exceptions.UnsupportedDownsampler):
            ds.ensure_stream({"a": 1}, {}, names, G.Seconds)
    for value_type in ["text", "float", "Numeric"]:
        with pytest.raises(exceptions.UnsupportedValueType):
            ds.ensure_stream({"a": 1}, {}, ["count"], G.Seconds, value_type=value_type)
    for options in ["high_accuracy", [("high_accuracy", True)], 1]:
        with pytest.raises(TypeError):
            ds.ensure_stream({"a": 1}, {}, ["count"], G.Seconds, value_type_options=options)
    assert len(ds.find_streams()) == 0


# -- graph -----------------------------------------------------------------------------------

GRAPH = {
    "v": [{"i": "a", "label": "start"}, {"i": "b"}, {"i": 3, "w": [1, 2]}],
    "e": [{"f": "a", "t": "b", "weight": 0.5}, {"f": "b", "t": 3}, {"f": 3, "t": "a"}],
    "name": "extra fields are kept",
}


def test_graph_values(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["count"], G.Seconds, value_type="graph")
    empty = {"v": [], "e": []}
    for second, value in enumerate([GRAPH, None, empty]):
        ds.append(stream_id, value, at(second))
    assert values(ds, stream_id) == [GRAPH, None, empty]
    ds.append(stream_id, empty, at(10))
    ds.downsample_streams(until=at(20))
    assert level(ds, stream_id, G.Seconds10)[0]["v"] == {"c": 2}


BAD_GRAPHS = [
        ([], TypeError),
        ("graph", TypeError),
        (1, TypeError),
        ({"v": []}, ValueError),
        ({"e": []}, ValueError),
        ({"v": [{"id": "a"}], "e": []}, ValueError),
        ({"v": [{"i": "a"}, {"i": "a"}], "e": []}, ValueError),
        ({"v": [{"i": "a"}], "e": [{"f": "a"}]}, ValueError),
        ({"v": [{"i": "a"}], "e": [{"t": "a"}]}, ValueError),
        ({"v": [{"i": "a"}], "e": [{"f": "a", "t": "b"}]}, ValueError),
        ({"v": [{"i": "a"}], "e": [{"f": "x", "t": "a"}]}, ValueError),
]


def test_graph_rejections(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["count"], G.Seconds, value_type="graph")
    for value, error in BAD_GRAPHS:
        with pytest.raises(error):
            ds.append(stream_id, value, at(0))
            pytest.fail(f"{value!r} accepted")
    assert values(ds, stream_id) == []


def test_raw_level_ignores_filters(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    ds.append(stream_id, 5, at(0))
    # downsampler filters are ignored at the raw level
    assert list(ds.get_data(stream_id, G.Seconds, start=EVER, value_downsamplers=["mean"],
                            time_downsamplers=[])) == [{"t": at(0), "v": 5}]


# -- hostile values through every backend ------------------------------------------------------

ALLOWED = (TypeError, ValueError, exceptions.DatastreamException)
ALL_DOWNSAMPLERS = list(datastream.VALUE_DOWNSAMPLERS)
STREAMS = {
    "numeric": ({}, ALL_DOWNSAMPLERS),
    "high": ({"value_type_options": {"high_accuracy": True}}, ALL_DOWNSAMPLERS),
    "nominal": ({"value_type": "nominal"}, ["count", "most_often", "least_often",
                                            "frequencies"]),
    "graph": ({"value_type": "graph"}, ["count"]),
}


def _same(left, right) -> bool:
    """Equal with equal types (True is not 1, 1 is not 1.0), Decimals by their text."""
    if type(left) is not type(right):
        return False
    if isinstance(left, list):
        return len(left) == len(right) and all(map(_same, left, right))
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(_same(left[k], right[k]) for k in left)
    if isinstance(left, decimal.Decimal):
        return str(left) == str(right)
    if isinstance(left, float):
        return left == right and math.copysign(1, left) == math.copysign(1, right)
    return left == right


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_values_round_trip(ds, data) -> None:
    """Whatever append accepts reads back as append returned it, and downsampling it (with
    every downsampler) works on every backend; whatever it refuses is a TypeError/ValueError."""
    state = ds.__dict__.setdefault("_hostile", {"day": 0, "ids": {}})
    name = data.draw(st.sampled_from(sorted(STREAMS)))
    if name not in state["ids"]:
        kwargs, names = STREAMS[name]
        state["ids"][name] = ds.ensure_stream({"hostile": name}, {}, names, G.Seconds, **kwargs)
    stream_id = state["ids"][name]
    value = data.draw(nasty.values)
    state["day"] += 1
    stamp = at(state["day"] * 86400)
    try:
        appended = ds.append(stream_id, value, stamp)["datapoint"]
    except ALLOWED:
        return
    assert appended["t"] == stamp
    read = list(ds.get_data(stream_id, G.Seconds, start=stamp, end=stamp))
    assert len(read) == 1 and read[0]["t"] == stamp
    assert _same(read[0]["v"], appended["v"]), (read[0]["v"], appended["v"])
    ds.downsample_streams(until=stamp)  # closes the buckets of the earlier examples
    earlier = at((state["day"] - 1) * 86400)
    for granularity in G.values[1:]:
        list(ds.get_data(stream_id, granularity, start=earlier, end=earlier))
