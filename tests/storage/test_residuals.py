"""The numba residual kernels give the numpy predictions' bits, so numpy decodes what they wrote."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from datastream.kernels import transforms
from datastream.storage import codec, predictors
from tests.storage.test_codec import (
    CODEC_SETTINGS,
    NAN_PAYLOADS,
    SPECIAL_FLOATS,
    cascaded_levels,
    level_tables,
)

EVERY_PREDICTION = [(kind, key) for kind, table in codec._TABLES.items() for key in table]
EXTREME_INTS = [0, 1, -1, 2, 10, 2**53 + 1, 2**62, 2**63 - 1, -(2**63)]


def filled_columns(table: pa.Table) -> dict:
    """The columns as the codec sees them before encoding (nulls filled, None if all null)."""
    layout = codec.LAYOUTS[codec.LEVEL]
    return {name: codec._prepare(array, dtype)[1] for (name, dtype), array in
            zip(codec._NUMPY_TYPES[codec.LEVEL], codec._columns(table, layout))}


def assert_same_residuals(values: dict, kind: int, key: int, scale: int) -> None:
    """Kernel and numpy store the same integers (and ORs), and rate them alike."""
    for rate in (False, True):
        kernel = codec._residuals(kind, key, scale, values, transforms.NUMBA, rate)
        numpy = codec._residuals(kind, key, scale, values, transforms.NUMPY, rate)
        if numpy is None:
            assert kernel is None
            continue
        (kernel_parts, kernel_cost), (numpy_parts, numpy_cost) = kernel, numpy
        assert len(kernel_parts) == len(numpy_parts) == codec._PARTS[kind]
        for (got, got_or), (expected, expected_or) in zip(kernel_parts, numpy_parts):
            assert np.array_equal(got, expected)
            assert got_or == expected_or
        assert kernel_cost == numpy_cost
        assert rate or kernel_cost == 0.0


@settings(CODEC_SETTINGS, max_examples=60)  # every example runs every prediction twice
@given(level_tables() | cascaded_levels(), st.integers(0, predictors.MAX_SQUARED_SCALE))
def test_every_prediction_stores_the_same_bits_through_numba_and_numpy(table, scale):
    values = filled_columns(table)
    for kind, key in EVERY_PREDICTION:
        assert_same_residuals(values, kind, key, scale)


@st.composite
def special_columns(draw, n: int) -> dict:
    """Every level column a prediction reads or writes, made of the values where float and
    integer arithmetic go wrong: NaN payloads, infinities, -0.0, zero and extreme counts."""
    floats = st.sampled_from(SPECIAL_FLOATS) | st.sampled_from(NAN_PAYLOADS).map(
        lambda bits: np.array([bits], np.uint64).view(np.float64)[0]) | st.floats(width=64)
    values = {}
    for field in codec.LAYOUTS[codec.LEVEL]:
        if field.type == pa.float64():
            column = np.array(draw(st.lists(floats, min_size=n, max_size=n)), np.float64)
        elif field.type == pa.int64():
            column = np.array(draw(st.lists(st.sampled_from(EXTREME_INTS) | st.integers(-5, 5),
                                            min_size=n, max_size=n)), np.int64)
        else:
            continue
        column.flags.writeable = False
        values[field.name] = column
    return values


@settings(CODEC_SETTINGS, max_examples=60)
@given(st.integers(0, 40).flatmap(special_columns),
       st.integers(0, predictors.MAX_SQUARED_SCALE))
def test_special_values_give_the_same_bits(values, scale):
    for kind, key in EVERY_PREDICTION:
        assert_same_residuals(values, kind, key, scale)

