"""Rows as InfluxDB 1.x points and back: the point layout of :mod:`.influxdb`.

Kept apart from the storage class because it is pure data shaping (Arrow in, line protocol out;
query results in, Arrow out) with no transactions in it; the only I/O is the streamed query.

Point identities
----------------
InfluxDB keeps one point per (measurement, tag set, time) and *merges the fields* of a point
written again at the same identity, so the backend never writes over a stored point. Points
go out with nanosecond precision at ``t_us * 1000 + ordinal % SLOTS``, plus an ``_ord`` tag
``ordinal // SLOTS`` when that is not 0; reads floor times back to microseconds. For raw points
the ordinal is the insertion order among points sharing a microsecond (the stream's tail in
its bookkeeping gives it for in-order appends; older times are looked up). A level row that is
written again gets the next free ordinal at its time, and readers take the visible version of
the latest batch, so the old version stays valid until the new one is committed. Lookups of
ordinals in use go through an ``occupied(measurement, stream_id, epoch, times)`` callback.

Batch numbers and kinds
-----------------------
Level points carry the batch number in the field ``_batch``. Raw points carry ``kb = batch <<
9 | (k + 128)`` (256 for a null ``k``): as the field ``_kb`` in small batches, as the tag
``_b`` when the batch writes at least TAG_BATCH_POINTS points to the stream (then only points
without any value field also get the field). A tag makes such a point a series of its own
batch, so its identity can only be shared with points of the same batch, which never happens.

Queries stream MessagePack (JSON as a fallback) and are decoded into Arrow columns.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from itertools import chain
from typing import Any

import msgpack
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import requests
from influxdb import InfluxDBClient
from influxdb.exceptions import InfluxDBClientError

from ...granularity import MAX_US, MIN_US
from ...units import INT64_MAX, INT64_MIN
from ..base import RAW_SCHEMA
from . import line_protocol as lp
from .session import InfluxSession

SLOTS = 500  # equal-timestamp ordinals kept in the sub-microsecond part of the time
RAW_MEASUREMENT = "datastream_raw"
LEVEL_MEASUREMENT = "datastream_level_"
STREAM_TAG, EPOCH_TAG, ORD_TAG, BATCH_FIELD = "stream_id", "_epoch", "_ord", "_batch"
# Raw points carry their value kind ``k`` in the low bits of their batch number: ``kb = batch
# << KIND_BITS | (k + KIND_OFFSET)`` (NULL_KIND for a null k). InfluxDB stores every field with
# its own copy of the timestamps, so a field per point costs as much again as the times. A
# batch writing at least TAG_BATCH_POINTS points to a stream puts ``kb`` in the tag
# RAW_BATCH_TAG instead (one series per such batch and kind: few, as each holds many points);
# smaller ones, and points without any value field, carry the field RAW_BATCH_FIELD.
RAW_BATCH_FIELD, RAW_BATCH_TAG = "_kb", "_b"
KIND_BITS, KIND_OFFSET, NULL_KIND = 9, 128, 256  # code = k + 128 (int8), 256 for a null k
TAG_BATCH_POINTS = 10_000
RAW_VALUE_COLUMNS = ("i", "f", "s")
MIN_NS, MAX_NS = INT64_MIN + 2, INT64_MAX - 1  # InfluxDB's valid time range
ROWS_PER_CHUNK = 5_000

Occupied = Callable[[str, str, int, np.ndarray], np.ndarray]
Visible = Callable[[np.ndarray, np.ndarray], np.ndarray]


# -- rows given to a commit --------------------------------------------------------------------

def _table(table: pa.Table | pa.RecordBatch) -> pa.Table:
    return pa.Table.from_batches([table]) if isinstance(table, pa.RecordBatch) else table


def _check_times(what: str, t: np.ndarray) -> None:
    if len(t) and (t.min() < MIN_US or t.max() > MAX_US):
        raise ValueError(f"{what}: timestamps outside the supported range")


def raw_rows(sid: str, table: pa.Table | pa.RecordBatch) -> pa.Table:
    """Raw rows as RAW_SCHEMA, stably sorted by t."""
    if not isinstance(sid, str) or not sid:
        raise ValueError(f"invalid stream id {sid!r}")
    table = _table(table)
    missing = set(RAW_SCHEMA.names) - set(table.column_names)
    if missing:
        raise ValueError(f"raw rows of stream {sid!r} lack columns {sorted(missing)}")
    table = table.select(RAW_SCHEMA.names).cast(RAW_SCHEMA)
    if table.column("t").null_count:
        raise ValueError(f"raw rows of stream {sid!r}: null t")
    t = table.column("t").to_numpy()
    _check_times(f"raw rows of stream {sid!r}", t)
    if len(t) > 1 and (t[1:] < t[:-1]).any():
        table = table.take(pa.array(np.argsort(t, kind="stable")))
    return table


def level_rows(key: str, table: pa.Table | pa.RecordBatch) -> tuple[pa.Schema, dict]:
    """(schema of the value columns incl. ``t``, {stream id: rows sorted by t, one per t (the
    last given, as an upsert), without ``stream_id``})."""
    table = _table(table)
    if table.num_rows == 0:
        return pa.schema([]), {}
    for required in ("stream_id", "t"):
        if required not in table.column_names:
            raise ValueError(f"level {key!r}: rows lack the {required!r} column")
    keep = [name for name in table.column_names
            if name != "stream_id" and not pa.types.is_null(table.schema.field(name).type)]
    values = table.select(keep)
    values = values.set_column(keep.index("t"), "t", values.column("t").cast(pa.int64()))
    if values.column("t").null_count or table.column("stream_id").null_count:
        raise ValueError(f"level {key!r}: null stream_id or t")
    encoded = pc.dictionary_encode(table.column("stream_id").combine_chunks())
    codes, names = encoded.indices.to_numpy(), encoded.dictionary.to_pylist()
    t = values.column("t").to_numpy()
    _check_times(f"level {key!r}", t)
    order = np.lexsort((t, codes))  # stable: by stream, then time, then arrival
    codes, times = codes[order], t[order]
    last = np.r_[(codes[1:] != codes[:-1]) | (times[1:] != times[:-1]), True]
    order, codes = order[last], codes[last]
    bounds = np.flatnonzero(np.diff(codes)) + 1
    per_stream = {}
    for rows, code in zip(np.split(order, bounds), codes[np.r_[0, bounds]]):
        per_stream[names[code]] = values.take(pa.array(rows))
    return values.schema, per_stream


def spans(raw: dict[str, pa.Table], levels: dict[str, tuple]) -> dict[str, list[int]]:
    """Per stream, the time span (µs) a batch writes at, over raw and level rows."""
    result: dict[str, list[int]] = {}
    tables = list(raw.items()) + [item for _, rows in levels.values() for item in rows.items()]
    for sid, table in tables:
        if not table.num_rows:
            continue  # (a level table of a batch that only clears or truncates)
        t = table.column("t").to_numpy()
        lo, hi = int(t.min()), int(t.max())
        old = result.get(sid)
        result[sid] = [lo, hi] if old is None else [min(old[0], lo), max(old[1], hi)]
    return result


# -- column types ------------------------------------------------------------------------------

_KINDS = (
    ("integer", pa.types.is_integer),
    ("float", pa.types.is_floating),
    ("string", lambda kind: pa.types.is_string(kind) or pa.types.is_large_string(kind)),
    ("boolean", pa.types.is_boolean),
)


def kind(data_type: pa.DataType) -> str:
    """The InfluxDB field type an Arrow type is stored as."""
    if pa.types.is_dictionary(data_type):
        data_type = data_type.value_type
    for name, test in _KINDS:
        if test(data_type):
            return name
    return str(data_type)


def merge_schema(key: str, stored: pa.Schema, incoming: pa.Schema) -> pa.Schema:
    """``stored`` itself when it covers ``incoming``, else widened by the new columns. The same
    column with another InfluxDB field type would be rejected by InfluxDB: ValueError."""
    added = []
    for field in incoming:
        index = stored.get_field_index(field.name)
        if index < 0:
            added.append(field)
        elif kind(stored.field(index).type) != kind(field.type):
            raise ValueError(f"level {key!r}: column {field.name!r} was stored as"
                             f" {stored.field(index).type}, now given as {field.type}")
    return pa.schema(list(stored) + added) if added else stored


def stored_fields(schema: pa.Schema) -> list[str]:
    """Encoded names of the columns of ``schema`` stored as fields (``t`` is the point's time,
    and a raw point's ``k`` travels in its batch field)."""
    skip = ("t", "k") if schema is RAW_SCHEMA else ("t",)
    return [lp.encode_name(field.name) for field in schema if field.name not in skip]


def batch_field(measurement: str) -> str:
    return RAW_BATCH_FIELD if measurement == RAW_MEASUREMENT else BATCH_FIELD


# -- encoding ----------------------------------------------------------------------------------

def level_measurement(key: str) -> str:
    """Measurement of a level (already encoded: level keys may hold any character)."""
    return LEVEL_MEASUREMENT + lp.encode_name(key)


def _series(measurement: str, sid: str, epoch: int) -> str:
    """Escaped measurement and tag set of one stream epoch (``measurement`` is encoded)."""
    return (f"{lp.escape_measurement(measurement)},{STREAM_TAG}="
            f"{lp.escape_key(lp.encode_name(sid))},{EPOCH_TAG}={epoch}")


def _within(times: np.ndarray, spans: list[list[int]]) -> np.ndarray:
    mask = np.zeros(len(times), dtype=bool)
    for lo, hi in spans:
        mask |= (times >= lo) & (times <= hi)
    return mask


def _lines(series: list[str], times: list[np.ndarray], ordinals: list[np.ndarray],
           fields: list[pa.Array], batch: pa.Array | pa.Scalar,
           tags: pa.Array | None = None) -> pa.Array:
    """Points of several streams (``series[j]`` for the rows ``times[j]``) at
    ``t * 1000 + ordinal % SLOTS``, with ``_ord = ordinal // SLOTS`` when that is not 0, each
    carrying its batch (``batch``: ``key=<n>i`` field text, shared or per row, null where
    ``tags``, escaped ``,key=value`` text per row, carries it)."""
    counts = [len(t) for t in times]
    prefix = pa.array(series, pa.string()).take(
        pa.array(np.repeat(np.arange(len(series)), counts)))
    if tags is not None:
        prefix = lp.join(prefix, tags)
    t, ordinal = np.concatenate(times), np.concatenate(ordinals)
    high = ordinal // SLOTS
    if high.any():
        tag = lp.join(f",{ORD_TAG}=", pc.cast(pa.array(high), pa.string()))
        prefix = lp.join(prefix, pc.if_else(pa.array(high > 0), tag, ""))
    return lp.lines(prefix, [*fields, batch], t * 1000 + ordinal % SLOTS)


def raw_lines(raw: dict[str, pa.Table], stores: dict, risky: dict, attempt: int,
              occupied: Occupied) -> pa.Array:
    """Lines of all raw points of a batch, built column-wise in one go."""
    series, times, ordinals = [], [], []
    for sid, table in raw.items():
        state = stores[sid]["raw"]
        t = table.column("t").to_numpy()
        times.append(t)
        ordinals.append(_raw_ordinals(sid, state, t, risky.get(sid, []), occupied))
        series.append(_series(RAW_MEASUREMENT, sid, state["e"]))
    table = pa.concat_tables(raw.values())
    values = [table.column(name).combine_chunks() for name in RAW_VALUE_COLUMNS]
    fields = [column for name, array in zip(RAW_VALUE_COLUMNS, values)
              for column in lp.field_columns(name, array)]
    kinds = table.column("k").combine_chunks()
    codes = pc.fill_null(pc.add(kinds.cast(pa.int64()), KIND_OFFSET), NULL_KIND)
    text = pc.cast(pc.add(codes, attempt << KIND_BITS), pa.string())
    tagged = np.concatenate([np.full(len(t), len(t) >= TAG_BATCH_POINTS) for t in times])
    if not tagged.any():
        return _lines(series, times, ordinals, fields,
                      lp.join(f"{RAW_BATCH_FIELD}=", text, "i"))
    empty = np.ones(len(tagged), dtype=bool)
    for array in values:
        empty &= np.asarray(array.is_null())
    tags = pc.if_else(pa.array(tagged), lp.join(f",{RAW_BATCH_TAG}=", text), "")
    field = pc.if_else(pa.array(~tagged | empty), lp.join(f"{RAW_BATCH_FIELD}=", text, "i"),
                       pa.scalar(None, pa.string()))
    return _lines(series, times, ordinals, fields, field, tags)


def _raw_ordinals(sid: str, state: dict, t: np.ndarray, risky: list[list[int]],
                  occupied: Occupied) -> np.ndarray:
    """Insertion ordinals of sorted raw times, above every point stored at the same
    microsecond; updates the stream's tail (latest time, next ordinal there) in ``state``.
    Only times before the tail or inside a failed attempt's span need a look at InfluxDB."""
    starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(t)]))
    group_t = t[starts]
    base = np.zeros(len(starts), dtype=np.int64)
    tail_t = state["t"]
    look = _within(group_t, risky)
    if tail_t is not None:
        base[group_t == tail_t] = state["n"]
        look |= group_t < tail_t
    if look.any():
        base[look] = occupied(RAW_MEASUREMENT, sid, state["e"], group_t[look]) + 1
    if tail_t is None or group_t[-1] >= tail_t:
        state["t"], state["n"] = int(group_t[-1]), int(base[-1] + len(t) - starts[-1])
    return np.arange(len(t)) - starts[group] + base[group]


