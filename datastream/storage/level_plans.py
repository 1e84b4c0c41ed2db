"""Column choices of level chunks, remembered per stream and level so most chunks skip rating.

Encoding a level chunk starts by rating its columns on a sample: the decimal scale of each
float, the difference order of each integer, and which of ~15 predictions to store a column
against. That rating was a fixed ~0.5-1 ms per chunk, most of the cost of the small chunks a
flush writes for each stream and level. A stream's level rows keep their character from one
chunk to the next (the same quantisation, the same spacing of points), so the choices made for
one chunk fit the next; :class:`LevelPlans` keeps them, and the codec
(:func:`datastream.storage.codec.encode_level`) asks it before rating. A remembered plan is
not used, and the chunk is rated afresh, when:

* the columns holding values are not those it was rated on (it only covers those);
* the chunk's sample is at least twice the rows the plan was rated on (choices made on a
  flush of ten rows are not trusted for a chunk of thousands);
* it has served :data:`RERATE_EVERY` chunks: a choice that became better meanwhile is found
  within that many chunks.

After a chunk was encoded with a remembered plan, :meth:`LevelPlans.holds` compares each
column's bytes with those per row when the plan was rated: a column more than :data:`MARGIN`
larger (plus :data:`SLACK` bytes, what a small chunk's raw parts and blosc2 headers may add)
means the data changed character, and the codec rates the chunk afresh and encodes it again
when the fresh choices differ, which writes exactly what an encoder without plans writes.

Any plan gives a correct chunk: each chunk stores its own choices, so a stale plan only costs
bytes, never data. Plans are kept for the :data:`CAPACITY` most recently used keys; a plan is
any hashable value, and equal plans are kept once.
"""

from __future__ import annotations

import array
import collections
import dataclasses
import threading
from collections.abc import Hashable

CAPACITY = 65536
"""(stream, level) keys whose plans are kept: ~300 bytes each (equal plans are shared), so
that a flush of ten thousand streams over six levels finds its plans again."""
RERATE_EVERY = 16
MARGIN = 0.1
SLACK = 256


@dataclasses.dataclass(slots=True)
class _Entry:
    plan: Hashable
    signature: tuple
    sampled: int
    limits: array.array  # bytes per row each column may take while the plan holds
    uses: int = 0


class LevelPlans:
    """Remembered column choices by key (the caller's stream and level), least recently used
    dropped first; safe to share between threads. ``rated`` and ``reused`` count the chunks
    encoded with fresh and with remembered choices."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self.rated = 0
        self.reused = 0
        self._entries: collections.OrderedDict[Hashable, _Entry] = collections.OrderedDict()
        self._shared: dict[Hashable, Hashable] = {}  # one object per distinct plan or signature
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def recall(self, key: Hashable, signature: tuple, sampled: int) -> Hashable | None:
        """The plan remembered for ``key`` if it may serve a chunk whose non-null columns are
        ``signature`` and whose sample has ``sampled`` rows, else None."""
        with self._lock:
            entry = self._entries.get(key)
            if (entry is None or entry.signature != signature or sampled >= 2 * entry.sampled
                    or entry.uses >= RERATE_EVERY):
                return None
            entry.uses += 1
            self._entries.move_to_end(key)
            return entry.plan

    def holds(self, key: Hashable, sizes: list[int], rows: int) -> bool:
        """Whether the plan recalled for ``key`` stays: no column of the chunk it encoded
        (``sizes``: bytes per column, ``rows`` rows) grew past its remembered size."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and any(
                size > limit * rows + SLACK for size, limit in zip(sizes, entry.limits)
            ):
                return False
            self.reused += 1
            return True

    def remember(self, key: Hashable, plan: Hashable, signature: tuple, sampled: int,
                 sizes: list[int], rows: int) -> None:
        """Keep ``plan``, just rated on ``sampled`` rows of a chunk of ``rows`` rows whose
        columns took ``sizes`` bytes, for the next chunks of ``key``."""
        limits = array.array("f", [size * (1 + MARGIN) / max(rows, 1) for size in sizes])
        with self._lock:
            self.rated += 1
            if len(self._shared) > self.capacity:  # distinct plans are few; never unbounded
                self._shared.clear()
            plan = self._shared.setdefault(plan, plan)
            signature = self._shared.setdefault(signature, signature)
            self._entries[key] = _Entry(plan, signature, sampled, limits)
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
