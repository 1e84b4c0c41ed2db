"""The raw rows of one read, held at most one window at a time (behaviour §6.1).

A raw read of up to :data:`WINDOW_ROWS` points is read once, on first use, and kept: one
query, as fast as a read can be. A larger range is cut into time windows of at most
:data:`WINDOW_ROWS` rows each, planned from row counts (which stores answer from chunk headers,
decoding only the chunks that straddle a bound), so iterating, indexing or slicing it never
holds more than one window, whatever the range. Exports (``to_arrow`` and the others) still
build the whole table, in one read.

The plan cuts the range in halves by time until each part is small enough (one count per cut);
a part a single microsecond wide is never cut, however many points share that time. A store
that cannot count without reading (InfluxDB) plans the windows itself in one paged pass
(``Storage.raw_windows``). Windows
read later reflect the store as it is then: rows appended to the range after the plan are left
out, so positions keep their meaning.
"""

from __future__ import annotations

import numpy as np

from .. import arrow_numpy
from ..granularity import MAX_US
from ..lazy import pa
from ..storage.base import Storage, raw_schema
from .level_grid import compose, indices

WINDOW_ROWS = 1_000_000
"""Rows of one window at most (about 20 MB as Arrow for plain numbers); a read up to this size
is one window, read once."""


class RawPlan:
    """The windows of one read, shared by the read and its slices, and the one window kept."""

    def __init__(self, storage: Storage, stream_id: str, lo: int | None, hi: int | None,
                 reverse: bool) -> None:
        self._storage = storage
        self._stream_id = stream_id
        self._reverse = reverse
        self._kept: tuple[int, pa.Table] | None = None
        if not _counts_cheaply(storage):  # the store plans (or reads the range once)
            table, bounds = _store_planned(storage, stream_id, lo, hi, reverse)
            if table is not None:
                self._kept = (0, table)
        else:
            total = storage.count_raw(stream_id, lo, hi)
            bounds = [(lo, hi, total)]
            if total > WINDOW_ROWS:
                first = storage.first_raw_time(stream_id, lo)
                bounds = [] if first is None else _cut(
                    storage, stream_id, first, MAX_US + 1 if hi is None else hi, total)
        if reverse:
            bounds.reverse()
        self.windows = [(low, high) for low, high, _ in bounds]
        self.starts = np.zeros(len(bounds) + 1, np.int64)
        np.cumsum([count for _, _, count in bounds], out=self.starts[1:])

    @property
    def total(self) -> int:
        return int(self.starts[-1])

    def window(self, index: int) -> pa.Table:
        """The rows of window ``index`` (kept until another window is asked for)."""
        if self._kept is None or self._kept[0] != index:
            low, high = self.windows[index]
            table = self._storage.read_raw(self._stream_id, low, high, reverse=self._reverse)
            planned = int(self.starts[index + 1] - self.starts[index])
            self._kept = None  # the old window goes before the next is held
            self._kept = (index, table.slice(0, planned))
        return self._kept[1]


def _store_planned(storage: object, stream_id: str, lo: int | None, hi: int | None,
                   reverse: bool) -> tuple[pa.Table | None, list[tuple]]:
    """``Storage.raw_windows``; a source with ``read_raw`` alone (a view of buffered points
    over the store) is read once."""
    plan = getattr(storage, "raw_windows", None)
    if plan is not None:
        return plan(stream_id, lo, hi, WINDOW_ROWS, reverse)
    table = storage.read_raw(stream_id, lo, hi, reverse=reverse)  # type: ignore[attr-defined]
    return table, [(lo, hi, table.num_rows)]


def _counts_cheaply(storage: object) -> bool:
    """Whether ``storage`` counts raw rows without reading them (from chunk headers); the
    default of the storage contract reads them."""
    count = getattr(type(storage), "count_raw", None)
    return count is not None and count is not Storage.count_raw


def _cut(storage: Storage, stream_id: str, low: int, high: int, total: int
         ) -> list[tuple[int, int, int]]:
    """[low, high) holding ``total`` rows as windows (low, high, rows) in time order, each
    holding at most WINDOW_ROWS rows unless it is one microsecond wide."""
    out: list[tuple[int, int, int]] = []
    pending = [(low, high, total)]
    while pending:
        low, high, count = pending.pop()
        if count <= WINDOW_ROWS or high - low <= 1:
            if count:
                out.append((low, high, count))
            continue
        middle = low + (high - low) // 2
        left = storage.count_raw(stream_id, low, middle)
        pending += [(middle, high, count - left), (low, middle, left)]  # left part first
    return out


class RawWindows:
    """A row source (see ``datastream.results``) over a raw read: ``view`` lists the read's
    positions it shows (all of them until sliced); the plan is made on first use."""

    def __init__(self, storage: Storage, stream_id: str, lo: int | None, hi: int | None,
                 reverse: bool, plan: RawPlan | None = None, view: range | None = None) -> None:
        self._args = (storage, stream_id, lo, hi, reverse)
        self._plan = plan
        self._view = view

    def _planned(self) -> RawPlan:
        if self._plan is None:
            self._plan = RawPlan(*self._args)
        return self._plan

    def _positions(self) -> range:
        return range(self._planned().total) if self._view is None else self._view

    def __len__(self) -> int:
        return len(self._positions())

    def select(self, positions: range) -> RawWindows:
        return RawWindows(*self._args, plan=self._planned(),
                          view=compose(self._positions(), positions))

    def whole(self) -> pa.Table:
        """Every row, for an export: one read when nothing was sliced off."""
        if self._view is None:
            storage, stream_id, lo, hi, reverse = self._args
            if self._plan is None:
                return storage.read_raw(stream_id, lo, hi, reverse=reverse)
            if len(self._plan.windows) <= 1:  # the one window (read once, then kept)
                return self._plan.window(0) if self._plan.windows else self.rows(range(0), 0)
        return self.rows(range(len(self)), len(self))

    def rows(self, positions: range, page: int) -> pa.Table:
        plan = self._planned()
        wanted = indices(compose(self._positions(), positions))
        if not wanted.size:
            return arrow_numpy.empty_table(raw_schema())
        which = np.searchsorted(plan.starts, wanted, side="right") - 1
        cuts = np.flatnonzero(which[1:] != which[:-1]) + 1
        pieces = []
        for run in np.split(np.arange(wanted.size), cuts):
            index = int(which[run[0]])
            local = wanted[run] - plan.starts[index]
            table = plan.window(index)
            step = int(local[1] - local[0]) if local.size > 1 else 1
            if step == 1 and local[-1] - local[0] == local.size - 1:
                pieces.append(table.slice(int(local[0]), int(local.size)))
            else:
                pieces.append(table.take(arrow_numpy.from_numpy(local)))
        return pieces[0] if len(pieces) == 1 else pa.concat_tables(pieces)