def level_lines(key: str, per_stream: dict[str, pa.Table], stores: dict, risky: dict,
                attempt: int, occupied: Occupied) -> pa.Array:
    """A level row is never overwritten in place: a new version gets the next free ordinal
    at its time, and readers take the visible version of the latest batch. Updates the
    level's high-water mark in ``stores``."""
    measurement = level_measurement(key)
    series, times, ordinals = [], [], []
    for sid, table in per_stream.items():
        state = stores[sid]["lv"]
        t = table.column("t").to_numpy()
        ordinal = np.zeros(len(t), dtype=np.int64)
        hwm = state["hwm"].get(key)
        look = _within(t, risky.get(sid, []))
        if hwm is not None:
            look |= t <= hwm
        if look.any():
            ordinal[look] = occupied(measurement, sid, state["e"], t[look]) + 1
        state["hwm"][key] = int(t.max()) if hwm is None else max(hwm, int(t.max()))
        series.append(_series(measurement, sid, state["e"]))
        times.append(t)
        ordinals.append(ordinal)
    table = pa.concat_tables(per_stream.values())
    batch = pa.scalar(f"{BATCH_FIELD}={attempt}i")
    fields, pieces = [], []
    for name in table.column_names:
        if name == "t":
            continue
        column = table.column(name).combine_chunks()
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            column, further = lp.text_pieces(column)
            key = lp.escape_key(lp.encode_name(name))
            pieces += [(lp.piece_name(key, index), piece)
                       for index, piece in enumerate(further, start=1)]
        fields += lp.field_columns(name, column)
    lines = [_lines(series, times, ordinals, fields, batch)]
    for key, piece in pieces:  # the rest of long texts: same points, lines of their own
        field = lp.join(key + "=", lp.quoted(piece))
        lines.append(_lines(series, times, ordinals, [field], batch).filter(piece.is_valid()))
    return pa.concat_arrays(lines) if len(lines) > 1 else lines[0]


