"""A rejected call changes nothing: snapshot the store, make a bad call, compare.

The snapshot is what readers can see: find_streams, get_tags and get_data of every stream at
every level. Reads flush, so a bad point that slipped into a buffer would show up too.
"""

from __future__ import annotations

import datetime
import decimal
import math
import uuid

import numpy as np
import pyarrow as pa
import pytest

from datastream import exceptions as ex

from .helpers import EVER, G, at, snapshot

DS = (ex.DatastreamException, ValueError, TypeError)


@pytest.fixture
def store(ds):
    ids = {
        "n1": ds.ensure_stream({"name": "n1", "group": "x"}, {"nested": {"k": [1, 2]}},
                               ["mean", "max"], G.Seconds),
        "n2": ds.ensure_stream({"name": "n2", "group": "x"}, {}, ["mean"], G.Seconds),
        "minutes": ds.ensure_stream({"name": "minutes"}, {}, ["min"], G.Minutes),
        "nominal": ds.ensure_stream({"name": "nominal"}, {}, ["most_often"], G.Seconds,
                                    value_type="nominal"),
        "graph": ds.ensure_stream({"name": "graph"}, {}, ["count"], G.Seconds,
                                  value_type="graph"),
        "high": ds.ensure_stream({"name": "high"}, {}, ["sum"], G.Seconds,
                                 value_type_options={"high_accuracy": True}),
        "empty": ds.ensure_stream({"name": "empty"}, {"t": 1}, [], G.Seconds),
    }
    ids["sum"] = ds.ensure_stream({"name": "sum"}, {}, ["mean"], G.Seconds,
                                  derive_from=[ids["n1"], ids["n2"]], derive_op="sum")
    for second in range(0, 40, 3):
        ds.append(ids["n1"], second, at(second))
        ds.append(ids["n2"], -second, at(second))
        ds.append(ids["nominal"], f"v{second % 4}", at(second))
        ds.append(ids["high"], decimal.Decimal("0.1"), at(second))
        ds.append(ids["minutes"], second * 2.5, at(second * 30))
    ds.append(ids["graph"], {"v": [{"i": 1}], "e": []}, at(1))
    ds.downsample_streams(until=at(25))
    return ds, ids


def _light(ds) -> list:
    """Streams with their tags and raw data (levels change only with them)."""
    return [
        (repr(stream), [repr(p) for p in ds.get_data(stream["stream_id"], G.Seconds,
                                                     start=EVER)])
        for stream in ds.find_streams()
    ]


def _check(ds, cases) -> None:
    """Every case raises its error and leaves the store exactly as it was."""
    problems = []
    full = snapshot(ds)
    before = _light(ds)
    for name, error, call in cases:
        try:
            call()
        except error:
            pass
        except Exception as other:  # noqa: BLE001 - reported below
            problems.append(f"{name}: raised {type(other).__name__}: {other}")
        else:
            problems.append(f"{name}: did not raise {error}")
        after = _light(ds)
        if after != before:
            problems.append(f"{name}: the store changed")
            before = after
    if not problems and snapshot(ds) != full:
        problems.append("the downsampled levels changed")
    assert not problems, "\n".join(problems)


