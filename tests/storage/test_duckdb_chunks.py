"""The embedded store keeps datapoints in compressed chunks: dense whatever the flush size,
exact whatever the write order."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datastream.backends import duckdb as duckdb_backend
from datastream.storage.base import WriteBatch
from datastream.storage.duckdb import chunks as chunking
from tests.storage.rows import add_stream, level_rows, new_id, raw_rows


def chunk_rows(storage, level=None) -> list[tuple]:
    clause = "" if level is None else f" AND level = {level}"
    query = f"SELECT level, t0, t1, rows FROM chunks WHERE part = 0{clause} ORDER BY seq"
    return storage._con.sql(query).fetchall()


def test_small_flushes_are_merged_into_full_chunks():
    storage = duckdb_backend.Backend()
    a = add_stream(storage, {"n": 1})
    expected = []
    for flush in range(3 * chunking.MERGE_AFTER):
        times = [flush * 10 + i for i in range(5)]
        expected += times
        storage.commit(WriteBatch(raw={a: raw_rows(times, ints=times)}))
    stored = chunk_rows(storage, chunking.RAW)
    assert len(stored) < chunking.MERGE_AFTER  # not one chunk per flush
    assert sum(rows for *_, rows in stored) == len(expected)
    assert storage.read_raw(a, None, None).column("i").to_pylist() == expected


def test_streams_written_together_are_merged_in_the_same_commit():
    """Many streams flushed together reach their merge in the same commit (one query for all
    their stored chunks); each keeps exactly its own rows, and a stream written less often
    keeps its small chunks until its own run is long enough."""
    storage = duckdb_backend.Backend()
    streams = [add_stream(storage, {"n": n}) for n in range(6)]
    expected: dict[str, list[int]] = {sid: [] for sid in streams}
    for flush in range(3 * chunking.MERGE_AFTER + 3):
        raw = {}
        for number, sid in enumerate(streams):
            if number == 5 and flush % 4:
                continue  # the last stream is flushed every fourth time only
            times = [flush * 10 + i for i in range(number + 1)]
            expected[sid] += times
            raw[sid] = raw_rows(times, ints=[t * 100 + number for t in times])
        storage.commit(WriteBatch(raw=raw))
    keys = storage._con.sql("SELECT stream_key, count(*) FROM chunks WHERE part = 0 AND level ="
                            f" {chunking.RAW} GROUP BY stream_key").fetchall()
    assert len(keys) == len(streams)
    assert all(count < chunking.MERGE_AFTER for _, count in keys)
    for number, sid in enumerate(streams):
        table = storage.read_raw(sid, None, None)
        assert table.column("t").cast("int64").to_pylist() == expected[sid]
        assert table.column("i").to_pylist() == [t * 100 + number for t in expected[sid]]


def test_large_batches_are_cut_into_chunks_of_bounded_size():
    storage = duckdb_backend.Backend()
    a = add_stream(storage, {"n": 1})
    size = chunking.RAW_CHUNK_ROWS
    count = 2 * size + 5
    storage.commit(WriteBatch(raw={a: raw_rows(list(range(count)), ints=list(range(count)))}))
    assert [rows for *_, rows in chunk_rows(storage)] == [size, size, 5]
    assert storage.read_raw(a, 100, size + 6).column("t").to_pylist() == list(range(100, size + 6))


def test_level_rows_over_stored_buckets_are_merged():
    storage = duckdb_backend.Backend()
    a = add_stream(storage, {"n": 1})
    first = pa.table({"stream_id": [a] * 3, "t": [0, 10, 20], "c": [1, 2, 3]})
    storage.commit(WriteBatch(levels={"S": first}))
    second = pa.table({"stream_id": [a] * 2, "t": [10, 30], "c": [20, 40]})
    storage.commit(WriteBatch(levels={"S": second}))
    assert storage.read_level("S", a, None, None).to_pylist() == [
        {"t": 0, "c": 1}, {"t": 10, "c": 20}, {"t": 20, "c": 3}, {"t": 30, "c": 40}]
    spans = [(t0, t1) for _, t0, t1, _ in chunk_rows(storage) if _ != chunking.RAW]
    assert all(b[0] > a_[1] for a_, b in zip(sorted(spans), sorted(spans)[1:]))  # no overlap


DAY_US = 86_400_000_000
TEN_SECONDS_US = 10_000_000


def test_level_chunks_at_10_s_hold_whole_utc_days_so_a_day_reads_one_chunk():
    """One row per 10 s bucket from noon of day 0 to 06:00 of day 4, written at once: the
    chunks are cut at midnights only (a partial first or last day shares a chunk with its
    neighbour, two full days would not fit one), so day 2 is a chunk of its own."""
    storage = duckdb_backend.Backend()
    a = add_stream(storage, {"n": 1})
    day0 = 20_454 * DAY_US  # 2026-01-01
    times = list(range(day0 + DAY_US // 2, day0 + 4 * DAY_US + DAY_US // 4, TEN_SECONDS_US))
    storage.commit(WriteBatch(levels={"S": level_rows(a, times, list(range(len(times))))}))
    spans = [(t0, t1, rows) for _, t0, t1, rows in chunk_rows(storage, level=1)]
    last_bucket = DAY_US - TEN_SECONDS_US
    assert spans == [
        (day0 + DAY_US // 2, day0 + DAY_US + last_bucket, 4320 + 8640),
        (day0 + 2 * DAY_US, day0 + 2 * DAY_US + last_bucket, 8640),
        (day0 + 3 * DAY_US, day0 + 4 * DAY_US + DAY_US // 4 - TEN_SECONDS_US, 8640 + 2160),
    ]
    day2 = day0 + 2 * DAY_US
    (overlapping,) = storage._con.execute(
        "SELECT count(DISTINCT seq) FROM chunks WHERE level = 1 AND t1 >= ? AND t0 < ?",
        [day2, day2 + DAY_US]).fetchone()
    assert overlapping == 1
    read = storage.read_level("S", a, day2, day2 + DAY_US)
    assert read.column("t").to_pylist() == [t for t in times if day2 <= t < day2 + DAY_US]
    assert read.column("c").to_pylist() == [times.index(t) for t in read.column("t").to_pylist()]
    assert storage.read_level("S", a, None, None).column("c").to_pylist() == list(
        range(len(times)))


@st.composite
def _window_runs(draw):
    """Sorted bucket numbers: runs of consecutive buckets in a few aligned windows, so some
    windows hold more rows than a chunk and others share one."""
    size = chunking.WINDOW_BUCKETS
    buckets = []
    for window in sorted(draw(st.sets(st.integers(-3, 3), max_size=5))):
        count = draw(st.integers(0, 30))
        offset = draw(st.integers(0, size - count))
        buckets += range(window * size + offset, window * size + offset + count)
    return buckets


@given(_window_runs(), st.integers(1, 40), st.sampled_from([1, 10_000_000]))
@settings(max_examples=200)
def test_level_pieces_cut_whole_windows_into_bounded_greedy_chunks(buckets, max_rows, width):
    table = pa.table({"t": pa.array([b * width for b in buckets], pa.int64())})
    pieces = chunking.level_pieces(table, width, max_rows)
    assert [t for p in pieces for t in p.column("t").to_pylist()] == table.column(
        "t").to_pylist()
    assert all(1 <= p.num_rows <= max_rows for p in pieces)
    window = [b // chunking.WINDOW_BUCKETS for b in buckets]
    cut = 0
    for before in pieces[:-1]:
        cut += before.num_rows
        if window[cut] == window[cut - 1]:  # inside a window: only one too large for a chunk
            assert before.num_rows == max_rows
            assert len(set(window[cut - max_rows:cut + 1])) == 1
        else:  # at a window's edge: the window starting there did not fit in the chunk
            assert before.num_rows + window.count(window[cut]) > max_rows
    assert [p.num_rows for p in chunking.level_pieces(table, None, max_rows)] == [
        p.num_rows for p in chunking.pieces(table, max_rows)]


writes = st.lists(
    st.tuples(st.lists(st.integers(-50, 50), min_size=1, max_size=40).map(sorted),
              st.booleans()),
    min_size=1, max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(writes=writes, start=st.one_of(st.none(), st.integers(-60, 60)),
       end=st.one_of(st.none(), st.integers(-60, 60)), reverse=st.booleans())
def test_reads_equal_a_list_model_whatever_the_chunking(writes, start, end, reverse):
    storage = duckdb_backend.Backend()
    a = add_stream(storage, {"n": new_id()})
    model: list[tuple[int, int]] = []
    label = 0
    for times, truncate in writes:
        labels = list(range(label, label + len(times)))
        label += len(times)
        cut = times[0] if truncate else None
        if cut is not None:
            model = [p for p in model if p[0] < cut]
        model += list(zip(times, labels))
        storage.commit(WriteBatch(raw={a: raw_rows(times, ints=labels)},
                                  truncate_raw={} if cut is None else {a: cut}))
    expected = [p for p in model if (start is None or p[0] >= start)
                and (end is None or p[0] < end)]
    expected.sort(key=lambda p: -p[0] if reverse else p[0])
    rows = storage.read_raw(a, start, end, reverse=reverse)
    assert list(zip(rows.column("t").to_pylist(), rows.column("i").to_pylist())) == expected
    storage.close()


@given(parts=st.lists(st.lists(st.integers(-5, 5), min_size=1, max_size=6), min_size=1,
                      max_size=5),
       reverse=st.booleans())
def test_joining_chunks_orders_like_sorting_them(parts, reverse):
    """Chunks already in time order are joined as they are, others sorted: same rows."""
    tables, number = [], 0
    for times in parts:
        tables.append(raw_rows(times, ints=list(range(number, number + len(times)))))
        number += len(times)
    joined = chunking.joined_by_time(tables, reverse)
    assert joined.equals(chunking.stable_by_time(pa.concat_tables(tables), reverse))


def test_large_chunks_are_stored_as_inline_pieces_and_read_back_whole(tmp_path):
    """Chunk bodies above PIECE_BYTES are cut into pieces (so DuckDB keeps them inline) and put
    back together on every read path: plain reads, many-stream reads, truncation, merging."""
    from datastream.storage.duckdb.storage import PIECE_BYTES

    storage = duckdb_backend.Backend(str(tmp_path / "pieces.duckdb"))
    a, b = add_stream(storage, {"n": 1}), add_stream(storage, {"n": 2})
    rng = np.random.default_rng(3)
    times = np.arange(40_000, dtype=np.int64) * 1_000_000
    floats = np.cumsum(rng.normal(0, 1, times.size))  # full entropy: large bodies
    rows = raw_rows(times, floats=floats, kinds=[2] * times.size)
    storage.commit(WriteBatch(raw={a: rows, b: rows.slice(0, 100)}))
    parts = storage._con.sql("SELECT max(part), max(octet_length(body)) FROM chunks").fetchall()
    assert parts[0][0] >= 2 and parts[0][1] <= PIECE_BYTES
    assert storage.read_raw(a, None, None).equals(rows)
    many = storage.read_raw_many([a, b], 5_000_000, None)
    assert many[a].equals(rows.slice(5)) and many[b].equals(rows.slice(5, 95))
    storage.commit(WriteBatch(truncate_raw={a: int(times[20_000])}))
    assert storage.read_raw(a, None, None).equals(rows.slice(0, 20_000))
    storage.close()
    reopened = duckdb_backend.Backend(str(tmp_path / "pieces.duckdb"))
    assert reopened.read_raw(a, None, None).equals(rows.slice(0, 20_000))
    reopened.close()


def test_commits_do_not_leave_copies_of_the_stored_chunks_in_the_file(tmp_path):
    """A checkpoint rewrites the blobs DuckDB keeps out of line and the table's last 2048 rows.
    With whole chunks as blobs, each checkpoint copied the store and the file kept the old copy
    as free blocks; pieces stay inline, so the file stays close to the bytes it holds."""
    path = str(tmp_path / "grow.duckdb")
    storage = duckdb_backend.Backend(path)
    a = add_stream(storage, {"n": 1})
    rng = np.random.default_rng(4)
    for part in range(6):  # ~30 MB of full-entropy floats in six commits
        times = (np.arange(800_000, dtype=np.int64) + part * 800_000) * 1_000_000
        rows = raw_rows(times, floats=np.cumsum(rng.normal(0, 1, times.size)),
                        kinds=[2] * times.size)
        storage.commit(WriteBatch(raw={a: rows}))
    held = storage._con.sql("SELECT sum(octet_length(body)) FROM chunks").fetchall()[0][0]
    storage.close()
    assert os.path.getsize(path) <= 1.1 * held + 2**20
    for step in range(3):  # one-point sessions: a checkpoint each
        storage = duckdb_backend.Backend(path)
        storage.commit(WriteBatch(raw={a: raw_rows([10**13 + step], ints=[1])}))
        storage.close()
    assert os.path.getsize(path) <= 1.1 * held + 2048 * 8_000 + 2**20


def _store_with_a_random_walk(path, seed: int):
    """A new store with one stream, and 500 k raw rows of a random walk (~3 MB encoded) not
    yet committed."""
    storage = duckdb_backend.Backend(str(path))
    stream = add_stream(storage, {"n": 1})
    times = np.arange(500_000, dtype=np.int64) * 1_000_000
    walk = np.cumsum(np.random.default_rng(seed).normal(0, 1, times.size))
    return str(path), storage, stream, raw_rows(times, floats=walk, kinds=[2] * times.size)


def test_a_large_commit_is_written_to_the_file_once(tmp_path):
    """A commit of megabytes fills whole row groups, which DuckDB writes straight into the file:
    its write-ahead log holds next to none of the bytes (before, all of them, and the next
    checkpoint wrote them again), and closing has nothing left to write."""
    path, storage, a, rows = _store_with_a_random_walk(tmp_path / "once.duckdb", seed=5)
    storage.commit(WriteBatch(raw={a: rows}))
    held = storage._con.sql("SELECT sum(octet_length(body)) FROM chunks").fetchall()[0][0]
    pieces = storage._con.sql("SELECT count(*) FROM chunks").fetchall()[0][0]
    assert held > 2_000_000 and pieces % 2048 == 0
    assert os.path.getsize(path + ".wal") < held / 10
    storage.close()
    reopened = duckdb_backend.Backend(path)
    assert reopened.read_raw(a, None, None).equals(rows)
    reopened.close()


def test_a_large_commit_that_fails_after_writing_its_row_groups_leaves_nothing(tmp_path,
                                                                              monkeypatch):
    """DuckDB has already written a large commit's full row groups into the file when the
    transaction fails: the rollback must leave neither rows nor a broken file, and the next
    commit and a reopened file see only what was committed."""
    from datastream import exceptions
    from datastream.storage.duckdb.storage import DuckDBStorage

    path, storage, a, rows = _store_with_a_random_walk(tmp_path / "failed.duckdb", seed=6)
    first = rows.slice(0, 1_000)
    storage.commit(WriteBatch(raw={a: first}))

    def fail(*args, **kwargs):
        raise RuntimeError("injected after the chunk pieces were inserted")

    with monkeypatch.context() as patch:
        patch.setattr(DuckDBStorage, "_write_meta", fail)
        with pytest.raises(exceptions.StreamAppendFailed):
            storage.commit(WriteBatch(raw={a: rows.slice(1_000)}))
    assert storage.read_raw(a, None, None).equals(first)
    storage.commit(WriteBatch(raw={a: rows.slice(1_000)}))
    assert storage.read_raw(a, None, None).equals(rows)
    storage.close()
    reopened = duckdb_backend.Backend(path)
    assert reopened.read_raw(a, None, None).equals(rows)
    pieces = reopened._con.sql("SELECT count(*) FROM chunks").fetchall()[0][0]
    assert pieces < 2 * 2048 + 10  # the failed commit's pieces are gone
    reopened.close()


@given(st.lists(st.integers(1, 40_000), min_size=1, max_size=300))
@settings(max_examples=200)
def test_piece_counts_fill_whole_row_groups_of_large_commits(sizes):
    """Every body gets at least one piece and no piece is empty or above PIECE_BYTES; a commit
    large enough is cut into an exact multiple of the row group size, a small one into
    PIECE_BYTES pieces."""
    from datastream.storage.duckdb.connection import ROW_GROUP_ROWS
    from datastream.storage.duckdb.storage import MIN_PIECE_BYTES, PIECE_BYTES, piece_counts

    sizes = np.array(sizes, np.int64)
    sizes = sizes * (1 + 3_000_000 // int(sizes.sum()))  # half the cases: megabytes
    for scaled in (sizes, np.maximum(1, sizes // 1_000)):
        counts = piece_counts(scaled)
        assert (counts >= 1).all() and (counts <= scaled).all()
        assert (-(-scaled // counts) <= PIECE_BYTES).all()
        if scaled.sum() >= ROW_GROUP_ROWS * MIN_PIECE_BYTES and scaled.size * 4 <= counts.sum():
            assert counts.sum() % ROW_GROUP_ROWS == 0
        elif scaled.sum() < ROW_GROUP_ROWS * MIN_PIECE_BYTES:
            assert (counts == np.maximum(1, -(-scaled // PIECE_BYTES))).all()


@given(st.lists(st.binary(min_size=1, max_size=5_000), min_size=1, max_size=8),
       st.integers(1, 700))
def test_pieces_table_cuts_bodies_that_join_back(bodies, repeat):
    """However the pieces are sized, joining a chunk's pieces in part order gives its body."""
    from datastream.storage.duckdb.storage import Chunk, _pieces_table

    chunks = [Chunk(1, 0, 0, 0, seq, 1, body * repeat) for seq, body in enumerate(bodies)]
    table = _pieces_table(chunks)
    seqs, parts = table.column("seq").to_pylist(), table.column("part").to_pylist()
    pieces = table.column("body").to_pylist()
    for chunk in chunks:
        mine = [(part, piece) for seq, part, piece in zip(seqs, parts, pieces) if seq == chunk.seq]
        assert [part for part, _ in mine] == list(range(len(mine)))
        assert all(piece for _, piece in mine)
        assert b"".join(piece for _, piece in mine) == chunk.body


