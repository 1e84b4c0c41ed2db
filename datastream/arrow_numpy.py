"""numpy <-> Arrow through buffers, not pyarrow's converters.

pyarrow's converters (``pa.array(...)``, ``Array.to_numpy()``, ``pa.scalar``, Python scalars
in compute calls, ``schema.empty_table()``) import pandas, when it is installed, the first
time any of them runs: 0.2-0.6 s, most of what a short process that lists streams, appends
or reads a few points would spend. The embedded store's common paths (metadata, appending
numbers, derived streams, downsampling and reading numeric streams) build and view their
columns here instead. Integer, float, bool and timestamp columns and plain strings are
covered; anything else is left to pyarrow.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .lazy import pa


def to_numpy(column: pa.Array | pa.ChunkedArray, fill: float | int | None = None
             ) -> np.ndarray:
    """The values of an integer, float or timestamp column as numpy (timestamps as int64):
    a read-only view of its buffer when it is one chunk without nulls. Nulls become ``fill``
    (for floats NaN when not given; an integer column with nulls and no ``fill`` becomes
    floats with NaN, as pyarrow's conversion does). Other types go through pyarrow."""
    if isinstance(column, pa.ChunkedArray):
        if column.num_chunks == 1:
            return to_numpy(column.chunk(0), fill)
        parts = [to_numpy(chunk, fill) for chunk in column.chunks]
        if not parts:
            dtype = _numpy_dtype(column.type)
            return np.empty(0, np.float64 if dtype is None else dtype)
        return np.concatenate(parts)
    dtype = _numpy_dtype(column.type)
    if dtype is None:
        return column.to_numpy(zero_copy_only=False)
    data = column.buffers()[1]
    values = (np.empty(0, dtype) if data is None
              else np.frombuffer(data, dtype, len(column), column.offset * dtype.itemsize))
    if not column.null_count:
        values.flags.writeable = False  # Arrow data is immutable; it may be shared
        return values
    if fill is None:
        if dtype.kind != "f":
            values = values.astype(np.float64)
        fill = np.nan
    values = values.copy()
    values[_nulls(column)] = fill
    return values


def _nulls(column: pa.Array) -> np.ndarray:
    """Where ``column`` (one chunk with a validity bitmap) is null."""
    bits = np.frombuffer(column.buffers()[0], np.uint8)
    offset = column.offset
    valid = np.unpackbits(bits, count=offset + len(column), bitorder="little")[offset:]
    return valid == 0


def from_numpy(values: np.ndarray, type_: pa.DataType | None = None,
               mask: np.ndarray | None = None) -> pa.Array:
    """A 1-d numpy integer, float or bool array as an Arrow array of ``type_`` (default: its
    own type; a timestamp type takes int64 values), null where ``mask`` is true; the values
    are not copied when contiguous (bools are bit-packed)."""
    values = np.ascontiguousarray(values)
    if values.ndim != 1:
        raise TypeError(f"cannot make an Arrow array of a {values.ndim}-d array")
    if type_ is None:
        type_ = pa.bool_() if values.dtype == np.bool_ else pa.from_numpy_dtype(values.dtype)
    if pa.types.is_boolean(type_) and values.dtype == np.bool_:
        data = np.packbits(values, bitorder="little")
    elif values.dtype == _numpy_dtype(type_):
        data = values
    else:
        raise TypeError(f"cannot view {values.dtype} values as Arrow {type_}")
    validity, nulls = None, 0
    if mask is not None:
        if len(mask) != len(values):
            raise ValueError(f"a mask of {len(mask)} for {len(values)} values")
        nulls = int(np.count_nonzero(mask))
        if nulls:
            validity = pa.py_buffer(np.packbits(~np.asarray(mask, bool), bitorder="little"))
    return pa.Array.from_buffers(type_, len(values), [validity, pa.py_buffer(data)],
                                 null_count=nulls)


def empty_table(schema: pa.Schema) -> pa.Table:
    """A table of ``schema`` without rows (``schema.empty_table()`` imports pandas)."""
    return pa.Table.from_arrays([pa.nulls(0, field.type) for field in schema], schema=schema)


def texts(values: Sequence[str | None]) -> pa.Array:
    """Python strings (None: null) as an Arrow string array, built from their UTF-8 bytes."""
    encoded = [b"" if value is None else value.encode() for value in values]
    lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    if offsets[-1] >= 2**31:
        raise ValueError("texts of 2 GiB or more exceed an Arrow string array")
    nulls = np.fromiter((value is None for value in values), bool, len(encoded))
    validity = pa.py_buffer(np.packbits(~nulls, bitorder="little")) if nulls.any() else None
    return pa.Array.from_buffers(pa.string(), len(encoded), [validity, pa.py_buffer(
        offsets.astype(np.int32)), pa.py_buffer(b"".join(encoded))], null_count=int(nulls.sum()))


def repeated_text(text: str, count: int) -> pa.Array:
    """``count`` copies of ``text`` as an Arrow string array (``pa.repeat`` of a Python
    string converts it, which imports pandas)."""
    data = text.encode()
    if len(data) * count >= 2**31:
        raise ValueError(f"{count} copies of a {len(data)}-byte text exceed an Arrow string array")
    offsets = np.arange(count + 1, dtype=np.int32) * np.int32(len(data))
    return pa.Array.from_buffers(pa.string(), count,
                                 [None, pa.py_buffer(offsets), pa.py_buffer(data * count)])


def of_type(values: Sequence[int] | Sequence[float] | np.ndarray, type_: pa.DataType
            ) -> pa.Array:
    """Numbers (a list or an array) as an Arrow array of the integer or float ``type_``,
    refusing any value the type cannot hold exactly (as ``pa.array(values, type_)`` does)."""
    array = np.asarray(values)
    dtype = _numpy_dtype(type_)
    if dtype is None:
        raise TypeError(f"not a numeric Arrow type: {type_}")
    if array.dtype == dtype:  # nothing to narrow (level columns on the ingest path)
        return from_numpy(array, type_)
    with np.errstate(invalid="ignore"):  # a NaN or an infinity cast to an integer
        narrowed = array.astype(dtype)
    if narrowed.shape != array.shape or not np.array_equal(narrowed, array, equal_nan=True):
        raise OverflowError(f"values do not fit Arrow {type_}")
    return from_numpy(narrowed, type_)


_DTYPES: dict[int, np.dtype | None] = {}


def _numpy_dtype(type_: pa.DataType) -> np.dtype | None:
    """The numpy dtype viewing ``type_``'s values, None for other types; remembered per type
    id (the id alone decides it), since level reads and writes ask thousands of times."""
    try:
        return _DTYPES[type_.id]
    except KeyError:
        return _DTYPES.setdefault(type_.id, _dtype_of(type_))


def _dtype_of(type_: pa.DataType) -> np.dtype | None:
    if pa.types.is_timestamp(type_) or pa.types.is_duration(type_):
        return np.dtype(np.int64)
    if pa.types.is_integer(type_):
        kind = "i" if pa.types.is_signed_integer(type_) else "u"
    elif pa.types.is_floating(type_):
        kind = "f"
    else:
        return None
    return np.dtype(f"<{kind}{type_.bit_width // 8}")
