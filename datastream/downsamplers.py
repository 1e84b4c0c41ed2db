"""Downsamplers declared as data, and level rows: partial state computed, combined, finalized.

A level row holds the *partial state* of one bucket (``LEVEL_SCHEMA``), never final results:
partial states compose exactly across levels (sums of sums, min of mins, Chan-merged M2, merged
frequency tables, intervals plus the bridging gaps), and finalizing is a cheap per-read step.
The state columns, their dtypes, empty-bucket values and merge rules are one table
(``datastream.kernels.state``, which ``LEVEL_SCHEMA`` comes from). Each downsampler is one
declaration: its key, the value types it applies to, the state columns its finalize rule reads,
whether it needs medians from raw rows or frequency tables, and that rule (the flox
"Aggregation" idea). The numeric work runs in the numba kernels of ``datastream.kernels``; this
module is the registry and the Arrow glue around them.
The slow paths that cannot be vectorised live beside it: ``exact`` (Decimal high-accuracy
state) and ``frequencies`` (frequency tables as JSON); ``raw_numbers`` reads raw rows and
``level_export`` turns finalized columns into Python values or Arrow arrays.

Column notes: ``mu`` holds the bucket mean *minus its minimum* ``l`` (a small number kept to full
precision even for values near 1e9, which Chan's merge needs); the mean itself is ``s / c``.
``x`` holds, for nominal streams, the frequency table ``{canonical JSON: count}``; for numeric
streams a JSON object with ``f`` (that table, when computed) and, in high-accuracy mode, the
Decimal state as text (``c, s, q, l, u, mu`` (the plain mean here), ``m2``, ``n``).

Decisions in detail (beyond behaviour §5.2–§5.4):

* Every float that is undefined (no values, fewer than two points, ...) is null in the rows and
  None after finalize; ``count``/``np``/``tn``/``ic`` are 0 instead.
* Numeric results are floats (``s`` of ints 1..5 is ``15.0``); high-accuracy results Decimals.
* A pre-aggregated dict point (value kind 5) is one non-null point for the time downsamplers; its
  ``c, s, q, l, u`` merge as partial state, its mean ``m`` (else s/c) and ``d`` (M2 = d²·c, else
  q − s²/c) merge with Chan's formula, its ``f`` table merges into the frequencies, and its
  median ``n`` enters the bucket's median pool as one value (a median of medians is not exact,
  but a bucket holding only pre-aggregated items still gets a median).
* Frequency tables of numeric streams are costly, so ``partials_from_raw`` computes them only with
  ``with_frequencies=True`` (default: nominal streams only); without them most_often,
  least_often and frequencies of a numeric stream are None.
* ``most_often``/``least_often``/``frequencies`` are None for a bucket without values (c = 0).
  ``frequencies`` keys are the values themselves for scalars; dict/list values, and scalars whose
  Python keys would collide (``1``, ``1.0``, ``True``), are keyed by canonical JSON.
* Time mean is rounded half-to-even to the microsecond.
* Arrow export: high-accuracy numbers are exact decimal text, most_often/least_often canonical
  JSON text, frequencies ``map<string, int64>`` keyed by canonical JSON.
"""


from __future__ import annotations

import dataclasses
import functools
import itertools
import json
from collections.abc import Callable, Iterable
from decimal import Decimal
from itertools import pairwise
from typing import Any

import numpy as np

from . import arrow_numpy, exceptions, frequencies, level_export
from .exact import HIGH_ACCURACY, ExactState, exact_std, merge_states
from .exact import WIDE as WIDE  # re-exported
from .granularity import US_PER_SECOND
from .kernels import buckets, combine, partials
from .kernels import state as level_state
from .lazy import pa
from .level_export import (
    arrow_column,
    datetime_column,
    float_array,
    frequency_map,
    python_column,
    time_column,
)
from .raw_kinds import KIND_NULL
from .raw_numbers import NumericRaw, item_float_state
from .values import kinds_of

