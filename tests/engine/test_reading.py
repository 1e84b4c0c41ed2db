"""engine/reading.py: lazy results equal the materialised ones, at raw and level granularities.

The storage here is an in-memory stand-in, so hypothesis can try many stored-row sets, ranges,
slices and indices; the reference is every bucket materialised with ``fill_empty`` and then
finalized (``tests/materialised.py``).
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datastream import Granularity as G
from datastream import downsamplers, values
from datastream.engine import level_grid, reading
from datastream.engine.state import StreamState
from datastream.storage.base import RAW_SCHEMA, StreamRecord
from tests import materialised

SECOND = 1_000_000
BASE = 946_684_800 * SECOND  # 2000-01-01
NUMERIC = [n for n in downsamplers.VALUE_DOWNSAMPLERS if n in
           downsamplers.DOWNSAMPLERS_BY_VALUE_TYPE["numeric"]]


class MemoryStorage:
    """``read_raw`` / ``read_level`` of the storage contract over tables held in memory."""

    def __init__(self, raw: pa.Table, levels: dict[str, pa.Table]) -> None:
        self.raw = raw
        self.levels = levels
        self.level_reads: list[int] = []  # rows returned by each read_level call

    def read_raw(self, stream_id: str, start_us: int | None, end_us: int | None,
                 reverse: bool = False) -> pa.Table:
        t = self.raw.column("t").to_numpy()
        keep = np.ones(t.size, dtype=bool)
        if start_us is not None:
            keep &= t >= start_us
        if end_us is not None:
            keep &= t < end_us
        rows = np.flatnonzero(keep)
        if reverse:
            rows = rows[np.lexsort((rows, -t[rows]))]
        return self.raw.take(pa.array(rows, pa.int64()))

    def read_level(self, level_key: str, stream_id: str, start_us: int | None,
                   end_us: int | None) -> pa.Table | None:
        table = self.levels.get(level_key)
        if table is None:
            return None
        t = table.column("t").to_numpy()
        keep = np.ones(t.size, dtype=bool)
        if start_us is not None:
            keep &= t >= start_us
        if end_us is not None:
            keep &= t < end_us
        rows = table.filter(pa.array(keep))
        self.level_reads.append(rows.num_rows)
        return rows


def _stream(offsets: list[int], nulls: list[bool], level, bucket_bound: int | None,
            written: bool) -> tuple[MemoryStorage, StreamRecord]:
    """A numeric stream with points at BASE + offsets (µs), downsampled at ``level`` up to
    ``bucket_bound`` buckets past the first datapoint's bucket."""
    t = np.sort(np.array(offsets, dtype=np.int64)) + BASE
    encoded = [values.encode_value(None if null else float(i % 7) - 2.5, "numeric", {}, set(), "s")
               for i, null in enumerate(nulls)]
    raw = values.encode_table(t, encoded) if t.size else RAW_SCHEMA.empty_table()
    width = level.width_us
    meta: dict[str, Any] = {
        "highest_granularity": G.Seconds.name,
        "value_type": "numeric",
        "value_type_options": {},
        "value_downsamplers": NUMERIC,
        "earliest_datapoint": int(t[0]) if t.size else None,
        "downsampled_until": {level.key: None},
    }
    levels = {}
    if t.size and bucket_bound is not None:
        bound = level.floor_us(int(t[0])) + bucket_bound * width
        meta["downsampled_until"][level.key] = bound
        closed = raw.filter(pa.array(t < bound))
        rows = downsamplers.partials_from_raw(closed, "numeric", {}, width, True,
                                              with_frequencies=True)
        if written:
            levels[level.key] = rows
    return MemoryStorage(raw, levels), StreamRecord("s", {}, meta)


def _often(draw, chance: int) -> bool:
    """True about ``chance`` times in 8 (sampled_from does not lean to either end)."""
    return draw(st.sampled_from(range(8))) < chance


@st.composite
def ranges(draw, origin: int) -> reading.Range:
    """Query ranges around ``origin`` (in whole seconds, give or take a microsecond); most are
    bounded on one side or both, a few are inverted or empty."""
    low = high = None
    if _often(draw, 5):
        low = origin + draw(st.sampled_from(range(-100, 1400))) * SECOND
        low += draw(st.sampled_from([0, 0, 1, -1, 500_000]))
    if _often(draw, 5):
        high = (origin if low is None else low) + draw(st.sampled_from(range(-60, 1500))) * SECOND
    return reading.Range(low, draw(st.booleans()), high, draw(st.booleans()),
                         empty=_often(draw, 0) or draw(st.sampled_from(range(20))) == 0)


indices = st.integers(-150, 150)
slices = st.builds(slice, st.none() | indices, st.none() | indices,
                   st.none() | st.sampled_from([1, 2, 3, 7, -1, -2, -5]))


