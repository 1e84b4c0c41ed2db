"""engine/level_grid.py: grid arithmetic, views over it, and rows assembled per position."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datastream import downsamplers
from datastream.engine.level_grid import Grid, LevelRows, assemble, compose, indices
from datastream.engine.level_store import StoredLevel
from datastream.results import READ_AHEAD, Datapoints

WIDTH = 10_000_000

bounds = st.integers(-10**12, 10**12)
small = st.integers(-60, 60)
steps = st.integers(-9, 9).filter(bool)


@settings(max_examples=200, deadline=None)
@given(bounds, st.integers(0, 5000), st.integers(0, 10**8),
       st.sampled_from([WIDTH, 60_000_000, 7]))
def test_grid_holds_every_bucket_start_of_the_range(start, buckets, extra, width) -> None:
    length = buckets * width + extra % width
    grid = Grid.between(start, start + length, width)
    expected = np.arange(-(-start // width) * width, start + length, width, dtype=np.int64)
    assert grid.size == expected.size
    assert np.array_equal(grid.starts(np.arange(grid.size, dtype=np.int64)), expected)


@settings(max_examples=300, deadline=None)
@given(small, small, steps, small, small, steps)
def test_compose_is_slicing(a, b, c, d, e, f) -> None:
    outer = range(a, b, c)
    inner = range(*slice(d, e, f).indices(len(outer)))
    assert list(compose(outer, inner)) == list(outer)[d:e:f]
    assert list(indices(compose(outer, inner))) == list(outer)[d:e:f]


def test_assemble_keeps_stored_rows_and_fills_the_rest() -> None:
    stored = downsamplers.LEVEL_SCHEMA.empty_table()
    row = {name: [None] for name in stored.column_names}
    row.update({"t": [20], "c": [3], "np": [4], "s": [1.5], "x": ['{"a":1}']})
    found = pa.Table.from_pydict(row, schema=downsamplers.LEVEL_SCHEMA)
    table = assemble(np.array([30, 20, 10], dtype=np.int64), found, np.array([20]))
    assert table.schema == downsamplers.LEVEL_SCHEMA
    assert table.column("t").to_pylist() == [30, 20, 10]
    assert table.column("c").to_pylist() == [0, 3, 0]
    assert table.column("np").to_pylist() == [0, 4, 0]
    assert table.column("s").to_pylist() == [None, 1.5, None]
    assert table.column("x").to_pylist() == [None, '{"a":1}', None]


def test_a_huge_view_is_sized_and_sliced_without_reading() -> None:
    def refuse(start_us: int, end_us: int) -> pa.Table:
        raise AssertionError("nothing should be read")

    grid = Grid.between(0, 10**9 * WIDTH, WIDTH)
    rows = LevelRows(grid, StoredLevel(refuse, grid), range(grid.size - 1, -1, -1))
    assert len(rows) == 10**9
    part = rows.select(range(10, 10**8, 1000))
    assert len(part) == len(range(10, 10**8, 1000))
    assert len(part.select(range(5, 0, -1))) == 5


@pytest.mark.parametrize("reverse", [False, True])
def test_iteration_reads_stored_rows_a_read_ahead_at_a_time(reverse) -> None:
    """Small batches convert few rows at a time but do not each go to storage: an iteration
    takes ``READ_AHEAD`` rows per read, and yields what converting each batch alone gives."""
    reads = []
    every = np.arange(0, 40_000 * WIDTH, 3 * WIDTH, dtype=np.int64)  # a row in every 3rd bucket

    def read(start_us: int, end_us: int) -> pa.Table:
        reads.append((start_us, end_us))
        t = every[(every >= start_us) & (every < end_us)]
        columns = {name: pa.nulls(len(t), field.type)
                   for name, field in zip(downsamplers.LEVEL_SCHEMA.names,
                                          downsamplers.LEVEL_SCHEMA, strict=True)}
        columns.update(t=pa.array(t), c=pa.array(t // WIDTH), np=pa.array(t // WIDTH))
        return pa.table(columns, schema=downsamplers.LEVEL_SCHEMA)

    grid = Grid.between(0, 40_000 * WIDTH, WIDTH)
    view = range(grid.size - 1, -1, -1) if reverse else range(grid.size)
    counts = Datapoints(LevelRows(grid, StoredLevel(read, grid), view),
                        lambda table: table.column("c").to_pylist(), lambda table: table)
    got = list(counts.batch_size(7))
    assert len(reads) == -(-grid.size // READ_AHEAD)
    expected = [k if k % 3 == 0 else 0 for k in view]
    assert got == expected
    assert [len(batch) for batch in counts.batch_size(7)._batches()][:3] == [7, 7, 7]
