"""numpy <-> Arrow through buffers: the same values as pyarrow's own conversions, for every
fixed-width type, slice offset, null pattern and chunking."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from datastream import arrow_numpy

TYPES = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(),
         pa.uint64(), pa.float32(), pa.float64()]


def values_of(type_: pa.DataType) -> st.SearchStrategy[np.ndarray]:
    dtype = np.dtype(type_.to_pandas_dtype())
    elements = (st.floats(width=type_.bit_width, allow_nan=False) if dtype.kind == "f"
                else None)
    return hnp.arrays(dtype, st.integers(0, 70), elements=elements)


@st.composite
def columns(draw) -> tuple[pa.DataType, np.ndarray, np.ndarray, int, int]:
    """(type, values, null mask, slice start, slice length)."""
    type_ = draw(st.sampled_from(TYPES))
    values = draw(values_of(type_))
    mask = draw(hnp.arrays(np.bool_, len(values)))
    start = draw(st.integers(0, len(values)))
    length = draw(st.integers(0, len(values) - start))
    return type_, values, mask, start, length


@settings(max_examples=300, deadline=None)
@given(columns())
def test_from_numpy_makes_what_pa_array_makes(column) -> None:
    type_, values, mask, start, length = column
    made = arrow_numpy.from_numpy(values, type_, mask=mask)
    made.validate(full=True)
    assert made.equals(pa.array(values, type_, mask=mask))
    assert arrow_numpy.from_numpy(values, type_).equals(pa.array(values, type_))
    sliced = made.slice(start, length)
    assert sliced.equals(pa.array(values, type_, mask=mask).slice(start, length))


@settings(max_examples=300, deadline=None)
@given(columns(), st.integers(1, 4))
def test_to_numpy_gives_pyarrows_values(column, pieces) -> None:
    type_, values, mask, start, length = column
    array = pa.array(values, type_, mask=mask).slice(start, length)
    mine = arrow_numpy.to_numpy(array)
    theirs = array.to_numpy(zero_copy_only=False)
    assert mine.dtype == theirs.dtype
    np.testing.assert_array_equal(mine, theirs)  # NaN where null, as pyarrow gives
    kept = array.fill_null(0).to_numpy(zero_copy_only=False)
    filled = arrow_numpy.to_numpy(array, 0)
    assert filled.dtype == np.dtype(type_.to_pandas_dtype())
    np.testing.assert_array_equal(filled, kept)
    cuts = sorted({0, len(array), *np.linspace(0, len(array), pieces + 1).astype(int)})
    chunked = pa.chunked_array([array.slice(a, b - a) for a, b in zip(cuts, cuts[1:])], type_)
    np.testing.assert_array_equal(arrow_numpy.to_numpy(chunked, 0), kept)


def test_a_column_without_nulls_is_viewed_not_copied() -> None:
    values = np.arange(10, dtype=np.int64)
    array = arrow_numpy.from_numpy(values)
    view = arrow_numpy.to_numpy(array.slice(3, 4))
    assert np.shares_memory(view, values) and view.tolist() == [3, 4, 5, 6]
    assert not view.flags.writeable


def test_timestamps_and_bools() -> None:
    stamps = arrow_numpy.from_numpy(np.array([0, 1_500_000], np.int64),
                                    pa.timestamp("us", "UTC"))
    assert stamps.equals(pa.array([0, 1_500_000], pa.timestamp("us", "UTC")))
    assert arrow_numpy.to_numpy(pa.chunked_array([stamps])).tolist() == [0, 1_500_000]
    flags = np.array([True, False, True, True, False, False, True, False, True])
    made = arrow_numpy.from_numpy(flags, mask=np.eye(1, 9, 2, dtype=bool)[0])
    assert made.to_pylist() == [True, False, None, True, False, False, True, False, True]
    assert arrow_numpy.to_numpy(pa.chunked_array([], pa.int64())).dtype == np.int64


def test_other_types_are_refused_or_left_to_pyarrow() -> None:
    with pytest.raises(TypeError):
        arrow_numpy.from_numpy(np.arange(3.0), pa.int64())  # no silent reinterpretation
    with pytest.raises(TypeError):
        arrow_numpy.from_numpy(np.zeros((2, 2)))
    texts = pa.array(["a", None])
    assert arrow_numpy.to_numpy(texts).tolist() == ["a", None]


def test_empty_tables_repeated_texts_and_checked_narrowing() -> None:
    schema = pa.schema([("t", pa.int64()), ("s", pa.string()), ("m", pa.map_(pa.string(),
                                                                               pa.int64()))])
    assert arrow_numpy.empty_table(schema).equals(schema.empty_table())
    ids = arrow_numpy.repeated_text("é-1", 3)
    ids.validate(full=True)
    assert ids.equals(pa.repeat(pa.scalar("é-1", pa.string()), 3))
    assert len(arrow_numpy.repeated_text("x", 0)) == 0
    assert arrow_numpy.of_type([1, 2], pa.int16()).equals(pa.array([1, 2], pa.int16()))
    assert arrow_numpy.of_type(np.array([0.5, np.nan]), pa.float64()).to_pylist()[0] == 0.5
    with pytest.raises(OverflowError):
        arrow_numpy.of_type([40_000], pa.int16())
    with pytest.raises(OverflowError):
        arrow_numpy.of_type(np.array([1.5]), pa.int64())
    with pytest.raises(OverflowError):
        arrow_numpy.of_type(np.array([np.nan]), pa.int64())
    with pytest.raises(ValueError, match="mask"):
        arrow_numpy.from_numpy(np.arange(3), mask=np.zeros(2, bool))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.none() | st.text(), max_size=40))
def test_texts_make_what_pa_array_makes(values) -> None:
    made = arrow_numpy.texts(values)
    made.validate(full=True)
    assert made.equals(pa.array(values, pa.string()))


def test_the_remembered_dtype_is_the_one_each_type_views_as() -> None:
    """The dtype is remembered per Arrow type id; units, zones and widths that share an id
    must still view alike, and types that share none stay unviewed."""
    viewed = [*TYPES, pa.float16(), pa.timestamp("s"), pa.timestamp("ns", "UTC"),
              pa.duration("ms"), pa.date64()]
    for type_ in viewed * 2:  # the second round reads what the first remembered
        expected = arrow_numpy._dtype_of(type_)
        assert arrow_numpy._numpy_dtype(type_) == expected
    assert arrow_numpy._numpy_dtype(pa.timestamp("ns")) == np.dtype(np.int64)
    assert arrow_numpy._numpy_dtype(pa.int16()) == np.dtype("<i2")
    for other in (pa.string(), pa.bool_(), pa.decimal128(10, 2), pa.date64()):
        assert arrow_numpy._numpy_dtype(other) is None
