"""Lazy, list-like results: ``Datapoints`` (get_data) and ``Streams`` (find_streams).

A result is a view over a *row source* that builds columnar rows only for the positions asked
for: ``len()`` never converts anything, iteration turns one batch at a time into Python objects,
indexing converts one row, slicing makes a new view, and the columnar exports never build
per-point dicts. ``find_streams`` uses a table loaded once on first use (``TableRows``); raw
reads hold one time window of rows at a time (``datastream.engine.raw_windows``); downsampled
reads compute their empty buckets instead of storing them (``datastream.engine.level_grid``).
So what a result holds does not grow with its range, except in the exports.

Using results and their exports: the user guide, docs/guide/api.md ("Reading datapoints").
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np

from . import arrow_numpy, exceptions, html_tables
from .granularity import GranularityLevel
from .lazy import html, pa
from .tags import RESERVED_TAGS

DEFAULT_BATCH = 1000
READ_AHEAD = 16384
"""Rows an iteration takes from its source at once (a level chunk's worth of buckets); they are
still converted to Python objects one batch at a time."""


class RowSource(Protocol):
    """Rows of a result in output order, as Arrow tables built on demand."""

    def __len__(self) -> int: ...

    def rows(self, positions: range, page: int) -> pa.Table:
        """The rows at ``positions`` (valid, in the order given). ``page`` is the batch size
        hint: how many rows the caller converts at a time."""
        ...

    def select(self, positions: range) -> RowSource:
        """A source of just the rows at ``positions``."""
        ...

    def whole(self) -> pa.Table:
        """Every row, for an export (a source may read them at once)."""
        ...


class TableRows:
    """A row source over one table, loaded on first use and kept."""

    def __init__(self, load: Callable[[], pa.Table]) -> None:
        self._load = load
        self._table: pa.Table | None = None

    def table(self) -> pa.Table:
        if self._table is None:
            self._table = self._load()
        return self._table

    def __len__(self) -> int:
        return self.table().num_rows

    def rows(self, positions: range, page: int) -> pa.Table:
        table = self.table()
        if positions.step == 1:
            return table.slice(positions.start, len(positions))
        wanted = np.arange(positions.start, positions.stop, positions.step, dtype=np.int64)
        return table.take(pa.array(wanted))

    def select(self, positions: range) -> TableRows:
        part = self.rows(positions, len(positions))
        return TableRows(lambda: part)

    def whole(self) -> pa.Table:
        return self.table()


class _LazyRows:
    """Shared list behaviour over a row source."""

    def __init__(self, source: RowSource) -> None:
        self._source = source
        self._batch = DEFAULT_BATCH

    def _convert(self, table: pa.Table) -> list[Any]:
        raise NotImplementedError

    def _with_source(self, source: RowSource) -> _LazyRows:
        raise NotImplementedError

    def batch_size(self, size: int) -> _LazyRows:
        """Hint: rows are converted to Python objects ``size`` at a time while iterating."""
        self._batch = max(1, int(size))
        return self

    def __len__(self) -> int:
        return len(self._source)

    def count(self) -> int:
        return len(self)

    def __iter__(self) -> Iterator[Any]:
        # chained in C: no generator step per item, only per batch
        return itertools.chain.from_iterable(self._batches())

    def _batches(self) -> Iterator[list[Any]]:
        """Rows converted ``batch`` at a time, taken from the source ``READ_AHEAD`` or more at
        a time: a downsampled source reads its stored rows per request, and one request per
        small batch would decode the same chunks again and again."""
        total, batch = len(self._source), self._batch
        span = max(batch, READ_AHEAD)
        for start in range(0, total, span):
            rows = self._source.rows(range(start, min(start + span, total)), batch)
            for offset in range(0, rows.num_rows, batch):
                yield self._convert(rows.slice(offset, batch))

    def __getitem__(self, index: int | slice) -> Any:
        total = len(self._source)
        if isinstance(index, slice):
            part = self._with_source(self._source.select(range(*index.indices(total))))
            part._batch = self._batch
            return part
        if not isinstance(index, int | np.integer):
            raise TypeError(f"indices must be integers or slices, not {type(index).__name__}")
        position = int(index)
        if position < 0:
            position += total
        if not 0 <= position < total:
            raise IndexError(f"index {index} out of range for {total} items")
        return self._convert(self._source.rows(range(position, position + 1), self._batch))[0]

    def __bool__(self) -> bool:
        return len(self) > 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {len(self)}>"


@dataclasses.dataclass(frozen=True)
class ReadContext:
    """What a ``Datapoints`` was read from: only its repr and ``plot`` need it."""

    stream_id: str
    granularity: GranularityLevel
    raw: bool
    value_type: str = "numeric"
    reverse: bool = False


class Datapoints(_LazyRows):
    """Result of ``get_data``: dicts on iteration, Arrow/pandas/polars/numpy on request.

    ``convert`` turns rows of ``source`` into datapoint dicts; ``export`` turns them into the
    public columnar shape (raw: ``t``, ``v``; downsampled: ``t`` and one column per downsampler).
    ``context`` (optional) names the stream and granularity in the repr and guides ``plot``.
    """

    def __init__(
        self,
        source: RowSource,
        convert: Callable[[pa.Table], list[dict]],
        export: Callable[[pa.Table], pa.Table],
        context: ReadContext | None = None,
    ) -> None:
        super().__init__(source)
        self._converter = convert
        self._export = export
        self._context = context

    def _convert(self, table: pa.Table) -> list[dict]:
        return self._converter(table)

    def _with_source(self, source: RowSource) -> Datapoints:
        return Datapoints(source, self._converter, self._export, self._context)

    def _exported(self, positions: range) -> pa.Table:
        return self._export(self._source.rows(positions, max(1, len(positions))))

    def _ends(self, edge: int) -> tuple[pa.Table, pa.Table]:
        """The first and last ``edge`` rows, exported (the tail is empty when they overlap)."""
        total = len(self._source)
        if total <= 2 * edge:
            return self._exported(range(total)), self._exported(range(0))
        return self._exported(range(edge)), self._exported(range(total - edge, total))

    def __repr__(self) -> str:
        try:
            return f"<Datapoints: {self._describe()}>"
        except exceptions.DatastreamException as error:  # e.g. read after close()
            subject = f" {self._subject()}" if self._context else ""
            return f"<Datapoints{subject} (unreadable: {error})>"

    def _describe(self) -> str:
        total = len(self._source)
        raw = self._context is None or self._context.raw
        noun = ("raw point" if raw else "bucket") if self._context else "row"
        text = f"{total:,} {noun}{'' if total == 1 else 's'}"
        subject = self._subject()
        if subject:
            text += f" {subject}"
        if total:
            first, last = self._ends(1)
            times = [*first.column("t").to_pylist(), *last.column("t").to_pylist()]
            oldest, newest = min(times), max(times)
            text += f", {html_tables.utc_text(oldest)} → {html_tables.utc_text(newest)}"
            if self._context and self._context.reverse:
                text += " (newest first)"
        return text

    def _subject(self) -> str:
        if self._context is None:
            return ""
        return f"of stream {_short_id(self._context.stream_id)} at {self._context.granularity}"

    def _repr_html_(self) -> str:
        """First and last rows as a table, for Jupyter (behaviour §6.5)."""
        try:
            head, tail = self._ends(html_tables.EDGE_ROWS)
        except exceptions.DatastreamException:
            return f"<pre>{html.escape(repr(self))}</pre>"
        caption = "Datapoints " + self._subject() if self._context else "Datapoints"
        return html_tables.rows_html(
            head.column_names, html_tables.table_rows(head), html_tables.table_rows(tail),
            len(self._source), caption,
        )

    def to_arrow(self) -> pa.Table:
        """Columns ``t`` (timestamp[us, UTC]) and ``v`` (raw), or one per downsampler.

        Every row of the result is built here, column-wise."""
        return self._export(self._source.whole())

    def to_pandas(self) -> Any:
        """A pandas DataFrame of :meth:`to_arrow` indexed by ``t`` (a UTC ``DatetimeIndex``),
        so time-based selection and resampling work directly (needs pandas)."""
        _require("pandas", "to_pandas()", "pandas")
        frame = self.to_arrow().to_pandas()
        return frame.set_index("t")

    def to_polars(self) -> Any:
        """A polars DataFrame of :meth:`to_arrow`; ``t`` is a Datetime('us', 'UTC') column
        (needs polars)."""
        polars = _require("polars", "to_polars()", "polars")
        return polars.from_arrow(self.to_arrow())

    def plot(self, ax: Any = None, **kwargs: Any) -> Any:
        """Draw the result on matplotlib Axes (new ones when ``ax`` is None) and return them:
        raw values as a line; a downsampled result as its mean (else first numeric column)
        with the min–max band, broken where buckets are empty. ``kwargs`` go to the line.
        Nominal and graph values → TypeError (behaviour §6.5; needs matplotlib)."""
        _require("matplotlib", "plot()", "plot")
        from . import plotting

        return plotting.plot_result(self.to_arrow(), self._context, ax, **kwargs)

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


def _require(module: str, method: str, extra: str) -> Any:
    """Import an optional dependency, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{method} needs {module}: pip install 'datastream-columnar[{extra}]'"
        ) from error


