"""Raw chunks of a read decoded into shared columns: exactly the rows of decoding each chunk."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datastream import downsamplers
from datastream.storage import codec, raw_columns
from datastream.storage.base import RAW_SCHEMA
from tests.storage.test_codec import (
    assert_bit_exact,
    long_table,
    raw_tables,
    reseal,
    sensor_table,
    transforms_of,
)


def joined(tables: list[pa.Table]) -> pa.Table:
    return pa.concat_tables(tables) if tables else RAW_SCHEMA.empty_table()


def times_follow(tables: list[pa.Table]) -> bool:
    """Every time valid and never decreasing over the joined rows."""
    t = joined(tables).column("t")
    if t.null_count:
        return False
    values = t.to_numpy()
    return bool((values[1:] >= values[:-1]).all())


@settings(settings.get_profile("codec"), max_examples=120)
@given(st.lists(raw_tables(max_rows=40), max_size=5))
def test_chunks_decode_to_the_rows_of_each_chunk(tables):
    """Mixed kinds, nulls at any (not byte-aligned) offset, text, columns null in some chunks
    only, every codec: the shared columns hold each chunk's rows, and the order flag is right."""
    bodies = [codec.encode_raw(table) for table in tables]
    decoded = raw_columns.decode(bodies)
    assert_bit_exact(decoded.table, joined([codec.decode_raw(body) for body in bodies]))
    assert_bit_exact(decoded.table, joined(tables))
    assert decoded.in_time_order == times_follow(tables)


@pytest.mark.parametrize("path", ["numba", "numpy"])
def test_both_transform_paths_decode_alike(path):
    tables = [long_table(seed, n, style)
              for seed, n, style in [(2, 3000, 0), (4, 700, 3), (6, 1200, 5), (8, 400, 4)]]
    bodies = [codec.encode_raw(table) for table in tables]
    with transforms_of(path):
        decoded = raw_columns.decode(bodies)
    assert_bit_exact(decoded.table, joined(tables))


@pytest.mark.parametrize("sizes", [(2000, 300, 2500, 800), (300, 2500, 257, 3000)])
def test_chunks_larger_and_smaller_than_the_ones_before(sizes):
    """The shared buffers grow with the chunks and serve smaller ones after: every column
    style (residuals or not, packed parts of every width) in chunks of changing size."""
    # first a large chunk using one int buffer, a small one using both, a large one again
    tables = [sensor_table(3000), long_table(1, 260, 1), sensor_table(3000, 1)]
    tables += [long_table(seed, n, seed % 6) for seed, n in enumerate(sizes * 3)]
    decoded = raw_columns.decode([codec.encode_raw(table) for table in tables])
    assert_bit_exact(decoded.table, joined(tables))


def test_columns_are_single_arrays_of_the_whole_read():
    tables = [sensor_table(5000, seed) for seed in range(3)]
    decoded = raw_columns.decode([codec.encode_raw(table) for table in tables])
    for name in ("t", "k", "f"):
        assert decoded.table.column(name).num_chunks == 1
    assert decoded.table.column("i").null_count == 15000
    assert decoded.table.column("f").null_count == 0


def test_time_order_across_chunks():
    early, late = sensor_table(100), sensor_table(100, step_us=2 * 10**6)
    shifted = late.set_column(0, "t", pa.array(late.column("t").to_numpy() + 10**9))
    assert raw_columns.decode([codec.encode_raw(early), codec.encode_raw(shifted)]).in_time_order
    assert not raw_columns.decode(
        [codec.encode_raw(shifted), codec.encode_raw(early)]).in_time_order
    backwards = early.take(pa.array(np.arange(99, -1, -1)))
    assert not raw_columns.decode([codec.encode_raw(backwards)]).in_time_order


def test_values_of_a_chunk_with_a_null_column_next_to_one_with_values():
    with_values = sensor_table(13)
    nulls = with_values.set_column(3, "f", pa.nulls(13, pa.float64()))
    decoded = raw_columns.decode([codec.encode_raw(nulls), codec.encode_raw(with_values)])
    f = decoded.table.column("f")
    assert f.null_count == 13
    assert f.to_pylist()[13:] == with_values.column("f").to_pylist()


def test_no_chunks_give_the_empty_schema():
    decoded = raw_columns.decode([])
    assert decoded.table.schema == RAW_SCHEMA
    assert decoded.table.num_rows == 0


def test_damage_is_reported_as_for_one_chunk():
    good = codec.encode_raw(sensor_table(300))
    damaged = bytearray(good)
    damaged[-5] ^= 0xFF
    with pytest.raises(ValueError, match="checksum"):
        raw_columns.decode([good, bytes(damaged)])
    levels = downsamplers.partials_from_raw(sensor_table(30), "numeric", {}, 10**7, False)
    with pytest.raises(ValueError, match="holds level rows"):
        raw_columns.decode([good, codec.encode_level(levels)])


@settings(settings.get_profile("codec"), max_examples=150)
@given(raw_tables(max_rows=30), st.data())
def test_forged_chunks_raise_value_error_or_decode(table, draw):
    """Column entries damaged behind valid checksums (a buggy writer): codecs, params and
    part lengths that do not fit raise ValueError, and the chunk next to it is not written
    over. (The row count is trusted, as by ``codec.decode_raw``; the compressed bytes of the
    parts are blosc2's to check.)"""
    data = codec.encode_raw(table)
    parts_start = codec._read_columns(data, codec.RAW)[1]
    damaged = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 4))):
        position = draw.draw(st.integers(codec._HEADER_SIZE, parts_start - 1))
        damaged[position] = draw.draw(st.integers(0, 255))
    neighbour = sensor_table(20)
    try:
        decoded = raw_columns.decode([reseal(bytes(damaged)), codec.encode_raw(neighbour)])
    except ValueError:
        return
    assert_bit_exact(decoded.table.slice(decoded.table.num_rows - 20), neighbour)
