"""behaviour §7: derived streams — every example, however the appends are batched."""

from __future__ import annotations

import uuid

import pytest

import datastream
from datastream import exceptions

from .helpers import EVER, G, at, derivative_with_a_buffered_point, extents, level, raw

MODES = ["point", "batch", "split", "reopen"]

SECONDS = [0, 1, 2, 3, 4, 10, 11]
A = [21, 25, 28, 32, 25, 70, 74]
B = [21, 25, 28, 32, 25, 42, 42]
UPTIME = [10, 23, 28, 44, 2, 17, 90, 30, 2, 5, 10, 15, 23, 1, 7, 12, 19, 25, 31, 45, 51]


class Runner:
    """Feeds points to sources in one of the MODES and tracks the live Datastream."""

    def __init__(self, ds, reopen, request) -> None:
        self.ds = ds
        self._reopen = reopen
        self._request = request

    def feed(self, mode: str, points: list[tuple[str, float, object]], rank: list[str]) -> None:
        """``points``: (stream_id, second, value) in time order (equal times in rank order)."""
        items = [{"stream_id": s, "value": v, "timestamp": at(t)} for s, t, v in points]
        if mode == "point":
            for item in items:
                self.ds.append(item["stream_id"], item["value"], item["timestamp"])
                self.ds.flush()
        elif mode == "batch":
            self.ds.append_multiple(items)
        elif mode == "split":
            # later-declared sources first, stream by stream, in three batches: every bucket
            # and every operator step is split across flushes
            order = sorted(items, key=lambda i: (-rank.index(i["stream_id"]), i["timestamp"]))
            size = -(-len(order) // 3)
            for start in range(0, len(order), size):
                self.ds.append_multiple(order[start:start + size])
                self.ds.flush()
        elif mode == "reopen":
            half = len(items) // 2
            self.ds.append_multiple(items[:half])
            self.ds = self._reopen(self.ds)
            self._request.addfinalizer(self.ds.close)
            self.ds.append_multiple(items[half:])
        else:  # pragma: no cover
            raise AssertionError(mode)

    def raw(self, stream_id: str) -> list[tuple[float, object]]:
        return [((p["t"] - at(0)).total_seconds(), p["v"]) for p in raw(self.ds, stream_id)]


@pytest.fixture
def run(ds, reopen, request) -> Runner:
    return Runner(ds, reopen, request)


def _interleave(*series: tuple[str, list[float], list]) -> list[tuple[str, float, object]]:
    points = []
    for rank, (stream_id, seconds, values) in enumerate(series):
        points += [(t, rank, stream_id, v) for t, v in zip(seconds, values, strict=True)]
    return [(s, t, v) for t, _, s, v in sorted(points, key=lambda p: (p[0], p[1]))]


# -- the behaviour examples ------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_sum(run, mode) -> None:
    ds = run.ds
    a = ds.ensure_stream({"n": "a"}, {}, ["mean"], G.Seconds)
    b = ds.ensure_stream({"n": "b"}, {}, ["mean"], G.Seconds)
    total = ds.ensure_stream({"n": "sum"}, {}, ["mean"], G.Seconds, derive_from=[a, b],
                             derive_op="sum")
    assert ds.get_tags(total)["pending_backprocess"] is False
    run.feed(mode, _interleave((a, SECONDS, A), (b, SECONDS, B)), [a, b])
    assert run.raw(total) == list(zip(SECONDS, [42, 50, 56, 64, 50, 112, 116], strict=True))


@pytest.mark.parametrize("mode", MODES)
def test_derivative(run, mode) -> None:
    ds = run.ds
    a = ds.ensure_stream({"n": "a"}, {}, ["mean"], G.Seconds)
    slope = ds.ensure_stream({"n": "d"}, {}, ["mean"], G.Seconds, derive_from=a,
                             derive_op="derivative")
    run.feed(mode, _interleave((a, SECONDS, A)), [a])
    got = run.raw(slope)
    assert got == list(zip(SECONDS[1:], [4.0, 3.0, 4.0, -7.0, 7.5, 4.0], strict=True))
    assert all(type(v) is float for _, v in got)


@pytest.mark.parametrize("mode", MODES)
def test_counter_reset(run, mode) -> None:
    ds = run.ds
    uptime = ds.ensure_stream({"n": "uptime"}, {}, ["mean"], G.Seconds)
    reset = ds.ensure_stream({"n": "reset"}, {}, ["count"], G.Seconds, derive_from=[uptime],
                             derive_op="counter_reset", value_type="nominal")
    run.feed(mode, _interleave((uptime, list(range(21)), UPTIME)), [uptime])
    assert run.raw(reset) == [(4, 1), (7, 1), (8, 1), (13, 1)]


@pytest.mark.parametrize("mode", MODES)
def test_counter_derivative(run, mode) -> None:
    ds = run.ds
    uptime = ds.ensure_stream({"n": "uptime"}, {}, ["mean"], G.Seconds)
    data = ds.ensure_stream({"n": "data"}, {}, ["mean"], G.Seconds)
    reset = ds.ensure_stream({"n": "reset"}, {}, ["count"], G.Seconds, derive_from=[uptime],
                             derive_op="counter_reset", value_type="nominal")
    rate = ds.ensure_stream(
        {"n": "rate"}, {}, ["mean"], G.Seconds,
        derive_from=[{"stream": reset, "name": "reset"}, {"stream": data}],
        derive_op="counter_derivative", derive_args={"max_value": 256},
    )
    assert ds.get_tags(rate)["derived_from"]["args"] == {"max_value": 256}
    seconds = list(range(9))
    points = _interleave((uptime, seconds, UPTIME[:9]),
                         (data, seconds, [5, 12, 7, 25, 7, 18, 33, 40, 5]))
    run.feed(mode, points, [uptime, data])
    assert run.raw(reset) == [(4, 1), (7, 1), (8, 1)]
    assert run.raw(rate) == [(1, 7.0), (2, 251.0), (3, 18.0), (5, 11.0), (6, 15.0)]


def test_two_thousand_points_live(ds) -> None:
    a = ds.ensure_stream({"n": "a"}, {}, ["mean"], G.Seconds)
    b = ds.ensure_stream({"n": "b"}, {}, ["mean"], G.Seconds)
    total = ds.ensure_stream({"n": "sum"}, {}, ["mean"], G.Seconds, derive_from=[a, b],
                             derive_op="sum")
    for second in range(2000):
        ds.append(a, second, at(second))
        ds.append(b, 2 * second, at(second))
    got = raw(ds, total)
    assert len(got) == 2000
    assert [p["v"] for p in got] == [3 * s for s in range(2000)]
    assert [p["t"] for p in got[:3]] == [at(0), at(1), at(2)]


def test_sum_with_nulls(ds) -> None:
    a = ds.ensure_stream({"n": "a"}, {}, ["mean"], G.Seconds)
    b = ds.ensure_stream({"n": "b"}, {}, ["mean"], G.Seconds)
    total = ds.ensure_stream({"n": "sum"}, {}, [], G.Seconds, derive_from=[a, b],
                             derive_op="sum")
    ds.append_multiple([
        {"stream_id": a, "value": 1, "timestamp": at(0)},
        {"stream_id": b, "value": 2, "timestamp": at(0)},
        {"stream_id": a, "value": None, "timestamp": at(1)},
        {"stream_id": b, "value": 5, "timestamp": at(1)},
        {"stream_id": a, "value": None, "timestamp": at(2)},
        {"stream_id": b, "value": None, "timestamp": at(2)},
    ])
    assert [(p["t"], p["v"]) for p in raw(ds, total)] == [(at(0), 3), (at(1), 5), (at(2), None)]


def test_sum_aligns_by_bucket_and_drops_incomplete(ds) -> None:
    a = ds.ensure_stream({"n": "a"}, {}, ["mean"], G.Seconds)
    b = ds.ensure_stream({"n": "b"}, {}, ["mean"], G.Seconds)
    total = ds.ensure_stream({"n": "sum"}, {}, [], G.Seconds, derive_from=[a, b],
                             derive_op="sum")
    ds.append(a, 1, at(0.2))
    ds.append(a, 2, at(1.7))  # b never has second 1: that bucket is dropped
    ds.append(b, 10, at(0.9))
    ds.append(a, 3, at(2))
    ds.append(b, 20, at(2))
    ds.flush()
    assert [(p["t"], p["v"]) for p in raw(ds, total)] == [(at(0), 11), (at(2), 23)]


def test_sum_emits_a_bucket_once_every_source_has_reached_it(ds) -> None:
    """Points of one bucket at different times: the sum comes with the flush that completes
    the bucket, not once some source moves past it; a source's later points there change
    nothing (the first point of each source counts)."""
    a = ds.ensure_stream({"n": "a"}, {}, ["mean"], G.Seconds)
    b = ds.ensure_stream({"n": "b"}, {}, ["mean"], G.Seconds)
    total = ds.ensure_stream({"n": "sum"}, {}, [], G.Seconds, derive_from=[a, b],
                             derive_op="sum")
    ds.append(a, 1, at(0))
    ds.append(b, 10, at(0))
    ds.append(a, 2, at(5))
    ds.append(b, 20, at(5.5))
    ds.flush()
    assert [(p["t"], p["v"]) for p in raw(ds, total)] == [(at(0), 11), (at(5), 22)]
    ds.append(a, 3, at(5.7))
    ds.append(b, 30, at(5.9))
    ds.flush()
    assert [(p["t"], p["v"]) for p in raw(ds, total)] == [(at(0), 11), (at(5), 22)]
    ds.append(b, 40, at(6.1))  # a has not reached second 6 yet
    ds.flush()
    assert [p["t"] for p in raw(ds, total)] == [at(0), at(5)]
    ds.append(a, 4, at(6.8))
    ds.flush()
    assert [(p["t"], p["v"]) for p in raw(ds, total)][-1] == (at(6), 44)
    assert not ds.verify()


def test_sum_of_downsampled_sources(ds) -> None:
    a = ds.ensure_stream({"n": "a"}, {}, ["mean"], G.Seconds)
    b = ds.ensure_stream({"n": "b"}, {}, ["mean"], G.Seconds)
    total = ds.ensure_stream(
        {"n": "sum"}, {}, ["mean"], G.Seconds10,
        derive_from=[{"stream": a, "granularity": G.Seconds10},
                     {"stream": b, "granularity": "10seconds"}],
        derive_op="sum",
    )
    for second in range(10):
        ds.append(a, second + 1, at(second))
        ds.append(b, 2.0, at(second))
    ds.append(a, 5, at(10))  # b has nothing in 12:00:10-20: its bucket mean is None
    ds.append(a, 0, at(20))
    ds.append(b, 0, at(20))
    assert raw(ds, total) == []
    ds.downsample_streams({"n": {"$in": ["a", "b"]}}, until=at(30))
    assert [(p["t"], p["v"]) for p in raw(ds, total)] == [(at(0), 7.5), (at(10), 5.0)]


def test_derivative_nulls_and_zero_interval(ds) -> None:
    a = ds.ensure_stream({"n": "a"}, {}, ["mean"], G.Seconds)
    slope = ds.ensure_stream({"n": "d"}, {}, [], G.Seconds, derive_from=[a],
                             derive_op="derivative")
    for second, value in [(0, 1), (1, None), (2, 3), (3, 6)]:
        ds.append(a, value, at(second))
    assert [(p["t"], p["v"]) for p in raw(ds, slope)] == [(at(1), None), (at(3), 3.0)]
    b = ds.ensure_stream({"n": "b"}, {}, ["mean"], G.Seconds)
    slope_b = ds.ensure_stream({"n": "db"}, {}, [], G.Seconds, derive_from=[b],
                               derive_op="derivative")
    with pytest.warns(exceptions.InvalidValueWarning):
        for second, value in [(0, 1), (1, 2), (1, 3)]:
            ds.append(b, value, at(second))
        ds.flush()
    assert [(p["t"], p["v"]) for p in raw(ds, slope_b)] == [(at(1), 1.0)]


def _counter_streams(ds, args=None) -> tuple[str, str, str]:
    """uptime and data sources, and counter_derivative(counter_reset(uptime), data)."""
    uptime = ds.ensure_stream({"n": "uptime"}, {}, ["mean"], G.Seconds)
    data = ds.ensure_stream({"n": "data"}, {}, ["mean"], G.Seconds)
    reset = ds.ensure_stream({"n": "reset"}, {}, [], G.Seconds, derive_from=[uptime],
                             derive_op="counter_reset", value_type="nominal")
    rate = ds.ensure_stream({"n": "rate"}, {}, [], G.Seconds,
                            derive_from=[{"stream": reset, "name": "reset"}, data],
                            derive_op="counter_derivative", derive_args=args)
    return uptime, data, rate


def test_counter_derivative_without_max_value_warns(ds) -> None:
    uptime, data, rate = _counter_streams(ds)
    assert ds.get_tags(rate)["derived_from"]["args"] == {}
    with pytest.warns(exceptions.DatastreamWarning):
        for second, value in enumerate([5, 12, 7]):
            ds.append(uptime, 100 + second, at(second))
            ds.append(data, value, at(second))
        ds.flush()
    assert [(p["t"], p["v"]) for p in raw(ds, rate)] == [(at(1), 7.0)]


def test_counter_derivative_null_emits_none(ds) -> None:
    uptime, data, rate = _counter_streams(ds, {"max_value": 100})
    for second, value in enumerate([5, 12, None]):
        ds.append(uptime, 100 + second, at(second))
        ds.append(data, value, at(second))
    got = [(p["t"], p["v"]) for p in raw(ds, rate)]
    assert got == [(at(1), 7.0), (at(2), None)]


def test_a_rarely_emitting_derived_stream_closes_buckets_as_its_source_advances(ds) -> None:
    """The resets at :04, :07, :08 and :13 and a source that reached :20: both 10-second
    buckets close, although the derived stream's own latest point is at :13 (nothing more can
    be emitted at or before :20)."""
    uptime = ds.ensure_stream({"n": "uptime"}, {}, ["mean"], G.Seconds)
    reset = ds.ensure_stream({"n": "reset"}, {}, ["count"], G.Seconds, derive_from=[uptime],
                             derive_op="counter_reset", value_type="nominal")
    for second, value in enumerate(UPTIME):
        ds.append(uptime, value, at(second))
    ds.downsample_streams(until=at(36_000))
    buckets = ds.get_data(reset, G.Seconds10, start=at(0), end_exclusive=at(20))
    assert [point["v"]["c"] for point in buckets] == [3, 1]
    assert ds.get_tags(reset)["latest_datapoint"] == at(13)
    with pytest.raises(exceptions.InvalidTimestamp):  # the closed range is frozen upstream
        ds.append(uptime, 50, at(15), check_timestamp=False)
    assert not ds.verify()


def test_counter_reset_skips_nulls(ds) -> None:
    """A null is neither a reset nor a new base: 5 after (20, None) is a reset against 20, and
    20 after (10, None) is none."""
    uptime = ds.ensure_stream({"n": "uptime"}, {}, [], G.Seconds)
    reset = ds.ensure_stream({"n": "reset"}, {}, [], G.Seconds, derive_from=[uptime],
                             derive_op="counter_reset", value_type="nominal")
    values = [10, None, 20, None, None, 5, 7, None, 6]
    for second, value in enumerate(values):
        ds.append(uptime, value, at(second))
    assert [(p["t"], p["v"]) for p in raw(ds, reset)] == [(at(5), 1), (at(8), 1)]


def _rate_with_own_reset(ds) -> tuple[str, str, str]:
    """counter_derivative whose reset input is a nominal stream appended by hand."""
    reset = ds.ensure_stream({"n": "reset"}, {}, [], G.Seconds, value_type="nominal")
    data = ds.ensure_stream({"n": "data"}, {}, [], G.Seconds)
    rate = ds.ensure_stream({"n": "rate"}, {}, [], G.Seconds,
                            derive_from=[{"stream": reset, "name": "reset"}, data],
                            derive_op="counter_derivative", derive_args={"max_value": 1000})
    return reset, data, rate


def _feed(ds, points: list[tuple[str, float, object]]) -> None:
    for stream_id, second, value in sorted(points, key=lambda p: p[1]):
        ds.append(stream_id, value, at(second))


@pytest.mark.parametrize("falsy", [0, "", False, [], {}, 0.0])
def test_counter_derivative_falsy_reset_keeps_the_counter(ds, falsy) -> None:
    reset, data, rate = _rate_with_own_reset(ds)
    points = [(data, s, v) for s, v in enumerate([10, 20, 40, 70])]
    points += [(reset, 1.5, falsy), (reset, 2.0, falsy), (reset, 3.5, falsy)]
    _feed(ds, points)
    assert [(p["t"], p["v"]) for p in raw(ds, rate)] == [
        (at(1), 10.0), (at(2), 20.0), (at(3), 30.0)
    ]


@pytest.mark.parametrize("truthy", [1, "x", True, [0], {"a": 0}])
def test_counter_derivative_truthy_reset_clears_the_counter(ds, truthy) -> None:
    reset, data, rate = _rate_with_own_reset(ds)
    points = [(data, s, v) for s, v in enumerate([10, 20, 40, 70])]
    points += [(reset, 1.5, truthy), (reset, 3.5, 0)]
    _feed(ds, points)
    assert [(p["t"], p["v"]) for p in raw(ds, rate)] == [(at(1), 10.0), (at(3), 30.0)]


def test_counter_derivative_null_reset_emits_none_and_forgets(ds) -> None:
    """A null on the reset input emits None at its own timestamp and, as a null data value
    does (and as the original API did for either input), forgets the previous point."""
    reset, data, rate = _rate_with_own_reset(ds)
    points = [(data, s, v) for s, v in enumerate([10, 20, 40, 70])]
    points += [(reset, 1.5, None), (reset, 3.5, 0)]
    _feed(ds, points)
    assert [(p["t"], p["v"]) for p in raw(ds, rate)] == [
        (at(1), 10.0), (at(1.5), None), (at(3), 30.0)
    ]


def test_counter_derivative_null_data_forgets(ds) -> None:
    reset, data, rate = _rate_with_own_reset(ds)
    _feed(ds, [(data, 0, 10), (data, 1, 20), (data, 2, None), (data, 3, 40), (data, 4, 70)])
    assert [(p["t"], p["v"]) for p in raw(ds, rate)] == [
        (at(1), 10.0), (at(2), None), (at(4), 30.0)
    ]


def test_chain_of_derived_streams(ds) -> None:
    a = ds.ensure_stream({"n": "a"}, {}, ["mean"], G.Seconds)
    first = ds.ensure_stream({"n": "d1"}, {}, ["mean"], G.Seconds, derive_from=[a],
                             derive_op="derivative")
    second = ds.ensure_stream({"n": "d2"}, {}, ["mean"], G.Seconds, derive_from=[first],
                              derive_op="derivative")
    for t, value in enumerate([0, 1, 4, 9, 16, 25]):
        ds.append(a, value, at(t))
    assert [p["v"] for p in raw(ds, first)] == [1.0, 3.0, 5.0, 7.0, 9.0]
    assert [p["v"] for p in raw(ds, second)] == [2.0, 2.0, 2.0, 2.0]
    assert [p["t"] for p in raw(ds, second)] == [at(2), at(3), at(4), at(5)]


# -- metadata, appends, downsampling of derived streams --------------------------------------


def test_derived_metadata(ds) -> None:
    a = ds.ensure_stream({"n": "a"}, {}, ["mean"], G.Seconds)
    b = ds.ensure_stream({"n": "b"}, {}, ["mean"], G.Seconds)
    total = ds.ensure_stream({"n": "sum"}, {}, ["mean"], G.Seconds, derive_from=[a, b],
                             derive_op="sum")
    slope = ds.ensure_stream({"n": "slope"}, {}, ["mean"], G.Seconds, derive_from=a,
                             derive_op="derivative")
    tags = ds.get_tags(total)
    assert tags["derived_from"]["stream_ids"] == [a, b]
    assert tags["derived_from"]["op"] == "sum"
    assert tags["derived_from"]["args"] == {}
    assert ds.get_tags(slope)["derived_from"]["stream_ids"] == [a]
    assert ds.get_tags(a)["contributes_to"] == {
        total: {"op": "sum", "args": {}}, slope: {"op": "derivative", "args": {}},
    }
    assert ds.get_tags(b)["contributes_to"] == {total: {"op": "sum", "args": {}}}
    assert "contributes_to" not in tags
    assert ds.ensure_stream({"n": "sum"}, {}, ["mean"], G.Seconds, derive_from=[a, b],
                            derive_op="sum") == total
    assert ds.ensure_stream({"n": "sum"}, {}, ["mean"], G.Seconds, derive_from=[b, a],
                            derive_op="sum") == total
    assert set(datastream.DERIVE_OPERATORS) >= {"sum", "derivative", "counter_reset",
                                                "counter_derivative"}


def test_derived_rejects_appends_and_is_downsampled(ds) -> None:
    a = ds.ensure_stream({"n": "a"}, {}, ["mean"], G.Seconds)
    b = ds.ensure_stream({"n": "b"}, {}, ["mean"], G.Seconds)
    total = ds.ensure_stream({"n": "sum"}, {}, ["mean"], G.Seconds, derive_from=[a, b],
                             derive_op="sum")
    ds.append_multiple([
        {"stream_id": s, "value": v, "timestamp": at(t)}
        for t, va, vb in zip(SECONDS, A, B, strict=True) for s, v in ((a, va), (b, vb))
    ])
    with pytest.raises(exceptions.AppendToDerivedStreamNotAllowed):
        ds.append(total, 1, at(20))
    with pytest.raises(exceptions.AppendToDerivedStreamNotAllowed):
        ds.append(total, 1, at(20), check_timestamp=False)
    ds.downsample_streams(until=at(20))
    tens = level(ds, total, G.Seconds10)
    assert len(tens) == 1
    assert tens[0]["v"] == {"c": 5, "s": 262, "m": 52.4}
    assert tens[0]["t"]["a"] == at(0) and tens[0]["t"]["z"] == at(4)
    assert ds.get_tags(total)["downsampled_until"]["10seconds"] == at(10)
    assert ds.get_tags(total)["latest_datapoint"] == at(11)
    assert ds.get_tags(total)["earliest_datapoint"] == at(0)


# -- validation ------------------------------------------------------------------------------


@pytest.fixture
def sources(ds):
    ids = {
        "a": ds.ensure_stream({"n": "a"}, {}, ["mean"], G.Seconds),
        "b": ds.ensure_stream({"n": "b"}, {}, ["mean"], G.Seconds),
        "minutes": ds.ensure_stream({"n": "minutes"}, {}, ["mean"], G.Minutes),
        "nominal": ds.ensure_stream({"n": "nominal"}, {}, ["count"], G.Seconds,
                                    value_type="nominal"),
    }
    return ds, ids


def _derive(ds, derive_from, op, **kwargs):
    return ds.ensure_stream({"n": "derived"}, {}, kwargs.pop("downsamplers", ["mean"]),
                            kwargs.pop("granularity", G.Seconds), derive_from=derive_from,
                            derive_op=op, **kwargs)


def test_validation_named_errors(sources) -> None:
    ds, ids = sources
    a, b = ids["a"], ids["b"]
    cases = [
        (exceptions.StreamNotFound, [str(uuid.uuid4())], "sum", {}),
        (exceptions.StreamNotFound, [a, "not-an-id"], "sum", {}),
        (exceptions.IncompatibleGranularities, [{"stream": ids["minutes"],
                                                 "granularity": G.Seconds}],
         "derivative", {}),
        (exceptions.IncompatibleGranularities, [a, b], "sum", {"granularity": G.Minutes}),
        (exceptions.IncompatibleGranularities, [a, {"stream": b, "granularity": G.Seconds10}],
         "sum", {}),
        (exceptions.UnsupportedDeriveOperator, [a, b], "sum",
         {"value_type": "nominal", "downsamplers": ["count"]}),
        (exceptions.UnsupportedDeriveOperator, [a], "counter_reset", {}),
        (exceptions.UnsupportedDeriveOperator, [a], "derivative",
         {"value_type": "graph", "downsamplers": ["count"]}),
        (exceptions.UnsupportedDeriveOperator, [a], "integral", {}),
        (exceptions.UnsupportedDeriveOperator, [a], "SUM", {}),
        (exceptions.InvalidOperatorArguments, [a, a], "sum", {}),
        (exceptions.InvalidOperatorArguments, [a, {"stream": a}], "sum", {}),
        (exceptions.IncompatibleTypes, [a, ids["nominal"]], "sum", {}),
        (ValueError, [a], None, {}),
    ]
    for error, derive_from, op, kwargs in cases:
        with pytest.raises(error):
            _derive(ds, derive_from, op, **kwargs)
            pytest.fail(f"{op} over {derive_from} accepted")
    assert len(ds.find_streams()) == 4
    assert all("contributes_to" not in ds.get_tags(i) for i in ids.values())


def test_validation_operator_arity(sources) -> None:
    ds, ids = sources
    a, b = ids["a"], ids["b"]
    arity, types = exceptions.InvalidOperatorArguments, exceptions.IncompatibleTypes
    cases = [
        (arity, [a, b], "derivative", {}),
        (arity, [], "sum", {}),
        (arity, [], "derivative", {}),
        (arity, [a, b], "counter_reset", {"value_type": "nominal", "downsamplers": []}),
        (types, [ids["nominal"]], "derivative", {}),
        (arity, [a], "counter_derivative", {}),
        (arity, [{"stream": a, "name": "reset"}, {"stream": b, "name": "reset"}],
         "counter_derivative", {}),
        (arity, [a, {"stream": b, "name": "reset"}], "counter_derivative", {}),
        (types, [{"stream": a, "name": "reset"}, ids["nominal"]], "counter_derivative", {}),
        (arity, [{"stream": a, "name": "reset"}, b, a], "counter_derivative", {}),
        (arity, [a], "derivative", {"derive_args": {"max_value": 1}}),
        (arity, [a], "sum", {"derive_args": {1: 2, "x": 3}}),
    ]
    for error, derive_from, op, kwargs in cases:
        with pytest.raises(exceptions.DatastreamException) as caught:
            _derive(ds, derive_from, op, **kwargs)
        assert type(caught.value) is error, (op, derive_from, caught.value)
    assert len(ds.find_streams()) == 4


@pytest.mark.parametrize(
    "max_value",
    [10**400, -(10**400), 2**63, float("inf"), float("nan"), 0, -1, -0.5, True, "256",
     None, [256]],
)
def test_counter_derivative_max_value_out_of_range(sources, max_value) -> None:
    """max_value must be usable by the float64 kernel and storable by every backend: 10**400
    used to be accepted and to fail later (on MongoDB when the stream was stored, in the kernel
    at the first flush)."""
    ds, ids = sources
    reset = ds.ensure_stream({"n": "reset"}, {}, [], G.Seconds, derive_from=[ids["a"]],
                             derive_op="counter_reset", value_type="nominal")
    derive_from = [{"stream": reset, "name": "reset"}, ids["b"]]
    with pytest.raises(exceptions.InvalidOperatorArguments, match="max_value"):
        _derive(ds, derive_from, "counter_derivative", derive_args={"max_value": max_value})
    assert len(ds.find_streams()) == 5
    assert set(ds.get_tags(ids["b"]).get("contributes_to", {})) == set()


@pytest.mark.parametrize("max_value", [1, 256, 2**63 - 1, 0.5, float(2**64), 1e300])
def test_counter_derivative_max_value_in_range(sources, max_value) -> None:
    ds, ids = sources
    reset = ds.ensure_stream({"n": "reset"}, {}, [], G.Seconds, derive_from=[ids["a"]],
                             derive_op="counter_reset", value_type="nominal")
    rate = _derive(ds, [{"stream": reset, "name": "reset"}, ids["b"]], "counter_derivative",
                   derive_args={"max_value": max_value})
    assert ds.get_tags(rate)["derived_from"]["args"] == {"max_value": max_value}
    for second, value in enumerate([10, 5]):
        ds.append(ids["a"], 100 + second, at(second))  # no reset; its watermark advances
        ds.append(ids["b"], value, at(second))
    assert [p["v"] for p in raw(ds, rate)] == [float(max_value) - 10 + 5]


def test_valid_derive_forms(sources) -> None:
    ds, ids = sources
    a = ids["a"]
    single = ds.ensure_stream({"n": "d1"}, {}, ["mean"], G.Seconds, derive_from=a,
                              derive_op="derivative")
    as_dict = ds.ensure_stream({"n": "d2"}, {}, ["mean"], G.Seconds,
                               derive_from=({"stream": a, "name": "x", "granularity": "s"},),
                               derive_op="derivative")
    coarse = ds.ensure_stream({"n": "d3"}, {}, ["mean"], G.Minutes,
                              derive_from=[{"stream": a, "granularity": G.Minutes}],
                              derive_op="derivative")
    for stream_id in (single, as_dict, coarse):
        assert ds.get_tags(stream_id)["derived_from"]["stream_ids"] == [a]
        assert ds.get_tags(stream_id)["derived_from"]["args"] == {}
    assert set(ds.get_tags(a)["contributes_to"]) == {single, as_dict, coarse}


# -- backprocessing --------------------------------------------------------------------------


def _history(ds, a, b, seconds) -> None:
    for t in seconds:
        i = SECONDS.index(t)
        ds.append(a, A[i], at(t))
        ds.append(b, B[i], at(t))


def test_backprocess(ds) -> None:
    a = ds.ensure_stream({"n": "a"}, {}, ["mean"], G.Seconds)
    b = ds.ensure_stream({"n": "b"}, {}, ["mean"], G.Seconds)
    _history(ds, a, b, [0, 1, 2, 3, 4])
    total = ds.ensure_stream({"n": "sum"}, {}, ["mean"], G.Seconds, derive_from=[a, b],
                             derive_op="sum")
    assert ds.get_tags(total)["pending_backprocess"] is True
    _history(ds, a, b, [10, 11])
    assert raw(ds, total) == []  # no live updates while pending
    expected = [(at(t), v) for t, v in zip(SECONDS, [42, 50, 56, 64, 50, 112, 116],
                                           strict=True)]
    ds.backprocess_streams({"n": "sum"})
    assert [(p["t"], p["v"]) for p in raw(ds, total)] == expected
    assert ds.get_tags(total)["pending_backprocess"] is False
    ds.backprocess_streams({"n": "sum"})  # idempotent
    ds.backprocess_streams()
    assert [(p["t"], p["v"]) for p in raw(ds, total)] == expected
    ds.append(a, 1, at(12))
    ds.append(b, 2, at(12))
    assert [(p["t"], p["v"]) for p in raw(ds, total)] == expected + [(at(12), 3)]
    ds.downsample_streams(until=at(20))
    assert level(ds, total, G.Seconds10)[0]["v"]["s"] == 262


def test_backprocess_stateful_operator_across_reopen(ds, reopen, request) -> None:
    uptime = ds.ensure_stream({"n": "uptime"}, {}, ["mean"], G.Seconds)
    for second, value in enumerate(UPTIME[:10]):
        ds.append(uptime, value, at(second))
    reset = ds.ensure_stream({"n": "reset"}, {}, [], G.Seconds, derive_from=[uptime],
                             derive_op="counter_reset", value_type="nominal")
    assert ds.get_tags(reset)["pending_backprocess"] is True
    ds = reopen(ds)
    request.addfinalizer(ds.close)
    assert ds.get_tags(reset)["pending_backprocess"] is True
    ds.backprocess_streams({"stream_id": reset})
    ds.backprocess_streams({"stream_id": reset})
    for second, value in enumerate(UPTIME[10:], start=10):
        ds.append(uptime, value, at(second))
    assert [p["t"] for p in raw(ds, reset)] == [at(4), at(7), at(8), at(13)]


def test_no_backprocess(ds) -> None:
    a = ds.ensure_stream({"n": "a"}, {}, ["mean"], G.Seconds)
    b = ds.ensure_stream({"n": "b"}, {}, ["mean"], G.Seconds)
    _history(ds, a, b, [0, 1, 2, 3, 4])
    total = ds.ensure_stream({"n": "sum"}, {}, ["mean"], G.Seconds, derive_from=[a, b],
                             derive_op="sum", derive_backprocess=False)
    assert ds.get_tags(total)["pending_backprocess"] is False
    _history(ds, a, b, [10, 11])
    assert [(p["t"], p["v"]) for p in raw(ds, total)] == [(at(10), 112), (at(11), 116)]
    ds.backprocess_streams({"n": "sum"})
    assert [(p["t"], p["v"]) for p in raw(ds, total)] == [(at(10), 112), (at(11), 116)]


def test_derived_over_empty_sources_is_not_pending(ds) -> None:
    a = ds.ensure_stream({"n": "a"}, {}, ["mean"], G.Seconds)
    slope = ds.ensure_stream({"n": "d"}, {}, ["mean"], G.Seconds, derive_from=[a],
                             derive_op="derivative")
    assert ds.get_tags(slope)["pending_backprocess"] is False
    ds.append(a, 1, at(0))
    ds.append(a, 3, at(2))
    assert [(p["t"], p["v"]) for p in raw(ds, slope)] == [(at(2), 1.0)]
    assert list(ds.get_data(slope, G.Seconds, start=EVER)) == raw(ds, slope)



def test_get_tags_of_a_derived_stream_sees_buffered_source_points(ds) -> None:
    """Every metadata call sees earlier appends of the same object, also through derivation."""
    a = ds.ensure_stream({"n": "a"}, {}, ["count"], G.Seconds)
    d = ds.ensure_stream({"n": "d"}, {}, ["count"], G.Seconds, derive_from=[a],
                         derive_op="derivative")
    for q in range(4):
        ds.append(a, q * q, at(q))
    tags = ds.get_tags(d)
    assert (tags["earliest_datapoint"], tags["latest_datapoint"]) == (at(1), at(3))


def test_find_streams_shows_derived_streams_with_buffered_source_points(ds) -> None:
    """find_streams is a metadata call like get_tags: a derived stream's extent includes what
    the same object's buffered source points derive (behaviour §4.3)."""
    a, d = derivative_with_a_buffered_point(ds)
    found = extents(ds.find_streams({"n": {"$in": ["a", "d"]}}))
    assert found == {a: (at(0), at(3)), d: (at(1), at(3))}


def test_auto_downsample_closes_a_derived_streams_buckets_while_it_emits_nothing(
        backend_factory, clock) -> None:
    """With auto_downsample, a counter_reset that emits nothing in a flush still closes the
    buckets its source has moved past (the same rule as downsample_streams)."""
    with datastream.Datastream(backend_factory(), clock=clock, auto_downsample=True) as ds:
        uptime = ds.ensure_stream({"n": "uptime"}, {}, ["mean"], G.Seconds)
        reset = ds.ensure_stream({"n": "reset"}, {}, ["count"], G.Seconds,
                                 derive_from=[uptime], derive_op="counter_reset",
                                 value_type="nominal")
        for second, value in enumerate([5, 6, 7, 8, 1, 2]):
            ds.append(uptime, value, at(second))
        ds.flush()
        for second in range(6, 26):  # no reset: nothing emitted
            ds.append(uptime, second, at(second))
        ds.flush()
        assert ds.get_tags(reset)["downsampled_until"]["10seconds"] == at(20)
        assert [p["v"]["c"] for p in level(ds, reset, G.Seconds10)] == [1, 0]
