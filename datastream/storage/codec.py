"""The chunk codec shared by the backends: Arrow tables of raw or level rows to compact bytes.

Interim implementation (Arrow IPC with zstd buffer compression): exact round trips, any
schema. The column-specific codec replaces it without changing this interface.
"""

from __future__ import annotations

import pyarrow as pa


def _encode(table: pa.Table | pa.RecordBatch) -> bytes:
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _decode(data: bytes) -> pa.Table:
    try:
        return pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    except pa.ArrowInvalid as error:
        raise ValueError(f"not a chunk: {error}") from error


def encode_raw(table: pa.Table | pa.RecordBatch) -> bytes:
    """RAW_SCHEMA rows (stored order kept) as bytes."""
    return _encode(table)


def decode_raw(data: bytes) -> pa.Table:
    return _decode(data)


def encode_level(table: pa.Table | pa.RecordBatch) -> bytes:
    """Level rows (stored order kept, nulls exact) as bytes."""
    return _encode(table)


def decode_level(data: bytes) -> pa.Table:
    return _decode(data)
