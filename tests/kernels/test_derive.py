"""Derive kernels (behaviour §7) against their numpy references: nulls, resets, counter wrap at
max_value, and state carried across batch boundaries (two batches with the carried state give
what one pass gives)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from datastream.kernels import derive
from tests.kernels.strategies import SECOND, WIDTHS, points, values

SETTINGS = settings(max_examples=150, deadline=None)
NO_TIME = -(2**63)
MAX_VALUES = st.sampled_from([-1.0, 256.0, 2.0**32, 1e6])


def _outputs(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.empty(n, np.int64), np.empty(n, np.float64), np.empty(n, np.bool_)


def _used(out, count):
    out_t, out_v, out_valid = (column[:count] for column in out)
    return out_t, np.where(out_valid, out_v, np.nan), out_valid


def run_derivative(t, v, valid, state):
    state, out = np.array(state, np.float64), _outputs(len(t))
    count = derive.derivative(t, v, valid, state, *out)
    return _used(out, count) + (state,)


def run_counter_reset(t, v, valid, state):
    state, out_t = np.array(state, np.float64), np.empty(len(t), np.int64)
    count = derive.counter_reset(t, v, valid, state, out_t)
    return out_t[:count], np.ones(count), np.ones(count, np.bool_), state


def run_counter_derivative(t, source, v, valid, max_value, state):
    state, out = np.array(state, np.float64), _outputs(len(t))
    count = derive.counter_derivative(t, source, np.where(valid, v, 0.0), valid, max_value,
                                      state, *out)
    return _used(out, count) + (state,)


def run_bucket_sum(bucket, source, v, valid, sources, last):
    out = _outputs(len(bucket))
    count, last = derive.bucket_sum(bucket, source, np.where(valid, v, 0.0), valid, sources,
                                    last, *out)
    return _used(out, count) + (int(last),)


def assert_same(got, expected) -> None:
    """Outputs (t, v, valid) and the carried state: t, valid and state exactly, v to 1e-12."""
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(got[2], expected[2])
    np.testing.assert_array_equal(got[3], expected[3])


def joined(first, second):
    """Outputs of two consecutive batches as one, with the state after the second."""
    return tuple(np.concatenate([a, b]) for a, b in zip(first[:3], second[:3], strict=True)) + (
        second[3],)


@st.composite
def point_states(draw, t: np.ndarray, size: int) -> np.ndarray:
    """A carried state: fresh, or a previous point at or before the first input."""
    if draw(st.booleans()):
        return np.zeros(size)
    state = np.zeros(size)
    state[0] = 1.0
    state[1] = float(t[0] - draw(st.sampled_from([0, 1, SECOND, 3600 * SECOND])))
    state[2] = draw(values)
    return state


@st.composite
def series(draw):
    """(t, v, valid) with NaN at the nulls, and a carried derivative state."""
    t, x, valid = draw(points())
    return t, np.where(valid, x, np.nan), valid, draw(point_states(t, 4))


@st.composite
def counter_inputs(draw):
    """Merged reset (0) and counter (1) inputs: counters below a max_value, resets 0/1."""
    t, x, valid = draw(points())
    source = np.array(draw(st.lists(st.sampled_from([0, 1, 1]), min_size=len(t),
                                    max_size=len(t))), np.int64)
    max_value = draw(MAX_VALUES)
    counter = np.abs(x) % (256.0 if max_value < 0 else max_value)
    truthy = (np.abs(x) % 3 == 0).astype(np.float64)
    v = np.where(valid, np.where(source == 0, truthy, counter), np.nan)
    return t, source, v, valid, max_value, draw(point_states(t, 5))


@st.composite
def sum_inputs(draw):
    """Merged inputs of ``sources`` sum sources, bucketed, and a last emitted bucket."""
    t, x, valid = draw(points())
    sources = draw(st.integers(1, 3))
    source = np.array(draw(st.lists(st.integers(0, sources - 1), min_size=len(t),
                                    max_size=len(t))), np.int64)
    width = draw(st.sampled_from(WIDTHS))
    bucket = (t // width) * width
    order = np.lexsort((source, bucket))
    last = NO_TIME if draw(st.booleans()) else int(bucket[draw(st.integers(0, len(t) - 1))])
    return bucket[order], source[order], np.where(valid, x, np.nan)[order], valid[order], \
        sources, last


# -- kernels against references ----------------------------------------------------------------


@SETTINGS
@given(series())
def test_derivative_matches_reference(data):
    t, v, valid, state = data
    assert_same(run_derivative(t, v, valid, state), derive.derivative_reference(t, v, valid, state))


@SETTINGS
@given(series())
def test_counter_reset_matches_reference(data):
    t, v, valid, state = data
    state = state[[0, 2]]
    assert_same(run_counter_reset(t, v, valid, state),
                derive.counter_reset_reference(t, v, valid, state))


@SETTINGS
@given(counter_inputs())
def test_counter_derivative_matches_reference(data):
    assert_same(run_counter_derivative(*data), derive.counter_derivative_reference(*data))


@SETTINGS
@given(sum_inputs())
def test_bucket_sum_matches_reference(data):
    got, expected = run_bucket_sum(*data), derive.bucket_sum_reference(*data)
    assert_same(got, expected)


# -- state carried across batches ----------------------------------------------------------------


@SETTINGS
@given(series(), st.data())
def test_derivative_split_equals_one_pass(data, draw):
    t, v, valid, state = data
    k = draw.draw(st.integers(0, len(t)))
    first = run_derivative(t[:k], v[:k], valid[:k], state)
    second = run_derivative(t[k:], v[k:], valid[k:], first[3])
    assert_same(joined(first, second), run_derivative(t, v, valid, state))


@SETTINGS
@given(series(), st.data())
def test_counter_reset_split_equals_one_pass(data, draw):
    t, v, valid, state = data
    state = state[[0, 2]]
    k = draw.draw(st.integers(0, len(t)))
    first = run_counter_reset(t[:k], v[:k], valid[:k], state)
    second = run_counter_reset(t[k:], v[k:], valid[k:], first[3])
    assert_same(joined(first, second), run_counter_reset(t, v, valid, state))


@SETTINGS
@given(counter_inputs(), st.data())
def test_counter_derivative_split_equals_one_pass(data, draw):
    t, source, v, valid, max_value, state = data
    k = draw.draw(st.integers(0, len(t)))
    first = run_counter_derivative(t[:k], source[:k], v[:k], valid[:k], max_value, state)
    second = run_counter_derivative(t[k:], source[k:], v[k:], valid[k:], max_value, first[3])
    assert_same(joined(first, second), run_counter_derivative(*data))


@SETTINGS
@given(sum_inputs(), st.data())
def test_bucket_sum_split_equals_one_pass(data, draw):
    """The second batch reads the still-open bucket's inputs again, as the engine does."""
    bucket, source, v, valid, sources, last = data
    k = draw.draw(st.integers(0, len(bucket)))
    first = run_bucket_sum(bucket[:k], source[:k], v[:k], valid[:k], sources, last)
    again = min(k, int(np.searchsorted(bucket, first[3], side="right")))
    second = run_bucket_sum(bucket[again:], source[again:], v[again:], valid[again:], sources,
                            first[3])
    assert_same(joined(first, second), run_bucket_sum(*data))


