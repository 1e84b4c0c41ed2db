"""The raw chunks of one read decoded into one set of columns.

A raw read can cover millions of rows in dozens of chunks. Decoding each chunk into a table of
its own and joining them costs five arrays, a table and fresh temporaries per chunk, and leaves
every column in pieces for the export to walk. Here each numeric column of the whole read is one
array allocated once: every chunk decodes straight into its rows of it, through scratch buffers
shared by all chunks (a chunk's scratch stays in the CPU cache while its column is integrated),
so the columns reach Arrow without another copy. Only text columns stay one piece per chunk.

The codec and its transforms are the ones :mod:`datastream.storage.codec` uses for a single
chunk (same kernels, same numpy twins for small chunks while numba is not loaded), so a read
returns exactly the rows that decoding each chunk would.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from ..kernels.jit import readonly
from ..null_columns import null_array
from . import codec
from .codec import ParsedChunk, StoredColumn

_LAYOUT = codec.LAYOUTS[codec.RAW]
_NO_RESIDUAL = readonly(np.empty(0, np.int64), np.int64)


class DecodedChunks:
    """The rows of some raw chunks, joined in the order given."""

    def __init__(self, table: pa.Table, in_time_order: bool) -> None:
        self.table = table
        self.in_time_order = in_time_order
        """Whether ``t`` never decreases over the joined rows (each chunk sorted, and each
        starting at or after the end of the one before, as chunks written in time order are)."""


def decode(bodies: Sequence[bytes | memoryview]) -> DecodedChunks:
    """The ``RAW_SCHEMA`` rows of ``bodies`` (raw chunks), joined in the given order.

    Damage raises ``ValueError`` as :func:`codec.decode_raw` does."""
    chunks = [codec.parse_chunk(body, codec.RAW) for body in bodies]
    starts = np.zeros(len(chunks) + 1, np.int64)
    np.cumsum([chunk.rows for chunk in chunks], out=starts[1:])
    scratch = codec.Scratch()
    columns = [_column_for(field, int(starts[-1])) for field in _LAYOUT]
    for chunk, start in zip(chunks, starts.tolist()):
        for index, column in enumerate(columns):
            stored = chunk.columns[index] if index < len(chunk.columns) else None
            try:
                column.add(chunk, start, stored, scratch)
            except (RuntimeError, ValueError, TypeError) as error:
                raise ValueError(f"corrupted chunk: column {column.name!r} does not decode "
                                 f"({error})") from None
    times = columns[0]
    assert isinstance(times, _NumberColumn)
    in_order = times.sorted_chunks and _chunks_follow(chunks)
    table = pa.Table.from_arrays([column.finish() for column in columns], schema=_LAYOUT)
    return DecodedChunks(table, in_order)


def _chunks_follow(chunks: list[ParsedChunk]) -> bool:
    """Whether each chunk's smallest time is at or after the largest of the one before (the
    header holds both, so no time column is read)."""
    previous = None
    for chunk in chunks:
        if not chunk.rows:
            continue
        if not chunk.has_range or (previous is not None and chunk.t0 < previous):
            return False
        previous = chunk.t1
    return True


def _column_for(field: pa.Field, total: int) -> _NumberColumn | _TextColumn:
    if pa.types.is_string(field.type):
        return _TextColumn(field, total)
    return _NumberColumn(field, total)


class _NumberColumn:
    """An int64, int8 or float64 column of the whole read, filled chunk by chunk."""

    def __init__(self, field: pa.Field, total: int) -> None:
        self.name = field.name
        self.type = field.type
        self.total = total
        self.is_float = pa.types.is_floating(field.type)
        self.buffer: pa.Buffer | None = None  # allocated by the first chunk with values
        self.values: np.ndarray | None = None  # a writable view of it
        self.valid: np.ndarray | None = None  # bool per row, once some row is null
        self.null_spans: list[tuple[int, int]] = []  # chunks where the column is all null
        self.orders_rows = field.name == "t"
        self.sorted_chunks = True  # (t only) every chunk's times non-decreasing

    def add(self, chunk: ParsedChunk, start: int, stored: StoredColumn | None,
            scratch: codec.Scratch) -> None:
        rows = chunk.rows
        if stored is None or stored.codec == codec.NULL:
            if rows:
                self.null_spans.append((start, start + rows))
            return
        if self.values is None:
            # from Arrow's pool, which keeps freed memory for the next read: numpy's would go
            # back to the system and fault in page by page again
            dtype = np.dtype(self.type.to_pandas_dtype())
            self.buffer = pa.allocate_buffer(self.total * dtype.itemsize)
            self.values = np.frombuffer(self.buffer, dtype)
        out = self.values[start:start + rows]
        if self.is_float:
            self._add_float(stored, out, scratch)
        else:
            self._add_int(stored, out, scratch)
        if stored.validity is not None:
            self.sorted_chunks = False  # null times have no order (raw rows never have them)
            bitmap = np.empty((rows + 7) // 8, np.uint8)
            codec.decompress_into(stored.validity, bitmap)
            self._validity()[start:start + rows] = np.unpackbits(
                bitmap, count=rows, bitorder="little")
        elif self.orders_rows and self.sorted_chunks and rows > 1:  # checked while cached
            self.sorted_chunks = bool((out[1:] >= out[:-1]).all())

    def _add_int(self, stored: StoredColumn, out: np.ndarray, scratch: codec.Scratch) -> None:
        if stored.codec != codec.INT:
            raise ValueError(f"codec {codec.CODEC_NAMES[stored.codec]} cannot hold {self.type}")
        rows, parts = len(out), stored.parts
        order, width = stored.param & 3, stored.param >> 2 & 7
        heads = np.frombuffer(parts[0], np.int64)
        if order > 2 or len(heads) != min(order, rows):
            raise ValueError("wrong number of leading values")
        transforms = codec.transforms_for(rows)
        if width == 0 and order < 2:  # constant: nothing to integrate
            if len(parts[1]):
                raise ValueError("bytes stored for an all-zero part")
            first = scratch.int64(0, order)
            transforms.int_decode(readonly(heads, np.int64), order, first)
            out[:] = first.astype(out.dtype) if order else 0  # int8 wraps, as decode_raw's
            return
        z = scratch.int64(0, rows)
        z[:order] = heads
        scratch.unpack(parts[1], width, z[order:])
        if out.dtype == np.int64:
            transforms.int_decode(readonly(z, np.int64), order, out)
        else:  # the kind column (int8): decoded at full width, then narrowed
            wide = scratch.int64(1, rows)
            transforms.int_decode(readonly(z, np.int64), order, wide)
            out[:] = wide

    def _add_float(self, stored: StoredColumn, out: np.ndarray, scratch: codec.Scratch) -> None:
        rows, parts, param = len(out), stored.parts, stored.param
        if stored.codec == codec.FLOAT_BITS:
            codec.decompress_into(parts[0], out)
            return
        if stored.codec != codec.DECIMAL:
            raise ValueError(f"codec {codec.CODEC_NAMES[stored.codec]} cannot hold {self.type}")
        k, digits_width, residual_width = param & 15, param >> 4 & 7, param >> 7 & 7
        if k > codec.transforms.MAX_SCALE or len(parts[0]) != 8:
            raise ValueError("bad decimal scale or first value")
        digits = scratch.int64(0, rows)
        digits[:1] = np.frombuffer(parts[0], np.int64)
        scratch.unpack(parts[1], digits_width, digits[1:])
        residual = _NO_RESIDUAL
        if residual_width:
            residual = scratch.int64(1, rows)
            scratch.unpack(parts[2], residual_width, residual)
            residual = readonly(residual, np.int64)
        elif len(parts[2]):
            raise ValueError("bytes stored for an all-zero part")
        codec.transforms_for(rows).decimal_decode(readonly(digits, np.int64), residual, k, out)

    def _validity(self) -> np.ndarray:
        if self.valid is None:
            self.valid = np.ones(self.total, np.bool_)
        return self.valid

    def finish(self) -> pa.Array:
        if self.values is None:
            return null_array(self.type, self.total)
        for low, high in self.null_spans:
            self.values[low:high] = 0
            self._validity()[low:high] = False
        bitmap = None
        if self.valid is not None:
            bitmap = pa.py_buffer(np.packbits(self.valid, bitorder="little"))
        return pa.Array.from_buffers(self.type, self.total, [bitmap, self.buffer])


class _TextColumn:
    """A string column: one array per chunk holding text (text has no fixed width to
    preallocate); chunks without text become null pieces only if some chunk has text."""

    def __init__(self, field: pa.Field, total: int) -> None:
        self.name = field.name
        self.total = total
        self.pieces: list[pa.Array | int] = []  # a chunk's text, or its row count if null
        self.has_text = False

    def add(self, chunk: ParsedChunk, start: int, stored: StoredColumn | None,
            scratch: codec.Scratch) -> None:
        rows = chunk.rows
        if stored is None or stored.codec == codec.NULL:
            self.pieces.append(rows)
            return
        if stored.codec not in (codec.TEXT, codec.TEXT_DICT):
            raise ValueError(f"codec {codec.CODEC_NAMES[stored.codec]} cannot hold text")
        text = codec.decode_text(rows, stored.codec, stored.param, stored.parts)
        if stored.validity is not None:
            bitmap = np.empty((rows + 7) // 8, np.uint8)
            codec.decompress_into(stored.validity, bitmap)
            _, offsets, data = text.buffers()
            text = pa.Array.from_buffers(pa.string(), rows, [pa.py_buffer(bitmap), offsets, data],
                                         offset=text.offset)
        self.pieces.append(text)
        self.has_text = True

    def finish(self) -> pa.Array | pa.ChunkedArray:
        if not self.has_text:
            return null_array(pa.string(), self.total)
        return pa.chunked_array(
            [pa.nulls(piece, pa.string()) if isinstance(piece, int) else piece
             for piece in self.pieces], pa.string())
