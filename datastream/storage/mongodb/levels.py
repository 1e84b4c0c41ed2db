"""Level rows of the MongoDB backend: validation, encoding to documents, decoding to Arrow.

A level's rows live in ``level_<key>``, a document per row: ``stream_id``, ``t``, the partial
columns as fields, ``_q``/``_b`` (version, batch; see :mod:`.commit`). Several versions
of a ``(stream_id, t)`` may coexist until the older ones are collected, so decoding keeps the
newest visible one. Documents do not carry Arrow types: ``level_schemas`` remembers each
column's type alias and first position, so that reads return the written types.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pyarrow as pa

_LEVEL_KEY = re.compile(r"^[A-Za-z0-9]{1,16}$")
_COLUMN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def check_key(level_key: Any) -> None:
    if not isinstance(level_key, str) or not _LEVEL_KEY.match(level_key):
        raise ValueError(f"level key {level_key!r} cannot name a collection")


def schema_fields(level_key: str, schema: pa.Schema) -> dict[str, tuple[str, int]]:
    if "stream_id" not in schema.names or "t" not in schema.names:
        raise ValueError(f"level {level_key!r} rows need stream_id and t columns")
    fields = {}
    for position, field in enumerate(schema):
        if field.name != "stream_id" and not _COLUMN.match(field.name):
            raise ValueError(f"level column name {field.name!r} cannot be a field name")
        fields[field.name] = (_type_alias(field.type, field.name), position)
    return fields


def _type_alias(data_type: pa.DataType, name: str) -> str:
    if pa.types.is_dictionary(data_type):
        data_type = data_type.value_type
    for alias in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                  "float", "double", "bool", "string", "large_string", "null"):
        if data_type == pa.type_for_alias(alias):
            return alias
    raise ValueError(f"level column {name!r} has unsupported type {data_type}")


def encode(level_key: str, table: pa.Table) -> dict[str, list[dict[str, Any]]]:
    """Level rows by stream; a repeated (stream_id, t) keeps its last row. Null columns are
    left out of the document (a read gives None for a missing field): most rows have some,
    such as the state a stream's downsamplers do not need, and each would cost its name."""
    by_stream: dict[str, dict[int, dict[str, Any]]] = {}
    for row in table.to_pylist():
        sid, t = row["stream_id"], row["t"]
        if not isinstance(sid, str) or not isinstance(t, int):
            raise ValueError(f"level {level_key!r} row with stream_id {sid!r} and t {t!r}")
        by_stream.setdefault(sid, {})[t] = {name: v for name, v in row.items() if v is not None}
    return {sid: list(rows.values()) for sid, rows in by_stream.items()}


def decode(docs: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Newest visible version of each bucket, ordered by t, in the registered types."""
    t = np.array([doc["t"] for doc in docs], dtype=np.int64)
    version = np.array([doc["_q"] for doc in docs], dtype=np.int64)
    order = np.lexsort((version, t))
    last = np.ones(len(order), dtype=bool)
    last[:-1] = t[order][1:] != t[order][:-1]
    chosen = [docs[i] for i in order[last]]
    return pa.table(
        {field.name: pa.array([doc.get(field.name) for doc in chosen], type=field.type)
         for field in schema},
        schema=schema,
    )