# -- querying ----------------------------------------------------------------------------------

def bounds(start_us: int | None, end_us: int | None) -> tuple[int, int] | None:
    """Inclusive nanosecond bounds of ``start_us <= t < end_us``; None when empty."""
    lo = MIN_NS if start_us is None else max(MIN_NS, int(start_us) * 1000)
    hi = MAX_NS if end_us is None else min(MAX_NS, int(end_us) * 1000 - 1)
    return (lo, hi) if lo <= hi else None


def ordinal_window(times: np.ndarray) -> tuple[int, int]:
    """Inclusive nanosecond bounds holding every ordinal of the microseconds ``times``."""
    return int(times.min()) * 1000, min(MAX_NS, int(times.max()) * 1000 + SLOTS - 1)


def select(session: InfluxSession, database: str, measurement: str, sid: str, epoch: int,
           lo_ns: int, hi_ns: int, fields: list[str] = (),
           limit: int | None = None) -> tuple[dict[str, Any], int]:
    """Points of one stream epoch with ``lo_ns <= time <= hi_ns``, as columns by stored name:
    ``time``, the batch field, the ``_ord`` tag (and for raw points the batch tag) and every
    stored field of the given encoded column names (plain, decimal and special-float fields,
    matched by one regular expression), each a list or, for the times, an int64 array.
    InfluxDB returns the points holding at least one of the selected fields: raw points
    whose batch is a tag are found by their value fields (or, without any, by the field).
    Values travel as bound parameters; the time range is always explicit. With ``limit``,
    only the first points by time (over all the stream's series). Points come in no
    particular order: without ``limit``, grouped by their tags (a series at a time, its tag
    values sent once rather than with every point: a quarter less to encode and decode)."""
    batch = batch_field(measurement)
    tags = [ORD_TAG, RAW_BATCH_TAG] if measurement == RAW_MEASUREMENT else [ORD_TAG]
    selected = [lp.quote_identifier(batch)]
    if fields:
        selected.append(lp.field_pattern(list(fields)))
    if limit is not None:  # one series: the first points over all of them
        selected.extend(lp.quote_identifier(tag) for tag in tags)
    statement = (
        f"SELECT {', '.join(selected)} FROM {lp.quote_identifier(measurement)} WHERE"
        f" {lp.quote_identifier(STREAM_TAG)} = $sid AND {lp.quote_identifier(EPOCH_TAG)} ="
        " $epoch AND time >= $lo AND time <= $hi"
    )
    if limit is not None:
        statement += f" ORDER BY time ASC LIMIT {int(limit)}"
    else:
        statement += " GROUP BY " + ", ".join(lp.quote_identifier(tag) for tag in tags)
    bind = {"sid": lp.encode_name(sid), "epoch": str(epoch), "lo": lo_ns, "hi": hi_ns}
    parts: list[tuple[list[str], list[tuple], int]] = []
    for series in query(session, database, statement, bind):
        values = series.get("values")
        if values:
            columns = series["columns"]
            if columns[0] != "time" or batch not in columns:
                raise ValueError(f"unexpected columns {columns} from InfluxDB")
            names, width = list(columns), len(values)
            transposed = list(zip(*values))
            for tag, value in (series.get("tags") or {}).items():
                names.append(tag)  # "": the series lacks the tag, as a column gives None
                transposed.append((value or None,) * width)
            parts.append((names, transposed, width))
    if not parts:
        return {}, 0
    return _joined_columns(parts), sum(width for _, _, width in parts)


