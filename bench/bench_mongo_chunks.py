"""MongoDB raw chunks: bytes and encode/decode time per point, per document layout.

    PYTHONPATH=. .venv/bin/python bench/bench_mongo_chunks.py [--points 100000] [--repeat 5]

Data: ``--points`` float points of one stream at 1 Hz (µs timestamps), kind 2, either sensor
values quantised to 0.01 or a full-entropy random walk. Layouts:

* ``document per point``: ``{_id, sid, q, b, t, k, f}``, the obvious alternative;
* ``v1 packing``: storage schema version 1, each column packed apart as raw little-endian
  bytes (strings as UTF-8 plus int32 offsets, validity bitmaps), reimplemented here because the
  backend no longer has it;
* ``codec``: what the backend stores now, :func:`datastream.storage.mongodb.chunks.encode`
  (one :mod:`datastream.storage.codec` chunk per document).

Chunks of 1 and 60 points are separate writes (a flush per point, per minute); "full" is one
write of every point, cut by the backend's rules (at most 4096 rows spanning less than an hour:
3,600 rows at 1 Hz). Encode = Arrow rows → whole documents (``_id``, ``sid``, ``q``, ``b``
included) → BSON bytes (``bson.encode``, what the driver sends); decode = BSON bytes →
documents → the Arrow rows a read returns (``chunks.decode``). Bytes are the BSON sizes. Times
are the best of ``--repeat`` runs, CPU time per point (the machine is shared); small chunk
sizes run on a prefix of the data. Last, the same writes and a full read through
``MongoDBStorage`` on mongomock (commit of all points as one batch, ``read_raw``), where
mongomock's own Python costs dominate, and the level rows of the 10 s level as one document
per bucket against codec level chunks (for comparison: the backend stores documents).
Prints Markdown for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import bson
import mongomock
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from bson import Binary, ObjectId

from datastream import downsamplers
from datastream.storage import codec
from datastream.storage.base import RAW_SCHEMA, StreamRecord, WriteBatch
from datastream.storage.mongodb import chunks, levels
from datastream.storage.mongodb.storage import MongoDBStorage

SECOND = 1_000_000
START = 1_767_225_600 * SECOND  # 2026-01-01
SID = "0f8fad5b-d9cb-469f-a165-70867728950e"  # a stream id as the engine makes them
PREFIX = {1: 3_000, 60: 30_000}  # points measured for the small chunk sizes
CODEC_ENCODE, CODEC_DECODE = chunks.encode, chunks.decode  # the backend's, before any patching


def datasets(n: int, seed: int = 0) -> dict[str, pa.Table]:
    rng = np.random.default_rng(seed)
    t = START + np.arange(n, dtype=np.int64) * SECOND
    sensor = np.round(20 + 5 * np.sin(np.arange(n) / 3600) + rng.normal(0, 0.1, n), 2)
    walk = np.cumsum(rng.normal(0, 1, n))
    return {"sensor 0.01": _raw(t, sensor), "random walk": _raw(t, walk)}


def _raw(t: np.ndarray, f: np.ndarray) -> pa.Table:
    n = len(t)
    return pa.Table.from_arrays(
        [pa.array(t), pa.array(np.full(n, 2, np.int8)), pa.nulls(n, pa.int64()), pa.array(f),
         pa.nulls(n, pa.string())], schema=RAW_SCHEMA)


# -- storage schema version 1: each column packed apart ------------------------------------------

_FIXED = {"t": np.int64, "k": np.int8, "i": np.int64, "f": np.float64}


def v1_encode(stream_id: str, table: pa.Table, max_bytes: int = chunks.CHUNK_BYTES) -> list:
    """Version-1 chunk documents (without sid/q/b), cut by the same rules as today's."""
    table = table.select(RAW_SCHEMA.names).cast(RAW_SCHEMA).combine_chunks()
    if table.num_rows == 0:
        return []
    t = table.column("t").to_numpy()
    if np.any(t[1:] < t[:-1]):
        order = np.argsort(t, kind="stable")
        table, t = table.take(pa.array(order)), t[order]
    columns = {}
    for name, dtype in _FIXED.items():
        array = table.column(name).chunk(0)
        valid = _valid(array)
        values = pc.fill_null(array, 0).to_numpy(zero_copy_only=False).astype(dtype, copy=False)
        columns[name] = (values, valid)
    strings = table.column("s").chunk(0)
    sizes = pc.fill_null(pc.binary_length(strings), 0).to_numpy(zero_copy_only=False)
    docs = []
    for low, high in chunks._chunk_bounds(t, np.cumsum(sizes, dtype=np.int64), max_bytes):
        doc: dict[str, Any] = {"p": low, "n": high - low, "t0": int(t[low]),
                               "t1": int(t[high - 1])}
        for name, (values, valid) in columns.items():
            part, mask = values[low:high], valid[low:high]
            if mask.all():
                doc[name] = Binary(part.tobytes())
            elif mask.any():
                doc[name] = Binary(part[mask].tobytes())
                doc[f"{name}_m"] = Binary(np.packbits(mask, bitorder="little").tobytes())
        _v1_strings(doc, strings.slice(low, high - low), _valid(strings)[low:high])
        docs.append(doc)
    return docs


