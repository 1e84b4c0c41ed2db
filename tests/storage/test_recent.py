"""The cache of raw rows committed lately (``datastream.storage.recent``), shared by the
InfluxDB and the embedded backend."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from datastream.storage import recent
from tests.storage.rows import raw_rows


@given(st.lists(st.lists(st.integers(0, 6), min_size=1, max_size=8), min_size=1, max_size=12),
       st.integers(1, 30), st.integers(-1, 60), st.integers(0, 60))
@settings(max_examples=200, deadline=None)
def test_recent_raw_parts_read_like_one_table(steps, limit, start, length):
    """Appended batches kept in parts, trimmed past the limit, read back like the rows they
    hold (a model without parts); ``after`` always bounds what was dropped."""
    cache = recent.RecentRaw(limit)
    kept: list[tuple[int, int]] = []
    version, last, serial = 0, 0, 0
    for gaps in steps:
        times = list(np.cumsum([last, *gaps])[1:])
        last = times[-1]
        ids = list(range(serial, serial + len(times)))
        serial += len(times)
        cache.committed("s", version, 0, None, raw_rows(times, ints=ids), False)
        version += 1
        kept += list(zip(times, ids))
    entry = cache.entries["s"]
    assert entry.rows == cache.rows <= limit
    if entry.after is not None:
        assert all(t > entry.after for t, _ in kept[len(kept) - entry.rows:])
        assert all(t <= entry.after for t, _ in kept[:len(kept) - entry.rows])
    got = cache.read("s", version - 1, 0, start, start + length, False)
    if entry.after is not None and start <= entry.after:
        assert got is None
    else:
        assert list(zip(got.column("t").to_pylist(), got.column("i").to_pylist())) == [
            (t, i) for t, i in kept if start <= t < start + length]


def test_stale_version_or_late_rows_are_not_served():
    """An entry serves reads only at the version it was kept for, and rows committed before
    its end replace it by what lies above the stream's previous tail."""
    cache = recent.RecentRaw(100)
    cache.committed("s", 1, 0, None, raw_rows([10, 20, 30], ints=[1, 2, 3]), False)
    assert cache.read("s", 1, 0, 0, 100, False).column("i").to_pylist() == [1, 2, 3]
    assert cache.read("s", 2, 0, 0, 100, False) is None  # another writer moved the version
    cache.committed("s", 1, 0, None, raw_rows([10, 20, 30], ints=[1, 2, 3]), False)
    cache.committed("s", 2, 0, 30, raw_rows([5, 40], ints=[4, 5]), False)
    assert cache.read("s", 2, 0, 0, 100, False) is None  # late row at 5: not covered
    assert cache.read("s", 2, 0, 31, 100, False).column("i").to_pylist() == [5]
    cache.committed("s", 3, 0, 40, None, True)  # a truncation hides stored rows
    assert cache.read("s", 3, 0, 31, 100, False) is None
