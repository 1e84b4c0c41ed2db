"""Kernels with a numpy reference (``jit.Kernel.use_reference``) give its bits, so a process
may run either while the kernel compiles."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datastream.kernels import (
    buckets,
    combine,
    derive,
    intake,
    jit,
    lockstep,
    order,
    partials,
    transforms,
)
from datastream.storage import codec, predictors, residuals
from tests.kernels import test_derive
from tests.kernels.strategies import WIDTHS, timestamps
from tests.storage.test_codec import CODEC_SETTINGS, cascaded_levels, level_tables
from tests.storage.test_residuals import EVERY_PREDICTION, filled_columns, special_columns


def test_kernels_with_a_twin_fall_back_to_it() -> None:
    with_reference = {k.__name__: k.reference for k in jit.KERNELS if k.reference is not None}
    twins = {f.name: getattr(transforms.NUMPY, f.name)
             for f in dataclasses.fields(transforms.Implementation)[1:]}
    # the transforms' twins are compared with the kernels in tests/kernels/test_transforms.py
    assert with_reference == {**twins, "ulp_residuals": residuals.ulp_residuals_numpy,
                              "ratio_residuals": residuals.ratio_residuals_numpy,
                              "bucket_bounds": buckets.bucket_bounds_numpy,
                              "value_partials": partials.value_partials_numpy,
                              "time_partials": partials.time_partials_numpy,
                              "combine_values": combine.combine_values_numpy,
                              "combine_times": combine.combine_times_numpy,
                              "bucket_median": order.bucket_median_numpy,
                              "count_codes": order.count_codes_numpy,
                              "derivative": derive.derivative_numpy,
                              "counter_reset": derive.counter_reset_numpy,
                              "counter_derivative": derive.counter_derivative_numpy,
                              "bucket_sum": derive.bucket_sum_numpy,
                              "copy_checked": intake.copy_checked_numpy}


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


# -- the downsampling kernels' twins -------------------------------------------------------------

edge_values = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e9, 1e9 + 0.5, -1e150, 1e150, 5e-324]),
    st.integers(-(10**6), 10**6).map(float),
)


@st.composite
def raw_points(draw, max_size: int = 80) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t, x, valid) with signed zeros, ties, subnormals and huge values among the values."""
    t = draw(timestamps(max_size))
    x = np.array(draw(st.lists(edge_values, min_size=len(t), max_size=len(t))), np.float64)
    valid = np.array(draw(st.lists(st.booleans() | st.just(True), min_size=len(t),
                                   max_size=len(t))), np.bool_)
    return t, x, valid


