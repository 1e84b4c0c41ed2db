"""The shared chunk codec: bit-exact round trips, header checks, damage always detected."""

from __future__ import annotations

import contextlib
import struct
import sys
import zlib
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from datastream import downsamplers
from datastream.kernels import transforms
from datastream.storage import codec
from datastream.storage.base import RAW_SCHEMA
from tests.kernels.strategies import WIDTHS, points

INT64 = st.integers(-(2**63), 2**63 - 1)
SECOND = 1_000_000
SPECIAL_FLOATS = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
                  -1.7976931348623157e308, np.inf, -np.inf, np.nan, 1e-300, 0.1, 123456.789]
NAN_PAYLOADS = [0x7FF8000000000001, 0xFFF8000000000000, 0x7FF0000000000001, 0xFFFFFFFFFFFFFFFF]
settings.register_profile("codec", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CODEC_SETTINGS = settings(settings.get_profile("codec"), max_examples=100)


# == strategies =================================================================================


@st.composite
def masks(draw, n: int) -> np.ndarray:
    """Validity: all valid, all null, or nulls anywhere."""
    style = draw(st.sampled_from(["valid", "null", "some"]))
    if style == "valid" or n == 0:
        return np.ones(n, bool)
    if style == "null":
        return np.zeros(n, bool)
    return np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), bool)


@st.composite
def int_columns(draw, n: int, sorted_: bool = False) -> np.ndarray:
    style = draw(st.sampled_from(["any", "small", "step", "constant", "extreme"]))
    if style == "any":
        x = np.array(draw(st.lists(INT64, min_size=n, max_size=n)), np.int64)
    elif style == "small":
        x = np.array(draw(st.lists(st.integers(-300, 300), min_size=n, max_size=n)), np.int64)
    elif style == "step":
        start, step = draw(st.integers(-(2**60), 2**60)), draw(st.integers(0, 10**9))
        x = start + step * np.arange(n, dtype=np.int64)
    elif style == "constant":
        x = np.full(n, draw(INT64), np.int64)
    else:
        x = np.array(draw(st.lists(st.sampled_from([-(2**63), 2**63 - 1, 0, -1, 1]),
                                   min_size=n, max_size=n)), np.int64)
    return np.sort(x) if sorted_ else x


@st.composite
def float_columns(draw, n: int) -> np.ndarray:
    style = draw(st.sampled_from(["any", "bits", "decimal", "constant", "special"]))
    if style == "any":
        x = np.array(draw(st.lists(st.floats(width=64), min_size=n, max_size=n)), np.float64)
    elif style == "bits":  # every bit pattern: NaN payloads, subnormals, -0.0
        x = np.array(draw(st.lists(INT64, min_size=n, max_size=n)), np.int64).view(np.float64)
    elif style == "decimal":  # sensor values: integers over 10**k, with specials mixed in
        k = draw(st.integers(0, 7))
        digits = draw(st.lists(st.integers(-(10**9), 10**9), min_size=n, max_size=n))
        x = np.array(digits, np.float64) / 10.0**k
        for i in draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=3)) if n else []:
            x[i] = draw(st.sampled_from(SPECIAL_FLOATS))
    elif style == "constant":
        x = np.full(n, draw(st.sampled_from(SPECIAL_FLOATS) | st.floats(width=64)))
    else:
        choices = st.sampled_from(SPECIAL_FLOATS) | st.sampled_from(NAN_PAYLOADS).map(
            lambda b: np.array([b], np.uint64).view(np.float64)[0])
        x = np.array(draw(st.lists(choices, min_size=n, max_size=n)), np.float64)
    return x


@st.composite
def text_columns(draw, n: int) -> list[str]:
    style = draw(st.sampled_from(["any", "few", "big", "empty"]))
    if style == "any":
        return draw(st.lists(st.text(), min_size=n, max_size=n))
    if style == "few":  # nominal values: a small vocabulary (dictionary path)
        vocabulary = draw(st.lists(st.text(max_size=20), min_size=1, max_size=4))
        return draw(st.lists(st.sampled_from(vocabulary), min_size=n, max_size=n))
    if style == "big":
        big = draw(st.text(min_size=1, max_size=30)) * draw(st.integers(1, 5000))
        return draw(st.lists(st.just(big) | st.text(max_size=5), min_size=n, max_size=n))
    return [""] * n


