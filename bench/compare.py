"""One run, one data set, every peer side by side: ingest + all six levels, on one thread.

    PYTHONPATH=. .venv/bin/python bench/compare.py [--quick] [--kinds sensor,walk]
        [--systems all] [--streams 10] [--points 1000000] [--repeats 1] [--targets]
        [--json results.json]

Every system gets the same seeded arrays (µs epoch timestamps, float64 values) and does the same
task: keep the raw points (durably, where the system stores) and produce the 10 s, 1 min, 10 min,
1 h, 6 h and 1 day levels with count, sum, sum of squares, min, max, mean and population std.
datastream also computes its eight time statistics, which it always does. Per system and data
kind it prints seconds, M points/s, bytes/point on disk (raw + every level, measured after
close/checkpoint/flush) and the rate relative to datastream on its DuckDB file.

Only the public datastream API is used, so the script keeps working while storage and engine
change underneath. A system that cannot run here (missing binary or package) is reported as
skipped, one that breaks as failed; neither stops the run. A wrong answer does: the day-level
mean of stream 0 of every datastream variant must agree with polars to 1e-9 relative.
``--targets`` adds the micro targets of the speed project (append per point, raw iteration,
to_arrow, a stream-day read, import time, cold numba cache, peak RSS while ingesting).
"""

from __future__ import annotations

import os

# One thread everywhere. Must be set before numba, polars, pyarrow or a server is started.
THREAD_VARIABLES = (
    "POLARS_MAX_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS", "GOMAXPROCS", "BLOSC_NTHREADS",
)
for _variable in THREAD_VARIABLES:
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import hashlib  # noqa: E402
import http.client  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import urllib.parse  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

pa.set_cpu_count(1)
pa.set_io_thread_count(1)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository
UTC = datetime.timezone.utc
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)
START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
SECOND_US = 1_000_000
DAY_US = 86_400 * SECOND_US
JITTER_US = 50_000  # ±50 ms around each whole second: ~1 Hz, never out of order (--jitter-us)
LEVELS = (
    ("10seconds", 10), ("minutes", 60), ("10minutes", 600), ("hours", 3600),
    ("6hours", 21600), ("days", 86400),
)
VALUE_NAMES = ["count", "sum", "sum_squares", "min", "max", "mean", "std_dev"]
KINDS = ("sensor", "walk")
SYSTEMS = (
    "datastream", "datastream-auto", "duckdb", "polars", "pandas", "influxdb",
    "datastream-influxdb", "datastream-mongomock",
)
WORK = {
    "datastream": "ensure_stream ×N, append_arrays(unit='us') per stream, flush, "
                  "downsample_streams(until=end), close (DuckDB file)",
    "datastream-auto": "the same with Datastream(..., auto_downsample=True): levels close "
                       "during flush; downsample_streams(until=end) then finds the rest",
    "duckdb": "Arrow table → CREATE TABLE raw in a file, one INSERT…SELECT time_bucket(…) "
              "GROUP BY stream per level, CHECKPOINT, close",
    "polars": "group_by_dynamic(every=level, group_by='stream').agg(...) per level, compute only",
    "pandas": "per stream resample(level).agg(...) + std(ddof=0), compute only",
    "influxdb": "InfluxDB 1.x alone: line protocol POSTs (precision=u), one SELECT … INTO … "
                "GROUP BY time(level), stream per level, bounded in time",
    "datastream-influxdb": "datastream on its InfluxDB + PostgreSQL backend, same calls as "
                           "'datastream'",
    "datastream-mongomock": "datastream on its MongoDB backend over mongomock (codec and "
                            "engine cost; mongomock stands in for a server)",
}
COMPUTE_ONLY = {"polars", "pandas"}
CHECK_RTOL = 1e-9
INFLUX_CHUNK = 100_000  # lines per POST (~4 MB, below the 25 MB body limit)
# Shorter cold durations than the defaults (10 min / 4 h) so that InfluxDB moves its WAL into
# compacted TSM files soon after the work and the size on disk is that of the settled store.
INFLUX_ENVIRONMENT = {
    "GOMAXPROCS": "1",
    "INFLUXDB_DATA_CACHE_SNAPSHOT_WRITE_COLD_DURATION": "1s",
    "INFLUXDB_DATA_COMPACT_FULL_WRITE_COLD_DURATION": "2s",
    "INFLUXDB_HTTP_MAX_ROW_LIMIT": "0",
    "INFLUXDB_COORDINATOR_QUERY_TIMEOUT": "0s",
}


class Skip(Exception):
    """A system cannot run on this machine (missing binary or package): reported, not fatal."""


# -- data ---------------------------------------------------------------------------------------


def stream_arrays(kind: str, seed: int, index: int, points: int) -> tuple[np.ndarray, np.ndarray]:
    """One stream of ~1 Hz jittered µs timestamps from 2026-01-01 and float64 values.

    sensor: round(20 + 5 sin(t/3600 + phase) + noise, 2), i.e. quantised to 0.01 like most
    telemetry (compresses well); walk: a full-entropy float random walk (compresses badly).
    Each stream has its own generator, so any stream can be rebuilt alone.
    """
    rng = np.random.default_rng([seed, KINDS.index(kind), index])
    t = START_US + np.arange(points, dtype=np.int64) * SECOND_US
    t += rng.integers(-JITTER_US, JITTER_US + 1, points, dtype=np.int64)
    t[0] = max(t[0], START_US)
    if kind == "sensor":
        seconds = (t - START_US) / SECOND_US
        values = 20 + 5 * np.sin(seconds / 3600 + index) + rng.normal(0, 0.3, points)
        return t, np.round(values, 2)
    return t, 100 + np.cumsum(rng.normal(0, 1, points))


@dataclasses.dataclass
class Dataset:
    kind: str
    streams: list[tuple[np.ndarray, np.ndarray]]

    @property
    def total(self) -> int:
        return sum(len(t) for t, _ in self.streams)

    @property
    def first_us(self) -> int:
        return min(int(t[0]) for t, _ in self.streams)

    @property
    def last_us(self) -> int:
        return max(int(t[-1]) for t, _ in self.streams)

    @property
    def until(self) -> datetime.datetime:
        """Exclusive end of the data: every bucket the data closes can be downsampled."""
        return to_datetime(self.last_us + 1)

    def head(self, streams: int, points: int) -> Dataset:
        return Dataset(self.kind, [(t[:points], v[:points]) for t, v in self.streams[:streams]])


def make_dataset(kind: str, streams: int, points: int, seed: int) -> Dataset:
    return Dataset(kind, [stream_arrays(kind, seed, n, points) for n in range(streams)])


def to_datetime(us: int) -> datetime.datetime:
    return EPOCH + datetime.timedelta(microseconds=int(us))


def column_us(column: Any) -> np.ndarray:
    """A timestamp column (Arrow, polars or numpy, any unit, with or without zone) as µs."""
    if hasattr(column, "to_numpy"):
        column = column.to_numpy()
    return np.asarray(column).astype("datetime64[us]").view(np.int64)


# -- results ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Measurement:
    """What one repeat of one system produced."""

    seconds: float
    phases: dict[str, float]
    bytes: int | None = None
    bytes_detail: dict[str, Any] = dataclasses.field(default_factory=dict)
    # bucket start µs → mean of stream 0 at the checked level (1 d; 10 min on mongomock)
    day_means: dict[int, float] | None = None
    note: str = ""