@st.composite
def reads(draw):
    """A stream (stored raw points and level rows), a granularity, filters and a query."""
    level = draw(st.sampled_from([G.Seconds10, G.Minutes]))
    size = draw(st.integers(1, 40)) if _often(draw, 7) else 0
    bunched = _often(draw, 2)  # within 20 s, else spread over 20 minutes
    seconds = st.sampled_from(range(20 if bunched else 1200))
    offsets = draw(st.lists(st.builds(lambda s, us: s * SECOND + us, seconds,
                                      st.integers(0, SECOND - 1)),
                            min_size=size, max_size=size))
    nulls = [_often(draw, 1) for _ in range(size)]
    bucket_bound = draw(st.sampled_from(range(131))) if _often(draw, 7) else None
    written = _often(draw, 7)  # else the level was never written: every bucket is empty
    storage, record = _stream(offsets, nulls, level, bucket_bound, written)
    granularity = level if _often(draw, 6) else G.Seconds
    value_names = draw(st.none() | st.sampled_from([["mean", "count"], ["max"], []]))
    time_names = draw(st.none() | st.sampled_from([["first", "intervals_mean"], []]))
    query = draw(ranges(record.meta["earliest_datapoint"] or BASE))
    return storage, record, granularity, value_names, time_names, query


def _reference(storage: MemoryStorage, record: StreamRecord, granularity, query, reverse,
               value_names, time_names) -> list[dict]:
    if granularity >= G.Seconds:
        lo, hi = query.raw_bounds()
        if query.empty or (lo is not None and hi is not None and lo >= hi):
            return []
        table = storage.read_raw("s", lo, hi, reverse)
        return reading._raw_dicts(table, "numeric", {})

    def read(start_us: int, end_us: int) -> pa.Table | None:
        return storage.read_level(granularity.key, "s", start_us, end_us)

    return materialised.level_points(read, record.meta, granularity, query, reverse,
                                     value_names, time_names)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reads(), st.booleans(), st.sampled_from([2, 3, 8, 1000]),
       st.integers(1, 5) | st.just(1000), st.lists(indices, max_size=6),
       st.lists(slices, min_size=1, max_size=3), slices)
def test_lazy_result_equals_materialised(read, reverse, batch, page, positions, cuts,
                                         inner) -> None:
    storage, record, granularity, value_names, time_names, query = read
    expected = _reference(storage, record, granularity, query, reverse, value_names,
                          time_names)
    with mock.patch.object(level_grid, "MIN_PAGE", page):  # small pages: many windows
        state = StreamState.from_record(record)
        data = reading.datapoints(storage, state, granularity, query, reverse, value_names,
                                  time_names).batch_size(batch)
    assert len(data) == len(expected)
    assert data.count() == len(expected)
    assert bool(data) == bool(expected)
    for position in positions:
        if -len(expected) <= position < len(expected):
            assert data[position] == expected[position]
        else:
            with pytest.raises(IndexError):
                data[position]
    for cut in [*cuts, slice(None, None, 7), slice(-2, None, -3)]:  # strides read sparsely
        part = data[cut]
        assert len(part) == len(expected[cut])
        assert list(part) == expected[cut]
        assert list(part[inner]) == expected[cut][inner]
        if expected[cut]:
            assert part[-1] == expected[cut][-1]
    assert list(data) == expected


@settings(max_examples=60, deadline=None)
@given(reads(), st.booleans(), slices)
def test_export_equals_materialised(read, reverse, cut) -> None:
    storage, record, granularity, value_names, time_names, query = read
    state = StreamState.from_record(record)
    data = reading.datapoints(storage, state, granularity, query, reverse, value_names,
                              time_names)
    if granularity >= G.Seconds:
        lo, hi = query.raw_bounds()
        table = (RAW_SCHEMA.empty_table()
                 if query.empty or (lo is not None and hi is not None and lo >= hi)
                 else storage.read_raw("s", lo, hi, reverse))

        def export(rows: pa.Table) -> pa.Table:
            return reading.raw_arrow(rows, "numeric", {})
    else:
        table = materialised.level_table(
            lambda a, b: storage.read_level(granularity.key, "s", a, b),
            record.meta, granularity, query, reverse)
        names = NUMERIC if value_names is None else value_names
        times = list(downsamplers.TIME_DOWNSAMPLERS) if time_names is None else time_names

        def export(rows: pa.Table) -> pa.Table:
            return reading.level_arrow(rows, "numeric", {}, names, times, granularity.width_us)
    assert data.to_arrow().equals(export(table))
    # a slice exports its own rows (the raw ``v`` type follows the values it holds)
    positions = range(*cut.indices(table.num_rows))
    wanted = pa.array(np.arange(positions.start, positions.stop, positions.step,
                                dtype=np.int64))
    assert data[cut].to_arrow().equals(export(table.take(wanted)))
