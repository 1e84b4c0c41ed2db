"""Group commit: concurrent write requests share one flush.

Every write request is read, validated and parsed in its own request (:mod:`.write_api`) and
handed here as a :class:`Batch`. One writer thread takes every batch waiting, appends each on
its own through the bulk path (``append_table`` or ``append_arrays``, each all or nothing and
checked with the library's own rules), then calls ``flush()`` once for all the batches it
accepted and only then acknowledges them. While it flushes, new requests queue up and form the
next group, so under load each flush (an fsync for the embedded store) covers many requests:
this is what makes HTTP ingest fast.

Line protocol points may arrive out of time order, as InfluxDB accepts them: by default a
``/write`` batch is appended with ``check_timestamp=False``, so a point older than a stream's
latest is a late point (behaviour §4.1: stored, and the derived streams it feeds recomputed).
A point in a stream's frozen range (before its first level's ``downsampled_until``) is still
refused, and with ``accept_late_points=False`` so is any point older than the stream's latest.
JSON datapoints (one stream per request) follow ``append``'s default: their times may not go
back.

A batch the library refuses (a frozen-range point, a value of the wrong type) fails alone,
before the flush, and leaves nothing behind: the streams it created on first sight are deleted
again before the next batch is looked at. If the flush itself fails (the backend is down)
every batch of the group gets a 503; the library keeps their points buffered and retries them
(behaviour §4.3), so a client retrying such a write may store its points twice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import queue
import threading
import uuid
from typing import Any

import numpy as np
import pyarrow as pa

from .. import Datastream, exceptions, values
from ..downsamplers import DOWNSAMPLERS_BY_VALUE_TYPE
from ..line_protocol import ParsedLines
from ..results import user_tags
from .errors import ApiError

log = logging.getLogger("datastream.http")
_STOP = object()


@dataclasses.dataclass
class Batch:
    """One request's rows: ``points`` for one stream (``stream_id``, JSON datapoints) or
    ``lines`` (line protocol, streams named by query tags)."""

    stream_id: str | None = None
    t_us: np.ndarray | None = None
    values: Any = None
    lines: ParsedLines | None = None
    future: concurrent.futures.Future = dataclasses.field(
        default_factory=concurrent.futures.Future)


def downsamplers_for(value_type: str, defaults: list[str]) -> list[str]:
    """The defaults that apply to ``value_type``; a nominal stream keeps at least a count
    when the defaults are numeric only (an empty list would never downsample it)."""
    usable = [name for name in defaults if name in DOWNSAMPLERS_BY_VALUE_TYPE[value_type]]
    return usable or (["count"] if defaults else [])


class GroupCommitter:
    """The one writer of a service's ``Datastream``."""

    def __init__(self, ds: Datastream, value_downsamplers: list[str], granularity: Any,
                 accept_late_points: bool = True) -> None:
        self.ds = ds
        self.check_timestamp = not accept_late_points
        self.value_downsamplers = list(value_downsamplers)
        self.granularity = granularity
        self.groups = 0  # flushes done (a group of one or more batches each)
        self.batches = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._ids: dict[str, str] = {}  # canonical query tags → stream id
        self._thread: threading.Thread | None = None
        self._closed = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="datastream-http-writer",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Finish the batches already submitted, then stop the writer."""
        if self._thread is None or self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()

    def submit(self, batch: Batch) -> concurrent.futures.Future:
        if self._closed or self._thread is None:
            raise ApiError(503, "the server is not accepting writes (shutting down)")
        self._queue.put(batch)
        return batch.future

    async def commit(self, batch: Batch) -> None:
        """Submit and wait until the batch is durable (or refused: its error is raised)."""
        await asyncio.wrap_future(self.submit(batch))

    def _run(self) -> None:
        stopping = False
        while not stopping:
            group = [self._queue.get()]
            while True:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = any(item is _STOP for item in group)
            batches = [item for item in group if item is not _STOP]
            if batches:
                self._commit(batches)

    def _commit(self, group: list[Batch]) -> None:
        accepted = []
        with self.ds._flushes_deferred():  # one flush for the group, not one per large batch
            for batch in group:
                try:
                    self._append(batch)
                except Exception as error:
                    batch.future.set_exception(error)
                else:
                    accepted.append(batch)
        if not accepted:
            return
        try:
            self.ds.flush()
        except Exception as error:
            log.error("flush failed: %s", error)
            for batch in accepted:
                batch.future.set_exception(ApiError(
                    503, f"the points could not be stored durably: {error}"))
            return
        self.groups += 1
        self.batches += len(accepted)
        for batch in accepted:
            batch.future.set_result(None)

    def _append(self, batch: Batch) -> None:
        if batch.lines is None:  # the JSON datapoints of one stream: append's own rules
            timestamps = pa.array(batch.t_us, pa.timestamp("us", "UTC"))
            try:
                self.ds.append_arrays(batch.stream_id, timestamps, batch.values)
            except (ValueError, TypeError) as error:
                raise ApiError(400, self._item_located(batch, error)) from error
            return
        try:
            self._append_lines(batch.lines)
        except exceptions.StreamNotFound:
            # a cached stream was deleted meanwhile (another process, on a shared backend)
            self._ids.clear()
            self._append_lines(batch.lines)

    def _item_located(self, batch: Batch, error: BaseException) -> str:
        """The library's message led by the index of the first item whose value it refuses
        (its messages name the stream, not the item); looked for only once a body failed."""
        message = str(error)
        if isinstance(error, exceptions.InvalidTimestamp):
            return message
        state = self.ds._engine.state(batch.stream_id)
        given = batch.values.to_pylist() if isinstance(batch.values, pa.Array) else batch.values
        for index, value in enumerate(given):
            try:
                values.encode_value(value, state.value_type, state.options, state.value_keys,
                                    batch.stream_id)
            except (ValueError, TypeError):
                return f"item {index}: {message}"
        return message

    def _append_lines(self, lines: ParsedLines) -> None:
        created: list[str] = []
        try:
            ids = [self._stream_id(lines, index, created) for index in range(len(lines.series))]
            table = pa.table({
                "stream_id": pa.array(ids, pa.string()).take(pa.array(lines.stream)),
                "timestamp": pa.array(lines.t_us, pa.timestamp("us", "UTC")),
                "value": lines.arrow(),
            })
            try:
                self.ds.append_table(table, check_timestamp=self.check_timestamp)
            except (ValueError, TypeError) as error:  # a point the library refuses
                raise ApiError(400, _located(lines, ids, error)) from error
        except BaseException:
            if created:
                self._forget(created)
                self.ds.delete_streams({"stream_id": {"$in": created}})
            raise

    def _stream_id(self, lines: ParsedLines, index: int, created: list[str]) -> str:
        query = lines.series[index]
        key = json.dumps(query, sort_keys=True)
        known = self._ids.get(key)
        if known is not None:
            return known
        # A series is its measurement, its exact tag set and the field: a stream whose tags
        # hold more (``disk,host=a,path=/`` for ``disk,host=a``) is another series, although
        # its tags match the query.
        found = _exactly(self.ds.find_streams(query), query)
        if len(found) > 1:
            line = int(lines.lines[int(np.argmax(lines.stream == index))])
            raise ApiError(400, f"line {line}: {len(found)} streams have the tags {query}")
        if found:
            stream_id = found[0]["stream_id"]
        else:
            stream_id, ours = self._create(query, lines.value_types[index])
            if ours:  # deleted again if the batch is refused
                created.append(stream_id)
        self._ids[key] = stream_id
        return stream_id

    def _create(self, query: dict[str, Any], value_type: str) -> tuple[str, bool]:
        """A new stream with exactly the series' tags. ``ensure_stream`` would reuse a stream
        of another series holding more tags, so the stream is created with a one-off extra
        query tag, which is then removed. Another process may create the same series at the
        same time: every creator then keeps the oldest of the streams (``find_streams`` lists
        them in creation order), and one that made a newer one deletes it, before anything
        is appended to it. Returns the stream's id and whether this call created it."""
        token = {_CREATING: uuid.uuid4().hex}
        stream_id = self.ds.ensure_stream(
            {**query, **token}, {}, downsamplers_for(value_type, self.value_downsamplers),
            self.granularity, value_type=value_type)
        self.ds.remove_tag(stream_id, {_CREATING: None})
        oldest = _exactly(self.ds.find_streams(query), query)[0]["stream_id"]
        if oldest != stream_id:
            self.ds.delete_streams({"stream_id": stream_id})
        return oldest, oldest == stream_id

    def _forget(self, stream_ids: list[str]) -> None:
        dropped = set(stream_ids)
        self._ids = {key: value for key, value in self._ids.items() if value not in dropped}


_CREATING = "_creating_series"


def _located(lines: ParsedLines, ids: list[str], error: BaseException) -> str:
    """The library's message, led by the line of the first point of the series it names (its
    messages name the stream, not the line)."""
    message = str(error)
    for index, stream_id in enumerate(ids):
        if stream_id in message:
            line = int(lines.lines[int(np.argmax(lines.stream == index))])
            return f"line {line} (the first of series {lines.series[index]}): {message}"
    return message


def _exactly(found: Any, query: dict[str, Any]) -> list[dict[str, Any]]:
    """The streams of ``found`` whose user tags are ``query`` (a stream still being created,
    still holding its creation tag, counts)."""
    return [tags for tags in found
            if {key: value for key, value in user_tags(tags).items() if key != _CREATING} == query]