def column(values, valid: np.ndarray, type_: pa.DataType) -> pa.Array:
    if type_ == pa.string():
        return pa.array([v if ok else None for v, ok in zip(values, valid)], type_)
    return pa.array(np.asarray(values), type_, mask=~valid)


@st.composite
def raw_tables(draw, max_rows: int = 80) -> pa.Table:
    n = draw(st.integers(0, max_rows))
    t = draw(int_columns(n, sorted_=True))
    if draw(st.booleans()):  # realistic: seconds apart, duplicates, pre-1970 starts
        gaps = draw(st.lists(st.sampled_from([0, 1, SECOND, 10 * SECOND]), min_size=n,
                             max_size=n))
        t = draw(st.integers(-(2**55), 2**55)) + np.cumsum(np.array(gaps, np.int64))
    kinds = np.array(draw(st.lists(st.integers(-128, 127) | st.integers(0, 5), min_size=n,
                                   max_size=n)), np.int8)
    arrays = [
        column(t, np.ones(n, bool) if draw(st.booleans()) else draw(masks(n)), pa.int64()),
        column(kinds, draw(masks(n)), pa.int8()),
        column(draw(int_columns(n)), draw(masks(n)), pa.int64()),
        column(draw(float_columns(n)), draw(masks(n)), pa.float64()),
        column(draw(text_columns(n)), draw(masks(n)), pa.string()),
    ]
    return pa.Table.from_arrays(arrays, schema=RAW_SCHEMA)


@st.composite
def level_tables(draw, max_rows: int = 40) -> pa.Table:
    n = draw(st.integers(0, max_rows))
    arrays = []
    for field in downsamplers.LEVEL_SCHEMA:
        valid = draw(masks(n))
        if field.name == "t":
            arrays.append(column(draw(int_columns(n, sorted_=True)), valid, field.type))
        elif field.type == pa.int64():
            arrays.append(column(draw(int_columns(n)), valid, field.type))
        elif field.type == pa.float64():
            arrays.append(column(draw(float_columns(n)), valid, field.type))
        else:
            arrays.append(column(draw(text_columns(n)), valid, field.type))
    return pa.Table.from_arrays(arrays, schema=downsamplers.LEVEL_SCHEMA)


# == helpers ====================================================================================


def assert_bit_exact(got: pa.Table, expected: pa.Table) -> None:
    """Same schema, nulls, strings, ints, and float bit patterns (NaN payloads, -0.0)."""
    assert got.schema == expected.schema
    assert got.num_rows == expected.num_rows
    for name in expected.column_names:
        g = got.column(name).combine_chunks()
        e = expected.column(name).combine_chunks()
        valid = np.asarray(e.is_valid())
        assert np.array_equal(np.asarray(g.is_valid()), valid), name
        if pa.types.is_floating(e.type):
            assert np.array_equal(_bits(g)[valid], _bits(e)[valid]), name
        else:
            assert g.to_pylist() == e.to_pylist(), name


def _bits(array: pa.Array) -> np.ndarray:
    data = np.frombuffer(array.buffers()[1], np.int64)
    return data[array.offset:array.offset + len(array)]


def reseal(data: bytes) -> bytes:
    """``data`` with both checksums recomputed: forged damage the CRCs cannot see."""
    data = bytearray(data)
    size = codec._HEADER.size
    struct.pack_into("<I", data, size - 4, zlib.crc32(bytes(data[codec._HEADER_SIZE:])))
    struct.pack_into("<I", data, size, zlib.crc32(bytes(data[:size])))
    return bytes(data)