def field_values(session: InfluxSession, database: str, measurement: str, sid: str, epoch: int,
                 lo_ns: int, hi_ns: int) -> int:
    """How many field values the points of one stream epoch with ``lo_ns <= time <= hi_ns``
    hold, over all fields (``COUNT(*)``, computed by InfluxDB): at least the number of
    points, since every point has a field, and at most a few times it. Visibility is not
    applied (it needs the batch of each point), so it bounds a visible count from above."""
    statement = (
        f"SELECT COUNT(*) FROM {lp.quote_identifier(measurement)} WHERE"
        f" {lp.quote_identifier(STREAM_TAG)} = $sid AND {lp.quote_identifier(EPOCH_TAG)} ="
        " $epoch AND time >= $lo AND time <= $hi"
    )
    bind = {"sid": lp.encode_name(sid), "epoch": str(epoch), "lo": lo_ns, "hi": hi_ns}
    total = 0
    for series in query(session, database, statement, bind):
        for row in series.get("values") or ():
            total += sum(value for value in row[1:] if isinstance(value, int))
    return total


def _joined_columns(parts: list[tuple[list[str], list[tuple], int]]) -> dict[str, Any]:
    """The columns of several query results ((names, values per column, rows) each) one after
    the other: a list per name, None where a part lacks the column, the times as int64. Each
    column is copied once, from the tuples of the rows' values (no per-point Python code)."""
    names = list(dict.fromkeys(name for columns, _, _ in parts for name in columns))
    result: dict[str, Any] = {}
    for name in names:
        pieces = []
        for columns, values, width in parts:
            pieces.append(values[columns.index(name)] if name in columns else (None,) * width)
        result[name] = list(chain.from_iterable(pieces))
    result["time"] = np.array(result["time"], dtype=np.int64)
    return result