# -- behaviour §7 examples -----------------------------------------------------------------------

A = [21.0, 25.0, 28.0, 32.0, 25.0, 70.0, 74.0]
B = [21.0, 25.0, 28.0, 32.0, 25.0, 42.0, 42.0]
SECONDS = np.array([0, 1, 2, 3, 4, 10, 11], np.int64) * SECOND


def test_sum_example():
    bucket = np.repeat(SECONDS, 2)
    source = np.tile([0, 1], len(SECONDS))
    v = np.ravel(np.column_stack([A, B]))
    got = run_bucket_sum(bucket, source, v, np.ones(v.size, np.bool_), 2, NO_TIME)
    assert got[1].tolist() == [42.0, 50.0, 56.0, 64.0, 50.0, 112.0, 116.0]
    assert got[3] == 11 * SECOND


def test_derivative_example_and_nulls():
    v = np.array(A)
    got = run_derivative(SECONDS, v, np.ones(v.size, np.bool_), np.zeros(4))
    assert got[1].tolist() == [4.0, 3.0, 4.0, -7.0, 7.5, 4.0]
    v[2] = np.nan  # a null emits null and forgets the previous point
    got = run_derivative(SECONDS, v, ~np.isnan(v), np.zeros(4))
    assert got[0].tolist() == (SECONDS[[1, 2, 4, 5, 6]]).tolist()
    np.testing.assert_array_equal(got[1], [4.0, np.nan, -7.0, 7.5, 4.0])