@dataclasses.dataclass
class Row:
    """One system on one data kind, over all repeats (the best counts)."""

    system: str
    kind: str
    points: int
    status: str = "ok"  # ok | skipped | failed
    reason: str = ""
    seconds: list[float] = dataclasses.field(default_factory=list)
    phases: list[dict[str, float]] = dataclasses.field(default_factory=list)
    bytes: int | None = None
    bytes_detail: dict[str, Any] = dataclasses.field(default_factory=dict)
    check: str = ""
    check_ok: bool | None = None
    note: str = ""
    ratio: float | None = None

    @property
    def best(self) -> float | None:
        return min(self.seconds) if self.seconds else None

    @property
    def rate(self) -> float | None:
        return self.points / self.best if self.best else None

    def record(self, measurement: Measurement) -> None:
        self.seconds.append(measurement.seconds)
        self.phases.append(measurement.phases)
        if measurement.bytes is not None:
            self.bytes, self.bytes_detail = measurement.bytes, measurement.bytes_detail
        if measurement.note and measurement.note not in self.note:
            self.note = "; ".join(x for x in (self.note, measurement.note) if x)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(best_seconds=self.best, points_per_second=self.rate,
                   bytes_per_point=self.bytes / self.points if self.bytes else None,
                   work=WORK.get(self.system, ""))
        return out


def attempt(row: Row, run: Callable[[], Measurement | None]) -> Measurement | None:
    """Run one repeat of a system; a Skip or any error is recorded on the row, never raised."""
    if row.status != "ok":
        return None
    try:
        measurement = run()
    except Skip as reason:
        row.status, row.reason = "skipped", str(reason)
        return None
    except Exception as error:
        row.status, row.reason = "failed", f"{type(error).__name__}: {error}"
        print(f"[{row.system}/{row.kind}] failed:", file=sys.stderr)
        traceback.print_exc()
        return None
    if measurement is not None:
        row.record(measurement)
    return measurement


class Clock:
    """Phase timer: ``lap(name)`` records the time since the previous lap."""

    def __init__(self) -> None:
        self.began = self.last = time.perf_counter()
        self.phases: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = self.phases.get(name, 0.0) + now - self.last
        self.last = now

    @property
    def total(self) -> float:
        return self.last - self.began


def file_bytes(path: str) -> int:
    """Bytes a file occupies: its length, less any sparse holes (InfluxDB preallocates its
    series files sparsely; counting their length would charge it 32 MB it does not use)."""
    try:
        info = os.stat(path)
    except OSError:  # removed meanwhile (a compaction)
        return 0
    return min(info.st_size, info.st_blocks * 512)


def disk_bytes(*paths: str) -> int:
    """Bytes of files and directory trees (missing paths count 0)."""
    total = 0
    for path in paths:
        if os.path.isfile(path):
            total += file_bytes(path)
        for root, _, files in os.walk(path):
            total += sum(file_bytes(os.path.join(root, name)) for name in files)
    return total


def duckdb_file_bytes(path: str) -> int:
    return disk_bytes(path, path + ".wal")


# -- datastream (public API only) ---------------------------------------------------------------


def duckdb_backend(path: str) -> Any:
    """Our embedded backend on ``path`` with DuckDB on one thread, if the backend allows it."""
    from datastream.backends import duckdb as backend

    try:
        return backend.Backend(path, threads=1)
    except TypeError:
        return backend.Backend(path)


def datastream_task(ds: Any, data: Dataset, clock: Clock,
                    names: list[str] = VALUE_NAMES) -> list[str]:
    """The task through the public API; the phases go to ``clock``."""
    ids = [ds.ensure_stream({"bench": "compare", "n": n}, {}, names, "seconds")
           for n in range(len(data.streams))]
    for stream_id, (t, v) in zip(ids, data.streams):
        ds.append_arrays(stream_id, t, v, unit="us")
    ds.flush()
    clock.lap("append+flush")
    ds.downsample_streams(until=data.until)
    clock.lap("downsample")
    return ids


def datastream_means(ds: Any, stream_id: str, level: str = "days") -> dict[int, float]:
    """Bucket start (µs) → mean of one stream's level: what the check compares."""
    table = ds.get_data(stream_id, level, start=datetime.datetime.min).to_arrow()
    return dict(zip(column_us(table.column("t")).tolist(), table.column("mean").to_pylist()))


def warm_kernels() -> None:
    """Compile or load the numba kernels outside every timing."""
    import datastream
    from datastream.kernels import jit

    data = make_dataset("sensor", 1, 30_000, 99)
    fallback, jit.FALLBACK = jit.FALLBACK, False  # the codec's kernels too, not their references
    try:
        with datastream.Datastream() as ds:
            datastream_task(ds, data, Clock())
    finally:
        jit.FALLBACK = fallback


def run_datastream(data: Dataset, work: str, auto: bool) -> Measurement:
    import datastream

    path = os.path.join(work, "datastream.duckdb")
    clock = Clock()
    ds = datastream.Datastream(duckdb_backend(path), auto_downsample=auto)
    try:
        ids = datastream_task(ds, data, clock)
    finally:
        ds.close()
    clock.lap("close")
    size = duckdb_file_bytes(path)
    with datastream.Datastream(duckdb_backend(path)) as ds:
        means = datastream_means(ds, ids[0])
    return Measurement(clock.total, clock.phases, size, {"file": size}, means)


# -- DuckDB alone -------------------------------------------------------------------------------


def arrow_points(data: Dataset) -> pa.Table:
    """All streams as one Arrow table (stream, t timestamp[us], v): DuckDB's native input."""
    return pa.table({
        "stream": np.concatenate([np.full(len(t), n, np.int32)
                                  for n, (t, _) in enumerate(data.streams)]),
        "t": pa.array(np.concatenate([t for t, _ in data.streams]), pa.timestamp("us")),
        "v": np.concatenate([v for _, v in data.streams]),
    })


def duckdb_level_sql(name: str, width: int) -> str:
    return (
        f"INSERT INTO level_{name} SELECT stream, time_bucket(INTERVAL '{width} seconds', t) AS b,"
        " count(v), sum(v), sum(v * v), min(v), max(v), avg(v), stddev_pop(v)"
        " FROM raw GROUP BY stream, b"
    )


def run_duckdb(table: pa.Table, work: str) -> Measurement:
    import duckdb

    path = os.path.join(work, "peer.duckdb")
    clock = Clock()
    con = duckdb.connect(path, config={"threads": 1})
    try:
        con.register("points", table)
        con.execute("CREATE TABLE raw AS SELECT * FROM points")
        con.unregister("points")
        clock.lap("load")
        for name, width in LEVELS:
            con.execute(
                f"CREATE TABLE level_{name} (stream INTEGER, t TIMESTAMP, count BIGINT, sum DOUBLE,"
                " sum_squares DOUBLE, min DOUBLE, max DOUBLE, mean DOUBLE, std_dev DOUBLE)"
            )
            con.execute(duckdb_level_sql(name, width))
        clock.lap("levels")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    clock.lap("close")
    size = duckdb_file_bytes(path)
    con = duckdb.connect(path, read_only=True)
    try:
        rows = con.execute(
            "SELECT epoch_us(t), mean FROM level_days WHERE stream = 0 ORDER BY t"
        ).fetchall()
    finally:
        con.close()
    return Measurement(clock.total, clock.phases, size, {"file": size}, dict(rows))


# -- polars and pandas (compute only) -----------------------------------------------------------


