"""Chunk column transforms: kernels equal their numpy references and invert exactly."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from datastream.kernels import transforms
from datastream.kernels.jit import readonly

INT64 = st.integers(-(2**63), 2**63 - 1)
ints = st.lists(INT64 | st.integers(-5, 5), max_size=60).map(lambda v: np.array(v, np.int64))
floats = st.lists(
    st.floats(width=64) | st.integers(-(10**6), 10**6).map(lambda v: v / 100)
    | INT64.map(lambda b: np.array([b], np.int64).view(np.float64)[0]),
    max_size=60,
).map(lambda v: np.array(v, np.float64))


@settings(max_examples=200, deadline=None)
@given(ints, st.integers(0, 2))
def test_int_transform_matches_numpy_and_inverts(x, order):
    z = np.empty(len(x), np.int64)
    tail, low, high = transforms.int_encode(readonly(x, np.int64), order, z)
    np.testing.assert_array_equal(z, transforms.int_encode_reference(x, order))
    assert tail == np.bitwise_or.reduce(z[order:]) if len(z) > order else tail == 0
    if len(x):
        assert (low, high) == (x.min(), x.max())
    out = np.empty(len(x), np.int64)
    transforms.int_decode(readonly(z, np.int64), order, out)
    np.testing.assert_array_equal(out, x)
    costs = transforms.int_costs(readonly(x, np.int64))
    assert costs[order] >= 0


@settings(max_examples=200, deadline=None)
@given(floats, st.integers(0, transforms.MAX_SCALE))
def test_decimal_transform_matches_numpy_and_inverts_bit_exactly(x, k):
    digits = np.empty(len(x), np.int64)
    residual = np.empty(len(x), np.int64)
    transforms.decimal_encode(readonly(x, np.float64), k, digits, residual)
    expected_digits, expected_residual = transforms.decimal_encode_reference(x, k)
    np.testing.assert_array_equal(digits, expected_digits)
    np.testing.assert_array_equal(residual, expected_residual)
    out = np.empty(len(x), np.float64)
    transforms.decimal_decode(readonly(digits, np.int64), readonly(residual, np.int64), k, out)
    np.testing.assert_array_equal(out.view(np.int64), x.view(np.int64))


def test_rounded_values_need_no_residual():
    rng = np.random.default_rng(3)
    for k in range(7):
        x = np.round(rng.normal(0, 1000, 500), k)
        x[0] = 0.0
        digits = np.empty(len(x), np.int64)
        residual = np.empty(len(x), np.int64)
        _, residual_or = transforms.decimal_encode(readonly(x, np.float64), k, digits, residual)
        assert residual_or == 0
        out = np.empty(len(x), np.float64)
        transforms.decimal_decode(readonly(digits, np.int64), np.empty(0, np.int64), k, out)
        np.testing.assert_array_equal(out, x)


def test_negative_zero_goes_through_the_residual():
    x = np.array([-0.0, 0.0, -0.0])
    digits = np.empty(3, np.int64)
    residual = np.empty(3, np.int64)
    transforms.decimal_encode(readonly(x, np.float64), 2, digits, residual)
    out = np.empty(3, np.float64)
    transforms.decimal_decode(readonly(digits, np.int64), readonly(residual, np.int64), 2, out)
    assert np.signbit(out).tolist() == [True, False, True]


def test_cost_estimate_finds_the_number_of_decimals():
    rng = np.random.default_rng(4)
    for k in range(7):
        x = np.round(20 + np.cumsum(rng.normal(0, 0.3, 256)), k)
        costs = np.full(transforms.MAX_SCALE + 1, np.iinfo(np.int64).max)
        transforms.decimal_costs(readonly(x, np.float64), 0, transforms.MAX_SCALE, costs)
        assert int(costs.argmin()) == k
