"""Columns of nulls that cost no memory writes.

A raw table of floats carries an integer and a text column that hold nulls only, and so does a
raw read of floats. ``pa.nulls`` fills their validity bitmap, values and offsets with zeros:
megabytes per million rows that nobody reads, written page by page, and kept alive as long as
the table (the buffers, the recent-rows cache). An anonymous mapping is zero already: its pages
cost nothing until read, and reading only maps the system's shared zero page. Every buffer of
one column is a view of the same mapping, which Arrow never writes to.
"""

from __future__ import annotations

import mmap

from .arrow_numpy import repeated_text  # (pa.array of a str would import pandas)
from .lazy import pa


def null_array(type_: pa.DataType, rows: int) -> pa.Array:
    """``rows`` nulls of a fixed-width or string type, backed by untouched zero pages."""
    width = 4 if pa.types.is_string(type_) else type_.bit_width // 8
    zeros = pa.py_buffer(mmap.mmap(-1, max(width * (rows + 1), (rows + 7) // 8, 1)))
    bitmap = zeros.slice(0, (rows + 7) // 8)
    if pa.types.is_string(type_):
        offsets = zeros.slice(0, 4 * (rows + 1))
        return pa.Array.from_buffers(type_, rows, [bitmap, offsets, zeros.slice(0, 0)],
                                     null_count=rows)
    return pa.Array.from_buffers(type_, rows, [bitmap, zeros.slice(0, width * rows)],
                                 null_count=rows)


def repeated_id(text: str, rows: int) -> pa.Array:
    """``rows`` copies of ``text`` as a dictionary array of one entry, its indices on untouched
    zero pages: a stream's id beside each of its level rows costs nothing, where a string
    column of 36-byte ids was megabytes written per million rows."""
    zeros = pa.py_buffer(mmap.mmap(-1, max(4 * rows, 1)))
    indices = pa.Array.from_buffers(pa.int32(), rows, [None, zeros.slice(0, 4 * rows)])
    return pa.DictionaryArray.from_arrays(indices, repeated_text(text, 1))
