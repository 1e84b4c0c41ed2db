"""The bucket grid of a downsampled read: rows computed per position, never all materialised.

A level read shows every bucket of its range, stored or empty. Empty buckets are never stored,
so a year-long gap at 10 s would be millions of rows if they were built up front. Here the
visible buckets are a ``range`` of bucket indices (newest first for reverse reads, any step for
slices): the length is arithmetic, and a table is assembled only for the positions asked for,
from the stored rows of those buckets and empty rows generated column-wise for the rest.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import arrow_numpy
from ..downsamplers import level_schema
from ..lazy import pa, pc
from .level_store import StoredLevel

MIN_PAGE = 1000  # stored rows are read at least this many buckets at a time
_COUNTED = ("c", "np")  # the columns an empty bucket sets to 0 instead of null


@dataclasses.dataclass(frozen=True)
class Grid:
    """Bucket starts ``first + k * width`` for ``0 <= k < size``, all below ``end``."""

    first: int
    width: int
    size: int
    end: int

    @classmethod
    def between(cls, start_us: int, end_us: int, width_us: int) -> Grid:
        """Every bucket start in [start_us, end_us) on multiples of ``width_us``."""
        first = -(-start_us // width_us) * width_us
        size = max(0, -(-(end_us - first) // width_us))
        return cls(first, width_us, size, end_us)

    @classmethod
    def empty(cls, width_us: int) -> Grid:
        return cls(0, width_us, 0, 0)

    def starts(self, ks: np.ndarray) -> np.ndarray:
        """Bucket starts (µs) of bucket indices."""
        return self.first + ks * self.width

    def start(self, k: int) -> int:
        return min(self.first + k * self.width, self.end)


def compose(outer: range, inner: range) -> range:
    """The elements of ``outer`` at the positions ``inner`` (valid indices of ``outer``)."""
    if not inner:
        return range(0)
    start = outer[inner.start]
    step = outer.step * inner.step
    return range(start, start + step * len(inner), step)


def indices(view: range) -> np.ndarray:
    return np.arange(view.start, view.stop, view.step, dtype=np.int64)


class LevelRows:
    """Level rows of a read, in output order: ``view`` lists bucket indices of ``grid``.

    Slices share ``stored`` (so stored rows read once are reused) but nothing else. Stored
    rows are read by pages of at least ``min_page`` buckets, however small the batches.
    """

    def __init__(
        self, grid: Grid, stored: StoredLevel, view: range, min_page: int | None = None
    ) -> None:
        self._grid = grid
        self._stored = stored
        self._view = view
        self._min_page = MIN_PAGE if min_page is None else min_page

    def __len__(self) -> int:
        return len(self._view)

    def select(self, positions: range) -> LevelRows:
        return LevelRows(self._grid, self._stored, compose(self._view, positions),
                         self._min_page)

    def whole(self) -> pa.Table:
        return self.rows(range(len(self)), len(self))

    def rows(self, positions: range, page: int) -> pa.Table:
        """LEVEL_SCHEMA rows at ``positions``; stored rows are read by pages of ``page``
        buckets (at least ``min_page``) unless the positions are (nearly) contiguous."""
        ks = indices(compose(self._view, positions))
        if not ks.size:
            return arrow_numpy.empty_table(level_schema())
        ascending = ks if ks[0] <= ks[-1] else ks[::-1]
        found, found_t = self._stored.find(ascending, max(page, self._min_page))
        return assemble(self._grid.starts(ks), found, found_t)


def assemble(starts: np.ndarray, found: pa.Table, stored_t: np.ndarray) -> pa.Table:
    """One row per bucket start, in the order given: the stored row where ``found`` (sorted by
    ``t``, which is ``stored_t``) has one, else an empty bucket (c 0, np 0, all else null)."""
    at = np.searchsorted(stored_t, starts)
    hit = np.zeros(starts.size, dtype=bool)
    inside = at < stored_t.size
    hit[inside] = stored_t[at[inside]] == starts[inside]
    if hit.all():
        if at[-1] - at[0] + 1 == at.size:  # the stored rows in order: no copy
            return found.slice(int(at[0]), at.size)
        return found.take(arrow_numpy.from_numpy(at))
    if not hit.any():
        return _empty_buckets(starts)
    taken = found.take(arrow_numpy.from_numpy(np.where(hit, at, 0), mask=~hit))
    present = arrow_numpy.from_numpy(hit)
    zeros = arrow_numpy.from_numpy(np.zeros(starts.size, dtype=np.int64))
    columns = []
    for field in level_schema():
        if field.name == "t":
            columns.append(arrow_numpy.from_numpy(starts.astype(np.int64, copy=False)))
        elif field.name in _COUNTED:
            columns.append(pc.if_else(present, taken.column(field.name), zeros))
        else:
            columns.append(taken.column(field.name))
    return pa.Table.from_arrays(columns, schema=level_schema())


def _empty_buckets(starts: np.ndarray) -> pa.Table:
    zeros = arrow_numpy.from_numpy(np.zeros(starts.size, dtype=np.int64))
    columns = []
    for field in level_schema():
        if field.name == "t":
            columns.append(arrow_numpy.from_numpy(starts.astype(np.int64, copy=False)))
        elif field.name in _COUNTED:
            columns.append(zeros)
        else:
            columns.append(pa.nulls(starts.size, field.type))
    return pa.Table.from_arrays(columns, schema=level_schema())
