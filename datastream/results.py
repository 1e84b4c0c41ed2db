"""Lazy, list-like results: ``Datapoints`` (get_data) and ``Streams`` (find_streams).

Both hold a columnar table and turn rows into dicts only when they are iterated or indexed, so
a large result costs one Arrow table until someone asks for Python objects, and the columnar
exports never build per-point dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

DEFAULT_BATCH = 1000


class _LazyRows:
    """Shared list behaviour over a table that is loaded on first use."""

    def __init__(self, load: Callable[[], pa.Table]) -> None:
        self._load = load
        self._table: pa.Table | None = None
        self._batch = DEFAULT_BATCH

    def _rows(self) -> pa.Table:
        if self._table is None:
            self._table = self._load()
        return self._table

    def _convert(self, table: pa.Table) -> list[Any]:
        raise NotImplementedError

    def _with_table(self, table: pa.Table) -> _LazyRows:
        raise NotImplementedError

    def batch_size(self, size: int) -> _LazyRows:
        """Hint: rows are converted to Python objects ``size`` at a time while iterating."""
        self._batch = max(1, int(size))
        return self

    def __len__(self) -> int:
        return self._rows().num_rows

    def count(self) -> int:
        return len(self)

    def __iter__(self) -> Iterator[Any]:
        table = self._rows()
        for offset in range(0, table.num_rows, self._batch):
            yield from self._convert(table.slice(offset, self._batch))

    def __getitem__(self, index: int | slice) -> Any:
        table = self._rows()
        if isinstance(index, slice):
            positions = range(*index.indices(table.num_rows))
            if positions.step == 1:
                part = table.slice(positions.start, max(0, len(positions)))
            else:
                part = table.take(pa.array(list(positions), type=pa.int64()))
            return self._with_table(part)
        if not isinstance(index, int | np.integer):
            raise TypeError(f"indices must be integers or slices, not {type(index).__name__}")
        position = int(index)
        if position < 0:
            position += table.num_rows
        if not 0 <= position < table.num_rows:
            raise IndexError(f"index {index} out of range for {table.num_rows} items")
        return self._convert(table.slice(position, 1))[0]

    def __bool__(self) -> bool:
        return len(self) > 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {len(self)}>"


class Datapoints(_LazyRows):
    """Result of ``get_data``: dicts on iteration, Arrow/pandas/numpy on request.

    ``convert`` turns a slice of the stored table into datapoint dicts; ``export`` turns it into
    the public columnar shape (SPEC §6.3).
    """

    def __init__(
        self,
        load: Callable[[], pa.Table],
        convert: Callable[[pa.Table], list[dict]],
        export: Callable[[pa.Table], pa.Table],
    ) -> None:
        super().__init__(load)
        self._converter = convert
        self._export = export

    def _convert(self, table: pa.Table) -> list[dict]:
        return self._converter(table)

    def _with_table(self, table: pa.Table) -> Datapoints:
        return Datapoints(lambda: table, self._converter, self._export)

    def to_arrow(self) -> pa.Table:
        """Columns ``t`` (timestamp[us, UTC]) and ``v`` (raw), or one per downsampler."""
        return self._export(self._rows())

    def to_pandas(self):
        """A pandas DataFrame of :meth:`to_arrow` (needs pandas)."""
        return self.to_arrow().to_pandas()

    def to_numpy(self) -> np.ndarray:
        """A numpy structured array of :meth:`to_arrow` (object dtype for non-numeric columns)."""
        table = self.to_arrow()
        columns = []
        for name, column in zip(table.column_names, table.columns, strict=True):
            columns.append((name, _column_to_numpy(column)))
        result = np.empty(table.num_rows, dtype=[(name, array.dtype) for name, array in columns])
        for name, array in columns:
            result[name] = array
        return result

    def __arrow_c_stream__(self, requested_schema: object = None) -> object:
        return self.to_arrow().__arrow_c_stream__(requested_schema)


def _column_to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    kind = column.type
    if pa.types.is_timestamp(kind):
        return column.cast(pa.timestamp("us")).to_numpy()
    if (pa.types.is_floating(kind) or pa.types.is_integer(kind)) and column.null_count:
        return column.cast(pa.float64()).to_numpy()
    if pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return column.to_numpy()
    return np.array(column.to_pylist(), dtype=object)


class Streams(_LazyRows):
    """Result of ``find_streams``: get_tags-shaped dicts, in creation order."""

    def __init__(self, items: Callable[[], list[dict]]) -> None:
        self._items_loader = items
        self._items: list[dict] | None = None
        super().__init__(self._index_table)

    def _all(self) -> list[dict]:
        if self._items is None:
            self._items = self._items_loader()
        return self._items

    def _index_table(self) -> pa.Table:
        return pa.table({"row": pa.array(range(len(self._all())), type=pa.int64())})

    def _convert(self, table: pa.Table) -> list[dict]:
        items = self._all()
        return [items[row] for row in table.column("row").to_pylist()]

    def _with_table(self, table: pa.Table) -> Streams:
        selected = self._convert(table)
        return Streams(lambda: selected)
