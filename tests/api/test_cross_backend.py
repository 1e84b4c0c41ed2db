"""behaviour §9: results are identical across backends for the same appends.

One seeded random workload (numeric streams with nulls, ints and floats, a nominal stream, a
coarser stream, a derived sum and a derived derivative; irregular timestamps over two days with
a multi-hour gap; appended with ``append``, ``append_multiple`` and ``append_arrays`` in several
flushes, downsampled at increasing ``until`` in between) is replayed on DuckDB, MongoDB and
InfluxDB+PostgreSQL. Tags and every granularity of every stream must agree point by point,
floats included: the same kernels compute them.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

import datastream

from .helpers import ALL_VALUE_DOWNSAMPLERS, EVER, G

UTC = datetime.timezone.utc
BASE = datetime.datetime(2000, 1, 1, tzinfo=UTC)
BASE_US = int(BASE.timestamp()) * 1_000_000
NOW = datetime.datetime(2000, 1, 4, tzinfo=UTC)
SPAN = 2 * 86400  # seconds of data
GAP = (60_000, 75_000)  # a ~4 h hole with no datapoint on any stream
CHUNKS = 4
NOMINAL_VALUES: list[Any] = ["idle", "busy", 3, True, {"mode": "x"}, ["a", 1], None]
NOMINAL_DOWNSAMPLERS = ["count", "most_often", "least_often", "frequencies"]

STREAMS: dict[str, dict[str, Any]] = {
    "floats": {"value_downsamplers": ALL_VALUE_DOWNSAMPLERS},
    "ints": {"value_downsamplers": ALL_VALUE_DOWNSAMPLERS},
    "mixed": {"value_downsamplers": ["mean", "min", "max", "std_dev", "median"]},
    "coarse": {"value_downsamplers": ALL_VALUE_DOWNSAMPLERS, "highest_granularity": G.Minutes},
    "nominal": {"value_downsamplers": NOMINAL_DOWNSAMPLERS, "value_type": "nominal"},
}
DERIVED = ["total", "slope"]


def _at_us(offset_us: int) -> datetime.datetime:
    return BASE + datetime.timedelta(microseconds=int(offset_us))


def _seconds(rng: np.random.Generator, count: int) -> np.ndarray:
    """Distinct whole seconds in [0, SPAN) outside GAP, sorted."""
    pool = np.concatenate([np.arange(0, GAP[0]), np.arange(GAP[1], SPAN)])
    return np.sort(rng.choice(pool, size=count, replace=False))


def workload(seed: int = 20240611) -> dict[str, list[tuple[int, Any]]]:
    """Per stream name: (offset in µs from BASE, value), strictly increasing offsets."""
    rng = np.random.default_rng(seed)
    shared = _seconds(rng, 160)
    ints_only = _seconds(rng, 20)
    ints_seconds = np.union1d(rng.choice(shared, size=130, replace=False), ints_only)
    points: dict[str, list[tuple[int, Any]]] = {}

    offsets = shared * 1_000_000 + rng.integers(0, 1_000_000, size=len(shared))
    floats = rng.normal(50.0, 12.5, size=len(shared))
    floats[rng.random(len(shared)) < 0.1] = np.nan
    points["floats"] = [
        (int(t), None if np.isnan(v) else float(v)) for t, v in zip(offsets, floats)
    ]

    offsets = ints_seconds * 1_000_000 + rng.integers(0, 1_000_000, size=len(ints_seconds))
    ints = rng.integers(-1000, 1000, size=len(ints_seconds))
    points["ints"] = [(int(t), int(v)) for t, v in zip(offsets, ints)]

    seconds = _seconds(rng, 100)
    offsets = seconds * 1_000_000 + rng.integers(0, 1_000_000, size=len(seconds))
    mixed: list[tuple[int, Any]] = []
    for t, kind, number in zip(offsets, rng.integers(0, 3, size=len(seconds)),
                               rng.normal(0.0, 1e6, size=len(seconds))):
        value = None if kind == 0 else int(number) if kind == 1 else float(number)
        mixed.append((int(t), value))
    points["mixed"] = mixed

    seconds = _seconds(rng, 60)
    offsets = seconds * 1_000_000 + rng.integers(0, 1_000_000, size=len(seconds))
    coarse = rng.exponential(3.0, size=len(seconds)) * 1e-3
    points["coarse"] = [(int(t), float(v)) for t, v in zip(offsets, coarse)]

    seconds = _seconds(rng, 80)
    offsets = seconds * 1_000_000 + rng.integers(0, 1_000_000, size=len(seconds))
    choice = rng.integers(0, len(NOMINAL_VALUES), size=len(seconds))
    points["nominal"] = [(int(t), NOMINAL_VALUES[int(c)]) for t, c in zip(offsets, choice)]
    return points


def _create(ds: datastream.Datastream) -> dict[str, str]:
    ids = {}
    for name, options in STREAMS.items():
        ids[name] = ds.ensure_stream({"name": name}, {"unit": "u", "seed": [1, 2]}, **options)
    ids["total"] = ds.ensure_stream(
        {"name": "total"}, {}, ["mean", "min", "max", "count"],
        derive_from=[ids["floats"], ids["ints"]], derive_op="sum",
    )
    ids["slope"] = ds.ensure_stream(
        {"name": "slope"}, {}, ["mean", "sum", "count"],
        derive_from=ids["floats"], derive_op="derivative",
    )
    return ids


def _append_chunk(
    ds: datastream.Datastream, ids: dict[str, str], chunk: dict[str, list[tuple[int, Any]]],
    index: int,
) -> None:
    """Append one chunk, rotating the append method per stream and per chunk."""
    merged = []
    for position, (name, points) in enumerate(chunk.items()):
        if not points:
            continue
        method = (index + position) % 3
        if method == 2 and name in ("mixed",):
            method = 1  # append_arrays would turn its ints into floats
        if method == 0:
            for t, v in points:
                ds.append(ids[name], v, _at_us(t))
        elif method == 1:
            merged.extend(
                {"stream_id": ids[name], "value": v, "timestamp": _at_us(t)} for t, v in points
            )
        else:
            times = np.array([t for t, _ in points], dtype="int64") + BASE_US
            if name == "nominal":
                column: Any = [v for _, v in points]
            elif name == "ints":
                column = np.array([v for _, v in points], dtype="int64")
            else:
                column = np.array([np.nan if v is None else v for _, v in points], dtype="float64")
            assert ds.append_arrays(ids[name], times, column, unit="us") == len(points)
    if merged:
        ds.append_multiple(merged)


def run_workload(ds: datastream.Datastream) -> dict[str, str]:
    """Run the workload on ``ds``; return stream ids by name, found through their query tags."""
    _create(ds)
    data = workload()
    bounds = np.linspace(0, SPAN * 1_000_000, CHUNKS + 1).astype("int64")
    for index in range(CHUNKS):
        lo, hi = bounds[index], bounds[index + 1]
        chunk = {name: [p for p in points if lo <= p[0] < hi] for name, points in data.items()}
        _append_chunk(ds, ids_by_query(ds), chunk, index)
        ds.flush()
        if index % 2 == 1:
            ds.downsample_streams(until=_at_us(hi - 3_600_000_000))
        ds.downsample_streams(until=_at_us(hi - 1_234_567_890))
    ds.downsample_streams()  # until = the injected clock's now
    ds.flush()
    return ids_by_query(ds)


def ids_by_query(ds: datastream.Datastream) -> dict[str, str]:
    ids = {}
    for name in [*STREAMS, *DERIVED]:
        found = list(ds.find_streams({"name": name}))
        assert len(found) == 1, (name, found)
        ids[name] = found[0]["stream_id"]
    return ids


def _typed(value: Any) -> str:
    """An exact, key-order-independent rendering of ``value``: every float digit kept, 1 told
    from 1.0, datetimes shown with their timezone."""
    return repr(_canonical(value))


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return sorted((repr(key), _canonical(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    return value


def snapshot(ds: datastream.Datastream, ids: dict[str, str]) -> dict[str, Any]:
    """Everything a reader sees of every stream, with stream ids replaced by names."""
    names = {stream_id: name for name, stream_id in ids.items()}
    result: dict[str, Any] = {}
    for name, stream_id in ids.items():
        tags = dict(ds.get_tags(stream_id))
        del tags["stream_id"]
        if "derived_from" in tags:
            derived = dict(tags["derived_from"])
            derived["stream_ids"] = [names[s] for s in derived["stream_ids"]]
            tags["derived_from"] = derived
        if "contributes_to" in tags:
            tags["contributes_to"] = {
                names[s]: spec for s, spec in tags["contributes_to"].items()
            }
        levels = {}
        highest = tags["highest_granularity"]
        for granularity in G.values:
            if granularity <= highest:
                # the columnar export: every value exactly (1 told from 1.0 by type or by
                # canonical JSON), at a fraction of the cost of a dict per bucket
                levels[granularity.name] = ds.get_data(stream_id, granularity,
                                                       start=EVER).to_arrow()
        tags["highest_granularity"] = str(highest)
        result[name] = {"tags": _typed(tags), "levels": levels}
    return result


@contextlib.contextmanager
def _duckdb_factory() -> Iterator[Callable[[], Any]]:
    from datastream.backends import duckdb

    yield duckdb.Backend


def test_identical_results_on_every_backend(influx_servers) -> None:
    from tests.mongo_support import mongo_backend_factory
    from tests.servers import influx_backend_factory

    factories = {
        "duckdb": _duckdb_factory(),
        "mongodb": mongo_backend_factory(),
        "influxdb": influx_backend_factory(influx_servers),
    }
    snapshots = {}
    for backend_name, context in factories.items():
        with context as factory:
            ds = datastream.Datastream(factory(), clock=lambda: NOW)
            try:
                snapshots[backend_name] = snapshot(ds, run_workload(ds))
            finally:
                ds.close()

    reference = snapshots["duckdb"]
    # the workload must exercise what it claims to
    assert reference["floats"]["levels"]["seconds"].num_rows == 160
    assert any(v is None for _, v in workload()["mixed"])
    assert reference["total"]["levels"]["seconds"].num_rows > 0
    assert reference["slope"]["levels"]["seconds"].num_rows > 0
    assert reference["floats"]["levels"]["10seconds"].num_rows > 15_000  # empty buckets included
    for backend_name in ("mongodb", "influxdb"):
        other = snapshots[backend_name]
        assert other.keys() == reference.keys()
        for name in reference:
            assert other[name]["tags"] == reference[name]["tags"], (backend_name, name)
            for level, points in reference[name]["levels"].items():
                theirs = other[name]["levels"][level]
                assert theirs.schema == points.schema, (backend_name, name, level)
                assert len(theirs) == len(points), (backend_name, name, level)
                if not theirs.equals(points):
                    for index, (mine, their) in enumerate(zip(points.to_pylist(),
                                                              theirs.to_pylist())):
                        assert _typed(their) == _typed(mine), (backend_name, name, level, index)
