"""Retention per level (behaviour §11): what may be deleted now, never what is still needed.

A stream keeps, per granularity, a span of history measured back from the clock's now. The
horizon of a level only says what its owner no longer wants; what is actually deleted is also
bounded by what the rest of the stream still needs:

* a bucket goes only once it ends at or before the horizon;
* level rows go only where every coarser level has absorbed them (below each coarser level's
  ``downsampled_until``), so a coarser level can always be recomputed;
* raw points go only where every level has materialised them, and where every derived stream
  fed by them has consumed them (a derived stream waiting for a backprocess keeps them all),
  keeping the last point before the cut for operators that restart from the previous input.

Deletions are recorded in the stream's state (the earliest kept bucket of each level, the time
before which raw points are gone) in the same commit, so reads never invent or show anything
below them, even on a backend that removes the rows themselves later.
"""

from __future__ import annotations

import datetime
from typing import Any

from ..granularity import GranularityLevel, resolve
from ..units import US_PER_SECOND
from ..values import show
from .changes import ChangeSet
from .state import StreamState

LOOKBACK_US = 60 * US_PER_SECOND


def parse(retention: Any) -> dict[GranularityLevel, int | None]:
    """The requested retention as level → µs of history kept (None = forever).

    TypeError for a non-dict or a value that is neither a timedelta nor None; ValueError for a
    span that is not positive; UnsupportedGranularity for an unknown key."""
    if not isinstance(retention, dict):
        raise TypeError(f"retention must be a dict of granularity -> timedelta, got"
                        f" {show(retention)}")
    parsed: dict[GranularityLevel, int | None] = {}
    for key, keep in retention.items():
        level = resolve(key)
        if keep is None:
            parsed[level] = None
            continue
        if not isinstance(keep, datetime.timedelta):
            raise TypeError(f"retention of {level.name} must be a datetime.timedelta or None,"
                            f" got {show(keep)}")
        keep_us = (keep.days * 86_400 + keep.seconds) * US_PER_SECOND + keep.microseconds
        if keep_us <= 0:
            raise ValueError(f"retention of {level.name} must be positive, got {keep}")
        parsed[level] = keep_us
    return parsed


def check_applies(state: StreamState, parsed: dict[GranularityLevel, int | None]) -> None:
    """ValueError when a level is finer than the stream's raw granularity (nothing is kept
    there to delete)."""
    for level in parsed:
        if level.rank < state.highest.rank:
            raise ValueError(
                f"stream {state.stream_id} keeps its raw points at {state.highest.name}: no"
                f" retention at the finer {level.name}"
            )


def updated(
    state: StreamState, parsed: dict[GranularityLevel, int | None]
) -> dict[str, int | None]:
    """The stream's retention after a request: the levels given are set (None = forever,
    kept as asked so that get_tags shows it), the others keep their setting."""
    result = dict(state.retention)
    for level, keep in parsed.items():
        result[level.key] = keep
    return result


def public(state: StreamState) -> dict[str, datetime.timedelta | None]:
    """The ``retention`` field of get_tags: the levels set, by name, finest first."""
    shown: dict[str, datetime.timedelta | None] = {}
    for level in [state.highest, *state.levels]:
        if level.key in state.retention:
            keep = state.retention[level.key]
            shown[level.name] = None if keep is None else datetime.timedelta(microseconds=keep)
    return shown


def is_set(state: StreamState) -> bool:
    """Whether any level of the stream has a finite retention."""
    return any(keep is not None for keep in state.retention.values())


def apply(changes: ChangeSet, stream_id: str, now_us: int) -> dict[str, int]:
    """Delete what the stream's retention lets go at ``now_us`` (into the change set).

    Returns the count per granularity name with a retention: raw points deleted, and buckets
    that reads of a level no longer show."""
    state = changes.states[stream_id]
    counts: dict[str, int] = {}
    if not is_set(state):
        return counts
    levels = state.levels
    for index, level in enumerate(levels):
        keep = state.retention.get(level.key)
        if keep is None:
            continue
        counts[level.name] = 0
        cut = _absorbed_until(state, levels[index:])
        start = state.level_start(level)
        if cut is None or start is None:
            continue
        cut = min(cut, level.floor_us(now_us - keep))
        read_from = _read_by_derived_from(changes, state, level)
        if read_from is False:
            continue
        if read_from is not None:
            # operators such as derivative restart from the input before the first one they
            # (re)process: the bucket before the cut stays, and nothing not yet processed goes
            cut = min(cut, read_from) - level.width_us
        if cut <= start:
            continue
        counts[level.name] = (cut - start) // level.width_us
        state.level_floors[level.key] = cut
        changes.drop_level_before(stream_id, level.key, cut)
    keep = state.retention.get(state.highest.key)
    if keep is not None:
        counts[state.highest.name] = _drop_raw(changes, state, now_us - keep)
    return counts


