"""The micro targets of the speed project through the public API, on a DuckDB file (the shapes
of ``bench/compare.py --targets``): ``append()`` one point at a time with a plain float and an
aware UTC datetime, and the raw points of one stream read back from a reopened file as
``to_arrow()`` and as dicts.

Rates: divide the point counts below by the times (the targets: 300k appends/s with the
flushes they trigger, 50 M points/s for ``to_arrow()``, 1 M dicts/s).
"""

import datetime
import os
import tempfile

import numpy as np

import datastream
from datastream.backends import duckdb

UTC = datetime.timezone.utc
START_US = 1_767_225_600_000_000
APPEND_POINTS = 50_000
READ_POINTS = 1_000_000
DOWNSAMPLERS = ["mean", "min", "max"]


def _sensor(points: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """~1 Hz µs timestamps with ±50 ms jitter and values quantised to 0.01, as compare.py."""
    rng = np.random.default_rng(seed)
    t = START_US + np.arange(points, dtype=np.int64) * 1_000_000
    t += rng.integers(-50_000, 50_000, points)
    v = np.round(20 + 5 * np.sin(np.arange(points) / 3600) + rng.normal(0, 0.1, points), 2)
    return t, v


class PerPointAppend:
    """``APPEND_POINTS`` calls of ``append(stream_id, float, datetime)`` into a new stream of
    a DuckDB file, the flushes they trigger (every 10k points) included, then ``flush()``."""

    number = 1
    repeat = 5
    timeout = 120

    def setup(self):
        t, v = _sensor(APPEND_POINTS, 7)
        epoch = datetime.datetime(1970, 1, 1, tzinfo=UTC)
        self.stamps = [epoch + datetime.timedelta(microseconds=us) for us in t.tolist()]
        self.values = v.tolist()
        self.folder = tempfile.TemporaryDirectory(prefix="bench-fastpath-")
        self.ds = datastream.Datastream(duckdb.Backend(os.path.join(self.folder.name, "a.duckdb")))
        self.count = 0

    def teardown(self):
        self.ds.close()
        self.folder.cleanup()

    def time_append_points(self):
        self.count += 1
        stream_id = self.ds.ensure_stream({"append": self.count}, {}, DOWNSAMPLERS, "seconds")
        append = self.ds.append
        for value, stamp in zip(self.values, self.stamps):
            append(stream_id, value, stamp)
        self.ds.flush()


class RawReads:
    """The ``READ_POINTS`` raw points of one stream from a freshly opened DuckDB file (opening
    is in ``setup``, outside the timing)."""

    number = 1
    repeat = 5
    timeout = 300

    def setup_cache(self):
        path = os.path.abspath("raw.duckdb")  # asv runs this in a cache dir it removes
        t, v = _sensor(READ_POINTS, 8)
        with datastream.Datastream(duckdb.Backend(path)) as ds:
            stream_id = ds.ensure_stream({"bench": "raw"}, {}, ["mean"], "seconds")
            ds.append_arrays(stream_id, t, v, unit="us")
        return path, stream_id

    def setup(self, cache):
        path, self.stream_id = cache
        self.ds = datastream.Datastream(duckdb.Backend(path))

    def teardown(self, cache):
        self.ds.close()

    def _result(self):
        return self.ds.get_data(self.stream_id, "seconds", start=datetime.datetime.min)

    def time_to_arrow(self, cache):
        self._result().to_arrow()

    def time_iterate_dicts(self, cache):
        for _ in self._result():
            pass