def query(session: InfluxSession, database: str, statement: str,
          bind: dict[str, Any]) -> Iterator[dict]:
    """Series of a chunked InfluxQL query, streamed as MessagePack (a third of the decoding
    time of JSON, and types survive: 1.0 stays a float). The client's ``query`` cannot
    stream MessagePack and its chunked JSON reader drops errors, hence the backend's own
    session (:mod:`.session`)."""
    with session.query(database, statement, bind, ROWS_PER_CHUNK) as response:
        if "msgpack" in response.headers.get("Content-Type", ""):
            documents = _msgpack_documents(response)
        else:
            documents = _json_lines(response)
        for data in documents:
            if "error" in data:
                raise InfluxDBClientError(data["error"])
            for result in data.get("results", []):
                if "error" in result:
                    raise InfluxDBClientError(result["error"])
                yield from result.get("series", [])


def _msgpack_documents(response: requests.Response) -> Iterator[Any]:
    # tuples rather than lists: a third of the unpacking time of a 5,000-row chunk
    unpacker = msgpack.Unpacker(raw=False, use_list=False, max_buffer_size=2**31 - 1)
    for block in response.iter_content(chunk_size=1 << 20):
        unpacker.feed(block)
        yield from unpacker


def _json_lines(response: requests.Response) -> Iterator[Any]:
    """JSON documents of a chunked response, one per line (``iter_lines`` of requests is
    quadratic in the length of a line, and a chunk of 10,000 rows is one long line)."""
    pending = bytearray()
    for block in response.iter_content(chunk_size=1 << 20):
        pending += block
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            if end > start:
                yield json.loads(bytes(pending[start:end]))
            start = end + 1
        del pending[:start]
    if pending.strip():
        yield json.loads(bytes(pending))


