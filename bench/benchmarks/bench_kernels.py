"""asv benchmarks of the downsampling kernels and their Arrow glue (200 k points, one stream).

Run with ``asv run`` (``benchmark_dir: bench/benchmarks``). The peer comparison on 10 M points
is ``bench/bench_kernels.py``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from datastream import downsamplers as ds
from datastream.kernels import buckets, combine, order, partials
from datastream.storage.base import RAW_SCHEMA

SECOND = 1_000_000
LEVELS = [10, 60, 600, 3600, 21600, 86400]
NAMES = ["count", "sum", "sum_squares", "min", "max", "mean", "std_dev"]


def _raw(points: int) -> pa.Table:
    rng = np.random.default_rng(0)
    t = 1_577_836_800 * SECOND + np.cumsum(rng.integers(SECOND // 2, 3 * SECOND // 2, points))
    x = rng.normal(20.0, 5.0, points)
    x[rng.random(points) < 0.05] = np.nan
    kinds = np.where(np.isnan(x), 0, 2).astype(np.int8)
    return pa.Table.from_arrays(
        [pa.array(t.astype(np.int64)), pa.array(kinds), pa.nulls(points, pa.int64()),
         pa.array(x, mask=np.isnan(x)), pa.nulls(points, pa.string())],
        schema=RAW_SCHEMA,
    )


class Kernels:
    """The kernels alone on numpy arrays."""

    def setup(self):
        raw = _raw(200_000)
        self.t = raw.column("t").to_numpy()
        self.x = np.nan_to_num(raw.column("f").to_numpy())
        self.valid = raw.column("k").to_numpy() != 0
        self.starts, self.bounds = buckets.segment(self.t, 10 * SECOND)
        self.values = partials.raw_value_state(self.x, self.valid, self.bounds)
        self.times = partials.raw_time_state(self.t, self.valid, self.starts, self.bounds)
        self.coarse_starts, self.coarse_bounds = buckets.segment(self.starts, 3600 * SECOND)

    def time_segment(self):
        buckets.segment(self.t, 10 * SECOND)

    def time_value_partials(self):
        partials.raw_value_state(self.x, self.valid, self.bounds)

    def time_time_partials(self):
        partials.raw_time_state(self.t, self.valid, self.starts, self.bounds)

    def time_combine_values(self):
        combine.merge_value_state(self.values, self.coarse_bounds)

    def time_combine_times(self):
        combine.merge_time_state(self.starts, self.times, self.coarse_starts, self.coarse_bounds)

    def time_median_hourly(self):
        _, bounds = buckets.segment(self.t, 3600 * SECOND)
        order.medians(self.x, self.valid, bounds)


class Cascade:
    """Every level of one stream through the public functions of downsamplers.py."""

    def setup(self):
        self.raw = _raw(200_000)
        self.rows = ds.partials_from_raw(self.raw, "numeric", {}, 10 * SECOND, False)

    def time_cascade_all_levels(self):
        rows = ds.partials_from_raw(self.raw, "numeric", {}, 10 * SECOND, False)
        for width in LEVELS[1:]:
            rows = ds.combine_partials(rows, width * SECOND, "numeric", {})

    def time_cascade_with_median(self):
        rows = ds.partials_from_raw(self.raw, "numeric", {}, 10 * SECOND, True)
        for width in LEVELS[1:]:
            rows = ds.combine_partials(rows, width * SECOND, "numeric", {}, raw=self.raw)

    def time_finalize_arrow_10s(self):
        ds.finalize_arrow(self.rows, "numeric", {}, NAMES, None, 10 * SECOND)

    def time_finalize_dicts_10s(self):
        ds.finalize(self.rows, "numeric", {}, None, None, 10 * SECOND)

    def peakmem_cascade_all_levels(self):
        self.time_cascade_all_levels()