def sensor_table(n: int, seed: int = 0, step_us: int = SECOND) -> pa.Table:
    rng = np.random.default_rng(seed)
    t = 1_577_836_800 * SECOND + np.arange(n, dtype=np.int64) * step_us
    x = np.round(20 + 5 * np.sin(np.arange(n) / 3600) + rng.normal(0, 0.1, n), 2)
    return pa.Table.from_arrays(
        [pa.array(t), pa.array(np.full(n, 2, np.int8)), pa.nulls(n, pa.int64()), pa.array(x),
         pa.nulls(n, pa.string())], schema=RAW_SCHEMA)


# == round trips ================================================================================


def test_layouts_are_the_live_schemas():
    assert codec.LAYOUTS[codec.RAW] == RAW_SCHEMA
    assert codec.LAYOUTS[codec.LEVEL] == downsamplers.LEVEL_SCHEMA


@CODEC_SETTINGS
@given(raw_tables())
def test_raw_round_trip_is_bit_exact(table):
    data = codec.encode_raw(table)
    assert_bit_exact(codec.decode_raw(data), table)
    rows, t0, t1 = codec.chunk_stats(data)
    assert rows == table.num_rows
    valid_t = table.column("t").drop_null().to_pylist()
    assert (t0, t1) == ((min(valid_t), max(valid_t)) if valid_t else (None, None))


@CODEC_SETTINGS
@given(level_tables())
def test_level_round_trip_is_bit_exact(table):
    assert_bit_exact(codec.decode_level(codec.encode_level(table)), table)


@st.composite
def cascaded_levels(draw) -> pa.Table:
    """Real level rows (so the predicted columns are predictable), then damaged: nulls, zero
    or extreme counts, special floats, in any column a prediction reads or writes."""
    t, x, valid = draw(points(max_size=120))
    raw = pa.Table.from_arrays(
        [pa.array(t), pa.array(np.where(valid, 2, 0).astype(np.int8)), pa.nulls(len(t), pa.int64()),
         pa.array(x, mask=~valid), pa.nulls(len(t), pa.string())], schema=RAW_SCHEMA)
    rows = downsamplers.partials_from_raw(raw, "numeric", {}, draw(st.sampled_from(WIDTHS)), True)
    if draw(st.booleans()):
        rows = downsamplers.combine_partials(rows, 86_400 * SECOND, "numeric", {})
    if draw(st.booleans()):  # the columns a stream with only some downsamplers keeps
        names = draw(st.lists(st.sampled_from(sorted(downsamplers.VALUE_DECLARATIONS)),
                              max_size=4))
        rows = downsamplers.without_unkept_state(
            rows, downsamplers.kept_value_state("numeric", {}, names))
    columns = {name: rows.column(name).to_pylist() for name in rows.column_names}
    n = rows.num_rows
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.sampled_from(["c", "s", "q", "l", "mu", "m2", "ic", "isum", "iq", "im2"]))
        row = draw(st.integers(0, n - 1))
        if name in ("c", "ic"):
            columns[name][row] = draw(st.sampled_from([None, 0, -1, 2**63 - 1, -(2**63)]))
        else:
            columns[name][row] = draw(st.sampled_from([None, *SPECIAL_FLOATS]))
    if draw(st.booleans()):
        columns[draw(st.sampled_from(["c", "s", "l", "m2", "q"]))] = [None] * n
    return pa.table(columns, schema=downsamplers.LEVEL_SCHEMA)


@CODEC_SETTINGS
@given(cascaded_levels())
def test_predicted_level_columns_round_trip(table):
    data = codec.encode_level(table)
    assert_bit_exact(codec.decode_level(data), table)
    predicted = {name for name, kind, _ in codec.describe(data) if kind == "predicted"}
    assert not {"q", "m2"} <= predicted and not {"iq", "im2"} <= predicted


@st.composite
def bounds(draw, table: pa.Table) -> tuple[int | None, int | None]:
    """A read's [start, end) around the table's times: at, between or beyond them, or open."""
    t = [v for v in table.column("t").to_pylist() if v is not None]
    candidates = st.sampled_from([*t, *(v + 1 for v in t), *(v - 1 for v in t)]) if t \
        else st.integers(-10, 10)
    side = st.none() | candidates | st.integers(-(2**62), 2**62)
    return draw(side), draw(side)


