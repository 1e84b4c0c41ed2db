"""Raw datapoints of the MongoDB backend as *chunks*: one codec chunk per document.

A chunk holds one stream's rows of one commit: at most ``CHUNK_ROWS`` rows that span less than
``CHUNK_SPAN_US`` (an hour) and hold at most ``CHUNK_BYTES`` of text. Its document is
``{sid, q, b, p, n, t0, t1, c}``: ``c`` is the rows encoded by the shared codec
(:mod:`datastream.storage.codec`, the embedded store's encoding too) as one BSON binary, sorted
by time; ``p`` is the position of the first row in its write, ``n`` the row count, ``t0``/``t1``
the first and last timestamps; ``sid``, ``q`` (write sequence) and ``b`` (batch) are added by
the commit (:mod:`.commit`). The fields the server filters on stay plain: the span limit
bounds a time-range read on both sides of the ``(sid, t1, t0, q)`` index
(:func:`time_condition`), and cuts select chunks by ``q`` and ``t0``. Values are opaque to the
server, which is fine: storage never computes aggregates. A chunk that fails the codec's checks
(CRC, structure) or disagrees with ``n``, ``t0`` or ``t1`` raises a ``DatastreamException``
naming it.

Why chunks, and why the codec (``bench/bench_mongo_chunks.py``, 2026-11-30: 100k float points
of one stream at 1 Hz, sensor values quantised to 0.01 / a full-entropy random walk; whole
documents as inserted, sized by pymongo's BSON codec; encode = Arrow rows to BSON bytes, decode
= BSON bytes to the rows a read returns; best CPU time of 7 on a shared core running at ~0.6x
its quiet speed)::

    layout, points per write          BSON bytes/point   encode ns/point    decode ns/point
                                      sensor    walk     sensor    walk     sensor    walk
    document per point                  119      119      8 700    8 700     6 200    6 800
    columns packed apart, 1             169      169    430 000  445 000    82 000   83 000
    codec chunk, 1                      237      242    340 000  320 000   170 000  210 000
    columns packed apart, 60           19.5     19.5      8 400    7 900     1 700    1 300
    codec chunk, 60                     5.2     12.1      4 900    9 800     3 200    4 000
    columns packed apart, 3,600        17.0     17.0         98       93        17       17
    codec chunk, 3,600                 0.92     6.5          76      143       110      126

Columns packed apart are schema version 1: raw little-endian numbers, UTF-8 plus offsets and
validity bitmaps, uncompressed. The codec stores batched points 18x (quantised values) and 2.6x
(full-entropy doubles) smaller for 0.8-1.5x the encoding cost; decoding takes 6-7x the CPU
(mostly the codec's fixed cost per chunk, 0.4 ms per 3,600 rows on this core), which a server
read repays by moving that many fewer bytes. A write of one point is 40 % larger than it was
(the codec's header and column table) and decodes at half the speed: flushes that hold one
point per stream pay more than a document per point would (which also costs one index entry
per point, ~60 bytes), while anything batched (buffers of up to 10,000 points, bulk appends,
backfills) is 10-130x smaller than a document per point.

Truncation (``WriteBatch.truncate_raw``) never rewrites chunks: it adds a *cut* ``(t, q)`` to
the stream, meaning "rows of chunks written before write sequence ``q`` with time ``>= t`` are
gone". Readers drop those rows while decoding (:func:`decode`), chunks a cut hides completely
are not fetched (:func:`visible_condition`) and are deleted later by the collector, and only
the cuts on the Pareto frontier (:func:`frontier`) are worth keeping. A cut never hides rows of
the batch that made it: they carry its own ``q``.

Dropping rows before a time (``WriteBatch.drop_raw_before``, retention) works the same way in
the other direction: a *floor* ``(t, q)`` hides the rows of chunks written before ``q`` with
time ``< t``. The chunks it hides completely are deleted by the collector; a chunk straddling
``t`` stays until a later floor hides it completely, its hidden rows dropped while decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from bson import Binary

from ... import arrow_numpy, exceptions
from ...units import INT64_MAX, US_PER_SECOND
from .. import codec
from ..base import RAW_SCHEMA

CHUNK_ROWS = 4096
CHUNK_SPAN_US = 3600 * US_PER_SECOND
CHUNK_BYTES = 4 << 20


def time_condition(start_us: int | None, end_us: int | None) -> dict[str, Any]:
    """Conditions on ``t0``/``t1`` selecting the chunks that may hold rows in [start, end)."""
    condition: dict[str, Any] = {}
    last_end: dict[str, int] = {}
    if start_us is not None:
        last_end["$gte"] = int(start_us)
    if end_us is not None:
        last_end["$lt"] = min(int(end_us) + CHUNK_SPAN_US, INT64_MAX)
        condition["t0"] = {"$lt": int(end_us)}
    if last_end:
        condition["t1"] = last_end
    return condition


def frontier(cuts: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The cuts no other cut makes redundant: ``(t, q)`` hides everything ``(t2, q2)`` does
    when ``t <= t2`` and ``q >= q2``. Ordered by q descending (so t descends too)."""
    kept: list[tuple[int, int]] = []
    for t, q in sorted(set(cuts), key=lambda cut: (-cut[1], cut[0])):
        if not kept or t < kept[-1][0]:
            kept.append((t, q))
    return kept