def drop_series(client: InfluxDBClient, sid: str, epoch: int | None) -> None:
    """Drop the series of a stream, of one epoch or (``epoch`` None) all of them."""
    condition = f"{lp.quote_identifier(STREAM_TAG)} = $sid"
    bind = {"sid": lp.encode_name(sid)}
    if epoch is not None:
        condition += f" AND {lp.quote_identifier(EPOCH_TAG)} = $epoch"
        bind["epoch"] = str(epoch)
    client.query(f"DROP SERIES WHERE {condition}", bind_params=bind, method="POST")


DELETES_PER_REQUEST = 100  # InfluxQL statements per request (joined by ";", sent in the URL)


def delete_statement(measurement: str, epoch: int, lo_ns: int, hi_ns: int,
                     ordinal_high: int | None = None) -> str:
    """InfluxQL deleting the points of one stream epoch with ``lo_ns <= time <= hi_ns`` (with
    ``ordinal_high``, only those whose ``_ord`` tag is that: a missing tag is 0); the stream
    id is the bound parameter ``$sid`` (see :func:`delete`)."""
    condition = (f"{lp.quote_identifier(STREAM_TAG)} = $sid AND {lp.quote_identifier(EPOCH_TAG)}"
                 f" = '{int(epoch)}'")
    if ordinal_high is not None:
        tag = str(int(ordinal_high)) if ordinal_high else ""
        condition += f" AND {lp.quote_identifier(ORD_TAG)} = '{tag}'"
    return (f"DELETE FROM {lp.quote_identifier(measurement)} WHERE {condition}"
            f" AND time >= {int(lo_ns)} AND time <= {int(hi_ns)}")


def delete(client: InfluxDBClient, statements: list[str], sid: str) -> None:
    """Run :func:`delete_statement` statements of one stream, several per request."""
    for start in range(0, len(statements), DELETES_PER_REQUEST):
        client.query("; ".join(statements[start:start + DELETES_PER_REQUEST]),
                     bind_params={"sid": lp.encode_name(sid)}, method="POST")


