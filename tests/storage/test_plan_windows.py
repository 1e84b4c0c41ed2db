"""Windows of a large raw read planned from pages of row times (``storage.base.plan_windows``,
used by stores that cannot count rows without reading them)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from datastream.storage.base import plan_windows


def greedy(times: list[int], start, end, max_rows: int) -> list[tuple]:
    """The same rule one microsecond at a time."""
    windows, low, rows = [], start, 0
    stamps, counts = np.unique(np.array(times, np.int64), return_counts=True)
    for stamp, count in zip(stamps.tolist(), counts.tolist(), strict=True):
        if rows and rows + count > max_rows:
            windows.append((low, stamp, rows))
            low, rows = stamp, 0
        if not rows and count > max_rows:
            windows.append((low, stamp + 1, count))
            low = stamp + 1
            continue
        rows += count
    if rows or not windows:
        windows.append((low, end, rows))
    else:
        windows[-1] = (windows[-1][0], end, windows[-1][2])
    return windows


def paged(times: list[int], cuts: list[int]) -> list[np.ndarray]:
    """``times`` sorted, split into pages at microsecond boundaries after the given stamps."""
    ordered = np.sort(np.array(times, np.int64))
    edges = sorted({int(np.searchsorted(ordered, cut, side="left")) for cut in cuts})
    return np.split(ordered, edges)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=120), st.lists(st.integers(0, 41), max_size=6),
       st.integers(1, 12), st.sampled_from([None, -5]), st.sampled_from([None, 50]))
def test_windows_follow_the_greedy_rule_whatever_the_paging(times, cuts, max_rows, start,
                                                            end) -> None:
    windows = plan_windows(paged(times, cuts), start, end, max_rows)
    assert windows == greedy(times, start, end, max_rows)
    # the windows tile [start, end) and hold every row, each within max_rows unless one µs wide
    assert windows[0][0] == start and windows[-1][1] == end
    assert all(a[1] == b[0] for a, b in zip(windows, windows[1:]))
    assert sum(rows for _, _, rows in windows) == len(times)
    ordered = np.sort(np.array(times, np.int64))
    for low, high, rows in windows:
        inside = ordered[(ordered >= (-10**9 if low is None else low))
                         & (ordered < (10**9 if high is None else high))]
        assert len(inside) == rows
        assert rows <= max_rows or len(np.unique(inside)) == 1


def test_examples() -> None:
    pages = [np.array([1, 1, 2, 3]), np.array([5, 5, 5, 5, 5]), np.array([6, 7])]
    assert plan_windows(pages, None, None, 3) == [
        (None, 3, 3), (3, 5, 1), (5, 6, 5), (6, None, 2)]
    assert plan_windows([], 10, 20, 3) == [(10, 20, 0)]
    assert plan_windows([np.array([], np.int64)], None, 20, 3) == [(None, 20, 0)]
    assert plan_windows([np.array([4, 4, 4])], 0, 9, 3) == [(0, 9, 3)]
    assert plan_windows([np.array([4, 4, 4, 4])], 0, 9, 3) == [(0, 9, 4)]
    assert plan_windows([np.array([1]), np.array([4, 4, 4, 4])], 0, 9, 3) == [
        (0, 4, 1), (4, 9, 4)]
