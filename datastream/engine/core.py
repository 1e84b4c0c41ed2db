"""The engine: the one place that turns validated API calls into storage writes and reads.

Every change is built from the *stored* state of the streams it touches, read under their
maintenance locks (a no-op in the embedded store), and committed conditionally on the versions
that were read; a conflict (another writer changed a record meanwhile) rebuilds it from the new
state. The process-local cache of stream states serves reads and validation of immutable
configuration only; nothing another process can change is decided from it.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from .. import exceptions
from ..granularity import MIN_US
from ..lazy import uuid
from ..messages import show
from ..storage.base import RecordConflict, Storage, StreamExists, WriteBatch, warn_after_commit
from . import operators, reopening, retention
from .buffers import Buffers, StreamBuffer
from .changes import ChangeSet
from .settle import dependents, foldable, settle, settle_replayed
from .state import StreamState

MAX_CONFLICTS = 64  # rebuilds of one commit before giving up with StreamAppendContended
DOWNSAMPLE_GROUP = 64  # streams closed together in one commit
RETRY_FIRST, RETRY_MAX = 0.25, 30.0  # background retry of a failed flush (seconds)
# An unbuffered append whose commit outcome is unknown asks again after these pauses before
# raising (seconds): a lost reply is usually followed by the server answering again.
UNKNOWN_OUTCOME_PAUSES = (0.05, 0.2, 0.5, 1.0)

R = TypeVar("R")


class _States(dict):
    """The cached stream states by id, with the append lanes built from them: replacing or
    dropping a state drops its lane, so a lane found in :attr:`lanes` is the current one."""

    def __init__(self) -> None:
        super().__init__()
        self.lanes: dict[str, Lane] = {}

    def __setitem__(self, stream_id: str, state: StreamState) -> None:
        super().__setitem__(stream_id, state)
        self.lanes.pop(stream_id, None)

    def pop(self, stream_id: str, *default: Any) -> Any:
        self.lanes.pop(stream_id, None)
        return super().pop(stream_id, *default)


class Lane:
    """What a single append needs of one stream, computed once per cached state: the stored
    extent and frozen bound it is validated against, and how its values are encoded. Valid
    while that state is the engine's cached one (see :meth:`Engine.lane`)."""

    __slots__ = ("version", "floor", "derived", "plain", "highest", "value_type", "options",
                 "value_keys")

    def __init__(self, state: StreamState) -> None:
        self.version = state.version
        # a point at or after both the stored latest point and the frozen bound needs no more
        # checking than that (and than the buffered latest point)
        bounds = [bound for bound in (state.latest, state.frozen_until) if bound is not None]
        self.floor = max(bounds, default=MIN_US)
        self.derived = state.derivation is not None
        self.plain = state.value_type == "numeric" and not state.options.get("high_accuracy")
        self.highest = state.highest
        self.value_type = state.value_type
        self.options = state.options
        self.value_keys = state.value_keys