def assert_same_bits(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for name, column in expected.items():
        assert got[name].dtype == column.dtype, name
        assert np.array_equal(got[name].view(np.int64), column.view(np.int64)), name


def _fine(t, x, valid, width):
    starts, bounds = buckets.segment(t, width)
    values = partials.value_partials(bounds, x=x, valid=valid)
    times = partials.time_partials(bounds, t=t, nonnull=valid, starts=starts)
    return starts, values, times


@settings(max_examples=150, deadline=None)
@given(raw_points(), st.sampled_from(WIDTHS))
def test_partials_twins_give_the_kernels_bits(data, width) -> None:
    t, x, valid = data
    starts, bounds = buckets.segment(t, width)
    assert_same_bits(partials.value_partials.run_reference(bounds, x=x, valid=valid),
                     partials.value_partials(bounds, x=x, valid=valid))
    assert_same_bits(
        partials.time_partials.run_reference(bounds, t=t, nonnull=valid, starts=starts),
        partials.time_partials(bounds, t=t, nonnull=valid, starts=starts))


@st.composite
def children(draw) -> tuple[np.ndarray, dict, dict, np.ndarray, np.ndarray]:
    """Child rows of a fine level (from raw points), some emptied (count 0) or lacking their
    minimum (a pre-aggregated item), and the segments of a coarser level over them."""
    t, x, valid = draw(raw_points())
    fine, coarse = sorted(draw(st.lists(st.sampled_from(WIDTHS), min_size=2, max_size=2)))
    child_t, values, times = _fine(t, x, valid, fine)
    rows = len(child_t)
    emptied = np.array(draw(st.lists(st.booleans(), min_size=rows, max_size=rows)), np.bool_)
    values["c"] = np.where(emptied & draw(st.booleans()), 0, values["c"])
    no_low = np.array(draw(st.lists(st.booleans(), min_size=rows, max_size=rows)), np.bool_)
    values["l"] = np.where(no_low & draw(st.booleans()), np.nan, values["l"])
    times["np"] = np.where(emptied & draw(st.booleans()), 0, times["np"])
    starts, bounds = buckets.segment(child_t, coarse)
    return child_t, values, times, starts, bounds


@settings(max_examples=150, deadline=None)
@given(children())
def test_combine_twins_give_the_kernels_bits(data) -> None:
    child_t, values, times, starts, bounds = data
    assert_same_bits(combine.combine_values.run_reference(bounds, values),
                     combine.combine_values(bounds, values))
    columns = {**times, "t": child_t}
    assert_same_bits(combine.combine_times.run_reference(bounds, columns, starts=starts),
                     combine.combine_times(bounds, columns, starts=starts))


def test_a_twin_declines_a_segment_longer_than_it_walks(monkeypatch) -> None:
    """A segment past lockstep.MAX_STEPS: the twin refuses before writing, and a cold call
    compiles the kernel instead of walking it element by element."""
    x = np.arange(lockstep.MAX_STEPS + 1, dtype=np.float64)
    valid = np.ones(len(x), np.bool_)
    bounds = np.array([0, len(x)], np.int64)
    with pytest.raises(jit.Declined):
        partials.value_partials.run_reference(bounds, x=x, valid=valid)
    kernel = partials.value_partials
    monkeypatch.setattr(jit, "FALLBACK", True)
    monkeypatch.setattr(kernel, "_dispatcher", None)
    monkeypatch.setattr(kernel, "_cold", True)  # as on an empty cache
    got = kernel(bounds, x=x, valid=valid)
    assert kernel.loaded and got["c"].tolist() == [len(x)] and got["s"][0] == x.sum()


@settings(max_examples=150, deadline=None)
@given(raw_points(), st.sampled_from(WIDTHS), st.sampled_from([(4, 4096), (0, 0)]), st.data())
def test_median_twin_gives_the_kernels_bits(data, width, padding, choose) -> None:
    """Ties and zeros of both signs included: a zero median is +0.0 either way. Both ways the
    twin sorts (a padded grid, or one key of segment and rank: ``padding`` (0, 0) forces it),
    over all segments or the tail of them (bounds not starting at 0)."""
    t, x, valid = data
    _, bounds = buckets.segment(t, width)
    bounds = bounds[choose.draw(st.integers(0, max(len(bounds) - 2, 0))):]
    outputs = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(order, "PAD_CELLS", padding[0])
        patch.setattr(order, "PAD_SLACK", padding[1])
        for run in (order.bucket_median.dispatcher(), order.bucket_median.reference):
            out = np.full(len(bounds) - 1, 7.0)
            scratch = np.zeros(max(len(t), 1))
            run(jit.readonly(x, np.float64), jit.readonly(valid, np.bool_),
                jit.readonly(bounds, np.int64), scratch, out)
            outputs.append(out.view(np.int64).tolist())
    assert outputs[0] == outputs[1]


@settings(max_examples=150, deadline=None)
@given(timestamps(), st.sampled_from(WIDTHS), st.integers(1, 6), st.data())
def test_code_count_twin_gives_the_kernels_bits(t, width, n_codes, data) -> None:
    """Codes in order of first occurrence per bucket, negative codes (no value) skipped; the
    count scratch left zeroed."""
    codes = np.array(data.draw(st.lists(st.integers(-1, n_codes - 1), min_size=len(t),
                                        max_size=len(t))), np.int64)
    _, bounds = buckets.segment(t, width)
    outputs = []
    for run in (order.count_codes.dispatcher(), order.count_codes.reference):
        counts = np.zeros(n_codes, np.int64)
        triples = [np.full(len(t), -5, np.int64) for _ in range(3)]
        k = run(jit.readonly(codes, np.int64), jit.readonly(bounds, np.int64), counts,
                np.zeros(max(len(t), 1), np.int64), *triples)
        outputs.append((k, type(k), counts.tolist(), [x[:k].tolist() for x in triples]))
    assert outputs[0] == outputs[1]


def _bits(value):
    """A kernel's output or return value, comparable bit for bit (with its Python type)."""
    if isinstance(value, np.ndarray):
        width = np.int64 if value.itemsize == 8 else value.dtype
        return value.dtype.str, value.view(width).tolist()
    if isinstance(value, tuple):
        return tuple(_bits(part) for part in value)
    return type(value).__name__, value


def assert_derive_twin(kernel, arguments: tuple, state_at: int, outputs: int) -> None:
    """The kernel and its twin on fresh copies of the state and of dirty output slots: the
    same return value, the same used outputs and the same state after, bit for bit."""
    results = []
    for run in (kernel.dispatcher(), kernel.reference):
        args = [np.array(a) if isinstance(a, np.ndarray) else a for a in arguments]
        n = len(args[0])
        out = [np.full(n, 3, np.int64), np.full(n, 5.0), np.zeros(n, np.bool_)][:outputs]
        returned = run(*args, *out)
        count = returned[0] if isinstance(returned, tuple) else returned
        results.append((_bits(returned), [_bits(o[:count]) for o in out],
                        _bits(args[state_at]) if state_at >= 0 else None))
    assert results[0] == results[1]


@settings(max_examples=150, deadline=None)
@given(test_derive.series())
def test_derivative_twins_give_the_kernels_bits(data) -> None:
    t, v, valid, state = data
    assert_derive_twin(derive.derivative, (t, v, valid, state), 3, 3)
    assert_derive_twin(derive.counter_reset, (t, v, valid, state[[0, 2]]), 3, 1)


@settings(max_examples=150, deadline=None)
@given(test_derive.counter_inputs())
def test_counter_derivative_twin_gives_the_kernels_bits(data) -> None:
    t, source, v, valid, max_value, state = data
    v = np.where(valid, v, 0.0)
    assert_derive_twin(derive.counter_derivative, (t, source, v, valid, max_value, state), 5, 3)


@settings(max_examples=150, deadline=None)
@given(test_derive.sum_inputs())
def test_bucket_sum_twin_gives_the_kernels_bits(data) -> None:
    bucket, source, v, valid, sources, last = data
    v = np.where(valid, v, 0.0)
    assert_derive_twin(derive.bucket_sum, (bucket, source, v, valid, sources, last), -1, 3)
