"""The float view of raw rows that downsampling and the derive operators read."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from datastream import raw_numbers, values

OPTIONS = values.normalise_options("numeric", {"high_accuracy": False})
HIGH = values.normalise_options("numeric", {"high_accuracy": True})
E64 = Decimal("2.71828182845904523536028747135266249775724709369995957496696762")


def table_of(items: list) -> object:
    """Raw rows of ``items``, each a (value, options) pair encoded as a single append is."""
    encoded = [values.encode_value(value, "numeric", options, {"c", "s", "m"}, "sid")
               for value, options in items]
    return values.encode_table(np.arange(len(items)), encoded)


def numbers_of(table) -> tuple[np.ndarray, np.ndarray]:
    return raw_numbers.numeric_values(table, values.kinds_of(table))


def test_every_kind():
    table = table_of([(1, OPTIONS), (2.5, OPTIONS), (None, OPTIONS), (E64, HIGH),
                      ({"c": 1, "s": 2, "m": 2.0}, OPTIONS), (2**128, OPTIONS)])
    numbers, valid = numbers_of(table)
    assert numbers.dtype == np.float64 and valid.dtype == bool
    assert valid.tolist() == [True, True, False, True, False, True]
    assert numbers[[0, 1, 3, 5]].tolist() == [1.0, 2.5, float(E64), float(2**128)]


def test_plain_floats_with_nulls():
    """The all-float rows take a shortcut: nulls are invalid there too."""
    table = table_of([(0.5, OPTIONS), (None, OPTIONS), (-3.25, OPTIONS), (float("nan"), OPTIONS)])
    numbers, valid = numbers_of(table)
    assert valid.tolist() == [True, False, True, False]
    assert numbers[valid].tolist() == [0.5, -3.25]


VALUES = st.one_of(
    st.none(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False, places=6,
                min_value=-(10**12), max_value=10**12),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(VALUES, max_size=30))
def test_matches_each_value_on_its_own(items):
    """Each row's number is the value's own float (ints and Decimals rounded once), and a row
    is valid exactly when it holds a number."""
    table = table_of([(v, HIGH if isinstance(v, Decimal) else OPTIONS) for v in items])
    numbers, valid = numbers_of(table)
    for value, number, ok in zip(items, numbers.tolist(), valid.tolist()):
        has_number = value is not None and not (isinstance(value, float) and math.isnan(value))
        assert ok == has_number
        if has_number:
            assert number == float(value)