@CODEC_SETTINGS
@given(st.data(), level_tables() | cascaded_levels())
def test_bounded_level_decode_is_the_slice_of_the_whole(data, table):
    """A bounded decode computes predictions for the kept rows only: it gives exactly the rows
    the whole chunk gives in that range (every row when ``t`` has nulls: no window then)."""
    chunk = codec.encode_level(table)
    start, end = data.draw(bounds(table))
    got = codec.decode_level(chunk, start, end)
    whole = codec.decode_level(chunk)
    if table.column("t").null_count or (start is None and end is None):
        assert_bit_exact(got, whole)
        return
    t = np.asarray(whole.column("t").to_numpy(), np.int64)
    low = 0 if start is None else int(np.searchsorted(t, start))
    high = len(t) if end is None else int(np.searchsorted(t, end))
    assert_bit_exact(got, whole.slice(low, max(0, high - low)))


def test_bounded_decode_of_sensor_levels_keeps_the_predicted_columns():
    rows = downsamplers.partials_from_raw(sensor_table(5000), "numeric", {}, 10 * SECOND, False)
    chunk = codec.encode_level(rows)
    assert {kind for _, kind, _ in codec.describe(chunk)} >= {"predicted", "ratio"}
    t = rows.column("t").to_pylist()
    for low, high in [(0, len(t)), (10, 20), (0, 1), (len(t) - 1, len(t)), (7, 7)]:
        end = t[high] if high < len(t) else None
        assert_bit_exact(codec.decode_level(chunk, t[low], end), rows.slice(low, high - low))


def test_a_cycle_of_predictions_is_refused(monkeypatch):
    """q from M2 and M2 from q cannot both be decoded: a writer doing so gets a ValueError
    from the reader, not a wrong table."""
    rows = downsamplers.partials_from_raw(sensor_table(100), "numeric", {}, 10 * SECOND, False)
    choose = codec._choose_predictions

    def cyclic(sampled, costs, scales, implementation):
        chosen = choose(sampled, costs, scales, implementation)
        for key in (2, 3):
            chosen[codec.PREDICTORS[key].target] = (codec.PREDICTED, key, 0)
        return chosen

    monkeypatch.setattr(codec, "_choose_predictions", cyclic)
    data = codec.encode_level(rows)
    with pytest.raises(ValueError, match="depend on each other"):
        codec.decode_level(data)


def long_table(seed: int, n: int, style: int) -> pa.Table:
    """Raw rows of ``n`` points whose float column has one of six styles."""
    rng = np.random.default_rng(seed)
    if style == 0:  # sensor values whose precision changes halfway
        x = np.round(rng.normal(20, 1, n), 2)
        x[n // 2:] = np.round(x[n // 2:] + rng.normal(0, 1e-3, n - n // 2), 5)
    elif style == 1:  # random walk, full entropy
        x = np.cumsum(rng.normal(0, 1, n))
    elif style == 2:  # every bit pattern
        x = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64, endpoint=True).view(np.float64)
    elif style == 3:  # sums of rounded values: a few ulps off the decimal grid
        x = np.cumsum(np.round(rng.normal(0, 1, n), 2))
    elif style == 4:  # magnitudes far apart
        x = rng.normal(0, 1, n) * 10.0 ** rng.integers(-300, 300, n)
    else:  # jittered timestamps as floats, then specials
        x = np.arange(n) + rng.normal(0, 1e-3, n)
        x[rng.integers(0, n, 5)] = [np.nan, -0.0, np.inf, 5e-324, -np.inf]
    t = np.sort(rng.integers(-(2**62), 2**62, n))
    jitter = 1_600_000_000 * SECOND + np.arange(n) * SECOND + rng.integers(-5000, 5000, n)
    valid = rng.random(n) > rng.choice([0.0, 0.1, 0.9])
    return pa.Table.from_arrays(
        [pa.array(t if seed % 2 else np.sort(jitter)),
         pa.array(rng.choice(np.array([0, 2, 4], np.int8), n)),
         pa.array(rng.integers(-1000, 1000, n).cumsum(), mask=~valid),
         pa.array(x, mask=~valid), pa.array(rng.choice(["a", "bb", None], n))],
        schema=RAW_SCHEMA)


