"""Time windows over a stream, sized so that each one reads a bounded number of rows.

The number of points in a range is unknown before reading it, so the next window is sized
from the density of the last one (growing at most 16-fold per step, so a long gap is crossed in
a few steps and a dense stretch after it shrinks the window again). Windows are aligned to a
bucket width so that no bucket is split; one bucket is the smallest window, so memory is
bounded by the larger of the budget and the points of one such bucket.
"""

from __future__ import annotations

from collections.abc import Iterator

WINDOW_POINTS = 200_000  # rows read per window, aimed for
WINDOW_BUCKETS = 100_000  # buckets of the finest level compared per window, at most
GROWTH = 16


class Windows:
    """Iterate ``[a, b)`` windows covering ``[start, end)`` (both widened to whole ``align``
    units), all aligned to ``align`` µs.

    Call :meth:`observe` with the rows read for the current window to size the next one.
    ``longest`` caps a window's duration (rounded down to whole ``align`` units, at least one).
    """

    def __init__(
        self, start: int, end: int, align: int, budget: int, longest: int | None = None
    ) -> None:
        self.start = start - start % align
        self.end = -(-end // align) * align
        self.align = align
        self.budget = max(1, budget)
        self.longest = None if longest is None else max(align, longest - longest % align)
        self._duration = align
        self._rows = 0

    def observe(self, rows: int) -> None:
        self._rows = rows

    def __iter__(self) -> Iterator[tuple[int, int]]:
        a = self.start
        while a < self.end:
            b = min(a + self._duration, self.end)
            self._rows = 0
            yield a, b
            self._duration = self._next(b - a)
            a = b

    def _next(self, duration: int) -> int:
        grown = duration * GROWTH
        if self._rows:
            grown = min(grown, duration * self.budget // self._rows)
        grown = max(self.align, grown - grown % self.align)
        if self.longest is not None:
            grown = min(grown, self.longest)
        return grown
