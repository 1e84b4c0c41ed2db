"""``Datastream``: the public facade. Validates and normalises arguments, then calls the engine.

Every check happens before anything is written, so a rejected call never changes the store.
"""

from __future__ import annotations

import atexit
import datetime
import uuid
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pyarrow as pa

from . import downsamplers, exceptions, verification
from . import tags as tag_rules
from . import values as value_types
from .engine import derive, reading
from .engine.core import Engine, first_level
from .engine.metadata import new_meta, public_tags
from .granularity import Granularity, GranularityLevel, from_us, resolve
from .results import Datapoints, Streams
from .storage.base import Storage, StreamRecord
from .timestamps import point_us


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class Datastream:
    """Time-series streams identified by tags, stored in one backend.

    ``Datastream()`` uses the embedded store in memory; pass a backend
    (``datastream.backends.duckdb.Backend(path)``, ``mongodb.Backend(...)``,
    ``influxdb.Backend(...)``) to persist.
    """

    Granularity = Granularity
    RESERVED_TAGS = tag_rules.RESERVED_TAGS
    VALUE_DOWNSAMPLERS = downsamplers.VALUE_DOWNSAMPLERS
    TIME_DOWNSAMPLERS = downsamplers.TIME_DOWNSAMPLERS
    DERIVE_OPERATORS = derive.DERIVE_OPERATORS
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
    ) -> None:
        if backend is None:
            from .storage.duckdb import DuckDBStorage

            backend = DuckDBStorage()
        self.backend = backend
        self._clock = clock or _utc_now
        self._buffered = buffered
        self._engine = Engine(
            backend,
            buffer_points=buffer_points,
            buffer_seconds=buffer_seconds,
            auto_downsample=auto_downsample,
        )
        self._derive = derive.Deriver(self._engine)
        self._engine.derive_hook = self._derive.on_flush
        self._engine.level_hook = self._derive.on_levels
        self._closed = False
        atexit.register(_flush_at_exit, weakref.ref(self))

    # -- lifecycle -------------------------------------------------------------------------
    def flush(self) -> None:
        """Return once every earlier append is durable and derived streams are updated."""
        with self._engine.lock:
            self._engine.flush()

    def close(self) -> None:
        """Flush and release the backend. Idempotent."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self.backend.close()

    def __enter__(self) -> Datastream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _after_write(self) -> None:
        if self._buffered:
            self._engine.maybe_flush()
        else:
            self._engine.flush()

    # -- streams ---------------------------------------------------------------------------
    def ensure_stream(
        self,
        query_tags: dict[str, Any],
        tags: dict[str, Any] | None = None,
        value_downsamplers: Iterable[str] | None = None,
        highest_granularity: Any = Granularity.Seconds,
        derive_from: Any = None,
        derive_op: str | None = None,
        derive_args: dict[str, Any] | None = None,
        value_type: str | None = None,
        value_type_options: dict[str, Any] | None = None,
        derive_backprocess: bool = True,
    ) -> str:
        """The id of the stream matching ``query_tags``, created if none does (SPEC §3.3)."""
        if not isinstance(query_tags, dict) or not query_tags:
            raise ValueError(f"query_tags must be a non-empty dict, got {query_tags!r}")
        tag_rules.validate_tags(query_tags)
        tags = {} if tags is None else tags
        if not isinstance(tags, dict):
            raise ValueError(f"tags must be a dict, got {tags!r}")
        tag_rules.validate_tags(tags)
        highest = resolve(highest_granularity)
        value_type = "numeric" if value_type is None else value_type
        if value_type not in value_types.VALUE_TYPES:
            raise exceptions.UnsupportedValueType(f"unsupported value type {value_type!r}")
        options = value_types.normalise_options(value_type, value_type_options)
        stored_downsamplers = _check_downsamplers(value_downsamplers, value_type)
        with self._engine.lock:
            derived = None
            if derive_from is not None or derive_op is not None:
                # Buffered source points are history: flush them before the stream exists.
                self._engine.flush()
                derived = self._derive.prepare(
                    derive_from, derive_op, derive_args, highest, value_type
                )
            user_tags = tag_rules.deep_merge(tags, query_tags)
            existing = self._engine.find(query_tags)
            if len(existing) > 1:
                raise exceptions.MultipleStreamsReturned(
                    f"{len(existing)} streams match query {query_tags!r}"
                )
            if existing:
                return self._reuse(existing[0], user_tags, stored_downsamplers, highest,
                                   value_type, options, derived)
            pending = bool(derived) and derive_backprocess and self._derive.sources_hold_data(
                derived
            )
            meta = new_meta(
                stored_downsamplers, highest, value_type, options,
                derived_from=derived, pending_backprocess=pending,
            )
            if derived is not None:
                meta["derive_history"] = "replay" if derive_backprocess else "skip"
            record = StreamRecord(str(uuid.uuid4()), user_tags, meta)
            stored = self.backend.create_stream(record, query_tags)
            if stored.stream_id != record.stream_id:  # another writer created it first
                return self._reuse(stored, user_tags, stored_downsamplers, highest,
                                   value_type, options, derived)
            self._engine.remember(stored)
            if derived is not None:
                self._derive.link(stored)
            return stored.stream_id

    def _reuse(
        self,
        record: StreamRecord,
        user_tags: dict[str, Any],
        stored_downsamplers: list[str],
        highest: GranularityLevel,
        value_type: str,
        options: dict[str, Any],
        derived: dict[str, Any] | None,
    ) -> str:
        """Return an existing stream's id after checking its configuration matches."""
        record = self._engine.record(record.stream_id)
        meta = record.meta
        differences = []
        if meta["value_type"] != value_type:
            differences.append("value_type")
        if meta["value_type_options"] != options:
            differences.append("value_type_options")
        if resolve(meta["highest_granularity"]) != highest:
            differences.append("highest_granularity")
        if set(meta["value_downsamplers"]) != set(stored_downsamplers):
            differences.append("value_downsamplers")
        stored_derived = meta.get("derived_from")
        if bool(stored_derived) != bool(derived):
            differences.append("derive_from")
        elif derived:
            if stored_derived["op"] != derived["op"]:
                differences.append("derive_op")
            if set(stored_derived["stream_ids"]) != set(derived["stream_ids"]):
                differences.append("derive_from")
        if differences:
            raise exceptions.InconsistentStreamConfiguration(
                f"stream {record.stream_id} exists with a different {', '.join(differences)}"
            )
        if record.tags != user_tags:
            self.backend.set_tags(record.stream_id, user_tags)
            record.tags = user_tags
        return record.stream_id

    def get_tags(self, stream_id: str) -> dict[str, Any]:
        """User tags merged with the reserved metadata fields (SPEC §3.1)."""
        with self._engine.lock:
            record = self._engine.record(stream_id)
            return self._public(record)

    def _public(self, record: StreamRecord) -> dict[str, Any]:
        earliest, latest = self._engine.pending_extent(record.stream_id)
        result = public_tags(record)
        result["earliest_datapoint"] = None if earliest is None else from_us(earliest)
        result["latest_datapoint"] = None if latest is None else from_us(latest)
        return result

    def update_tags(self, stream_id: str, tags: dict[str, Any]) -> None:
        """Deep-merge ``tags`` into the stream's user tags."""
        if not isinstance(tags, dict):
            raise ValueError(f"tags must be a dict, got {tags!r}")
        tag_rules.validate_tags(tags)
        with self._engine.lock:
            record = self._engine.record(stream_id)
            merged = tag_rules.deep_merge(record.tags, tags)
            self.backend.set_tags(stream_id, merged)
            record.tags = merged

    def remove_tag(self, stream_id: str, tag: Any) -> None:
        """Remove the tag paths named by the keys of ``tag`` (a str names one top-level key)."""
        paths = {tag: None} if isinstance(tag, str) else tag
        if not isinstance(paths, dict):
            raise ValueError(f"tag must be a dict of paths or a key, got {tag!r}")
        tag_rules.validate_tags(paths)
        with self._engine.lock:
            record = self._engine.record(stream_id)
            remaining = tag_rules.remove_paths(record.tags, paths)
            self.backend.set_tags(stream_id, remaining)
            record.tags = remaining

    def clear_tags(self, stream_id: str) -> None:
        """Remove every user tag."""
        with self._engine.lock:
            record = self._engine.record(stream_id)
            self.backend.set_tags(stream_id, {})
            record.tags = {}

    def find_streams(self, query_tags: dict[str, Any] | None = None) -> Streams:
        """Streams whose user tags match ``query_tags`` (SPEC §3.4), in creation order."""
        query = tag_rules.validate_query(query_tags or {}, allow_stream_id=False)
        with self._engine.lock:
            records = self._engine.find(query)
            found = [self._public(record) for record in records]
        return Streams(lambda: found)

    def delete_streams(self, query_tags: dict[str, Any] | None = None) -> None:
        """Delete matching streams (all when None) with all their datapoints, atomically."""
        query = tag_rules.validate_query(query_tags or {}, allow_stream_id=True)
        with self._engine.lock:
            records = self._engine.find(query)
            self._derive.delete(records)

    # -- appending -------------------------------------------------------------------------
    def append(
        self,
        stream_id: str,
        value: Any,
        timestamp: datetime.datetime | None = None,
        check_timestamp: bool = True,
    ) -> dict[str, Any]:
        """Append one datapoint (SPEC §4.1)."""
        with self._engine.lock:
            record, timestamp_us, encoded = self._prepare_point(
                stream_id, value, timestamp, check_timestamp, {}
            )
            self._engine.buffer_point(stream_id, timestamp_us, encoded)
            self._after_write()
        return {
            "stream_id": record.stream_id,
            "granularity": resolve(record.meta["highest_granularity"]),
            "datapoint": {"t": from_us(timestamp_us), "v": value_types.decode_value(
                encoded, record.meta["value_type"], record.meta["value_type_options"])},
        }

    def append_multiple(self, datapoints: Iterable[dict[str, Any]]) -> None:
        """Append many datapoints, all or nothing (SPEC §4.2)."""
        items = list(datapoints)
        with self._engine.lock:
            latest_in_call: dict[str, int] = {}
            prepared = []
            for position, item in enumerate(items):
                if not isinstance(item, dict) or "stream_id" not in item or "value" not in item:
                    raise ValueError(
                        f"datapoint #{position} must be a dict with 'stream_id' and 'value', "
                        f"got {item!r}"
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
            for record, timestamp_us, encoded in prepared:
                self._engine.buffer_point(record.stream_id, timestamp_us, encoded)
            self._after_write()

    def _prepare_point(
        self,
        stream_id: str,
        value: Any,
        timestamp: Any,
        check_timestamp: bool,
        latest_in_call: dict[str, int],
    ) -> tuple[StreamRecord, int, tuple]:
        """Validate one datapoint against its stream; nothing is buffered here."""
        record = self._writable(stream_id)
        timestamp_us = point_us(self._clock() if timestamp is None else timestamp)
        self._check_time(record, timestamp_us, timestamp_us, check_timestamp, latest_in_call)
        meta = record.meta
        encoded = value_types.encode_value(
            value, meta["value_type"], meta["value_type_options"],
            _value_keys(meta), stream_id,
        )
        return record, timestamp_us, encoded

    def _writable(self, stream_id: str) -> StreamRecord:
        record = self._engine.record(stream_id)
        if record.meta.get("derived_from"):
            raise exceptions.AppendToDerivedStreamNotAllowed(
                f"stream {stream_id} is derived; its datapoints are computed, not appended"
            )
        return record

    def _check_time(
        self,
        record: StreamRecord,
        earliest_us: int,
        latest_us: int,
        check_timestamp: bool,
        latest_in_call: dict[str, int],
    ) -> None:
        """Reject timestamps older than the stream's latest or inside a downsampled range."""
        stream_id = record.stream_id
        _, latest = self._engine.pending_extent(stream_id)
        if stream_id in latest_in_call:
            latest = latest_in_call[stream_id] if latest is None else max(
                latest, latest_in_call[stream_id])
        if check_timestamp and latest is not None and earliest_us < latest:
            raise exceptions.InvalidTimestamp(
                f"timestamp {from_us(earliest_us).isoformat()} of stream {stream_id} is older "
                f"than its latest datapoint {from_us(latest).isoformat()}"
            )
        level = first_level(record)
        if level is not None:
            bound = (record.meta.get("downsampled_until") or {}).get(level.key)
            if bound is not None and earliest_us < bound:
                raise exceptions.InvalidTimestamp(
                    f"timestamp {from_us(earliest_us).isoformat()} of stream {stream_id} falls "
                    f"in its already downsampled range (before {from_us(bound).isoformat()})"
                )
        latest_in_call[stream_id] = latest_us if stream_id not in latest_in_call else max(
            latest_us, latest_in_call[stream_id])

    def append_arrays(
        self,
        stream_id: str,
        timestamps: Any,
        values: Any,
        check_timestamp: bool = True,
    ) -> int:
        """Append columns of timestamps and values to one stream, vectorised (SPEC §4.4).

        ``timestamps``: datetime64 or int64 epoch microseconds (numpy or pyarrow);
        ``values``: numbers (NaN = null) or, for nominal/graph streams, a sequence of values.
        All or nothing; returns the number of points appended.
        """
        with self._engine.lock:
            record, table, earliest, latest = self._prepare_arrays(
                stream_id, timestamps, values, check_timestamp, {}
            )
            if table.num_rows:
                self._engine.buffer_table(stream_id, table, earliest, latest)
                self._after_write()
            return table.num_rows

    def _prepare_arrays(
        self,
        stream_id: str,
        timestamps: Any,
        column: Any,
        check_timestamp: bool,
        latest_in_call: dict[str, int],
    ) -> tuple[StreamRecord, pa.Table, int, int]:
        record = self._writable(stream_id)
        timestamps_us = reading.timestamps_to_us(timestamps)
        meta = record.meta
        table = value_types.encode_arrays(
            timestamps_us, column, meta["value_type"], meta["value_type_options"], stream_id,
            value_keys=_value_keys(meta),
        )
        if not len(timestamps_us):
            return record, table, 0, 0
        if check_timestamp and np.any(timestamps_us[1:] < timestamps_us[:-1]):
            position = int(np.argmax(timestamps_us[1:] < timestamps_us[:-1])) + 1
            raise exceptions.InvalidTimestamp(
                f"timestamps of stream {stream_id} must not decrease (position {position})"
            )
        earliest, latest = int(timestamps_us.min()), int(timestamps_us.max())
        first = int(timestamps_us[0]) if check_timestamp else earliest
        self._check_time(record, min(first, earliest), latest, check_timestamp, latest_in_call)
        return record, table, earliest, latest

    def append_table(self, table: Any, check_timestamp: bool = True) -> int:
        """Append a table with columns ``stream_id``, ``timestamp``, ``value`` (pyarrow, pandas
        or polars), all or nothing. Returns the number of points appended."""
        arrow = reading.to_arrow_table(table)
        missing = {"stream_id", "timestamp", "value"} - set(arrow.column_names)
        if missing:
            raise ValueError(f"table lacks the columns {sorted(missing)}")
        with self._engine.lock:
            prepared = []
            latest_in_call: dict[str, int] = {}
            for stream_id, rows in reading.split_by_stream(arrow):
                prepared.append(
                    self._prepare_arrays(
                        stream_id, rows.column("timestamp"), rows.column("value"),
                        check_timestamp, latest_in_call,
                    )
                )
            total = 0
            for record, part, earliest, latest in prepared:
                if part.num_rows:
                    self._engine.buffer_table(record.stream_id, part, earliest, latest)
                    total += part.num_rows
            self._after_write()
            return total

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
        """Datapoints of one stream at one granularity in a time range (SPEC §6)."""
        if (start is None) == (start_exclusive is None):
            raise AttributeError("exactly one of start and start_exclusive is required")
        if end is not None and end_exclusive is not None:
            raise AttributeError("at most one of end and end_exclusive may be given")
        level = resolve(granularity)
        value_names = _check_filter(value_downsamplers, downsamplers.VALUE_DOWNSAMPLERS, "value")
        time_names = _check_filter(time_downsamplers, downsamplers.TIME_DOWNSAMPLERS, "time")
        with self._engine.lock:
            record = self._engine.record(stream_id)
            self._engine.flush()
            query = reading.Range.from_arguments(start, end, start_exclusive, end_exclusive)
            return reading.datapoints(
                self.backend, record, level, query, reverse, value_names, time_names
            )

    # -- maintenance -----------------------------------------------------------------------
    def downsample_streams(
        self,
        query_tags: dict[str, Any] | None = None,
        until: datetime.datetime | None = None,
        return_datapoints: bool = False,
        filter_stream: Callable[[dict[str, Any]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Materialise every bucket that may close before ``until`` (SPEC §5.5)."""
        query = tag_rules.validate_query(query_tags or {}, allow_stream_id=True)
        until_us = point_us(self._clock() if until is None else until, "until")
        with self._engine.lock:
            self._engine.flush()
            records = self._engine.find(query)
            if filter_stream is not None:
                records = [r for r in records if filter_stream(self._public(r))]
            records = [r for r in records if not r.meta.get("pending_backprocess")]
            closed = self._engine.downsample(records, until_us)
        if not return_datapoints:
            return []
        return reading.new_datapoints(closed, self._engine)

    def backprocess_streams(self, query_tags: dict[str, Any] | None = None) -> list[str]:
        """Replay source history into matching derived streams (SPEC §7); idempotent."""
        query = tag_rules.validate_query(query_tags or {}, allow_stream_id=True)
        with self._engine.lock:
            self._engine.flush()
            return self._derive.backprocess(self._engine.find(query))

    def verify(self, query_tags: dict[str, Any] | None = None) -> verification.Verification:
        """Recompute every materialised bucket of the matching streams from their raw data,
        and every derived stream from its sources, independently of the code that stored them
        (SPEC §10). The result lists each disagreement and is falsy when there is none: counts
        and Decimals must match exactly, floats within 1e-9 relative or, near 0, within 1e-12
        of the magnitude of the terms they were computed from."""
        query = tag_rules.validate_query(query_tags or {}, allow_stream_id=True)
        with self._engine.lock:
            self._engine.flush()
            return verification.verify(self.backend, self._engine.find(query))


def _check_downsamplers(names: Iterable[str] | None, value_type: str) -> list[str]:
    """The stored downsampler list: requested plus dependencies, canonical order."""
    requested = [] if names is None else list(names)
    for name in requested:
        if name not in downsamplers.VALUE_DOWNSAMPLERS:
            raise exceptions.UnsupportedDownsampler(f"unsupported value downsampler {name!r}")
        if name not in downsamplers.DOWNSAMPLERS_BY_VALUE_TYPE[value_type]:
            raise exceptions.UnsupportedDownsampler(
                f"value downsampler {name!r} does not support value type {value_type!r}"
            )
    chosen = downsamplers.with_dependencies(requested)
    return [name for name in downsamplers.VALUE_DOWNSAMPLERS if name in chosen]


def _check_filter(
    names: Iterable[str] | None, known: dict[str, str], kind: str
) -> list[str] | None:
    if names is None:
        return None
    names = [names] if isinstance(names, str) else list(names)
    for name in names:
        if name not in known:
            raise exceptions.UnsupportedDownsampler(f"unsupported {kind} downsampler {name!r}")
    return names


def _value_keys(meta: dict[str, Any]) -> set[str]:
    return {downsamplers.VALUE_DOWNSAMPLERS[name] for name in meta["value_downsamplers"]}


def _flush_at_exit(reference: weakref.ref) -> None:
    instance = reference()
    if instance is not None and not instance._closed:
        try:
            instance.flush()
        except Exception:  # noqa: BLE001 - nothing can be reported at interpreter exit
            pass