@settings(settings.get_profile("codec"), max_examples=40)
@given(st.integers(0, 2**32 - 1), st.integers(257, 3000), st.sampled_from(range(6)))
def test_long_columns_round_trip(seed, n, style):
    """Columns longer than the estimation sample, where start and middle may differ."""
    table = long_table(seed, n, style)
    assert_bit_exact(codec.decode_raw(codec.encode_raw(table)), table)


# == numpy and numba transforms =================================================================


@contextlib.contextmanager
def transforms_of(name: str) -> Iterator[None]:
    """Every chunk through the numba kernels or through their numpy twins, whatever its size."""
    chosen = transforms.NUMBA if name == "numba" else transforms.NUMPY
    saved = codec.transforms_for
    codec.transforms_for = lambda rows: chosen
    try:
        yield
    finally:
        codec.transforms_for = saved


def assert_both_paths_agree(table: pa.Table, encode, decode) -> None:
    """Both paths write the same bytes, and each reads them back bit-exactly."""
    chunks = []
    for name in ("numba", "numpy"):
        with transforms_of(name):
            chunks.append(encode(table))
    assert chunks[0] == chunks[1]
    for name in ("numba", "numpy"):
        with transforms_of(name):
            assert_bit_exact(decode(chunks[0]), table)


def test_small_chunks_take_the_numpy_twins_until_numba_is_loaded(monkeypatch):
    monkeypatch.delitem(sys.modules, "numba", raising=False)
    assert codec.transforms_for(0) is transforms.NUMPY
    assert codec.transforms_for(codec.NUMPY_BELOW - 1) is transforms.NUMPY
    assert codec.transforms_for(codec.NUMPY_BELOW) is transforms.NUMBA
    monkeypatch.setitem(sys.modules, "numba", object())
    assert codec.transforms_for(0) is transforms.NUMBA


@CODEC_SETTINGS
@given(raw_tables())
def test_raw_chunks_are_the_same_through_numpy_and_numba(table):
    assert_both_paths_agree(table, codec.encode_raw, codec.decode_raw)


@CODEC_SETTINGS
@given(level_tables() | cascaded_levels())
def test_level_chunks_are_the_same_through_numpy_and_numba(table):
    assert_both_paths_agree(table, codec.encode_level, codec.decode_level)


@settings(settings.get_profile("codec"), max_examples=30)
@given(st.integers(0, 2**32 - 1), st.integers(257, 3000), st.sampled_from(range(6)))
def test_long_chunks_are_the_same_through_numpy_and_numba(seed, n, style):
    """Past the estimation sample (start and middle blocks)."""
    assert_both_paths_agree(long_table(seed, n, style), codec.encode_raw, codec.decode_raw)


def test_empty_tables():
    for encode, decode, schema in [(codec.encode_raw, codec.decode_raw, RAW_SCHEMA),
                                   (codec.encode_level, codec.decode_level,
                                    downsamplers.LEVEL_SCHEMA)]:
        data = encode(schema.empty_table())
        assert_bit_exact(decode(data), schema.empty_table())
        assert codec.chunk_stats(data) == (0, None, None)


def test_inputs_are_taken_as_arrow_hands_them():
    """Slices (offsets in every buffer), several chunks, record batches, castable types and
    extra columns."""
    table = sensor_table(1000)
    table = table.set_column(4, "s", pa.array([None if i % 3 else str(i) for i in range(1000)]))
    table = table.set_column(3, "f", pa.array(table.column("f").to_numpy(),
                                              mask=np.arange(1000) % 7 == 0))
    sliced = table.slice(13, 500)
    assert_bit_exact(codec.decode_raw(codec.encode_raw(sliced)), sliced)
    chunked = pa.concat_tables([table.slice(0, 3), table.slice(3)])
    assert_bit_exact(codec.decode_raw(codec.encode_raw(chunked)), table)
    batch = table.to_batches()[0]
    assert_bit_exact(codec.decode_raw(codec.encode_raw(batch)), table)
    narrow = table.set_column(0, "t", table.column("t").cast(pa.int64()))
    narrow = narrow.set_column(2, "i", pa.array(np.arange(1000, dtype=np.int32)))
    expected = narrow.set_column(2, "i", pa.array(np.arange(1000, dtype=np.int64)))
    assert_bit_exact(codec.decode_raw(codec.encode_raw(narrow)), expected)
    levels = downsamplers.partials_from_raw(table, "numeric", {}, 10 * SECOND, True)
    with_id = levels.append_column("stream_id", pa.array(["a"] * levels.num_rows))
    assert_bit_exact(codec.decode_level(codec.encode_level(with_id)), levels)