def test_bad_ensure_stream(store) -> None:
    ds, ids = store
    src = ids["n1"]

    def ensure(query, tags=None, downsamplers=("mean",), granularity=G.Seconds, **kwargs):
        return lambda: ds.ensure_stream(query, {} if tags is None else tags, list(downsamplers),
                                        granularity, **kwargs)

    cases = [
        ("empty query", ValueError, ensure({})),
        ("None query", ValueError, ensure(None)),
        ("$ key in query", ValueError, ensure({"$where": "1"})),
        ("__ in tags", ex.ReservedTagNameError, ensure({"new": 1}, {"a__b": 1})),
        (". in tags", ex.ReservedTagNameError, ensure({"new": 1}, {"a.b": 1})),
        ("NUL in tags", ex.ReservedTagNameError, ensure({"new": 1}, {"a\x00": 1})),
        ("empty key in tags", ex.ReservedTagNameError, ensure({"new": 1}, {"": 1})),
        ("nested $ key", ex.ReservedTagNameError, ensure({"new": 1}, {"a": {"$b": 1}})),
        ("reserved tag", ex.ReservedTagNameError, ensure({"new": 1}, {"stream_id": 1})),
        ("reserved tag, existing", ex.ReservedTagNameError,
         ensure({"name": "n2"}, {"latest_datapoint": 1})),
        ("bad key, existing", ex.ReservedTagNameError,
         ensure({"name": "n2"}, {"ok": 1, "x": {"a.b": 1}})),
        ("granularity", ex.UnsupportedGranularity, ensure({"new": 1}, granularity="weekly")),
        ("downsampler", ex.UnsupportedDownsampler, ensure({"new": 1}, downsamplers=["avg"])),
        ("downsampler for type", ex.UnsupportedDownsampler,
         ensure({"new": 1}, downsamplers=["mean"], value_type="nominal")),
        ("value type", ex.UnsupportedValueType, ensure({"new": 1}, value_type="text")),
        ("options", TypeError, ensure({"new": 1}, value_type_options="high")),
        ("changed granularity", ex.InconsistentStreamConfiguration,
         ensure({"name": "n2"}, {"changed": 1}, granularity=G.Minutes)),
        ("changed downsamplers", ex.InconsistentStreamConfiguration,
         ensure({"name": "n2"}, {"changed": 1}, downsamplers=["max"])),
        ("changed value type", ex.InconsistentStreamConfiguration,
         ensure({"name": "n2"}, {"changed": 1}, downsamplers=["count"], value_type="nominal")),
        ("changed options", ex.InconsistentStreamConfiguration,
         ensure({"name": "n2"}, {"changed": 1}, value_type_options={"high_accuracy": True})),
        ("now derived", ex.InconsistentStreamConfiguration,
         ensure({"name": "n2"}, {"changed": 1}, derive_from=[src], derive_op="derivative")),
        ("changed op", ex.InconsistentStreamConfiguration,
         ensure({"name": "sum"}, {"changed": 1}, derive_from=[src], derive_op="derivative")),
        ("changed sources", ex.InconsistentStreamConfiguration,
         ensure({"name": "sum"}, {"changed": 1}, derive_from=[src], derive_op="sum")),
        ("multiple", ex.MultipleStreamsReturned, ensure({"group": "x"}, {"changed": 1})),
        ("unknown op", ex.UnsupportedDeriveOperator,
         ensure({"new": 1}, derive_from=[src], derive_op="integral")),
        ("missing op", ValueError, ensure({"new": 1}, derive_from=[src])),
        ("unknown source", ex.StreamNotFound,
         ensure({"new": 1}, derive_from=[src, str(uuid.uuid4())], derive_op="sum")),
        ("finer than source", ex.IncompatibleGranularities,
         ensure({"new": 1}, derive_from=[{"stream": ids["minutes"], "granularity": "seconds"}],
                derive_op="derivative")),
        ("sum granularity", ex.IncompatibleGranularities,
         ensure({"new": 1}, derive_from=[src], derive_op="sum", granularity=G.Minutes)),
        ("sum of nominal", ex.IncompatibleTypes,
         ensure({"new": 1}, derive_from=[src, ids["nominal"]], derive_op="sum")),
        ("duplicate sources", ex.InvalidOperatorArguments,
         ensure({"new": 1}, derive_from=[src, src], derive_op="sum")),
        ("op for type", ex.UnsupportedDeriveOperator,
         ensure({"new": 1}, derive_from=[src], derive_op="counter_reset")),
        ("None downsamplers", TypeError,
         lambda: ds.ensure_stream({"new": 1}, {}, None, G.Seconds)),
        ("None downsamplers, existing", TypeError,
         lambda: ds.ensure_stream({"name": "n2"}, {"changed": 1}, None, G.Seconds)),
        ("downsamplers as str", TypeError,
         lambda: ds.ensure_stream({"new": 1}, {}, "mean", G.Seconds)),
        ("no downsamplers", TypeError, lambda: ds.ensure_stream({"new": 1}, {})),
        # an existing stream is compared first: a changed operator is inconsistent even when
        # the new operator would reject the sources or the arguments (as in the old API)
        ("changed op, two sources", ex.InconsistentStreamConfiguration,
         ensure({"name": "sum"}, {"changed": 1}, derive_from=[src, ids["n2"]],
                derive_op="derivative")),
        ("changed op, unnamed reset", ex.InconsistentStreamConfiguration,
         ensure({"name": "sum"}, {"changed": 1}, derive_from=[src, ids["n2"]],
                derive_op="counter_derivative", derive_args={"max_value": 10**400})),
        ("changed op, for type", ex.InconsistentStreamConfiguration,
         ensure({"name": "sum"}, {"changed": 1}, derive_from=[src, ids["n2"]],
                derive_op="counter_reset")),
        ("now derived, bad sources", ex.InconsistentStreamConfiguration,
         ensure({"name": "n2"}, {"changed": 1}, derive_from=[src, src], derive_op="sum")),
        ("now derived, unknown source", ex.InconsistentStreamConfiguration,
         ensure({"name": "n2"}, {"changed": 1}, derive_from=[str(uuid.uuid4())],
                derive_op="derivative")),
        ("changed sources, nominal", ex.InconsistentStreamConfiguration,
         ensure({"name": "sum"}, {"changed": 1}, derive_from=[src, ids["nominal"]],
                derive_op="sum")),
        ("same config, bad args", ex.InvalidOperatorArguments,
         ensure({"name": "sum"}, {"changed": 1}, derive_from=[src, ids["n2"]], derive_op="sum",
                derive_args={"max_value": 1})),
    ]
    _check(ds, cases)