def _valid(array: pa.Array) -> np.ndarray:
    if array.null_count == 0:
        return np.ones(len(array), dtype=bool)
    return array.is_valid().to_numpy(zero_copy_only=False)


def _v1_strings(doc: dict, array: pa.Array, valid: np.ndarray) -> None:
    if not valid.any():
        return
    if not valid.all():
        array = array.filter(pa.array(valid))
        doc["s_m"] = Binary(np.packbits(valid, bitorder="little").tobytes())
    offsets = np.frombuffer(array.buffers()[1], np.int32)[array.offset:array.offset
                                                           + len(array) + 1]
    data = array.buffers()[2]
    doc["s"] = Binary(b"" if data is None else data.to_pybytes()[offsets[0]:offsets[-1]])
    doc["s_o"] = Binary((offsets - offsets[0]).astype(np.int32).tobytes())


def v1_decode(docs: list, start_us, end_us, reverse, cuts=(), stream_id="?") -> pa.Table:
    """Rows of version-1 documents; ordering, range and cuts as today's decode."""
    as_codec = []
    for doc in docs:
        n = doc["n"]
        arrays = [_v1_fixed(doc, name, dtype, n) for name, dtype in _FIXED.items()]
        arrays.append(_v1_text(doc, n))
        table = pa.Table.from_arrays(arrays, schema=RAW_SCHEMA)
        as_codec.append({**doc, "c": table})
    with _decoded_as_is():
        return CODEC_DECODE(as_codec, start_us, end_us, reverse, cuts, stream_id)


@contextlib.contextmanager
def _decoded_as_is() -> Iterator[None]:
    """Let chunks.decode take tables already decoded (its range, cut and order logic)."""
    original = chunks.decode_chunk
    chunks.decode_chunk = lambda doc, stream_id="?": doc["c"]
    try:
        yield
    finally:
        chunks.decode_chunk = original


def _v1_fixed(doc: dict, name: str, dtype: Any, n: int) -> pa.Array:
    arrow_type = RAW_SCHEMA.field(name).type
    if doc.get(name) is None:
        return pa.nulls(n, arrow_type)
    values = np.frombuffer(doc[name], dtype)
    if doc.get(f"{name}_m") is None:
        return pa.array(values, type=arrow_type)
    valid = _bits(doc[f"{name}_m"], n)
    full = np.zeros(n, dtype)
    full[valid] = values
    return pa.array(full, type=arrow_type, mask=~valid)


def _v1_text(doc: dict, n: int) -> pa.Array:
    if doc.get("s") is None:
        return pa.nulls(n, pa.string())
    offsets = doc["s_o"]
    values = pa.StringArray.from_buffers(len(offsets) // 4 - 1, pa.py_buffer(offsets),
                                         pa.py_buffer(doc["s"]))
    if doc.get("s_m") is None:
        return values
    valid = _bits(doc["s_m"], n)
    return values.take(pa.array(np.cumsum(valid) - 1, mask=~valid))


