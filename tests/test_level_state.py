"""The state-column table, the kernels' declarations and the downsampler declarations agree."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from datastream import downsamplers as ds
from datastream.kernels import combine, jit, partials, state

DECLARATIONS = [*ds.VALUE_DECLARATIONS.values(), *ds.TIME_DECLARATIONS.values()]


def test_level_schema_is_the_table():
    assert ds.LEVEL_SCHEMA.names == list(state.NAMES)
    for column in state.COLUMNS:
        expected = {np.int64: pa.int64(), np.float64: pa.float64(), str: pa.string()}
        assert ds.LEVEL_SCHEMA.field(column.name).type == expected[column.dtype]
    ints = {f.name for f in ds.LEVEL_SCHEMA if f.type == pa.int64()}
    assert state.INT_COLUMNS == ints


def test_state_tuples_are_the_table_groups():
    assert partials.VALUE_STATE == combine.VALUE_STATE == state.VALUE_STATE
    assert partials.TIME_STATE == combine.TIME_STATE == state.TIME_STATE
    assert {c.group for c in state.COLUMNS} == {"key", "value", "time", "extra"}
    assert all(c.meaning and c.merge for c in state.COLUMNS)


def test_kernels_write_every_value_and_time_column_from_raw_rows_and_from_child_rows():
    assert partials.value_partials.writes == combine.combine_values.writes == state.VALUE_STATE
    assert partials.time_partials.writes == combine.combine_times.writes == state.TIME_STATE
    assert combine.combine_values.reads == state.VALUE_STATE
    assert combine.combine_times.reads == ("t", *state.TIME_STATE)


def test_declared_columns_exist_and_every_column_is_used():
    declared = {name for d in DECLARATIONS for name in d.columns}
    assert declared <= set(state.NAMES)
    merged = set(combine.combine_values.reads) | set(combine.combine_times.reads)
    assert declared | merged == set(state.NAMES)  # mu only serves the merge of m2


def test_flags_match_the_columns_they_fill():
    for d in ds.VALUE_DECLARATIONS.values():
        assert not d.raw_medians or "n" in d.columns, d.name
        assert not d.frequency_tables or "x" in d.columns, d.name
    assert ds.raw_medians(["median"]) and not ds.raw_medians(["mean", "most_often"])
    assert ds.frequency_tables(["least_often"]) and not ds.frequency_tables(["median"])


def test_requirements_are_declared_downsamplers():
    for d in ds.VALUE_DECLARATIONS.values():
        assert set(d.requires) <= ds.VALUE_DECLARATIONS.keys(), d.name


def test_empty_buckets_take_the_table_fill_values():
    filled = ds.fill_empty(ds.LEVEL_SCHEMA.empty_table(), 0, 10, 10)
    row = filled.to_pylist()[0]
    assert row["t"] == 0
    for column in state.COLUMNS[1:]:
        assert row[column.name] == column.empty, column.name


def test_rows_refuse_undeclared_columns():
    rows = ds.Rows(ds.LEVEL_SCHEMA.empty_table(), ds.NUMERIC, None, 10, ("c", "s"))
    rows.col("s")
    rows.col("t")  # the bucket start is always there
    with pytest.raises(KeyError):
        rows.col("m2")
    with pytest.raises(KeyError):
        _ = rows.extras


def test_reduction_checks_its_parameters_against_the_declaration():
    count = len(jit.KERNELS)

    def wrong(x, bounds, out_c, out_s):
        pass

    with pytest.raises(TypeError):
        jit.reduction(inputs={"x": np.float64}, writes=("c",))(wrong)
    with pytest.raises(TypeError):
        jit.reduction(writes=("c", "s"))(wrong)
    assert len(jit.KERNELS) == count  # a refused declaration registers no kernel