def polars_frame(data: Dataset) -> Any:
    import polars as pl

    return pl.DataFrame({
        "stream": np.concatenate([np.full(len(t), n, np.int32)
                                  for n, (t, _) in enumerate(data.streams)]),
        "t": pl.Series(np.concatenate([t for t, _ in data.streams])).cast(pl.Datetime("us")),
        "v": np.concatenate([v for _, v in data.streams]),
    })


def polars_levels(frame: Any, widths: tuple[int, ...]) -> list[Any]:
    import polars as pl

    v = pl.col("v")
    aggregates = [
        v.count().alias("count"), v.sum().alias("sum"), (v * v).sum().alias("sum_squares"),
        v.min().alias("min"), v.max().alias("max"), v.mean().alias("mean"),
        v.std(ddof=0).alias("std_dev"),
    ]
    return [frame.group_by_dynamic("t", every=f"{width}s", group_by="stream").agg(aggregates)
            for width in widths]


def polars_means(level: Any) -> dict[int, float]:
    import polars as pl

    day = level.filter(pl.col("stream") == 0).sort("t")
    return dict(zip(column_us(day["t"]).tolist(), day["mean"].to_list()))


def run_polars(frame: Any) -> Measurement:
    clock = Clock()
    levels = polars_levels(frame, tuple(width for _, width in LEVELS))
    clock.lap("levels")
    return Measurement(clock.total, clock.phases, day_means=polars_means(levels[-1]))


def pandas_frames(data: Dataset) -> list[Any]:
    import pandas as pd

    return [pd.DataFrame({"v": v}, index=pd.to_datetime(t, unit="us")) for t, v in data.streams]


def run_pandas(frames: list[Any]) -> Measurement:
    clock = Clock()
    day = None
    for frame in frames:
        frame = frame.assign(v2=frame["v"] * frame["v"])
        for _, width in LEVELS:
            resampled = frame.resample(f"{width}s")
            out = resampled.agg(count=("v", "count"), sum=("v", "sum"), sum_squares=("v2", "sum"),
                                min=("v", "min"), max=("v", "max"), mean=("v", "mean"))
            out["std_dev"] = resampled["v"].std(ddof=0)
            if day is None and width == LEVELS[-1][1]:
                day = out
    clock.lap("levels")
    means = dict(zip(column_us(day.index).tolist(), day["mean"].tolist()))
    return Measurement(clock.total, clock.phases, day_means=means)


# -- reference and check ------------------------------------------------------------------------


def reference_means(data: Dataset, width: int = 86400) -> dict[int, float]:
    """Means of stream 0 at one level by polars, the yardstick of every check."""
    frame = polars_frame(data.head(1, len(data.streams[0][0])))
    return polars_means(polars_levels(frame, (width,))[0])


def check_means(row: Row, means: dict[int, float] | None, reference: dict[int, float],
                unit: str = "d") -> None:
    """Compare the means a system produced (its closed buckets) with polars'."""
    if means is None:
        return
    common = sorted(set(means) & set(reference))
    if not common:
        row.check, row.check_ok = "check n/a (no closed bucket)", None
        return
    ours = np.array([means[t] for t in common], dtype=float)
    theirs = np.array([reference[t] for t in common], dtype=float)
    error = float(np.max(np.abs(ours - theirs) / np.abs(theirs)))
    row.check_ok = bool(error <= CHECK_RTOL)
    row.check = (f"mean {'ok' if row.check_ok else 'MISMATCH'} ({len(common)} {unit}, "
                 f"rel {error:.0e})")


# -- InfluxDB -----------------------------------------------------------------------------------


class InfluxHTTP:
    """InfluxDB 1.x over one keep-alive HTTP connection; errors raise."""

    def __init__(self, host: str, port: int) -> None:
        self.connection = http.client.HTTPConnection(host, port, timeout=3600)

    def _request(self, path: str, body: bytes | memoryview, content_type: str) -> bytes:
        self.connection.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = self.connection.getresponse()
        payload = response.read()
        if response.status >= 300:
            raise RuntimeError(f"InfluxDB {path.split('?')[0]}: {response.status} {payload[:300]}")
        return payload

    def query(self, text: str, database: str | None = None) -> list[dict[str, Any]]:
        form = {"q": text, "epoch": "u", **({"db": database} if database else {})}
        payload = self._request("/query", urllib.parse.urlencode(form).encode(),
                                "application/x-www-form-urlencoded")
        results = json.loads(payload)["results"]
        for result in results:
            if "error" in result:
                raise RuntimeError(f"InfluxQL error: {result['error']} in {text!r}")
        return results

    def write(self, database: str, lines: bytes | memoryview) -> None:
        self._request(f"/write?db={urllib.parse.quote(database)}&precision=u", lines,
                      "text/plain; charset=utf-8")

    def close(self) -> None:
        self.connection.close()


def line_protocol(stream: int, t: np.ndarray, v: np.ndarray) -> memoryview:
    """``raw,stream=N v=<float> <µs>\\n`` per point, built by Arrow kernels (no Python loop)."""
    lines = pc.binary_join_element_wise(
        f"raw,stream={stream} v=", pc.cast(pa.array(v), pa.string()), " ",
        pc.cast(pa.array(t), pa.string()), "\n", "",
    )
    offsets = np.frombuffer(lines.buffers()[1], np.int32)
    start, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
    return memoryview(lines.buffers()[2])[start:end]


def day_bounds(data: Dataset) -> tuple[int, int]:
    """Whole days around the data: the time bound every GROUP BY time() needs."""
    return data.first_us // DAY_US * DAY_US, (data.last_us // DAY_US + 1) * DAY_US


def influx_level_query(database: str, name: str, width: int, bounds: tuple[int, int]) -> str:
    """One level from raw. InfluxQL has no sum(v*v): the sum of squares and the population
    std come from count, mean and the sample stddev, as arithmetic on the aggregates."""
    variance_sum = "stddev(v) * stddev(v) * (count(v) - 1)"
    return (
        f'SELECT count(v) AS "count", sum(v) AS "sum", '
        f'{variance_sum} + count(v) * mean(v) * mean(v) AS "sum_squares", '
        f'min(v) AS "min", max(v) AS "max", mean(v) AS "mean", '
        f'sqrt({variance_sum} / count(v)) AS "std_dev" '
        f'INTO "{database}"."autogen"."level_{name}" FROM "{database}"."autogen"."raw" '
        f"WHERE time >= {bounds[0]}u AND time < {bounds[1]}u "
        f"GROUP BY time({width}s), stream fill(none)"
    )


def run_influx_alone(http_client: InfluxHTTP, database: str, data: Dataset) -> Measurement:
    clock = Clock()
    http_client.query(f'CREATE DATABASE "{database}"')
    for n, (t, v) in enumerate(data.streams):
        for start in range(0, len(t), INFLUX_CHUNK):
            body = line_protocol(n, t[start:start + INFLUX_CHUNK], v[start:start + INFLUX_CHUNK])
            clock.lap("encode")
            http_client.write(database, body)
            clock.lap("write")
    bounds = day_bounds(data)
    for name, width in LEVELS:
        http_client.query(influx_level_query(database, name, width, bounds))
    clock.lap("levels")
    result = http_client.query(
        f'SELECT "mean" FROM "level_days" WHERE stream = \'0\' '
        f"AND time >= {bounds[0]}u AND time < {bounds[1]}u", database)
    series = result[0].get("series", [])
    means = {int(t): float(m) for t, m in series[0]["values"]} if series else {}
    return Measurement(clock.total, clock.phases, day_means=means)