NUMERIC, NOMINAL, GRAPH = "numeric", "nominal", "graph"
ALL_TYPES = frozenset((NUMERIC, NOMINAL, GRAPH))


@functools.cache
def level_schema() -> pa.Schema:
    """The Arrow schema of level rows (``LEVEL_SCHEMA``), built on first use: it needs pyarrow,
    which ``import datastream`` leaves for later (see datastream.lazy)."""
    arrow_types = {np.int64: pa.int64(), np.float64: pa.float64(), str: pa.string()}
    return pa.schema([(c.name, arrow_types[c.dtype]) for c in level_state.COLUMNS])


def __getattr__(name: str) -> Any:
    """``LEVEL_SCHEMA`` and the re-exported ``UTC_MICROS``, once pyarrow is wanted."""
    if name == "LEVEL_SCHEMA":
        value = globals()[name] = level_schema()
        return value
    if name == "UTC_MICROS":
        return level_export.utc_micros()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# == level rows as numpy columns, for the finalize rules ========================================


class Rows:
    """Level rows seen as numpy columns (NaN = null), parsed lazily by the finalize rules.

    ``declared`` (the state columns the chosen downsamplers declare) limits what the rules may
    read, so a declaration missing a column fails at once rather than going unnoticed.
    """

    def __init__(self, table: pa.Table, value_type: str, options: dict | None, width_us: int,
                 declared: Iterable[str] | None = None):
        self.table = table
        self.value_type = value_type
        self.exact = _high_accuracy(value_type, options)
        self.width_us = width_us
        self.size = table.num_rows
        self.declared = None if declared is None else frozenset(declared) | {"t"}
        self._columns: dict[str, np.ndarray] = {}

    def col(self, name: str) -> np.ndarray:
        if name not in self._columns:
            self._check(name)
            self._columns[name] = _column(self.table, name)
        return self._columns[name]

    def _check(self, name: str) -> None:
        if self.declared is not None and name not in self.declared:
            raise KeyError(f"level column {name!r} read but not declared by a downsampler")

    @functools.cached_property
    def c(self) -> np.ndarray:
        return self.col("c")

    @functools.cached_property
    def extras(self) -> list[dict | None]:
        self._check("x")
        return [None if x is None else json.loads(x) for x in self.table.column("x").to_pylist()]

    @functools.cached_property
    def tables(self) -> list[dict | None]:
        """Frequency tables {canonical JSON: count}; None where absent or c = 0."""
        nominal = self.value_type == NOMINAL
        out = []
        for c, extra in zip(self.c, self.extras, strict=True):
            table = extra if nominal else (extra or {}).get("f")
            out.append(table if c > 0 and table is not None else None)
        return out

    @functools.cached_property
    def states(self) -> list[ExactState | None]:
        """High-accuracy partial state per row (None where c = 0)."""
        return [
            ExactState.from_json(e) if c > 0 and e is not None else None
            for c, e in zip(self.c, self.extras, strict=True)
        ]

    def middles(self) -> np.ndarray:
        return self.col("t") + (self.width_us // US_PER_SECOND // 2) * US_PER_SECOND

    def decode(self, canonical: str) -> Any:
        """A value from its canonical JSON text (Decimal for high-accuracy numbers)."""
        return Decimal(canonical) if self.exact else json.loads(canonical)


def _column(table: pa.Table, name: str) -> np.ndarray:
    column = table.column(name)
    if name in level_state.INT_COLUMNS:
        return arrow_numpy.to_numpy(column, 0).astype(np.int64, copy=False)
    return arrow_numpy.to_numpy(column).astype(np.float64, copy=False)


# == declarations ===============================================================================


@dataclasses.dataclass(frozen=True)
class ValueDownsampler:
    """One value downsampler: ``finalize`` maps level rows to one result per row (a float array
    with NaN for None, or a list), ``present`` turns that into the Python values of
    behaviour §5.4.

    ``columns`` are the state columns ``finalize`` reads (the only ones it may read);
    ``requires`` the downsamplers stored with it (behaviour §3.3); ``raw_medians`` asks the
    engine to compute column ``n`` from raw rows at every level (medians do not merge);
    ``frequency_tables`` asks for the frequency tables of numeric streams in column ``x``;
    ``export`` builds the Arrow column of behaviour §6.3 from ``finalize``'s result.
    """

    name: str
    key: str
    value_types: frozenset[str]
    columns: tuple[str, ...]
    requires: tuple[str, ...]
    finalize: Callable[[Rows], np.ndarray | list]
    present: Callable[[Rows, list], list] = lambda rows, column: column
    raw_medians: bool = False
    frequency_tables: bool = False
    export: Callable[[np.ndarray | list], pa.Array] = arrow_column


@dataclasses.dataclass(frozen=True)
class TimeDownsampler:
    """One time downsampler: ``finalize`` (reading only the state ``columns``) gives int64 µs
    (``is_time``) or float seconds."""

    name: str
    key: str
    columns: tuple[str, ...]
    finalize: Callable[[Rows], np.ndarray]
    is_time: bool = False


def _exact_or(float_rule: Callable[[Rows], np.ndarray], exact_rule: Callable) -> Callable:
    """A numeric finalize rule with a Decimal twin for high-accuracy streams."""

    def rule(rows: Rows) -> np.ndarray | list:
        if rows.exact:  # NaN: a pre-aggregated point without that value left it unknown
            return [None if st is None else _known(exact_rule(st)) for st in rows.states]
        with np.errstate(divide="ignore", invalid="ignore"):
            return float_rule(rows)  # value columns are already NaN where c = 0

    return rule


def _known(value: Any) -> Any:
    """None for a Decimal NaN (as NaN floats read as None)."""
    return None if isinstance(value, Decimal) and value.is_nan() else value


def _most(sign: int) -> Callable[[Rows], list]:
    """most_often (sign 1) / least_often (sign -1) of each row's frequency table."""

    def rule(rows: Rows) -> list:
        return [None if t is None else frequencies.most(t, sign) for t in rows.tables]

    return rule


def _present_value(rows: Rows, column: list) -> list:
    return [None if v is None else rows.decode(v) for v in column]


def _present_table(rows: Rows, column: list) -> list:
    return [None if t is None else frequencies.keyed_by_value(t, rows.decode) for t in column]


_NUM = frozenset((NUMERIC,))
_VALUE = [
    ValueDownsampler("count", "c", ALL_TYPES, ("c",), (), lambda r: r.c),
    ValueDownsampler(
        "sum", "s", _NUM, ("c", "s", "x"), ("count",),
        _exact_or(lambda r: r.col("s"), lambda st: HIGH_ACCURACY.plus(st.s)),
    ),
    ValueDownsampler(
        "sum_squares", "q", _NUM, ("c", "q", "x"), ("count",),
        _exact_or(lambda r: r.col("q"), lambda st: HIGH_ACCURACY.plus(st.q)),
    ),
    ValueDownsampler(
        "min", "l", _NUM, ("c", "l", "x"), ("count",),
        _exact_or(lambda r: r.col("l"), lambda st: HIGH_ACCURACY.plus(st.low)),
    ),
    ValueDownsampler(
        "max", "u", _NUM, ("c", "u", "x"), ("count",),
        _exact_or(lambda r: r.col("u"), lambda st: HIGH_ACCURACY.plus(st.high)),
    ),
    ValueDownsampler(
        "mean", "m", _NUM, ("c", "s", "x"), ("count", "sum"),
        _exact_or(lambda r: r.col("s") / r.c, lambda st: HIGH_ACCURACY.divide(st.s, st.c)),
    ),
    # population standard deviation: √(M2 / c); how M2 is computed and merged is column m2 of
    # the state table (two-pass per bucket, Chan's formula across levels)
    ValueDownsampler(
        "std_dev", "d", _NUM, ("c", "m2", "x"), ("count", "sum", "sum_squares"),
        _exact_or(lambda r: np.sqrt(r.col("m2") / r.c), exact_std),
    ),
    ValueDownsampler(
        "median", "n", _NUM, ("c", "n", "x"), ("count",),
        _exact_or(lambda r: r.col("n"), lambda st: st.n), raw_medians=True,
    ),
    ValueDownsampler(
        "most_often", "o", _NUM | {NOMINAL}, ("c", "x"), ("count",), _most(1), _present_value,
        frequency_tables=True,
    ),
    ValueDownsampler(
        "least_often", "r", _NUM | {NOMINAL}, ("c", "x"), ("count",), _most(-1), _present_value,
        frequency_tables=True,
    ),
    ValueDownsampler(
        "frequencies", "f", _NUM | {NOMINAL}, ("c", "x"), ("count",),
        lambda r: r.tables, _present_table, frequency_tables=True, export=frequency_map,
    ),
]


def _time_mean(rows: Rows) -> np.ndarray:
    tm = np.nan_to_num(rows.col("tm"))
    return np.where(rows.col("tn") > 0, rows.col("t") + np.rint(tm).astype(np.int64),
                    rows.middles())


def _interval_rule(column: str) -> Callable[[Rows], np.ndarray]:
    return lambda rows: np.where(rows.col("ic") > 0, rows.col(column), np.nan)


def _interval_ratio(rule: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable:
    def finalize(rows: Rows) -> np.ndarray:
        ic = rows.col("ic")
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(ic > 0, rule(rows, ic), np.nan)

    return finalize


_TIME = [
    TimeDownsampler("mean", "m", ("t", "tn", "tm"), _time_mean, is_time=True),
    TimeDownsampler(
        "first", "a", ("t", "np", "ta"),
        lambda r: np.where(r.col("np") > 0, r.col("ta"), r.middles()), is_time=True,
    ),
    TimeDownsampler(
        "last", "z", ("t", "np", "tz"),
        lambda r: np.where(r.col("np") > 0, r.col("tz"), r.middles()), is_time=True,
    ),
    TimeDownsampler(
        "intervals_mean", "i", ("ic", "isum"), _interval_ratio(lambda r, n: r.col("isum") / n)
    ),
    TimeDownsampler("intervals_min", "l", ("ic", "il"), _interval_rule("il")),
    TimeDownsampler("intervals_max", "u", ("ic", "iu"), _interval_rule("iu")),
    TimeDownsampler("intervals_sum_squares", "q", ("ic", "iq"), _interval_rule("iq")),
    TimeDownsampler(
        "intervals_std_dev", "d", ("ic", "im2"),
        _interval_ratio(lambda r, n: np.sqrt(r.col("im2") / n)),
    ),
]

VALUE_DECLARATIONS: dict[str, ValueDownsampler] = {d.name: d for d in _VALUE}
TIME_DECLARATIONS: dict[str, TimeDownsampler] = {d.name: d for d in _TIME}
VALUE_DOWNSAMPLERS: dict[str, str] = {d.name: d.key for d in _VALUE}
TIME_DOWNSAMPLERS: dict[str, str] = {d.name: d.key for d in _TIME}
DOWNSAMPLERS_BY_VALUE_TYPE: dict[str, tuple[str, ...]] = {
    vt: tuple(d.name for d in _VALUE if vt in d.value_types) for vt in (NUMERIC, NOMINAL, GRAPH)
}
_VALUE_BY_KEY = {d.key: d for d in _VALUE}
_TIME_BY_KEY = {d.key: d for d in _TIME}


def raw_medians(names: Iterable[str]) -> bool:
    """Whether the value downsamplers ``names`` need medians computed from raw rows."""
    return any(VALUE_DECLARATIONS[name].raw_medians for name in names)


def frequency_tables(names: Iterable[str]) -> bool:
    """Whether the value downsamplers ``names`` need frequency tables (costly for numbers)."""
    return any(VALUE_DECLARATIONS[name].frequency_tables for name in names)


# A derived stream fed by a level of a source reads its bucket means (behaviour §7), whatever
# the source's downsamplers: count and sum stay in every numeric level row.
DERIVATION_STATE = ("c", "s")
# Merging rows into a coarser bucket (combine.combine_values) rebuilds M2 from the children's
# mean offsets, and a mean offset from the children's minimums.
MERGE_NEEDS = {"m2": ("mu", "l"), "mu": ("l",)}


def kept_value_state(value_type: str, options: dict | None, names: Iterable[str]) -> frozenset[str]:
    """The value-state columns the level rows of a stream keep: what its stored downsamplers
    read, what merging those needs, and count and sum. A mean/min/max stream keeps no sum of
    squares, mean offset or M2, which for full-entropy values are a third of a level row.
    High-accuracy and non-numeric streams keep every column (their exact state is in ``x``)."""
    if value_type != NUMERIC or _high_accuracy(value_type, options):
        return frozenset(partials.VALUE_STATE)
    kept = set(DERIVATION_STATE)
    for name in names:
        kept.update(VALUE_DECLARATIONS[name].columns)
    while True:  # until nothing more is needed: m2 adds mu, which adds l
        needed = {column for name in kept for column in MERGE_NEEDS.get(name, ())}
        if needed <= kept:
            break
        kept |= needed
    return frozenset(kept & set(partials.VALUE_STATE))


def without_unkept_state(rows: pa.Table, kept: frozenset[str]) -> pa.Table:
    """``rows`` with the value-state columns outside ``kept`` set to null (they then cost
    nothing to encode or store)."""
    for name in partials.VALUE_STATE:
        if name in kept:
            continue
        index = rows.schema.get_field_index(name)
        if index >= 0 and rows.column(index).null_count < rows.num_rows:
            rows = rows.set_column(index, rows.schema.field(index),
                                   pa.nulls(rows.num_rows, rows.schema.field(index).type))
    return rows


def _declared(values: Iterable[ValueDownsampler], times: Iterable[TimeDownsampler]) -> set[str]:
    return {name for d in (*values, *times) for name in d.columns}


def with_dependencies(names: Iterable[str]) -> set[str]:
    """The stored set for a requested set (behaviour §3.3 rule 6): a non-empty set gains count, mean
    gains sum and count, std_dev gains sum, count and sum_squares."""
    chosen = set(names)
    unknown = chosen - VALUE_DECLARATIONS.keys()
    if unknown:
        raise exceptions.UnsupportedDownsampler(f"unknown value downsamplers {sorted(unknown)!r}")
    for name in list(chosen):
        chosen.update(VALUE_DECLARATIONS[name].requires)
    return chosen


# == partial state from raw rows ================================================================


def _high_accuracy(value_type: str, options: dict | None) -> bool:
    return value_type == NUMERIC and bool((options or {}).get("high_accuracy"))


def partials_from_raw(
    raw: pa.Table,
    value_type: str,
    options: dict | None,
    width_us: int,
    with_median: bool,
    *,
    with_frequencies: bool | None = None,
) -> pa.Table:
    """LEVEL_SCHEMA rows (one per bucket holding a point) of raw rows sorted by ``t``.

    ``with_frequencies`` (default: only for nominal streams) builds the frequency tables that
    most_often / least_often / frequencies of numeric streams need.
    """
    if raw.num_rows == 0:
        return arrow_numpy.empty_table(level_schema())
    if with_frequencies is None:
        with_frequencies = value_type == NOMINAL
    t = arrow_numpy.to_numpy(raw.column("t")).astype(np.int64, copy=False)
    kinds = kinds_of(raw)
    starts, bounds = buckets.segment(t, width_us)
    columns: dict[str, Any] = {"t": starts}
    columns.update(partials.raw_time_state(t, kinds != KIND_NULL, starts, bounds))
    if value_type == NUMERIC:
        exact = _high_accuracy(value_type, options)
        columns.update(_numeric_from_raw(NumericRaw.of(raw), bounds, exact, with_median,
                                         with_frequencies))
    else:
        columns["c"] = columns["tn"]
        if value_type == NOMINAL:
            columns["x"] = frequencies.tables(*frequencies.nominal_codes(raw, kinds), bounds)
    return _level_table(columns, len(starts))


def _numeric_from_raw(
    nr: NumericRaw, bounds: np.ndarray, exact: bool, with_median: bool, with_frequencies: bool
) -> dict[str, Any]:
    out = partials.raw_value_state(nr.x, nr.valid, bounds)
    segments = nr.item_segments(bounds)
    if nr.items.size:
        out = _with_items(out, segments, [item_float_state(d) for d in nr.parsed])
    out["n"] = nr.medians(bounds) if with_median else None
    if not (exact or with_frequencies):
        return out
    extras: list[dict] = [{} for _ in range(len(bounds) - 1)]
    if exact:
        medians = nr.exact_medians(bounds) if with_median else [None] * len(extras)
        for extra, state, median in zip(extras, nr.exact_states(bounds), medians, strict=True):
            if state is not None:
                state.n = median
                extra.update(state.to_json())
    if with_frequencies:
        codes = frequencies.numeric_codes(nr.raw, nr.kinds, nr.x, exact)
        tables = frequencies.tables(*codes, bounds)
        for j, d in zip(segments.tolist(), nr.parsed, strict=True):
            if d.get("f"):
                tables[j] = frequencies.add_tables([tables[j], d["f"]])
        for extra, table in zip(extras, tables, strict=True):
            if table:
                extra["f"] = table
    out["x"] = [e or None for e in extras]
    return out


def _with_items(state: dict, item_segment: np.ndarray, items: list[dict]) -> dict:
    """Merge pre-aggregated items into the value state of their segments."""
    nb = len(state["c"])
    owner = np.concatenate([np.arange(nb), item_segment])
    ordering = np.argsort(owner, kind="stable")
    child = {}
    for name in partials.VALUE_STATE:
        extra = np.array([item[name] for item in items], dtype=state[name].dtype)
        child[name] = np.concatenate([state[name], extra])[ordering]
    bounds = np.searchsorted(owner[ordering], np.arange(nb + 1)).astype(np.int64)
    return combine.merge_value_state(child, bounds)


# == combining levels ===========================================================================


def combine_partials(
    child: pa.Table,
    width_us: int,
    value_type: str,
    options: dict | None,
    raw: pa.Table | None = None,
) -> pa.Table:
    """Rows of the level of ``width_us`` from child rows of a finer (or equal) level sorted by
    ``t``. Medians cannot be merged: with ``raw`` (the raw rows of the same span) they are
    recomputed from it, otherwise they are null."""
    if child.num_rows == 0:
        return arrow_numpy.empty_table(level_schema())
    child_t = _column(child, "t")
    if np.any(np.diff(child_t) < 0):
        child = child.take(arrow_numpy.from_numpy(np.argsort(child_t, kind="stable")))
        child_t = _column(child, "t")
    starts, bounds = buckets.segment(child_t, width_us)
    state = {name: _column(child, name) for name in combine.combine_times.reads}
    columns: dict[str, Any] = {"t": starts}
    columns.update(combine.combine_times(bounds, state, starts=starts))
    groups = None
    if "x" in child.column_names and child.column("x").null_count < child.num_rows:
        parsed = [None if x is None else json.loads(x) for x in child.column("x").to_pylist()]
        groups = [parsed[a:b] for a, b in pairwise(bounds.tolist())]
    if value_type == NUMERIC:
        exact = _high_accuracy(value_type, options)
        values = {name: _column(child, name) for name in combine.combine_values.reads}
        columns.update(combine.combine_values(bounds, values))
        columns["x"] = _combine_numeric_extras(groups, exact) if groups else None
        if raw is not None and raw.num_rows:
            _medians_from_raw(columns, raw, width_us, exact)
    else:
        columns["c"] = np.add.reduceat(_column(child, "c"), bounds[:-1])
        if value_type == NOMINAL and groups:
            columns["x"] = [frequencies.add_tables(group) for group in groups]
    keep = columns["np"] > 0
    table = _level_table(columns, len(starts))
    return table if keep.all() else table.filter(arrow_numpy.from_numpy(keep))


def _combine_numeric_extras(groups: list[list], exact: bool) -> list[dict | None]:
    out = []
    for group in groups:
        extra: dict = {}
        if exact:
            total = merge_states([ExactState.from_json(x) if x else None for x in group])
            if total is not None:
                extra.update(total.to_json())
        table = frequencies.add_tables(x.get("f") for x in group if x)
        if table:
            extra["f"] = table
        out.append(extra or None)
    return out


def _medians_from_raw(columns: dict, raw: pa.Table, width_us: int, exact: bool) -> None:
    """Set the median (and, high-accuracy, its exact text) of every bucket from raw rows."""
    raw_t = arrow_numpy.to_numpy(raw.column("t")).astype(np.int64, copy=False)
    raw_starts, raw_bounds = buckets.segment(raw_t, width_us)
    nr = NumericRaw.of(raw)
    at = np.searchsorted(columns["t"], raw_starts)
    hit = at < len(columns["t"])
    hit[hit] = columns["t"][at[hit]] == raw_starts[hit]
    columns["n"] = np.full(len(columns["t"]), np.nan)
    columns["n"][at[hit]] = nr.medians(raw_bounds)[hit]
    if exact and columns["x"] is not None:
        medians = nr.exact_medians(raw_bounds)
        for position, j in zip(at[hit].tolist(), np.flatnonzero(hit).tolist(), strict=True):
            extra = columns["x"][position]
            if extra is not None and "mu" in extra and medians[j] is not None:
                extra["n"] = str(medians[j])


# == building tables ============================================================================


def _level_table(columns: dict[str, Any], size: int) -> pa.Table:
    arrays = []
    for field in level_schema():
        value = columns.get(field.name)
        if value is None:
            arrays.append(pa.nulls(size, field.type))
        elif field.name == "x":
            texts = [None if e is None else frequencies.canonical(e) for e in value]
            arrays.append(arrow_numpy.texts(texts))
        elif field.type == pa.float64():
            arrays.append(float_array(value))
        elif isinstance(value, np.ndarray):
            arrays.append(arrow_numpy.of_type(value, field.type))
        else:
            arrays.append(pa.array(value, field.type))
    return pa.Table.from_arrays(arrays, schema=level_schema())


def fill_empty(rows: pa.Table, start_us: int, end_us: int, width_us: int) -> pa.Table:
    """``rows`` plus a row for every bucket starting in [start_us, end_us) that has none (c = 0,
    np = 0, all else null), sorted by t. Empty buckets are generated on read, never stored."""
    first = -(-start_us // width_us) * width_us
    if first >= end_us:
        return rows
    every = np.arange(first, end_us, width_us, dtype=np.int64)
    present = arrow_numpy.to_numpy(rows.column("t")).astype(np.int64, copy=False)
    missing = every[~np.isin(every, present)]
    if missing.size == 0:
        return rows
    arrays = []
    for field in rows.schema:
        column = level_state.BY_NAME.get(field.name)
        if field.name == "t":
            arrays.append(arrow_numpy.of_type(missing, field.type))
        elif column is not None and column.empty is not None:
            arrays.append(arrow_numpy.of_type(np.full(missing.size, column.empty), field.type))
        else:
            arrays.append(pa.nulls(missing.size, field.type))
    empty = pa.Table.from_arrays(arrays, schema=rows.schema)
    both = pa.concat_tables([rows, empty])
    ordering = np.argsort(np.concatenate([present, missing]), kind="stable")
    return both.take(arrow_numpy.from_numpy(ordering))


# == finalize ===================================================================================


def _chosen_value(value_type: str, keys: Iterable[str] | None, by: str) -> list[ValueDownsampler]:
    allowed = DOWNSAMPLERS_BY_VALUE_TYPE[value_type]
    if keys is None:
        return [VALUE_DECLARATIONS[n] for n in allowed]
    wanted = set(keys)
    lookup = _VALUE_BY_KEY if by == "key" else VALUE_DECLARATIONS
    unknown = [k for k in wanted if k not in lookup or lookup[k].name not in allowed]
    if unknown:
        raise exceptions.UnsupportedDownsampler(
            f"value downsamplers {sorted(unknown)!r} do not apply to {value_type} values"
        )
    return [d for d in _VALUE if (d.key if by == "key" else d.name) in wanted]


def _chosen_time(keys: Iterable[str] | None, by: str) -> list[TimeDownsampler]:
    if keys is None:
        return list(_TIME)
    wanted = set(keys)
    lookup = _TIME_BY_KEY if by == "key" else TIME_DECLARATIONS
    unknown = [k for k in wanted if k not in lookup]
    if unknown:
        raise exceptions.UnsupportedDownsampler(f"unknown time downsamplers {sorted(unknown)!r}")
    return [d for d in _TIME if (d.key if by == "key" else d.name) in wanted]


def finalize(
    rows: pa.Table,
    value_type: str,
    options: dict | None,
    value_keys: Iterable[str] | None,
    time_keys: Iterable[str] | None,
    width_us: int,
    *,
    values_asked: bool = False,
) -> list[dict]:
    """behaviour §5.4 datapoints ``{'t': {time key: ...}, 'v': {value key: ...}}`` of level rows, in
    row order; an empty key filter drops ``'t'`` or ``'v'`` (None = every applicable key).
    ``values_asked``: the reader named value downsamplers, none of which the stream keeps, so
    ``value_keys`` is empty but ``'v'`` stays, as ``{}`` (only an empty filter removes it)."""
    chosen_values = _chosen_value(value_type, value_keys, "key")
    chosen_times = _chosen_time(time_keys, "key")
    view = Rows(rows, value_type, options, width_us, _declared(chosen_values, chosen_times))
    values = [(d.key, d.present(view, python_column(d.finalize(view)))) for d in chosen_values]
    times = []
    for d in chosen_times:
        column = d.finalize(view)
        times.append((d.key, datetime_column(column) if d.is_time else python_column(column)))
    # whole columns become Python values above; here each row only gets its dicts, built by
    # map/zip in C (every column holds view.size values)
    time_dicts = _row_dicts([k for k, _ in times], [c for _, c in times], view.size)
    value_dicts = _row_dicts([k for k, _ in values], [c for _, c in values], view.size)
    shows_values = bool(values) or values_asked
    if not values:  # no columns to zip: an empty dict per row
        value_dicts = ({} for _ in range(view.size))
    if times and shows_values:
        return [{"t": t, "v": v} for t, v in zip(time_dicts, value_dicts)]
    if times:
        return [{"t": t} for t in time_dicts]
    if shows_values:
        return [{"v": v} for v in value_dicts]
    return [{} for _ in range(view.size)]


def _row_dicts(keys: list[str], columns: list[list], rows: int) -> Iterable[dict]:
    """One ``{key: value}`` dict per row of ``columns`` (lazily), each ``rows`` long."""
    if any(len(column) != rows for column in columns):
        raise ValueError("finalized columns differ in length from the level rows")
    return map(dict, map(zip, itertools.repeat(keys), zip(*columns)))


def finalize_arrow(
    rows: pa.Table,
    value_type: str,
    options: dict | None,
    value_names: Iterable[str] | None,
    time_names: Iterable[str] | None,
    width_us: int,
) -> pa.Table:
    """Columnar finalize (behaviour §6.3): ``t`` (bucket start), one column per value downsampler
    named by its name, time downsamplers as ``time_<name>``."""
    chosen_values = _chosen_value(value_type, value_names, "name")
    chosen_times = _chosen_time(time_names, "name")
    view = Rows(rows, value_type, options, width_us, _declared(chosen_values, chosen_times))
    columns = {"t": time_column(view.col("t"), True)}
    for d in chosen_values:
        columns[d.name] = d.export(d.finalize(view))
    for d in chosen_times:
        columns[f"time_{d.name}"] = time_column(d.finalize(view), d.is_time)
    return pa.table(columns)
