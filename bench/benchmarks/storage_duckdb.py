"""Embedded store reads: one stream's time range among 50 streams x 100k points.

The store is filled the way live telemetry arrives (flushes of 10k points spread over all
streams), the worst case for locality, then reopened from the file.
"""

import os
import uuid

import numpy as np
import pyarrow as pa

from datastream.storage.base import RAW_SCHEMA, MetaUpdate, StreamRecord, WriteBatch
from datastream.storage.duckdb import DuckDBStorage

STREAMS, POINTS, FLUSH = 50, 100_000, 10_000
T0 = 1_700_000_000_000_000
SECOND = 1_000_000


def _raw(rng: np.random.Generator, times: np.ndarray) -> pa.Table:
    n = len(times)
    columns = {
        "t": times,
        "k": np.full(n, 2, np.int8),
        "i": pa.nulls(n, pa.int64()),
        "f": np.round(rng.normal(20, 5, n), 2),
        "s": pa.nulls(n, pa.string()),
    }
    return pa.table(columns, schema=RAW_SCHEMA)


class DuckDBRawReads:
    timeout = 300

    def setup_cache(self):
        path = os.path.abspath("store.duckdb")  # asv runs this in a cache dir it removes
        storage = DuckDBStorage(path)
        ids = [str(uuid.uuid4()) for _ in range(STREAMS)]
        for number, stream_id in enumerate(ids):
            storage.create_stream(StreamRecord(stream_id, {"n": number}, {}), {"n": number})
        rng = np.random.default_rng(0)
        per = FLUSH // STREAMS
        for flush in range(POINTS // per):
            times = T0 + (flush * per + np.arange(per, dtype=np.int64)) * SECOND
            storage.commit(
                WriteBatch(
                    raw={stream_id: _raw(rng, times) for stream_id in ids},
                    meta={i: MetaUpdate(max={"latest": int(times[-1])}) for i in ids},
                )
            )
        storage.close()
        return path, ids[STREAMS // 3]

    def setup(self, cache):
        path, self.stream_id = cache
        self.storage = DuckDBStorage(path)

    def teardown(self, cache):
        self.storage.close()

    def time_read_one_hour(self, cache):
        start = T0 + 50_000 * SECOND
        self.storage.read_raw(self.stream_id, start, start + 3600 * SECOND)

    def time_read_whole_stream(self, cache):
        self.storage.read_raw(self.stream_id, None, None)

    def time_read_whole_stream_reversed(self, cache):
        self.storage.read_raw(self.stream_id, None, None, reverse=True)
