"""Raw → per-bucket value and time state, against numpy reductions per segment."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from datastream.kernels import buckets, partials
from tests.kernels.strategies import WIDTHS, assert_same, points


@settings(max_examples=100, deadline=None)
@given(points(), st.sampled_from(WIDTHS))
def test_value_state_matches_reference(data, width):
    t, x, valid = data
    _, bounds = buckets.segment(t, width)
    got = partials.raw_value_state(x, valid, bounds)
    expected = partials.raw_value_state_reference(x, valid, bounds)
    scale = float(np.abs(x).max()) ** 2 * len(x)
    assert_same(got, expected, scale)


@settings(max_examples=100, deadline=None)
@given(points(), st.sampled_from(WIDTHS))
def test_time_state_matches_reference(data, width):
    t, _, valid = data
    starts, bounds = buckets.segment(t, width)
    got = partials.raw_time_state(t, valid, starts, bounds)
    assert_same(got, partials.raw_time_state_reference(t, valid, starts, bounds), 1e12)


def test_variance_is_stable_around_1e9():
    rng = np.random.default_rng(7)
    x = 1e9 + rng.random(5000)
    bounds = np.array([0, len(x)], dtype=np.int64)
    state = partials.raw_value_state(x, np.ones(len(x), np.bool_), bounds)
    std = np.sqrt(state["m2"][0] / state["c"][0])
    assert abs(std - np.std(x)) / np.std(x) < 1e-9


def test_spread_of_values_whose_sum_overflows():
    """Values near the float64 maximum: their sum is inf, yet the mean offset and M2 stay
    finite (the mean is taken anew from the values), in the kernel and in its numpy twin.
    (Two different values there differ by 2**971 or more: only equal ones have a finite M2.)"""
    top = np.finfo(np.float64).max
    x = np.array([top, top, top * 0.75, top * 0.75, top * 0.75, 1.0, 2.0, 4.0])
    valid = np.array([True, True, True, True, True, True, False, True])
    bounds = np.array([0, 2, 5, 8], dtype=np.int64)
    got = partials.raw_value_state(x, valid, bounds)
    with np.errstate(over="ignore"):  # the sums overflow, quietly, as in the kernel
        twin = partials.value_partials.run_reference(bounds, x=x, valid=valid)
    for state in (got, twin):
        assert np.isinf(state["s"][:2]).all()
        assert state["mu"][:2].tolist() == [0.0, 0.0] and state["m2"][:2].tolist() == [0.0, 0.0]
        assert state["mu"][2] == 1.5 and state["m2"][2] == 4.5  # the ordinary path
