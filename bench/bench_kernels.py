"""Peer comparison: all six downsampled levels of 10 M float points, on one core.

    .venv/bin/python bench/bench_kernels.py [--streams 10] [--points 1000000] [--repeat 3]

datastream builds the levels by cascade (raw → 10 s partials → combined up to 1 day, every
numeric downsampler but median plus all time partials) and finalizes each level to Arrow.
pandas (``resample().agg``) and polars (``group_by_dynamic``) compute count, sum, sum of squares,
min, max, mean and population std of every level from the raw points. Each tool gets the data
in its own native form, prepared outside the timing. Prints the best of ``--repeat`` runs.
"""

from __future__ import annotations

import os

# one core for everyone; must be set before numba / polars are imported
os.environ["POLARS_MAX_THREADS"] = "1"
os.environ["NUMBA_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import polars as pl  # noqa: E402
import pyarrow as pa  # noqa: E402

from datastream import downsamplers as ds  # noqa: E402
from datastream.storage.base import RAW_SCHEMA  # noqa: E402

SECOND = 1_000_000
LEVELS = [10, 60, 600, 3600, 21600, 86400]
NAMES = ["count", "sum", "sum_squares", "min", "max", "mean", "std_dev"]


def make_streams(streams: int, points: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Irregular ~1 s spacing (0.5 to 1.5 s, µs resolution) from 2020-01-01, float values."""
    rng = np.random.default_rng(seed)
    start = 1_577_836_800 * SECOND
    out = []
    for _ in range(streams):
        t = start + np.cumsum(rng.integers(SECOND // 2, 3 * SECOND // 2, points))
        out.append((t.astype(np.int64), rng.normal(20.0, 5.0, points)))
    return out


def raw_table(t: np.ndarray, x: np.ndarray) -> pa.Table:
    n = len(t)
    return pa.Table.from_arrays(
        [pa.array(t), pa.array(np.full(n, 2, np.int8)), pa.nulls(n, pa.int64()), pa.array(x),
         pa.nulls(n, pa.string())],
        schema=RAW_SCHEMA,
    )


def run_datastream(tables: list[pa.Table]) -> list[pa.Table]:
    results = []
    for raw in tables:
        rows = ds.partials_from_raw(raw, "numeric", {}, LEVELS[0] * SECOND, False)
        results.append(ds.finalize_arrow(rows, "numeric", {}, NAMES, [], LEVELS[0] * SECOND))
        for width in LEVELS[1:]:
            rows = ds.combine_partials(rows, width * SECOND, "numeric", {})
            results.append(ds.finalize_arrow(rows, "numeric", {}, NAMES, [], width * SECOND))
    return results


def run_pandas(frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    results = []
    for frame in frames:
        frame = frame.assign(x2=frame["x"] * frame["x"])
        for width in LEVELS:
            resampled = frame.resample(f"{width}s")
            out = resampled.agg(
                count=("x", "count"), sum=("x", "sum"), sum_squares=("x2", "sum"),
                min=("x", "min"), max=("x", "max"), mean=("x", "mean"),
            )
            out["std_dev"] = resampled["x"].std(ddof=0)
            results.append(out)
    return results


def run_polars(frame: pl.DataFrame) -> list[pl.DataFrame]:
    x = pl.col("x")
    aggregates = [
        x.count().alias("count"), x.sum().alias("sum"), (x * x).sum().alias("sum_squares"),
        x.min().alias("min"), x.max().alias("max"), x.mean().alias("mean"),
        x.std(ddof=0).alias("std_dev"),
    ]
    return [
        frame.group_by_dynamic("t", every=f"{width}s", group_by="stream").agg(aggregates)
        for width in LEVELS
    ]


def best_of(repeat: int, func, *args) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func(*args)
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    total = args.streams * args.points

    data = make_streams(args.streams, args.points)
    tables = [raw_table(t, x) for t, x in data]
    frames = [pd.DataFrame({"x": x}, index=pd.to_datetime(t, unit="us", utc=True)) for t, x in data]
    polars_frame = pl.DataFrame({
        "stream": np.repeat(np.arange(args.streams), args.points),
        "t": pl.Series(np.concatenate([t for t, _ in data])).cast(pl.Datetime("us", "UTC")),
        "x": np.concatenate([x for _, x in data]),
    }).set_sorted("t")

    run_datastream(tables[:1])  # compile (or load cached) kernels outside the timing
    timings = {}
    timings["datastream (cascade, numba)"], ours = best_of(args.repeat, run_datastream, tables)
    timings["polars group_by_dynamic"], theirs = best_of(args.repeat, run_polars, polars_frame)
    timings["pandas resample().agg"], _ = best_of(max(1, args.repeat - 2), run_pandas, frames)

    # the same numbers: day level of stream 0
    day = ours[len(LEVELS) - 1].to_pandas()
    other = theirs[-1].filter(pl.col("stream") == 0).to_pandas()
    assert np.allclose(day["mean"].to_numpy(), other["mean"].to_numpy(), rtol=1e-12)
    assert np.allclose(day["std_dev"].to_numpy(), other["std_dev"].to_numpy(), rtol=1e-9)

    print(f"{total:,} points in {args.streams} streams, all six levels, one thread, "
          f"best of {args.repeat}")
    reference = timings["datastream (cascade, numba)"]
    for name, seconds in timings.items():
        print(f"  {name:30s} {seconds:8.3f} s  {total / seconds / 1e6:8.1f} M points/s  "
              f"x{seconds / reference:6.1f}")


if __name__ == "__main__":
    main()
