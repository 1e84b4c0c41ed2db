"""The partial-state columns of a level row: the one table everything else derives from.

A level row holds the partial state of one bucket, never final results (see
``datastream.downsamplers``). Each column is declared once here: its name, numpy dtype (``str``
for JSON text), group, the value it has in a bucket without points, how rows of one coarser
bucket merge it, and what it means. ``LEVEL_SCHEMA`` (the Arrow schema, in this order), the
value and time state tuples the kernels fill, the integer columns, the empty-bucket rows and the
reduction kernels' output dtypes (``jit.reduction``) all come from this table.

Groups: ``key`` is the bucket start; ``value`` columns are computed by the value kernels (numeric
streams); ``time`` columns by the time kernels (every stream); ``extra`` columns are filled
outside the kernels (medians from raw rows, JSON text).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class StateColumn:
    """One partial-state column of the level rows."""

    name: str
    dtype: type  # np.int64, np.float64, or str (JSON text)
    group: str  # "key", "value", "time" or "extra"
    empty: int | None  # its value in a bucket without points (None: null)
    merge: str  # how the rows of one coarser bucket combine into it
    meaning: str


_I, _F = np.int64, np.float64
_CHAN = "Chan's parallel formula (combine.chan_merge)"

COLUMNS: tuple[StateColumn, ...] = (
    StateColumn("t", _I, "key", None, "start of the coarser bucket", "bucket start (epoch µs)"),
    StateColumn("c", _I, "value", 0, "sum", "number of non-null values"),
    StateColumn("s", _F, "value", None, "sum", "sum of the values"),
    StateColumn("q", _F, "value", None, "sum", "sum of the squared values"),
    StateColumn("l", _F, "value", None, "min", "smallest value"),
    StateColumn("u", _F, "value", None, "max", "largest value"),
    StateColumn("mu", _F, "value", None, f"rebased on the merged minimum, then {_CHAN}",
                "mean minus the smallest value (full precision even near 1e9)"),
    StateColumn("m2", _F, "value", None, _CHAN,
                "sum of squared deviations from the mean (two-pass on raw points): std_dev"),
    StateColumn("n", _F, "extra", None, "recomputed from the raw rows (medians do not merge)",
                "median of the values"),
    StateColumn("x", str, "extra", None,
                "frequency tables added, high-accuracy Decimal states merged",
                "JSON: frequency table (nominal) or {f: table, exact state} (numeric)"),
    StateColumn("np", _I, "time", 0, "sum", "number of points, null values included"),
    StateColumn("tn", _I, "time", None, "sum", "number of points carrying a value"),
    StateColumn("tm", _F, "time", None, "count-weighted mean of the shifted offsets",
                "mean offset (µs) of the points carrying a value from the bucket start"),
    StateColumn("ta", _I, "time", None, "first child's", "timestamp of the first point (µs)"),
    StateColumn("tz", _I, "time", None, "last child's", "timestamp of the last point (µs)"),
    StateColumn("ic", _I, "time", None, "sum, plus the gaps bridging children",
                "number of intervals between consecutive points"),
    StateColumn("isum", _F, "time", None, "sum, plus the bridging gaps",
                "sum of the intervals (s)"),
    StateColumn("il", _F, "time", None, "min, bridging gaps included", "shortest interval (s)"),
    StateColumn("iu", _F, "time", None, "max, bridging gaps included", "longest interval (s)"),
    StateColumn("iq", _F, "time", None, "sum, plus the squared bridging gaps",
                "sum of the squared intervals (s²)"),
    StateColumn("im2", _F, "time", None, f"{_CHAN}, a bridging gap being a set of one",
                "sum of squared deviations of the intervals (s²): intervals_std_dev"),
)

BY_NAME: dict[str, StateColumn] = {column.name: column for column in COLUMNS}
NAMES: tuple[str, ...] = tuple(BY_NAME)
VALUE_STATE: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.group == "value")
TIME_STATE: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.group == "time")
INT_COLUMNS: frozenset[str] = frozenset(c.name for c in COLUMNS if c.dtype is _I)


def dtype(name: str) -> type:
    """The numpy dtype of state column ``name``."""
    return BY_NAME[name].dtype
