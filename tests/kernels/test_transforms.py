"""Chunk column transforms: the numba kernels and their numpy twins give the same bits, and both
invert exactly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datastream.kernels import transforms
from datastream.kernels.jit import readonly

IMPLEMENTATIONS = [transforms.NUMBA, transforms.NUMPY]
INT64 = st.integers(-(2**63), 2**63 - 1)
EXTREMES = [-(2**63), -(2**63) + 1, -(2**62), -1, 0, 1, 2**62, 2**63 - 2, 2**63 - 1]
ints = st.lists(
    INT64 | st.integers(-5, 5) | st.sampled_from(EXTREMES), max_size=300
).map(lambda v: readonly(np.array(v, np.int64), np.int64))
SPECIAL = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308,
           1e-310, 1.7976931348623157e308, -1.7976931348623157e308, 2.0**52, 2.0**52 - 1,
           -(2.0**52), 4.5e15, 1e300, 0.1, 0.5, 2.5, -2.5]
NAN_PAYLOADS = [0x7FF8000000000001, 0xFFF8000000000000, 0x7FF0000000000001, 2**64 - 1]
floats = st.lists(
    st.floats(width=64)
    | st.integers(-(10**6), 10**6).map(lambda v: v / 100)
    | st.integers(-(10**12), 10**12).map(lambda v: v / 10**6)
    | st.sampled_from(SPECIAL)
    | st.sampled_from(NAN_PAYLOADS).map(lambda b: np.array([b], np.uint64).view(np.float64)[0])
    | INT64.map(lambda b: np.array([b], np.int64).view(np.float64)[0]),
    max_size=300,
).map(lambda v: readonly(np.array(v, np.float64), np.float64))
SETTINGS = settings(max_examples=300, deadline=None)


def bits_of(x: np.ndarray) -> list[int]:
    return np.asarray(x, np.float64).view(np.int64).tolist()


def test_importing_the_transforms_imports_no_numba():
    root = Path(__file__).resolve().parents[2]
    code = "import sys, datastream.kernels.transforms; print('numba' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                            text=True, check=True, env={**os.environ, "PYTHONPATH": str(root)})
    assert result.stdout.strip() == "False"


def test_bit_lengths():
    values = np.array(EXTREMES + [2**k + d for k in range(64) for d in (-1, 0, 1)
                                  if -(2**63) <= 2**k + d < 2**63], np.int64)
    expected = [(int(v) & (2**64 - 1)).bit_length() for v in values]
    assert transforms.bits_numpy(values).tolist() == expected
    assert [transforms._bits(v) for v in values] == expected


@SETTINGS
@given(st.lists(st.integers(0, 50), min_size=65, max_size=65), st.integers(0, 64))
def test_shuffled_bits_twins_agree(counts, longest):
    lengths = np.array(counts, np.int64)
    lengths[longest + 1:] = 0  # nothing longer than the longest value
    n = int(lengths.sum())
    expected = transforms.shuffled_bits(lengths, n)
    got = transforms.shuffled_bits_numpy(lengths[None, :], n)[0]
    assert bits_of(got) == bits_of(expected)


@SETTINGS
@given(ints)
def test_int_costs_twins_agree(x):
    numba_costs = transforms.int_costs(x)
    numpy_costs = transforms.int_costs_numpy(x)
    assert bits_of(numpy_costs) == bits_of(numba_costs)
    assert all(isinstance(c, float) for c in numpy_costs)


@SETTINGS
@given(ints, st.integers(0, 2))
def test_int_transform_twins_agree_and_invert(x, order):
    results = []
    for implementation in IMPLEMENTATIONS:
        z = np.empty(len(x), np.int64)
        tail, low, high = implementation.int_encode(x, order, z)
        assert tail == (np.bitwise_or.reduce(z[order:]) if len(z) > order else 0)
        assert (low, high) == ((x.min(), x.max()) if len(x) else (0, 0))
        results.append((z.tolist(), int(tail), int(low), int(high)))
        for decoder in IMPLEMENTATIONS:  # each decodes what either encoded
            out = np.empty(len(x), np.int64)
            decoder.int_decode(readonly(z, np.int64), order, out)
            np.testing.assert_array_equal(out, x)
    assert results[0] == results[1]


@SETTINGS
@given(floats, st.integers(0, transforms.MAX_SCALE))
def test_decimal_transform_twins_agree_and_invert_bit_exactly(x, k):
    results = []
    for implementation in IMPLEMENTATIONS:
        digits = np.empty(len(x), np.int64)
        residual = np.empty(len(x), np.int64)
        digits_or, residual_or = implementation.decimal_encode(x, k, digits, residual)
        assert digits_or == (np.bitwise_or.reduce(digits[1:]) if len(x) > 1 else 0)
        assert residual_or == (np.bitwise_or.reduce(residual) if len(x) else 0)
        results.append((digits.tolist(), residual.tolist(), int(digits_or), int(residual_or)))
        stored = readonly(residual if residual_or else np.empty(0, np.int64), np.int64)
        for decoder in IMPLEMENTATIONS:
            out = np.empty(len(x), np.float64)
            decoder.decimal_decode(readonly(digits, np.int64), stored, k, out)
            assert bits_of(out) == bits_of(x)
    assert results[0] == results[1]


@SETTINGS
@given(floats, st.integers(0, transforms.MAX_SCALE), st.integers(0, transforms.MAX_SCALE))
def test_decimal_costs_twins_agree(x, lo, hi):
    lo, hi = min(lo, hi), max(lo, hi)
    results = []
    for implementation in IMPLEMENTATIONS:
        costs = np.full(transforms.MAX_SCALE + 1, np.inf)
        last = implementation.decimal_costs(x, lo, hi, costs)
        results.append((last, bits_of(costs)))
    assert results[0] == results[1]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS, ids=lambda i: i.name)
def test_rounded_values_need_no_residual(implementation):
    rng = np.random.default_rng(3)
    for k in range(7):
        x = np.round(rng.normal(0, 1000, 500), k)
        x[0] = 0.0
        digits = np.empty(len(x), np.int64)
        residual = np.empty(len(x), np.int64)
        _, residual_or = implementation.decimal_encode(readonly(x, np.float64), k, digits,
                                                       residual)
        assert residual_or == 0
        out = np.empty(len(x), np.float64)
        implementation.decimal_decode(readonly(digits, np.int64), np.empty(0, np.int64), k, out)
        np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS, ids=lambda i: i.name)
def test_negative_zero_goes_through_the_residual(implementation):
    x = readonly(np.array([-0.0, 0.0, -0.0]), np.float64)
    digits = np.empty(3, np.int64)
    residual = np.empty(3, np.int64)
    implementation.decimal_encode(x, 2, digits, residual)
    assert digits.tolist() == [0, 0, 0]
    out = np.empty(3, np.float64)
    implementation.decimal_decode(readonly(digits, np.int64), readonly(residual, np.int64), 2,
                                  out)
    assert np.signbit(out).tolist() == [True, False, True]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS, ids=lambda i: i.name)
def test_inexact_values_repeat_the_previous_digits(implementation):
    """NaN, infinities and values too large for an exact ``v`` add no delta."""
    x = readonly(np.array([1.25, np.nan, np.inf, 1e300, -np.inf, 2.5]), np.float64)
    digits = np.empty(6, np.int64)
    residual = np.empty(6, np.int64)
    implementation.decimal_encode(x, 2, digits, residual)
    deltas = np.empty(6, np.int64)
    implementation.int_decode(readonly(digits, np.int64), 0, deltas)
    assert deltas.tolist() == [125, 0, 0, 0, 0, 125]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS, ids=lambda i: i.name)
def test_cost_estimate_finds_the_number_of_decimals(implementation):
    rng = np.random.default_rng(4)
    for k in range(7):
        x = np.round(20 + np.cumsum(rng.normal(0, 0.3, 256)), k)
        costs = np.full(transforms.MAX_SCALE + 1, np.inf)
        implementation.decimal_costs(readonly(x, np.float64), 0, transforms.MAX_SCALE, costs)
        assert int(costs.argmin()) == k
