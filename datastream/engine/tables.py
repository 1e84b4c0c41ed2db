"""Many streams as one long table (behaviour §6.4).

Each stream's rows are exported column-wise exactly as ``Datapoints.to_arrow`` does it, then
the tables are stacked: a ``stream_id`` column and the requested tag columns are repeated per
stream with ``take`` (one index array, no Python work per row). Streams may differ in their
columns (raw vs downsampled, different downsamplers) and in their value types; the result has
the union of the columns, nulls where a stream has no such column, and a column whose types
cannot be promoted (numbers of one stream, text of another) holds text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .. import arrow_numpy, downsamplers
from ..downsamplers import level_schema
from ..granularity import GranularityLevel
from ..lazy import pa
from ..storage.base import Storage, raw_schema
from ..values import canonical_json
from .reading import Range, level_arrow, level_grid, raw_arrow
from .state import StreamState
from .view import conform, slice_t

TagPath = tuple[str, ...]

# Names of the columns beside the tag columns (§6.3): a tag column may not take one of them
DATA_COLUMNS = frozenset(
    {"stream_id", "t", "v", *downsamplers.VALUE_DOWNSAMPLERS}
    | {f"time_{name}" for name in downsamplers.TIME_DOWNSAMPLERS}
)


def tag_paths(tags: Iterable[Any]) -> list[TagPath]:
    """Normalise ``tags``: each item a key or a tuple of keys (a nested path)."""
    if isinstance(tags, str):
        raise TypeError(
            f"tags must be a sequence of tag paths, e.g. ('host', 'metric'), not the string "
            f"{tags!r}"
        )
    paths = []
    for item in tags:
        if isinstance(item, str):
            path: TagPath | None = (item,)
        else:
            path = tuple(item) if isinstance(item, (tuple, list)) else None
        if not path or not all(isinstance(key, str) and key for key in path):
            raise TypeError(
                f"a tag path is a non-empty key or a tuple of non-empty keys, got {item!r}"
            )
        paths.append(path)
    names = [column_name(path) for path in paths]
    reserved = DATA_COLUMNS & set(names)
    if reserved:
        raise ValueError(f"tag columns {sorted(reserved)} would take the names of data columns"
                         " (stream_id, t, v, the downsamplers' names and time_...)")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"tag columns {repeated} are named twice")
    return paths


def column_name(path: TagPath) -> str:
    return ".".join(path)


def long_table(
    storage: Storage,
    states: list[StreamState],
    level: GranularityLevel,
    query: Range,
    value_names: list[str] | None,
    time_names: list[str] | None,
    paths: list[TagPath],
    tags_of: Callable[[StreamState], dict[str, Any]],
) -> pa.Table:
    """The rows of every stream in ``states`` (already in output order), stacked."""
    raw = [state for state in states if level >= state.highest]
    coarser = [state for state in states if level < state.highest]
    parts = _raw_parts(storage, raw, query)
    parts.update(_level_parts(storage, coarser, level, query, value_names, time_names))
    ordered = [parts[state.stream_id] for state in states]
    data = _in_column_order(_stack(ordered), value_names, time_names)
    rows = np.repeat(np.arange(len(states), dtype=np.int64), [p.num_rows for p in ordered])
    index = pa.array(rows)
    leading = {"stream_id": pa.array([s.stream_id for s in states], pa.string()).take(index)}
    for path in paths:
        per_stream = [_lookup(tags_of(state), path) for state in states]
        leading[column_name(path)] = _tag_array(per_stream).take(index)
    columns = {**leading, **{name: data.column(name) for name in data.column_names}}
    return pa.table(columns)


def _raw_parts(storage: Any, states: list[StreamState], query: Range) -> dict[str, pa.Table]:
    lo, hi = query.raw_bounds()
    ids = [state.stream_id for state in states]
    if query.empty or (lo is not None and hi is not None and lo >= hi):
        stored = {sid: arrow_numpy.empty_table(raw_schema()) for sid in ids}
    else:
        stored = _read_raw_many(storage, ids, lo, hi)
    return {
        state.stream_id: raw_arrow(stored[state.stream_id], state.value_type, state.options)
        for state in states
    }


def _level_parts(
    storage: Any,
    states: list[StreamState],
    level: GranularityLevel,
    query: Range,
    value_names: list[str] | None,
    time_names: list[str] | None,
) -> dict[str, pa.Table]:
    """Each stream's level rows, empty buckets included, finalized once per group of
    streams that share a value type, options and downsamplers."""
    grids = {state.stream_id: level_grid(state, level, query) for state in states}
    shown = [sid for sid, grid in grids.items() if grid.size]
    stored: dict[str, pa.Table | None] = {}
    if shown:
        lo = min(grids[sid].first for sid in shown)
        hi = max(grids[sid].end for sid in shown)
        stored = _read_level_many(storage, level.key, shown, lo, hi)
    times = list(downsamplers.TIME_DOWNSAMPLERS) if time_names is None else time_names
    groups: dict[tuple, list[tuple[StreamState, pa.Table]]] = {}
    for state in states:
        grid = grids[state.stream_id]
        rows = stored.get(state.stream_id)
        rows = arrow_numpy.empty_table(level_schema()) if rows is None else conform(rows)
        if grid.size:
            rows = downsamplers.fill_empty(slice_t(rows, grid.first, grid.end), grid.first,
                                           grid.end, level.width_us)
        else:
            rows = rows.slice(0, 0)
        kept = list(state.value_downsamplers)
        names = kept if value_names is None else [n for n in value_names if n in kept]
        key = (state.value_type, canonical_json(state.options), tuple(names))
        groups.setdefault(key, []).append((state, rows))
    parts = {}
    for (value_type, _, names), members in groups.items():
        together = pa.concat_tables([rows for _, rows in members])
        exported = level_arrow(together, value_type, members[0][0].options, list(names), times,
                               level.width_us)
        offset = 0
        for state, rows in members:
            part = exported.slice(offset, rows.num_rows)
            offset += rows.num_rows
            parts[state.stream_id] = (part if value_names is None
                                      else _with_requested(part, value_names))
    return parts


def _read_raw_many(storage: Any, ids: list[str], lo: int | None, hi: int | None) -> dict:
    if isinstance(storage, Storage):
        return storage.read_raw_many(ids, lo, hi)
    return {sid: storage.read_raw(sid, lo, hi) for sid in ids}  # a pending view


def _read_level_many(storage: Any, key: str, ids: list[str], lo: int, hi: int) -> dict:
    if isinstance(storage, Storage):
        return storage.read_level_many(key, ids, lo, hi)
    return {sid: storage.read_level(key, sid, lo, hi) for sid in ids}


def _with_requested(part: pa.Table, value_names: list[str]) -> pa.Table:
    """A requested downsampler this stream does not keep is a null column, so every stream
    of the result has the same downsampler columns."""
    for name in value_names:
        if name not in part.column_names:
            part = part.append_column(name, pa.nulls(part.num_rows))
    rest = [name for name in part.column_names if name != "t" and name not in value_names]
    return part.select(["t", *value_names, *rest])


def _in_column_order(data: pa.Table, value_names: list[str] | None,
                     time_names: list[str] | None) -> pa.Table:
    """The stacked columns in the order of §6.3, whatever order the streams brought them in:
    ``t``, ``v``, the value downsamplers (as requested, else in their canonical order), then
    the time downsamplers (likewise)."""
    values = downsamplers.VALUE_DOWNSAMPLERS if value_names is None else value_names
    times = downsamplers.TIME_DOWNSAMPLERS if time_names is None else time_names
    order = ["t", "v", *values, *(f"time_{name}" for name in times)]
    present = set(data.column_names)
    known = [name for name in order if name in present]
    return data.select(known + [name for name in data.column_names if name not in known])


def _stack(parts: list[pa.Table]) -> pa.Table:
    if not parts:
        return pa.table({"t": pa.array([], pa.timestamp("us", tz="UTC")), "v": pa.nulls(0)})
    parts = _integers_as_floats_where_mixed(parts)
    try:
        return pa.concat_tables(parts, promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.concat_tables(_as_text_where_mixed(parts), promote_options="permissive")


def _integers_as_floats_where_mixed(parts: list[pa.Table]) -> list[pa.Table]:
    """Integer columns of streams whose column holds floats in other streams become floats:
    the promotion pyarrow would make, except that an integer beyond 2**53 is rounded (as the
    export of one stream rounds it) instead of refused."""
    floating = {field.name for part in parts for field in part.schema
                if pa.types.is_floating(field.type)}
    result = []
    for part in parts:
        for position, field in enumerate(part.schema):
            if field.name in floating and pa.types.is_integer(field.type):
                part = part.set_column(position, field.name,
                                       part.column(position).cast(pa.float64(), safe=False))
        result.append(part)
    return result


def _as_text_where_mixed(parts: list[pa.Table]) -> list[pa.Table]:
    """Columns whose types differ between streams (and do not promote) become text."""
    types: dict[str, set[pa.DataType]] = {}
    for part in parts:
        for field in part.schema:
            if not pa.types.is_null(field.type):
                types.setdefault(field.name, set()).add(field.type)
    mixed = set()
    for name, found in types.items():
        try:
            pa.unify_schemas([pa.schema([(name, kind)]) for kind in found],
                             promote_options="permissive")
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            mixed.add(name)
    result = []
    for part in parts:
        for name in mixed & set(part.column_names):
            position = part.column_names.index(name)
            part = part.set_column(position, name, _text(part.column(name)))
        result.append(part)
    return result


def _text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_string(column.type) or pa.types.is_null(column.type):
        return column.cast(pa.string())
    try:
        return column.cast(pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):  # maps and lists: JSON text
        return pa.chunked_array(
            [pa.array([None if v is None else json.dumps(v, default=str) for v in
                       column.to_pylist()], pa.string())]
        )


def _lookup(tags: dict[str, Any], path: TagPath) -> Any:
    value: Any = tags
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _tag_array(values: list[Any]) -> pa.Array:
    """One value per stream; a path whose values have no common Arrow type is canonical JSON
    text, as the value columns of nominal streams are."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else canonical_json(v) for v in values], pa.string())