def floor_frontier(floors: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The floors no other floor makes redundant: ``(t, q)`` hides everything ``(t2, q2)``
    does when ``t >= t2`` and ``q >= q2``. Ordered by q descending (so t ascends)."""
    kept: list[tuple[int, int]] = []
    for t, q in sorted(set(floors), key=lambda floor: (-floor[1], -floor[0])):
        if not kept or t > kept[-1][0]:
            kept.append((t, q))
    return kept


def visible_condition(
    cuts: Sequence[tuple[int, int]], floors: Sequence[tuple[int, int]] = ()
) -> dict[str, Any]:
    """A filter excluding chunks that some cut or floor hides completely (none: no
    condition)."""
    hidden = [hidden_by(t, q) for t, q in cuts] + [hidden_below(t, q) for t, q in floors]
    return {"$nor": hidden} if hidden else {}


def hidden_by(t: int, q: int) -> dict[str, Any]:
    """The chunks one cut hides completely."""
    return {"q": {"$lt": int(q)}, "t0": {"$gte": int(t)}}


def hidden_below(t: int, q: int) -> dict[str, Any]:
    """The chunks one floor hides completely."""
    return {"q": {"$lt": int(q)}, "t1": {"$lt": int(t)}}


def partly_below(t: int, q: int) -> dict[str, Any]:
    """The chunks holding rows one floor hides (completely or not)."""
    return {"q": {"$lt": int(q)}, "t0": {"$lt": int(t)}}


def visible_rows(chunks: list[dict[str, Any]], t: np.ndarray,
                 cuts: Sequence[tuple[int, int]],
                 floors: Sequence[tuple[int, int]]) -> np.ndarray:
    """Which rows (times ``t`` of ``chunks`` decoded in order) no cut or floor hides."""
    keep = np.ones(len(t), dtype=bool)
    if not cuts and not floors:
        return keep
    counts = np.array([doc["n"] for doc in chunks], dtype=np.int64)
    seq = np.repeat(np.array([doc["q"] for doc in chunks], dtype=np.int64), counts)
    for cut_t, cut_q in cuts:
        keep &= (seq >= cut_q) | (t < cut_t)
    for floor_t, floor_q in floors:
        keep &= (seq >= floor_q) | (t >= floor_t)
    return keep


# -- encoding ---------------------------------------------------------------------------------


def encode(
    stream_id: str, table: pa.Table | pa.RecordBatch, max_bytes: int = CHUNK_BYTES
) -> list[dict[str, Any]]:
    """Chunk documents (without sid/q/b) for one stream's raw rows, in time order."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    missing = set(RAW_SCHEMA.names) - set(table.column_names)
    if missing:
        raise ValueError(f"raw rows of stream {stream_id!r} lack columns {sorted(missing)}")
    table = table.select(RAW_SCHEMA.names).cast(RAW_SCHEMA).combine_chunks()
    if table.num_rows == 0:
        return []
    if table.column("t").null_count:
        raise ValueError(f"raw rows of stream {stream_id!r} have null timestamps")
    t = table.column("t").to_numpy()
    if np.any(t[1:] < t[:-1]):
        order = np.argsort(t, kind="stable")
        table = table.take(pa.array(order))
        t = t[order]
    strings = table.column("s")
    if strings.null_count == len(strings):
        cumulative = np.zeros(len(t), dtype=np.int64)
    else:
        sizes = pc.fill_null(pc.binary_length(strings), 0).to_numpy()
        cumulative = np.cumsum(sizes, dtype=np.int64)
    docs = []
    for low, high in _chunk_bounds(t, cumulative, max_bytes):
        docs.append({
            "p": low, "n": high - low, "t0": int(t[low]), "t1": int(t[high - 1]),
            "c": Binary(codec.encode_raw(table.slice(low, high - low))),
        })
    return docs


def _chunk_bounds(
    t: np.ndarray, cumulative_bytes: np.ndarray, max_bytes: int
) -> list[tuple[int, int]]:
    """[low, high) runs of at most CHUNK_ROWS rows, ``max_bytes`` of text, CHUNK_SPAN_US."""
    bounds = []
    low, count = 0, len(t)
    while low < count:
        high = min(count, low + CHUNK_ROWS)
        high = min(high, int(np.searchsorted(t, t[low] + CHUNK_SPAN_US, "left")))
        before = int(cumulative_bytes[low - 1]) if low else 0
        high = min(high, int(np.searchsorted(cumulative_bytes, before + max_bytes, "right")))
        high = max(high, low + 1)
        bounds.append((low, high))
        low = high
    return bounds


# -- decoding ---------------------------------------------------------------------------------


def decode_chunk(doc: dict[str, Any], stream_id: str = "?") -> pa.Table:
    """The rows of one chunk document; a DatastreamException naming the chunk when it is not
    a chunk of this format or does not decode (the codec's checksums catch damage)."""
    data = doc.get("c")
    where = f"raw chunk {doc.get('_id')} of stream {stream_id!r}"
    if not isinstance(data, bytes):
        raise exceptions.DatastreamException(
            f"{where} holds no codec chunk: it was written in another storage format (by an "
            f"older datastream?)"
        )
    try:
        stats = codec.chunk_stats(data)
        table = codec.decode_raw(data)
    except ValueError as error:
        raise exceptions.DatastreamException(f"{where} is damaged: {error}") from error
    claimed = (doc.get("n"), doc.get("t0"), doc.get("t1"))
    if stats != claimed:  # what reads select and order chunks by must be the chunk's own
        raise exceptions.DatastreamException(
            f"{where} is damaged: it holds (rows, first t, last t) = {stats}, its document says"
            f" {claimed}"
        )
    return table


def decode(
    chunks: list[dict[str, Any]],
    start_us: int | None,
    end_us: int | None,
    reverse: bool,
    cuts: Sequence[tuple[int, int]] = (),
    stream_id: str = "?",
    floors: Sequence[tuple[int, int]] = (),
) -> pa.Table:
    """Rows of the chunks inside [start, end) that no cut or floor hides, by (t, q, position)
    or t descending."""
    if not chunks:
        return arrow_numpy.empty_table(RAW_SCHEMA)
    chunks = sorted(chunks, key=lambda doc: (doc["t0"], doc["q"], doc["p"]))
    tables = [decode_chunk(doc, stream_id) for doc in chunks]
    table = pa.concat_tables(tables) if len(tables) != 1 else tables[0]
    t = table.column("t").to_numpy()
    if not reverse and _sequential(chunks, cuts, floors):
        # In (t, q, position) order already and nothing cut: the range is one slice.
        low = 0 if start_us is None else int(np.searchsorted(t, start_us, "left"))
        high = len(t) if end_us is None else int(np.searchsorted(t, end_us, "left"))
        return table.slice(low, max(0, high - low))
    keep = np.ones(len(t), dtype=bool)
    if start_us is not None:
        keep &= t >= start_us
    if end_us is not None:
        keep &= t < end_us
    keep &= visible_rows(chunks, t, cuts, floors)
    counts = np.array([doc["n"] for doc in chunks], dtype=np.int64)
    seq = np.repeat(np.array([doc["q"] for doc in chunks], dtype=np.int64), counts)
    # position in its write = row index - first row index of its chunk + the chunk's p
    first = np.cumsum(counts) - counts
    shift = np.array([doc["p"] for doc in chunks], dtype=np.int64) - first
    pos = np.arange(len(t), dtype=np.int64) + np.repeat(shift, counts)
    seq, pos, t = seq[keep], pos[keep], t[keep]
    if not reverse and _in_order(t, seq, pos):
        rows = np.flatnonzero(keep)
    else:
        rows = np.flatnonzero(keep)[np.lexsort((pos, seq, -t if reverse else t))]
    if len(rows) and rows[-1] - rows[0] == len(rows) - 1 and np.all(rows[1:] > rows[:-1]):
        return table.slice(int(rows[0]), len(rows))  # already in order: no copy
    return table.take(pa.array(rows))


def _sequential(chunks: list[dict[str, Any]], cuts: Sequence[tuple[int, int]],
                floors: Sequence[tuple[int, int]] = ()) -> bool:
    """Whether chunks sorted by (t0, q, p) hold their rows in (t, q, position) order one after
    the other (no time overlap, or a shared boundary time in write order), and no cut or floor
    hides any of their rows. Rows of one chunk are sorted by time, in write order among equal
    times; chunks of one write (same q) never share positions."""
    for doc in chunks:
        for cut_t, cut_q in cuts:
            if doc["q"] < cut_q and doc["t1"] >= cut_t:
                return False
        for floor_t, floor_q in floors:
            if doc["q"] < floor_q and doc["t0"] < floor_t:
                return False
    for before, after in zip(chunks, chunks[1:]):
        if before["t1"] > after["t0"] or (
            before["t1"] == after["t0"]
            and (before["q"], before["p"]) >= (after["q"], after["p"])
        ):
            return False
    return True


def _in_order(t: np.ndarray, seq: np.ndarray, pos: np.ndarray) -> bool:
    """Already ordered by (t, seq, pos)? (The usual case: chunks come in index order.)"""
    if len(t) < 2:
        return True
    same_t, same_seq = t[1:] == t[:-1], seq[1:] == seq[:-1]
    later = (t[1:] > t[:-1]) | (same_t & (seq[1:] > seq[:-1])) | (
        same_t & same_seq & (pos[1:] > pos[:-1])
    )
    return bool(later.all())
