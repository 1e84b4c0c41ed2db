"""Columns that cost no memory writes: nulls, and a stream id repeated over its level rows."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pytest

from datastream.null_columns import null_array, repeated_id
from datastream.storage.base import id_runs


@pytest.mark.parametrize("type_", [pa.int64(), pa.float64(), pa.string(), pa.int8()])
@pytest.mark.parametrize("rows", [0, 1, 9, 100_000])
def test_null_arrays_hold_nulls_of_their_type(type_, rows):
    column = null_array(type_, rows)
    assert column.type == type_ and len(column) == rows and column.null_count == rows
    column.validate(full=True)


@pytest.mark.parametrize("rows", [0, 1, 5, 100_000])
def test_a_repeated_id_reads_as_that_text_on_every_row(rows):
    column = repeated_id("0e5c3f0a-2b5e-4c1a-9b7e-6f1d2a3b4c5d", rows)
    column.validate(full=True)
    assert column.null_count == 0
    assert column.cast(pa.string()).to_pylist() == ["0e5c3f0a-2b5e-4c1a-9b7e-6f1d2a3b4c5d"] * rows


def test_level_batches_of_repeated_ids_split_by_stream_without_comparing():
    ids = pa.chunked_array([repeated_id("a", 3), repeated_id("b", 2), repeated_id("b", 1)])
    assert id_runs(ids) == [("a", 0, 3), ("b", 3, 3)]
    mixed = pa.chunked_array([pa.array(["a", "a", "b"])])
    assert id_runs(mixed) is None


def test_building_a_repeated_id_imports_no_pandas():
    code = ("import sys; from datastream.null_columns import repeated_id; "
            "repeated_id('x', 4); print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