class Engine:
    """Buffers appends, commits them and every consequence, and serves stream states."""

    def __init__(
        self,
        storage: Storage,
        *,
        buffer_points: int = 10_000,
        buffer_seconds: float = 1.0,
        auto_downsample: bool = False,
        max_buffered_points: int = 10_000_000,
    ) -> None:
        self.storage = storage
        self.buffers = Buffers(buffer_points, buffer_seconds)
        self.auto_downsample = auto_downsample
        self.max_buffered_points = max_buffered_points
        self.lock = threading.RLock()
        self.failure: BaseException | None = None
        self._retry_at = 0.0
        self._retry_delay = RETRY_FIRST
        self._failing: set[str] = set()  # streams whose last commit failed (retried later)
        # batches whose commit may or may not have gone through (CommitOutcomeUnknown): their
        # points wait apart, and are settled before their streams are flushed again
        self._doubts: list[tuple[exceptions.CommitOutcomeUnknown, dict[str, StreamBuffer]]] = []
        self._states = _States()
        self.lanes = self._states.lanes  # read by the per-point lane of Datastream.append
        self._cheap_versions = type(storage).record_version is not Storage.record_version
        # Whether another engine uses the same storage object: until then, this engine's
        # commits are the only changes of the stored records, and an append lane need not ask
        # storage whether its state is still current.
        self.shared = True
        with _USERS_LOCK:
            _USERS[storage] = _USERS.get(storage, 0) + 1
            _peers_changed(storage, add=self)
        self._attached = True

    # -- stream states ---------------------------------------------------------------------
    def state(self, stream_id: object, *, fresh: bool = False) -> StreamState:
        """The state of a stream; StreamNotFound for unknown or malformed ids.

        ``fresh`` re-reads the stored record (backends whose versions are cheap to ask are
        always checked against the stored version)."""
        if not isinstance(stream_id, str) or not _is_uuid(stream_id):
            raise exceptions.StreamNotFound(f"stream {show(stream_id)} not found (malformed id)")
        cached = self._states.get(stream_id)
        if cached is not None:
            if self._cheap_versions:
                if self.storage.record_version(stream_id) == cached.version:
                    return cached
            elif not fresh:
                return cached
        state = self._read(stream_id)
        if state is None:
            self._states.pop(stream_id, None)
            raise exceptions.StreamNotFound(f"stream {stream_id!r} not found")
        return state

    def lane(self, stream_id: str) -> Lane | None:
        """The append lane of a stream whose cached state is current without asking storage
        (its record version is checked where that is cheap); None when it is not cached or
        stale, and :meth:`state` must decide. For backends without concurrent writers only:
        those read the stored state at every append."""
        lane = self._states.lanes.get(stream_id)
        if lane is None:
            state = self._states.get(stream_id)
            if state is None:
                return None
            lane = self._states.lanes[stream_id] = Lane(state)
        if (self.shared and self._cheap_versions
                and self.storage.record_version(stream_id) != lane.version):
            return None
        return lane

    def cached_state(self, stream_id: str) -> StreamState | None:
        """The last state this engine read or wrote for a stream, without asking storage."""
        return self._states.get(stream_id)

    def _read(self, stream_id: str) -> StreamState | None:
        """The stored state of a stream (None when it does not exist), cached."""
        if self._cheap_versions:
            cached = self._states.get(stream_id)
            if cached is not None and self.storage.record_version(stream_id) == cached.version:
                return cached
        record = self.storage.get_stream(stream_id)
        if record is None:
            self._states.pop(stream_id, None)
            return None
        state = StreamState.from_record(record)
        self._states[stream_id] = state
        return state

    def find(self, query: dict[str, Any] | None) -> list[StreamState]:
        """Matching streams as stored now, in creation order."""
        found = []
        for record in self.storage.find_streams(query):
            state = StreamState.from_record(record)
            self._states[record.stream_id] = state
            found.append(state)
        return found

    def forget(self, stream_ids: Iterable[str]) -> None:
        for stream_id in stream_ids:
            self._states.pop(stream_id, None)

    def pending_extent(self, state: StreamState) -> tuple[int | None, int | None]:
        """Earliest and latest timestamp of a stream including what is still buffered."""
        earliest, latest = state.earliest, state.latest
        buffer = self.buffers.streams.get(state.stream_id)
        if buffer is not None and buffer.points:
            earliest = buffer.earliest if earliest is None else min(earliest, buffer.earliest)
            latest = buffer.latest if latest is None else max(latest, buffer.latest)
        return earliest, latest

    # -- one conditional commit ------------------------------------------------------------
    def transact(
        self,
        stream_ids: Iterable[str],
        build: Callable[[ChangeSet], R],
        expand: Callable[[dict[str, StreamState]], set[str]] | None = None,
    ) -> R:
        """Lock ``stream_ids`` (and whatever ``expand`` asks for, until it asks for nothing
        new), read their stored states, let ``build`` fill a ChangeSet and commit it on the
        condition that none of those records changed meanwhile; rebuild on conflict."""
        for attempt in range(MAX_CONFLICTS):
            wanted = set(stream_ids)
            while True:
                with self._locked(sorted(wanted)):
                    states = {sid: self._read(sid) for sid in sorted(wanted)}
                    present = {sid: state for sid, state in states.items() if state is not None}
                    more = expand(present) if expand is not None else set()
                    if not more <= wanted:
                        wanted |= more
                        continue  # release and take the larger set, in order
                    changes = ChangeSet(self.storage, present)
                    result = build(changes)
                    batch = changes.batch()
                    try:
                        self.commit(batch)
                    except StreamExists:
                        raise
                    except RecordConflict:
                        break
                    self._remember(changes)
                    return result
            time.sleep(random.uniform(0, min(0.05 * (attempt + 1), 0.5)))
        raise exceptions.StreamAppendContended(
            f"streams {sorted(stream_ids)[:5]} kept changing under concurrent writers;"
            f" gave up after {MAX_CONFLICTS} attempts"
        )

    @contextlib.contextmanager
    def _locked(self, stream_ids: list[str]) -> Iterator[None]:
        """Every stream's maintenance lock, taken in id order (no deadlock between writers)."""
        with contextlib.ExitStack() as stack:
            for stream_id in stream_ids:
                stack.enter_context(_released_quietly(self.storage.maintenance_lock(stream_id)))
            yield

    def commit(self, batch: WriteBatch) -> None:
        if batch.is_empty():
            return
        try:
            self.storage.commit(batch)
        except exceptions.DatastreamException:
            raise
        except Exception as error:  # a backend bug or a driver error not wrapped by it
            raise exceptions.StreamAppendFailed(
                f"writing a batch failed, nothing of it was stored: {type(error).__name__}:"
                f" {error}"
            ) from error

    def _remember(self, changes: ChangeSet) -> None:
        """Cache the states as they are stored now (each touched record moved one version)."""
        created = {state.stream_id for state, _ in changes.created}
        for stream_id in changes.deleted:
            self._states.pop(stream_id, None)
        for stream_id in changes.dirty - created - set(changes.deleted):
            state = changes.states[stream_id]
            state.version = changes.base[stream_id].version + 1
            self._states[stream_id] = state
        for state, _ in changes.created:
            state.version = 0
            self._states[state.stream_id] = state

    def connected(self, present: dict[str, StreamState]) -> set[str]:
        """Streams a change of ``present`` can affect or read: the ones derived from them and
        the sources of derived ones (the lock set grows by this until it is closed)."""
        ids: set[str] = set()
        for state in present.values():
            ids.update(state.contributes_to)
            if state.derivation is not None:
                ids.update(state.derivation.stream_ids)
        return ids

    # -- buffering and flushing --------------------------------------------------------------
    def make_room(self, count: int) -> None:
        """Called before buffering ``count`` points: past the memory bound, flush now, and when
        that fails refuse the points (StreamAppendFailed) rather than grow without limit."""
        if self.buffers.points + count > self.max_buffered_points and self.buffers.points:
            try:
                self.flush()
            except exceptions.DatastreamException as error:
                if self.buffers.points + count <= self.max_buffered_points:
                    return  # the other streams' points were stored: room enough now
                raise exceptions.StreamAppendFailed(
                    f"{self.buffers.points} points are buffered (the bound is"
                    f" {self.max_buffered_points}) and the backend is failing; the new points"
                    f" were not accepted: {error}"
                ) from error

    def flush(self, streams: set[str] | None = None) -> None:
        """Commit everything buffered (or the buffers of ``streams``); streams whose commit
        fails stay buffered (the others are stored) and StreamAppendFailed names them."""
        with self.lock:
            doubtful = self._settle_doubts()
            taken = self.buffers.take() if streams is None else self.buffers.detach(streams)
            waiting = {sid: taken.pop(sid) for sid in list(taken) if sid in doubtful}
            if waiting:  # their points follow the batch in doubt: they wait for it
                self.buffers.restore(waiting)
            if not taken and not doubtful:
                return
            failed: dict[str, BaseException] = {}
            if taken:
                try:
                    failed = self._store_isolated(taken)
                except BaseException:
                    self.buffers.restore(taken)
                    raise
            unknown: dict[int, tuple[exceptions.CommitOutcomeUnknown, dict]] = {}
            for sid, error in failed.items():
                if isinstance(error, exceptions.CommitOutcomeUnknown):
                    unknown.setdefault(id(error), (error, {}))[1][sid] = taken[sid]
                else:
                    self.buffers.restore({sid: taken[sid]})
            self._doubts.extend(unknown.values())
            doubtful |= {sid for _, batch in unknown.values() for sid in batch}
            if failed or doubtful:
                self._failing = ((set(failed) | doubtful)
                                 | (set() if streams is None else self._failing))
                self._failed(failed or {sid: self._doubt_of(sid) for sid in doubtful})
            if streams is None:
                self.failure = None
                self._failing = set()
                self._retry_delay = RETRY_FIRST

    def _settle_doubts(self) -> set[str]:
        """Ask again about each batch in doubt: a stored one is done, the points of one not
        stored go back in front of their buffers; returns the streams still in doubt."""
        remaining = []
        for error, batch in self._doubts:
            stored = self._settled(error, batch)
            if stored is None:
                remaining.append((error, batch))
            elif not stored:
                self.buffers.restore(batch)
        self._doubts = remaining
        return {sid for _, batch in remaining for sid in batch}

    def _settled(self, error: exceptions.CommitOutcomeUnknown, streams: Iterable[str]
                 ) -> bool | None:
        """``error.settle()``; a stored batch moved its streams' records on: their cached
        states are dropped."""
        stored = error.settle()
        if stored:
            for stream_id in streams:
                self._states.pop(stream_id, None)
        return stored

    def _doubt_of(self, stream_id: str) -> BaseException:
        for error, batch in self._doubts:
            if stream_id in batch:
                return error
        return exceptions.StreamAppendFailed(f"stream {stream_id}: outcome unknown")

    def flush_for(self, stream_ids: Iterable[str]) -> None:
        """Flush before working on some streams: a failure of other streams is not theirs
        (it stays buffered and reported by flush()), a failure of theirs is raised."""
        try:
            self.flush()
        except exceptions.DatastreamException:
            if any(self.buffers.streams.get(sid) for sid in stream_ids):
                raise

    def flush_exactly(self) -> None:
        """Commit everything buffered in one commit or nothing: on failure the points are
        dropped (the caller reports the failure; a retry of the call stores them once)."""
        with self.lock:
            taken = self.buffers.take()
            if not taken:
                return
            try:
                self._store(taken)
            except exceptions.StorageUnavailable as error:  # locks or records, before commit
                raise exceptions.StreamAppendFailed(
                    f"storing the points failed, nothing was stored: {error}"
                ) from error
            except exceptions.CommitOutcomeUnknown as error:
                # the caller learns whether the points are stored: a retry of a stored call
                # would store them twice
                for pause in UNKNOWN_OUTCOME_PAUSES:
                    time.sleep(pause)
                    stored = self._settled(error, taken)
                    if stored:
                        return
                    if stored is False:
                        raise exceptions.StreamAppendFailed(
                            f"storing the points failed, nothing was stored: {error}"
                        ) from error
                raise

    def background_due(self) -> bool:
        """Whether the background flusher has work here (read without the lock: a hint; the
        work itself, :meth:`flush_if_due`, decides under it)."""
        try:
            if self._doubts:
                return True
            if not self.buffers.due():
                return False
            if self.failure is None or time.monotonic() >= self._retry_at:
                return True
            return any(buffer.points for sid, buffer in list(self.buffers.streams.items())
                       if sid not in self._failing)
        except RuntimeError:  # the buffers changed under the read: look closer
            return True

    def flush_if_due(self) -> None:
        """The background flusher's tick: flush when a limit is reached, and retry a failed
        flush with backoff. Never waits for a caller holding the engine."""
        if not self.lock.acquire(blocking=False):
            return
        try:
            if not self.buffers.due() and not self._doubts:  # a batch in doubt is asked again
                return
            if self.failure is not None and time.monotonic() < self._retry_at:
                # the failing streams wait for their retry; the others are flushed as usual
                healthy = {sid for sid, buffer in self.buffers.streams.items()
                           if buffer.points} - self._failing
                if healthy:
                    with contextlib.suppress(exceptions.DatastreamException):
                        self.flush(healthy)
                return
            try:
                self.flush()
            except exceptions.DatastreamException:
                pass  # kept in self.failure; the next flush()/close() reports it
        finally:
            self.lock.release()

    def _failed(self, failed: dict[str, BaseException]) -> None:
        first_id, first = next(iter(failed.items()))
        error = exceptions.StreamAppendFailed(
            f"storing the buffered points of {len(failed)} stream(s) failed; they stay buffered"
            f" and are retried (first: stream {first_id}: {type(first).__name__}: {first})"
        )
        error.__cause__ = first
        self.failure = error
        self._retry_at = time.monotonic() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, RETRY_MAX)
        raise error

    def _store_isolated(self, taken: dict[str, StreamBuffer]) -> dict[str, BaseException]:
        """Store everything in one commit; if that fails, stream by stream, so that one
        failing stream never keeps the others from being stored."""
        try:
            self._store(taken)
            return {}
        except Exception as error:
            if len(taken) == 1 or isinstance(error, exceptions.CommitOutcomeUnknown):
                # (a batch that may have been stored is never committed again piece by piece)
                return dict.fromkeys(taken, error)
        failed: dict[str, BaseException] = {}
        for stream_id, buffer in taken.items():
            try:
                self._store({stream_id: buffer})
            except Exception as error:
                failed[stream_id] = error
        return failed

    def _store(self, taken: dict[str, StreamBuffer]) -> None:
        dropped: list[str] = []
        behind: dict[str, int] = {}

        def build(changes: ChangeSet) -> None:
            roots = set()
            behind.clear()
            for stream_id, buffer in taken.items():
                if stream_id not in changes.states:
                    dropped.append(stream_id)
                    continue
                rows, left_out = foldable(changes.states[stream_id], buffer.to_table())
                if left_out:
                    behind[stream_id] = left_out
                changes.add_raw(stream_id, rows)
                roots.add(stream_id)
            settle(changes, roots, auto_downsample=self.auto_downsample)

        self.transact(taken, build, self.connected)
        if dropped:
            warn_after_commit(
                f"streams {sorted(set(dropped))} were deleted before their buffered points were"
                " stored; those points were dropped",
                stacklevel=4,
            )
        if behind:
            warn_after_commit(
                f"buffered points of streams {sorted(behind)} ({sum(behind.values())} in all)"
                " lie where another writer meanwhile downsampled and applied retention to the"
                " raw points; they were dropped, since folding them in would erase what the"
                " levels hold there",
                stacklevel=4,
            )

    def preview(self) -> ChangeSet:
        """The change set the buffered points would commit, built but not committed: reads
        of this object go through its view while the backend refuses the commit, so they
        still see every earlier append."""
        with self.lock:
            buffered = {
                sid: buffer for sid, buffer in self.buffers.streams.items() if buffer.points
            }
            wanted = set(buffered)
            while True:
                states = {sid: self._read(sid) for sid in sorted(wanted)}
                present = {sid: state for sid, state in states.items() if state is not None}
                more = self.connected(present)
                if more <= wanted:
                    break
                wanted |= more
            changes = ChangeSet(self.storage, present)
            roots = set()
            for stream_id, buffer in buffered.items():
                if stream_id in changes.states:
                    changes.add_raw(stream_id, buffer.to_table())
                    roots.add(stream_id)
            settle(changes, roots, auto_downsample=self.auto_downsample)
            return changes

    # -- derived streams, downsampling, deleting ------------------------------------------
    def create(self, state: StreamState, query: dict[str, Any]) -> StreamState:
        """Create a stream (a derived one together with its sources' ``contributes_to``), in
        one commit. StreamExists when a stream matching ``query`` exists."""
        derivation = state.derivation
        if derivation is None:
            record = self.storage.create_stream(state.record(), query)
            if record.stream_id != state.stream_id:
                raise StreamExists(f"a stream matching {query!r} exists", record)
            self._states[state.stream_id] = state
            return state
        sources = set(derivation.stream_ids)
        self.flush_for(sources)  # buffered source points are history the new stream must know

        def build(changes: ChangeSet) -> StreamState:
            new = state.copy()
            for source_id in sources:
                if source_id not in changes.states:
                    raise exceptions.StreamNotFound(f"source stream {source_id!r} not found")
            holds_data = any(changes.states[s].earliest is not None for s in sources)
            new.pending_backprocess = derivation.history == "replay" and holds_data
            changes.create(new, query)
            if derivation.history == "skip":
                operators.skip_history(changes, new)
            for source_id in sources:
                changes.states[source_id].contributes_to[new.stream_id] = {
                    "op": derivation.op, "args": dict(derivation.args),
                }
                changes.touch(source_id)
            return new

        return self.transact(sources, build)

    def downsample(self, stream_ids: list[str], until_us: int | None) -> list[tuple]:
        """Close buckets of each stream; returns (stream_id, LevelStep) of what closed."""
        self.flush_for(stream_ids)
        closed: list[tuple] = []
        failed: list[exceptions.StreamAppendFailed] = []
        pending = list(_groups(stream_ids))
        while pending:
            group = pending.pop(0)
            try:
                closed.extend(self._downsample_group(group, until_us))
            except exceptions.CommitOutcomeUnknown:
                raise
            except exceptions.StreamAppendFailed as error:
                if len(group) > 1:  # one stream's refused levels must not hold the others back
                    pending[:0] = [[stream_id] for stream_id in group]
                else:
                    failed.append(error)
        if failed:
            raise exceptions.StreamAppendFailed(
                f"{len(failed)} commit(s) of closed buckets failed (the other streams were"
                f" downsampled): {failed[0]}") from failed[0]
        return closed

    def _downsample_group(self, group: list[str], until_us: int | None) -> list[tuple]:
        """Close the buckets of ``group`` in one conditional commit."""

        def build(changes: ChangeSet) -> list[tuple]:
            roots = {
                sid for sid in group
                if sid in changes.states and not changes.states[sid].pending_backprocess
            }
            settle(changes, roots, auto_downsample=self.auto_downsample, until=until_us,
                   downsample=roots)
            order = {sid: index for index, sid in enumerate(group)}
            steps = [(sid, step) for sid, step in changes.steps if sid in roots]
            return sorted(steps, key=lambda item: (order[item[0]], item[1].level.rank))

        return self.transact(group, build, self.connected)

    def backprocess(self, stream_ids: list[str]) -> list[str]:
        """Replay source history into derived streams, sources first; idempotent."""
        self.flush_for(stream_ids)
        states = {sid: self.state(sid, fresh=True) for sid in stream_ids}
        wanted = {
            sid for sid, state in states.items()
            if state.derivation is not None and state.derivation.history == "replay"
        }
        done = []
        for stream_id in operators.sources_first(states, wanted):

            def build(changes: ChangeSet, stream_id: str = stream_id) -> bool:
                if stream_id not in changes.states:
                    return False
                operators.replay(changes, stream_id)
                settle_replayed(changes, stream_id, auto_downsample=self.auto_downsample)
                return True

            if self.transact({stream_id}, build, self.connected):
                done.append(stream_id)
        return done

    def set_retention(self, stream_ids: list[str], parsed: dict) -> None:
        """Set the retention of each stream (behaviour §11), one conditional commit per group."""
        for group in _groups(stream_ids):

            def build(changes: ChangeSet, group: list[str] = group) -> None:
                for stream_id in group:
                    state = changes.states.get(stream_id)
                    if state is None:
                        continue
                    retention.check_applies(state, parsed)
                    state.retention = retention.updated(state, parsed)
                    changes.touch(stream_id)

            self.transact(group, build)

    def apply_retention(self, stream_ids: list[str], now_us: int) -> dict[str, int]:
        """Delete what retention lets go at ``now_us``; deleted count per granularity name."""
        self.flush_for(stream_ids)
        totals: dict[str, int] = {}
        for group in _groups(stream_ids):

            def build(changes: ChangeSet, group: list[str] = group) -> dict[str, int]:
                counts: dict[str, int] = {}
                for stream_id in group:
                    if stream_id in changes.states:
                        for name, count in retention.apply(changes, stream_id, now_us).items():
                            counts[name] = counts.get(name, 0) + count
                return counts

            for name, count in self.transact(group, build, self.connected).items():
                totals[name] = totals.get(name, 0) + count
        return totals

    def reopen(self, stream_ids: list[str], start_us: int) -> list[str]:
        """Reopen streams and everything derived from them from ``start_us`` in one commit;
        the ids of the streams whose bounds moved back."""
        self.flush_for(stream_ids)

        def build(changes: ChangeSet) -> list[str]:
            roots = {sid for sid in stream_ids if sid in changes.states}
            affected = roots | dependents(changes, roots)
            reopened = [sid for sid in operators.sources_first(changes.states, affected)
                        if reopening.reopen(changes, sid, start_us)]
            settle(changes, roots, auto_downsample=False)
            return reopened

        return self.transact(stream_ids, build, self.connected)

    def delete(self, stream_ids: list[str]) -> None:
        """Delete streams and their data in one commit; sources that survive forget them.
        OutstandingDependenciesError (nothing deleted) when a dependent would be left."""
        doomed = set(stream_ids)
        # the points still buffered for the doomed streams go with them, but only if the
        # delete happens: a refused one (a dependent left) must not have dropped them
        held = self.buffers.detach(doomed)

        def build(changes: ChangeSet) -> None:
            present = [sid for sid in stream_ids if sid in changes.states]
            for stream_id in present:
                left = [d for d in changes.states[stream_id].contributes_to
                        if d not in doomed and self._exists(changes, d)]
                if left:
                    raise exceptions.OutstandingDependenciesError(
                        f"stream {stream_id} feeds derived streams {sorted(left)}; delete them"
                        " together"
                    )
            for stream_id in present:
                derivation = changes.states[stream_id].derivation
                for source_id in derivation.stream_ids if derivation is not None else ():
                    source = changes.states.get(source_id)
                    if source_id not in doomed and source is not None:
                        source.contributes_to.pop(stream_id, None)
                        changes.touch(source_id)
                changes.delete(stream_id)

        def sources_of(present: dict[str, StreamState]) -> set[str]:
            return {
                source_id for state in present.values() if state.derivation is not None
                for source_id in state.derivation.stream_ids
            }

        try:
            self.transact(doomed, build, sources_of)
        except BaseException:
            self.buffers.restore(held)
            raise
        self.forget(doomed)

    def _exists(self, changes: ChangeSet, stream_id: str) -> bool:
        return stream_id in changes.states or self.storage.get_stream(stream_id) is not None

    def change_tags(self, stream_id: str, change: Callable[[dict], dict]) -> StreamState:
        """Replace a stream's user tags by ``change(stored tags)``, as a compare-and-set on
        the stored record (re-read and re-applied when another writer got there first)."""
        for attempt in range(MAX_CONFLICTS):
            state = self.state(stream_id, fresh=True)
            tags = change(state.tags)
            try:
                self.storage.set_tags(stream_id, tags, expect_version=state.version)
            except RecordConflict:
                time.sleep(random.uniform(0, min(0.01 * (attempt + 1), 0.2)))
                continue
            updated = state.copy()
            updated.tags = tags
            updated.version = state.version + 1
            self._states[stream_id] = updated
            return updated
        raise exceptions.StreamAppendContended(
            f"tags of stream {stream_id} kept changing under concurrent writers"
        )

    def after_fork(self) -> None:
        """In a forked child: the inherited buffers belong to the parent (which stores them),
        and a lock held by one of the parent's threads would never be released here."""
        self.lock = threading.RLock()
        self.buffers.discard(set(self.buffers.streams))
        self.failure = None
        self._failing = set()

    def close(self) -> None:
        """Detach from the storage; the last engine attached to it releases it, so closing
        one of two ``Datastream`` objects over one backend object leaves the other working."""
        if not self._attached:
            return
        self._attached = False
        with _USERS_LOCK:
            remaining = _USERS.get(self.storage, 1) - 1
            if remaining:
                _USERS[self.storage] = remaining
            else:
                _USERS.pop(self.storage, None)
            _peers_changed(self.storage, remove=self)
        if not remaining:
            self.storage.close()


