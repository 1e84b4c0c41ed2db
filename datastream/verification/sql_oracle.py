"""Per-bucket facts of raw rows, computed by DuckDB SQL: the independent oracle of the levels.

One window of raw rows (``RAW_SCHEMA``) is registered as an Arrow table (zero-copy) together
with the pre-aggregated dicts it holds (value kind 5, parsed here into columns). Each query
groups them by (bucket width, bucket start) for all the widths asked at once, so a window costs
a handful of queries whatever the number of levels. Nothing here shares code with the kernels:
the formulas are the textbook ones (a corrected two-pass variance around the bucket minimum,
exact integer sums of timestamps and gaps, the median from the ordered middle values).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from ..raw_kinds import KIND_AGGREGATE, KIND_EXACT, KIND_FLOAT, KIND_INT, KIND_NULL, NUMBER_KINDS
from ..storage.base import RAW_SCHEMA

ITEMS_SCHEMA = pa.schema(
    [("t", pa.int64()), ("c", pa.int64())]
    + [(key, pa.float64()) for key in ("s", "q", "l", "u", "m", "d", "n")]
)

Key = tuple[int, int]  # (bucket width µs, bucket start µs)


def _widths(widths: Sequence[int]) -> str:
    listed = ", ".join(str(int(width)) for width in widths)
    return f"(SELECT unnest([{listed}]::BIGINT[]) AS w)"


def _with_bucket(table: str, columns: str, widths: Sequence[int]) -> str:
    """Rows of ``table`` once per width, with ``b`` their bucket start: a floor, also for
    times before 1970."""
    return (
        f"SELECT {columns}, w, t - (((t % w) + w) % w) AS b "
        f"FROM {table} CROSS JOIN {_widths(widths)}"
    )


def _points(widths: Sequence[int]) -> str:
    return _with_bucket("raw_points", f"t, coalesce(k, {KIND_NULL}) AS k, i, f, s", widths)


_NUMBER = (
    f"CASE k WHEN {KIND_INT} THEN CAST(i AS DOUBLE) WHEN {KIND_FLOAT} THEN f"
    f" WHEN {KIND_EXACT} THEN CAST(s AS DOUBLE) END"
)
_NUMBER_KINDS = ", ".join(str(kind) for kind in NUMBER_KINDS)  # SQL list: k IN (...)


@dataclasses.dataclass
class TimeFacts:
    """Points, non-null points, the exact sum of their offsets from the bucket start, first
    and last timestamp, and the gaps between consecutive points (count, sum, min, max, Σg²)
    in integer microseconds."""

    np: int = 0
    tn: int = 0
    toff: int = 0
    ta: int = 0
    tz: int = 0
    ic: int = 0
    gsum: int = 0
    gmin: int = 0
    gmax: int = 0
    gsq: int = 0


@dataclasses.dataclass
class FloatValues:
    """Value statistics of a bucket of a float-valued numeric stream (None where undefined)."""

    c: int
    s: float | None
    q: float | None
    low: float | None
    high: float | None
    std: float | None


class WindowOracle:
    """SQL over one window of one stream's raw rows."""

    def __init__(self, connection: duckdb.DuckDBPyConnection) -> None:
        self.con = connection
        self.load(RAW_SCHEMA.empty_table())

    def load(self, raw: pa.Table) -> None:
        """Make ``raw`` (RAW_SCHEMA rows) the window the queries below look at."""
        self.raw = raw
        aggregated = raw.filter(pc.equal(raw.column("k"), KIND_AGGREGATE))
        self.items = [
            (t, json.loads(text))
            for t, text in zip(
                aggregated.column("t").to_pylist(), aggregated.column("s").to_pylist(),
                strict=True,
            )
        ]
        self.con.register("raw_points", raw)
        self.con.register("items", _items_table(self.items))

    def _rows(self, query: str) -> list[tuple]:
        return self.con.sql(query).fetchall()

    def times(self, widths: Sequence[int]) -> dict[Key, TimeFacts]:
        facts: dict[Key, TimeFacts] = {}
        for w, b, np_, tn, toff, ta, tz, ic, gsum, gmin, gmax, gsq in self._rows(
            f"""
            WITH p AS ({_points(widths)}),
            g AS (
                SELECT w, b, t, k, t - lag(t) OVER (PARTITION BY w, b ORDER BY t) AS gap
                FROM p
            )
            SELECT w, b, count(*), count(*) FILTER (WHERE k <> {KIND_NULL}),
                   sum(CAST(t - b AS HUGEINT)) FILTER (WHERE k <> {KIND_NULL}), min(t), max(t),
                   count(gap), sum(CAST(gap AS HUGEINT)), min(gap), max(gap),
                   sum(CAST(gap AS HUGEINT) * gap)
            FROM g GROUP BY w, b
            """
        ):
            facts[(w, b)] = TimeFacts(
                np_, tn, int(toff or 0), ta, tz, ic, int(gsum or 0), gmin or 0, gmax or 0,
                int(gsq or 0),
            )
        return facts

    def float_values(self, widths: Sequence[int]) -> dict[Key, FloatValues]:
        """count, sum, Σx², min, max and population standard deviation of plain numbers and
        pre-aggregated items together. An item contributes its own count, sums and extremes,
        and its spread (``d``, else from ``q - s²/c``) around its mean (``m``, else ``s / c``).

        The deviation sums run in units of a power of two near the bucket's magnitude, so
        values up to the float limit neither overflow when squared nor lose precision."""
        query = f"""
            WITH p AS ({_points(widths)}),
            x AS (SELECT w, b, {_NUMBER} AS x FROM p WHERE k IN ({_NUMBER_KINDS})),
            it AS ({_with_bucket("items", "c, s, q, l, u, m, d", widths)}),
            parts AS (
                SELECT w, b, 1::BIGINT AS c, x AS s, x * x AS q, x AS l, x AS u, x AS mean,
                       NULL::DOUBLE AS d, TRUE AS single
                FROM x WHERE x IS NOT NULL
                UNION ALL
                SELECT w, b, c, s, q, l, u, coalesce(m, s / c), d, FALSE
                FROM it WHERE c > 0
            ),
            totals AS (
                SELECT w, b, sum(c) AS c, count(*) AS parts, count(s) AS with_s,
                       count(q) AS with_q, fsum(s) AS s, fsum(q) AS q, min(l) AS l,
                       max(u) AS u, coalesce(min(l), 0.0) AS base,
                       greatest(max(abs(mean)), abs(min(l)), abs(max(u))) AS magnitude
                FROM parts GROUP BY w, b
            ),
            units AS (
                SELECT w, b, CASE WHEN magnitude > 0 AND isfinite(magnitude)
                                  -- log2 of values near 1.8e308 rounds to 1024: 2**1024 is inf
                                  THEN pow(2.0, least(floor(log2(magnitude)), 1023))
                                  ELSE 1.0 END AS k
                FROM totals
            ),
            centred AS (
                SELECT p.w, p.b, p.c, p.mean / n.k - t.base / n.k AS dev,
                       CASE WHEN p.single THEN 0.0
                            WHEN p.d IS NOT NULL THEN (p.d / n.k) * (p.d / n.k) * p.c
                            WHEN p.q IS NOT NULL AND p.s IS NOT NULL
                            THEN greatest(p.q / n.k / n.k - (p.s / n.k) * (p.s / n.k) / p.c, 0.0)
                       END AS m2
                FROM parts p JOIN totals t USING (w, b) JOIN units n USING (w, b)
            ),
            centre AS (SELECT w, b, fsum(c * dev) / sum(c) AS mid FROM centred GROUP BY w, b),
            spread AS (
                SELECT d.w, d.b, count(d.dev) AS with_mean, count(d.m2) AS with_m2,
                       fsum(d.m2) + fsum(d.c * (d.dev - e.mid) * (d.dev - e.mid))
                       - pow(fsum(d.c * (d.dev - e.mid)), 2) / sum(d.c) AS m2
                FROM centred d JOIN centre e USING (w, b) GROUP BY d.w, d.b
            )
            SELECT t.w, t.b, t.c,
                   CASE WHEN with_s = parts THEN t.s END,
                   CASE WHEN with_q = parts THEN t.q END,
                   t.l, t.u,
                   CASE WHEN with_mean = parts AND with_m2 = parts
                        THEN n.k * sqrt(greatest(sp.m2, 0.0) / t.c) END
            FROM totals t JOIN spread sp USING (w, b) JOIN units n USING (w, b)
        """
        return {
            (w, b): FloatValues(int(c), s, q, low, high, std)
            for w, b, c, s, q, low, high, std in self._rows(query)
        }

    def medians(self, widths: Sequence[int]) -> dict[Key, float]:
        """Exact median of the plain numbers plus each item's own median (as one value)."""
        query = f"""
            WITH p AS ({_points(widths)}),
            pool AS (
                SELECT w, b, {_NUMBER} AS v FROM p WHERE k IN ({_NUMBER_KINDS})
                UNION ALL
                SELECT w, b, n FROM ({_with_bucket("items", "n", widths)})
            ),
            ranked AS (
                SELECT w, b, v, row_number() OVER (PARTITION BY w, b ORDER BY v) AS r,
                       count(*) OVER (PARTITION BY w, b) AS size
                FROM pool WHERE v IS NOT NULL
            )
            SELECT w, b, CASE WHEN any_value(size) % 2 = 1 THEN max(v)
                              ELSE min(v) * 0.5 + max(v) * 0.5 END
            FROM ranked WHERE r = (size + 1) // 2 OR r = size // 2 + 1 GROUP BY w, b
        """
        return {(w, b): median for w, b, median in self._rows(query)}

    def occurrences(self, widths: Sequence[int], kinds: tuple[int, ...]) -> list[tuple]:
        """(width, bucket, k, i, f, s, count) for each distinct stored value of ``kinds``."""
        wanted = ", ".join(str(kind) for kind in kinds)
        return self._rows(
            f"""
            WITH p AS ({_points(widths)})
            SELECT w, b, k, i, f, s, count(*) FROM p WHERE k IN ({wanted})
            GROUP BY w, b, k, i, f, s
            """
        )

    def item_buckets(self, widths: Sequence[int]) -> list[tuple[Key, dict[str, Any]]]:
        """The window's pre-aggregated dicts with their (width, bucket start)."""
        return [((w, t - t % w), item) for w in widths for t, item in self.items]


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _items_table(items: list[tuple[int, dict[str, Any]]]) -> pa.Table:
    columns: dict[str, list] = {name: [] for name in ITEMS_SCHEMA.names}
    for t, item in items:
        columns["t"].append(t)
        columns["c"].append(int(item.get("c") or 0))
        for key in ("s", "q", "l", "u", "m", "d", "n"):
            columns[key].append(_number(item.get(key)))
    return pa.table(columns, schema=ITEMS_SCHEMA)