def readers(changes: ChangeSet, state: StreamState,
            level: GranularityLevel) -> list[StreamState | None]:
    """The derived streams that read ``level`` of ``state`` (None for one the change set does
    not hold: it may read anything)."""
    found: list[StreamState | None] = []
    for derived_id in state.contributes_to:
        derived = changes.states.get(derived_id)
        sources = () if derived is None or derived.derivation is None else (
            derived.derivation.sources)
        if derived is None or any(source.stream_id == state.stream_id and source.level == level
                                  for source in sources):
            found.append(derived)
    return found


def _read_by_derived_from(
    changes: ChangeSet, state: StreamState, level: GranularityLevel
) -> int | None | bool:
    """Start of the first bucket of ``level`` that a derived stream reading this level has
    not processed yet; None when no derived stream reads it, False when one may still need
    all of it (waiting for backprocess_streams, or nothing processed yet)."""
    first_open: int | None = None
    for derived in readers(changes, state, level):
        operator = None if derived is None else derived.operator
        if derived is None or derived.pending_backprocess or operator is None or (
                operator.done is None):
            return False
        following = level.floor_us(operator.done) + level.width_us
        first_open = following if first_open is None else min(first_open, following)
    return first_open


def _absorbed_until(state: StreamState, levels: list[GranularityLevel]) -> int | None:
    """Time before which every level of ``levels`` is materialised (None: not all are)."""
    cut = None
    for level in levels:
        bound = state.bound(level)
        if bound is None:
            return None
        cut = bound if cut is None else min(cut, bound)
    return cut


def _drop_raw(changes: ChangeSet, state: StreamState, horizon: int) -> int:
    """Delete raw points before the horizon that nothing needs any more; their count."""
    cut = horizon
    if state.levels:
        absorbed = _absorbed_until(state, state.levels)
        if absorbed is None:
            return 0
        cut = min(cut, absorbed)
    consumed = _consumed_until(changes, state)
    if consumed is False:
        return 0
    storage = changes.storage
    if consumed is not None:
        # derived streams restart from the input before a changed one: keep that one
        cut = min(cut, consumed)
        previous = _last_before(storage, state, cut)
        if previous is not None:
            cut = previous
    start = state.raw_floor
    if start is not None and cut <= start:
        return 0
    count = storage.count_raw(state.stream_id, start, cut)
    for level in state.levels:
        # each level keeps showing its buckets from where it starts now
        if level.key not in state.level_floors and state.earliest is not None:
            state.level_floors[level.key] = level.floor_us(state.earliest)
    state.raw_floor = cut
    first = storage.first_raw_time(state.stream_id, cut)
    state.earliest = state.latest if first is None else first
    changes.drop_raw_before(state.stream_id, cut)
    return count


def _last_before(storage: Any, state: StreamState, time_us: int) -> int | None:
    """Time of the last raw point before ``time_us``, looking back in growing windows (a
    stream's raw history can be long)."""
    floor = state.raw_floor if state.raw_floor is not None else state.earliest
    if floor is None or floor >= time_us:
        return None
    window = LOOKBACK_US
    while True:
        start = max(floor, time_us - window)
        rows = storage.read_raw(state.stream_id, start, time_us)
        if rows.num_rows:
            return int(rows.column("t")[rows.num_rows - 1].as_py())
        if start == floor:
            return None
        window *= 16


def _consumed_until(changes: ChangeSet, state: StreamState) -> int | None | bool:
    """Time before which every derived stream fed by this one has processed its input; None
    when nothing is fed, False when some derived stream may still need all of it."""
    consumed: int | None = None
    for derived_id in state.contributes_to:
        derived = changes.states.get(derived_id)
        if derived is None:
            return False
        operator = derived.operator
        if derived.pending_backprocess or operator is None or operator.done is None:
            return False
        done = operator.done + 1
        consumed = done if consumed is None else min(consumed, done)
    return consumed
