"""``Datastream``: the public facade. Validates and normalises arguments, then calls the engine.

Every check happens before anything is buffered or written, so a rejected call never changes
the store, and whatever could fail later (in a kernel, at commit) is rejected here instead.

How to use each method, with examples: the user guide, docs/guide/api.md. The exact rules are
in docs/behaviour.md, cited below as "behaviour §N".
"""

from __future__ import annotations

import contextlib
import datetime
import sys
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from . import arrow_numpy, downsamplers, exceptions, notebook
from . import tags as tag_rules
from . import values as value_types
from .engine import lifecycle
from .engine.operator_specs import DERIVE_OPERATORS
from .granularity import EPOCH, MAX_US, MIN_US, Granularity, from_us, resolve
from .lazy import LazyModule, pa, uuid
from .messages import show
from .results import Datapoints, Streams
from .storage.base import Storage, StreamExists
from .timestamps import UTC, array_us, point_us
from .units import INT64_MAX, INT64_MIN, US_PER_SECOND

_monotonic = time.monotonic
_DATETIME = datetime.datetime

# The engine loads with the first Datastream, not with ``import datastream`` (a script that
# only imports the package, or builds its constants, does not pay for it).
core = LazyModule("datastream.engine.core")
derive = LazyModule("datastream.engine.derive")
metadata = LazyModule("datastream.engine.metadata")
plain_floats = LazyModule("datastream.plain_floats")
reading = LazyModule("datastream.engine.reading")
retention_rules = LazyModule("datastream.engine.retention")
state_model = LazyModule("datastream.engine.state")
tables = LazyModule("datastream.engine.tables")

if TYPE_CHECKING:
    from .engine.core import Engine
    from .engine.state import StreamState
    from .verification import Verification


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class _NoLongerMatching(Exception):
    """A stream found by ``ensure_stream`` was changed by another writer so that its query
    no longer matches it."""


