"""Reopening a downsampled range for late data (behaviour §11).

Each level's buckets at or after ``start`` (floored to the level) are discarded and its
``downsampled_until`` moves back there, so late points may be appended again and the next
downsampling recomputes those buckets. A coarser level recomputes its partial bucket from the
finer level's rows before ``start``: where retention already deleted those, the finer level is
reopened from the coarser level's bucket start too, down to raw. Raw points must still be kept
from wherever the recomputation starts, else the request is refused with ``InvalidTimestamp``
and nothing changes.

Derived streams fed by a reopened level are re-derived from there (their outputs past it are
removed until the level closes again); those fed by raw points keep their outputs, which late
points re-derive as usual.
"""

from __future__ import annotations

from .. import exceptions
from ..downsamplers import raw_medians
from ..granularity import GranularityLevel, from_us
from . import retention
from .changes import ChangeSet
from .state import StreamState


def reopen_points(state: StreamState, start_us: int,
                  derived_inputs: frozenset[str] = frozenset()) -> dict[str, int]:
    """Level key → the time each reopened level's bound moves back to (levels whose bound is
    at or before ``start`` are left alone). InvalidTimestamp when raw points needed for the
    recomputation were deleted by retention. ``derived_inputs``: keys of the levels that
    derived streams read (they restart from the bucket before the first reopened one)."""
    points: dict[str, int] = {}
    need: int | None = None  # where the next coarser level recomputes from (its input)
    for level in reversed(state.levels):
        bound = state.bound(level)
        point = level.floor_us(start_us)
        if need is not None and need < point:
            kept_from = state.level_start(level)
            if kept_from is None or kept_from > need:
                point = need  # its rows before `point` are gone: recompute them as well
        if bound is None or bound <= point:
            need = None
            continue
        if level.key in derived_inputs:
            _check_input_before(state, level, point, start_us)
        points[level.key] = point
        need = point
    if points and state.raw_floor is not None:
        first = state.first_level
        from_raw = min(points.values()) if raw_medians(state.value_downsamplers) else (
            points.get(first.key, min(points.values())))
        if from_raw < state.raw_floor:
            raise exceptions.InvalidTimestamp(
                f"cannot reopen stream {state.stream_id} from {from_us(start_us).isoformat()}:"
                f" its buckets are recomputed from {from_us(from_raw).isoformat()} but raw"
                f" points are kept only from {from_us(state.raw_floor).isoformat()}"
            )
    return points


def _check_input_before(state: StreamState, level: GranularityLevel, point: int,
                        start_us: int) -> None:
    """InvalidTimestamp when derived streams reading ``level`` would be re-derived from
    ``point`` without the bucket before it, which retention deleted (operators such as
    derivative restart from the input before the first one they re-derive, so the result
    would differ from a replay)."""
    kept_from = state.level_start(level)
    before = point - level.width_us
    if kept_from is None or before >= kept_from:
        return
    if state.earliest is not None and level.floor_us(state.earliest) <= before:
        raise exceptions.InvalidTimestamp(
            f"cannot reopen stream {state.stream_id} from {from_us(start_us).isoformat()}:"
            f" derived streams read its {level.name} level, which retention kept only from"
            f" {from_us(kept_from).isoformat()}, and they restart from the bucket before"
            f" {from_us(point).isoformat()}; reopen from"
            f" {from_us(kept_from + level.width_us).isoformat()} or later"
        )


def derived_inputs(changes: ChangeSet, state: StreamState) -> frozenset[str]:
    """Keys of the levels of ``state`` that derived streams read."""
    return frozenset(level.key for level in state.levels
                     if retention.readers(changes, state, level))


def reopen(changes: ChangeSet, stream_id: str, start_us: int) -> bool:
    """Reopen one stream from ``start_us`` into the change set; False when nothing was
    downsampled at or after it."""
    state = changes.states[stream_id]
    points = reopen_points(state, start_us, derived_inputs(changes, state))
    for level in state.levels:
        point = points.get(level.key)
        if point is None:
            continue
        changes.drop_level_from(stream_id, level.key, point)
        floor = state.level_floors.get(level.key)
        if floor is not None:
            state.level_floors[level.key] = min(floor, point)
            state.bounds[level.key] = point
        else:
            first = state.level_start(level)
            # nothing closed before the stream's first bucket: as if never downsampled
            state.bounds[level.key] = None if first is None or point <= first else point
    return bool(points)