def _bits(mask: bytes, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(mask, np.uint8), count=n, bitorder="little").astype(bool)


# -- layouts ----------------------------------------------------------------------------------


def _stored(doc: dict) -> dict:
    """A chunk document as the commit inserts it."""
    return {"_id": ObjectId(), "sid": SID, "q": 1, "b": ObjectId(), **doc}


def per_point_encode(table: pa.Table) -> list[bytes]:
    batch = ObjectId()
    return [bson.encode({"_id": ObjectId(), "sid": SID, "q": 1, "b": batch, "t": t, "k": k,
                         "f": f})
            for t, k, f in zip(table.column("t").to_pylist(), table.column("k").to_pylist(),
                               table.column("f").to_pylist())]


def per_point_decode(blobs: list[bytes]) -> pa.Table:
    docs = [bson.decode(blob) for blob in blobs]
    n = len(docs)
    return pa.Table.from_arrays(
        [pa.array([d["t"] for d in docs], pa.int64()), pa.array([d["k"] for d in docs], pa.int8()),
         pa.nulls(n, pa.int64()), pa.array([d["f"] for d in docs], pa.float64()),
         pa.nulls(n, pa.string())], schema=RAW_SCHEMA)


def chunk_layout(encode: Callable, decode: Callable) -> tuple[Callable, Callable]:
    def encoder(table: pa.Table) -> list[bytes]:
        return [bson.encode(_stored(doc)) for doc in encode(SID, table)]

    def decoder(blobs: list[bytes]) -> pa.Table:
        return decode([bson.decode(blob) for blob in blobs], None, None, False)

    return encoder, decoder


LAYOUTS = {
    "v1 packing": chunk_layout(v1_encode, v1_decode),
    "codec": chunk_layout(CODEC_ENCODE, CODEC_DECODE),
}


