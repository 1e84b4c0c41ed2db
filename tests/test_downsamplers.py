"""Downsampling oracle: every level built by cascade (raw → 10 s → 1 min → ... → 1 day) and
finalized must equal what DuckDB SQL computes from the raw points directly; plus the behaviour §5
examples, high accuracy, nominal tables, incremental combining and empty buckets."""

from __future__ import annotations

import datetime
import json
import math
from decimal import Decimal

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datastream import downsamplers as ds
from datastream.granularity import from_us, to_us
from datastream.storage.base import RAW_SCHEMA

SECOND = 1_000_000
WIDTHS = [10, 60, 600, 3600, 21600, 86400]
HIGH = {"high_accuracy": True}
E = Decimal("2.71828182845904523536028747135266249775724709369995957496696762")


def canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def raw_table(t, values, nominal: bool = False) -> pa.Table:
    """RAW_SCHEMA rows: None → kind 0, int → 1, float → 2, Decimal → 3, nominal JSON → 4,
    numeric dict → 5 (pre-aggregated)."""
    rows = []
    for v in values:
        if v is None:
            rows.append((0, None, None, None))
        elif nominal:
            rows.append((4, None, None, canonical(v)))
        elif isinstance(v, dict):
            rows.append((5, None, None, canonical(v)))
        elif isinstance(v, Decimal):
            rows.append((3, None, None, str(v)))
        elif isinstance(v, int) and -(2**63) <= v < 2**63:
            rows.append((1, v, None, None))
        else:
            rows.append((2, None, float(v), None))
    k, i, f, s = zip(*rows, strict=True) if rows else ((), (), (), ())
    return pa.Table.from_arrays(
        [pa.array(np.asarray(t, np.int64)), pa.array(k, pa.int8()), pa.array(i, pa.int64()),
         pa.array(f, pa.float64()), pa.array(s, pa.string())],
        schema=RAW_SCHEMA,
    )


def cascade(raw, value_type="numeric", options=None, with_median=True) -> dict[int, pa.Table]:
    """Every level: partials at 10 s from raw, then combined upward (raw passed for medians)."""
    options = options or {}
    levels = {10: ds.partials_from_raw(raw, value_type, options, 10 * SECOND, with_median)}
    for finer, width in zip(WIDTHS, WIDTHS[1:], strict=False):
        levels[width] = ds.combine_partials(
            levels[finer], width * SECOND, value_type, options, raw=raw if with_median else None
        )
    return levels


def close(got, expected) -> bool:
    if got is None or expected is None:
        return got is None and expected is None
    return math.isclose(got, expected, rel_tol=1e-12, abs_tol=1e-9)


ORACLE = """
WITH b AS (SELECT w, t, v, t - (((t % w) + w) % w) AS b FROM raw, widths),
g AS (SELECT *, (t - lag(t) OVER (PARTITION BY w, b ORDER BY t)) / 1e6 AS gap FROM b)
SELECT w, b, count(v) AS c, sum(v) AS s, sum(v * v) AS q, min(v) AS l, max(v) AS u,
       avg(v) AS m, stddev_pop(v) AS d, median(v) AS n, min(t) AS a, max(t) AS z,
       avg(t) FILTER (WHERE v IS NOT NULL) AS tm, count(gap) AS ic, avg(gap) AS i,
       min(gap) AS il, max(gap) AS iu, sum(gap * gap) AS iq, stddev_pop(gap) AS id
FROM g GROUP BY w, b ORDER BY w, b
"""


