"""Bringing every stream a change set touches to a consistent state before it is committed.

After new raw rows (a flush) or a downsampling request, each affected stream is handled after
the streams it is derived from: derived outputs are computed, buckets whose raw rows changed
behind a closed bound are computed again, and buckets that may close now are closed. The
outputs of one stream are the inputs of the next, all in the same commit.
"""

from __future__ import annotations

import numpy as np

from .. import arrow_numpy, downsamplers
from ..granularity import MIN_US
from ..lazy import pa
from .changes import EVERYTHING, ChangeSet
from .downsampling import LevelStep, close_buckets
from .operators import derive, sources_first
from .state import StreamState


def dependents(changes: ChangeSet, roots: set[str]) -> set[str]:
    """Streams derived, directly or not, from ``roots`` (those whose states are loaded)."""
    found: set[str] = set()
    queue = list(roots)
    while queue:
        state = changes.states.get(queue.pop())
        if state is None:
            continue
        for derived in state.contributes_to:
            if derived not in found and derived in changes.states:
                found.add(derived)
                queue.append(derived)
    return found


def settle(
    changes: ChangeSet,
    roots: set[str],
    *,
    auto_downsample: bool,
    until: int | None = None,
    downsample: set[str] | frozenset[str] = frozenset(),
) -> None:
    """Process ``roots`` and everything derived from them, sources first: derived outputs,
    re-closing of changed closed buckets, closing of ``downsample`` streams up to ``until``
    (rules a-c) and, with ``auto_downsample``, of every stream with new rows (rules b-c)."""
    affected = set(roots) | dependents(changes, set(roots))
    for stream_id in sources_first(changes.states, affected):
        state = changes.states[stream_id]
        if state.derivation is not None:
            derive(changes, stream_id)
        refold(changes, stream_id)
        if stream_id in downsample:
            close(changes, stream_id, until)
        elif auto_downsample and (changes.new_raw(stream_id) is not None
                                  or state.derivation is not None):
            # a derived stream closes buckets as its sources advance, emitting or not
            close(changes, stream_id, None)


def settle_replayed(changes: ChangeSet, stream_id: str, *, auto_downsample: bool) -> None:
    """After a replay (backprocess) of ``stream_id``: leave it and everything derived from it
    as live derivation would have (behaviour §7), so with ``auto_downsample`` the replayed
    stream's own buckets close by rules b-c as well, not only those of its dependents."""
    if auto_downsample:
        close(changes, stream_id, None)
    settle(changes, dependents(changes, {stream_id}), auto_downsample=auto_downsample)


def close(changes: ChangeSet, stream_id: str, until: int | None) -> list[LevelStep]:
    """Close the buckets of one stream that may close now (into the change set)."""
    state = changes.states[stream_id]
    steps = close_buckets(changes.view, state, until)
    for step in steps:
        changes.add_levels(stream_id, step)
    return steps


def refold(changes: ChangeSet, stream_id: str) -> None:
    """Compute closed buckets again when raw rows before the closed bound changed in this
    commit (rows another process could not know it had closed, or a derived stream re-derived
    from a time before its bound), so that no level ever diverges from its raw rows."""
    state = changes.states[stream_id]
    frozen = state.frozen_until
    if frozen is None or state.earliest is None:
        return
    changed = changes.raw_changed_from.get(stream_id)
    new = changes.new_raw(stream_id)
    if new is not None and new.num_rows:
        first = int(arrow_numpy.to_numpy(new.column("t")).min())
        changed = first if changed is None else min(changed, first)
    if changed is None or changed >= frozen:
        return
    old = dict(state.bounds)
    drops: dict[str, int] = {}
    for level in state.levels:
        bound = old.get(level.key)
        if bound is not None:
            lowered = level.floor_us(changed) if changed > EVERYTHING else None
            first = state.level_start(level)
            if lowered is not None and first is not None and lowered <= first:
                # from the level's first bucket: all of it, or all that retention kept
                lowered = first if level.key in state.level_floors else None
            state.bounds[level.key] = None if lowered is None else min(bound, lowered)
            drops[level.key] = MIN_US if lowered is None else min(bound, lowered)
    latest = state.latest
    # rule (b) already held for the old bounds; a re-derived stream may have lost its tail
    state.latest = max(x for x in (latest, *old.values()) if x is not None)
    try:
        steps = close_buckets(changes.view, state, None, caps=old)
    finally:
        state.latest = latest
        state.bounds = {key: old.get(key) for key in state.bounds}
    # The stored buckets from where the recomputation starts are replaced whole: a bucket that
    # holds nothing now (or lies before a re-derived stream's new first point) is not computed
    # again, and would otherwise stay behind.
    for level_key, drop_at in drops.items():
        changes.drop_level_from(stream_id, level_key, drop_at)
    for step in steps:
        changes.add_levels(stream_id, step, recomputed=True)


def unfoldable_before(state: StreamState) -> int | None:
    """Time before which new raw rows can no longer be folded into the closed buckets (None:
    any can): their buckets would be recomputed from raw points retention deleted, which
    would erase what the levels hold. The first level is recomputed from raw rows (every
    level, for medians), so its buckets must start at or after the raw floor."""
    frozen, floor = state.frozen_until, state.raw_floor
    if frozen is None or floor is None or not state.levels:
        return None
    from_raw = state.levels if downsamplers.raw_medians(state.value_downsamplers) else (
        state.levels[:1])
    coarsest = max(from_raw, key=lambda level: level.width_us)
    return min(coarsest.ceil_us(floor), frozen)


def foldable(state: StreamState, rows: pa.Table) -> tuple[pa.Table, int]:
    """``rows`` (new raw rows of a stream, sorted by time) without those before
    :func:`unfoldable_before`, and how many were left out."""
    limit = unfoldable_before(state)
    if limit is None or not rows.num_rows:
        return rows, 0
    kept_from = int(np.searchsorted(arrow_numpy.to_numpy(rows.column("t")), limit, side="left"))
    return rows.slice(kept_from), kept_from
