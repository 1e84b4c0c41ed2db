"""Exact median and code counting per bucket."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from datastream.kernels import buckets, order
from tests.kernels.strategies import WIDTHS, points


@settings(max_examples=100, deadline=None)
@given(points(), st.sampled_from(WIDTHS))
def test_median_matches_numpy(data, width):
    t, x, valid = data
    _, bounds = buckets.segment(t, width)
    got = order.medians(x, valid, bounds)
    np.testing.assert_allclose(got, order.medians_reference(x, valid, bounds), rtol=1e-15,
                               equal_nan=True)


@settings(max_examples=100, deadline=None)
@given(points(), st.sampled_from(WIDTHS), st.integers(1, 8))
def test_code_counts_match_unique(data, width, n_codes):
    t, x, valid = data
    codes = np.where(valid, (np.abs(x) % n_codes).astype(np.int64), -1)
    _, bounds = buckets.segment(t, width)
    got = order.code_counts(codes, bounds, n_codes)
    for column, expected in zip(got, order.code_counts_reference(codes, bounds, n_codes),
                                strict=True):
        np.testing.assert_array_equal(column, expected)


def test_even_median_is_mean_of_middle_values():
    bounds = np.array([0, 4], dtype=np.int64)
    got = order.medians(np.array([4.0, 1.0, 3.0, 2.0]), np.ones(4, np.bool_), bounds)
    assert got.tolist() == [2.5]


@settings(max_examples=100, deadline=None)
@given(points(), st.sampled_from(WIDTHS), st.integers(1, 4))
def test_median_with_many_ties(data, width, distinct):
    t, x, valid = data
    x = np.abs(x) % distinct  # few distinct values: selection must cope with equal keys
    _, bounds = buckets.segment(t, width)
    np.testing.assert_array_equal(
        order.medians(x, valid, bounds), order.medians_reference(x, valid, bounds)
    )