def influx_settle(directory: str, database: str, timeout: float) -> tuple[int, dict[str, Any]]:
    """Wait until InfluxDB has moved the database's WAL into TSM files and stopped compacting
    (sizes unchanged for 1.5 s), then return its bytes on disk (data + wal)."""
    data_dir = os.path.join(directory, "data", database)
    wal_dir = os.path.join(directory, "wal", database)
    began = time.monotonic()
    previous, stable = None, 0
    while time.monotonic() - began < timeout:
        sizes = (disk_bytes(data_dir), disk_bytes(wal_dir))
        compacting = any(f.endswith(".tmp") for _, _, files in os.walk(data_dir) for f in files)
        stable = stable + 1 if sizes == previous and not compacting else 0
        previous = sizes
        if stable >= 3 and sizes[1] < 1 << 20:
            break
        time.sleep(0.5)
    data_bytes, wal_bytes = disk_bytes(data_dir), disk_bytes(wal_dir)
    return data_bytes + wal_bytes, {
        "data": data_bytes, "wal": wal_bytes, "settle_s": round(time.monotonic() - began, 1),
        "settled": stable >= 3,
    }


def pg_bytes(postgres: Any, database: str) -> int:
    """Bytes of every user table (with its indexes and TOAST) of a PostgreSQL database."""
    import psycopg2

    con = psycopg2.connect(connect_timeout=5, **postgres.connection(database))
    try:
        with con.cursor() as cur:
            cur.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm')"
                " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
                " AND n.nspname NOT LIKE 'pg_toast%'"
            )
            return int(cur.fetchone()[0])
    finally:
        con.close()


def ours_on_influx(server: Any, postgres: Any, database: str) -> Any:
    import datastream
    from datastream.backends import influxdb

    backend = influxdb.Backend(
        {"host": server.host, "port": server.port, "database": database, "timeout": 3600},
        postgres.connection(database),
    )
    return datastream.Datastream(backend)


def run_influx_ours(server: Any, postgres: Any, database: str, data: Dataset,
                    keep: dict[str, Any]) -> Measurement:
    postgres.execute(f"CREATE DATABASE {database}")
    clock = Clock()
    ds = ours_on_influx(server, postgres, database)
    try:
        keep["ids"] = datastream_task(ds, data, clock)
    finally:
        ds.close()
    clock.lap("close")
    with contextlib.closing(ours_on_influx(server, postgres, database)) as ds:
        means = datastream_means(ds, keep["ids"][0])
    return Measurement(clock.total, clock.phases, day_means=means)


def influx_reads(server: Any, postgres: Any, alone: str, ours: str, stream_id: str,
                 data: Dataset, points: int, repeats: int) -> dict[str, Any]:
    """The first ``points`` raw points of stream 0: our backend (Arrow and dicts) beside the
    plain influxdb client reading InfluxDB alone's copy of the same points."""
    from influxdb import InfluxDBClient

    t = data.streams[0][0]
    points = min(points, len(t))
    low, high = int(t[0]), int(t[points - 1]) + 1
    client = InfluxDBClient(server.host, server.port, database=alone, timeout=3600)
    query = f"SELECT v FROM raw WHERE stream = '0' AND time >= {low}u AND time < {high}u"
    figures: dict[str, list[float]] = {"plain client": [], "ours to_arrow": [],
                                       "ours dicts": []}
    counts: dict[str, int] = {}
    with contextlib.closing(ours_on_influx(server, postgres, ours)) as ds:
        for _ in range(repeats):
            began = time.perf_counter()
            counts["plain client"] = len(list(client.query(query, epoch="u").get_points()))
            figures["plain client"].append(time.perf_counter() - began)
            began = time.perf_counter()
            result = ds.get_data(stream_id, "seconds", start=to_datetime(low),
                                 end_exclusive=to_datetime(high))
            counts["ours to_arrow"] = result.to_arrow().num_rows
            figures["ours to_arrow"].append(time.perf_counter() - began)
            began = time.perf_counter()
            result = ds.get_data(stream_id, "seconds", start=to_datetime(low),
                                 end_exclusive=to_datetime(high))
            counts["ours dicts"] = sum(1 for _ in result)
            figures["ours dicts"].append(time.perf_counter() - began)
    client.close()
    return {"kind": data.kind, "points": points, "seconds": figures, "counts": counts,
            "best": {name: min(values) for name, values in figures.items()}}


def skip_rows(rows: dict[str, Row], names: list[str], reason: str) -> None:
    for name in names:
        if name in rows:
            rows[name].status, rows[name].reason = "skipped", reason


def influx_block(data: Dataset, rows: dict[str, Row], args: Any,
                 reads: list[dict[str, Any]]) -> dict[str, dict[int, float] | None]:
    """InfluxDB alone and our InfluxDB backend on one fresh influxd (plus PostgreSQL for ours),
    stopped at the end whatever happens. Returns the day means to check."""
    names = [name for name in ("influxdb", "datastream-influxdb") if name in rows]
    checked: dict[str, dict[int, float] | None] = {}
    try:
        sys.path.insert(0, ROOT)
        from tests.servers import InfluxServer, ServerUnavailable, postgres_server
    except ImportError as error:
        skip_rows(rows, names, f"cannot import tests.servers: {error}")
        return checked
    if shutil.which(os.environ.get("DATASTREAM_INFLUXD", "influxd")) is None:
        skip_rows(rows, names, "influxd not found (apt-get install influxdb)")
        return checked
    os.environ.update(INFLUX_ENVIRONMENT)  # read by influxd only
    directory = tempfile.mkdtemp(prefix="compare-influx-")
    server = InfluxServer(directory)
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, directory, ignore_errors=True)
        stack.callback(server.stop)
        try:
            server.start()
        except ServerUnavailable as error:
            skip_rows(rows, names, str(error).splitlines()[0])
            return checked
        postgres = None
        if "datastream-influxdb" in rows:
            try:
                postgres = stack.enter_context(postgres_server())
            except ServerUnavailable as error:
                skip_rows(rows, ["datastream-influxdb"], str(error).splitlines()[0])
        http_client = InfluxHTTP(server.host, server.port)
        stack.callback(http_client.close)
        alone = rows.get("influxdb")
        ours = rows.get("datastream-influxdb") if postgres is not None else None
        alone_db = ours_db = stream_id = None
        for repeat in range(args.repeats):
            if alone is not None:
                alone_db = f"alone_{data.kind}_{repeat}"
                measured = attempt(alone, lambda db=alone_db: run_influx_alone(
                    http_client, db, data))
                if measured is not None:
                    alone.bytes, alone.bytes_detail = influx_settle(directory, alone_db,
                                                                    args.influx_settle)
                    checked["influxdb"] = measured.day_means
            if ours is not None:
                ours_db = f"ours_{data.kind}_{repeat}"
                keep: dict[str, Any] = {}
                measured = attempt(ours, lambda db=ours_db, keep=keep: run_influx_ours(
                    server, postgres, db, data, keep))
                if measured is not None:
                    size, detail = influx_settle(directory, ours_db, args.influx_settle)
                    detail["postgresql"] = pg_bytes(postgres, ours_db)
                    ours.bytes, ours.bytes_detail = size + detail["postgresql"], detail
                    checked["datastream-influxdb"] = measured.day_means
                    stream_id = keep["ids"][0]
        if alone is not None and ours is not None and alone.status == ours.status == "ok":
            try:
                reads.append(influx_reads(server, postgres, alone_db, ours_db, stream_id, data,
                                          args.read_points, args.repeats))
            except Exception as error:
                traceback.print_exc()
                reads.append({"kind": data.kind, "error": f"{type(error).__name__}: {error}"})
    return checked


