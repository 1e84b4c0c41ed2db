"""Builders shared by the storage-level tests of every backend."""

from __future__ import annotations

import uuid

import pyarrow as pa

from datastream.storage.base import RAW_SCHEMA, StreamRecord


def new_id() -> str:
    return str(uuid.uuid4())


def raw_rows(times, ints=None, floats=None, texts=None, kinds=None) -> pa.Table:
    """RAW_SCHEMA rows; kind 1 (int) unless ``kinds`` says otherwise."""
    n = len(times)
    return pa.table(
        {
            "t": pa.array(times, pa.int64()),
            "k": pa.array(kinds if kinds is not None else [1] * n, pa.int8()),
            "i": pa.array(ints if ints is not None else [None] * n, pa.int64()),
            "f": pa.array(floats if floats is not None else [None] * n, pa.float64()),
            "s": pa.array(texts if texts is not None else [None] * n, pa.string()),
        }
    )


def add_stream(storage, tags: dict, meta: dict | None = None) -> str:
    """Create a stream whose query is its tags; returns its id."""
    stream_id = new_id()
    storage.create_stream(StreamRecord(stream_id, tags, meta or {}), tags)
    return stream_id


def snapshot(storage, stream_ids, level_keys=("S", "m")) -> dict:
    """Everything observable about some streams, to compare before/after a failed write."""
    return {
        "records": [(r.stream_id, r.tags, r.meta) for r in storage.find_streams(None)],
        "raw": {i: storage.read_raw(i, None, None).to_pylist() for i in stream_ids},
        "levels": {
            (key, i): None
            if (rows := storage.read_level(key, i, None, None)) is None
            else (rows.schema, rows.to_pylist())
            for key in level_keys
            for i in stream_ids
        },
    }


def level_rows(stream_id: str, times, counts, **columns) -> pa.Table:
    """Level rows of one stream: ``t``, an int64 count ``c`` and any further columns."""
    n = len(times)
    return pa.table({
        "stream_id": pa.array([stream_id] * n, pa.string()),
        "t": pa.array(times, pa.int64()),
        "c": pa.array(counts, pa.int64()),
        **columns,
    })


def raw_pairs(storage, stream_id, start=None, end=None, reverse=False) -> list[tuple]:
    """(t, i) of the raw rows read; the rows must come in RAW_SCHEMA."""
    rows = storage.read_raw(stream_id, start, end, reverse=reverse)
    assert rows.schema == RAW_SCHEMA
    return list(zip(rows.column("t").to_pylist(), rows.column("i").to_pylist()))


def level_pairs(storage, level_key, stream_id) -> list[tuple] | None:
    """(t, c) of the level rows read; None when the level was never written."""
    rows = storage.read_level(level_key, stream_id, None, None)
    if rows is None:
        return None
    return list(zip(rows.column("t").to_pylist(), rows.column("c").to_pylist()))


def ids_of(records) -> list[str]:
    return [record.stream_id for record in records]


def versions(storage, *stream_ids) -> list[int | None]:
    """Stored versions, asserting that find_streams, get_stream and record_version agree."""
    found = {r.stream_id: r.version for r in storage.find_streams(None)}
    for stream_id in stream_ids:
        record = storage.get_stream(stream_id)
        assert (record.version if record else None) == found.get(stream_id)
        assert storage.record_version(stream_id) == found.get(stream_id)
    return [found.get(stream_id) for stream_id in stream_ids]
