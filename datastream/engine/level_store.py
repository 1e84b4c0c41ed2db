"""Stored rows of one level read, fetched by windows of buckets and kept for reuse.

A level read must not load every stored row of its range just to answer ``d[i]`` or one batch
of an iteration, yet a loop over ``d[i]`` must not hit the backend once per index either. So
rows are read by windows of bucket indices (a page of buckets around a single index, the span of
a batch, or the whole range for an export) and the most recent windows are kept: any request a
kept window covers is answered from memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from .. import arrow_numpy
from ..downsamplers import level_schema
from ..lazy import pa

if TYPE_CHECKING:
    from .level_grid import Grid

Reader = Callable[[int, int], "pa.Table"]  # a string: pyarrow is imported on first use
"""``read(start_us, end_us)``: LEVEL_SCHEMA rows with start_us <= t < end_us."""

KEEP = 2  # windows kept: one being iterated plus one more (an export, or a random access page)


@dataclasses.dataclass
class _Window:
    """Stored rows of the buckets [lo, hi) (bucket indices), sorted by ``t``."""

    lo: int
    hi: int
    t: np.ndarray
    rows: pa.Table

    @classmethod
    def of(cls, lo: int, hi: int, rows: pa.Table) -> _Window:
        t = arrow_numpy.to_numpy(rows.column("t")).astype(np.int64, copy=False)
        if t.size > 1 and np.any(np.diff(t) < 0):
            order = np.argsort(t, kind="stable")
            rows, t = rows.take(arrow_numpy.from_numpy(order)), t[order]
        return cls(lo, hi, t, rows)

    def covers(self, lo: int, hi: int) -> bool:
        return self.lo <= lo and hi <= self.hi

    def pick(self, starts: np.ndarray) -> tuple[pa.Table, np.ndarray]:
        """The rows at these bucket starts (ascending) and their ``t``; starts without a row
        are skipped."""
        at = np.searchsorted(self.t, starts)
        inside = at < self.t.size
        hit = np.zeros(starts.size, dtype=bool)
        hit[inside] = self.t[at[inside]] == starts[inside]
        rows = at[hit]
        if not rows.size or rows[-1] - rows[0] + 1 == rows.size:  # one run: a cheap slice
            first = int(rows[0]) if rows.size else 0
            return self.rows.slice(first, rows.size), self.t[first : first + rows.size]
        return self.rows.take(arrow_numpy.from_numpy(rows.astype(np.int64))), self.t[rows]


class StoredLevel:
    """The stored rows of one grid, read through ``read`` one window at a time."""

    def __init__(self, read: Reader, grid: Grid) -> None:
        self._read = read
        self._grid = grid
        self._windows: list[_Window] = []  # most recently used first

    def find(self, ks: np.ndarray, page: int) -> tuple[pa.Table, np.ndarray]:
        """Stored rows of the buckets ``ks`` (ascending bucket indices), sorted by ``t``, and
        their ``t`` column.

        Positions within one page are read as the aligned page(s) holding them, so that the
        next index or small batch in either direction is then free; positions at most two
        apart are read as one span (a large batch, an export); sparse positions are read in
        spans of at most ``page`` buckets. No read covers more than ``2 * page`` buckets
        unless the positions themselves are that many.
        """
        page = max(1, page)
        if not ks.size:
            return arrow_numpy.empty_table(level_schema()), np.zeros(0, dtype=np.int64)
        lo, hi = int(ks[0]), int(ks[-1]) + 1
        if hi - lo <= page:
            lo, hi = lo // page * page, min(-(-hi // page) * page, self._grid.size)
        if hi - lo <= max(2 * page, 2 * ks.size):
            return self._window(lo, hi).pick(self._grid.starts(ks))
        parts = []
        begin = 0
        while begin < ks.size:
            stop = int(np.searchsorted(ks, ks[begin] + page))
            part = ks[begin:stop]
            window = self._window(int(part[0]), int(part[-1]) + 1)
            parts.append(window.pick(self._grid.starts(part)))
            begin = stop
        return (pa.concat_tables([rows for rows, _ in parts]),
                np.concatenate([t for _, t in parts]))

    def _window(self, lo: int, hi: int) -> _Window:
        kept = self._windows
        window = next((w for w in kept if w.covers(lo, hi)), None)
        if window is None:
            window = _Window.of(lo, hi, self._read(self._grid.start(lo), self._grid.start(hi)))
        # one assignment: a result read from two threads never sees a half-updated list
        self._windows = [window, *(w for w in kept if w is not window)][:KEEP]
        return window
