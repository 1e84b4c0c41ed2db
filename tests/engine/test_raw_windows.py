"""Raw results hold one time window of rows at a time (behaviour §6.1), on every backend."""

from __future__ import annotations

import datetime
import gc

import numpy as np
import pyarrow as pa
import pytest

from datastream.engine import raw_windows
from tests.api.helpers import EVER, G

POINTS = 1_000


@pytest.fixture
def small_windows(monkeypatch):
    monkeypatch.setattr(raw_windows, "WINDOW_ROWS", 64)


def _stream(ds) -> str:
    """POINTS raw points: runs of equal times (in append order), a gap, a late chunk."""
    stream_id = ds.ensure_stream({"w": 1}, {}, ["mean"], G.Seconds)
    seconds = np.repeat(np.arange(POINTS // 4), 2)[: POINTS // 2] * 3.0
    values = np.arange(POINTS // 2, dtype=np.float64)
    ds.append_arrays(stream_id, seconds.astype(np.int64) + 1_000_000, values, unit="s")
    later = np.arange(POINTS // 2, dtype=np.int64) + 5_000_000
    ds.append_arrays(stream_id, later, values + 1000, unit="s")
    ds.flush()
    return stream_id


def epoch(seconds: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)


def _rows(datapoints) -> list[tuple]:
    return [(p["t"], p["v"]) for p in datapoints]


@pytest.mark.parametrize("reverse", [False, True])
def test_windows_give_the_rows_of_one_read(ds, small_windows, reverse) -> None:
    stream_id = _stream(ds)
    read = ds.get_data(stream_id, G.Seconds, start=EVER, reverse=reverse)
    whole = read.to_arrow()
    expected = list(zip(whole.column("t").to_pylist(), whole.column("v").to_pylist()))
    assert len(expected) == POINTS
    assert len(read) == POINTS
    assert _rows(read.batch_size(7)) == expected
    for index in (0, 1, 63, 64, 65, 500, POINTS - 1, -1, -64, -POINTS):
        point = read[index]
        assert (point["t"], point["v"]) == expected[index]
    for part in (slice(60, 140), slice(None, None, 7), slice(900, 10), slice(None, None, -3),
                 slice(-200, -50, 5), slice(990, 2000)):
        assert _rows(read[part]) == expected[part], part
        assert read[part].to_arrow().column("v").to_pylist() == [v for _, v in expected[part]]
    assert _rows(read[100:900][::-5][10:20]) == expected[100:900][::-5][10:20]
    plan = read._source._plan
    # the plan cut the range into windows, of which one is held
    assert len(plan.windows) > POINTS // 64
    assert np.all(np.diff(plan.starts) <= 64)
    assert plan._kept is not None and plan._kept[1].num_rows <= 64


def test_bounded_ranges_and_equal_times(ds, small_windows) -> None:
    stream_id = ds.ensure_stream({"w": 2}, {}, ["mean"], G.Seconds)
    same = np.full(300, 2_000_000, np.int64)  # one microsecond wide: never cut
    ds.append_arrays(stream_id, same, np.arange(300.0), unit="s")
    ds.append_arrays(stream_id, np.arange(100, dtype=np.int64) + 2_000_001,
                     np.arange(100.0) + 300, unit="s")
    ds.flush()
    read = ds.get_data(stream_id, G.Seconds, start=epoch(1), end_exclusive=epoch(10**9))
    assert [p["v"] for p in read] == [float(v) for v in range(400)]
    assert read[299]["v"] == 299.0 and read[300]["v"] == 300.0
    part = ds.get_data(stream_id, G.Seconds, start_exclusive=epoch(2_000_000),
                       end=epoch(2_000_050))
    assert [p["v"] for p in part] == [float(v) for v in range(300, 350)]
    assert [p["v"] for p in part[::-1]][:3] == [349.0, 348.0, 347.0]


def test_a_small_read_is_one_read_kept(ds, monkeypatch) -> None:
    stream_id = _stream(ds)
    read = ds.get_data(stream_id, G.Seconds, start=EVER)
    storage = type(ds.backend)
    reads = []
    original = storage.read_raw
    monkeypatch.setattr(storage, "read_raw",
                        lambda self, *args, **kwargs: reads.append(args) or original(
                            self, *args, **kwargs))
    assert len(read) == POINTS
    plan = read._source._plan
    assert plan.windows == [(None, None)]
    assert read[5]["v"] == read.to_arrow().column("v")[5].as_py()
    assert [p["v"] for p in read][:3] == read.to_arrow().column("v").to_pylist()[:3]
    assert len(reads) <= 1  # iteration, indexing and exports share the one read


def test_iterating_a_large_read_holds_one_window(ds, small_windows) -> None:
    """What a result keeps while it is iterated does not grow with the range."""
    stream_id = _stream(ds)
    read = ds.get_data(stream_id, G.Seconds, start=EVER)
    held = []
    for position, _ in enumerate(read.batch_size(10)):
        if position % 50 == 0:
            gc.collect()
            kept = read._source._plan._kept
            held.append(0 if kept is None else kept[1].num_rows)
    assert max(held) <= 64
    assert isinstance(read.to_arrow(), pa.Table) and read.to_arrow().num_rows == POINTS


@pytest.fixture
def small_pages(monkeypatch):
    """InfluxDB plans a large read over pages of its points: make them small too."""
    from datastream.storage.influxdb import storage as influx_storage

    monkeypatch.setattr(influx_storage, "RAW_PAGE_POINTS", 50)


@pytest.mark.parametrize("reverse", [False, True])
def test_a_read_planned_by_a_fresh_object(ds, reopen, small_windows, small_pages,
                                          reverse) -> None:
    """Nothing kept in memory by the writer: the plan comes from the store alone (counts, or
    pages of InfluxDB's points, including a microsecond of more points than a page)."""
    stream_id = _stream(ds)
    crowded = ds.ensure_stream({"w": 3}, {}, ["mean"], G.Seconds)
    ds.append_arrays(crowded, np.full(130, 7_000_000, np.int64), np.arange(130.0), unit="s")
    ds.append_arrays(crowded, np.arange(70, dtype=np.int64) + 7_000_001,
                     np.arange(70.0) + 130, unit="s")
    expected = {sid: ds.get_data(sid, G.Seconds, start=EVER, reverse=reverse).to_arrow()
                for sid in (stream_id, crowded)}
    fresh = reopen(ds)
    try:
        for sid, whole in expected.items():
            read = fresh.get_data(sid, G.Seconds, start=EVER, reverse=reverse)
            assert len(read) == whole.num_rows
            assert _rows(read.batch_size(9)) == list(zip(whole.column("t").to_pylist(),
                                                         whole.column("v").to_pylist()))
            assert read[-1]["v"] == whole.column("v")[-1].as_py()
            plan = read._source._plan
            assert len(plan.windows) > 1
            sizes = np.diff(plan.starts)
            assert np.all((sizes <= 64) | (sizes == 130))  # 130 points share one microsecond
            assert plan._kept is not None and plan._kept[1].num_rows <= 130
        part = fresh.get_data(crowded, G.Seconds, start=epoch(7_000_000), end=epoch(7_000_010),
                              reverse=reverse)
        assert len(part) == 140
    finally:
        fresh.close()
