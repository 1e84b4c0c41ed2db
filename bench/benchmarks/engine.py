"""The whole engine through the public API: bulk and single appends, downsampling, reads."""

import datetime
import itertools

import numpy as np

import datastream

UTC = datetime.timezone.utc
START = datetime.datetime(2026, 1, 1, tzinfo=UTC)
START_US = 1_767_225_600_000_000
POINTS = 100_000
_NAMES = itertools.count()  # a new stream per call (id(object()) repeats: same stream again)


class Engine:
    """One stream of 100k one-second float points on the in-memory embedded store."""

    def setup(self):
        rng = np.random.default_rng(1)
        self.timestamps = START_US + np.arange(POINTS, dtype=np.int64) * 1_000_000
        self.values = rng.normal(20, 5, POINTS).round(2)
        self.until = START + datetime.timedelta(seconds=POINTS)
        self.ds = datastream.Datastream()
        self.stream = self._new_stream("bench")
        self.ds.append_arrays(self.stream, self.timestamps, self.values, unit="us")
        self.ds.downsample_streams(until=self.until)

    def teardown(self):
        self.ds.close()

    def _new_stream(self, name):
        return self.ds.ensure_stream(
            {"name": name}, {}, ["mean", "min", "max", "std_dev"], datastream.Granularity.Seconds
        )

    def time_append_arrays_and_flush(self):
        stream = self._new_stream(f"arrays-{next(_NAMES)}")
        self.ds.append_arrays(stream, self.timestamps, self.values, unit="us")
        self.ds.flush()

    def time_append_10k_single_points(self):
        stream = self._new_stream(f"single-{next(_NAMES)}")
        for offset in range(10_000):
            self.ds.append(stream, 1.5, START + datetime.timedelta(seconds=offset))
        self.ds.flush()

    def time_downsample_all_levels(self):
        name = f"down-{next(_NAMES)}"
        stream = self._new_stream(name)
        self.ds.append_arrays(stream, self.timestamps, self.values, unit="us")
        self.ds.downsample_streams({"name": name}, until=self.until)

    def time_read_raw_to_arrow(self):
        self.ds.get_data(self.stream, "seconds", start=START).to_arrow()

    def time_read_minutes_as_dicts(self):
        list(self.ds.get_data(self.stream, "minutes", start=START))

    def time_read_one_day_at_10s(self):
        """A UTC day at 10 s (8,640 buckets): one level chunk, cut at the day's edges."""
        day = START + datetime.timedelta(days=1)
        self.ds.get_data(self.stream, "10seconds", start=day,
                         end_exclusive=day + datetime.timedelta(days=1)).to_arrow()

    def time_verify(self):
        """verify() of the stream's 100k points: the columnar pass of float streams."""
        self.ds.verify()
