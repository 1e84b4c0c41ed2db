"""Level tables of the embedded store: naming, schema bookkeeping and batch preparation.

The engine chooses the columns of its level rows; this module only keeps a table per level key
whose columns follow what arrives, and remembers the Arrow schema so that reads hand back the
types that were written (DuckDB alone would widen or rename some Arrow types).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

STREAM_KEY = "stream_key"  # integer stream key used in data tables instead of the UUID text


def quote(name: str) -> str:
    """A safely quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def table_name(level_key: str) -> str:
    """Table of one level key. DuckDB identifiers ignore case while level keys do not
    (``'s'`` vs ``'S'``), so the key is spelled in hex."""
    if not isinstance(level_key, str) or not level_key:
        raise ValueError(f"invalid level key {level_key!r}")
    return "level_" + level_key.encode().hex()


@dataclasses.dataclass
class LevelTable:
    """What is known of one stored level table."""

    name: str
    schema: pa.Schema  # stored columns in order, ``t`` included, ``stream_id`` excluded

    def missing_fields(self, incoming: pa.Schema) -> list[pa.Field]:
        """Fields of ``incoming`` that the table does not have yet."""
        known = {name.lower() for name in self.schema.names}
        return [field for field in incoming if field.name.lower() not in known]

    def widened(self, fields: list[pa.Field]) -> LevelTable:
        return LevelTable(self.name, pa.schema(list(self.schema) + fields))


def serialize_schema(schema: pa.Schema) -> bytes:
    return schema.serialize().to_pybytes()


def deserialize_schema(data: bytes) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(data))


def prepare_rows(
    level_key: str, table: pa.Table | pa.RecordBatch, key_of: Callable[[str], int | None]
) -> pa.Table:
    """The incoming level rows as ``stream_key``, ``t``, partial columns: stream ids mapped to
    integer keys, all-null columns of type null dropped (they carry no type; absent columns
    read back as NULL), sorted by (stream_key, t) for tight zone maps, and deduplicated on
    (stream_id, t) keeping the last row, as an upsert would."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    names = table.column_names
    for required in ("stream_id", "t"):
        if required not in names:
            raise ValueError(f"level {level_key!r}: rows lack the {required!r} column")
    lowered = [name.lower() for name in names]
    if STREAM_KEY in lowered:
        raise ValueError(f"level {level_key!r}: column name {STREAM_KEY!r} is reserved")
    if len(set(lowered)) != len(lowered):
        raise ValueError(f"level {level_key!r}: column names differ only by case: {names}")

    ids = table.column("stream_id").cast(pa.string())
    if ids.null_count:
        raise ValueError(f"level {level_key!r}: null stream_id")
    unique = pc.unique(ids).to_pylist()
    found = [key_of(stream_id) for stream_id in unique]
    if None in found:
        raise ValueError(f"level {level_key!r}: unknown stream {unique[found.index(None)]!r}")
    positions = pc.index_in(ids, value_set=pa.array(unique, ids.type)).to_numpy()
    stream_keys = np.array(found, dtype=np.int32)[positions]
    times = table.column("t").cast(pa.int64())
    if times.null_count:
        raise ValueError(f"level {level_key!r}: null t")

    columns = {STREAM_KEY: pa.array(stream_keys), "t": times}
    for name in names:
        if name not in ("stream_id", "t") and not pa.types.is_null(table.schema.field(name).type):
            columns[name] = table.column(name)
    rows = pa.table(columns)

    t = times.to_numpy()
    order = np.lexsort((t, stream_keys))  # stable: equal keys keep their arrival order
    sorted_keys, sorted_t = stream_keys[order], t[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = (sorted_keys[1:] != sorted_keys[:-1]) | (sorted_t[1:] != sorted_t[:-1])
    if last.all() and np.array_equal(order, np.arange(len(order))):
        return rows  # already sorted and unique: the common case, no copy
    return rows.take(pa.array(order[last]))


def stored_schema(rows: pa.Table) -> pa.Schema:
    """Arrow schema to remember for rows prepared by :func:`prepare_rows`."""
    return pa.schema([field for field in rows.schema if field.name != STREAM_KEY])
