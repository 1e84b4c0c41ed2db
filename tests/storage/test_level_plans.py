"""Level chunks reuse the column choices of earlier chunks of their stream and level: exact
whatever the remembered choices, rated afresh when the data no longer fits them."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datastream import downsamplers
from datastream.backends import duckdb as duckdb_backend
from datastream.storage import codec, level_plans
from datastream.storage.base import RAW_SCHEMA, WriteBatch
from datastream.storage.level_plans import LevelPlans
from tests.storage.rows import add_stream
from tests.storage.test_codec import (
    CODEC_SETTINGS,
    SECOND,
    assert_bit_exact,
    column,
    float_columns,
    int_columns,
    text_columns,
)

START = 1_577_836_800 * SECOND
SIGNATURE = (True, False)
PLAN = ((codec.INT, 2, 0), None)  # a chunk whose first column holds values, the second none


def ten_second_rows(values: np.ndarray, seed: int = 0) -> pa.Table:
    """The 10 s level rows of ~1 Hz points (jittered ±50 ms) with these values."""
    n = len(values)
    rng = np.random.default_rng(seed)
    t = START + np.arange(n, dtype=np.int64) * SECOND + rng.integers(-50_000, 50_000, n)
    raw = pa.Table.from_arrays(
        [pa.array(t), pa.array(np.full(n, 2, np.int8)), pa.nulls(n, pa.int64()),
         pa.array(values), pa.nulls(n, pa.string())], schema=RAW_SCHEMA)
    return downsamplers.partials_from_raw(raw, "numeric", {}, 10 * SECOND, False)


def sensor(n: int, seed: int = 0, decimals: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(20 + 5 * np.sin(np.arange(n) / 3600) + rng.normal(0, 0.1, n), decimals)


def chunks(rows: pa.Table, size: int) -> list[pa.Table]:
    return [rows.slice(start, size) for start in range(0, rows.num_rows, size)]


def codecs(data: bytes) -> dict[str, str]:
    return {name: kind for name, kind, _ in codec.describe(data)}


# == the policy =================================================================================


def test_a_plan_serves_chunks_like_the_one_it_was_rated_on():
    plans = LevelPlans()
    assert plans.recall("a", SIGNATURE, 256) is None
    plans.remember("a", PLAN, SIGNATURE, 256, [100, 0], 1000)
    assert plans.recall("a", SIGNATURE, 256) == PLAN
    assert plans.recall("a", SIGNATURE, 10) == PLAN  # a small flush
    assert plans.holds("a", [105, 0], 1000)
    assert (plans.rated, plans.reused, len(plans)) == (1, 1, 1)
    assert plans.recall("b", SIGNATURE, 256) is None  # keys are apart


def test_a_plan_is_not_recalled_for_other_columns_a_larger_sample_or_past_its_quota():
    plans = LevelPlans()
    plans.remember("a", PLAN, SIGNATURE, 20, [0, 0], 20)
    assert plans.recall("a", (True, True), 20) is None
    assert plans.recall("a", SIGNATURE, 40) is None  # rated on half as many rows
    assert plans.recall("a", SIGNATURE, 39) is not None
    for _ in range(level_plans.RERATE_EVERY - 1):
        assert plans.recall("a", SIGNATURE, 20) is not None
    assert plans.recall("a", SIGNATURE, 20) is None
    plans.remember("a", PLAN, SIGNATURE, 20, [0, 0], 20)  # rated again: a new quota
    assert plans.recall("a", SIGNATURE, 20) is not None


def test_a_column_grown_past_its_margin_makes_the_plan_stale():
    plans = LevelPlans()
    plans.remember("a", PLAN, SIGNATURE, 256, [10_000, 0], 10_000)  # 1 byte a row
    limit = 10_000 * (1 + level_plans.MARGIN) + level_plans.SLACK
    assert plans.holds("a", [int(limit), 0], 10_000)
    assert not plans.holds("a", [int(limit) + 1, 0], 10_000)
    assert not plans.holds("a", [0, level_plans.SLACK + 1], 10_000)  # was nothing
    assert plans.holds("a", [level_plans.SLACK, 0], 5)  # a small chunk's fixed bytes


def test_equal_plans_are_kept_once():
    """Streams of the same kind of data get the same choices: one object for all of them."""
    plans = LevelPlans()
    for key in "ab":
        plans.remember(key, tuple([(codec.DECIMAL, 2, 0), None]), tuple([True, False]), 10,
                       [0, 0], 10)
    assert plans.recall("a", SIGNATURE, 10) is plans.recall("b", SIGNATURE, 10)


def test_least_recently_used_plans_are_dropped():
    plans = LevelPlans(capacity=2)
    for key in "abc":
        plans.remember(key, PLAN, SIGNATURE, 10, [0, 0], 10)
        plans.recall("a", SIGNATURE, 10)  # "a" stays in use
    assert len(plans) == 2
    assert plans.recall("a", SIGNATURE, 10) is not None
    assert plans.recall("b", SIGNATURE, 10) is None
    assert plans.recall("c", SIGNATURE, 10) is not None
    with pytest.raises(ValueError, match="capacity"):
        LevelPlans(capacity=0)


# == chunks encoded with plans ==================================================================


def test_later_chunks_of_a_stream_reuse_its_plan():
    rows = ten_second_rows(sensor(80_000))
    plans = LevelPlans()
    pieces = chunks(rows, 1024)
    planned = [codec.encode_level(piece, plans, "sensor") for piece in pieces]
    assert plans.rated == 1 and plans.reused == len(pieces) - 1
    for piece, data in zip(pieces, planned):
        assert_bit_exact(codec.decode_level(data), piece)
    fresh = sum(len(codec.encode_level(piece)) for piece in pieces)
    assert sum(map(len, planned)) <= 1.01 * fresh


@pytest.mark.parametrize("changed", ["full entropy", "more decimals"])
def test_data_changing_character_is_rated_again(changed):
    """Values quantised to 0.01, then a random walk (or five decimals): the remembered
    choices (decimal at k = 2) would store far more bytes, so the chunk is rated afresh and
    written as an encoder without plans writes it."""
    before = ten_second_rows(sensor(20_000))
    if changed == "full entropy":
        values = np.cumsum(np.random.default_rng(1).normal(0, 1, 20_000))
    else:
        values = sensor(20_000, seed=1, decimals=5)
    after = ten_second_rows(values, seed=1)
    plans = LevelPlans()
    first = codec.encode_level(before, plans, "stream")
    second = codec.encode_level(after, plans, "stream")
    assert plans.rated == 2 and plans.reused == 0
    assert second == codec.encode_level(after)
    assert codecs(first)["l"] == "decimal"
    assert_bit_exact(codec.decode_level(second), after)
    third = codec.encode_level(ten_second_rows(values, seed=2), plans, "stream")
    assert plans.reused == 1  # the fresh choices serve the next chunk like it
    assert_bit_exact(codec.decode_level(third), ten_second_rows(values, seed=2))


def test_a_column_gaining_values_is_rated_again():
    rows = ten_second_rows(sensor(5_000))
    without_q = rows.set_column(rows.schema.get_field_index("q"), "q",
                                pa.nulls(rows.num_rows, pa.float64()))
    plans = LevelPlans()
    codec.encode_level(without_q, plans, "stream")
    data = codec.encode_level(rows, plans, "stream")
    assert plans.rated == 2
    assert codecs(data)["q"] != "null"
    assert_bit_exact(codec.decode_level(data), rows)


@st.composite
def tables_alike(draw, max_rows: int = 40) -> tuple[pa.Table, pa.Table]:
    """Two level tables with values in the same columns (so the first one's plan is recalled
    for the second), whatever their values."""
    first = draw(st.integers(1, max_rows))
    sizes = [first, draw(st.integers(1, 2 * first - 1))]  # a sample the plan may serve
    styles = {field.name: draw(st.sampled_from(["valid", "null", "some"]))
              for field in downsamplers.LEVEL_SCHEMA}
    tables = []
    for n in sizes:
        arrays = []
        for field in downsamplers.LEVEL_SCHEMA:
            valid = np.ones(n, bool) if styles[field.name] == "valid" else np.zeros(n, bool)
            if styles[field.name] == "some":
                valid = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), bool)
                valid[0] = True  # never all null: the same columns hold values
            if field.name == "t":
                values = draw(int_columns(n, sorted_=True))
            elif field.type == pa.int64():
                values = draw(int_columns(n))
            elif field.type == pa.float64():
                values = draw(float_columns(n))
            else:
                values = draw(text_columns(n))
            arrays.append(column(values, valid, field.type))
        tables.append(pa.Table.from_arrays(arrays, schema=downsamplers.LEVEL_SCHEMA))
    return tables[0], tables[1]


@settings(CODEC_SETTINGS, max_examples=50)  # each example encodes two 21-column tables
@given(tables_alike())
def test_any_remembered_plan_round_trips(tables):
    """Whatever the second table holds, the first one's choices encode it exactly (here kept
    however many bytes they cost)."""
    first, second = tables
    plans = LevelPlans()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(level_plans, "SLACK", float("inf"))
        codec.encode_level(first, plans, "stream")
        data = codec.encode_level(second, plans, "stream")
    assert plans.reused == 1
    assert_bit_exact(codec.decode_level(data), second)


def test_the_embedded_store_reuses_plans_per_stream_and_level():
    """Two streams of different character written in many flushes: each level chunk is
    rated once per stream and level and read back exactly."""
    storage = duckdb_backend.Backend()
    walk = np.cumsum(np.random.default_rng(3).normal(0, 1, 30_000))
    streams = {add_stream(storage, {"n": n}): values
               for n, values in enumerate([sensor(30_000), walk])}
    levels = {sid: ten_second_rows(values).append_column(
        "stream_id", pa.array([sid] * (len(values) // 10))) for sid, values in streams.items()}
    flushes = 5
    for flush in range(flushes):
        batch = {}
        for sid, rows in levels.items():
            size = rows.num_rows // flushes
            batch[sid] = rows.slice(flush * size, size)
        storage.commit(WriteBatch(levels={"S": pa.concat_tables(batch.values())}))
    assert storage._level_plans.rated == len(streams)
    assert storage._level_plans.reused == len(streams) * (flushes - 1)
    for sid, rows in levels.items():
        stored = storage.read_level("S", sid, None, None)
        assert stored.equals(rows.drop_columns(["stream_id"]).select(stored.column_names))