def test_bad_tag_calls(store) -> None:
    ds, ids = store
    n1 = ids["n1"]
    cases = [
        ("update reserved", ex.ReservedTagNameError,
         lambda: ds.update_tags(n1, {"ok": 1, "highest_granularity": "days"})),
        ("update bad key", ex.ReservedTagNameError,
         lambda: ds.update_tags(n1, {"ok": 1, "nested": {"$set": 1}})),
        ("update dotted", ex.ReservedTagNameError, lambda: ds.update_tags(n1, {"a.b": 1})),
        ("update unknown", ex.StreamNotFound,
         lambda: ds.update_tags(str(uuid.uuid4()), {"a": 1})),
        ("remove reserved", ex.ReservedTagNameError,
         lambda: ds.remove_tag(n1, {"name": None, "stream_id": None})),
        ("remove bad key", ex.ReservedTagNameError,
         lambda: ds.remove_tag(n1, {"nested": {"k__x": None}})),
        ("remove unknown", ex.StreamNotFound, lambda: ds.remove_tag("nope", {"a": None})),
        ("clear unknown", ex.StreamNotFound, lambda: ds.clear_tags(str(uuid.uuid4()))),
        ("find unknown op", ValueError, lambda: ds.find_streams({"name": {"$regex": "n"}})),
        ("delete source", ex.OutstandingDependenciesError,
         lambda: ds.delete_streams({"group": "x"})),
        ("delete one source", ex.OutstandingDependenciesError,
         lambda: ds.delete_streams({"stream_id": {"$in": [ids["empty"], n1]}})),
        ("delete unknown op", ValueError, lambda: ds.delete_streams({"name": {"$nope": 1}})),
        ("downsample unknown op", ValueError,
         lambda: ds.downsample_streams({"name": {"$nope": 1}}, until=at(1000))),
        ("backprocess unknown op", ValueError,
         lambda: ds.backprocess_streams({"name": {"$nope": 1}})),
        ("get_data no start", AttributeError, lambda: ds.get_data(n1, G.Seconds)),
        ("get_data two ends", AttributeError,
         lambda: ds.get_data(n1, G.Seconds, start=EVER, end=at(1), end_exclusive=at(1))),
        ("get_data downsampler", ex.UnsupportedDownsampler,
         lambda: ds.get_data(n1, G.Minutes, start=EVER, value_downsamplers=["avg"])),
        ("get_data granularity", ex.UnsupportedGranularity,
         lambda: ds.get_data(n1, "weekly", start=EVER)),
    ]
    _check(ds, cases)