def oracle(t: np.ndarray, v: list) -> dict[int, list[dict]]:
    """Per level width (s), DuckDB's aggregates of the raw points grouped by floor(t / width)."""
    raw = pa.table({"t": pa.array(t, pa.int64()), "v": pa.array(v, pa.float64())})
    widths = pa.table({"w": pa.array([w * SECOND for w in WIDTHS], pa.int64())})
    with duckdb.connect() as con:
        con.register("raw", raw)
        con.register("widths", widths)
        found = con.sql(ORACLE).to_arrow_table().to_pylist()
    out: dict[int, list[dict]] = {w: [] for w in WIDTHS}
    for row in found:
        out[row["w"] // SECOND].append(row)
    return out


def check_against_oracle(t, values) -> None:
    levels = cascade(raw_table(t, values))
    expected_levels = oracle(t, [None if v is None else float(v) for v in values])
    for width in WIDTHS:
        rows = levels[width]
        expected = expected_levels[width]
        assert rows.column("t").to_pylist() == [e["b"] for e in expected], width
        points = ds.finalize(rows, "numeric", {}, None, None, width * SECOND)
        for point, e in zip(points, expected, strict=True):
            v, tt = point["v"], point["t"]
            assert v["c"] == e["c"]
            for key in "sqlumdn":
                assert close(v[key], e[key]), (width, key, v[key], e[key])
            assert tt["a"] == from_us(e["a"]) and tt["z"] == from_us(e["z"])
            if e["tm"] is None:
                assert tt["m"] == from_us(e["b"] + width * SECOND // 2)
            else:
                assert abs(to_us(tt["m"]) - e["tm"]) <= 1, (width, tt["m"], e["tm"])
            for key, name in zip("ilu", ("i", "il", "iu"), strict=True):
                assert close(tt[key], e[name]), (width, key, tt[key], e[name])
            assert close(tt["q"], e["iq"]) and close(tt["d"], e["id"]), width


gaps = st.one_of(
    st.just(0),
    st.integers(0, 3 * SECOND),
    st.integers(0, 400 * SECOND),
    st.integers(0, 2 * 86400 * SECOND),
)
values = st.one_of(
    st.none(),
    st.integers(-1000, 1000),
    st.floats(-1000, 1000, allow_nan=False).map(lambda f: round(f, 3)),
)


@st.composite
def raw_points(draw, max_size=120):
    start = draw(st.integers(-(10**15), 10**15))
    steps = draw(st.lists(gaps, min_size=1, max_size=max_size))
    t = start + np.cumsum(np.array([0] + steps[1:], np.int64))
    return t, draw(st.lists(values, min_size=len(t), max_size=len(t)))


@settings(max_examples=30, deadline=None)
@given(raw_points())
def test_cascade_matches_duckdb(data):
    check_against_oracle(*data)


@pytest.mark.parametrize("seed", [0, 1])
def test_cascade_matches_duckdb_on_three_busy_days(seed):
    rng = np.random.default_rng(seed)
    n = 20_000
    steps = rng.choice([0, 1, 2, 7, 30, 3600], size=n, p=[0.05, 0.5, 0.3, 0.1, 0.049, 0.001])
    t = -5 * 86400 * SECOND + np.cumsum(steps * SECOND + rng.integers(0, SECOND, n))
    v = rng.normal(50, 20, n).round(4).tolist()
    for p in rng.choice(n, n // 10, replace=False):
        v[p] = None
    check_against_oracle(t, v)


# -- behaviour examples ----------------------------------------------------------------------


def finalized(raw, width=10, value_type="numeric", options=None, **kwargs):
    rows = ds.partials_from_raw(raw, value_type, options or {}, width * SECOND, True, **kwargs)
    return ds.finalize(rows, value_type, options or {}, None, None, width * SECOND)


def test_one_to_five():
    [point] = finalized(raw_table(np.arange(5) * SECOND, [1, 2, 3, 4, 5]))
    v = point["v"]
    assert (v["c"], v["s"], v["q"], v["l"], v["u"], v["m"]) == (5, 15, 55, 1, 5, 3.0)
    assert v["d"] == 1.4142135623730951 and v["n"] == 3


def test_std_dev_is_stable_at_every_level():
    rng = np.random.default_rng(11)
    x = 1e9 + rng.random(2 * 86400)
    t = np.arange(len(x)) * SECOND
    levels = cascade(raw_table(t, x.tolist()), with_median=False)
    for width in WIDTHS:
        points = ds.finalize(levels[width], "numeric", {}, ["d"], [], width * SECOND)
        per = width
        for j, point in enumerate(points):
            expected = np.std(x[j * per:(j + 1) * per])
            assert abs(point["v"]["d"] - expected) / expected < 1e-9


def test_high_accuracy_mean_is_exact_at_every_level():
    levels = cascade(raw_table(np.arange(40) * SECOND // 5, [E] * 40), options=HIGH)
    for width in WIDTHS:
        [point] = ds.finalize(levels[width], "numeric", HIGH, None, [], width * SECOND)
        v = point["v"]
        assert v["m"] == E and v["l"] == E and v["u"] == E and v["n"] == E
        assert v["c"] == 40 and v["d"] == 0 and isinstance(v["s"], Decimal)
        assert v["s"] == ds.HIGH_ACCURACY.multiply(E, 40)


def test_high_accuracy_small_sample():
    values = [Decimal("0.1"), Decimal("0.2"), Decimal("0.3"), Decimal("0.4")]
    [point] = finalized(raw_table(np.arange(4) * SECOND, values), options=HIGH)
    v = point["v"]
    assert v["s"] == Decimal("1.0") and v["m"] == Decimal("0.25") and v["n"] == Decimal("0.25")
    assert v["q"] == Decimal("0.30")
    assert v["d"] == Decimal("0.0125").sqrt(ds.HIGH_ACCURACY)


def test_big_ints_become_floats():
    [point] = finalized(raw_table(np.arange(10) * SECOND, [2**128] * 10))
    v = point["v"]
    assert v["c"] == 10 and v["s"] == 10 * 2**128 and v["q"] == 10 * 2**256
    assert v["l"] == v["u"] == 2**128 and v["d"] == 0.0


def test_nominal_ties_and_tables_across_levels():
    values = ["b", "a", "b", "a", "c", {"k": [1]}, None, {"k": [1]}]
    raw = raw_table(np.arange(len(values)) * 4 * SECOND, values, nominal=True)
    [ten_a, ten_b, ten_c] = finalized(raw, value_type="nominal")
    assert ten_a["v"] == {"c": 3, "o": "b", "r": "a", "f": {"a": 1, "b": 2}}
    minute = ds.finalize(cascade(raw, "nominal")[60], "nominal", {}, None, None, 60 * SECOND)
    assert minute[0]["v"] == {
        "c": 7, "o": "a", "r": "c", "f": {"a": 2, "b": 2, "c": 1, '{"k":[1]}': 2}
    }


def test_nominal_clashing_keys_use_canonical_json():
    raw = raw_table(np.arange(3) * SECOND, [1, 1.0, True], nominal=True)
    [point] = finalized(raw, value_type="nominal")
    assert point["v"]["f"] == {"1": 1, "1.0": 1, "true": 1}
    assert point["v"]["o"] == 1  # ties → smallest canonical JSON text


def test_numeric_frequencies_on_request():
    raw = raw_table(np.arange(4) * SECOND, [1, 2, 2, 3.5])
    [point] = finalized(raw, with_frequencies=True)
    assert point["v"]["o"] == 2 and point["v"]["r"] == 1
    assert point["v"]["f"] == {1: 1, 2: 2, 3.5: 1}
    [plain] = finalized(raw)
    assert plain["v"]["o"] is None and plain["v"]["f"] is None


def test_graph_counts_only():
    raw = raw_table(np.arange(3) * SECOND, [{"v": [], "e": []}, None, {"v": [], "e": []}], True)
    [point] = finalized(raw, value_type="graph")
    assert point["v"] == {"c": 2}


def test_pre_aggregated_items_merge_as_partial_state():
    item = {"c": 3, "s": 6, "q": 14, "l": 1, "u": 3, "m": 2.0, "d": math.sqrt(2 / 3), "n": 2}
    raw = raw_table(np.arange(3) * SECOND, [item, 4, 5])
    [point] = finalized(raw)
    v = point["v"]
    assert (v["c"], v["s"], v["q"], v["l"], v["u"], v["m"]) == (5, 15, 55, 1, 5, 3.0)
    assert math.isclose(v["d"], math.sqrt(2), rel_tol=1e-15)
    assert v["n"] == 4  # the item's median counts as one value: median of 2, 4, 5
    assert point["t"]["m"] == from_us(1 * SECOND)  # three non-null points at 0, 1, 2 s


def test_null_only_and_time_statistics():
    raw = raw_table(np.array([1, 4, 4, 9]) * SECOND, [None] * 4)
    [point] = finalized(raw)
    assert point["v"]["c"] == 0 and point["v"]["s"] is None and point["v"]["d"] is None
    t = point["t"]
    assert t["m"] == from_us(5 * SECOND)  # no values: middle of the bucket
    assert (t["a"], t["z"]) == (from_us(SECOND), from_us(9 * SECOND))
    assert (t["i"], t["l"], t["u"], t["q"]) == (8 / 3, 0.0, 5.0, 34.0)
    assert math.isclose(t["d"], float(np.std([3, 0, 5])), rel_tol=1e-15)
    [single] = finalized(raw_table(np.array([3 * SECOND]), [7]))
    assert single["t"]["i"] is None and single["v"]["d"] == 0.0


# -- incremental -------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(raw_points(max_size=80), st.integers(0, 80), st.sampled_from([10, 60, 3600]))
def test_split_spans_combine_to_one_pass(data, cut, width):
    t, values = data
    raw = raw_table(t, values)
    cut = min(cut, len(t))
    halves = [
        ds.partials_from_raw(raw.slice(a, b - a), "numeric", {}, width * SECOND, True)
        for a, b in ((0, cut), (cut, len(t)))
    ]
    merged = ds.combine_partials(pa.concat_tables(halves), width * SECOND, "numeric", {}, raw=raw)
    single = ds.partials_from_raw(raw, "numeric", {}, width * SECOND, True)
    assert_rows_equal(merged, single)


def assert_rows_equal(got: pa.Table, expected: pa.Table) -> None:
    assert got.schema == expected.schema == ds.LEVEL_SCHEMA
    for name in ds.LEVEL_SCHEMA.names:
        a, b = got.column(name).to_pylist(), expected.column(name).to_pylist()
        if ds.LEVEL_SCHEMA.field(name).type == pa.float64():
            assert all(close(x, y) for x, y in zip(a, b, strict=True)), name
        else:
            assert a == b, name


# -- empty buckets, filters, export, registry --------------------------------------------------


def test_fill_empty_gives_the_spec_count():
    start = to_us(datetime.datetime(2000, 1, 1, 12))
    end = to_us(datetime.datetime(2000, 1, 3, 12))
    raw = raw_table([start, end], [1.0, 2.0])
    rows = ds.partials_from_raw(raw.slice(0, 1), "numeric", {}, 10 * SECOND, False)
    # until 12:00:10 on the 3rd: the bucket of the last point stays open, the bound is its start
    filled = ds.fill_empty(rows, start, end, 10 * SECOND)
    assert filled.num_rows == 17280
    points = ds.finalize(filled, "numeric", {}, ["c", "m"], ["m", "a", "i"], 10 * SECOND)
    assert points[0]["v"] == {"c": 1, "m": 1.0}
    assert points[1] == {
        "t": {"m": from_us(start + 15 * SECOND), "a": from_us(start + 15 * SECOND), "i": None},
        "v": {"c": 0, "m": None},
    }


def test_fill_empty_keeps_existing_rows_and_order():
    raw = raw_table([25 * SECOND, 47 * SECOND], [1, 2])
    rows = ds.partials_from_raw(raw, "numeric", {}, 10 * SECOND, True)
    filled = ds.fill_empty(rows, -15 * SECOND, 60 * SECOND, 10 * SECOND)
    assert filled.column("t").to_pylist() == [s * SECOND for s in (-10, 0, 10, 20, 30, 40, 50)]
    assert filled.column("c").to_pylist() == [0, 0, 0, 1, 0, 1, 0]
    assert filled.column("np").to_pylist() == [0, 0, 0, 1, 0, 1, 0]


def test_empty_filters_drop_keys():
    rows = ds.partials_from_raw(raw_table([0], [1]), "numeric", {}, 10 * SECOND, False)
    assert ds.finalize(rows, "numeric", {}, [], ["a"], 10 * SECOND) == [{"t": {"a": from_us(0)}}]
    assert ds.finalize(rows, "numeric", {}, ["c"], [], 10 * SECOND) == [{"v": {"c": 1}}]
    with pytest.raises(ds.exceptions.UnsupportedDownsampler):
        ds.finalize(rows, "nominal", {}, ["m"], [], 10 * SECOND)


def test_finalize_arrow_columns():
    raw = raw_table(np.arange(12) * SECOND, list(range(12)))
    rows = ds.partials_from_raw(raw, "numeric", {}, 10 * SECOND, True)
    table = ds.finalize_arrow(rows, "numeric", {}, ["mean", "count"], ["first", "mean"], 10**7)
    assert table.column_names == ["t", "count", "mean", "time_mean", "time_first"]
    assert table.schema.field("t").type == pa.timestamp("us", tz="UTC")
    assert table.column("mean").to_pylist() == [4.5, 10.5]
    exact = ds.partials_from_raw(raw_table([0, 1], [E, E]), "numeric", HIGH, 10**7, True)
    table = ds.finalize_arrow(exact, "numeric", HIGH, ["mean"], [], 10**7)
    assert Decimal(table.column("mean")[0].as_py()) == E


def test_registry():
    assert list(ds.VALUE_DOWNSAMPLERS.values()) == list("csqlumdnorf")
    assert ds.TIME_DOWNSAMPLERS == {
        "mean": "m", "first": "a", "last": "z", "intervals_mean": "i", "intervals_min": "l",
        "intervals_max": "u", "intervals_sum_squares": "q", "intervals_std_dev": "d",
    }
    assert ds.DOWNSAMPLERS_BY_VALUE_TYPE["nominal"] == (
        "count", "most_often", "least_often", "frequencies"
    )
    assert ds.DOWNSAMPLERS_BY_VALUE_TYPE["graph"] == ("count",)
    assert len(ds.DOWNSAMPLERS_BY_VALUE_TYPE["numeric"]) == 11
    assert ds.with_dependencies([]) == set()
    assert ds.with_dependencies(["mean"]) == {"mean", "sum", "count"}
    assert ds.with_dependencies(["std_dev"]) == {"std_dev", "sum", "count", "sum_squares"}
    assert ds.with_dependencies(["max"]) == {"max", "count"}
    assert ds.LEVEL_SCHEMA.names == (
        "t c s q l u mu m2 n x np tn tm ta tz ic isum il iu iq im2".split()
    )


def test_high_accuracy_pre_aggregated_item():
    item = {"c": 2, "s": "0.3", "q": "0.05", "l": "0.1", "u": "0.2", "m": "0.15", "d": "0.05"}
    raw = raw_table(np.arange(3) * SECOND, [item, Decimal("0.3"), Decimal("0.4")])
    levels = cascade(raw, options=HIGH)
    for width in (10, 3600):
        [point] = ds.finalize(levels[width], "numeric", HIGH, None, [], width * SECOND)
        v = point["v"]
        assert (v["c"], v["s"], v["q"], v["l"], v["u"]) == (
            4, Decimal("1.0"), Decimal("0.30"), Decimal("0.1"), Decimal("0.4")
        )
        assert v["m"] == Decimal("0.25") and v["n"] == Decimal("0.35")  # item has no n
        assert v["d"] == Decimal("0.0125").sqrt(ds.HIGH_ACCURACY)


# -- the column-wise finalize against a row-by-row reference -----------------------------------


def finalize_row_by_row(rows, value_type, options, value_keys, time_keys, width_us):
    """The datapoints of ``ds.finalize`` built one value at a time, as it once was: each float
    NaN → None by ``math.isnan``, each time by ``from_us``."""
    chosen_values = ds._chosen_value(value_type, value_keys, "key")
    chosen_times = ds._chosen_time(time_keys, "key")
    view = ds.Rows(rows, value_type, options, width_us)

    def python(column):
        if isinstance(column, np.ndarray) and column.dtype.kind == "f":
            return [None if math.isnan(v) else v for v in column.tolist()]
        return column.tolist() if isinstance(column, np.ndarray) else list(column)

    values = {d.key: d.present(view, python(d.finalize(view))) for d in chosen_values}
    times = {d.key: [from_us(v) for v in d.finalize(view).tolist()] if d.is_time
             else python(d.finalize(view)) for d in chosen_times}
    points = []
    for row in range(view.size):
        point = {}
        if times:
            point["t"] = {key: column[row] for key, column in times.items()}
        if values:
            point["v"] = {key: column[row] for key, column in values.items()}
        points.append(point)
    return points


def assert_same_objects(got, expected) -> None:
    """Equal, and of the same types all the way down (aware datetimes with the same tzinfo)."""
    assert type(got) is type(expected), (got, expected)
    if isinstance(expected, dict):
        assert list(got) == list(expected)
        for key in expected:
            assert_same_objects(got[key], expected[key])
    elif isinstance(expected, list):
        assert len(got) == len(expected)
        for g, e in zip(got, expected, strict=True):
            assert_same_objects(g, e)
    elif isinstance(expected, datetime.datetime):
        assert got == expected and got.tzinfo is expected.tzinfo
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == expected


key_subsets = st.none() | st.lists(st.sampled_from(["c", "s", "q", "l", "u", "m", "d", "n"]),
                                   unique=True)
time_subsets = st.none() | st.lists(st.sampled_from(sorted(ds.TIME_DOWNSAMPLERS.values())),
                                    unique=True)


@settings(max_examples=40, deadline=None)
@given(raw_points(), st.sampled_from(["numeric", "high", "nominal", "graph"]), key_subsets,
       time_subsets, st.sampled_from([10, 60, 3600]))
def test_finalize_matches_the_row_by_row_reference(data, kind, value_keys, time_keys, width):
    """Empty buckets (nulls, NaN), key subsets (empty ones too), every value type."""
    t, values = data
    value_type = "numeric" if kind == "high" else kind
    options = HIGH if kind == "high" else {}
    if kind in ("nominal", "graph"):
        raw = raw_table(t, values, nominal=True)
        if value_keys is not None:
            value_keys = [k for k in value_keys if k == "c"]
    else:
        raw = raw_table(t, [None if v is None else Decimal(str(v)) if kind == "high" else v
                            for v in values])
    rows = ds.partials_from_raw(raw, value_type, options, width * SECOND, kind != "graph")
    filled = ds.fill_empty(rows, int(t[0]) // (width * SECOND) * width * SECOND - width * SECOND,
                           int(t[-1]) + 2 * width * SECOND, width * SECOND)
    for table in (rows, filled, filled.slice(0, 0)):
        got = ds.finalize(table, value_type, options, value_keys, time_keys, width * SECOND)
        expected = finalize_row_by_row(table, value_type, options, value_keys, time_keys,
                                       width * SECOND)
        assert_same_objects(got, expected)


@pytest.mark.parametrize(("names", "kept"), [
    (["count"], "c s"),
    (["count", "sum", "mean", "min", "max"], "c s l u"),
    (["count", "sum", "sum_squares"], "c s q"),
    (["count", "sum", "sum_squares", "std_dev"], "c s q l mu m2"),
    (["count", "median"], "c s"),
    (["count", "most_often"], "c s"),
])
def test_level_rows_keep_the_state_their_downsamplers_need(names, kept) -> None:
    """What finalizing the stored downsamplers reads, what merging it needs (M2 needs the mean
    offsets, which need the minimums), and count and sum for derived streams."""
    assert ds.kept_value_state("numeric", {}, names) == frozenset(kept.split())


def test_high_accuracy_and_nominal_streams_keep_every_value_column() -> None:
    every = frozenset(ds.partials.VALUE_STATE)
    assert ds.kept_value_state("numeric", HIGH, ["count", "mean"]) == every
    assert ds.kept_value_state("nominal", {}, ["count"]) == every


def test_unkept_state_becomes_null_and_the_rest_stays() -> None:
    t = np.arange(40, dtype=np.int64) * SECOND
    rows = ds.partials_from_raw(raw_table(t, [float(v) for v in range(40)]), "numeric", {},
                                10 * SECOND, False)
    trimmed = ds.without_unkept_state(rows, frozenset({"c", "s", "l"}))
    for name in rows.column_names:
        if name in ("q", "u", "mu", "m2"):
            assert trimmed.column(name).null_count == rows.num_rows
        else:
            assert trimmed.column(name).equals(rows.column(name))
    assert ds.without_unkept_state(rows, frozenset(ds.partials.VALUE_STATE)) is rows
