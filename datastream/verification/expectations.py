"""What every bucket must read as: oracle facts turned into labelled expected values.

Labels are the names of the columnar export: value downsamplers by name (``'mean'``), time
downsamplers as ``'time_<name>'``. The results follow behaviour §5.2-§5.4 and the documented
decisions of the level format: empty buckets read c 0, other values None and their middle as
time; a pre-aggregated dict is one non-null point for the time statistics; frequency tables are
keyed by canonical JSON text and returned keyed by value, except dict/list values and scalars
that would share one Python key (``1``, ``1.0``, ``True``), which stay keyed by that text.
Floats -0.0 and 0.0 are one value, counted under ``0.0``.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

from .. import downsamplers
from ..frequencies import keyed_by_value  # how readers render a table: the same keys
from ..granularity import from_us
from ..raw_kinds import KIND_FLOAT, KIND_INT, KIND_JSON, NUMBER_KINDS, canonical_json
from ..units import US_PER_SECOND
from . import exact_oracle
from .agreement import ROUNDING, Expected, close, exact, strict, timestamp
from .sql_oracle import FloatValues, Key, TimeFacts, WindowOracle

TIME_LABELS = {f"time_{name}": key for name, key in downsamplers.TIME_DOWNSAMPLERS.items()}
TABLE_NAMES = ("most_often", "least_often", "frequencies")
# A standard deviation's rounding depends on the spread of the values, and for equal values
# (true spread 0) on their magnitude, at a far smaller rate: its scale is spread + this · magnitude.
STD_FLOOR = 0.1
# A standard deviation comes from M2, a sum of squared deviations in float64: deviations below
# sqrt(smallest normal) ≈ 1.5e-154 square to subnormals or to 0 (the std of 0 and 1e-168 is
# stored as 0), so a std is also judged to this absolute floor.
STD_UNDERFLOW = math.sqrt(sys.float_info.min)


def value_labels(names: list[str]) -> dict[str, str]:
    """label → value key of a stream's stored value downsamplers."""
    return {name: downsamplers.VALUE_DOWNSAMPLERS[name] for name in names}


