"""Level-column predictors: what they predict, and the codec's use of them (chunk format 2)."""

from __future__ import annotations

import base64

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datastream import downsamplers
from datastream.storage import codec, predictors
from datastream.storage.base import RAW_SCHEMA
from tests.storage.test_codec import (
    CODEC_SETTINGS,
    SECOND,
    SPECIAL_FLOATS,
    assert_bit_exact,
    reseal,
    sensor_table,
)

# A level chunk written by chunk format 1 (40 sensor points, 10 s rows), before ratio columns.
FORMAT_1_CHUNK = base64.b64decode(
    "RFNDQwECFQEEAAAAAED6wQibBQCAA8TDCJsFAJ8wB3xL2azcAQANAAgAAAAMAAAABgAGAAAAAAACAJIACAAAAAMAAAAE"
    "AAAABgASAAQAAAACABIACAAAAAMAAAAAAAAAAgASAAgAAAADAAAAAAAAAAYAIQAIAAAAAgClAAgAAAAGAAAABAAAAAAA"
    "AAAAAAAABgAHAAAAAAABAAEACAAAAAAAAAACAAAACAAAAAAAAAAAAAAAAQANAAgAAAAMAAAAAQANAAgAAAAMAAAABgAI"
    "AAAAAAAGAAkAAAAAAAIAAAAIAAAAAAAAAAAAAAACAAAACAAAAAAAAAAAAAAABgAEAAAAAAACAAAACAAAAAAAAAAAAAAA"
    "AID0gxE2CwAALTEBAC0xAQAtMQE2nAAAAAAAABSSfwIBAQQDAgIHbg8AAAAAAAAgDinkDwAAAAAAACsWD2UAmgCaAssA"
    "AtAAAAAAAADPtl4XoDgHUHsPFAAAAAAAAABAVIkAAAAAAACA9IMRNgsAAC0xAQAtMQEALTEBgCgHhRE2CwAALTEBAC0x"
    "AQAtMQECAAAAAAAAAAIAAAAAAAAAAAAAAAAAAAA="
)


def jittered_sensor(n: int, seed: int = 0, jitter_us: int = 50_000) -> pa.Table:
    """~1 Hz points ± ``jitter_us``, values quantised to 0.01: the timestamps of real sensors."""
    rng = np.random.default_rng(seed)
    t = 1_577_836_800 * SECOND + np.arange(n, dtype=np.int64) * SECOND
    t += rng.integers(-jitter_us, jitter_us + 1, n)
    x = np.round(20 + 5 * np.sin(np.arange(n) / 3600) + rng.normal(0, 0.3, n), 2)
    return pa.Table.from_arrays(
        [pa.array(t), pa.array(np.full(n, 2, np.int8)), pa.nulls(n, pa.int64()), pa.array(x),
         pa.nulls(n, pa.string())], schema=RAW_SCHEMA)


def level_rows(raw: pa.Table, width_us: int = 10 * SECOND) -> pa.Table:
    return downsamplers.partials_from_raw(raw, "numeric", {}, width_us, False)


def numpy_columns(rows: pa.Table) -> dict[str, np.ndarray]:
    return {name: rows.column(name).to_numpy() for name in ("t", "c", "s", "q", "m2", "ta", "tz",
                                                              "tn", "tm", "ic", "isum", "iq",
                                                              "im2")}


# == the predictions themselves =================================================================


def test_time_mean_numerator_is_the_exact_sum_of_offsets():
    """tm * tn is an integer count of µs; evenly spaced points make it the prediction."""
    rows = level_rows(sensor_table(200))
    values = numpy_columns(rows)
    guess, divisor = predictors.ratio(predictors.SCALED[1], values, 0)
    numerator = predictors.numerators(values["tm"], divisor, guess)
    assert np.array_equal(numerator, guess)
    assert np.array_equal(predictors.quotients(numerator, divisor), values["tm"])


def test_sums_of_squares_of_quantised_values_are_integers_over_a_power_of_ten():
    rows = level_rows(jittered_sensor(500))
    values = numpy_columns(rows)
    raw = jittered_sensor(500).column("f").to_numpy()
    digits = np.rint(raw * 100).astype(np.int64)
    bucket = (jittered_sensor(500).column("t").to_numpy() - values["t"][0]) // (10 * SECOND)
    expected = np.bincount(bucket, digits * digits)
    guess, divisor = predictors.ratio(predictors.SCALED[2], values, 2)
    assert np.array_equal(predictors.numerators(values["q"], divisor, guess), expected)
    spread = guess - expected
    assert (spread <= 0).all()  # S²/c never exceeds Σx², so the difference is the spread


