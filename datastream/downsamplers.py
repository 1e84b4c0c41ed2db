"""Downsamplers declared as data, and level rows: partial state computed, combined, finalized.

A level row holds the *partial state* of one bucket (``LEVEL_SCHEMA``), never final results:
partial states compose exactly across levels (sums of sums, min of mins, Chan-merged M2, merged
frequency tables, intervals plus the bridging gaps), and finalizing is a cheap per-read step. Each
downsampler is one declaration: its key, the value types it applies to, the partial columns it
reads and its finalize rule (the flox "Aggregation" idea). The numeric work runs in the numba
kernels of ``datastream.kernels``; this module is the Arrow glue around them plus the two exact
slow paths that cannot be vectorised (Decimal high-accuracy state, frequency tables as JSON).

Column notes: ``mu`` holds the bucket mean *minus its minimum* ``l`` (a small number kept to full
precision even for values near 1e9, which Chan's merge needs); the mean itself is ``s / c``.
``x`` holds, for nominal streams, the frequency table ``{canonical JSON: count}``; for numeric
streams a JSON object with ``f`` (that table, when computed) and, in high-accuracy mode, the
Decimal state as text (``c, s, q, l, u, mu`` (the plain mean here), ``m2``, ``n``).

Decisions where SPEC is silent:

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
import decimal
import functools
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from itertools import pairwise
from typing import Any

import numpy as np
import pyarrow as pa

from . import exceptions
from .granularity import US_PER_SECOND, from_us
from .kernels import buckets, combine, order, partials

NUMERIC, NOMINAL, GRAPH = "numeric", "nominal", "graph"
ALL_TYPES = frozenset((NUMERIC, NOMINAL, GRAPH))

# Results are rounded to 64 significant digits (SPEC §5.1); partial sums keep far more so that
# summing many 64-digit values stays exact before the final rounding (40·e / 40 == e).
HIGH_ACCURACY = decimal.Context(prec=64)
WIDE = decimal.Context(prec=256, Emax=999_999, Emin=-999_999)

LEVEL_SCHEMA = pa.schema(
    [
        ("t", pa.int64()),
        ("c", pa.int64()),
        ("s", pa.float64()),
        ("q", pa.float64()),
        ("l", pa.float64()),
        ("u", pa.float64()),
        ("mu", pa.float64()),
        ("m2", pa.float64()),
        ("n", pa.float64()),
        ("x", pa.string()),
        ("np", pa.int64()),
        ("tn", pa.int64()),
        ("tm", pa.float64()),
        ("ta", pa.int64()),
        ("tz", pa.int64()),
        ("ic", pa.int64()),
        ("isum", pa.float64()),
        ("il", pa.float64()),
        ("iu", pa.float64()),
        ("iq", pa.float64()),
        ("im2", pa.float64()),
    ]
)
_INT_COLUMNS = frozenset(f.name for f in LEVEL_SCHEMA if f.type == pa.int64())


# == level rows as numpy columns, for the finalize rules ========================================


class Rows:
    """Level rows seen as numpy columns (NaN = null), parsed lazily by the finalize rules."""

    def __init__(self, table: pa.Table, value_type: str, options: dict | None, width_us: int):
        self.table = table
        self.value_type = value_type
        self.exact = _high_accuracy(value_type, options)
        self.width_us = width_us
        self.size = table.num_rows
        self._columns: dict[str, np.ndarray] = {}

    def col(self, name: str) -> np.ndarray:
        if name not in self._columns:
            self._columns[name] = _column(self.table, name)
        return self._columns[name]

    @functools.cached_property
    def c(self) -> np.ndarray:
        return self.col("c")

    @functools.cached_property
    def extras(self) -> list[dict | None]:
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
    if name in _INT_COLUMNS:
        if column.null_count:
            column = column.fill_null(0)
        return np.asarray(column.to_numpy(), dtype=np.int64)
    return np.asarray(column.to_numpy(), dtype=np.float64)


def _float_array(values: np.ndarray) -> pa.Array:
    """Arrow float64 with NaN as null (zero-copy when nothing is NaN)."""
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    return pa.array(values, mask=missing) if missing.any() else pa.array(values)


# == declarations ===============================================================================


@dataclasses.dataclass(frozen=True)
class ValueDownsampler:
    """One value downsampler: ``finalize`` maps level rows to one result per row (a float array
    with NaN for None, or a list), ``present`` turns that into the Python values of SPEC §5.4."""

    name: str
    key: str
    value_types: frozenset[str]
    partials: tuple[str, ...]
    requires: tuple[str, ...]
    finalize: Callable[[Rows], np.ndarray | list]
    present: Callable[[Rows, list], list] = lambda rows, column: column


@dataclasses.dataclass(frozen=True)
class TimeDownsampler:
    """One time downsampler: ``finalize`` gives int64 µs (``is_time``) or float seconds."""

    name: str
    key: str
    partials: tuple[str, ...]
    finalize: Callable[[Rows], np.ndarray]
    is_time: bool = False


def _exact_or(float_rule: Callable[[Rows], np.ndarray], exact_rule: Callable) -> Callable:
    """A numeric finalize rule with a Decimal twin for high-accuracy streams."""

    def rule(rows: Rows) -> np.ndarray | list:
        if rows.exact:
            return [None if st is None else exact_rule(st) for st in rows.states]
        with np.errstate(divide="ignore", invalid="ignore"):
            return float_rule(rows)  # value columns are already NaN where c = 0

    return rule


def _most(sign: int) -> Callable[[Rows], list]:
    """most_often (sign 1) / least_often (sign -1): ties go to the smallest canonical JSON."""

    def rule(rows: Rows) -> list:
        return [
            None if t is None else min(t.items(), key=lambda kv: (-sign * kv[1], kv[0]))[0]
            for t in rows.tables
        ]

    return rule


def _present_value(rows: Rows, column: list) -> list:
    return [None if v is None else rows.decode(v) for v in column]


def _present_table(rows: Rows, column: list) -> list:
    return [None if t is None else _keyed_by_value(rows, t) for t in column]


def _keyed_by_value(rows: Rows, table: dict[str, int]) -> dict:
    """Keys are the values; dict/list values, and scalars that are one Python key (1, 1.0,
    True), are keyed by their canonical JSON."""
    decoded = [(text, rows.decode(text), count) for text, count in table.items()]
    scalars = Counter(v for _, v, _ in decoded if not isinstance(v, (dict, list)))
    return {
        (text if isinstance(value, (dict, list)) or scalars[value] > 1 else value): count
        for text, value, count in decoded
    }


def _exact_std(state: ExactState) -> Decimal:
    if state.m2.is_zero():
        return Decimal(0)
    return HIGH_ACCURACY.sqrt(WIDE.divide(state.m2, state.c))


def _std(rows: Rows) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(rows.col("m2") / rows.c)


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
    ValueDownsampler(
        "std_dev", "d", _NUM, ("c", "m2", "x"), ("count", "sum", "sum_squares"),
        _exact_or(_std, lambda st: _exact_std(st)),
    ),
    ValueDownsampler(
        "median", "n", _NUM, ("c", "n", "x"), ("count",),
        _exact_or(lambda r: r.col("n"), lambda st: st.n),
    ),
    ValueDownsampler(
        "most_often", "o", _NUM | {NOMINAL}, ("c", "x"), ("count",), _most(1), _present_value
    ),
    ValueDownsampler(
        "least_often", "r", _NUM | {NOMINAL}, ("c", "x"), ("count",), _most(-1), _present_value
    ),
    ValueDownsampler(
        "frequencies", "f", _NUM | {NOMINAL}, ("c", "x"), ("count",),
        lambda r: r.tables, _present_table,
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


def with_dependencies(names: Iterable[str]) -> set[str]:
    """The stored set for a requested set (SPEC §3.3 rule 6): a non-empty set gains count, mean
    gains sum and count, std_dev gains sum, count and sum_squares."""
    chosen = set(names)
    unknown = chosen - VALUE_DECLARATIONS.keys()
    if unknown:
        raise exceptions.UnsupportedDownsampler(f"unknown value downsamplers {sorted(unknown)!r}")
    for name in list(chosen):
        chosen.update(VALUE_DECLARATIONS[name].requires)
    return chosen


# == high-accuracy partial state ================================================================


@dataclasses.dataclass
class ExactState:
    """Decimal partial state of one bucket (high-accuracy streams), kept in ``x`` as text."""

    c: int
    s: Decimal
    q: Decimal
    low: Decimal
    high: Decimal
    mu: Decimal
    m2: Decimal
    n: Decimal | None = None

    @classmethod
    def of(cls, value: Decimal) -> ExactState:
        return cls(1, value, WIDE.multiply(value, value), value, value, value, Decimal(0))

    @classmethod
    def from_item(cls, item: dict) -> ExactState | None:
        """State of a pre-aggregated dict (None when it holds no values)."""
        c = int(item.get("c") or 0)
        if c <= 0:
            return None
        nan = Decimal("NaN")
        num = {k: Decimal(str(item[k])) for k in "sqlumd" if item.get(k) is not None}
        s, q = num.get("s", nan), num.get("q", nan)
        mu = num["m"] if "m" in num else WIDE.divide(s, c)
        if "d" in num:
            m2 = WIDE.multiply(WIDE.multiply(num["d"], num["d"]), c)
        else:
            m2 = WIDE.subtract(q, WIDE.divide(WIDE.multiply(s, s), c))
            m2 = m2 if m2.is_nan() or m2 > 0 else Decimal(0)
        return cls(c, s, q, num.get("l", nan), num.get("u", nan), mu, m2)

    def merge(self, other: ExactState) -> None:
        """Absorb ``other`` (Chan's formula for mean and M2)."""
        n = self.c + other.c
        delta = WIDE.subtract(other.mu, self.mu)
        weight = WIDE.divide(other.c, n)
        self.mu = WIDE.add(self.mu, WIDE.multiply(delta, weight))
        pooled = WIDE.multiply(WIDE.multiply(delta, delta), WIDE.multiply(self.c, weight))
        self.m2 = WIDE.add(WIDE.add(self.m2, other.m2), pooled)
        self.s = WIDE.add(self.s, other.s)
        self.q = WIDE.add(self.q, other.q)
        self.low = _nan_min(self.low, other.low)
        self.high = _nan_min(self.high.copy_negate(), other.high.copy_negate()).copy_negate()
        self.c = n

    def to_json(self) -> dict:
        numbers = (self.s, self.q, self.low, self.high, self.mu, self.m2)
        out: dict[str, Any] = {"c": self.c}
        out.update({k: str(v) for k, v in zip(_EXACT_KEYS, numbers, strict=True)})
        if self.n is not None:
            out["n"] = str(self.n)
        return out

    @classmethod
    def from_json(cls, data: dict) -> ExactState | None:
        if "mu" not in data:
            return None
        n = data.get("n")
        return cls(
            int(data["c"]), *(Decimal(data[k]) for k in _EXACT_KEYS),
            n=None if n is None else Decimal(n),
        )


_EXACT_KEYS = ("s", "q", "l", "u", "mu", "m2")


def _nan_min(a: Decimal, b: Decimal) -> Decimal:
    if a.is_nan():
        return b
    if b.is_nan():
        return a
    return min(a, b)


def _exact_median(values: list[Decimal]) -> Decimal | None:
    if not values:
        return None
    values = sorted(values)
    half = len(values) // 2
    if len(values) % 2:
        return values[half]
    return HIGH_ACCURACY.divide(WIDE.add(values[half - 1], values[half]), 2)


def _merge_exact(states: Sequence[ExactState | None]) -> ExactState | None:
    total = None
    for state in states:
        if state is None:
            continue
        if total is None:
            total = dataclasses.replace(state, n=None)
        else:
            total.merge(state)
    return total


# == raw rows → numbers, codes, items ===========================================================


def _high_accuracy(value_type: str, options: dict | None) -> bool:
    return value_type == NUMERIC and bool((options or {}).get("high_accuracy"))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _kinds(raw: pa.Table) -> np.ndarray:
    kinds = raw.column("k")
    return np.asarray((kinds.fill_null(0) if kinds.null_count else kinds).to_numpy(), np.int8)


def _texts(raw: pa.Table, where: np.ndarray) -> list:
    return raw.column("s").take(pa.array(where)).to_pylist()


def _numeric_values(raw: pa.Table, kinds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float view of the plain numbers (kinds 1, 2, 3) and the mask of points that have one."""
    floats = _column(raw, "f")
    if raw.column("i").null_count == raw.num_rows and not (kinds == 3).any():
        return floats, (kinds == 2) & ~np.isnan(floats)  # the common all-float case
    ints = np.asarray(raw.column("i").fill_null(0).to_numpy(), dtype=np.int64)
    x = np.where(kinds == 1, ints.astype(np.float64), floats)
    exact = np.flatnonzero(kinds == 3)
    if exact.size:
        x[exact] = [float(Decimal(text)) for text in _texts(raw, exact)]
    valid = ((kinds == 1) | (kinds == 2) | (kinds == 3)) & ~np.isnan(x)
    return x, valid


def _exact_values(raw: pa.Table, kinds: np.ndarray) -> list[Decimal | None]:
    """Decimal of every plain number (None elsewhere): the high-accuracy slow path."""
    out: list[Decimal | None] = [None] * len(kinds)
    columns = {k: raw.column(k).to_pylist() for k in "ifs"}
    for p in np.flatnonzero((kinds == 1) | (kinds == 2) | (kinds == 3)).tolist():
        kind = kinds[p]
        if kind == 1:
            out[p] = Decimal(columns["i"][p])
        elif kind == 2:
            out[p] = None if math.isnan(columns["f"][p]) else Decimal(repr(columns["f"][p]))
        else:
            out[p] = Decimal(columns["s"][p])
    return out


def _numeric_codes(raw: pa.Table, kinds: np.ndarray, x: np.ndarray, exact: bool):
    """Codes of the plain numbers by canonical text (-1 elsewhere) and the sorted texts."""
    texts_by_group = []
    codes = np.full(len(kinds), -1, np.int64)
    groups = []
    ints = np.flatnonzero(kinds == 1)
    if ints.size:
        column = np.asarray(raw.column("i").fill_null(0).to_numpy(), dtype=np.int64)
        uniq, inv = np.unique(column[ints], return_inverse=True)
        groups.append((ints, inv, [str(int(v)) for v in uniq]))
    floats = np.flatnonzero(((kinds == 2) | ((kinds == 3) & (not exact))) & ~np.isnan(x))
    if floats.size:
        uniq, inv = np.unique(x[floats], return_inverse=True)
        groups.append((floats, inv, [repr(float(v)) for v in uniq]))
    if exact and (kinds == 3).any():
        where = np.flatnonzero(kinds == 3)
        uniq, inv = np.unique(np.array(_texts(raw, where), dtype=object), return_inverse=True)
        groups.append((where, inv, [str(Decimal(v)) for v in uniq]))
    offset = 0
    for where, inv, texts in groups:
        codes[where] = inv + offset
        offset += len(texts)
        texts_by_group.extend(texts)
    return _recode(codes, texts_by_group)


def _nominal_codes(raw: pa.Table, kinds: np.ndarray):
    """Codes of the JSON values (-1 for nulls) by canonical JSON, and the sorted texts."""
    encoded = raw.column("s").combine_chunks().dictionary_encode()
    codes = np.asarray(encoded.indices.fill_null(-1).to_numpy(), dtype=np.int64)
    codes[kinds != 4] = -1
    texts = [_canonical(json.loads(v)) for v in encoded.dictionary.to_pylist()]
    return _recode(codes, texts)


def _recode(codes: np.ndarray, texts: list[str]) -> tuple[np.ndarray, list[str]]:
    """Merge codes whose texts are equal; new codes follow the sorted texts."""
    if not texts:
        return codes, []
    uniq, inv = np.unique(np.array(texts, dtype=object), return_inverse=True)
    mapped = np.where(codes >= 0, inv[np.maximum(codes, 0)], -1)
    return mapped.astype(np.int64), uniq.tolist()


def _frequency_tables(
    codes: np.ndarray, texts: list[str], bounds: np.ndarray
) -> list[dict[str, int] | None]:
    """{canonical JSON: count} per segment (None where the segment has no value)."""
    nb = len(bounds) - 1
    segment_of, code, count = order.code_counts(codes, bounds, len(texts))
    splits = np.searchsorted(segment_of, np.arange(nb + 1))
    labels = np.array(texts, dtype=object)
    out: list[dict[str, int] | None] = [None] * nb
    counts = count.tolist()
    for j in np.flatnonzero(np.diff(splits)).tolist():
        a, b = splits[j], splits[j + 1]
        out[j] = dict(zip(labels[code[a:b]].tolist(), counts[a:b], strict=True))
    return out


def _item_float_state(item: dict) -> tuple:
    """(c, s, q, l, u, mu, m2) of a pre-aggregated dict, NaN for what it does not carry."""
    c = int(item.get("c") or 0)
    if c <= 0:
        return (0,) + (np.nan,) * 6

    def num(key: str) -> float:
        value = item.get(key)
        return np.nan if value is None else float(value)

    s, q, d, mean, low = num("s"), num("q"), num("d"), num("m"), num("l")
    if math.isnan(mean):
        mean = s / c
    m2 = d * d * c if not math.isnan(d) else max(q - s * s / c, 0.0)
    offset = mean if math.isnan(low) else mean - low  # the kernels keep means as mean - min
    return c, s, q, low, num("u"), offset, m2


# == partial state from raw rows ================================================================


@dataclasses.dataclass
class _NumericRaw:
    """The numbers of numeric raw rows: a float view for the kernels, the pre-aggregated items
    (kind 5) parsed, and on demand the exact Decimals of the high-accuracy slow path."""

    raw: pa.Table
    kinds: np.ndarray
    x: np.ndarray
    valid: np.ndarray
    items: np.ndarray
    parsed: list[dict]

    @classmethod
    def of(cls, raw: pa.Table) -> _NumericRaw:
        kinds = _kinds(raw)
        x, valid = _numeric_values(raw, kinds)
        items = np.flatnonzero(kinds == 5)
        parsed = [json.loads(v) for v in _texts(raw, items)] if items.size else []
        return cls(raw, kinds, x, valid, items, parsed)

    @functools.cached_property
    def numbers(self) -> list[Decimal | None]:
        return _exact_values(self.raw, self.kinds)

    def item_segments(self, bounds: np.ndarray) -> np.ndarray:
        return np.searchsorted(bounds, self.items, side="right") - 1

    def medians(self, bounds: np.ndarray) -> np.ndarray:
        """Float median per segment; an item's own median ``n`` counts as one value."""
        pool, valid = self.x, self.valid
        if self.items.size:
            item_n = np.array([np.nan if d.get("n") is None else float(d["n"])
                               for d in self.parsed])
            pool, valid = pool.copy(), valid.copy()
            pool[self.items] = item_n
            valid[self.items] = ~np.isnan(item_n)
        return order.medians(pool, valid, bounds)

    def exact_medians(self, bounds: np.ndarray) -> list[Decimal | None]:
        pools: list[list[Decimal]] = [[] for _ in range(len(bounds) - 1)]
        numbers = self.numbers
        for j, (a, b) in enumerate(pairwise(bounds.tolist())):
            pools[j] = [v for v in numbers[a:b] if v is not None]
        for j, d in zip(self.item_segments(bounds).tolist(), self.parsed, strict=True):
            if d.get("n") is not None:
                pools[j].append(Decimal(str(d["n"])))
        return [_exact_median(pool) for pool in pools]

    def exact_states(self, bounds: np.ndarray) -> list[ExactState | None]:
        by_point = dict(zip(self.items.tolist(), map(ExactState.from_item, self.parsed),
                            strict=True))
        numbers = self.numbers
        out = []
        for a, b in pairwise(bounds.tolist()):
            out.append(_merge_exact([
                ExactState.of(numbers[p]) if numbers[p] is not None else by_point.get(p)
                for p in range(a, b)
            ]))
        return out


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
        return LEVEL_SCHEMA.empty_table()
    if with_frequencies is None:
        with_frequencies = value_type == NOMINAL
    t = np.asarray(raw.column("t").to_numpy(), dtype=np.int64)
    kinds = _kinds(raw)
    starts, bounds = buckets.segment(t, width_us)
    columns: dict[str, Any] = {"t": starts}
    columns.update(partials.raw_time_state(t, kinds != 0, starts, bounds))
    if value_type == NUMERIC:
        exact = _high_accuracy(value_type, options)
        columns.update(_numeric_from_raw(_NumericRaw.of(raw), bounds, exact, with_median,
                                         with_frequencies))
    else:
        columns["c"] = columns["tn"]
        if value_type == NOMINAL:
            columns["x"] = _frequency_tables(*_nominal_codes(raw, kinds), bounds)
    return _level_table(columns, len(starts))


def _numeric_from_raw(
    nr: _NumericRaw, bounds: np.ndarray, exact: bool, with_median: bool, with_frequencies: bool
) -> dict[str, Any]:
    out = partials.raw_value_state(nr.x, nr.valid, bounds)
    segments = nr.item_segments(bounds)
    if nr.items.size:
        out = _with_items(out, segments, [_item_float_state(d) for d in nr.parsed])
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
        tables = _frequency_tables(*_numeric_codes(nr.raw, nr.kinds, nr.x, exact), bounds)
        for j, d in zip(segments.tolist(), nr.parsed, strict=True):
            if d.get("f"):
                tables[j] = _add_tables([tables[j], d["f"]])
        for extra, table in zip(extras, tables, strict=True):
            if table:
                extra["f"] = table
    out["x"] = [e or None for e in extras]
    return out


def _with_items(state: dict, item_segment: np.ndarray, items: list[tuple]) -> dict:
    """Merge pre-aggregated items into the value state of their segments."""
    nb = len(state["c"])
    owner = np.concatenate([np.arange(nb), item_segment])
    ordering = np.argsort(owner, kind="stable")
    child = {}
    for index, name in enumerate(partials.VALUE_STATE):
        extra = np.array([item[index] for item in items], dtype=state[name].dtype)
        child[name] = np.concatenate([state[name], extra])[ordering]
    bounds = np.searchsorted(owner[ordering], np.arange(nb + 1)).astype(np.int64)
    return combine.merge_value_state(child, bounds)


def _add_tables(tables: Iterable[dict | None]) -> dict[str, int] | None:
    total: Counter = Counter()
    seen = False
    for table in tables:
        if table:
            total.update(table)
            seen = True
    return dict(total) if seen else None


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
        return LEVEL_SCHEMA.empty_table()
    child_t = _column(child, "t")
    if np.any(np.diff(child_t) < 0):
        child = child.take(pa.array(np.argsort(child_t, kind="stable")))
        child_t = _column(child, "t")
    starts, bounds = buckets.segment(child_t, width_us)
    state = {name: _column(child, name) for name in partials.TIME_STATE}
    columns: dict[str, Any] = {"t": starts}
    columns.update(combine.merge_time_state(child_t, state, starts, bounds))
    groups = None
    if "x" in child.column_names and child.column("x").null_count < child.num_rows:
        parsed = [None if x is None else json.loads(x) for x in child.column("x").to_pylist()]
        groups = [parsed[a:b] for a, b in pairwise(bounds.tolist())]
    if value_type == NUMERIC:
        exact = _high_accuracy(value_type, options)
        values = {name: _column(child, name) for name in partials.VALUE_STATE}
        columns.update(combine.merge_value_state(values, bounds))
        columns["x"] = _combine_numeric_extras(groups, exact) if groups else None
        if raw is not None and raw.num_rows:
            _medians_from_raw(columns, raw, width_us, exact)
    else:
        columns["c"] = np.add.reduceat(_column(child, "c"), bounds[:-1])
        if value_type == NOMINAL and groups:
            columns["x"] = [_add_tables(group) for group in groups]
    keep = columns["np"] > 0
    table = _level_table(columns, len(starts))
    return table if keep.all() else table.filter(pa.array(keep))


def _combine_numeric_extras(groups: list[list], exact: bool) -> list[dict | None]:
    out = []
    for group in groups:
        extra: dict = {}
        if exact:
            total = _merge_exact([ExactState.from_json(x) if x else None for x in group])
            if total is not None:
                extra.update(total.to_json())
        table = _add_tables(x.get("f") for x in group if x)
        if table:
            extra["f"] = table
        out.append(extra or None)
    return out


def _medians_from_raw(columns: dict, raw: pa.Table, width_us: int, exact: bool) -> None:
    """Set the median (and, high-accuracy, its exact text) of every bucket from raw rows."""
    raw_t = np.asarray(raw.column("t").to_numpy(), dtype=np.int64)
    raw_starts, raw_bounds = buckets.segment(raw_t, width_us)
    nr = _NumericRaw.of(raw)
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
    for field in LEVEL_SCHEMA:
        value = columns.get(field.name)
        if value is None:
            arrays.append(pa.nulls(size, field.type))
        elif field.name == "x":
            texts = [None if e is None else _canonical(e) for e in value]
            arrays.append(pa.array(texts, pa.string()))
        elif field.type == pa.float64():
            arrays.append(_float_array(value))
        else:
            arrays.append(pa.array(value, field.type))
    return pa.Table.from_arrays(arrays, schema=LEVEL_SCHEMA)


def fill_empty(rows: pa.Table, start_us: int, end_us: int, width_us: int) -> pa.Table:
    """``rows`` plus a row for every bucket starting in [start_us, end_us) that has none (c = 0,
    np = 0, all else null), sorted by t. Empty buckets are generated on read, never stored."""
    first = -(-start_us // width_us) * width_us
    if first >= end_us:
        return rows
    every = np.arange(first, end_us, width_us, dtype=np.int64)
    present = np.asarray(rows.column("t").to_numpy(), dtype=np.int64)
    missing = every[~np.isin(every, present)]
    if missing.size == 0:
        return rows
    arrays = []
    for field in rows.schema:
        if field.name == "t":
            arrays.append(pa.array(missing, field.type))
        elif field.name in ("c", "np"):
            arrays.append(pa.array(np.zeros(missing.size, np.int64)).cast(field.type))
        else:
            arrays.append(pa.nulls(missing.size, field.type))
    empty = pa.Table.from_arrays(arrays, schema=rows.schema)
    both = pa.concat_tables([rows, empty])
    ordering = np.argsort(np.concatenate([present, missing]), kind="stable")
    return both.take(pa.array(ordering))


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


def _python(column: np.ndarray | list) -> list:
    if isinstance(column, np.ndarray) and column.dtype.kind == "f":
        return [None if math.isnan(v) else v for v in column.tolist()]
    return column.tolist() if isinstance(column, np.ndarray) else list(column)


def finalize(
    rows: pa.Table,
    value_type: str,
    options: dict | None,
    value_keys: Iterable[str] | None,
    time_keys: Iterable[str] | None,
    width_us: int,
) -> list[dict]:
    """SPEC §5.4 datapoints ``{'t': {time key: ...}, 'v': {value key: ...}}`` of level rows, in
    row order; an empty key filter drops ``'t'`` or ``'v'`` (None = every applicable key)."""
    view = Rows(rows, value_type, options, width_us)
    values = [
        (d.key, d.present(view, _python(d.finalize(view))))
        for d in _chosen_value(value_type, value_keys, "key")
    ]
    times = []
    for d in _chosen_time(time_keys, "key"):
        column = d.finalize(view)
        times.append((d.key, [from_us(v) for v in column.tolist()] if d.is_time
                      else _python(column)))
    value_keys_, value_columns = [k for k, _ in values], [c for _, c in values]
    time_keys_, time_columns = [k for k, _ in times], [c for _, c in times]
    if times and values:
        return [
            {"t": dict(zip(time_keys_, tr, strict=True)),
             "v": dict(zip(value_keys_, vr, strict=True))}
            for tr, vr in zip(zip(*time_columns), zip(*value_columns), strict=True)
        ]
    if times:
        return [{"t": dict(zip(time_keys_, tr, strict=True))} for tr in zip(*time_columns)]
    if values:
        return [{"v": dict(zip(value_keys_, vr, strict=True))} for vr in zip(*value_columns)]
    return [{} for _ in range(view.size)]


UTC_MICROS = pa.timestamp("us", tz="UTC")


def finalize_arrow(
    rows: pa.Table,
    value_type: str,
    options: dict | None,
    value_names: Iterable[str] | None,
    time_names: Iterable[str] | None,
    width_us: int,
) -> pa.Table:
    """Columnar finalize (SPEC §6.3): ``t`` (bucket start), one column per value downsampler
    named by its name, time downsamplers as ``time_<name>``."""
    view = Rows(rows, value_type, options, width_us)
    columns = {"t": pa.array(view.col("t")).cast(UTC_MICROS)}
    for d in _chosen_value(value_type, value_names, "name"):
        columns[d.name] = _arrow(d.finalize(view), d.name)
    for d in _chosen_time(time_names, "name"):
        result = d.finalize(view)
        columns[f"time_{d.name}"] = (
            pa.array(result).cast(UTC_MICROS) if d.is_time
            else _float_array(result)
        )
    return pa.table(columns)


def _arrow(column: np.ndarray | list, name: str) -> pa.Array:
    if isinstance(column, np.ndarray):
        if column.dtype.kind == "f":
            return _float_array(column)
        return pa.array(column, pa.int64())
    if name == "frequencies":
        return pa.array([None if t is None else sorted(t.items()) for t in column],
                        pa.map_(pa.string(), pa.int64()))
    return pa.array([None if v is None else str(v) for v in column], pa.string())
