"""bucket_bounds: floor bucketing of sorted timestamps, pre-1970 included."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from datastream.kernels import buckets
from tests.kernels.strategies import WIDTHS, timestamps


@settings(max_examples=100, deadline=None)
@given(timestamps(), st.sampled_from(WIDTHS))
def test_matches_reference(t, width):
    starts, bounds = buckets.segment(t, width)
    expected_starts, expected_bounds = buckets.bucket_bounds_reference(t, width)
    np.testing.assert_array_equal(starts, expected_starts)
    np.testing.assert_array_equal(bounds, expected_bounds)
    assert all(s <= t[a] < s + width for s, a in zip(starts, bounds[:-1], strict=True))


def test_pre_1970_floor():
    t = np.array([-1, 0, 9_999_999, 10_000_000, -10_000_001], dtype=np.int64)
    starts, bounds = buckets.segment(np.sort(t), 10_000_000)
    assert starts.tolist() == [-20_000_000, -10_000_000, 0, 10_000_000]
    assert bounds.tolist() == [0, 1, 2, 4, 5]


def test_empty():
    starts, bounds = buckets.segment(np.empty(0, np.int64), 10)
    assert starts.size == 0 and bounds.tolist() == [0]