@given(st.lists(st.integers(-3, 3), max_size=40))
def test_newest_first_is_the_stable_descending_sort(times):
    t = np.sort(np.array(times, np.int64))
    expected = sorted(range(len(t)), key=lambda i: -t[i])  # Python's sort is stable
    assert chunking.newest_first(t).tolist() == expected


@given(st.lists(st.binary(max_size=30), min_size=0, max_size=12), st.randoms(),
       st.booleans())
def test_chunk_views_put_pieces_back_together_in_any_order(pieces, rng, shuffled):
    """Rows of (seq, part, piece) as DuckDB may return them, in any order and in several
    batches (a body's pieces may straddle two): the views are the bodies in seq order,
    exactly as joining the pieces gives them."""
    from datastream.storage.duckdb.storage import whole_chunk_views, whole_chunks

    rows, seq = [], 0
    for number, piece in enumerate(pieces):
        part = number % 3
        seq += part == 0
        rows.append((seq, part, piece))
    if shuffled:
        rng.shuffle(rows)
    whole = pa.table({"seq": pa.array([r[0] for r in rows], pa.int64()),
                      "part": pa.array([r[1] for r in rows], pa.int16()),
                      "body": pa.array([r[2] for r in rows], pa.binary())})
    cuts = sorted({0, len(rows), *(rng.randint(0, len(rows)) for _ in range(3))})
    table = pa.concat_tables([whole.slice(low, high - low)
                              for low, high in zip(cuts[:-1], cuts[1:])] or [whole])
    expected = [body for _, body in whole_chunks(list(rows))]
    assert [bytes(view) for view in whole_chunk_views(table)] == expected