def hidden_runs(measurement: str, epoch: int, columns: dict[str, Any],
                visible: Visible) -> list[str]:
    """Statements deleting the queried points that ``visible(batches, times)`` hides and no
    other: per ``_ord`` series, each run of hidden points between visible ones is one time
    range (a point's identity is its series and time, so none of the visible is touched)."""
    t_ns = np.asarray(columns["time"], dtype=np.int64)
    t_us, _ = _positions(columns)
    if measurement == RAW_MEASUREMENT:
        batches, _ = _batches_and_kinds(columns)
    else:
        batches = np.array(columns[BATCH_FIELD], dtype=np.int64)
    keep = visible(batches, t_us)
    high = columns.get(ORD_TAG)
    groups = (np.zeros(len(t_ns), dtype=np.int64) if high is None else
              pc.fill_null(pc.cast(pa.array(high, pa.string()), pa.int64()), 0).to_numpy())
    order = np.lexsort((keep, t_ns, groups))  # visible last among equal times: it wins
    t_ns, groups, keep = t_ns[order], groups[order], keep[order]
    last = np.r_[(t_ns[1:] != t_ns[:-1]) | (groups[1:] != groups[:-1]), True]
    t_ns, groups, hidden = t_ns[last], groups[last], ~keep[last]
    # a run starts at a hidden point after a visible one or another series, and ends likewise
    before = np.r_[True, ~hidden[:-1] | (groups[1:] != groups[:-1])]
    after = np.r_[~hidden[1:] | (groups[1:] != groups[:-1]), True]
    starts, ends = np.flatnonzero(hidden & before), np.flatnonzero(hidden & after)
    return [delete_statement(measurement, epoch, int(t_ns[a]), int(t_ns[b]), int(groups[a]))
            for a, b in zip(starts.tolist(), ends.tolist())]


# -- decoding ----------------------------------------------------------------------------------

def _positions(columns: dict[str, list]) -> tuple[np.ndarray, np.ndarray]:
    """(microsecond times, ordinals) of queried points."""
    t_ns = np.array(columns["time"], dtype=np.int64)
    t_us = t_ns // 1000
    ordinals = t_ns - t_us * 1000
    high = columns.get(ORD_TAG)
    if high is not None:
        high = pa.array(high, pa.string())
        if high.null_count < len(high):
            high = pc.fill_null(pc.cast(high, pa.int64()), 0).to_numpy()
            ordinals = ordinals + SLOTS * high
    return t_us, ordinals


def highest_ordinals(columns: dict[str, list], count: int, times: np.ndarray) -> np.ndarray:
    """Highest ordinal among queried points at each of ``times`` (-1 where none)."""
    if not count:
        return np.full(len(times), -1, dtype=np.int64)
    t_us, ordinals = _positions(columns)
    order = np.lexsort((ordinals, t_us))
    t_us, ordinals = t_us[order], ordinals[order]
    last = np.r_[t_us[1:] != t_us[:-1], True]
    known_t, known_max = t_us[last], ordinals[last]
    index = np.clip(np.searchsorted(known_t, times), 0, len(known_t) - 1)
    return np.where(known_t[index] == times, known_max[index], -1)


def _column(columns: dict[str, Any], field: pa.Field, count: int) -> pa.Array:
    """One stored column from query results (absent = all null), as ``field.type``."""
    name = lp.encode_name(field.name)
    values = columns.get(name)
    field_kind = kind(field.type)
    if field_kind == "float":
        return _floats(columns, name, count).cast(field.type)
    if values is None:
        return pa.nulls(count, field.type)
    arrow_type = {"integer": pa.int64(), "string": pa.string(), "boolean": pa.bool_()}.get(
        field_kind)
    if arrow_type is None:
        raise ValueError(f"column {field.name!r}: unsupported type {field.type}")
    if field_kind == "string" and lp.piece_name(name, 1) in columns:
        values = lp.joined_pieces(columns, name, list(values))
    return pa.array(values, arrow_type).cast(field.type)