def test_derivative_zero_time_step_counts_and_moves_the_base():
    t = np.array([0, SECOND, SECOND, 2 * SECOND], np.int64)
    got = run_derivative(t, np.array([0.0, 1.0, 5.0, 6.0]), np.ones(4, np.bool_), np.zeros(4))
    assert got[1].tolist() == [1.0, 1.0]
    assert got[3].tolist() == [1.0, 2 * SECOND, 6.0, 1.0]


def test_counter_reset_example():
    v = np.array([10, 23, 28, 44, 2, 17, 90, 30, 2, 5, 10, 15, 23, 1, 7, 12, 19, 25, 31, 45, 51],
                 np.float64)
    t = np.arange(v.size, dtype=np.int64) * SECOND
    got = run_counter_reset(t, v, np.ones(v.size, np.bool_), np.zeros(2))
    assert (got[0] // SECOND).tolist() == [4, 7, 8, 13]


def test_counter_derivative_example_wraps_at_max_value():
    uptime = np.array([10, 23, 28, 44, 2, 17, 90, 30, 2], np.float64)
    data = np.array([5, 12, 7, 25, 7, 18, 33, 40, 5], np.float64)
    t = np.arange(uptime.size, dtype=np.int64) * SECOND
    resets = run_counter_reset(t, uptime, np.ones(t.size, np.bool_), np.zeros(2))[0]
    merged_t = np.concatenate([resets, t])
    source = np.concatenate([np.zeros(resets.size, np.int64), np.ones(t.size, np.int64)])
    v = np.concatenate([np.ones(resets.size), data])
    order = np.lexsort((source, merged_t))
    inputs = (merged_t[order], source[order], v[order], np.ones(v.size, np.bool_), 256.0,
              np.zeros(5))
    got = run_counter_derivative(*inputs)
    assert got[1].tolist() == [7.0, 251.0, 18.0, 11.0, 15.0]
    assert_same(got, derive.counter_derivative_reference(*inputs))


def test_counter_derivative_without_max_value_drops_decreases():
    t = np.array([0, SECOND, 2 * SECOND], np.int64)
    args = (t, np.ones(3, np.int64), np.array([5.0, 3.0, 4.0]), np.ones(3, np.bool_), -1.0,
            np.zeros(5))
    got = run_counter_derivative(*args)
    assert got[1].tolist() == [1.0]
    assert got[3][3] == 1.0  # one decrease counted for the warning
    assert_same(got, derive.counter_derivative_reference(*args))


def test_references_take_an_empty_batch():
    """A flush can bring a derived stream no new input: each twin then returns its state."""
    empty_t, empty_v, empty_valid = np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool)
    state = np.array([1.0, float(SECOND), 5.0, 0.0, 0.0])
    *out, after = derive.counter_derivative_reference(empty_t, empty_t, empty_v, empty_valid,
                                                      -1.0, state)
    assert all(len(column) == 0 for column in out)
    np.testing.assert_array_equal(after, state)


def test_counter_derivative_null_reset_forgets_the_state():
    """A null reset emits None and forgets the previous point, as a data null does."""
    t = np.array([0, SECOND, 2 * SECOND, 3 * SECOND, 4 * SECOND], np.int64)
    source = np.array([1, 0, 1, 1, 1], np.int64)
    valid = np.array([True, False, True, True, False])
    v = np.array([1.0, np.nan, 3.0, 6.0, np.nan])
    got = run_counter_derivative(t, source, v, valid, -1.0, np.zeros(5))
    assert got[0].tolist() == [SECOND, 3 * SECOND, 4 * SECOND]
    np.testing.assert_array_equal(got[1], [np.nan, 3.0, np.nan])
    assert got[3][0] == 0.0  # the data null forgot the previous point
    carried = run_counter_derivative(t[:2], source[:2], v[:2], valid[:2], -1.0,
                                     np.array([1.0, -SECOND, 0.0, 0.0, 0.0]))
    assert carried[3][0] == 0.0  # the null reset forgot the carried point