class Datastream:
    """Time-series streams identified by tags, stored in one backend.

    ``Datastream()`` uses the embedded store in memory; pass a backend
    (``datastream.backends.duckdb.Backend(path)``, ``mongodb.Backend(...)``,
    ``influxdb.Backend(...)``) to persist.

    Appends are buffered per stream and committed when a buffer holds ``buffer_points`` points
    or its oldest point is ``buffer_seconds`` old (by a background thread, also while the
    application is idle), on ``flush()``/``close()``, at interpreter exit and when an unclosed
    instance is garbage-collected. A failing commit keeps the points buffered and is retried;
    ``flush()`` reports it. While the backend fails, at most ``max_buffered_points`` points are
    accepted. ``buffered=False`` commits every append before it returns.
    """

    Granularity = Granularity
    RESERVED_TAGS = tag_rules.RESERVED_TAGS
    VALUE_DOWNSAMPLERS = downsamplers.VALUE_DOWNSAMPLERS
    TIME_DOWNSAMPLERS = downsamplers.TIME_DOWNSAMPLERS
    DERIVE_OPERATORS = DERIVE_OPERATORS
    VALUE_TYPES = value_types.VALUE_TYPES

    def __init__(
        self,
        backend: Storage | None = None,
        *,
        clock: Callable[[], datetime.datetime] | None = None,
        buffered: bool = True,
        auto_downsample: bool = False,
        buffer_points: int = 10_000,
        buffer_seconds: float = 1.0,
        max_buffered_points: int = 10_000_000,
    ) -> None:
        if backend is None:
            from .storage.duckdb import DuckDBStorage

            backend = DuckDBStorage()
        if not isinstance(backend, Storage):
            raise TypeError(f"backend must be a datastream storage backend, got {backend!r}")
        self.backend = backend
        self._clock = clock or _utc_now
        self._buffered = buffered
        self._engine = core.Engine(
            backend,
            buffer_points=buffer_points,
            buffer_seconds=buffer_seconds,
            auto_downsample=auto_downsample,
            max_buffered_points=max_buffered_points,
        )
        self._closed = False
        # single appends validate against the cached state (a shared backend reads it instead)
        self._use_lanes = buffered and not backend.concurrent_writers
        lifecycle.register(self._engine)
        self._finalizer = weakref.finalize(self, _collect_unclosed, self._engine, repr(backend))
        self._finalizer.atexit = False  # the exit flush covers live instances

    # -- lifecycle -------------------------------------------------------------------------
    def flush(self) -> None:
        """Return once every earlier append is durable and derived streams are updated;
        StreamAppendFailed when the backend refused (the points stay buffered and are
        retried)."""
        self._open()
        self._engine.flush()

    def close(self) -> None:
        """Flush and release the backend. Idempotent. If the flush fails, StreamAppendFailed
        is raised and the instance stays open (nothing buffered is dropped): call close()
        again once the backend is back."""
        if self._closed:
            return
        self._engine.flush()
        self._closed = True
        self._finalizer.detach()
        lifecycle.unregister(self._engine)
        self._engine.close()

    def __enter__(self) -> Datastream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _open(self) -> None:
        if self._closed:
            raise exceptions.StorageUnavailable("this Datastream is closed")

    @contextlib.contextmanager
    def _flushes_deferred(self) -> Iterator[None]:
        """Appends made inside buffer without the size-triggered flush, for a caller that
        flushes once after all of them (the HTTP service's group commit: one flush per group
        of requests instead of one per large request). The age trigger, the memory bound
        (``max_buffered_points``) and explicit flushes still apply."""
        buffers = self._engine.buffers
        saved = buffers.max_points
        buffers.max_points = sys.maxsize
        try:
            yield
        finally:
            buffers.max_points = saved

    def _after_write(self) -> None:
        if not self._buffered:
            self._engine.flush_exactly()
        elif self._engine.buffers.due():
            try:
                self._engine.flush()
            except exceptions.DatastreamException:
                pass  # the points stay buffered; the flusher retries, flush() reports

    def _accept(self, count: int) -> None:
        """Room for ``count`` more points (the memory bound while the backend fails)."""
        if self._buffered:
            self._engine.make_room(count)

    def _commit_call(self, buffered_ids: Iterable[str]) -> None:
        """After buffering one call's points: commit them now when unbuffered, dropping them
        if that fails (so that a retry of the call stores them exactly once)."""
        try:
            self._after_write()
        except BaseException:
            if not self._buffered:
                self._engine.buffers.discard(set(buffered_ids))
            raise

    # -- streams ---------------------------------------------------------------------------
    def ensure_stream(
        self,
        query_tags: dict[str, Any],
        tags: dict[str, Any] | None,
        value_downsamplers: list[str] | tuple[str, ...],
        highest_granularity: Any = Granularity.Seconds,
        derive_from: Any = None,
        derive_op: str | None = None,
        derive_args: dict[str, Any] | None = None,
        value_type: str | None = None,
        value_type_options: dict[str, Any] | None = None,
        derive_backprocess: bool = True,
    ) -> str:
        """The id of the stream matching ``query_tags``, created if none does (behaviour §3.3).

        ``value_downsamplers`` is a list or tuple; ``[]`` means never downsampled.
        """
        self._open()
        if not isinstance(query_tags, dict) or not query_tags:
            raise ValueError(f"query_tags must be a non-empty dict, got {show(query_tags)}")
        tag_rules.validate_tags(query_tags)
        tags = {} if tags is None else tags
        if not isinstance(tags, dict):
            raise ValueError(f"tags must be a dict, got {show(tags)}")
        tag_rules.validate_tags(tags)
        user_tags = tag_rules.deep_merge(tags, query_tags)
        tag_rules.check_size(user_tags)
        # the checks in the order of behaviour §3.3 (the old API's): granularity, downsampler
        # names, operator, value type; whether the downsamplers suit the type comes last
        highest = resolve(highest_granularity)
        _check_downsampler_names(value_downsamplers)
        request = _derive_request(derive_from, derive_op, derive_args)
        value_type = "numeric" if value_type is None else value_type
        if value_type not in value_types.VALUE_TYPES:
            raise exceptions.UnsupportedValueType(f"unsupported value type {show(value_type)}")
        options = value_types.normalise_options(value_type, value_type_options)
        stored_downsamplers = _check_downsamplers(value_downsamplers, value_type)
        with self._engine.lock:
            for _ in range(8):
                existing = self._engine.find(query_tags)
                if len(existing) > 1:
                    raise exceptions.MultipleStreamsReturned(
                        f"{len(existing)} streams match query {query_tags!r}"
                    )
                if existing:  # the old API's order: consistency before operator validation
                    self._check_consistent(existing[0], stored_downsamplers, highest, value_type,
                                           options, request)
                derivation = None
                if request is not None:
                    derivation = derive.prepare(
                        derive_from, derive_op, derive_args, highest, value_type,
                        lambda stream_id: self._engine.state(stream_id, fresh=True),
                        derive_backprocess,
                    )
                if existing:
                    reused = self._reuse(existing[0], user_tags, query_tags)
                    if reused is not None:
                        return reused
                    continue  # changed or deleted by another writer meanwhile: look again
                state = state_model.StreamState.new(
                    str(uuid.uuid4()), user_tags, stored_downsamplers, highest, value_type,
                    options, derivation)
                try:
                    return self._engine.create(state, query_tags).stream_id
                except StreamExists:
                    continue  # created by another writer meanwhile: check it and reuse it
            raise exceptions.StreamAppendContended(
                f"creating the stream for {query_tags!r} kept racing with other writers"
            )

    def _check_consistent(
        self,
        state: StreamState,
        stored_downsamplers: list[str],
        highest: Any,
        value_type: str,
        options: dict[str, Any],
        request: tuple[str, list[Any]] | None,
    ) -> None:
        """InconsistentStreamConfiguration when an existing stream differs from the request;
        checked before any operator-specific validation of the new configuration."""
        differences = []
        if state.value_type != value_type:
            differences.append("value_type")
        if state.options != options:
            differences.append("value_type_options")
        if state.highest != highest:
            differences.append("highest_granularity")
        if set(state.value_downsamplers) != set(stored_downsamplers):
            differences.append("value_downsamplers")
        stored = state.derivation
        if (stored is None) != (request is None):
            differences.append("derive_from")
        elif stored is not None:
            op, source_ids = request
            if stored.op != op:
                differences.append("derive_op")
            if not _same_members(stored.stream_ids, source_ids):
                differences.append("derive_from")
        if differences:
            raise exceptions.InconsistentStreamConfiguration(
                f"stream {state.stream_id} exists with a different {', '.join(differences)}"
            )

    def _reuse(self, state: StreamState, user_tags: dict[str, Any],
               query_tags: dict[str, Any]) -> str | None:
        """The stored tags become ``user_tags`` (`tags` overlaid by the query: replace, not
        merge), as a compare-and-set: None when another writer meanwhile deleted the stream
        or changed its tags so that it no longer matches the query (the call then looks again,
        as if it had come after that writer)."""
        if state.tags == user_tags:
            return state.stream_id

        def replaced(stored: dict[str, Any]) -> dict[str, Any]:
            if not tag_rules.matches(stored, query_tags):
                raise _NoLongerMatching
            return user_tags

        try:
            self._engine.change_tags(state.stream_id, replaced)
        except (_NoLongerMatching, exceptions.StreamNotFound):
            return None
        return state.stream_id

    def get_tags(self, stream_id: str) -> dict[str, Any]:
        """User tags merged with the reserved metadata fields (behaviour §3.1)."""
        self._open()
        with self._engine.lock:
            (state,) = self._seeing_buffers(
                lambda: [self._engine.state(stream_id, fresh=True)])
            return self._public(state)

    def _public(self, state: StreamState) -> dict[str, Any]:
        return metadata.public_tags(state, *self._engine.pending_extent(state))

    def _seeing_buffers(self, load: Callable[[], list[StreamState]]) -> list[StreamState]:
        """The states ``load`` gives, with what this object's buffered points derive already
        in the metadata of derived ones (behaviour §4.3; a derived stream has no buffer of its
        own): the buffers are flushed first and the states loaded again, or while the backend
        refuses the commit, the states that commit would write are shown."""
        states = load()
        if not self._engine.buffers.points or all(s.derivation is None for s in states):
            return states
        with contextlib.suppress(exceptions.StreamAppendFailed):
            self._engine.flush_for([state.stream_id for state in states])
        previewed = self._engine.preview().states if self._engine.buffers.points else {}
        return [previewed.get(state.stream_id, state) for state in load()]

    def update_tags(self, stream_id: str, tags: dict[str, Any]) -> None:
        """Deep-merge ``tags`` into the stream's user tags (atomically against other
        writers)."""
        self._open()
        if not isinstance(tags, dict):
            raise ValueError(f"tags must be a dict, got {show(tags)}")
        tag_rules.validate_tags(tags)

        def merged(stored: dict[str, Any]) -> dict[str, Any]:
            result = tag_rules.deep_merge(stored, tags)
            tag_rules.check_size(result, f"tags of stream {stream_id}")
            return result

        with self._engine.lock:
            self._engine.change_tags(stream_id, merged)

    def remove_tag(self, stream_id: str, tag: Any) -> None:
        """Remove the tag paths named by the keys of ``tag`` (a str names one top-level key)."""
        self._open()
        paths = {tag: None} if isinstance(tag, str) else tag
        if not isinstance(paths, dict):
            raise ValueError(f"tag must be a dict of paths or a key, got {show(tag)}")
        tag_rules.validate_tags(paths)
        with self._engine.lock:
            self._engine.change_tags(stream_id, lambda stored: tag_rules.remove_paths(stored,
                                                                                      paths))

    def clear_tags(self, stream_id: str) -> None:
        """Remove every user tag."""
        self._open()
        with self._engine.lock:
            self._engine.change_tags(stream_id, lambda stored: {})

    def find_streams(self, query_tags: dict[str, Any] | None = None) -> Streams:
        """Streams whose user tags match ``query_tags`` (behaviour §3.4), in creation order."""
        self._open()
        with self._engine.lock:
            found = [self._public(state)
                     for state in self._seeing_buffers(lambda: self._find(query_tags, False))]
        return Streams(lambda: found)

    def _find(self, query_tags: Any, allow_stream_id: bool) -> list[StreamState]:
        """Streams matching a query (behaviour §3.4); ``allow_stream_id`` lets a top-level
        ``stream_id`` select ids, otherwise it is a user-tag path like any reserved name."""
        query = tag_rules.validate_query(query_tags, allow_stream_id=allow_stream_id)
        query = tag_rules.without_reserved(query, allow_stream_id=allow_stream_id)
        return [] if query is None else self._engine.find(query)

    def delete_streams(self, query_tags: dict[str, Any] | None = None) -> None:
        """Delete matching streams (all when None) with all their datapoints, atomically."""
        self._open()
        with self._engine.lock:
            states = self._find(query_tags, True)
            if states:
                self._engine.delete([state.stream_id for state in states])

    # -- appending -------------------------------------------------------------------------
    def append(
        self,
        stream_id: str,
        value: Any,
        timestamp: datetime.datetime | None = None,
        check_timestamp: bool = True,
    ) -> dict[str, Any]:
        """Append one datapoint to a stream (behaviour §4.1).

        ``timestamp``: a ``datetime`` (naive means UTC), a ``pandas.Timestamp``, a
        ``numpy.datetime64`` or an ISO-8601 string, kept to the microsecond; None means the
        clock's now. A bare number is refused (its unit would be a guess): for epoch numbers use
        ``append_arrays(..., unit=)``. With ``check_timestamp`` the timestamp may not be earlier
        than the stream's latest point; a timestamp in the already downsampled (frozen) range
        is refused either way.

        ``value``: for numeric streams a number, None or NaN (a null point), or a dict of
        already downsampled values; nominal and graph streams take JSON data.

        The point is buffered and committed by ``flush()``, ``close()`` or the background
        flusher. Returns ``{'stream_id', 'granularity', 'datapoint': {'t', 'v'}}`` with the
        normalised timestamp and value.

        Raises ``StreamNotFound`` (unknown stream), ``AppendToDerivedStreamNotAllowed``,
        ``InvalidTimestamp``, ``TypeError``/``ValueError`` for an invalid value, and
        ``StorageUnavailable`` once closed. Nothing is buffered when it raises.
        """
        if self._closed:
            raise exceptions.StorageUnavailable("this Datastream is closed")
        engine = self._engine
        lock = engine.lock
        lock.acquire()  # not `with`: an RLock's __exit__ costs a few hundred ns per point
        try:
            if timestamp is None:
                timestamp = self._clock()
            # The per-point lane of a buffered append to a stream whose cached state is current:
            # validated against that state, no storage read, nothing allocated beyond the
            # buffer slot and the result. Whatever needs more (an unknown, stale or derived
            # stream, a point before the latest or in the frozen range, a full buffer) goes
            # the full way below, which decides and raises as always.
            lane = None
            if self._use_lanes and type(stream_id) is str:
                lane = engine.lanes.get(stream_id)
                if lane is None or engine.shared:  # built, or checked against storage, there
                    lane = engine.lane(stream_id)
            if lane is not None and not lane.derived:
                if type(timestamp) is _DATETIME and timestamp.tzinfo is UTC:
                    delta = timestamp - EPOCH  # exact integer µs, as timestamps.utc_us
                    timestamp_us = (delta.days * 86400 + delta.seconds) * US_PER_SECOND + (
                        delta.microseconds)
                    stamp = timestamp if MIN_US <= timestamp_us <= MAX_US else None
                else:
                    timestamp_us = point_us(timestamp)
                    stamp = from_us(timestamp_us)
                buffers = engine.buffers
                buffer = buffers.streams.get(stream_id)
                if (
                    stamp is not None
                    and timestamp_us >= lane.floor  # the stored latest and the frozen bound
                    and (buffer is None or buffer.latest is None or timestamp_us >= buffer.latest)
                    and buffers.points < engine.max_buffered_points
                ):
                    kind = type(value)
                    if lane.plain and (
                        (kind is float and value - value == 0.0)  # finite
                        or (kind is int and INT64_MIN <= value <= INT64_MAX)
                    ):
                        slot = value
                    else:
                        encoded = value_types.encode_value(
                            value, lane.value_type, lane.options, lane.value_keys, stream_id
                        )
                        slot = value_types.slot(encoded)
                        value = value_types.decode_value(encoded, lane.value_type, lane.options)
                    if (buffer is not None and buffer.latest is not None
                            and buffers.started is not None):
                        # add_point inlined: a buffer with points, this one at or after them
                        buffer.timestamps.append(timestamp_us)
                        buffer.slots.append(slot)
                        buffer.points += 1
                        buffer.latest = timestamp_us
                        buffers.points += 1
                        if buffers.points >= buffers.max_points or (
                                # the age every 128 points (the flusher thread watches it too)
                                not buffers.points & 127
                                and _monotonic() - buffers.started >= buffers.max_age_seconds):
                            self._after_write()
                    elif buffers.add_point(stream_id, timestamp_us, slot, buffer):
                        self._after_write()
                    return {
                        "stream_id": stream_id,
                        "granularity": lane.highest,
                        "datapoint": {"t": stamp, "v": value},
                    }
            state, timestamp_us, encoded = self._prepare_point(
                stream_id, value, timestamp, check_timestamp, {}
            )
            self._accept(1)
            self._engine.buffers.add_point(state.stream_id, timestamp_us,
                                           value_types.slot(encoded))
            self._commit_call([state.stream_id])
        finally:
            lock.release()
        return {
            "stream_id": state.stream_id,
            "granularity": state.highest,
            "datapoint": {"t": from_us(timestamp_us), "v": value_types.decode_value(
                encoded, state.value_type, state.options)},
        }

    def append_multiple(self, datapoints: Iterable[dict[str, Any]]) -> None:
        """Append many datapoints, all or nothing (behaviour §4.2).

        ``datapoints``: dicts ``{'stream_id', 'value', 'timestamp'?, 'check_timestamp'?}``,
        streams mixed at will, each following the rules of :meth:`append`. Every item is checked
        before any is buffered: one invalid item (or an unknown key, ``ValueError``) raises and
        none is stored.
        """
        self._open()
        items = list(datapoints)
        with self._engine.lock:
            latest_in_call: dict[str, int] = {}
            prepared = []
            for position, item in enumerate(items):
                if not isinstance(item, dict) or "stream_id" not in item or "value" not in item:
                    raise ValueError(
                        f"datapoint #{position} must be a dict with 'stream_id' and 'value', "
                        f"got {show(item)}"
                    )
                unknown = set(item) - {"stream_id", "value", "timestamp", "check_timestamp"}
                if unknown:
                    raise ValueError(f"datapoint #{position} has unknown keys {sorted(unknown)}")
                prepared.append(
                    self._prepare_point(
                        item["stream_id"], item["value"], item.get("timestamp"),
                        item.get("check_timestamp", True), latest_in_call,
                    )
                )
            if not prepared:
                return
            self._accept(len(prepared))
            for state, timestamp_us, encoded in prepared:
                self._engine.buffers.add_point(state.stream_id, timestamp_us,
                                               value_types.slot(encoded))
            self._commit_call({state.stream_id for state, _, _ in prepared})

    def _prepare_point(
        self,
        stream_id: str,
        value: Any,
        timestamp: Any,
        check_timestamp: bool,
        latest_in_call: dict[str, int],
    ) -> tuple[StreamState, int, tuple]:
        """Validate one datapoint against its stream; nothing is buffered here."""
        state = self._writable(stream_id, latest_in_call)
        timestamp_us = point_us(self._clock() if timestamp is None else timestamp)
        self._check_time(state, timestamp_us, timestamp_us, check_timestamp, latest_in_call)
        encoded = value_types.encode_value(
            value, state.value_type, state.options, state.value_keys, stream_id
        )
        return state, timestamp_us, encoded

    def _writable(self, stream_id: str, seen_in_call: dict[str, int]) -> StreamState:
        """The stream's state for an append: on a shared backend read from the store once per
        call (another process may have appended or downsampled meanwhile)."""
        fresh = self.backend.concurrent_writers and (
            not isinstance(stream_id, str) or stream_id not in seen_in_call)  # any id: state()
        # raises StreamNotFound for a malformed one, unhashable ones (a dict, a list) too
        try:
            state = self._engine.state(stream_id, fresh=fresh)
        except exceptions.StorageUnavailable:
            # The backend is down: a buffered append still goes through on what this object
            # knows of the stream (the commit rebuilds from the stored state once it is back,
            # folding the points into anything closed meanwhile).
            state = self._engine.cached_state(stream_id) if self._buffered else None
            if state is None:
                raise
        if state.derivation is not None:
            raise exceptions.AppendToDerivedStreamNotAllowed(
                f"stream {stream_id} is derived; its datapoints are computed, not appended"
            )
        return state

    def _check_time(
        self,
        state: StreamState,
        earliest_us: int,
        latest_us: int,
        check_timestamp: bool,
        latest_in_call: dict[str, int],
    ) -> None:
        """Reject timestamps older than the stream's latest, inside its downsampled range, or
        (late points) inside the downsampled range of a stream derived from it."""
        stream_id = state.stream_id
        _, latest = self._engine.pending_extent(state)
        if stream_id in latest_in_call:
            latest = latest_in_call[stream_id] if latest is None else max(
                latest, latest_in_call[stream_id])
        if check_timestamp and latest is not None and earliest_us < latest:
            raise exceptions.InvalidTimestamp(
                f"timestamp {from_us(earliest_us).isoformat()} of stream {stream_id} is older "
                f"than its latest datapoint {from_us(latest).isoformat()}"
            )
        frozen = state.frozen_until
        if frozen is not None and earliest_us < frozen:
            raise exceptions.InvalidTimestamp(
                f"timestamp {from_us(earliest_us).isoformat()} of stream {stream_id} falls "
                f"in its already downsampled range (before {from_us(frozen).isoformat()})"
            )
        if latest is not None and earliest_us < latest and state.contributes_to:
            self._check_derived_frozen(state, earliest_us)
        latest_in_call[stream_id] = latest_us if stream_id not in latest_in_call else max(
            latest_us, latest_in_call[stream_id])

    def _check_derived_frozen(self, source: StreamState, changed_us: int) -> None:
        """A late point re-derives the streams fed by it from its time on: refuse it when that
        reaches into one of their downsampled ranges (transitively)."""
        fresh = self.backend.concurrent_writers
        queue = [(source, changed_us)]
        seen: set[str] = set()
        while queue:
            state, changed = queue.pop()
            for derived_id in state.contributes_to:
                if derived_id in seen:
                    continue
                seen.add(derived_id)
                try:
                    derived = self._engine.state(derived_id, fresh=fresh)
                except exceptions.StreamNotFound:
                    continue
                feeding = [s for s in derived.derivation.sources if s.stream_id == state.stream_id]
                if not any(s.level == state.highest for s in feeding):
                    continue  # fed by closed buckets only, which the point cannot reach
                affected = derived.highest.floor_us(changed)
                frozen = derived.frozen_until
                if frozen is not None and affected < frozen:
                    raise exceptions.InvalidTimestamp(
                        f"timestamp {from_us(changed_us).isoformat()} of stream"
                        f" {source.stream_id} would change derived stream {derived_id} inside"
                        f" its already downsampled range (before {from_us(frozen).isoformat()})"
                    )
                queue.append((derived, affected))

    def append_arrays(
        self,
        stream_id: str,
        timestamps: Any,
        values: Any,
        check_timestamp: bool = True,
        unit: str | None = None,
    ) -> int:
        """Append columns of timestamps and values to one stream, vectorised (behaviour §4.4).

        ``timestamps``: datetime64 of any unit or Arrow timestamps, or integer epochs counted
        in ``unit`` (``'s'``, ``'ms'``, ``'us'``, ``'ns'``; required for integers);
        ``values``: numbers (NaN = null) or, for nominal/graph streams, a sequence of values.
        All or nothing; returns the number of points appended.
        """
        self._open()
        with self._engine.lock:
            state, table, earliest, latest = self._prepare_arrays(
                stream_id, timestamps, unit, values, check_timestamp, {}
            )
            if table.num_rows:
                self._accept(table.num_rows)
                self._engine.buffers.add_table(state.stream_id, table, earliest, latest)
                self._commit_call([state.stream_id])
            return table.num_rows

    def _prepare_arrays(
        self,
        stream_id: str,
        timestamps: Any,
        unit: str | None,
        column: Any,
        check_timestamp: bool,
        latest_in_call: dict[str, int],
    ) -> tuple[StreamState, pa.Table, int, int]:
        state = self._writable(stream_id, latest_in_call)
        plain = None
        if state.value_type == "numeric" and not value_types.is_high_accuracy(state.options):
            plain = plain_floats.prepare(timestamps, unit, column)
        if plain is not None:
            if check_timestamp and plain.fall:
                raise exceptions.InvalidTimestamp(
                    f"timestamps of stream {stream_id} must not decrease (position {plain.fall})"
                )
            first = plain.first if check_timestamp else plain.earliest
            self._check_time(state, min(first, plain.earliest), plain.latest, check_timestamp,
                             latest_in_call)
            return state, plain.table, plain.earliest, plain.latest
        timestamps_us = array_us(timestamps, unit)
        table = value_types.encode_arrays(
            timestamps_us, column, state.value_type, state.options, stream_id,
            value_keys=state.value_keys,
        )
        if not len(timestamps_us):
            return state, table, 0, 0
        if check_timestamp and np.any(timestamps_us[1:] < timestamps_us[:-1]):
            position = int(np.argmax(timestamps_us[1:] < timestamps_us[:-1])) + 1
            raise exceptions.InvalidTimestamp(
                f"timestamps of stream {stream_id} must not decrease (position {position})"
            )
        if check_timestamp:  # in order: the ends are the extremes
            earliest, latest = int(timestamps_us[0]), int(timestamps_us[-1])
        else:
            earliest, latest = int(timestamps_us.min()), int(timestamps_us.max())
        first = int(timestamps_us[0]) if check_timestamp else earliest
        self._check_time(state, min(first, earliest), latest, check_timestamp, latest_in_call)
        return state, table, earliest, latest

    def append_table(
        self, table: Any, check_timestamp: bool = True, unit: str | None = None
    ) -> int:
        """Append a table with columns ``stream_id``, ``timestamp``, ``value`` (pyarrow, pandas
        or polars), all or nothing. An integer ``timestamp`` column needs ``unit`` as in
        :meth:`append_arrays`. Returns the number of points appended."""
        self._open()
        objects = reading.python_values(table)
        arrow = reading.to_arrow_table(table if objects is None else table.drop(columns="value"))
        missing = {"stream_id", "timestamp", "value"} - set(arrow.column_names)
        if objects is not None:
            missing.discard("value")
        if missing:
            raise ValueError(f"table lacks the columns {sorted(missing)}")
        with self._engine.lock:
            prepared = None
            if objects is None:
                try:
                    prepared = self._prepare_numeric_table(arrow, unit, check_timestamp)
                except (exceptions.DatastreamException, TypeError, ValueError):
                    prepared = None  # redone stream by stream below: its errors name the stream
            if prepared is None:
                prepared = []
                latest_in_call: dict[str, int] = {}
                for stream_id, rows in reading.stream_rows(arrow):
                    values = (arrow.column("value").take(arrow_numpy.from_numpy(rows))
                              if objects is None else objects[rows])
                    prepared.append(
                        self._prepare_arrays(
                            stream_id, arrow.column("timestamp").take(
                                arrow_numpy.from_numpy(rows)), unit, values,
                            check_timestamp, latest_in_call,
                        )
                    )
            total = sum(part.num_rows for _, part, _, _ in prepared)
            if not total:
                return 0
            self._accept(total)
            for state, part, earliest, latest in prepared:
                if part.num_rows:
                    self._engine.buffers.add_table(state.stream_id, part, earliest, latest)
            self._commit_call({state.stream_id for state, _, _, _ in prepared})
            return total

    def _prepare_numeric_table(
        self, arrow: pa.Table, unit: str | None, check_timestamp: bool
    ) -> list[tuple[StreamState, pa.Table, int, int]] | None:
        """``append_table`` over many numeric streams at once: the timestamps converted and the
        values encoded once for the whole table (per precision), each stream's rows then a
        slice of the result sorted by stream; only the checks that need a stream's state run
        per stream. None when a stream is not numeric (the per-stream path handles it); any
        refusal raises, and the caller redoes the call stream by stream for its message."""
        ids, order, starts = reading.stream_groups(arrow)
        if len(ids) < 2:
            return None
        latest_in_call: dict[str, int] = {}
        states = [self._writable(stream_id, latest_in_call) for stream_id in ids]
        if any(state.value_type != "numeric" for state in states):
            return None
        values = value_types.plain_numbers(arrow.column("value"))
        if values is None:
            return None
        t_us = array_us(arrow.column("timestamp"), unit)
        by_precision = {}
        for state in states:
            precise = value_types.is_high_accuracy(state.options)
            if precise not in by_precision:
                encoded = value_types.encode_arrays(t_us, values, "numeric", state.options, None)
                by_precision[precise] = encoded.take(pa.array(order))
        t_sorted = t_us[order]
        ends = np.append(starts[1:], len(t_sorted))
        if check_timestamp:
            falls = np.flatnonzero(t_sorted[1:] < t_sorted[:-1]) + 1
            falls = falls[~np.isin(falls, starts)]  # a new stream may start lower
            if falls.size:
                raise exceptions.InvalidTimestamp("timestamps decrease within a stream")
        earliest = np.minimum.reduceat(t_sorted, starts)
        latest = np.maximum.reduceat(t_sorted, starts)
        prepared = []
        for index, state in enumerate(states):
            start, end = int(starts[index]), int(ends[index])
            low, high = int(earliest[index]), int(latest[index])
            first = int(t_sorted[start]) if check_timestamp else low
            self._check_time(state, min(first, low), high, check_timestamp, latest_in_call)
            rows = by_precision[value_types.is_high_accuracy(state.options)]
            prepared.append((state, rows.slice(start, end - start), low, high))
        return prepared

    # -- reading ---------------------------------------------------------------------------
    def get_data(
        self,
        stream_id: str,
        granularity: Any,
        start: datetime.datetime | None = None,
        end: datetime.datetime | None = None,
        start_exclusive: datetime.datetime | None = None,
        end_exclusive: datetime.datetime | None = None,
        reverse: bool = False,
        value_downsamplers: Iterable[str] | None = None,
        time_downsamplers: Iterable[str] | None = None,
    ) -> Datapoints:
        """Datapoints of one stream at one granularity in a time range (behaviour §6).

        Give exactly one of ``start``/``start_exclusive`` and at most one of
        ``end``/``end_exclusive`` (else ``AttributeError``); naive bounds are UTC. A
        granularity at or finer than the stream's highest returns raw points
        ``{'t', 'v'}``; a coarser one the closed buckets ``{'t': {...}, 'v': {...}}``, whose
        bounds compare bucket starts. ``value_downsamplers``/``time_downsamplers`` keep only
        those keys. Returns a lazy, list-like ``Datapoints`` (``to_arrow()``, ``to_pandas()``,
        ``to_numpy()``).
        """
        self._open()
        if (start is None) == (start_exclusive is None):
            raise AttributeError("exactly one of start and start_exclusive is required")
        if end is not None and end_exclusive is not None:
            raise AttributeError("at most one of end and end_exclusive may be given")
        level, value_names, time_names = _read_request(
            granularity, value_downsamplers, time_downsamplers
        )
        with self._engine.lock:
            self._engine.state(stream_id)
            query = reading.Range.from_arguments(start, end, start_exclusive, end_exclusive)
            try:
                self._engine.flush_for([stream_id])
            except exceptions.StreamAppendFailed:
                pass
            if self._engine.buffers.points:
                # The backend refused the commit (flush() reports it): the read still sees
                # every earlier append, through the change set the flush would have written.
                changes = self._engine.preview()
                if stream_id in changes.states:
                    return reading.datapoints(
                        changes.view, changes.states[stream_id], level, query, reverse,
                        value_names, time_names,
                    )
            state = self._engine.state(stream_id, fresh=True)
            return reading.datapoints(
                self.backend, state, level, query, reverse, value_names, time_names
            )

    def get_table(
        self,
        query_tags: dict[str, Any] | None,
        granularity: Any,
        start: datetime.datetime | None = None,
        end: datetime.datetime | None = None,
        start_exclusive: datetime.datetime | None = None,
        end_exclusive: datetime.datetime | None = None,
        value_downsamplers: Iterable[str] | None = None,
        time_downsamplers: Iterable[str] | None = None,
        tags: Iterable[Any] = (),
    ) -> pa.Table:
        """Every stream matching ``query_tags`` as one long Arrow table (behaviour §6.4).

        Columns: ``stream_id``, one per tag path in ``tags`` (a nested path as a tuple, named
        with dots, null where a stream lacks it), then the columns of ``Datapoints.to_arrow``
        (``t`` and ``v`` for streams read raw, ``t`` and one column per downsampler for
        levels). Rows are ordered by stream id, then time. Range rules as ``get_data``; with
        neither ``start`` nor ``start_exclusive`` the range starts at the first point.
        """
        self._open()
        if start is not None and start_exclusive is not None:
            raise AttributeError("at most one of start and start_exclusive may be given")
        if end is not None and end_exclusive is not None:
            raise AttributeError("at most one of end and end_exclusive may be given")
        level, value_names, time_names = _read_request(
            granularity, value_downsamplers, time_downsamplers
        )
        paths = tables.tag_paths(tags)
        for path in paths:  # a key no tag can have ('a.b', '$x', 'a__b') would name nothing
            for key in path:
                tag_rules.check_key(key, f"tags path {path!r}")
        if start is None and start_exclusive is None:
            start = datetime.datetime.min
        query = reading.Range.from_arguments(start, end, start_exclusive, end_exclusive)
        with self._engine.lock:
            found = sorted(self._find(query_tags, True), key=lambda state: state.stream_id)
            ids = [state.stream_id for state in found]
            with contextlib.suppress(exceptions.StreamAppendFailed):
                self._engine.flush_for(ids)
            storage, states = self.backend, {}
            if self._engine.buffers.points:
                # The backend refused the commit: read through the change set the flush
                # would have written, as get_data does.
                changes = self._engine.preview()
                storage, states = changes.view, changes.states
            fresh = [states.get(sid) or self._engine.state(sid, fresh=True) for sid in ids]
            table = tables.long_table(
                storage, fresh, level, query, value_names, time_names, paths, self._public
            )
        notebook.register_table_html()  # compact display in Jupyter (behaviour §6.5)
        return table

    # -- maintenance -----------------------------------------------------------------------
    def downsample_streams(
        self,
        query_tags: dict[str, Any] | None = None,
        until: datetime.datetime | None = None,
        return_datapoints: bool = False,
        filter_stream: Callable[[dict[str, Any]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Materialise every bucket that may close before ``until`` (behaviour §5.5)."""
        self._open()
        tag_rules.validate_query(query_tags, allow_stream_id=True)
        until_us = point_us(self._clock() if until is None else until, "until")
        with self._engine.lock:
            if filter_stream is None:
                states = self._find(query_tags, True)
            else:  # it judges the metadata a find_streams would show
                states = [s for s in self._seeing_buffers(lambda: self._find(query_tags, True))
                          if filter_stream(self._public(s))]
            states = [s for s in states if not s.pending_backprocess]
            closed = self._engine.downsample([s.stream_id for s in states], until_us)
            kept = [s.stream_id for s in states if retention_rules.is_set(s)]
            if kept:  # behaviour §11: retention follows downsampling
                self._engine.apply_retention(kept, point_us(self._clock(), "the clock's now"))
            if not return_datapoints:
                return []
            return reading.new_datapoints(closed, {s.stream_id: s for s in states})

    def backprocess_streams(self, query_tags: dict[str, Any] | None = None) -> list[str]:
        """Replay source history into matching derived streams (behaviour §7); idempotent."""
        self._open()
        tag_rules.validate_query(query_tags, allow_stream_id=True)
        with self._engine.lock:
            states = self._find(query_tags, True)
            return self._engine.backprocess([s.stream_id for s in states])

    # -- lifecycle (behaviour §11) ---------------------------------------------------------
    def set_retention(self, query_tags: dict[str, Any] | None,
                      retention: dict[Any, datetime.timedelta | None]) -> None:
        """Keep, per granularity of the matching streams, that much history back from the
        clock's now (None: forever). Levels not named keep their setting. Enforced by
        :meth:`apply_retention` and after :meth:`downsample_streams`."""
        self._open()
        parsed = retention_rules.parse(retention)
        tag_rules.validate_query(query_tags, allow_stream_id=True)
        with self._engine.lock:
            states = self._find(query_tags, True)
            for state in states:  # every stream is checked before any is changed
                retention_rules.check_applies(state, parsed)
            self._engine.set_retention([s.stream_id for s in states], parsed)

    def apply_retention(self, query_tags: dict[str, Any] | None = None) -> dict[str, Any]:
        """Delete, per level, what is older than its retention and no coarser level still
        needs. Returns ``{'streams': n, 'deleted': {granularity name: count}}``: ``n`` streams
        matched, and per granularity with a retention the raw points deleted or the buckets
        that reads no longer show."""
        self._open()
        tag_rules.validate_query(query_tags, allow_stream_id=True)
        now_us = point_us(self._clock(), "the clock's now")
        with self._engine.lock:
            states = self._find(query_tags, True)
            kept = [s.stream_id for s in states if retention_rules.is_set(s)]
            deleted = self._engine.apply_retention(kept, now_us) if kept else {}
        return {"streams": len(states), "deleted": deleted}

    def reopen_streams(self, query_tags: dict[str, Any] | None,
                       start: datetime.datetime) -> list[str]:
        """Discard the downsampled buckets of the matching streams (and of every stream
        derived from them) at or after ``start`` and move ``downsampled_until`` back there, so
        late points can be appended with ``check_timestamp=False``; the next
        :meth:`downsample_streams` recomputes them. Returns the ids of the streams whose
        ``downsampled_until`` moved, sources before the streams derived from them.
        InvalidTimestamp (nothing changed) when the raw points needed were deleted by
        retention."""
        self._open()
        tag_rules.validate_query(query_tags, allow_stream_id=True)
        start_us = point_us(start, "start")
        with self._engine.lock:
            states = self._find(query_tags, True)
            if not states:
                return []
            return self._engine.reopen([s.stream_id for s in states], start_us)

    def verify(self, query_tags: dict[str, Any] | None = None) -> Verification:
        """Recompute every materialised bucket of the matching streams from their raw data,
        and every derived stream from its sources, independently of the code that stored them
        (behaviour §10). The result lists each disagreement and is falsy when there is none: counts
        and Decimals must match exactly, floats within 1e-9 relative or, near 0, within 1e-12
        of the magnitude of the terms they were computed from."""
        self._open()
        tag_rules.validate_query(query_tags, allow_stream_id=True)
        with self._engine.lock:
            states = self._find(query_tags, True)
            self._engine.flush_for([state.stream_id for state in states])
            records = [state.record() for state in self._find(query_tags, True)]
            from .verification import verify  # pyarrow.compute and the oracle load on first use

            return verify(self.backend, records)


def _check_downsampler_names(names: Any) -> None:
    """``value_downsamplers`` is a list or tuple of known names (behaviour §3.3 step 3)."""
    if not isinstance(names, list | tuple):
        raise TypeError(
            "value_downsamplers must be a list or tuple of names ([] means never downsampled),"
            f" got {show(names)}"
        )
    for name in names:
        if not isinstance(name, str) or name not in downsamplers.VALUE_DOWNSAMPLERS:
            raise exceptions.UnsupportedDownsampler(
                f"unsupported value downsampler {show(name)}"
            )


def _check_downsamplers(names: Any, value_type: str) -> list[str]:
    """The stored downsampler list (requested plus dependencies, canonical order) of names
    already checked by :func:`_check_downsampler_names`, each of which must suit
    ``value_type``."""
    for name in names:
        if name not in downsamplers.DOWNSAMPLERS_BY_VALUE_TYPE[value_type]:
            raise exceptions.UnsupportedDownsampler(
                f"value downsampler {name!r} does not support value type {value_type!r}"
            )
    chosen = downsamplers.with_dependencies(names)
    return [name for name in downsamplers.VALUE_DOWNSAMPLERS if name in chosen]


def _derive_request(
    derive_from: Any, derive_op: Any, derive_args: Any
) -> tuple[str, list[Any]] | None:
    """The operator and source ids of a derived-stream request (None: not derived), after the
    checks that need no stream (behaviour §3.3 step 4). Operator-specific validation comes later,
    once an existing stream has been compared with the request."""
    if derive_from is None and derive_op is None:
        return None
    if derive_op is None:
        raise ValueError("derive_op is required when derive_from is given")
    if not isinstance(derive_op, str) or derive_op not in DERIVE_OPERATORS:
        raise exceptions.UnsupportedDeriveOperator(
            f"unsupported derive operator {show(derive_op)}"
        )
    if derive_from is None:
        raise ValueError(f"derive operator {derive_op!r} needs derive_from")
    if derive_args is not None and not isinstance(derive_args, dict):
        raise exceptions.InvalidOperatorArguments(
            f"derive_args must be a dict, got {show(derive_args)}"
        )
    ids = []
    for item in derive.source_items(derive_from):
        if isinstance(item, dict) and "stream" not in item:
            raise exceptions.InvalidOperatorArguments(
                f"a derive_from entry needs a 'stream' key, got {show(item)}"
            )
        ids.append(item["stream"] if isinstance(item, dict) else item)
    return derive_op, ids


def _same_members(stored: list[str], requested: list[Any]) -> bool:
    """Same set of ids (requested ones may be anything a caller passed, even unhashable)."""
    return all(item in stored for item in requested) and all(i in requested for i in stored)


def _read_request(
    granularity: Any, value_downsamplers: Any, time_downsamplers: Any
) -> tuple[Any, list[str] | None, list[str] | None]:
    """The level and downsampler filters of a read (``get_data``, ``get_table``), checked."""
    return (
        resolve(granularity),
        _check_filter(value_downsamplers, downsamplers.VALUE_DOWNSAMPLERS, "value"),
        _check_filter(time_downsamplers, downsamplers.TIME_DOWNSAMPLERS, "time"),
    )


def _check_filter(
    names: Iterable[str] | None, known: dict[str, str], kind: str
) -> list[str] | None:
    if names is None:
        return None
    names = [names] if isinstance(names, str) else list(names)
    for name in names:
        if name not in known:
            raise exceptions.UnsupportedDownsampler(
                f"unsupported {kind} downsampler {show(name)}"
            )
    return list(dict.fromkeys(names))  # a name given twice is one column


def _collect_unclosed(engine: Engine, backend: str) -> None:
    """An unclosed Datastream was garbage-collected: store its buffers, then release."""
    warnings.warn(
        f"unclosed Datastream on {backend}: its buffered points were flushed at garbage"
        " collection; call close() or use a with block",
        ResourceWarning,
        stacklevel=2,
    )
    lifecycle.report_failure(engine, "when an unclosed Datastream was garbage-collected")
    lifecycle.unregister(engine)
    try:
        engine.close()
    except Exception:  # noqa: BLE001 - nothing to report to during garbage collection
        pass