def test_bad_appends(store) -> None:
    ds, ids = store
    n1, nominal, graph = ids["n1"], ids["nominal"], ids["graph"]
    late = at(100)

    def append(stream_id, value, timestamp=late, **kwargs):
        return lambda: ds.append(stream_id, value, timestamp, **kwargs)

    cases = [
        ("unknown stream", ex.StreamNotFound, append(str(uuid.uuid4()), 1)),
        ("malformed id", ex.StreamNotFound, append("nope", 1)),
        ("derived", ex.AppendToDerivedStreamNotAllowed, append(ids["sum"], 1)),
        ("bool", TypeError, append(n1, True)),
        ("str", TypeError, append(n1, "1")),
        ("list", TypeError, append(n1, [1])),
        ("inf", ValueError, append(n1, math.inf)),
        ("-inf", ValueError, append(n1, -math.inf)),
        ("dict missing key", ValueError, append(n1, {"c": 1, "s": 1, "m": 1})),
        ("dict extra key", ValueError,
         append(n1, {"c": 1, "s": 1, "m": 1, "u": 1, "l": 1})),
        ("dict non-number", TypeError, append(n1, {"c": 1, "s": "1", "m": 1, "u": 1})),
        ("older", ex.InvalidTimestamp, append(n1, 1, at(30))),
        ("downsampled range", ex.InvalidTimestamp,
         append(n1, 1, at(3), check_timestamp=False)),
        ("too early", ex.InvalidTimestamp,
         append(n1, 1, datetime.datetime(1500, 1, 1), check_timestamp=False)),
        ("too late", ex.InvalidTimestamp, append(n1, 1, datetime.datetime(2300, 1, 1))),
        ("nominal not JSON", (TypeError, ValueError), append(nominal, {1, 2})),
        ("nominal NaN inside", (TypeError, ValueError), append(nominal, [math.nan])),
        ("graph not dict", TypeError, append(graph, [1])),
        ("graph missing e", ValueError, append(graph, {"v": []})),
        ("graph missing i", ValueError, append(graph, {"v": [{"x": 1}], "e": []})),
        ("graph duplicate", ValueError, append(graph, {"v": [{"i": 1}, {"i": 1}], "e": []})),
        ("graph endpoint", ValueError,
         append(graph, {"v": [{"i": 1}], "e": [{"f": 1, "t": 2}]})),
        ("graph edge key", ValueError, append(graph, {"v": [{"i": 1}], "e": [{"f": 1}]})),
    ]
    _check(ds, cases)


def test_bad_append_multiple(store) -> None:
    ds, ids = store
    n1, n2 = ids["n1"], ids["n2"]
    good = [
        {"stream_id": n2, "value": 1, "timestamp": at(100)},
        {"stream_id": n1, "value": 2, "timestamp": at(100)},
        {"stream_id": ids["nominal"], "value": "x", "timestamp": at(100)},
    ]
    bad = {
        "unknown": ({"stream_id": str(uuid.uuid4()), "value": 1}, ex.StreamNotFound),
        "derived": ({"stream_id": ids["sum"], "value": 1, "timestamp": at(101)},
                    ex.AppendToDerivedStreamNotAllowed),
        "bool": ({"stream_id": n1, "value": False, "timestamp": at(101)}, TypeError),
        "inf": ({"stream_id": n1, "value": math.inf, "timestamp": at(101)}, ValueError),
        "older": ({"stream_id": n1, "value": 1, "timestamp": at(30)}, ex.InvalidTimestamp),
        "older in call": ({"stream_id": n1, "value": 1, "timestamp": at(99)},
                          ex.InvalidTimestamp),
        "range": ({"stream_id": n1, "value": 1, "timestamp": datetime.datetime(3000, 1, 1)},
                  ex.InvalidTimestamp),
        "graph": ({"stream_id": ids["graph"], "value": {"v": []}, "timestamp": at(101)},
                  ValueError),
        "not a dict": ([n1, 1], DS),
    }
    cases = []
    for name, (item, error) in bad.items():
        cases.append((f"{name} last", error, lambda item=item: ds.append_multiple(good + [item])))
        if name != "older in call":
            cases.append((f"{name} first", error,
                          lambda item=item: ds.append_multiple([item] + good)))
    _check(ds, cases)