def test_missing_columns_are_refused():
    with pytest.raises(ValueError, match="lack the columns"):
        codec.encode_raw(sensor_table(3).drop_columns(["s"]))


# == codec choices (sizes, not speed) ===========================================================


def test_sensor_values_take_the_exact_decimal_path():
    table = sensor_table(8192)
    data = codec.encode_raw(table)
    columns = {name: (kind, size) for name, kind, size in codec.describe(data)}
    assert columns["t"] == ("int", 16)  # regular stamps: first value and step only
    assert columns["k"] == ("int", 8)  # one kind: its value only
    assert columns["i"] == columns["s"] == ("null", 0)
    assert columns["f"][0] == "decimal"
    f = codec._read_columns(data, codec.RAW)[0][3]  # (codec, flags, param, lengths)
    assert f[2] & 15 == 2 and f[2] >> 7 == 0  # k = 2, no residual
    assert len(data) / table.num_rows < 1.2


def test_level_rows_of_sensor_data_are_small():
    raw = sensor_table(86_400)
    rows = downsamplers.partials_from_raw(raw, "numeric", {}, 10 * SECOND, False)
    total = len(codec.encode_raw(raw))
    for width in [10, 60, 600, 3600, 21600, 86400]:
        if width > 10:
            rows = downsamplers.combine_partials(rows, width * SECOND, "numeric", {})
        data = codec.encode_level(rows)
        assert_bit_exact(codec.decode_level(data), rows)
        total += len(data)
        if width == 10:  # the mean offset follows from sum, count and minimum
            assert dict((name, kind) for name, kind, _ in codec.describe(data))["mu"] == "predicted"
    assert total / raw.num_rows < 3


def test_few_distinct_strings_use_a_dictionary():
    n = 1000
    values = pa.array([('"on"', '"off"', '{"a": [1, 2]}')[i % 3] for i in range(n)])
    table = sensor_table(n).set_column(4, "s", values)
    kinds = {name: kind for name, kind, _ in codec.describe(codec.encode_raw(table))}
    assert kinds["s"] == "text_dict"
    unique = table.set_column(4, "s", pa.array([str(i * 7919) for i in range(n)]))
    assert {name: kind for name, kind, _ in codec.describe(codec.encode_raw(unique))}["s"] == "text"


# == header, versions, damage ===================================================================


def test_chunk_stats_reads_the_header_only():
    table = sensor_table(100)
    data = codec.encode_raw(table)
    t = table.column("t").to_pylist()
    assert codec.chunk_stats(data) == (100, t[0], t[-1])
    damaged = data[:codec._HEADER_SIZE] + bytes(len(data) - codec._HEADER_SIZE)
    assert codec.chunk_stats(damaged) == (100, t[0], t[-1])  # the body is not read ...
    with pytest.raises(ValueError, match="checksum"):
        codec.decode_raw(damaged)  # ... but decoding checks it


def test_header_checks():
    data = codec.encode_raw(sensor_table(10))
    with pytest.raises(ValueError, match="magic"):
        codec.decode_raw(b"XXXX" + data[4:])
    newer = bytearray(data)
    newer[4] = codec.VERSION + 1
    with pytest.raises(ValueError, match=f"version {codec.VERSION + 1} is not supported"):
        codec.decode_raw(reseal(bytes(newer)))
    with pytest.raises(ValueError, match=f"version {codec.VERSION + 1} is not supported"):
        codec.chunk_stats(reseal(bytes(newer)))
    with pytest.raises(ValueError, match="holds raw rows, not level rows"):
        codec.decode_level(data)
    with pytest.raises(ValueError, match="header"):
        codec.decode_raw(data[:20])
    with pytest.raises(TypeError):
        codec.decode_raw("not bytes")