def best_cpu(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        cpu = time.process_time()
        run()
        times.append(time.process_time() - cpu)
    return min(times)


def measure(table: pa.Table, size: int | None, encode: Callable, decode: Callable,
            repeat: int) -> tuple[float, float, float]:
    """(BSON bytes, encode ns, decode ns) per point; ``size``: points per write (None: one
    write of everything)."""
    if size is not None:
        table = table.slice(0, PREFIX.get(size, table.num_rows))
    writes = [table] if size is None else [table.slice(a, size)
                                           for a in range(0, table.num_rows, size)]
    written = [encode(w) for w in writes]
    for blobs, rows in zip(written, writes):  # correctness, outside the timing
        assert decode(blobs).equals(rows.combine_chunks())
    n = table.num_rows
    size_bytes = sum(len(b) for blobs in written for b in blobs)
    enc = best_cpu(lambda: [encode(w) for w in writes], repeat)
    dec = best_cpu(lambda: [decode(blobs) for blobs in written], repeat)
    return size_bytes / n, enc / n * 1e9, dec / n * 1e9


def layout_section(data: dict[str, pa.Table], repeat: int) -> None:
    print("| layout | points per write | " + " | ".join(
        f"{name}: B/point, encode / decode ns/point" for name in data) + " |")
    print("|---|---|" + "---|" * len(data))
    rows = [("document per point", 1, (per_point_encode, per_point_decode))]
    for size in (1, 60, None):
        rows += [(name, size, layout) for name, layout in LAYOUTS.items()]
    for name, size, (encode, decode) in rows:
        cells = []
        for table in data.values():
            per_point = table.slice(0, PREFIX[1]) if name == "document per point" else table
            b, e, d = measure(per_point, None if name == "document per point" else size,
                              encode, decode, repeat)
            cells.append(f"{b:.2f}, {e:,.0f} / {d:,.0f}")
        label = "full (3,600-row chunks)" if size is None else str(size)
        if name == "document per point":
            label = "any"
        print(f"| {name} | {label} | " + " | ".join(cells) + " |", flush=True)
    print()


def mongomock_section(data: dict[str, pa.Table], repeat: int) -> None:
    print("Through `MongoDBStorage` on mongomock, one commit of every point, then `read_raw` "
          "of all (ms, best CPU time; B/point: BSON of the stored documents):\n")
    print("| data | layout | B/point | commit ms | read ms |")
    print("|---|---|---|---|---|")
    for name, table in data.items():
        for layout, (encode, decode) in (("v1 packing", (v1_encode, v1_decode)),
                                          ("codec", (CODEC_ENCODE, CODEC_DECODE))):
            commits, reads, size = [], [], 0
            for _ in range(repeat):
                with _chunk_functions(encode, decode):
                    storage = MongoDBStorage("bench", client=mongomock.MongoClient())
                    storage.create_stream(StreamRecord(SID, {"n": 1}, {}), {"n": 1})
                    cpu = time.process_time()
                    storage.commit(WriteBatch(raw={SID: table}))
                    commits.append(time.process_time() - cpu)
                    cpu = time.process_time()
                    rows = storage.read_raw(SID, None, None)
                    reads.append(time.process_time() - cpu)
                    assert rows.equals(table)
                    size = sum(len(bson.encode(doc)) for doc in storage._raw.find({}))
                    storage.close()
            print(f"| {name} | {layout} | {size / table.num_rows:.2f} | "
                  f"{min(commits) * 1e3:.0f} | {min(reads) * 1e3:.0f} |", flush=True)
    print()


@contextlib.contextmanager
def _chunk_functions(encode: Callable, decode: Callable) -> Iterator[None]:
    saved = chunks.encode, chunks.decode
    chunks.encode, chunks.decode = encode, decode
    try:
        yield
    finally:
        chunks.encode, chunks.decode = saved


def level_section(data: dict[str, pa.Table]) -> None:
    print("Level rows of the 10 s level, B/row: one document per bucket (what the backend "
          "stores: `_id`, `stream_id`, `t`, the columns, `_q`, `_b`) against codec level chunks "
          "of 4,096 rows:\n")
    print("| data | rows | document per bucket | codec chunk |")
    print("|---|---|---|---|")
    for name, table in data.items():
        rows = downsamplers.partials_from_raw(table, "numeric", {}, 10 * SECOND, False)
        with_id = rows.add_column(0, "stream_id", pa.array([SID] * rows.num_rows))
        docs = levels.encode("S", with_id)[SID]
        batch = ObjectId()
        per_doc = sum(len(bson.encode({"_id": ObjectId(), **doc, "_q": 1, "_b": batch}))
                      for doc in docs)
        per_chunk = sum(len(bson.encode(_stored({"c": Binary(codec.encode_level(
            rows.slice(a, 4096)))}))) for a in range(0, rows.num_rows, 4096))
        print(f"| {name} | {rows.num_rows:,} | {per_doc / rows.num_rows:.1f} | "
              f"{per_chunk / rows.num_rows:.2f} |")
    print()


def calibration() -> str:
    """CPU seconds of a fixed pure-Python loop (~0.4 s on a quiet core of the shared machine,
    as in bench_codec.py): how much slower than usual the machine runs right now."""
    cpu = time.process_time()
    total = 0
    for i in range(10_000_000):
        total += i
    return f"{time.process_time() - cpu:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    data = datasets(args.points)
    codec.encode_raw(data["sensor 0.01"].slice(0, 1000))  # load the codec's kernels first
    print(f"{args.points:,} points per data kind; small writes on the first "
          f"{PREFIX[1]:,} (1 point) and {PREFIX[60]:,} (60 points) points; calibration loop "
          f"{calibration()} CPU\n")
    layout_section(data, args.repeat)
    mongomock_section(data, max(1, args.repeat // 2))
    level_section(data)
    print(f"calibration loop at the end: {calibration()} CPU")


if __name__ == "__main__":
    main()
