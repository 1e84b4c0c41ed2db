"""Child rows → coarser rows: against the pooled-formula references, and against computing the
coarse level directly from raw points (the composition property the levels rely on)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from datastream.kernels import buckets, combine, partials
from tests.kernels.strategies import WIDTHS, assert_same, points

PAIRS = [(a, b) for i, a in enumerate(WIDTHS) for b in WIDTHS[i:]]


def _fine(t, x, valid, width):
    starts, bounds = buckets.segment(t, width)
    return (
        starts,
        partials.raw_value_state(x, valid, bounds),
        partials.raw_time_state(t, valid, starts, bounds),
    )


@settings(max_examples=100, deadline=None)
@given(points(), st.sampled_from(PAIRS))
def test_combine_matches_reference_and_direct(data, widths):
    t, x, valid = data
    fine, coarse = widths
    child_t, values, times = _fine(t, x, valid, fine)
    starts, bounds = buckets.segment(child_t, coarse)
    scale = float(np.abs(x).max()) ** 2 * len(x)

    merged_values = combine.merge_value_state(values, bounds)
    assert_same(merged_values, combine.merge_value_state_reference(values, bounds), scale)
    merged_times = combine.merge_time_state(child_t, times, starts, bounds)
    expected = combine.merge_time_state_reference(child_t, times, starts, bounds)
    assert_same(merged_times, expected, 1e12)

    direct_t, direct_values, direct_times = _fine(t, x, valid, coarse)
    np.testing.assert_array_equal(starts, direct_t)
    assert_same(merged_values, direct_values, scale)
    assert_same(merged_times, direct_times, 1e12)


@settings(max_examples=100, deadline=None)
@given(points(), st.sampled_from(WIDTHS), st.integers(0, 60))
def test_split_bucket_merges_at_equal_width(data, width, cut):
    """Two partial rows of one bucket (two flushes) merge into the single-pass row."""
    t, x, valid = data
    cut = min(cut, len(t))
    parts = [_fine(t[s], x[s], valid[s], width) for s in (slice(0, cut), slice(cut, None))]
    child_t = np.concatenate([p[0] for p in parts])
    values = {k: np.concatenate([p[1][k] for p in parts]) for k in partials.VALUE_STATE}
    times = {k: np.concatenate([p[2][k] for p in parts]) for k in partials.TIME_STATE}
    starts, bounds = buckets.segment(child_t, width)
    direct_t, direct_values, direct_times = _fine(t, x, valid, width)
    np.testing.assert_array_equal(starts, direct_t)
    scale = float(np.abs(x).max()) ** 2 * len(x)
    assert_same(combine.merge_value_state(values, bounds), direct_values, scale)
    assert_same(combine.merge_time_state(child_t, times, starts, bounds), direct_times, 1e12)


def test_chan_merge_is_stable():
    rng = np.random.default_rng(3)
    x = 1e9 + rng.random(10_000)
    t = np.arange(len(x), dtype=np.int64) * 1_000_000
    child_t, values, _ = _fine(t, x, np.ones(len(x), np.bool_), 10_000_000)
    _, bounds = buckets.segment(child_t, 86_400_000_000)
    merged = combine.merge_value_state(values, bounds)
    std = np.sqrt(merged["m2"][0] / merged["c"][0])
    assert abs(std - np.std(x)) / np.std(x) < 1e-9