def test_chunks_from_before_a_new_level_column_read_it_as_null():
    table = sensor_table(50)
    levels = downsamplers.partials_from_raw(table, "numeric", {}, 10 * SECOND, False)
    levels = levels.set_column(19, "iq", pa.nulls(levels.num_rows, pa.float64()))  # no predictor
    data = bytearray(codec.encode_level(levels))
    # drop the last column ("im2", stored as a constant decimal) from the chunk
    columns, start = codec._read_columns(bytes(data), codec.LEVEL)
    *_, (im2_codec, im2_flags, im2_param, im2_lengths) = columns
    descriptor_end = start - 4 - 4 * len(im2_lengths)
    older = (data[:descriptor_end] + data[start:len(data) - sum(im2_lengths)])
    older[6] -= 1
    decoded = codec.decode_level(reseal(bytes(older)))
    assert decoded.column("im2").null_count == levels.num_rows
    assert_bit_exact(decoded.drop_columns(["im2"]), levels.drop_columns(["im2"]))


@st.composite
def chunks(draw) -> bytes:
    table = draw(raw_tables(max_rows=30) | level_tables(max_rows=10))
    if table.schema == RAW_SCHEMA:
        return codec.encode_raw(table)
    return codec.encode_level(table)


def decoder(data: bytes):
    return codec.decode_level if data[5] == codec.LEVEL else codec.decode_raw


@CODEC_SETTINGS
@given(chunks(), st.data())
def test_any_damage_is_detected(data, draw):
    position = draw.draw(st.integers(0, len(data) - 1))
    how = draw.draw(st.sampled_from(["flip", "truncate", "append"]))
    if how == "flip":
        damaged = bytearray(data)
        damaged[position] ^= draw.draw(st.integers(1, 255))
        damaged = bytes(damaged)
    elif how == "truncate":
        damaged = data[:position]
    else:
        damaged = data + draw.draw(st.binary(min_size=1, max_size=8))
    with pytest.raises(ValueError):
        decoder(data)(damaged)


@CODEC_SETTINGS
@given(chunks(), st.data())
def test_forged_chunks_raise_value_error_or_decode(data, draw):
    """Damage behind valid checksums (a buggy writer) to the chunk's framing (header fields,
    column table: row count, codecs, params, part lengths): never a crash, a huge allocation
    or another exception. The compressed payloads are left alone: blosc2 itself can crash on a
    crafted payload, and only our CRCs stand between a damaged payload and blosc2 (checked by
    ``test_any_damage_is_detected``)."""
    kind = data[5]
    _, parts_start = codec._read_columns(data, kind)
    damaged = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 4))):
        start = draw.draw(st.sampled_from([codec._HEADER_SIZE - 36, codec._HEADER_SIZE]))
        position = draw.draw(st.integers(start, parts_start - 1))
        damaged[position] = draw.draw(st.integers(0, 255))
    assume(bytes(damaged) != data)
    try:
        decoder(data)(reseal(bytes(damaged)))
    except ValueError:
        pass


def test_a_forged_row_count_is_refused_before_allocating():
    """A row count beyond any chunk's (the codec's MAX_ROWS) is refused from the header: a
    decoder trusting it would allocate (and fill) gigabytes for constant columns."""
    forged = bytearray(codec.encode_raw(sensor_table(10)))
    fields = list(codec._HEADER.unpack_from(forged))
    fields[5] = codec.MAX_ROWS + 1  # magic, version, kind, ncols, flags, rows, ...
    codec._HEADER.pack_into(forged, 0, *fields)
    with pytest.raises(ValueError, match="more than a chunk holds"):
        codec.decode_raw(reseal(bytes(forged)))
    with pytest.raises(ValueError, match="at most"):
        codec.encode_raw(sensor_table(codec.MAX_ROWS + 1))