@contextlib.contextmanager
def _released_quietly(lock: contextlib.AbstractContextManager) -> Iterator[None]:
    """A maintenance lock whose release never raises: once a commit went through, a failed
    release (the lease then expires by itself) must not make the caller believe the commit
    failed and retry it, which would store its points twice."""
    lock.__enter__()
    try:
        yield
    except BaseException as error:
        with contextlib.suppress(Exception):  # the body's error is the one to report
            lock.__exit__(type(error), error, error.__traceback__)
        raise
    try:
        lock.__exit__(None, None, None)
    except Exception as error:  # noqa: BLE001 - reported as a warning, see above
        warn_after_commit(
            f"releasing a maintenance lock failed after the work it guarded was done"
            f" ({type(error).__name__}: {error})",
            stacklevel=4,
        )


# How many open engines use each storage object (a backend object may be shared).
_USERS: weakref.WeakKeyDictionary[Storage, int] = weakref.WeakKeyDictionary()
_USERS_LOCK = threading.Lock()
# The open engines of each storage object (for Engine.shared), under _USERS_LOCK.
_PEERS: weakref.WeakKeyDictionary[Storage, weakref.WeakSet[Engine]] = (
    weakref.WeakKeyDictionary())


def _peers_changed(storage: Storage, add: Engine | None = None,
                   remove: Engine | None = None) -> None:
    """Attach or detach an engine of ``storage``. An engine alone on it is not shared; once
    another one attaches, every engine of it is shared for good: after the other one left, the
    cached states may still hold what it changed."""
    peers = _PEERS.get(storage)
    if peers is None:
        peers = _PEERS[storage] = weakref.WeakSet()
    if add is not None:
        add.shared = len(peers) > 0
        peers.add(add)
    if remove is not None:
        peers.discard(remove)
    if len(peers) > 1:
        for engine in peers:
            engine.shared = True


def _groups(stream_ids: list[str]) -> Iterator[list[str]]:
    """The streams in groups of DOWNSAMPLE_GROUP: one conditional commit per group."""
    for offset in range(0, len(stream_ids), DOWNSAMPLE_GROUP):
        yield stream_ids[offset : offset + DOWNSAMPLE_GROUP]


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower() and len(value) == 36
    except ValueError:
        return False