def _floats(columns: dict[str, Any], name: str, count: int) -> pa.Array:
    """A float column from its plain, decimal (``_d<k>_``) and special-float fields."""
    result = np.zeros(count, dtype=np.float64)
    present = np.zeros(count, dtype=bool)
    plain = columns.get(name)
    if plain is not None:
        array = pa.array(plain, pa.float64())
        if array.null_count < count:
            mask = ~np.asarray(array.is_null())
            result[mask] = array.to_numpy(zero_copy_only=False)[mask]
            present |= mask
    for scale in range(lp.MAX_SCALE + 1):
        mantissas = columns.get(lp.decimal_field(name, scale))
        if mantissas is None:
            continue
        array = pa.array(mantissas, pa.int64())
        mask = ~np.asarray(array.is_null())
        result[mask] = lp.decode_decimal(array.to_numpy(zero_copy_only=False)[mask], scale)
        present |= mask
    special = columns.get(lp.SPECIAL_FLOAT_PREFIX + name)
    if special is not None:
        for index, value in enumerate(lp.decode_special(special)):
            if value is not None:
                result[index] = value
                present[index] = True
    return pa.array(result, pa.float64(), mask=~present)


def _batches_and_kinds(columns: dict[str, Any]) -> tuple[np.ndarray, pa.Array]:
    """Batch numbers and value kinds of queried raw points (see RAW_BATCH_FIELD)."""
    packed = pa.array(columns[RAW_BATCH_FIELD], pa.int64())
    tag = columns.get(RAW_BATCH_TAG)
    if tag is not None:
        packed = pc.coalesce(pc.cast(pa.array(tag, pa.string()), pa.int64()), packed)
    if packed.null_count:
        raise ValueError("raw points without a batch number in InfluxDB")
    packed = packed.to_numpy()
    codes = packed & ((1 << KIND_BITS) - 1)
    kinds = pa.array(codes - KIND_OFFSET, pa.int64(), mask=codes == NULL_KIND)
    return packed >> KIND_BITS, kinds.cast(pa.int8())


def visible_raw_times(columns: dict[str, Any], visible: Visible) -> np.ndarray:
    """The times (µs) of the queried raw points that are ``visible(batches, times)``."""
    t_us, _ = _positions(columns)
    batches, _ = _batches_and_kinds(columns)
    return t_us[visible(batches, t_us)]


def raw_table(columns: dict[str, Any], count: int, visible: Visible,
              reverse: bool = False) -> pa.Table:
    """Queried raw points that are ``visible(batches, times)``, as RAW_SCHEMA in time and
    insertion order (or reversed time, still in insertion order within a microsecond)."""
    t_us, ordinals = _positions(columns)
    batches, kinds = _batches_and_kinds(columns)
    rows = np.flatnonzero(visible(batches, t_us))
    order = np.lexsort((ordinals[rows], -t_us[rows] if reverse else t_us[rows]))
    take = pa.array(rows[order])
    arrays = [pa.array(t_us, pa.int64()).take(take), kinds.take(take)]
    for field in list(RAW_SCHEMA)[2:]:
        arrays.append(_column(columns, field, count).take(take))
    return pa.Table.from_arrays(arrays, schema=RAW_SCHEMA)


def level_table(columns: dict[str, Any], count: int, schema: pa.Schema,
                visible: Visible) -> pa.Table:
    """Queried level points as ``schema``: per time, among the versions of the row that are
    ``visible(batches, times)``, the one of the latest batch."""
    t_us, _ = _positions(columns)
    batches = np.array(columns[BATCH_FIELD], dtype=np.int64)
    rows = np.flatnonzero(visible(batches, t_us))
    rows = rows[np.lexsort((batches[rows], t_us[rows]))]
    # the last version per time; no visible rows at all (a killed writer's uncommitted batch)
    # must give an empty table, so the "last" mask is built only over rows that exist
    at = t_us[rows]
    rows = rows[np.r_[at[1:] != at[:-1], True][:len(rows)]]
    arrays = []
    for field in schema:
        if field.name == "t":
            arrays.append(pa.array(t_us[rows], pa.int64()).cast(field.type))
        else:
            arrays.append(_column(columns, field, count).take(pa.array(rows)))
    return pa.Table.from_arrays(arrays, schema=schema)
