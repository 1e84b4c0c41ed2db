"""Cold start: what ``import datastream`` loads, where compiled kernels are cached, warmup.

Each check runs in a fresh interpreter: what a test process has already imported or compiled
says nothing about a user's first import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# registers the codec's kernels and the bulk append's
from datastream.kernels import intake, jit, transforms  # noqa: F401
from datastream.storage import residuals  # noqa: F401 (and its prediction kernels)

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ["numba", "pandas", "polars", "pymongo", "influxdb", "psycopg2", "pyarrow.compute",
         "matplotlib", "IPython", "starlette", "uvicorn"]


def python(code: str, **env: str | None) -> str:
    """Run ``code`` in a new interpreter on this source tree; its stdout (stderr on failure)."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    for name, value in env.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    result = subprocess.run([sys.executable, "-c", code], env=environment, cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_leaves_heavy_modules_out() -> None:
    loaded = python(f"import sys, datastream; print([m for m in {HEAVY!r} if m in sys.modules])")
    assert loaded.strip() == "[]"


def test_the_engine_loads_with_the_first_datastream_not_with_the_import() -> None:
    """The engine's modules (a third of the package's own import time) wait for a Datastream;
    the public constants do not need them."""
    loaded = python(
        "import sys, datastream\n"
        "engine = lambda: sorted(m for m in sys.modules if m.startswith('datastream.engine.')"
        " and m not in ('datastream.engine.lifecycle', 'datastream.engine.operator_specs'))\n"
        "print(engine(), sorted(datastream.DERIVE_OPERATORS))\n"
        "with datastream.Datastream() as ds:\n"
        "    ds.ensure_stream({'a': 1}, {}, ['mean'])\n"
        "print('datastream.engine.core' in engine())\n"
    )
    before, after = loaded.strip().splitlines()
    assert before == "[] ['counter_derivative', 'counter_reset', 'derivative', 'sum']"
    assert after == "True"


def test_opening_a_store_and_reading_metadata_leaves_heavy_modules_out(tmp_path) -> None:
    """Creating, finding and tagging streams needs neither the chunk compressor (blosc2) nor
    pyarrow's pandas import: a script or command that only looks at metadata starts fast."""
    path = tmp_path / "meta.duckdb"
    code = f"""
import sys, datastream
from datastream.backends import duckdb
with datastream.Datastream(duckdb.Backend({str(path)!r})) as ds:
    sid = ds.ensure_stream({{"n": 1}}, {{"site": "a"}}, ["mean"], "seconds")
    ds.update_tags(sid, {{"site": "b"}})
    assert [s["stream_id"] for s in ds.find_streams({{"site": "b"}})] == [sid]
    assert len(ds.find_streams()[0:1]) == 1 and ds.get_tags(sid)["site"] == "b"
print([m for m in {[*HEAVY, "blosc2"]!r} if m in sys.modules])
"""
    assert python(code).strip() == "[]"  # a new store
    assert python(code).strip() == "[]"  # the same store reopened, its stream found again


