"""Builders shared by the storage-level tests of every backend."""

from __future__ import annotations

import uuid

import pyarrow as pa

from datastream.storage.base import StreamRecord


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
