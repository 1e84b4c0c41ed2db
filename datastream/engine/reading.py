"""Reading: time ranges, raw and level results, and conversion of bulk inputs to columns.

A raw result is the stored rows of its range, loaded once. A downsampled result is the grid of
every bucket between the stream's first datapoint and the level's downsampled bound (clipped to
the query): stored rows where a bucket holds points, empty buckets computed on demand
(``level_grid``), so a long gap costs nothing until its rows are asked for.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import numpy as np

from .. import arrow_numpy, downsamplers, exceptions, level_export, values
from ..granularity import GranularityLevel, from_us_array
from ..lazy import pa, pc
from ..null_columns import null_array
from ..raw_kinds import KIND_FLOAT, KIND_INT, KIND_NULL
from ..results import DEFAULT_BATCH, Datapoints, ReadContext, TableRows
from ..storage.base import Storage
from ..timestamps import bound_is_low, bound_us
from .level_grid import Grid, LevelRows
from .level_store import StoredLevel
from .raw_windows import RawWindows
from .state import StreamState
from .view import conform


@dataclasses.dataclass
class Range:
    """A query range as given: each side a µs instant, exclusive or not, or None (unbounded).

    ``empty`` marks a range that can hold nothing (e.g. start_exclusive=datetime.max).
    """

    low: int | None
    low_exclusive: bool
    high: int | None
    high_exclusive: bool
    empty: bool = False

    @classmethod
    def from_arguments(
        cls,
        start: datetime.datetime | None,
        end: datetime.datetime | None,
        start_exclusive: datetime.datetime | None,
        end_exclusive: datetime.datetime | None,
    ) -> Range:
        low_value = start if start is not None else start_exclusive
        low = bound_us(low_value, "start")
        empty = low is None and not bound_is_low(low_value)
        high_value = end if end is not None else end_exclusive
        high = None
        if high_value is not None:
            high = bound_us(high_value, "end")
            empty = empty or (high is None and bound_is_low(high_value))
        return cls(low, start is None, high, end_exclusive is not None, empty)

    def raw_bounds(self) -> tuple[int | None, int | None]:
        """Half-open [lo, hi) on exact microseconds."""
        lo = None if self.low is None else self.low + (1 if self.low_exclusive else 0)
        hi = None if self.high is None else self.high + (0 if self.high_exclusive else 1)
        return lo, hi

    def bucket_bounds(self, level: GranularityLevel) -> tuple[int | None, int | None]:
        """Half-open [lo, hi) on bucket starts: ``start`` includes the bucket containing it,
        ``start_exclusive`` excludes it; b <= end, b < end_exclusive."""
        width = level.width_us
        lo = hi = None
        if self.low is not None:
            lo = level.floor_us(self.low) + (width if self.low_exclusive else 0)
        if self.high is not None:
            hi = level.floor_us(self.high - 1 if self.high_exclusive else self.high) + width
        return lo, hi


def datapoints(
    storage: Storage,
    state: StreamState,
    level: GranularityLevel,
    query: Range,
    reverse: bool,
    value_names: list[str] | None,
    time_names: list[str] | None,
) -> Datapoints:
    """A lazy result for one stream and level."""
    highest = state.highest
    value_type, options = state.value_type, state.options
    context = ReadContext(state.stream_id, level, level >= highest, value_type, reverse)
    if level >= highest:
        lo, hi = query.raw_bounds()
        if query.empty or (lo is not None and hi is not None and lo >= hi):
            source: TableRows | RawWindows = TableRows(_empty_raw)
        else:
            source = RawWindows(storage, state.stream_id, lo, hi, reverse)
        return Datapoints(
            source,
            lambda table: _raw_dicts(table, value_type, options),
            lambda table: raw_arrow(table, value_type, options),
            context,
        )

    stored_names = list(state.value_downsamplers)
    names = stored_names if value_names is None else [n for n in value_names if n in stored_names]
    times = list(downsamplers.TIME_DOWNSAMPLERS) if time_names is None else time_names
    value_keys = [downsamplers.VALUE_DOWNSAMPLERS[n] for n in names]
    time_keys = [downsamplers.TIME_DOWNSAMPLERS[n] for n in times]
    width = level.width_us
    return Datapoints(
        level_source(storage, state, level, query, reverse),
        lambda table: downsamplers.finalize(
            table, value_type, options, value_keys, time_keys, width,
            values_asked=bool(value_names),
        ),
        lambda table: level_arrow(table, value_type, options, names, times, width),
        context,
    )


def level_grid(state: StreamState, level: GranularityLevel, query: Range) -> Grid:
    """The buckets a level read shows: from the level's first kept bucket (the bucket of the
    stream's first datapoint unless retention deleted older ones) to its downsampled bound,
    clipped to the query (empty when the level holds nothing)."""
    bound = state.bound(level)
    first = state.level_start(level)
    if query.empty or bound is None or first is None:
        return Grid.empty(level.width_us)
    lo, hi = query.bucket_bounds(level)
    lo = first if lo is None else max(lo, first)
    hi = bound if hi is None else min(hi, bound)
    if lo >= hi:
        return Grid.empty(level.width_us)
    return Grid.between(lo, hi, level.width_us)


def level_source(
    storage: Storage, state: StreamState, level: GranularityLevel, query: Range, reverse: bool
) -> LevelRows:
    """The rows of a level read as a lazy source (oldest first, or newest first)."""
    grid = level_grid(state, level, query)
    stream_id = state.stream_id

    def read(start_us: int, end_us: int) -> pa.Table:
        stored = storage.read_level(level.key, stream_id, start_us, end_us)
        if stored is None:
            return arrow_numpy.empty_table(downsamplers.LEVEL_SCHEMA)
        return conform(stored)

    view = range(grid.size - 1, -1, -1) if reverse else range(grid.size)
    return LevelRows(grid, StoredLevel(read, grid), view)


def level_rows(
    storage: Storage, state: StreamState, level: GranularityLevel, query: Range, reverse: bool
) -> pa.Table:
    """Every row of a level read, empty buckets included, as one table (for a checker that
    reads a window at a time)."""
    source = level_source(storage, state, level, query, reverse)
    return source.rows(range(len(source)), DEFAULT_BATCH)


def new_datapoints(closed: list[tuple], states: dict[str, StreamState]) -> list[dict[str, Any]]:
    """``downsample_streams(return_datapoints=True)``: new points by stream, level, time."""
    result = []
    for stream_id, step in closed:
        state = states[stream_id]
        level = step.level
        keys = [downsamplers.VALUE_DOWNSAMPLERS[n] for n in state.value_downsamplers]
        time_keys = list(downsamplers.TIME_DOWNSAMPLERS.values())
        filled = downsamplers.fill_empty(conform(step.rows), step.start_us, step.end_us,
                                         level.width_us)
        points = downsamplers.finalize(
            filled, state.value_type, state.options, keys, time_keys, level.width_us,
        )
        result.extend(
            {"stream_id": stream_id, "granularity": level, "datapoint": point} for point in points
        )
    return result


# -- raw conversions ----------------------------------------------------------------------


def _empty_raw() -> pa.Table:
    from ..storage.base import RAW_SCHEMA

    return arrow_numpy.empty_table(RAW_SCHEMA)


def _raw_dicts(table: pa.Table, value_type: str, options: dict) -> list[dict]:
    """Datapoint dicts of raw rows: the columns are converted once each, then zipped."""
    times = from_us_array(arrow_numpy.to_numpy(table.column("t")))
    decoded = values.decode_values(table, value_type, options)
    return [{"t": t, "v": v} for t, v in zip(times, decoded, strict=True)]


def raw_arrow(table: pa.Table, value_type: str, options: dict) -> pa.Table:
    """Raw export: ``t`` timestamp[us, UTC]; ``v`` int64/float64 for plain numeric streams,
    exact decimal text in high-accuracy mode, canonical JSON text for nominal and graph.
    A column of one kind is exported as it is stored (no copy)."""
    t = table.column("t").cast(level_export.utc_micros())
    if value_type == "numeric" and not options.get("high_accuracy"):
        kinds = values.kinds_of(table)
        low, high = (int(kinds.min()), int(kinds.max())) if len(kinds) else (KIND_INT, KIND_INT)
        if low == high == KIND_INT:  # an empty result too, as int64
            v = table.column("i")
        elif low == high == KIND_FLOAT:
            v = table.column("f")
        elif low >= KIND_NULL and high <= KIND_INT:
            v = _only_where(kinds == KIND_INT, table.column("i"))
        elif low >= KIND_NULL and high <= KIND_FLOAT:
            # an integer beyond 2**53 beside floats is rounded, as pandas or numpy would
            as_float = table.column("i").cast(pa.float64(), safe=False)
            v = pc.if_else(arrow_numpy.from_numpy(kinds == KIND_FLOAT), table.column("f"),
                           _only_where(kinds == KIND_INT, as_float))
        else:
            v = pa.array(values.decode_values(table, value_type, options))
    else:
        kinds = values.kinds_of(table)
        v = _only_where(kinds != KIND_NULL, _text_column(table, kinds))
    return pa.table({"t": t, "v": v})


def _only_where(keep: np.ndarray, column: pa.ChunkedArray) -> pa.ChunkedArray:
    """``column`` where ``keep``, null elsewhere (masks built by numpy: a Python scalar in a
    compute call is a conversion, which imports pandas the first time)."""
    return pc.if_else(arrow_numpy.from_numpy(keep), column, null_array(column.type, len(keep)))


def _text_column(table: pa.Table, kinds: np.ndarray) -> pa.ChunkedArray:
    """Int and float numbers as text too, so one string column can hold every value."""
    text = table.column("s")
    if not ((kinds == KIND_INT) | (kinds == KIND_FLOAT)).any():
        return text
    ints = table.column("i").cast(pa.string())
    floats = table.column("f").cast(pa.string())
    return pc.if_else(arrow_numpy.from_numpy(kinds == KIND_INT), ints,
                      pc.if_else(arrow_numpy.from_numpy(kinds == KIND_FLOAT), floats, text))


def level_arrow(
    table: pa.Table, value_type: str, options: dict, names: list[str], times: list[str], width: int
) -> pa.Table:
    exported = downsamplers.finalize_arrow(table, value_type, options, names, times, width)
    if "t" not in exported.column_names:
        exported = exported.add_column(0, "t", table.column("t"))
    t = exported.column("t")
    if not pa.types.is_timestamp(t.type):
        exported = exported.set_column(0, "t", t.cast(pa.int64()).cast(level_export.utc_micros()))
    return exported


# -- bulk inputs --------------------------------------------------------------------------


def to_arrow_table(table: Any) -> pa.Table:
    """A pyarrow Table from a Table, RecordBatch, pandas or polars DataFrame."""
    if isinstance(table, pa.Table):
        return table
    if isinstance(table, pa.RecordBatch):
        return pa.Table.from_batches([table])
    to_arrow = getattr(table, "to_arrow", None)  # polars
    if callable(to_arrow):
        return to_arrow()
    if hasattr(table, "__arrow_c_stream__"):
        return pa.table(table)
    try:
        return pa.Table.from_pandas(table, preserve_index=False)
    except Exception as error:
        raise TypeError(f"cannot read a table from {type(table).__name__}") from error


def stream_groups(table: pa.Table) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(stream ids, row order, group starts): ``order`` lists the rows stream by stream,
    keeping each stream's row order; the rows of ``ids[g]`` are ``order[starts[g]:starts[g +
    1]]``."""
    ids = table.column("stream_id")
    if ids.null_count:
        raise exceptions.StreamNotFound("the stream_id column contains nulls")
    encoded = ids.combine_chunks().dictionary_encode()
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    order = np.argsort(indices, kind="stable")
    if not len(order):
        return [], order, order
    starts = np.flatnonzero(np.r_[True, np.diff(indices[order]) != 0])
    names = encoded.dictionary.to_pylist()
    return [names[int(code)] for code in indices[order[starts]]], order, starts


def stream_rows(table: pa.Table) -> list[tuple[str, np.ndarray]]:
    """Each stream id with the positions of its rows, in their order."""
    ids, order, starts = stream_groups(table)
    return list(zip(ids, np.split(order, starts[1:])))


def python_values(table: Any) -> np.ndarray | None:
    """The ``value`` column of a pandas DataFrame as its Python objects, when it holds objects
    (JSON values, mixed or huge numbers): Arrow would make dicts one struct type (adding
    every missing key as None), lists of numbers floats, and refuse mixed kinds. pandas'
    missing markers (None, NaN, ``pd.NA``) become None, the null they mean in an Arrow column
    too. None for anything else, which converts to Arrow as it is."""
    if not type(table).__module__.startswith("pandas"):
        return None
    columns = getattr(table, "columns", ())
    if "value" not in columns or table["value"].dtype != np.dtype(object):
        return None
    return table["value"].to_numpy(dtype=object, na_value=None)