# -- MongoDB on mongomock -----------------------------------------------------------------------


def bson_bytes(database: Any) -> tuple[int | None, dict[str, Any]]:
    """BSON size of every document of every collection (what a server would store before its
    own compression); None if a document cannot be encoded."""
    try:
        import bson

        sizes = {name: sum(len(bson.encode(doc)) for doc in database[name].find({}))
                 for name in database.list_collection_names()}
    except Exception as error:
        return None, {"error": f"{type(error).__name__}: {error}"}
    return sum(sizes.values()), sizes


def run_mongomock(data: Dataset) -> Measurement:
    try:
        import mongomock

        import datastream
        from datastream.backends import mongodb
    except ImportError as error:
        raise Skip(f"needs mongomock and pymongo: {error}") from None
    client = mongomock.MongoClient()
    clock = Clock()
    ds = datastream.Datastream(mongodb.Backend("compare", client=client))
    try:
        ids = datastream_task(ds, data, clock)
    finally:
        ds.close()
    clock.lap("close")
    size, detail = bson_bytes(client["compare"])
    with datastream.Datastream(mongodb.Backend("compare", client=client)) as ds:
        means = datastream_means(ds, ids[0], "10minutes")
    return Measurement(clock.total, clock.phases, size, {"bson": detail}, means,
                       note="B/pt = BSON size of the documents")


# -- one data kind ------------------------------------------------------------------------------


def run_kind(kind: str, args: Any, wanted: set[str], reads: list[dict[str, Any]]) -> list[Row]:
    """Every selected system on one data kind; rows in SYSTEMS order."""
    data = make_dataset(kind, args.streams, args.points, args.seed)
    rows = {name: Row(name, kind, data.total) for name in SYSTEMS if name in wanted}
    mongo_data = data.head(1, args.mongo_points)
    if "datastream-mongomock" in rows:
        rows["datastream-mongomock"].points = mongo_data.total
        rows["datastream-mongomock"].note = (
            "stream 0 only: mongomock scans a collection per insert (quadratic)")
    native: dict[str, Any] = {}
    for name, build in (("duckdb", arrow_points), ("polars", polars_frame),
                        ("pandas", pandas_frames)):
        if name in rows:
            try:
                native[name] = build(data)  # each tool's native form, outside the timing
            except ImportError as error:
                skip_rows(rows, [name], f"not installed: {error}")
    runs: dict[str, Callable[[str], Measurement]] = {
        "datastream": lambda work: run_datastream(data, work, False),
        "datastream-auto": lambda work: run_datastream(data, work, True),
        "duckdb": lambda work: run_duckdb(native["duckdb"], work),
        "polars": lambda work: run_polars(native["polars"]),
        "pandas": lambda work: run_pandas(native["pandas"]),
        "datastream-mongomock": lambda work: run_mongomock(mongo_data),
    }
    checked: dict[str, dict[int, float] | None] = {}
    for _ in range(args.repeats):
        for name in rows.keys() & runs.keys():
            with tempfile.TemporaryDirectory(prefix="compare-") as work:
                measured = attempt(rows[name], lambda run=runs[name], work=work: run(work))
            if measured is not None:
                checked[name] = measured.day_means
    native.clear()
    if rows.keys() & {"influxdb", "datastream-influxdb"}:
        checked.update(influx_block(data, rows, args, reads))
    try:
        reference = reference_means(data)
        for name, means in checked.items():
            if name == "datastream-mongomock":
                check_means(rows[name], means, reference_means(mongo_data, 600), "× 10 min")
            else:
                check_means(rows[name], means, reference)
    except ImportError:
        for name in checked:
            rows[name].check = "check n/a (polars missing)"
    base = rows.get("datastream")
    for row in rows.values():
        if base is not None and base.rate and row.rate:
            row.ratio = row.rate / base.rate
    return list(rows.values())


# -- micro targets ------------------------------------------------------------------------------


def median_time(repeats: int, func: Callable[[], Any]) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        func()
        times.append(time.perf_counter() - began)
    return statistics.median(times), times


def target_append(points: int, work: str) -> dict[str, Any]:
    """append() one point at a time: a plain float and an aware datetime."""
    import datastream

    t, v = stream_arrays("sensor", 7, 0, points)
    stamps = [to_datetime(us) for us in t.tolist()]
    values = v.tolist()
    path = os.path.join(work, "append.duckdb")
    with datastream.Datastream(duckdb_backend(path)) as ds:
        stream_id = ds.ensure_stream({"bench": "append"}, {}, ["mean", "min", "max"], "seconds")
        began = time.perf_counter()
        for value, stamp in zip(values, stamps):
            ds.append(stream_id, value, stamp)
        appended = time.perf_counter() - began
        ds.flush()
        flushed = time.perf_counter() - began
    return {"points": points, "append_s": appended, "points_per_s": points / appended,
            "with_flush_s": flushed, "points_per_s_with_flush": points / flushed}


LEAN_NAMES = ["mean", "min", "max"]


def target_bytes(args: Any, work: str) -> dict[str, Any]:
    """Bytes per point on disk, raw + all six levels, of streams keeping mean, min and max (the
    ingest table's streams keep all seven aggregates): each kind at the run's jitter and at a
    regular 1 Hz cadence, the same task and file measure as the ingest table."""
    global JITTER_US
    import datastream

    out: dict[str, Any] = {"names": LEAN_NAMES, "points": args.streams * args.points}
    jitter = JITTER_US
    try:
        for spread in dict.fromkeys((jitter, 0)):
            JITTER_US = spread
            for kind in KINDS:
                data = make_dataset(kind, args.streams, args.points, args.seed)
                path = os.path.join(work, f"bytes-{kind}-{spread}.duckdb")
                with datastream.Datastream(duckdb_backend(path)) as ds:
                    datastream_task(ds, data, Clock(), LEAN_NAMES)
                out[f"{kind}_jitter_{spread}"] = duckdb_file_bytes(path) / data.total
                os.remove(path)
    finally:
        JITTER_US = jitter
    return out