def test_exact_spread_is_closer_than_the_float_formula():
    rows = level_rows(jittered_sensor(2000))
    values = numpy_columns(rows)
    ulps = {}
    for key in (5, 11):
        predictor = predictors.PREDICTORS[key]
        guess = predictors.predict(predictor, values, np.float64, 6)
        ulps[key] = np.abs(values["im2"].view(np.int64) - guess.view(np.int64)).max()
    assert ulps[11] <= 4 < ulps[5]


def test_predictions_of_missing_inputs_are_none():
    values = {"q": np.ones(3), "s": np.ones(3)}  # no "c"
    assert predictors.predict(predictors.PREDICTORS[10], values, np.float64, 2) is None
    assert predictors.ratio(predictors.SCALED[2], values, 2) is None


def test_numerators_fall_back_to_the_guess_beyond_exact_integers():
    x = np.array([np.nan, np.inf, 1e300, 2.5])
    guess = np.array([7, 8, 9, 10], np.int64)
    assert predictors.numerators(x, np.full(4, 2.0), guess).tolist() == [7, 8, 9, 5]
    assert predictors.quotients(np.array([0, 1]), np.array([0.0, 0.0])).tolist() == [0.0, np.inf]


# == in the codec ===============================================================================


def test_jittered_sensor_levels_use_ratios_and_format_2():
    rows = level_rows(jittered_sensor(20_000))
    data = codec.encode_level(rows)
    kinds = {name: kind for name, kind, _ in codec.describe(data)}
    assert kinds["tm"] == kinds["q"] == kinds["iq"] == "ratio"
    assert kinds["m2"] == kinds["im2"] == "predicted"
    assert data[4] == 2
    assert_bit_exact(codec.decode_level(data), rows)
    assert len(data) / rows.num_rows < 27  # 34 bytes per row with format 1


def test_chunks_without_new_predictions_keep_format_1():
    data = codec.encode_raw(sensor_table(100))
    assert data[4] == 1


def test_format_1_chunks_still_decode():
    assert_bit_exact(codec.decode_level(FORMAT_1_CHUNK), level_rows(sensor_table(40, seed=3)))


def test_a_ratio_with_an_unknown_predictor_or_scale_is_refused():
    data = codec.encode_level(level_rows(jittered_sensor(300)))
    columns, _ = codec._read_columns(data, codec.LEVEL)
    index = codec.LAYOUTS[codec.LEVEL].names.index("q")
    offset = codec._HEADER_SIZE + sum(codec._COLUMN.size + 4 * len(column[3])
                                      for column in columns[:index])
    kind, _, param, _ = columns[index]
    assert kind == codec.RATIO
    for bad, message in ((param & ~15 | 9, "no ratio predictor 9"),
                         (param & ~(15 << 4) | 9 << 4, "scale 9 out of range")):
        damaged = bytearray(data)
        damaged[offset + 2:offset + 4] = bad.to_bytes(2, "little")
        with pytest.raises(ValueError, match=message):
            codec.decode_level(reseal(bytes(damaged)))


@st.composite
def quantised_levels(draw) -> pa.Table:
    """Level rows of jittered, quantised points (so ratios are chosen), then damaged in the
    columns the ratios read or write."""
    n = draw(st.integers(1, 400))
    rows = level_rows(jittered_sensor(n, draw(st.integers(0, 2**16)),
                                      draw(st.sampled_from([0, 1, 50_000, 400_000]))),
                      draw(st.sampled_from([10 * SECOND, 60 * SECOND])))
    if draw(st.booleans()):
        rows = downsamplers.combine_partials(rows, 600 * SECOND, "numeric", {})
    columns = {name: rows.column(name).to_pylist() for name in rows.column_names}
    for _ in range(draw(st.integers(0, 5))):
        name = draw(st.sampled_from(["s", "q", "tm", "isum", "iq", "tn", "ta", "tz", "c", "ic"]))
        row = draw(st.integers(0, rows.num_rows - 1))
        if name in ("tn", "ta", "tz", "c", "ic"):
            columns[name][row] = draw(st.sampled_from([None, 0, -1, 2**63 - 1, -(2**63)]))
        else:
            columns[name][row] = draw(st.sampled_from([None, *SPECIAL_FLOATS]))
    return pa.table(columns, schema=downsamplers.LEVEL_SCHEMA)


@settings(CODEC_SETTINGS, max_examples=100)
@given(quantised_levels())
def test_ratio_columns_round_trip(table):
    data = codec.encode_level(table)
    assert_bit_exact(codec.decode_level(data), table)


def test_numpy_and_numba_transforms_write_the_same_ratio_chunks(monkeypatch):
    rows = level_rows(jittered_sensor(3000))
    numba = codec.encode_level(rows)
    monkeypatch.setattr(codec, "transforms_for", lambda rows: codec.transforms.NUMPY)
    assert codec.encode_level(rows) == numba
    assert_bit_exact(codec.decode_level(numba), rows)
