"""Kernels with a numpy reference (``jit.Kernel.use_reference``) give its bits, so a process
may run either while the kernel compiles."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datastream.kernels import buckets, jit, transforms
from datastream.storage import codec, predictors, residuals
from tests.storage.test_codec import CODEC_SETTINGS, cascaded_levels, level_tables
from tests.storage.test_residuals import EVERY_PREDICTION, filled_columns, special_columns


def test_the_codec_kernels_fall_back_to_their_twins() -> None:
    with_reference = {k.__name__: k.reference for k in jit.KERNELS if k.reference is not None}
    twins = {f.name: getattr(transforms.NUMPY, f.name)
             for f in dataclasses.fields(transforms.Implementation)[1:]}
    # the transforms' twins are compared with the kernels in tests/kernels/test_transforms.py
    assert with_reference == {**twins, "ulp_residuals": residuals.ulp_residuals_numpy,
                              "ratio_residuals": residuals.ratio_residuals_numpy,
                              "bucket_bounds": buckets.bucket_bounds_numpy}


def assert_references_agree(values: dict, scale: int) -> None:
    """The codec's residuals through each residual kernel and through its reference."""
    for kind, key in EVERY_PREDICTION:
        for rate in (False, True):
            kernel = codec._residuals(kind, key, scale, values, transforms.NUMBA, rate)
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(residuals, "ulp_residuals", residuals.ulp_residuals.reference)
                patch.setattr(residuals, "ratio_residuals", residuals.ratio_residuals.reference)
                reference = codec._residuals(kind, key, scale, values, transforms.NUMBA, rate)
            if kernel is None:
                assert reference is None
                continue
            (kernel_parts, kernel_cost), (parts, cost) = kernel, reference
            assert len(kernel_parts) == len(parts)
            for (got, got_or), (expected, expected_or) in zip(kernel_parts, parts):
                assert np.array_equal(got, expected)
                assert got_or == expected_or and type(got_or) is type(expected_or)
            assert np.float64(kernel_cost).view(np.int64) == np.float64(cost).view(np.int64)
            assert type(kernel_cost) is type(cost)


@settings(CODEC_SETTINGS, max_examples=60)  # every example runs every prediction twice
@given(level_tables() | cascaded_levels(), st.integers(0, predictors.MAX_SQUARED_SCALE))
def test_residual_references_give_the_kernels_bits(table, scale):
    assert_references_agree(filled_columns(table), scale)


@settings(CODEC_SETTINGS, max_examples=60)
@given(st.integers(0, 40).flatmap(special_columns),
       st.integers(0, predictors.MAX_SQUARED_SCALE))
def test_residual_references_agree_on_special_values(values, scale):
    assert_references_agree(values, scale)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-10**15, 10**15), max_size=60), st.booleans(),
       st.sampled_from([1, 7, 1_000_000, 60_000_000, 86_400_000_000]))
def test_bucket_bounds_reference_gives_the_kernels_bits(times, ordered, width) -> None:
    """Sorted timestamps (what callers pass) and unsorted ones, into slots that start dirty."""
    t = jit.readonly(np.array(sorted(times) if ordered else times, dtype=np.int64), np.int64)
    outputs = []
    for run in (buckets.bucket_bounds.dispatcher(), buckets.bucket_bounds.reference):
        starts, bounds = np.full(len(t), 7, np.int64), np.full(len(t) + 1, 9, np.int64)
        count = run(t, np.int64(width), starts, bounds)
        outputs.append((count, type(count), starts.tolist(), bounds.tolist()))
    assert outputs[0] == outputs[1]
