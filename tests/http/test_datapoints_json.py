"""The vectorised JSON of a page of datapoints equals the JSON of what get_data returns,
converted point by point the obvious way (the reference below)."""

from __future__ import annotations

import datetime
import decimal
import json
import math
from typing import Any

import pytest

import datastream
from datastream.http.datapoints_json import datapoints_json

UTC = datetime.timezone.utc
START = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
EVERYTHING = datetime.datetime.min


def reference(value: Any) -> Any:
    """One datapoint as JSON data: ISO times, NaN/inf as null, frequency keys as text."""
    if isinstance(value, datetime.datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(
            timespec="microseconds") + "Z"
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dict):
        return {key if isinstance(key, str) else json.dumps(key): reference(item)
                for key, item in value.items()}
    if isinstance(value, list):
        return [reference(item) for item in value]
    return value


def check(points: datastream.Datapoints) -> None:
    produced = json.loads(datapoints_json(points.to_arrow()))
    assert produced == [reference(point) for point in points]


@pytest.fixture
def ds():
    with datastream.Datastream() as ds:
        yield ds


def at(second: float) -> datetime.datetime:
    return START + datetime.timedelta(seconds=second)


def test_numeric_raw_and_levels(ds):
    stream = ds.ensure_stream({"n": 1}, {}, list(datastream.VALUE_DOWNSAMPLERS), "seconds")
    values = [1, 2.5, None, -7, 1e20, 0.1, 3, float("nan"), 12345678901234, 2.0**-30]
    for index, value in enumerate(values * 5):
        ds.append(stream, value, at(index * 3.25))
    ds.downsample_streams(until=at(3600))
    check(ds.get_data(stream, "seconds", start=EVERYTHING))
    check(ds.get_data(stream, "seconds", start=EVERYTHING, reverse=True)[3:9])
    for level in ("10seconds", "minutes"):
        check(ds.get_data(stream, level, start=EVERYTHING))
    check(ds.get_data(stream, "10seconds", start=EVERYTHING, value_downsamplers=["median"],
                      time_downsamplers=[]))
    check(ds.get_data(stream, "10seconds", start=EVERYTHING, value_downsamplers=[],
                      time_downsamplers=["last", "intervals_std_dev"]))
    check(ds.get_data(stream, "10seconds", start=EVERYTHING, value_downsamplers=[],
                      time_downsamplers=[]))
    kept_none = ds.ensure_stream({"n": 9}, {}, ["mean"], "seconds")
    ds.append(kept_none, 1.0, at(0))
    ds.append(kept_none, 2.0, at(30))
    ds.downsample_streams(until=at(3600))
    for times in (None, []):  # value downsamplers the stream does not keep: "v" stays empty
        points = ds.get_data(kept_none, "10seconds", start=EVERYTHING,
                             value_downsamplers=["median"], time_downsamplers=times)
        produced = json.loads(datapoints_json(points.to_arrow(), values_asked=True))
        assert produced == [reference(point) for point in points]
        assert all(point["v"] == {} for point in produced)
    assert datapoints_json(ds.get_data(stream, "seconds", start=at(10**6)).to_arrow()) == b"[]"


def test_nominal_values_and_frequencies(ds):
    stream = ds.ensure_stream({"n": 2}, {}, ["count", "most_often", "least_often",
                                            "frequencies"], "seconds", value_type="nominal")
    values = ["up", 'quote " and \\ backslash', {"k": [1, 2]}, 1.5, True, None, ["x"], 7]
    for index, value in enumerate(values * 4):
        ds.append(stream, value, at(index))
    ds.downsample_streams(until=at(3600))
    check(ds.get_data(stream, "seconds", start=EVERYTHING))
    check(ds.get_data(stream, "10seconds", start=EVERYTHING))


def test_frequency_keys_never_repeat(ds):
    """Texts that read like other values ("1" beside 1, "true" beside true, "[1,2]" beside
    [1, 2]) would get the same JSON key: they are keyed by their canonical JSON instead, so a
    JSON parser keeps every count. Other rows of the page stay as they are."""
    stream = ds.ensure_stream({"n": 3}, {}, ["frequencies"], "seconds", value_type="nominal")
    clashing = ["1", 1, "true", True, "[1,2]", [1, 2], '"1"', "x"]
    for index, value in enumerate(clashing):
        ds.append(stream, value, at(index))
    for index, value in enumerate(["a", 2, "a"]):
        ds.append(stream, value, at(10 + index))
    ds.append(stream, "end", at(100))
    ds.downsample_streams(until=at(3600))
    text = datapoints_json(ds.get_data(stream, "10seconds", start=EVERYTHING).to_arrow())
    first, second = (json.loads(text)[i]["v"]["f"] for i in (0, 1))
    assert sum(first.values()) == len(clashing) and len(first) == len(clashing)
    assert first == {'"1"': 1, "1": 1, '"true"': 1, "true": 1, '"[1,2]"': 1, "[1,2]": 1,
                     '"\\"1\\""': 1, "x": 1}
    assert text.count(b'"x":1') == 1
    assert second == {"a": 2, "2": 1}


def test_high_accuracy_and_graph(ds):
    exact = ds.ensure_stream({"n": 3}, {}, ["mean", "sum"], "seconds",
                             value_type_options={"high_accuracy": True})
    for index in range(30):
        ds.append(exact, decimal.Decimal("2.718281828459045235360287") * index, at(index))
    ds.downsample_streams(until=at(3600))
    text = datapoints_json(ds.get_data(exact, "seconds", start=EVERYTHING).to_arrow())
    assert b'"v":2.718281828459045235360287}' in text  # the exact digits, as a JSON number
    check(ds.get_data(exact, "seconds", start=EVERYTHING))
    check(ds.get_data(exact, "10seconds", start=EVERYTHING))
    graph = ds.ensure_stream({"n": 4}, {}, ["count"], "seconds", value_type="graph")
    ds.append(graph, {"v": [{"i": "a"}, {"i": "b"}], "e": [{"f": "a", "t": "b"}]}, at(0))
    check(ds.get_data(graph, "seconds", start=EVERYTHING))