def test_bad_bulk_appends(store) -> None:
    ds, ids = store
    n1, n2 = ids["n1"], ids["n2"]
    base = 946_728_000 * 1_000_000

    def us(*seconds):
        return np.array([base + int(s * 1_000_000) for s in seconds], dtype="int64")

    def table(stream_ids, seconds, data):
        return pa.table({
            "stream_id": pa.array(stream_ids),
            "timestamp": pa.array([at(s) for s in seconds], pa.timestamp("us", tz="UTC")),
            "value": pa.array(data, pa.float64()),
        })

    cases = [
        ("arrays inf", ValueError, lambda: ds.append_arrays(n1, us(100, 101),
                                                            np.array([1.0, np.inf]), unit="us")),
        ("arrays decreasing", ex.InvalidTimestamp,
         lambda: ds.append_arrays(n1, us(102, 101), np.array([1.0, 2.0]), unit="us")),
        ("arrays older", ex.InvalidTimestamp,
         lambda: ds.append_arrays(n1, us(30, 101), np.array([1.0, 2.0]), unit="us")),
        ("arrays downsampled range", ex.InvalidTimestamp,
         lambda: ds.append_arrays(n1, us(5, 101), np.array([1.0, 2.0]), check_timestamp=False,
                                  unit="us")),
        ("arrays unknown", ex.StreamNotFound,
         lambda: ds.append_arrays(str(uuid.uuid4()), us(100), np.array([1.0]), unit="us")),
        ("arrays derived", ex.AppendToDerivedStreamNotAllowed,
         lambda: ds.append_arrays(ids["sum"], us(100), np.array([1.0]), unit="us")),
        ("table unknown", ex.StreamNotFound,
         lambda: ds.append_table(table([n1, n2, str(uuid.uuid4())], [100, 100, 100],
                                       [1.0, 2.0, 3.0]))),
        ("table inf", ValueError,
         lambda: ds.append_table(table([n1, n2, n2], [100, 100, 101], [1.0, 2.0, math.inf]))),
        ("table older", ex.InvalidTimestamp,
         lambda: ds.append_table(table([n1, n2], [100, 1], [1.0, 2.0]))),
        ("table derived", ex.AppendToDerivedStreamNotAllowed,
         lambda: ds.append_table(table([n1, ids["sum"]], [100, 100], [1.0, 2.0]))),
        ("table columns", ValueError,
         lambda: ds.append_table(pa.table({"stream_id": [n1], "value": [1.0]}))),
        ("arrays ints without unit", TypeError,
         lambda: ds.append_arrays(n1, us(100), np.array([1.0]))),
        ("arrays unknown unit", ValueError,
         lambda: ds.append_arrays(n1, us(100), np.array([1.0]), unit="m")),
        ("arrays wrapping datetime64", ex.InvalidTimestamp,
         lambda: ds.append_arrays(n1, np.array([100, 2**62], dtype="datetime64[s]"),
                                  np.array([1.0, 2.0]))),
        ("arrays wrapping uint64", ex.InvalidTimestamp,
         lambda: ds.append_arrays(n1, np.array([base, 2**64 - 1], dtype="uint64"),
                                  np.array([1.0, 2.0]), unit="us")),
        ("table ints without unit", TypeError,
         lambda: ds.append_table(pa.table({"stream_id": [n1], "timestamp": us(100),
                                           "value": [1.0]}))),
    ]
    _check(ds, cases)