def test_a_fresh_process_reads_raw_and_levels_without_pandas(tmp_path) -> None:
    """pyarrow imports pandas (0.2-0.6 s) on its first conversion of numpy or Python values;
    reading stored points, raw or downsampled, as Arrow or as dicts, never converts any."""
    path = str(tmp_path / "read.duckdb")
    python(f"""
import datetime, numpy as np, datastream
from datastream.backends import duckdb
with datastream.Datastream(duckdb.Backend({path!r})) as ds:
    sid = ds.ensure_stream({{"n": 1}}, {{}}, ["mean", "min", "max", "std_dev"], "seconds")
    t = 946_684_800_000_000 + np.arange(20_000, dtype=np.int64) * 3_000_000
    v = np.round(np.sin(np.arange(20_000) / 50.0), 2)
    v[::7] = np.nan  # null points, and empty buckets in the levels
    ds.append_arrays(sid, t[t % 86_400_000_000 < 43_200_000_000], v[t % 86_400_000_000
                     < 43_200_000_000], unit="us")
    ds.downsample_streams(until=datetime.datetime(2000, 2, 1, tzinfo=datetime.timezone.utc))
    nominal = ds.ensure_stream({{"n": 2}}, {{}}, [], "seconds", value_type="nominal")
    ds.append_multiple([{{"stream_id": nominal, "value": value, "timestamp": datetime.datetime(
        2000, 1, 1, 0, 0, i, tzinfo=datetime.timezone.utc)}} for i, value in enumerate(
        ["on", 3, None, {{"a": [1.5]}}])])
""")
    read = f"""
import datetime, sys, datastream
from datastream.backends import duckdb
with datastream.Datastream(duckdb.Backend({path!r})) as ds:
    sid, nominal = (ds.find_streams({{"n": n}})[0]["stream_id"] for n in (1, 2))
    start = datetime.datetime.min
    sizes = []
    for level in ("seconds", "minutes", "hours"):
        result = ds.get_data(sid, level, start=start)
        sizes += [result.to_arrow().num_rows, len(list(result)), len(result[:3])]
    texts = ds.get_data(nominal, "seconds", start=start).to_arrow().column("v").to_pylist()
    assert texts == ['"on"', "3", None, '{{"a":[1.5]}}'], texts
    points = list(ds.get_data(nominal, "seconds", start=start))
    assert [p["v"] for p in points] == ["on", 3, None, {{"a": [1.5]}}]
    print(sizes, "pandas" in sys.modules)
"""
    sizes, loaded = python(read).rsplit(" ", 1)
    assert loaded.strip() == "False"
    counts = json.loads(sizes)
    assert counts[0] == counts[1] > 10_000 and counts[3] == counts[4] and counts[6] == counts[7]
    assert counts[3] > counts[6] > 0  # levels with buckets, empty ones included


def test_a_fresh_process_writes_and_downsamples_numbers_without_pandas(tmp_path) -> None:
    """Appending numbers (one at a time and as arrays, nulls and integers included),
    deriving a sum and counter resets from them, flushing, downsampling and reading back
    convert nothing through pyarrow's converters."""
    code = f"""
import datetime, sys
import numpy as np
import datastream
from datastream.backends import duckdb
utc = datetime.timezone.utc
with datastream.Datastream(duckdb.Backend({str(tmp_path / "w.duckdb")!r})) as ds:
    a = ds.ensure_stream({{"n": "a"}}, {{}}, ["mean", "min", "max", "std_dev"], "seconds")
    b = ds.ensure_stream({{"n": "b"}}, {{}}, ["sum"], "seconds")
    c = ds.ensure_stream({{"n": "c"}}, {{}}, ["max"], "seconds")
    ds.ensure_stream({{"n": "d"}}, {{}}, ["mean"], "seconds", derive_from=[a, b],
                     derive_op="sum")
    ds.ensure_stream({{"n": "r"}}, {{}}, ["count"], "seconds", derive_from=[b],
                     derive_op="counter_reset", value_type="nominal")
    t = 946_684_800_000_000 + np.arange(30_000, dtype=np.int64) * 2_000_000
    values = np.round(np.cos(np.arange(30_000) / 30.0), 2)
    values[::11] = np.nan
    ds.append_arrays(a, t, values, unit="us")
    ds.append_arrays(b, t, np.arange(30_000) % 7, unit="us")
    start = datetime.datetime(2000, 2, 1, tzinfo=utc)
    for i, value in enumerate([1.5, None, 2, 3.25, float("nan"), 7]):
        ds.append(a, value, start + datetime.timedelta(seconds=i))
        ds.append(b, i, start + datetime.timedelta(seconds=i))
        ds.append(c, i + 0.5, start + datetime.timedelta(seconds=i))  # floats only
    ds.flush()
    ds.downsample_streams(until=datetime.datetime(2000, 3, 1, tzinfo=utc))
    hours = ds.get_data(b, "hours", start=datetime.datetime.min).to_arrow()
    raw = ds.get_data(a, "seconds", start=start).to_arrow().column("v").to_pylist()
    assert [p["v"] for p in ds.get_data(c, "seconds", start=start)] == [0.5, 1.5, 2.5, 3.5,
                                                                        4.5, 5.5]
sums = [x for x in hours.column("sum").to_pylist() if x is not None]  # empty hours: None
print(json.dumps({{"sum": sum(sums), "raw": raw,
                  "pandas": "pandas" in sys.modules}}))
"""
    out = json.loads(python(code.replace("import datetime, sys", "import datetime, json, sys")))
    assert out["pandas"] is False
    assert out["sum"] == int((np.arange(30_000) % 7).sum())  # every hour of January closed
    assert out["raw"] == [1.5, None, 2.0, 3.25, None, 7.0]