def target_raw_reads(points: int, repeats: int, work: str) -> dict[str, Any]:
    """Raw points of one stream from a freshly reopened file: to_arrow() and dict iteration
    (opening the file is timed apart)."""
    import datastream

    t, v = stream_arrays("sensor", 7, 1, points)
    path = os.path.join(work, "raw.duckdb")
    with datastream.Datastream(duckdb_backend(path)) as ds:
        stream_id = ds.ensure_stream({"bench": "raw"}, {}, ["mean"], "seconds")
        ds.append_arrays(stream_id, t, v, unit="us")
    figures: dict[str, list[float]] = {"open": [], "to_arrow": [], "dicts": []}
    for how in ["to_arrow"] * repeats + ["dicts"] * max(1, repeats // 2):
        began = time.perf_counter()
        with datastream.Datastream(duckdb_backend(path)) as ds:
            opened = time.perf_counter()
            result = ds.get_data(stream_id, "seconds", start=datetime.datetime.min)
            count = result.to_arrow().num_rows if how == "to_arrow" else sum(1 for _ in result)
            figures[how].append(time.perf_counter() - opened)
        figures["open"].append(opened - began)
        if count != points:
            raise RuntimeError(f"read {count} raw points, expected {points}")
    arrow, dicts = statistics.median(figures["to_arrow"]), statistics.median(figures["dicts"])
    fresh = run_child("fresh-read", points, {FRESH_READ_PATH: path})
    return {"points": points, "to_arrow_s": arrow, "to_arrow_points_per_s": points / arrow,
            "dicts_s": dicts, "dicts_per_s": points / dicts,
            "open_median_s": statistics.median(figures["open"]), "all_s": figures,
            "fresh_process": fresh}


FRESH_READ_PATH = "COMPARE_FRESH_READ_PATH"


def child_fresh_read(points: int) -> dict[str, Any]:
    """The raw-read file's stream opened and read once as Arrow by a process that has done
    nothing else: what a script or a notebook's first read costs (kernel cache as it is)."""
    import datastream

    with datastream.Datastream(duckdb_backend(os.environ[FRESH_READ_PATH])) as ds:
        stream_id = ds.find_streams({"bench": "raw"})[0]["stream_id"]
        began = time.perf_counter()
        count = ds.get_data(stream_id, "seconds", start=datetime.datetime.min).to_arrow().num_rows
        seconds = time.perf_counter() - began
    if count != points:
        raise RuntimeError(f"read {count} raw points, expected {points}")
    return {"to_arrow_s": seconds, "to_arrow_points_per_s": points / seconds,
            "numba_imported": "numba" in sys.modules}


def code_fingerprint() -> str:
    """A hash of datastream's sources: a cached store is reused only by the same code."""
    import datastream

    digest = hashlib.sha256()
    root = os.path.dirname(datastream.__file__)
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(f for f in files if f.endswith(".py")):
            with open(os.path.join(folder, name), "rb") as handle:
                digest.update(name.encode() + handle.read())
    return digest.hexdigest()[:16]


STORE_STREAM_POINTS = 1_000_000


def store_layout(total: int) -> tuple[int, int]:
    streams = max(1, total // STORE_STREAM_POINTS)
    return streams, total // streams


def build_store(path: str, total: int, seed: int) -> None:
    import datastream

    streams, points = store_layout(total)
    with datastream.Datastream(duckdb_backend(path)) as ds:
        end = 0
        for n in range(streams):
            t, v = stream_arrays("sensor", seed, n, points)
            stream_id = ds.ensure_stream({"bench": "store", "n": n}, {}, VALUE_NAMES, "seconds")
            ds.append_arrays(stream_id, t, v, unit="us")
            end = max(end, int(t[-1]))
        ds.downsample_streams(until=to_datetime(end + 1))


def open_store(args: Any, work: str) -> tuple[str, str]:
    """The store file for the stream-day target, from the cache when the code is unchanged."""
    name = f"store-{args.store_points}-{args.seed}-{JITTER_US}-{code_fingerprint()}.duckdb"
    if args.no_cache:
        path = os.path.join(work, name)
        build_store(path, args.store_points, args.seed)
        return path, "built (no cache)"
    os.makedirs(args.cache_dir, exist_ok=True)
    path = os.path.join(args.cache_dir, name)
    if os.path.exists(path):
        return path, "cached"
    for old in os.listdir(args.cache_dir):  # stale stores: older code or other data
        if old.startswith(f"store-{args.store_points}-{args.seed}-") and old != name:
            os.remove(os.path.join(args.cache_dir, old))
    partial = os.path.join(args.cache_dir, f"building-{os.getpid()}.duckdb")
    try:
        build_store(partial, args.store_points, args.seed)
        os.replace(partial, path)
    finally:
        for leftover in (partial, partial + ".wal"):
            if os.path.exists(leftover):
                os.remove(leftover)
    return path, "built"


def target_stream_day(args: Any, work: str) -> dict[str, Any]:
    """One stream, one day at 10 s (8,640 buckets) from a store of ``--store-points``."""
    import datastream

    _, points = store_layout(args.store_points)
    days = points // 86_400
    if days < 2:
        raise Skip("the store's streams span less than two days")
    day = START_US + DAY_US * min(5, days - 2)
    start, end = to_datetime(day), to_datetime(day + DAY_US)
    path, origin = open_store(args, work)
    with datastream.Datastream(duckdb_backend(path)) as ds:
        found = list(ds.find_streams({"bench": "store", "n": 0}))
    if not found:  # a cached file this code cannot read: build it again
        os.remove(path)
        path, origin = open_store(args, work)
    with datastream.Datastream(duckdb_backend(path)) as ds:
        stream_id = ds.find_streams({"bench": "store", "n": 0})[0]["stream_id"]

        def read(how: str) -> int:
            result = ds.get_data(stream_id, "10seconds", start=start, end_exclusive=end)
            return result.to_arrow().num_rows if how == "arrow" else len(list(result))

        began = time.perf_counter()
        rows = read("arrow")
        first = time.perf_counter() - began
        if rows != 8_640:
            raise RuntimeError(f"a stream-day at 10 s gave {rows} rows, expected 8640")
        arrow, arrow_all = median_time(args.target_repeats * 4, lambda: read("arrow"))
        dicts, dicts_all = median_time(args.target_repeats * 4, lambda: read("dicts"))
    return {"store_points": args.store_points, "store": origin,
            "store_bytes": duckdb_file_bytes(path), "rows": rows,
            "first_after_open_ms": first * 1e3, "to_arrow_median_ms": arrow * 1e3,
            "dicts_median_ms": dicts * 1e3, "to_arrow_all_ms": [x * 1e3 for x in arrow_all],
            "dicts_all_ms": [x * 1e3 for x in dicts_all]}


def child_environment(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def target_import(repeats: int) -> dict[str, Any]:
    """``import datastream`` in a fresh interpreter, beside a bare interpreter start. As an
    installed package imports: with its bytecode cached (written by one import first, also
    where the environment sets PYTHONDONTWRITEBYTECODE, which would recompile every module of
    the package on every start)."""
    env = child_environment()
    env.pop("PYTHONDONTWRITEBYTECODE", None)

    def run(code: str) -> None:
        subprocess.run([sys.executable, "-c", code], env=env, check=True)

    run("import datastream")  # writes the bytecode cache
    bare, bare_all = median_time(repeats, lambda: run("pass"))
    full, full_all = median_time(repeats, lambda: run("import datastream"))
    return {"median_s": full, "interpreter_only_median_s": bare, "net_median_s": full - bare,
            "all_s": full_all, "interpreter_all_s": bare_all}


def run_child(mode: str, points: int, extra: dict[str, str]) -> dict[str, Any]:
    """This script in a child process (``--child``); its last stdout line is JSON."""
    command = [sys.executable, os.path.abspath(__file__), "--child", mode,
               "--child-points", str(points), "--jitter-us", str(JITTER_US)]
    began = time.perf_counter()
    done = subprocess.run(command, env=child_environment(**extra), capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child {mode} failed: {done.stderr.strip()[-2000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["process_s"] = time.perf_counter() - began
    return out


def target_cold_numba(work: str) -> dict[str, Any]:
    cache = tempfile.mkdtemp(prefix="numba-cold-", dir=work)
    return run_child("cold-numba", 20_000, {"NUMBA_CACHE_DIR": cache})


def child_cold_numba(points: int) -> dict[str, Any]:
    """Import, append and downsample on an empty NUMBA_CACHE_DIR: the first-use cost."""
    clock = Clock()
    import datastream

    clock.lap("import")
    data = make_dataset("sensor", 1, points, 5)
    clock.lap("data")
    with datastream.Datastream() as ds:
        datastream_task(ds, data, clock)
    clock.lap("close")
    return {"points": points, "phases_s": clock.phases,
            "first_downsample_s": clock.phases["downsample"]}


def peak_rss_mb() -> float:
    """Peak RSS of this process image in MB. ru_maxrss also counts the parent's RSS when
    this interpreter was forked from a large process; VmHWM belongs to this image alone."""
    import resource

    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_rss(points: int) -> dict[str, Any]:
    """Ingest ``points`` in 1 M chunks over 10 streams into a file; peak RSS from the kernel."""
    import resource

    import datastream

    streams, chunk = 10, 1_000_000
    directory = tempfile.mkdtemp(prefix="compare-rss-")
    try:
        path = os.path.join(directory, "rss.duckdb")
        with datastream.Datastream(duckdb_backend(path)) as ds:
            ids = [ds.ensure_stream({"bench": "rss", "n": n}, {}, VALUE_NAMES, "seconds")
                   for n in range(streams)]
            baseline = peak_rss_mb()
            rng = np.random.default_rng(11)
            done, generating, began = 0, 0.0, time.perf_counter()
            offsets = [0] * streams
            while done < points:
                mark = time.perf_counter()
                n = (done // chunk) % streams
                size = min(chunk, points - done)
                t = START_US + (offsets[n] + np.arange(size, dtype=np.int64)) * SECOND_US
                v = np.round(20 + rng.normal(0, 1, size), 2)
                generating += time.perf_counter() - mark
                ds.append_arrays(ids[n], t, v, unit="us")
                offsets[n] += size
                done += size
        seconds = time.perf_counter() - began - generating
        size_on_disk = duckdb_file_bytes(path)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return {"points": points, "streams": streams, "chunk": chunk,
            "peak_rss_mb": peak_rss_mb(), "rss_before_ingest_mb": baseline,
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "ingest_s": seconds, "points_per_s": points / seconds,
            "bytes_per_point": size_on_disk / points}


def run_targets(args: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    steps: list[tuple[str, Callable[[str], dict[str, Any]]]] = [
        ("bytes", lambda w: target_bytes(args, w)),
        ("append", lambda w: target_append(args.append_points, w)),
        ("raw_read", lambda w: target_raw_reads(args.target_points, args.target_repeats, w)),
        ("stream_day", lambda w: target_stream_day(args, w)),
        ("import", lambda w: target_import(5)),
        ("cold_numba", target_cold_numba),
        ("peak_rss", lambda w: run_child("rss", args.rss_points, {})),
    ]
    for name, step in steps:
        print(f"  target {name} ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="compare-target-") as work:
            try:
                out[name] = step(work)
            except Skip as reason:
                out[name] = {"skipped": str(reason)}
            except Exception as error:
                traceback.print_exc()
                out[name] = {"error": f"{type(error).__name__}: {error}"}
    return out


# -- report -------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = platform.processor() or ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "memory_gb": memory_gb()}


def memory_gb() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/meminfo") as handle:
        return round(int(handle.readline().split()[1]) / 2**20, 1)
    return None


def versions() -> dict[str, str]:
    out = {}
    for name in ("datastream", "numpy", "numba", "pyarrow", "duckdb", "polars", "pandas",
                 "pymongo", "mongomock", "influxdb", "psycopg2-binary"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    for binary, flag in (("influxd", "version"), ("/usr/lib/postgresql/15/bin/postgres",
                                                  "--version")):
        path = shutil.which(binary)
        if path:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                done = subprocess.run([path, flag], capture_output=True, text=True, timeout=10)
                out[os.path.basename(binary)] = (done.stdout or done.stderr).strip()
    return out


def git_state() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"commit": commit, "dirty": bool(dirty)}


def number(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def print_table(rows: list[Row]) -> None:
    header = (f"{'system':22} {'kind':6} {'points':>11} {'seconds':>8} {'M pts/s':>8} "
              f"{'B/pt':>6} {'vs ds':>6}  check / note")
    print(header)
    print("-" * len(header))
    for row in rows:
        if row.status != "ok":
            print(f"{row.system:22} {row.kind:6} {row.points:>11,} {row.status}: {row.reason}")
            continue
        per_point = row.bytes / row.points if row.bytes else None
        size = "(mem)" if row.system in COMPUTE_ONLY else number(per_point, ".2f")
        rate = row.rate / 1e6 if row.rate else None
        ratio = number(row.ratio, ".2f") + ("×" if row.ratio is not None else "")
        notes = "; ".join(x for x in (row.check, row.note) if x)
        print(f"{row.system:22} {row.kind:6} {row.points:>11,} {number(row.best, '.2f'):>8} "
              f"{number(rate, '.3f'):>8} {size:>6} {ratio:>6}  {notes}")


def print_reads(reads: list[dict[str, Any]]) -> None:
    for read in reads:
        if "error" in read:
            print(f"  raw read ({read['kind']}): failed: {read['error']}")
            continue
        best, points = read["best"], read["points"]
        plain = best["plain client"]
        print(f"  raw read of {points:,} points of stream 0 ({read['kind']}): plain influxdb "
              f"client {plain:.2f} s ({points / plain / 1e6:.3f} M/s); " + ", ".join(
                  f"{name} {seconds:.2f} s ({points / seconds / 1e6:.3f} M/s, "
                  f"{plain / seconds:.2f}× the client's rate)"
                  for name, seconds in best.items() if name != "plain client"))


def print_targets(targets: dict[str, Any]) -> None:
    def show(name: str, text: Callable[[dict[str, Any]], str]) -> None:
        value = targets.get(name)
        if value is None:
            return
        if "error" in value or "skipped" in value:
            print(f"  {name:12} {value.get('error') or 'skipped: ' + value['skipped']}")
        else:
            print(f"  {name:12} {text(value)}")

    show("bytes", lambda v: f"B/pt of {v['points']:,} points per kind in "
         f"{'/'.join(v['names'])} streams, raw + six levels: " + ", ".join(
             f"{key.replace('_jitter_', ' ±')} µs {value:.2f}" for key, value in v.items()
             if key not in ("names", "points")))
    show("append", lambda v: f"append() float + aware datetime: {v['points_per_s']:,.0f} "
         f"points/s ({v['points_per_s_with_flush']:,.0f} with the final flush; "
         f"{v['points']:,} points)")
    show("raw_read", lambda v: f"{v['points']:,} raw points from a reopened file: to_arrow "
         f"{v['to_arrow_points_per_s'] / 1e6:.2f} M points/s, dicts "
         f"{v['dicts_per_s']:,.0f} dicts/s (medians; opening {v['open_median_s']:.3f} s apart);"
         f" first read of a fresh process {v['fresh_process']['to_arrow_s'] * 1e3:.0f} ms, "
         f"its whole process {v['fresh_process']['process_s']:.2f} s "
         f"(numba {'imported' if v['fresh_process']['numba_imported'] else 'not imported'})")
    show("stream_day", lambda v: f"one stream-day at 10 s from {v['store_points']:,} points "
         f"({v['store']}): to_arrow {v['to_arrow_median_ms']:.2f} ms, dicts "
         f"{v['dicts_median_ms']:.2f} ms (medians), first after open "
         f"{v['first_after_open_ms']:.1f} ms")
    show("import", lambda v: f"import datastream {v['median_s']:.3f} s (median of 5; "
         f"interpreter alone {v['interpreter_only_median_s']:.3f} s)")
    show("cold_numba", lambda v: f"first downsample on a cold numba cache "
         f"{v['first_downsample_s']:.2f} s (" + ", ".join(
             f"{phase} {seconds:.2f} s" for phase, seconds in v["phases_s"].items()) + ")")
    show("peak_rss", lambda v: f"peak RSS {v['peak_rss_mb']:,.0f} MB ingesting "
         f"{v['points']:,} points in {v['chunk']:,}-point chunks "
         f"({v['rss_before_ingest_mb']:,.0f} MB before; {v['points_per_s'] / 1e6:.2f} M points/s,"
         f" {v['bytes_per_point']:.2f} B/pt)")


# -- main ---------------------------------------------------------------------------------------


QUICK = {"streams": 4, "points": 100_000, "append_points": 10_000, "target_points": 100_000,
         "store_points": 2_000_000, "rss_points": 5_000_000, "read_points": 100_000,
         "mongo_points": 3_000, "target_repeats": 3, "influx_settle": 30.0}
FULL = {"streams": 10, "points": 1_000_000, "append_points": 200_000, "target_points": 1_000_000,
        "store_points": 20_000_000, "rss_points": 100_000_000, "read_points": 1_000_000,
        "mongo_points": 10_000, "target_repeats": 5, "influx_settle": 180.0}


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])

    def sized(key: str, flag: str, text: str, kind: type = int) -> None:
        """A size flag whose default depends on --quick."""
        parser.add_argument(flag, type=kind, help=f"{text} (default {FULL[key]:,}; "
                                                  f"--quick {QUICK[key]:,})")

    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke test")
    parser.add_argument("--kinds", default="sensor,walk",
                        help="data kinds: sensor, walk or both (default both)")
    parser.add_argument("--systems", default="all",
                        help=f"comma list of {', '.join(SYSTEMS)}; 'all' (default) or 'none'")
    sized("streams", "--streams", "streams per data kind")
    sized("points", "--points", "points per stream")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs per system, the best counts (default 1)")
    parser.add_argument("--seed", type=int, default=1, help="data seed (default 1)")
    parser.add_argument("--jitter-us", type=int, default=JITTER_US,
                        help=f"timestamps spread ± this many µs around each whole second "
                             f"(default {JITTER_US:,}; 0: a regular 1 Hz cadence, whose "
                             f"timestamps and time statistics cost almost no bytes)")
    sized("mongo_points", "--mongo-points", "points of stream 0 for mongomock")
    sized("read_points", "--read-points", "raw points read back through InfluxDB")
    sized("influx_settle", "--influx-settle",
          "max seconds to wait for InfluxDB to compact before sizing", float)
    parser.add_argument("--targets", action="store_true", help="also run the micro targets")
    sized("append_points", "--append-points", "points of the append() target")
    sized("target_points", "--target-points", "points of the raw read targets")
    sized("store_points", "--store-points", "store size of the stream-day target")
    sized("rss_points", "--rss-points", "points ingested by the peak RSS target")
    sized("target_repeats", "--target-repeats", "repeats of the read targets")
    parser.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(),
                                                            "datastream-compare"),
                        help="where the stream-day store is kept between runs (default "
                             "%(default)s); a store is reused only by identical datastream code")
    parser.add_argument("--no-cache", action="store_true", help="build the store every run")
    parser.add_argument("--json", metavar="PATH", help="write every figure to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-points", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def selection(text: str, choices: tuple[str, ...], what: str) -> list[str]:
    if text == "all":
        return list(choices)
    if text == "none":
        return []
    chosen = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in chosen if x not in choices]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(choices)})")
    return chosen


def main(argv: list[str] | None = None) -> int:
    global JITTER_US
    args = parse_arguments(argv)
    if not 0 <= args.jitter_us < SECOND_US // 2:
        raise SystemExit("--jitter-us must be between 0 and 499,999 (points stay in order)")
    JITTER_US = args.jitter_us
    if args.child:
        child = {"cold-numba": child_cold_numba, "rss": child_rss,
                 "fresh-read": child_fresh_read}[args.child]
        print(json.dumps(child(args.child_points)))
        return 0
    sys.stdout.reconfigure(line_buffering=True)  # progress on stderr stays in order
    kinds = selection(args.kinds, KINDS, "kinds")
    wanted = set(selection(args.systems, SYSTEMS, "systems"))
    report: dict[str, Any] = {
        "date": datetime.datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *sys.argv]),
        "cwd": os.getcwd(), "git": git_state(), "machine": machine(),
        "load_average_start": os.getloadavg(),
        "threads": {**{name: os.environ[name] for name in THREAD_VARIABLES},
                    "duckdb": "threads=1", "pyarrow": "cpu_count=1, io_thread_count=1",
                    "influxd": "GOMAXPROCS=1"},
        "packages": versions(), "arguments": vars(args),
        "dataset": {"kinds": kinds, "streams": args.streams, "points_per_stream": args.points,
                    "seed": args.seed, "start": to_datetime(START_US).isoformat(),
                    "spacing": f"1 s ± {JITTER_US} µs"},
        "work": WORK,
    }
    print(f"datastream compare — {report['date']}, {report['machine']['cpu']}, "
          f"{report['machine']['cores']} cores, load {report['load_average_start'][0]:.2f}")
    print("one thread everywhere: " + ", ".join(f"{k}={v}" for k, v in report["threads"].items()))
    print(f"data: {args.streams} streams × {args.points:,} points per kind ({', '.join(kinds)}),"
          f" seed {args.seed}, 1 s ± {JITTER_US:,} µs apart; best of {args.repeats}")
    rows: list[Row] = []
    reads: list[dict[str, Any]] = []
    if args.targets or wanted - {"duckdb", "polars", "pandas", "influxdb"}:
        warm_kernels()
    for kind in kinds if wanted else []:
        print(f"  running {kind} ...", file=sys.stderr, flush=True)
        rows.extend(run_kind(kind, args, wanted, reads))
    targets = run_targets(args) if args.targets else {}
    report["load_average_end"] = os.getloadavg()
    report["systems"] = [row.to_json() for row in rows]
    report["influx_reads"] = reads
    report["targets"] = targets

    print()
    if rows:
        print("ingest arrays → raw + 10 s, 1 min, 10 min, 1 h, 6 h, 1 d levels (count, sum, sum of"
              " squares, min, max, mean, std); 'vs ds' = rate / datastream's rate")
        print_table(rows)
        for name in [name for name in SYSTEMS if name in wanted]:
            print(f"  {name}: {WORK[name]}")
    if reads:
        print_reads(reads)
    for row in rows:
        if row.system == "datastream-influxdb" and row.rate:
            alone = next((r for r in rows if r.system == "influxdb" and r.kind == row.kind
                          and r.rate), None)
            if alone is not None:
                print(f"  ours on InfluxDB / InfluxDB alone ({row.kind}): time ratio "
                      f"{row.best / alone.best:.2f}")
    if targets:
        print("micro targets:")
        print_targets(targets)
    print(f"load average at end: {report['load_average_end'][0]:.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1, default=str)
        print(f"wrote {args.json}")
    wrong = [row for row in rows if row.check_ok is False]
    for row in wrong:
        level = "ERROR" if row.system.startswith("datastream") else "WARNING"
        print(f"{level}: {row.system}/{row.kind} day-level mean of stream 0 disagrees with polars:"
              f" {row.check}", file=sys.stderr)
    if any(row.system.startswith("datastream") for row in wrong):
        print("CORRECTNESS FAILURE: the figures above are not comparable", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
