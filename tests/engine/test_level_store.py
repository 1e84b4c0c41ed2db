"""engine/level_store.py: stored rows are read by bounded windows and reused."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datastream import downsamplers
from datastream.engine.level_grid import Grid, LevelRows
from datastream.engine.level_store import StoredLevel

WIDTH = 10


class DenseLevel:
    """A level where every bucket of the grid is stored; counts what each read returns."""

    def __init__(self, size: int) -> None:
        t = np.arange(size, dtype=np.int64) * WIDTH
        columns = {name: pa.nulls(size, field.type) for name, field in
                   zip(downsamplers.LEVEL_SCHEMA.names, downsamplers.LEVEL_SCHEMA, strict=True)}
        columns.update(t=pa.array(t), c=pa.array(np.arange(size, dtype=np.int64)),
                       np=pa.array(np.ones(size, dtype=np.int64)))
        self.table = pa.table(columns, schema=downsamplers.LEVEL_SCHEMA)
        self.reads: list[int] = []

    def __call__(self, start_us: int, end_us: int) -> pa.Table:
        t = self.table.column("t").to_numpy()
        rows = self.table.filter(pa.array((t >= start_us) & (t < end_us)))
        self.reads.append(rows.num_rows)
        return rows


def _rows(size: int, view: range | None = None) -> tuple[LevelRows, DenseLevel]:
    level = DenseLevel(size)
    grid = Grid.between(0, size * WIDTH, WIDTH)
    return LevelRows(grid, StoredLevel(level, grid), view or range(size), min_page=1), level


def _counts(rows: LevelRows, positions: range, page: int) -> list[int]:
    return rows.rows(positions, page).column("c").to_pylist()


def test_neighbouring_indices_share_one_read() -> None:
    rows, level = _rows(1200)
    for position in range(1200):
        assert _counts(rows, range(position, position + 1), 500) == [position]
    assert level.reads == [500, 500, 200]


def test_an_export_is_read_once_and_reused() -> None:
    rows, level = _rows(5000)
    assert _counts(rows, range(5000), 1000) == list(range(5000))
    assert _counts(rows, range(4000, 4100), 1000) == list(range(4000, 4100))
    assert _counts(rows, range(17, 18), 1000) == [17]
    assert level.reads == [5000]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 800), st.integers(-799, 799).filter(bool), st.integers(2, 100))
def test_iteration_reads_at_most_two_pages_at_a_time(start, step, page) -> None:
    size = 800
    view = range(start - 1, -1, step) if step < 0 else range(start - 1, size, step)
    rows, level = _rows(size, view)
    got = []
    for offset in range(0, len(rows), page):
        got.extend(_counts(rows, range(offset, min(offset + page, len(rows))), page))
    assert got == list(view)
    assert max(level.reads, default=0) <= 2 * page


def test_pages_have_a_minimum_size() -> None:
    level = DenseLevel(3000)
    grid = Grid.between(0, 3000 * WIDTH, WIDTH)
    rows = LevelRows(grid, StoredLevel(level, grid), range(3000), min_page=1000)
    for position in range(0, 3000, 7):
        assert _counts(rows, range(position, min(position + 7, 3000)), 7) == list(
            range(position, min(position + 7, 3000)))
    assert len(level.reads) <= 6


def test_sparse_positions_read_only_what_they_need() -> None:
    rows, level = _rows(100_000, range(0, 100_000, 10_000))
    assert _counts(rows, range(10), 1000) == list(range(0, 100_000, 10_000))
    assert sum(level.reads) == 10


@pytest.mark.parametrize("order", [1, -1])
def test_unsorted_reads_are_sorted_before_lookup(order) -> None:
    level = DenseLevel(50)
    grid = Grid.between(0, 50 * WIDTH, WIDTH)

    def backwards(start_us: int, end_us: int) -> pa.Table:
        rows = level(start_us, end_us)
        return rows.take(pa.array(np.arange(rows.num_rows - 1, -1, -1)))

    view = range(50) if order > 0 else range(49, -1, -1)
    rows = LevelRows(grid, StoredLevel(backwards, grid), view, min_page=1)
    assert _counts(rows, range(50), 1000) == list(view)