APPEND_THEN_DOWNSAMPLE = """
import datetime, sys
import numpy as np
import datastream

start = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
with datastream.Datastream() as ds:
    a = ds.ensure_stream({"n": "a"}, {}, ["mean", "median"], datastream.Granularity.Seconds)
    b = ds.ensure_stream({"n": "b"}, {}, ["most_often"], datastream.Granularity.Seconds,
                         value_type="nominal")
    ds.append(a, 1.5, start)
    ds.append_arrays(a, 946_684_801_000_000 + np.arange(100) * 1_000_000, np.arange(100.0),
                     unit="us")
    ds.append_multiple([{"stream_id": b, "value": "x", "timestamp": start}])
    ds.flush()
    assert len(ds.get_data(a, "seconds", start=start)) == 101
    print("numba" in sys.modules)
    ds.downsample_streams(until=start + datetime.timedelta(hours=1))
    print("numba" in sys.modules)
"""


def test_appending_reading_and_a_first_downsample_compile_nothing(tmp_path) -> None:
    """On an empty kernel cache numba is not even imported: appends and raw reads take the
    codec's numpy implementation, the downsample (median and most_often included) the kernels'
    numpy twins. Without the twins the same downsample does import it (the check can fail)."""
    before, after = python(APPEND_THEN_DOWNSAMPLE,
                           DATASTREAM_CACHE_DIR=str(tmp_path / "a")).split()
    assert (before, after) == ("False", "False")
    no_twins = "from datastream.kernels import jit\njit.FALLBACK = False\n"
    before, after = python(no_twins + APPEND_THEN_DOWNSAMPLE,
                           DATASTREAM_CACHE_DIR=str(tmp_path / "b")).split()
    assert (before, after) == ("False", "True")


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="XDG layout")
def test_cache_dir_choice(monkeypatch, tmp_path) -> None:
    for name in ("DATASTREAM_CACHE_DIR", "NUMBA_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert jit.cache_dir() == str(tmp_path / "home" / ".cache" / "datastream" / "numba")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert jit.cache_dir() == str(tmp_path / "home" / ".cache" / "datastream" / "numba")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert jit.cache_dir() == str(tmp_path / "xdg" / "datastream" / "numba")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    assert jit.cache_dir() == str(tmp_path / "numba")
    monkeypatch.setenv("DATASTREAM_CACHE_DIR", "~/kernels")
    assert jit.cache_dir() == str(tmp_path / "home" / "kernels")


SEGMENT = """
import json
import numpy as np
from datastream.kernels import buckets, jit
jit.FALLBACK = False  # bucket_bounds has a numpy reference: compile it all the same
buckets.segment(np.arange(5, dtype=np.int64), 2)
stats = jit.KERNELS[[k.__name__ for k in jit.KERNELS].index("bucket_bounds")].dispatcher().stats
print(json.dumps([sum(stats.cache_hits.values()), sum(stats.cache_misses.values())]))
"""


def _index_files(directory: Path) -> set[str]:
    return {p.name for p in directory.rglob("*.nbi")}


def test_compiled_kernels_land_in_the_cache_dir(tmp_path) -> None:
    in_tree = ROOT / "datastream" / "kernels"
    before = _index_files(in_tree)
    cache = tmp_path / "cache"
    env = {"DATASTREAM_CACHE_DIR": str(cache), "NUMBA_CACHE_DIR": None}
    assert json.loads(python(SEGMENT, **env)) == [0, 1]  # compiled
    assert {p.parent.parent for p in cache.rglob("buckets.bucket_bounds-*.nbi")} == {cache}
    assert list(cache.rglob("buckets.bucket_bounds-*.nbc"))
    assert _index_files(in_tree) == before  # nothing written beside the sources
    assert json.loads(python(SEGMENT, **env)) == [1, 0]  # loaded


def test_unusable_cache_dir_falls_back_to_numba_cache_dir(tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    numba_dir = tmp_path / "numba"
    python(SEGMENT, DATASTREAM_CACHE_DIR=str(blocker / "cache"), NUMBA_CACHE_DIR=str(numba_dir))
    assert list(numba_dir.rglob("buckets.bucket_bounds-*.nbi"))


# Not the warmup's own workload: a demo-like store on a file, reopened, with derived streams.
AFTER_WARMUP = """
import datetime, json, os, sys, warnings
import numpy as np
import datastream
from datastream.backends import duckdb
from datastream.kernels import jit

jit.FALLBACK = False  # the kernels, not their twins: each call loads one (a miss compiles it)
G = datastream.Granularity
start = datetime.datetime(2026, 3, 1, tzinfo=datetime.timezone.utc)
times = 1_772_323_200_000_000 + np.cumsum(np.full(5000, 1_300_000))
path = os.path.join(sys.argv[1], "store.duckdb")
with datastream.Datastream(duckdb.Backend(path)) as ds:
    cpu = ds.ensure_stream({"m": "cpu"}, {}, ["mean", "std_dev", "median"], G.Seconds)
    disk = ds.ensure_stream({"m": "disk"}, {}, ["max"], G.Seconds)
    state = ds.ensure_stream({"m": "state"}, {}, ["frequencies"], G.Seconds, value_type="nominal")
    ds.ensure_stream({"m": "total"}, {}, ["mean"], G.Seconds, derive_from=[cpu, disk],
                     derive_op="sum")
    ds.ensure_stream({"m": "rate"}, {}, ["mean"], G.Seconds, derive_from=disk,
                     derive_op="derivative")
    ds.append_arrays(cpu, times, np.sin(np.arange(5000.0)), unit="us")
    ds.append_arrays(disk, times, np.arange(5000.0), unit="us")
    for minute in range(30):
        ds.append(state, ["on", "off"][minute % 2], start + datetime.timedelta(minutes=minute))
with datastream.Datastream(duckdb.Backend(path)) as ds:
    ds.downsample_streams(until=start + datetime.timedelta(days=2))
    hours = list(ds.get_data(cpu, G.Hours, start=start))
hits = misses = 0
for kernel in jit.KERNELS:
    if kernel.loaded:
        hits += sum(kernel.dispatcher().stats.cache_hits.values())
        misses += sum(kernel.dispatcher().stats.cache_misses.values())
print(json.dumps({"hours": len(hours), "hits": hits, "misses": misses}))
"""


@pytest.fixture(scope="module")
def warmed(tmp_path_factory) -> tuple[dict, str]:
    """A kernel cache filled by ``datastream warmup`` (compiling takes a while: done once for
    the tests of this module), as the environment selecting it, and warmup's report."""
    cache = tmp_path_factory.mktemp("warmed") / "cache"
    env = {"DATASTREAM_CACHE_DIR": str(cache), "NUMBA_CACHE_DIR": None}
    return env, python("from datastream.__main__ import main; main(['warmup'])", **env)


def test_warmup_compiles_every_kernel_once(tmp_path, warmed) -> None:
    env, report = warmed
    lines = report.splitlines()
    assert lines[0] == f"datastream warmup: kernel cache in {env['DATASTREAM_CACHE_DIR']}"
    kernels = len(jit.KERNELS)
    assert lines[-1].startswith(f"{kernels} kernels ready ({kernels} compiled, 0 from the cache)")
    assert "NOT USED" not in report

    after = json.loads(python(AFTER_WARMUP.replace("sys.argv[1]", repr(str(tmp_path))), **env))
    assert after["hours"] > 0
    assert after["hits"] > 0
    assert after["misses"] == 0  # a miss is a compile: warmup missed a signature the engine uses


# A bulk append and a raw chunk past codec.NUMPY_BELOW rows, then a downsample: the append's
# copy_checked, the codec's kernels, bucket_bounds,
# the partials and combine kernels (which have numpy references) and the other downsampling
# kernels (which have none) all get called.
FIRST_USE = """
import datetime, hashlib, json, os, sys
import duckdb
import numpy as np
import datastream
from datastream.backends import duckdb as backend
from datastream.kernels import jit

start = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
times = 946_684_800_000_000 + np.cumsum(np.full(6000, 1_700_000))
path = os.path.join(sys.argv[1], "store.duckdb")
reads = hashlib.sha256()
with datastream.Datastream(backend.Backend(path)) as ds:
    a = ds.ensure_stream({"n": "a"}, {}, ["mean", "std_dev", "min", "count"], "seconds")
    ds.append_arrays(a, times, np.round(np.sin(np.arange(6000.0)) * 100, 2), unit="us")
    ds.flush()
    ds.downsample_streams(until=start + datetime.timedelta(days=1))
    for granularity in datastream.Granularity.values:
        table = ds.get_data(a, granularity, start=start).to_arrow()
        reads.update(json.dumps(table.to_pydict(), default=repr).encode())
with duckdb.connect(path, read_only=True) as con:
    chunks = con.execute("SELECT level, t0, t1, seq, part, rows, body FROM chunks ORDER BY ALL")
    stored = hashlib.sha256(repr(chunks.fetchall()).encode()).hexdigest()
with_reference = [k for k in jit.KERNELS if k.reference is not None]
print(json.dumps({"stored": stored, "reads": reads.hexdigest(), "numba": "numba" in sys.modules,
                  "fell_back": sorted(k.__name__ for k in with_reference if k._cold),
                  "compiled": sorted(k.__name__ for k in with_reference if k.loaded),
                  "queued": sorted(k.__name__ for k in with_reference if k._queued)}))
"""


def test_first_use_on_an_empty_cache_runs_the_references_and_stores_the_same(
        tmp_path, warmed) -> None:
    empty = {"DATASTREAM_CACHE_DIR": str(tmp_path / "cache"), "NUMBA_CACHE_DIR": None}

    def first_use(name: str, env: dict) -> dict:
        (tmp_path / name).mkdir()
        return json.loads(python(FIRST_USE.replace("sys.argv[1]", repr(str(tmp_path / name))),
                                 **env))

    cold = first_use("cold", empty)
    # numba is not even imported: the codec's small chunks take its numpy implementation
    # directly, the larger ones and the downsampling kernels their references
    assert cold["fell_back"] == ["bucket_bounds", "combine_times", "combine_values",
                                 "copy_checked", "decimal_costs", "decimal_encode", "int_costs",
                                 "int_encode", "time_partials", "value_partials"]
    assert cold["compiled"] == cold["queued"] == []  # nothing compiled for them, nor waited for
    assert not cold["numba"]
    # after datastream warmup the twins run all the same: loading the kernels would cost a
    # fresh process more than this whole workload (numba's import and setup), so nothing is
    # loaded before the twins have cost what COMPILE_AFTER allows
    warm = first_use("warm", warmed[0])
    assert warm["fell_back"] == warm["compiled"] == warm["queued"] == []
    assert not warm["numba"]
    assert (warm["stored"], warm["reads"]) == (cold["stored"], cold["reads"])


WARM_LOADING = """
import json, time
import numpy as np
from datastream.kernels import jit, transforms

jit.COMPILE_AFTER = 0.0  # the first call hands the kernel to the background thread
x = jit.readonly(np.arange(100, dtype=np.int64), np.int64)
first = transforms.int_costs(x)
took_twin = not transforms.int_costs.loaded
began = time.monotonic()
while not transforms.int_costs.loaded and time.monotonic() - began < 600:
    time.sleep(0.05)
twin_calls = []
twin = transforms.int_encode.reference
transforms.int_encode.use_reference(lambda *a: twin_calls.append(1) or twin(*a))
transforms.int_encode(x, 2, np.empty(100, np.int64))  # a kernel runs compiled: load this one
hits = misses = 0
for kernel in (transforms.int_costs, transforms.int_encode):
    hits += sum(kernel.dispatcher().stats.cache_hits.values())
    misses += sum(kernel.dispatcher().stats.cache_misses.values())
print(json.dumps({"took_twin": took_twin, "same": transforms.int_costs(x) == first,
                  "second_loaded": transforms.int_encode.loaded, "twin_calls": len(twin_calls),
                  "hits": hits, "misses": misses}))
"""


def test_after_warmup_kernels_load_from_the_cache_once_needed(warmed) -> None:
    """A warm cache changes what the twins' time buys, not the first call: the first kernel
    loads in the background once its twin has cost COMPILE_AFTER; from then on (numba set up)
    a kernel found in the cache loads at its first call, its twin unused. Loaded, not
    compiled: cache hits only."""
    out = json.loads(python(WARM_LOADING, **warmed[0]))
    assert out == {"took_twin": True, "same": True, "second_loaded": True, "twin_calls": 0,
                   "hits": 2, "misses": 0}


BACKGROUND = """
import json, time
import numpy as np
from datastream.kernels import jit, transforms

jit.COMPILE_AFTER = 0.0  # the first call hands the kernel to the background thread
x = jit.readonly(np.arange(100, dtype=np.int64), np.int64)
first = transforms.int_costs(x)
began = time.monotonic()
while not transforms.int_costs.loaded and time.monotonic() - began < 600:
    time.sleep(0.05)
print(json.dumps({"same": transforms.int_costs(x) == first, "cold": transforms.int_costs._cold,
                  "compiled": transforms.int_costs.loaded}))
"""


def test_a_kernel_compiles_in_the_background_once_its_reference_cost_enough(tmp_path) -> None:
    env = {"DATASTREAM_CACHE_DIR": str(tmp_path), "NUMBA_CACHE_DIR": None}
    assert json.loads(python(BACKGROUND, **env)) == {"same": True, "cold": True, "compiled": True}
    assert [p.name.split("-")[0] for p in (tmp_path / "ready").iterdir()] == [
        "datastream.kernels.transforms.int_costs"]
    # the next process finds the marker: the twin first all the same (numba is not set up
    # there), then the kernel is loaded, not compiled
    assert json.loads(python(BACKGROUND, **env)) == {"same": True, "cold": False, "compiled": True}


KERNEL_CHOICE = """
import json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from datastream.kernels import jit
print(json.dumps([jit.FALLBACK, [str(w.message) for w in caught]]))
"""


@pytest.mark.parametrize(("chosen", "fallback", "warned"), [
    (None, True, False), ("auto", True, False), ("compiled", False, False),
    (" Compiled ", False, False), ("numpy", True, True),
])
def test_datastream_kernels_chooses_the_twins_or_the_compiled_code(chosen, fallback,
                                                                  warned) -> None:
    """DATASTREAM_KERNELS=compiled: compiled kernels from the first call (a long-running
    service); anything else but auto is named in a warning and means auto."""
    got, messages = json.loads(python(KERNEL_CHOICE, DATASTREAM_KERNELS=chosen))
    assert got is fallback
    assert bool(messages) is warned
    if warned:
        assert "DATASTREAM_KERNELS='numpy'" in messages[0]
