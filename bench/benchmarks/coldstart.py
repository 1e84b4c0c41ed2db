"""Cold start, each sample in a fresh interpreter: ``import datastream`` and the first downsample
of a process, with an empty kernel cache (numba compiles) and with a warm one (it loads).

Only the statement is timed, not the interpreter start-up or the setup code (so on commits that
import numba with datastream, its import is not in the downsample figures). The cache is chosen
with both DATASTREAM_CACHE_DIR and NUMBA_CACHE_DIR, so that commits from before the per-user
cache directory (which cached beside the installed sources) are measured alike.
"""

import os
import subprocess
import sys
import tempfile

WARM_CACHE = os.path.join(tempfile.gettempdir(), "datastream-asv-warm-kernel-cache")

# the first downsample of a process: one stream of 10k points, four aggregates, all levels
FIRST_DOWNSAMPLE = """
import datetime
import numpy as np
import datastream

start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
ds = datastream.Datastream()
stream = ds.ensure_stream({"n": "cold"}, {}, ["mean", "min", "max", "std_dev"],
                          datastream.Granularity.Seconds)
ds.append_arrays(stream, 1_767_225_600_000_000 + np.arange(10_000) * 1_000_000,
                 np.random.default_rng(0).normal(20, 5, 10_000), unit="us")
ds.flush()
until = start + datetime.timedelta(days=1)
"""
DOWNSAMPLE = "ds.downsample_streams(until=until)"


def _use_cache(directory: str) -> str:
    """Setup code pointing the kernel cache at ``directory`` (a Python expression)."""
    return (
        "import os\n"
        f"os.environ['DATASTREAM_CACHE_DIR'] = os.environ['NUMBA_CACHE_DIR'] = {directory}\n"
    )


# a new directory per sample, removed when the sample's interpreter exits
COLD_SETUP = (
    "import tempfile\n"
    "cache = tempfile.TemporaryDirectory(prefix='datastream-asv-cold-')\n"
    + _use_cache("cache.name")
    + FIRST_DOWNSAMPLE
)
WARM_SETUP = _use_cache(repr(WARM_CACHE)) + FIRST_DOWNSAMPLE


def timeraw_import_datastream():
    return "import datastream"


timeraw_import_datastream.repeat = (5, 20, 30.0)


def timeraw_first_downsample_cold_cache():
    return DOWNSAMPLE, COLD_SETUP


timeraw_first_downsample_cold_cache.repeat = (2, 5, 120.0)
timeraw_first_downsample_cold_cache.timeout = 600


def _warm_up():
    """Fill the warm cache by running the measured code once (works on any commit)."""
    subprocess.run([sys.executable, "-c", WARM_SETUP + DOWNSAMPLE], check=True)


def timeraw_first_downsample_warm_cache():
    return DOWNSAMPLE, WARM_SETUP


timeraw_first_downsample_warm_cache.setup = _warm_up
timeraw_first_downsample_warm_cache.repeat = (3, 10, 60.0)
timeraw_first_downsample_warm_cache.timeout = 600