def _short_id(stream_id: str) -> str:
    """The first 8 characters of a UUID: enough to tell streams apart at a glance."""
    return stream_id if len(stream_id) <= 12 else stream_id[:8] + "…"


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
        super().__init__(TableRows(self._index_table))

    def _all(self) -> list[dict]:
        if self._items is None:
            self._items = self._items_loader()
        return self._items

    def _index_table(self) -> pa.Table:
        # not pa.array(): listing streams has no use for the pandas import it brings
        return pa.table({"row": arrow_numpy.from_numpy(np.arange(len(self._all())))})

    def _convert(self, table: pa.Table) -> list[dict]:
        items = self._all()
        return [items[row] for row in table.column("row").to_pylist()]

    def _with_source(self, source: RowSource) -> Streams:
        selected = self._convert(source.rows(range(len(source)), self._batch))
        return Streams(lambda: selected)

    def __repr__(self) -> str:
        items = self._all()
        shown = ", ".join(html_tables.cell_text(user_tags(item)) for item in items[:3])
        more = f", … ({len(items) - 3} more)" if len(items) > 3 else ""
        noun = "stream" if len(items) == 1 else "streams"
        return f"<Streams: {len(items)} {noun}" + (f": {shown}{more}>" if items else ">")

    def _repr_html_(self) -> str:
        """First and last streams with their tags, for Jupyter (behaviour §6.5)."""
        items, edge = self._all(), html_tables.EDGE_ROWS
        if len(items) <= 2 * edge:
            head, tail = items, []
        else:
            head, tail = items[:edge], items[-edge:]
        return html_tables.rows_html(
            STREAM_COLUMNS, [_stream_row(item) for item in head],
            [_stream_row(item) for item in tail], len(items), "Streams",
        )


STREAM_COLUMNS = ("stream_id", "tags", "value_type", "highest_granularity",
                  "earliest_datapoint", "latest_datapoint")


def user_tags(item: dict) -> dict:
    """A get_tags-shaped dict without its reserved fields: what identifies it to a person."""
    return {key: value for key, value in item.items() if key not in RESERVED_TAGS}


def _stream_row(item: dict) -> tuple:
    return (
        item.get("stream_id"), user_tags(item), item.get("value_type"),
        str(item.get("highest_granularity")), item.get("earliest_datapoint"),
        item.get("latest_datapoint"),
    )