class BucketOracle:
    """Expected datapoints of one stream's buckets, from the raw window loaded in ``sql``."""

    def __init__(self, sql: WindowOracle, meta: dict[str, Any]) -> None:
        self.sql = sql
        self.value_type = meta["value_type"]
        self.exact = self.value_type == "numeric" and bool(
            (meta.get("value_type_options") or {}).get("high_accuracy")
        )
        self.names = list(meta["value_downsamplers"])
        self.tables = bool(set(TABLE_NAMES) & set(self.names))
        self.decode: Callable[[str], Any] = Decimal if self.exact else json.loads

    def expected(self, widths: Sequence[int]) -> dict[Key, dict[str, Expected]]:
        """Expected labelled values of every bucket holding a point, for each width (µs),
        keyed by (width, bucket start)."""
        times = self.sql.times(widths)
        values = self._values(widths, times)
        return {
            key: {**values.get(key, self.empty_values()), **time_expectations(fact, *key)}
            for key, fact in times.items()
        }

    def empty(self, b: int, width: int) -> dict[str, Expected]:
        return {**self.empty_values(), **time_expectations(None, width, b)}

    def empty_values(self) -> dict[str, Expected]:
        return {
            name: exact(0) if name == "count" else strict(None) for name in self.names
        }

    # -- values by value type --------------------------------------------------------------
    def _values(
        self, widths: Sequence[int], times: dict[Key, TimeFacts]
    ) -> dict[Key, dict[str, Expected]]:
        if self.value_type != "numeric":
            tables = self._nominal_tables(widths) if self.value_type == "nominal" else {}
            return {
                key: self._from_table(fact.tn, tables.get(key) if fact.tn else None)
                for key, fact in times.items()
            }
        if self.exact:
            return {
                (width, b): self._exact(values)
                for width in widths
                for b, values in exact_oracle.bucket_values(self.sql.raw, width).items()
            }
        floats = self.sql.float_values(widths)
        medians = self.sql.medians(widths) if "median" in self.names else {}
        tables = self._numeric_tables(widths) if self.tables else {}
        return {
            key: self._float(
                floats.get(key, FloatValues(0, None, None, None, None, None)),
                medians.get(key), tables.get(key),
            )
            for key in set(floats) | set(medians) | set(tables)
        }

    def _from_table(self, count: int, table: dict[str, int] | None) -> dict[str, Expected]:
        out = {"count": exact(count)}
        out.update(self._table_expectations(table if count else None))
        return {name: out[name] for name in self.names}

    def _table_expectations(self, table: dict[str, int] | None) -> dict[str, Expected]:
        if not table:
            return {name: strict(None) for name in TABLE_NAMES}
        most = min(table.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        least = min(table.items(), key=lambda kv: (kv[1], kv[0]))[0]
        return {
            "most_often": strict(self.decode(most)),
            "least_often": strict(self.decode(least)),
            "frequencies": strict(keyed_by_value(table, self.decode)),
        }

    def _float(
        self, v: FloatValues, median: float | None, table: dict[str, int] | None
    ) -> dict[str, Expected]:
        if v.c == 0:
            return self.empty_values()
        out: dict[str, Expected] = {"count": exact(v.c)}
        out.update((label, close(value, scale))
                   for label, (value, scale) in zip(FLOAT_LABELS, float_values(v, median),
                                                    strict=True))
        out.update(self._table_expectations(table))
        return {name: out[name] for name in self.names}

    def _exact(self, v: exact_oracle.ExactValues) -> dict[str, Expected]:
        if v.c == 0:
            return self.empty_values()
        out = {
            "count": exact(v.c),
            "sum": exact(v.s),
            "sum_squares": exact(v.q),
            "min": exact(v.low),
            "max": exact(v.high),
            "mean": exact(v.mean),
            "std_dev": exact(v.std),
            "median": exact(v.median),
        }
        out.update(self._table_expectations(v.table if self.tables else None))
        return {name: out[name] for name in self.names}

    # -- frequency tables --------------------------------------------------------------------
    def _nominal_tables(self, widths: Sequence[int]) -> dict[Key, dict[str, int]]:
        tables: dict[Key, dict[str, int]] = {}
        for width, b, _, _, _, text, count in self.sql.occurrences(widths, (KIND_JSON,)):
            key = canonical_json(json.loads(text))
            table = tables.setdefault((width, b), {})
            table[key] = table.get(key, 0) + count
        return tables

    def _numeric_tables(self, widths: Sequence[int]) -> dict[Key, dict[str, int]]:
        tables: dict[Key, dict[str, int]] = {}
        for width, b, k, i, f, s, count in self.sql.occurrences(widths, NUMBER_KINDS):
            if k == KIND_INT:
                key = str(i)
            else:
                number = f if k == KIND_FLOAT else float(Decimal(s))
                key = repr(number + 0.0)  # -0.0 is the value 0.0 (equal floats, one key)
            table = tables.setdefault((width, b), {})
            table[key] = table.get(key, 0) + count
        for bucket, item in self.sql.item_buckets(widths):
            for key, count in (item.get("f") or {}).items():
                table = tables.setdefault(bucket, {})
                table[key] = table.get(key, 0) + count
        return tables


FLOAT_LABELS = ("sum", "sum_squares", "min", "max", "mean", "std_dev", "median")
INTERVAL_LABELS = ("time_intervals_mean", "time_intervals_min", "time_intervals_max",
                   "time_intervals_sum_squares", "time_intervals_std_dev")


def float_values(v: FloatValues, median: float | None) -> list[tuple[float | None, float]]:
    """(expected value, scale of its tolerance) of each of ``FLOAT_LABELS`` for a bucket
    holding numbers (``v.c > 0``)."""
    magnitude = max(abs(v.low or 0.0), abs(v.high or 0.0))
    spread = (v.high - v.low) if v.low is not None and v.high is not None else 0.0
    return [
        (v.s, v.c * magnitude),
        (v.q, 0.0),
        (v.low, 0.0),
        (v.high, 0.0),
        (None if v.s is None else v.s / v.c, magnitude),
        (v.std, max(spread + STD_FLOOR * magnitude, STD_UNDERFLOW / ROUNDING)),
        (median, 0.0),
    ]


def time_points(fact: TimeFacts, width: int, b: int) -> tuple[int, int, int]:
    """The expected time mean, first and last time (µs) of a bucket: exact integer facts,
    the mean rounded half to even; an empty bucket's are its middle."""
    middle = b + (width // US_PER_SECOND // 2) * US_PER_SECOND
    mean = b + round(Fraction(fact.toff, fact.tn)) if fact.tn else middle
    return mean, fact.ta if fact.np else middle, fact.tz if fact.np else middle


def interval_values(fact: TimeFacts) -> list[tuple[float | None, float]]:
    """(expected value, scale) of each of ``INTERVAL_LABELS``: None without intervals; each
    float one correctly rounded division of exact integers."""
    if not fact.ic:
        return [(None, 0.0)] * len(INTERVAL_LABELS)
    variance = Fraction(fact.ic * fact.gsq - fact.gsum**2, fact.ic**2)
    longest = fact.gmax / US_PER_SECOND
    return [
        (float(Fraction(fact.gsum, fact.ic * US_PER_SECOND)), 0.0),
        (fact.gmin / US_PER_SECOND, 0.0),
        (longest, 0.0),
        (float(Fraction(fact.gsq, US_PER_SECOND**2)), 0.0),
        (math.sqrt(variance) / US_PER_SECOND,
         (fact.gmax - fact.gmin) / US_PER_SECOND + STD_FLOOR * longest),
    ]


def time_expectations(fact: TimeFacts | None, width: int, b: int) -> dict[str, Expected]:
    """Time downsamplers of a bucket: exact integer facts, finalized in rational arithmetic."""
    fact = fact or TimeFacts()
    mean, first, last = time_points(fact, width, b)
    out = {
        "time_mean": timestamp(from_us(mean), slack_us=1),
        "time_first": timestamp(from_us(first)),
        "time_last": timestamp(from_us(last)),
    }
    out.update((label, close(value, scale))
               for label, (value, scale) in zip(INTERVAL_LABELS, interval_values(fact),
                                                strict=True))
    return out
